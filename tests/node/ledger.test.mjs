// Usage ledger: one JSON line per turn with the usage of its terminal event, records for
// turns whose client or upstream went away, shutdown, rotation, concurrent workers and a
// full filesystem.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';

import {
    LOOPBACK,
    OPCODE,
    RawClient,
    makeTempDir,
    openClient,
    responseCreate,
    sha256Hex,
    sleep,
    startRelay,
    startSharedStack,
    startStack,
    upgradeRequest,
    withTimeout,
} from './lib/harness.mjs';
import {
    createdEvent,
    deltaEvent,
    fillFilesystem,
    mountTmpfs,
    onlyConn,
    prewarmCreate,
    readLedger,
    serverFrame,
    terminalEvent,
    traces,
    unmount,
    usageOf,
    waitForRecords,
    waitForTrace,
    writeInPieces,
} from './lib/more.mjs';

const RECORD_KEYS = [
    'ts', 'instance', 'conn', 'client', 'response_id', 'model', 'status',
    'input_tokens', 'cached_tokens', 'output_tokens', 'reasoning_tokens', 'total_tokens',
    'duration_ms', 'first_token_ms', 'client_connected',
];
const TS_FORMAT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function ledgerOf(stack)
{
    return path.join(stack.dir, 'usage.jsonl');
}

// A config whose drain bound is short, so that a test with a turn in flight ends quickly.
function ledgerConfig(openaiWs = {}, gateway = {})
{
    return { gateway, openai_ws: { upstream_drain_timeout_seconds: 1, ...openaiWs } };
}

function assertTokens(record, { input = 0, cached = 0, output = 0, reasoning = 0, total = input + output })
{
    assert.equal(record.input_tokens, input, 'input_tokens');
    assert.equal(record.cached_tokens, cached, 'cached_tokens');
    assert.equal(record.output_tokens, output, 'output_tokens');
    assert.equal(record.reasoning_tokens, reasoning, 'reasoning_tokens');
    assert.equal(record.total_tokens, total, 'total_tokens');
}

function assertUnsettled(record, reason)
{
    assert.equal(record.status, 'unsettled');
    assert.equal(record.reason, reason);
    assert.equal(typeof record.client_connected, 'boolean');
    assertTokens(record, {});
}

// Opens a `ws` client and its upstream connection.
async function connect(stack)
{
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();
    return { client, upstream };
}

// Sends request from the client, lets the upstream respond with events, and waits until the
// client has received every event.
async function runTurn({ client, upstream }, events, request = responseCreate())
{
    await client.send(request);
    await upstream.nextMessage();
    for (const event of events) {
        await upstream.send(event);
    }
    for (const event of events) {
        const message = await client.nextMessage();
        assert.equal(message.data.toString('utf8'), event);
    }
}

function warnLines(relay)
{
    return relay.lines.filter((line) => / level=warn( |$)/.test(line));
}

// ---------------------------------------------------------------------------
// Usage of settled turns

