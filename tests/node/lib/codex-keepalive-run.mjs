// Runs `codex exec` once through the relay in front of a `ws` upstream that goes silent
// for 5 s in the middle of the turn, while Codex gives up after 2 s without a message.
// Prints one JSON object with the outcome on stdout. codex_keepalive.test.mjs starts this
// script, inside a network namespace of its own when it can.
//
// Usage: node codex-keepalive-run.mjs CODEX_JS EVENT_KEEPALIVE_SECONDS

import fsp from 'node:fs/promises';
import path from 'node:path';

import { codexConfig, prepareCodexExec } from './codex.mjs';
import {
    makeTempDir,
    sleep,
    startRelay,
    startUpstream,
    writeRelayConfig,
} from './harness.mjs';
import { collectProcess, readLedger, waitForRecords } from './more.mjs';

const FINAL_TEXT = 'Hello there';
const MODEL = 'test-model';
const SILENCE_MS = 5000;
const CODEX_IDLE_TIMEOUT_MS = 2000;
const CODEX_TIMEOUT_MS = 60000;
// Usage of the generating turn, which distinguishes its record from a prewarm's.
const TURN_USAGE = { input_tokens: 10, output_tokens: 2, total_tokens: 12 };

// Codex gives up on a stream after CODEX_IDLE_TIMEOUT_MS without a message, and does not retry.
const CODEX_PROVIDER_LINES = [
    `stream_idle_timeout_ms = ${CODEX_IDLE_TIMEOUT_MS}`,
    'stream_max_retries = 0',
    'request_max_retries = 0',
];

// Responds to each response.create: to a prewarm (generate false) at once, to a real turn
// with one delta, then SILENCE_MS of silence, then the rest of the message and response.completed.
function respondToTurns(connection)
{
    let turns = 0;
    connection.ws.on('message', async (data) => {
        const request = JSON.parse(data.toString('utf8'));
        if (request.type !== 'response.create') {
            return;
        }
        turns += 1;
        const id = `resp_codex_${turns}`;
        const send = (event) => connection.send(event);
        try {
            await send({ type: 'response.created', response: { id, status: 'in_progress', model: MODEL } });
            if (request.generate === false) {
                await send({
                    type: 'response.completed',
                    response: { id, status: 'completed', model: MODEL, output: [], usage: { input_tokens: 1, output_tokens: 0, total_tokens: 1 } },
                });
                return;
            }
            const text = { item_id: 'msg_1', output_index: 0, content_index: 0 };
            await send({
                type: 'response.output_item.added',
                output_index: 0,
                item: { id: 'msg_1', type: 'message', status: 'in_progress', role: 'assistant', content: [] },
            });
            await send({ type: 'response.content_part.added', ...text, part: { type: 'output_text', text: '' } });
            await send({ type: 'response.output_text.delta', ...text, delta: 'Hello' });
            await sleep(SILENCE_MS);
            await send({ type: 'response.output_text.delta', ...text, delta: ' there' });
            await send({ type: 'response.output_text.done', ...text, text: FINAL_TEXT });
            const item = {
                id: 'msg_1',
                type: 'message',
                status: 'completed',
                role: 'assistant',
                content: [{ type: 'output_text', text: FINAL_TEXT, annotations: [] }],
            };
            await send({ type: 'response.output_item.done', output_index: 0, item });
            await send({
                type: 'response.completed',
                response: { id, status: 'completed', model: MODEL, output: [item], usage: TURN_USAGE },
            });
        } catch {
            // The relay closed the upstream; the test reads what happened from the ledger.
        }
    });
}

async function main()
{
    const [codexJs, eventKeepaliveText] = process.argv.slice(2);
    const dir = await makeTempDir('wsrelay-codex-keepalive-');
    const result = { eventKeepaliveSeconds: Number(eventKeepaliveText) };
    let upstream = null;
    let relay = null;
    try {
        upstream = await startUpstream({ onConnection: respondToTurns });
        // Pings stay on in both runs: Codex replies with Pongs, but Pings do not reset its idle timer.
        const { configPath, port } = await writeRelayConfig(dir, {
            upstreamUrl: upstream.url,
            openai_ws: {
                passthrough_downstream_ping_interval_seconds: 1,
                passthrough_downstream_ping_timeout_seconds: 0.5,
                passthrough_downstream_event_keepalive_seconds: result.eventKeepaliveSeconds,
                upstream_drain_timeout_seconds: 10,
            },
        });
        relay = await startRelay({ configPath, port });

        const exec = await prepareCodexExec(dir, codexJs, codexConfig(port, MODEL, CODEX_PROVIDER_LINES));
        const startedAt = Date.now();
        result.codex = await collectProcess(process.execPath, exec.args, exec.options, CODEX_TIMEOUT_MS);
        result.codexMs = Date.now() - startedAt;

        // Whether or not Codex stayed, the relay records the turn once the upstream completes it.
        const ledger = path.join(dir, 'usage.jsonl');
        try {
            await waitForRecords(ledger, 1, SILENCE_MS + 8000);
            const deadline = Date.now() + SILENCE_MS + 8000;
            while (!readLedger(ledger).some((record) => record.output_tokens === TURN_USAGE.output_tokens) && Date.now() < deadline) {
                await sleep(100);
            }
        } catch {
            // The test reports the missing record with the relay log.
        }
        result.records = readLedger(ledger);
        result.upstreamConnections = upstream.connections.length;
    } catch (error) {
        result.error = error.stack ?? String(error);
    } finally {
        if (relay) {
            result.relayExit = await relay.stop();
            result.relayLines = relay.lines;
        }
        if (upstream) {
            await upstream.close();
        }
        await fsp.rm(dir, { recursive: true, force: true });
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
