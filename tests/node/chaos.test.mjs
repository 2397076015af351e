// Many concurrent turns with random failures on both legs: the relay must stay up, upgrade
// every client, and write exactly one ledger record for every turn that reached the upstream.

import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

import { WebSocket, WebSocketServer } from 'ws';

import {
    CLIENT_KEY, LOOPBACK, makeTempDir, sleep, startRelay, withTimeout, writeRelayConfig,
} from './lib/harness.mjs';

const CONNECTIONS = 120;
const TURNS_PER_CONNECTION = 3;

// A small deterministic generator, so a failing run can be repeated with the same choices.
function makeRandom(seed)
{
    let state = seed >>> 0;
    return () => {
        state = (state * 1664525 + 1013904223) >>> 0;
        return state / 0x100000000;
    };
}

// Upstream behaviour per turn, picked by the client through the model name.
const UPSTREAM_ACTIONS = ['complete', 'complete', 'complete', 'reset', 'close', 'error', 'slow'];
// Client behaviour per turn.
const CLIENT_ACTIONS = ['wait', 'wait', 'wait', 'wait', 'reset', 'close'];

function startChaosUpstream()
{
    const server = new WebSocketServer({ host: LOOPBACK, port: 0 });
    const state = { turns: 0, sockets: new Set() };

    server.on('connection', (socket) => {
        state.sockets.add(socket);
        socket.on('close', () => state.sockets.delete(socket));
        socket.on('error', () => {});
        socket.on('message', (data) => {
            const request = JSON.parse(data.toString());
            if (request.type !== 'response.create') {
                return;
            }
            state.turns++;
            const id = `resp_chaos_${state.turns}`;
            const action = request.model;
            socket.send(JSON.stringify({ type: 'response.created', response: { id, status: 'in_progress' } }));
            socket.send(JSON.stringify({ type: 'response.output_text.delta', delta: 'x'.repeat(300) }));
            const finish = () => {
                if (socket.readyState !== WebSocket.OPEN) {
                    return;
                }
                if (action === 'reset') {
                    socket._socket.resetAndDestroy();
                } else if (action === 'close') {
                    socket.close(4001, 'chaos');
                } else if (action === 'error') {
                    socket.send(JSON.stringify({ type: 'error', error: { message: 'chaos' } }));
                } else {
                    socket.send(JSON.stringify({
                        type: 'response.completed',
                        response: { id, status: 'completed', usage: { input_tokens: 5, output_tokens: 7, total_tokens: 12 } },
                    }));
                }
            };
            setTimeout(finish, action === 'slow' ? 400 : 20);
        });
    });
    return new Promise((resolve) => server.on('listening', () => resolve({ server, state })));
}

// Runs up to TURNS_PER_CONNECTION turns on one connection. Returns the number of
// response.create messages sent and whether the upgrade succeeded.
async function runClient(port, random)
{
    const socket = new WebSocket(`ws://${LOOPBACK}:${port}/v1/responses`, {
        headers: { Authorization: `Bearer ${CLIENT_KEY}` },
    });
    socket.on('error', () => {});
    const opened = await new Promise((resolve) => {
        socket.once('open', () => resolve(true));
        socket.once('close', () => resolve(false));
    });
    if (!opened) {
        return { sent: 0, upgraded: false };
    }
    let sent = 0;
    const closed = new Promise((resolve) => socket.once('close', resolve));
    for (let turn = 0; turn < TURNS_PER_CONNECTION; turn++) {
        if (socket.readyState !== WebSocket.OPEN) {
            break;
        }
        const upstreamAction = UPSTREAM_ACTIONS[Math.floor(random() * UPSTREAM_ACTIONS.length)];
        const clientAction = CLIENT_ACTIONS[Math.floor(random() * CLIENT_ACTIONS.length)];
        const terminal = new Promise((resolve) => {
            const onMessage = (data) => {
                const type = JSON.parse(data.toString()).type;
                if (['response.completed', 'response.failed', 'error'].includes(type)) {
                    socket.off('message', onMessage);
                    resolve(type);
                }
            };
            socket.on('message', onMessage);
        });
        socket.send(JSON.stringify({ type: 'response.create', model: upstreamAction }));
        sent++;
        if (clientAction === 'reset') {
            await sleep(Math.floor(random() * 40));
            socket._socket.resetAndDestroy();
            break;
        }
        if (clientAction === 'close') {
            await sleep(Math.floor(random() * 40));
            socket.close(1000, 'done');
            break;
        }
        await Promise.race([terminal, closed, sleep(3000)]);
    }
    if (socket.readyState === WebSocket.OPEN) {
        socket.close(1000, 'done');
    }
    await Promise.race([closed, sleep(5000)]);
    return { sent, upgraded: true };
}

test('random failures lose no turn', { timeout: 120000 }, async (t) => {
    const dir = await makeTempDir();
    t.after(() => fsp.rm(dir, { recursive: true, force: true }));
    const { server, state } = await startChaosUpstream();
    t.after(() => {
        for (const socket of state.sockets) {
            socket.terminate();
        }
        server.close();
    });
    const { configPath, port } = await writeRelayConfig(dir, {
        upstreamUrl: `ws://${LOOPBACK}:${server.address().port}/v1/responses`,
        openai_ws: {
            upstream_drain_timeout_seconds: 2,
            passthrough_downstream_ping_interval_seconds: 0.5,
            passthrough_downstream_ping_timeout_seconds: 0.25,
        },
    });
    const relay = await startRelay({ configPath, port });
    t.after(() => relay.stop());

    const random = makeRandom(Number(process.env.WR_CHAOS_SEED ?? 20261204));
    const results = await withTimeout(
        Promise.all(Array.from({ length: CONNECTIONS }, () => runClient(port, makeRandom(Math.floor(random() * 1e9))))),
        60000, 'every chaos client to finish');

    const upgraded = results.filter((result) => result.upgraded).length;
    assert.equal(upgraded, CONNECTIONS, 'every client got its 101');

    // A turn the client sent may not have reached the upstream (reset before it was relayed),
    // so the ledger is compared with what the upstream saw.
    await sleep(3000); // the drain timeout plus slack, so every draining turn has settled
    const ledgerPath = path.join(dir, 'usage.jsonl');
    const lines = (await fsp.readFile(ledgerPath, 'utf8')).split('\n').filter(Boolean);
    const records = lines.map((line) => JSON.parse(line));
    assert.equal(records.length, state.turns, 'one ledger record per turn the upstream received');

    const ids = new Set(records.map((record) => record.response_id));
    assert.equal(ids.size, records.length, 'no turn recorded twice');
    for (const record of records) {
        assert.ok(['completed', 'error', 'unsettled'].includes(record.status), `unexpected status ${record.status}`);
    }

    // The relay is still healthy: a fresh turn completes.
    const check = await runClient(port, () => 0);
    assert.equal(check.sent, TURNS_PER_CONNECTION);
    assert.equal(relay.child.exitCode, null, 'the relay is still running');
    assert.equal(relay.linesMatching(/runtime error|AddressSanitizer/).length, 0);
});