test('completed turn record fields', { timeout: 20000 }, async (t) => {
    const startedAt = Date.now();
    const stack = await startStack(t, { config: ledgerConfig() });
    const { client, upstream } = await connect(stack);

    await client.send(responseCreate('gpt-ledger'));
    await upstream.nextMessage();
    await sleep(150);
    await upstream.send(createdEvent('resp_fields', 'gpt-ledger'));
    await sleep(100);
    await upstream.send(deltaEvent('Hi', 1));
    await sleep(200);
    const usage = usageOf({ input: 17, cached: 3, output: 9, reasoning: 4, total: 26 });
    await upstream.send(terminalEvent({ id: 'resp_fields', model: 'gpt-ledger', usage }));
    for (let i = 0; i < 3; i++) {
        await client.nextMessage();
    }

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assert.deepEqual(Object.keys(record).sort(), [...RECORD_KEYS].sort());
    assert.match(record.ts, TS_FORMAT);
    const recordedAt = Date.parse(record.ts);
    assert.ok(recordedAt >= startedAt - 1000, `ts ${record.ts} is before the test run`);
    assert.ok(recordedAt <= Date.now() + 1000, `ts ${record.ts} is after the test run`);

    const start = traces(stack.relay, 'relay_start');
    assert.equal(start.length, 1);
    assert.equal(record.instance, start[0].instance);
    assert.equal(record.conn, start[0].conn);
    assert.match(record.conn, /^\d+-\d+$/);
    assert.equal(record.client, 'test');
    assert.equal(record.response_id, 'resp_fields');
    assert.equal(record.model, 'gpt-ledger');
    assert.equal(record.status, 'completed');
    assertTokens(record, { input: 17, cached: 3, output: 9, reasoning: 4, total: 26 });

    // The upstream waited 450 ms before the terminal event and 250 ms before the first delta.
    assert.ok(Number.isInteger(record.duration_ms), `duration_ms ${record.duration_ms} is not an integer`);
    assert.ok(record.duration_ms >= 440, `duration_ms ${record.duration_ms}, expected about 450`);
    assert.ok(record.duration_ms < 2000, `duration_ms ${record.duration_ms}, expected about 450`);
    assert.ok(Number.isInteger(record.first_token_ms), `first_token_ms ${record.first_token_ms} is not an integer`);
    assert.ok(record.first_token_ms >= 240, `first_token_ms ${record.first_token_ms}, expected about 250`);
    assert.ok(record.first_token_ms < 1800, `first_token_ms ${record.first_token_ms}, expected about 250`);
    assert.ok(record.first_token_ms <= record.duration_ms, 'first_token_ms is later than duration_ms');
    assert.equal(record.client_connected, true);

    const stat = fs.statSync(ledgerOf(stack));
    assert.equal(stat.mode & 0o777, 0o600, `ledger mode is ${(stat.mode & 0o777).toString(8)}`);
});

test('usage aliases accepted', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    const usage = {
        prompt_tokens: 11,
        prompt_tokens_details: { cached_tokens: 2 },
        completion_tokens: 5,
        completion_tokens_details: { reasoning_tokens: 1 },
        total_tokens: 16,
    };
    await runTurn(connection, [terminalEvent({ id: 'resp_alias', usage })]);

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assert.equal(record.status, 'completed');
    assertTokens(record, { input: 11, cached: 2, output: 5, reasoning: 1, total: 16 });
});

test('absent fields recorded as zero and null', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    // Neither the request nor the events name a model.
    const request = JSON.stringify({ type: 'response.create', input: [] });
    await runTurn(connection, [terminalEvent({ id: 'resp_sparse', model: null, usage: { output_tokens: 4 } })], request);
    await runTurn(connection, [terminalEvent({ id: 'resp_no_usage', model: null })], request);

    const [sparse, noUsage] = await waitForRecords(ledgerOf(stack), 2);
    assert.equal(sparse.response_id, 'resp_sparse');
    assert.equal(sparse.model, null);
    assert.equal(sparse.first_token_ms, null);
    assertTokens(sparse, { output: 4, total: 0 });
    assert.equal(noUsage.response_id, 'resp_no_usage');
    assert.equal(noUsage.status, 'completed');
    assertTokens(noUsage, {});
});

test('longest escaped strings keep whole lines', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);
    // Control characters are written back as \u00XX, six bytes each, the worst case per byte.
    const worst = '\u0001'.repeat(200);

    await runTurn(connection, [terminalEvent({ id: worst, model: worst, status: worst, usage: usageOf({ input: 3 }) })]);

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assert.equal(record.response_id, '\u0001'.repeat(128));
    assert.equal(record.model, '\u0001'.repeat(128));
    assert.equal(record.status, '\u0001'.repeat(128));
    assert.equal(record.input_tokens, 3);
    assert.equal(record.client_connected, true);
});

test('non-object usage recorded as zeros', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    await runTurn(connection, [terminalEvent({ id: 'resp_bad_usage', usage: 'not an object' })]);

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assert.equal(record.status, 'completed');
    assert.equal(record.response_id, 'resp_bad_usage');
    assertTokens(record, {});
    await sleep(200);
    assert.equal(warnLines(stack.relay).length, 1, `expected one warning, got:\n${warnLines(stack.relay).join('\n')}`);
});

test('non-numeric token recorded as zero', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    const usage = { ...usageOf({ input: 7, output: 3 }), input_tokens: 'seven' };
    await runTurn(connection, [terminalEvent({ id: 'resp_bad_field', usage })]);

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assert.equal(record.status, 'completed');
    assert.equal(record.input_tokens, 0);
    await sleep(200);
    assert.equal(warnLines(stack.relay).length, 1, `expected one warning, got:\n${warnLines(stack.relay).join('\n')}`);
});

test('error then response.failed recorded once', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    const error = JSON.stringify({ type: 'error', error: { type: 'server_error', code: 'server_error', message: 'test failure' } });
    const failed = terminalEvent({ type: 'response.failed', id: 'resp_err', status: 'failed' });
    await runTurn(connection, [createdEvent('resp_err'), error, failed]);
    // A later turn shows that nothing else was recorded for the failed one.
    await runTurn(connection, [terminalEvent({ id: 'resp_after_err', usage: usageOf({ input: 1, output: 1 }) })]);

    const records = await waitForRecords(ledgerOf(stack), 2);
    await sleep(300);
    const all = readLedger(ledgerOf(stack));
    assert.equal(all.length, 2, `expected 2 records, got ${JSON.stringify(all)}`);
    assert.equal(records[0].status, 'error');
    assert.equal(records[0].response_id, 'resp_err');
    assert.equal(records[1].response_id, 'resp_after_err');
});

test('error without response id recorded once', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    const error = JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', code: 'bad', message: 'test failure' } });
    const failed = terminalEvent({ type: 'response.failed', id: 'resp_failed_later', status: 'failed' });
    await runTurn(connection, [error, failed]);
    await runTurn(connection, [terminalEvent({ id: 'resp_after_error', usage: usageOf({ input: 1, output: 1 }) })]);

    await waitForRecords(ledgerOf(stack), 2);
    await sleep(300);
    const records = readLedger(ledgerOf(stack));
    assert.equal(records.length, 2, `expected 2 records, got ${JSON.stringify(records)}`);
    assert.equal(records[0].status, 'error');
    assert.equal(records[0].response_id, null);
    assert.equal(records[1].response_id, 'resp_after_error');
    assert.equal(records[1].status, 'completed');
});

test('turns settle in order opened', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const { client, upstream } = await connect(stack);

    // Two turns open at once: an error without id settles the older one.
    await client.send(responseCreate('gpt-test', 'first'));
    await client.send(responseCreate('gpt-test', 'second'));
    await upstream.nextMessage();
    await upstream.nextMessage();
    await upstream.send(JSON.stringify({ type: 'error', error: { type: 'server_error', code: 'x', message: 'first failed' } }));
    await upstream.send(terminalEvent({ id: 'resp_second', usage: usageOf({ input: 2, output: 2 }) }));
    await client.nextMessage();
    await client.nextMessage();

    const records = await waitForRecords(ledgerOf(stack), 2);
    assert.equal(records[0].status, 'error');
    assert.equal(records[1].status, 'completed');
    assert.equal(records[1].response_id, 'resp_second');
    assert.equal(records[1].input_tokens, 2);
});

test('prewarm turn recorded', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    await runTurn(connection, [
        createdEvent('resp_prewarm'),
        terminalEvent({ id: 'resp_prewarm', usage: usageOf({ input: 5 }) }),
    ], prewarmCreate());
    await runTurn(connection, [terminalEvent({ id: 'resp_real', usage: usageOf({ input: 6, output: 2 }) })]);

    const records = await waitForRecords(ledgerOf(stack), 2);
    assert.equal(records[0].response_id, 'resp_prewarm');
    assert.equal(records[0].status, 'completed');
    assertTokens(records[0], { input: 5 });
    assert.equal(records[1].response_id, 'resp_real');
});

// ---------------------------------------------------------------------------
// Usage read from split and large terminal events

test('usage split at every TCP byte', { timeout: 60000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);
    const { client, upstream } = connection;

    const expected = [];
    for (let cut = 1; ; cut++) {
        const usage = usageOf({ input: 1000 + cut, cached: cut, output: 2000 + cut, reasoning: cut % 7 });
        const event = terminalEvent({ id: `resp_cut_${cut}`, usage });
        const frame = serverFrame({ payload: event });
        if (cut >= frame.length) {
            break;
        }
        await client.send(responseCreate());
        await upstream.nextMessage();
        await writeInPieces(upstream, frame, [cut]);
        const message = await client.nextMessage();
        assert.equal(message.data.toString('utf8'), event);
        expected.push({ cut, usage });
    }

    // One more turn whose terminal event arrives one byte per write.
    const dribbleUsage = usageOf({ input: 77, cached: 7, output: 66, reasoning: 6 });
    const dribble = terminalEvent({ id: 'resp_dribble', usage: dribbleUsage });
    const dribbleFrame = serverFrame({ payload: dribble });
    await client.send(responseCreate());
    await upstream.nextMessage();
    await writeInPieces(upstream, dribbleFrame, Array.from({ length: dribbleFrame.length - 1 }, (_, i) => i + 1), 1);
    assert.equal((await client.nextMessage(10000)).data.toString('utf8'), dribble);

    const records = await waitForRecords(ledgerOf(stack), expected.length + 1, 10000);
    assert.equal(records.length, expected.length + 1);
    expected.forEach(({ cut, usage }, index) => {
        const record = records[index];
        assert.equal(record.response_id, `resp_cut_${cut}`);
        assert.equal(record.input_tokens, usage.input_tokens, `input_tokens with the cut at byte ${cut}`);
        assert.equal(record.cached_tokens, usage.input_tokens_details.cached_tokens, `cached_tokens with the cut at byte ${cut}`);
        assert.equal(record.output_tokens, usage.output_tokens, `output_tokens with the cut at byte ${cut}`);
        assert.equal(record.reasoning_tokens, usage.output_tokens_details.reasoning_tokens, `reasoning_tokens with the cut at byte ${cut}`);
        assert.equal(record.total_tokens, usage.total_tokens, `total_tokens with the cut at byte ${cut}`);
    });
    assert.equal(records.at(-1).response_id, 'resp_dribble');
    assertTokens(records.at(-1), { input: 77, cached: 7, output: 66, reasoning: 6 });
});

test('usage split into fragments at every byte', { timeout: 60000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const { client, upstream } = await connect(stack);

    const expected = [];
    for (let cut = 1; ; cut++) {
        const usage = usageOf({ input: 3000 + cut, cached: cut, output: 4000 + cut, reasoning: cut % 5 });
        const event = Buffer.from(terminalEvent({ id: `resp_frag_${cut}`, usage }));
        if (cut >= event.length) {
            break;
        }
        await client.send(responseCreate());
        await upstream.nextMessage();
        const frames = Buffer.concat([
            serverFrame({ opcode: OPCODE.TEXT, payload: event.subarray(0, cut), fin: false }),
            serverFrame({ opcode: OPCODE.CONTINUATION, payload: event.subarray(cut) }),
        ]);
        await writeInPieces(upstream, frames, []);
        const message = await client.nextMessage();
        assert.deepEqual(message.data, event);
        expected.push({ cut, usage });
    }

    const records = await waitForRecords(ledgerOf(stack), expected.length, 10000);
    assert.equal(records.length, expected.length);
    expected.forEach(({ cut, usage }, index) => {
        const record = records[index];
        assert.equal(record.response_id, `resp_frag_${cut}`);
        assert.equal(record.input_tokens, usage.input_tokens, `input_tokens with the fragment cut at byte ${cut}`);
        assert.equal(record.cached_tokens, usage.input_tokens_details.cached_tokens, `cached_tokens with the fragment cut at byte ${cut}`);
        assert.equal(record.output_tokens, usage.output_tokens, `output_tokens with the fragment cut at byte ${cut}`);
        assert.equal(record.reasoning_tokens, usage.output_tokens_details.reasoning_tokens, `reasoning_tokens with the fragment cut at byte ${cut}`);
        assert.equal(record.total_tokens, usage.total_tokens, `total_tokens with the fragment cut at byte ${cut}`);
    });
});

test('12 MB terminal event recorded', { timeout: 120000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    await runTurn(connection, [terminalEvent({ id: 'resp_small', usage: usageOf({ input: 1 }) })]);

    // An image result of 12 MiB in base64 comes before the usage, as in image generation.
    const image = crypto.randomBytes(9 * 1024 * 1024).toString('base64');
    const event = terminalEvent({
        id: 'resp_image',
        extra: { output: [{ id: 'ig_1', type: 'image_generation_call', status: 'completed', result: image }] },
        usage: usageOf({ input: 40, cached: 8, output: 1500, reasoning: 30 }),
    });
    const { client, upstream } = connection;
    await client.send(responseCreate());
    await upstream.nextMessage();
    const sent = upstream.send(event);
    const message = await client.nextMessage(90000);
    await sent;
    assert.equal(message.data.length, Buffer.byteLength(event));
    assert.equal(sha256Hex(message.data), sha256Hex(event));

    const records = await waitForRecords(ledgerOf(stack), 2, 10000);
    assert.equal(records[1].response_id, 'resp_image');
    assert.equal(records[1].status, 'completed');
    assertTokens(records[1], { input: 40, cached: 8, output: 1500, reasoning: 30 });
});

// ---------------------------------------------------------------------------
// Turns whose client or upstream went away

test('client reset mid-turn recorded', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig({ upstream_drain_timeout_seconds: 3 }) });
    const raw = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();

    raw.sendText(responseCreate());
    await upstream.nextMessage();
    const openedAt = Date.now();
    await upstream.send(createdEvent('resp_reset'));
    await raw.nextFrame();
    await sleep(300);
    raw.reset();

    const disconnected = await waitForTrace(stack.relay, 'client_disconnected');
    assert.equal(disconnected.graceful, 'true');
    await sleep(1000 - (Date.now() - openedAt));
    assert.ok(upstream.isOpen, 'the relay closed the upstream before the usage arrived');
    await upstream.send(deltaEvent('unseen'));
    await upstream.send(terminalEvent({ id: 'resp_reset', usage: usageOf({ input: 30, cached: 10, output: 12, reasoning: 5 }) }));
    const upstreamClose = await withTimeout(upstream.closed, 3000, 'the relay to close the upstream after the terminal event');
    assert.equal(upstreamClose.code, 1001);

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assert.equal(record.status, 'completed');
    assert.equal(record.response_id, 'resp_reset');
    assert.equal(record.client_connected, false);
    assertTokens(record, { input: 30, cached: 10, output: 12, reasoning: 5 });
    assert.ok(record.duration_ms >= 950, `duration_ms ${record.duration_ms}, expected about 1000`);
});

test('drain timeout recorded unsettled', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig({ upstream_drain_timeout_seconds: 1 }) });
    const { client, upstream } = await connect(stack);

    await client.send(responseCreate());
    await upstream.nextMessage();
    await upstream.send(createdEvent('resp_drain'));
    await client.nextMessage();
    client.ws.close(1000);
    await client.waitClosed();
    const clientGoneAt = Date.now();

    const upstreamClose = await withTimeout(upstream.closed, 4000, 'the relay to close the upstream after the drain bound');
    const drainedFor = Date.now() - clientGoneAt;
    assert.equal(upstreamClose.code, 1001);
    assert.ok(drainedFor >= 800, `upstream closed ${drainedFor} ms after the client left, expected about 1000`);
    assert.ok(drainedFor <= 2500, `upstream closed ${drainedFor} ms after the client left, expected about 1000`);
    await waitForTrace(stack.relay, 'drain_timeout');

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assertUnsettled(record, 'drain_timeout');
    assert.equal(record.response_id, 'resp_drain');
    assert.equal(record.client_connected, false);
});

test('upstream reset recorded upstream_lost', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const { client, upstream } = await connect(stack);

    await client.send(responseCreate());
    await upstream.nextMessage();
    await upstream.send(createdEvent('resp_lost'));
    await client.nextMessage();
    upstream.reset();
    await client.waitClosed();

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assertUnsettled(record, 'upstream_lost');
    assert.equal(record.response_id, 'resp_lost');
});

test('upstream Close recorded upstream_closed', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const { client, upstream } = await connect(stack);

    await client.send(responseCreate());
    await upstream.nextMessage();
    await upstream.send(createdEvent('resp_closed'));
    await client.nextMessage();
    upstream.ws.close(4000, 'upstream going away');
    const close = await client.waitClosed();
    assert.equal(close.code, 4000);

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assertUnsettled(record, 'upstream_closed');
    assert.equal(record.response_id, 'resp_closed');
});

// ---------------------------------------------------------------------------
// Shutdown, rotation and restarts

// Returns true when a TCP connection to 127.0.0.1:port is refused.
function isConnectionRefused(port)
{
    return new Promise((resolve) => {
        const socket = net.connect({ host: LOOPBACK, port });
        socket.once('connect', () => {
            socket.destroy();
            resolve(false);
        });
        socket.once('error', (error) => resolve(error.code === 'ECONNREFUSED'));
    });
}

// Returns true unless a new connection gets a 101 from the relay.
async function isUpgradeRefused(port)
{
    let client;
    try {
        client = await RawClient.connect(port, 1000);
    } catch {
        return true;
    }
    try {
        client.write(upgradeRequest());
        const response = await client.readResponse(2000).catch(() => null);
        return response === null || response.status !== 101;
    } finally {
        client.destroy();
    }
}

test('SIGTERM lets turn in flight finish', { timeout: 30000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig({ upstream_drain_timeout_seconds: 3 }) });
    const idle = await connect(stack);
    const busy = await connect(stack);

    await busy.client.send(responseCreate());
    await busy.upstream.nextMessage();
    await busy.upstream.send(createdEvent('resp_sigterm'));
    await busy.client.nextMessage();

    stack.relay.child.kill('SIGTERM');
    const idleClose = await idle.client.waitClosed(1500);
    assert.equal(idleClose.code, 1001);
    assert.ok(await isUpgradeRefused(stack.port), 'the relay accepted a new connection after SIGTERM');

    const terminal = terminalEvent({ id: 'resp_sigterm', usage: usageOf({ input: 9, output: 3 }) });
    await busy.upstream.send(terminal);
    const relayed = await busy.client.nextMessage();
    assert.equal(relayed.data.toString('utf8'), terminal);

    const exit = await withTimeout(stack.relay.exited, 5000, 'the relay to exit after SIGTERM');
    assert.equal(exit.code, 0);
    const records = readLedger(ledgerOf(stack));
    assert.equal(records.length, 1);
    assert.equal(records[0].status, 'completed');
    assert.equal(records[0].response_id, 'resp_sigterm');
    assert.equal(records[0].client_connected, true);
    assertTokens(records[0], { input: 9, output: 3 });
});

test('SIGTERM records unfinished turn as shutdown', { timeout: 30000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig({ upstream_drain_timeout_seconds: 1 }) });
    const { client, upstream } = await connect(stack);

    await client.send(responseCreate());
    await upstream.nextMessage();
    await upstream.send(createdEvent('resp_shutdown'));
    await client.nextMessage();

    const signalledAt = Date.now();
    stack.relay.child.kill('SIGTERM');
    const exit = await withTimeout(stack.relay.exited, 5000, 'the relay to exit after SIGTERM');
    const exitedAfter = Date.now() - signalledAt;
    assert.equal(exit.code, 0);
    assert.ok(exitedAfter >= 800, `the relay exited ${exitedAfter} ms after SIGTERM, before the 1 s drain bound`);

    const records = readLedger(ledgerOf(stack));
    assert.equal(records.length, 1);
    assertUnsettled(records[0], 'shutdown');
    assert.equal(records[0].response_id, 'resp_shutdown');
});

test('SIGHUP reopens ledger', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);
    const ledger = ledgerOf(stack);

    await runTurn(connection, [terminalEvent({ id: 'resp_before_rotation', usage: usageOf({ input: 1 }) })]);
    await waitForRecords(ledger, 1);
    const rotated = `${ledger}.1`;
    await fsp.rename(ledger, rotated);
    stack.relay.child.kill('SIGHUP');

    // The relay may create the new file at once or with the next record.
    const deadline = Date.now() + 1000;
    while (!fs.existsSync(ledger) && Date.now() < deadline) {
        await sleep(20);
    }
    await runTurn(connection, [terminalEvent({ id: 'resp_after_rotation', usage: usageOf({ input: 2 }) })]);

    const [record] = await waitForRecords(ledger, 1);
    assert.equal(record.response_id, 'resp_after_rotation');
    assert.equal(fs.statSync(ledger).mode & 0o777, 0o600);
    const old = readLedger(rotated);
    assert.equal(old.length, 1);
    assert.equal(old[0].response_id, 'resp_before_rotation');
    assert.equal(stack.relay.exitInfo, null, 'SIGHUP stopped the relay');
});

test('restart appends to ledger', { timeout: 30000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const ledger = ledgerOf(stack);

    await runTurn(await connect(stack), [terminalEvent({ id: 'resp_first_run', usage: usageOf({ input: 1 }) })]);
    await waitForRecords(ledger, 1);
    const firstText = fs.readFileSync(ledger, 'utf8');
    const exit = await stack.relay.stop();
    assert.equal(exit.code, 0);

    // SIGTERM shuts the listener down before exit, so the port is free at once.
    assert.ok(await isConnectionRefused(stack.port), `port ${stack.port} still accepts after exit`);
    const relay = await startRelay({ configPath: stack.configPath, port: stack.port });
    t.after(() => relay.stop());
    const client = await openClient(stack.port);
    t.after(() => client.terminate());
    const upstream = await stack.upstream.nextConnection();
    await runTurn({ client, upstream }, [terminalEvent({ id: 'resp_second_run', usage: usageOf({ input: 2 }) })]);

    const records = await waitForRecords(ledger, 2);
    assert.ok(fs.readFileSync(ledger, 'utf8').startsWith(firstText), 'the restart changed the existing records');
    assert.equal(records[0].response_id, 'resp_first_run');
    assert.equal(records[1].response_id, 'resp_second_run');
    assert.notEqual(records[0].instance, records[1].instance);
});

test('record on disk before SIGKILL', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: ledgerConfig() });
    const connection = await connect(stack);

    await runTurn(connection, [terminalEvent({ id: 'resp_killed', usage: usageOf({ input: 3 }) })]);
    // Records are flushed within 100 ms, so 300 ms leaves room for scheduling.
    await sleep(300);
    stack.relay.child.kill('SIGKILL');
    await withTimeout(stack.relay.exited, 3000, 'the relay to exit after SIGKILL');

    const records = readLedger(ledgerOf(stack));
    assert.equal(records.length, 1);
    assert.equal(records[0].response_id, 'resp_killed');
});

// ---------------------------------------------------------------------------
// Concurrent writers and a full filesystem

// Responds at once to every response.create whose input text is "c<client> t<turn>" with
// response.created and response.completed, with tokens derived from both numbers.
function respondToTurns(connection)
{
    connection.ws.on('message', (data) => {
        const request = JSON.parse(data.toString('utf8'));
        const [clientText, turnText] = request.input[0].content[0].text.split(' ');
        const clientIndex = Number(clientText.slice(1));
        const turn = Number(turnText.slice(1));
        const id = `resp_c${clientIndex}_t${turn}`;
        connection.send(createdEvent(id)).catch(() => {});
        connection.send(terminalEvent({ id, usage: usageOf({ input: clientIndex * 10 + turn, output: turn }) })).catch(() => {});
    });
}

test('two workers append whole lines', { timeout: 60000 }, async (t) => {
    const clients = 40;
    const turnsPerClient = 3;
    const stack = await startStack(t, {
        config: ledgerConfig({}, { workers: 2 }),
        upstream: { onConnection: respondToTurns },
    });

    const runs = [];
    for (let index = 0; index < clients; index++) {
        runs.push((async () => {
            const client = await stack.openClient({ ms: 10000 });
            for (let turn = 0; turn < turnsPerClient; turn++) {
                await client.send(responseCreate('gpt-test', `c${index} t${turn}`));
                await client.nextMessage(10000);
                await client.nextMessage(10000);
            }
        })());
    }
    await withTimeout(Promise.all(runs), 40000, 'all clients to finish their turns');

    const total = clients * turnsPerClient;
    await waitForRecords(ledgerOf(stack), total, 10000);
    await sleep(300);
    const records = readLedger(ledgerOf(stack));
    assert.equal(records.length, total);

    const seen = new Map();
    for (const record of records) {
        const match = /^resp_c(\d+)_t(\d+)$/.exec(record.response_id);
        assert.ok(match, `unexpected response_id ${record.response_id}`);
        assert.ok(!seen.has(record.response_id), `${record.response_id} recorded twice`);
        seen.set(record.response_id, record);
        assert.equal(record.input_tokens, Number(match[1]) * 10 + Number(match[2]), `input_tokens of ${record.response_id}`);
    }
    assert.equal(seen.size, total);

    for (let index = 0; index < clients; index++) {
        const conns = new Set();
        for (let turn = 0; turn < turnsPerClient; turn++) {
            conns.add(seen.get(`resp_c${index}_t${turn}`).conn);
        }
        assert.equal(conns.size, 1, `the turns of client ${index} carry different conn values`);
    }
    const workers = new Set(records.map((record) => record.conn.split('-')[0]));
    assert.ok(workers.size >= 2, `all ${total} records came from worker(s) ${[...workers].join(', ')}: the test did not run two writers`);
});

test('full filesystem records retried', { timeout: 60000 }, async (t) => {
    const mountDir = await makeTempDir('wsrelay-tmpfs-');
    t.after(() => fsp.rm(mountDir, { recursive: true, force: true }));
    const mountFailure = await mountTmpfs(mountDir, '64k');
    if (mountFailure !== null) {
        console.log(`skipping the full-filesystem test: ${mountFailure}`);
        t.skip(mountFailure);
        return;
    }

    const ledger = path.join(mountDir, 'usage.jsonl');
    try {
        const stack = await startSharedStack({ config: { ...ledgerConfig(), usage: { ledger_path: ledger } } });
        try {
            const connection = await connect(stack);
            const filler = fillFilesystem(mountDir, 1024 * 1024);

            const ids = [];
            for (let i = 0; i < 5; i++) {
                ids.push(`resp_full_${i}`);
                await runTurn(connection, [terminalEvent({ id: ids[i], usage: usageOf({ input: 100 + i, output: i }) })]);
            }
            // Long enough for at least one retry to fail as well.
            await sleep(1500);
            assert.equal(readLedger(ledger).length, 0, 'records were written although the filesystem was full');

            fs.rmSync(filler);
            const records = await waitForRecords(ledger, ids.length, 10000);
            await sleep(500);
            const all = readLedger(ledger);
            assert.equal(all.length, ids.length, `expected ${ids.length} records after space returned, got ${all.length}`);
            assert.deepEqual(records.map((record) => record.response_id), ids);
            records.forEach((record, i) => assert.equal(record.input_tokens, 100 + i));
            assert.equal(stack.relay.exitInfo, null);
        } finally {
            await stack.teardown();
        }
    } finally {
        await unmount(mountDir);
    }
});
