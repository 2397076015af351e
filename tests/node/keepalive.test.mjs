// Downstream keepalive: Ping/Pong on idle client connections, keepalive failure as a
// graceful disconnect, the refused-timer path, an idle-sensitive proxy in front of the
// relay, and the opt-in {"type":"keepalive"} event.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

import {
    OPCODE,
    makeTempDir,
    openClient,
    parseClosePayload,
    relayEnv,
    responseCreate,
    runRelay,
    sleep,
    startStack,
    withTimeout,
    writeRelayConfig,
} from './lib/harness.mjs';
import {
    HAPROXY_BIN,
    respondToPings,
    createdEvent,
    deltaEvent,
    gaps,
    onlyConn,
    recordMessages,
    recordPingTimes,
    startHaproxy,
    terminalEvent,
    traces,
    usageOf,
    waitForRecords,
    waitForTrace,
    watchRawFrames,
} from './lib/more.mjs';

const INTERVAL_MS = 1000;
const TIMEOUT_MS = 500;
// Allowance for timer and scheduling delays on a busy two-core machine.
const SLACK_MS = 700;
// A Ping may arrive a little less than the interval after the event it is measured from,
// because both timestamps are taken at the client.
const EARLY_MS = 150;

// Relay config with Pings every second and a half-second Pong deadline. The write timeout
// is long, so a stalled client is detected by the keepalive, not by the write timeout.
// The short drain bound keeps the teardown of a test with a turn in flight short.
function keepaliveConfig(openaiWs = {}, gateway = {})
{
    return {
        gateway,
        openai_ws: {
            passthrough_downstream_ping_interval_seconds: INTERVAL_MS / 1000,
            passthrough_downstream_ping_timeout_seconds: TIMEOUT_MS / 1000,
            write_timeout_seconds: 30,
            upstream_drain_timeout_seconds: 1,
            ...openaiWs,
        },
    };
}

function ledgerOf(stack)
{
    return path.join(stack.dir, 'usage.jsonl');
}

// Opens a `ws` client and starts a turn. Resolves once the upstream has the response.create.
async function startTurn(stack)
{
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();
    await client.send(responseCreate());
    await upstream.nextMessage();
    return { client, upstream };
}

// Opens a raw client that records frame arrival times and starts a turn on it.
async function startRawTurn(stack)
{
    const raw = await stack.rawUpgrade();
    watchRawFrames(raw);
    const upstream = await stack.upstream.nextConnection();
    raw.sendText(responseCreate());
    await upstream.nextMessage();
    return { raw, upstream };
}

function assertBetween(value, low, high, label)
{
    assert.ok(value >= low, `${label} is ${value} ms, expected at least ${low} ms`);
    assert.ok(value <= high, `${label} is ${value} ms, expected at most ${high} ms`);
}

function keepaliveMessages(messages)
{
    return messages.filter((message) => message.text.includes('"keepalive"'));
}

// ---------------------------------------------------------------------------
// Ping timing

test('no Ping before first business write', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig() });
    const { client, upstream } = await startTurn(stack);
    const pingTimes = recordPingTimes(client);

    await sleep(INTERVAL_MS * 2 + TIMEOUT_MS);
    assert.equal(pingTimes.length, 0, 'the relay sent a Ping before anything was relayed downstream');
    assert.equal(traces(stack.relay, 'downstream_ping_ok').length, 0);

    // The first relayed event starts the keepalive.
    await upstream.send(createdEvent('resp_late_start'));
    await client.nextMessage();
    const firstWriteAt = Date.now();
    await sleep(INTERVAL_MS + SLACK_MS);
    assert.ok(pingTimes.length >= 1, 'no Ping within the interval after the first relayed event');
    assertBetween(pingTimes[0] - firstWriteAt, INTERVAL_MS - EARLY_MS, INTERVAL_MS + SLACK_MS,
        'time from the first relayed event to the first Ping');
});

test('Pings repeat during silent turn', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig({}, { log_level: 'debug' }) });
    const { client, upstream } = await startTurn(stack);
    const pingTimes = recordPingTimes(client);

    await upstream.send(createdEvent('resp_long'));
    await client.nextMessage();
    const lastWriteAt = Date.now();
    await sleep(INTERVAL_MS * 4 + 300);

    assert.ok(pingTimes.length >= 3, `expected at least 3 Pings in ${INTERVAL_MS * 4 + 300} ms of silence, got ${pingTimes.length}`);
    assertBetween(pingTimes[0] - lastWriteAt, INTERVAL_MS - EARLY_MS, INTERVAL_MS + SLACK_MS, 'time to the first Ping');
    gaps(pingTimes).forEach((gap, index) => {
        assertBetween(gap, INTERVAL_MS - EARLY_MS, INTERVAL_MS + SLACK_MS, `gap between Ping ${index + 1} and ${index + 2}`);
    });
    for (const payload of client.pings) {
        assert.ok(payload.length > 0, 'a keepalive Ping has an empty payload');
    }

    // The client's Pongs keep the turn alive to its end.
    const terminal = terminalEvent({ id: 'resp_long', usage: usageOf({ input: 5, output: 1 }) });
    await upstream.send(terminal);
    const relayed = await client.nextMessage();
    assert.equal(relayed.data.toString('utf8'), terminal);
    assert.equal(client.closeInfo, null);

    const conn = onlyConn(stack.relay);
    assert.equal(traces(stack.relay, 'downstream_ping_failed', conn).length, 0);
    const oks = traces(stack.relay, 'downstream_ping_ok', conn);
    assert.ok(oks.length >= pingTimes.length - 1, `${pingTimes.length} Pings answered but ${oks.length} downstream_ping_ok lines`);
    assert.equal(oks[0].level, 'info', 'the first downstream_ping_ok of a connection must be at info');
    for (const later of oks.slice(1)) {
        assert.equal(later.level, 'debug', 'later downstream_ping_ok lines must be at debug');
    }
    for (const ok of oks) {
        assert.equal(ok.direction, 'downstream_keepalive');
    }
});

test('first downstream_ping_ok only at info', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig() });
    const { client, upstream } = await startTurn(stack);
    const pingTimes = recordPingTimes(client);

    await upstream.send(createdEvent('resp_info'));
    await client.nextMessage();
    await sleep(INTERVAL_MS * 3 + 300);

    assert.ok(pingTimes.length >= 2, `expected at least 2 Pings, got ${pingTimes.length}`);
    const oks = traces(stack.relay, 'downstream_ping_ok', onlyConn(stack.relay));
    assert.equal(oks.length, 1, 'at log_level info a connection logs only its first downstream_ping_ok');
    assert.equal(oks[0].level, 'info');
});

test('business writes postpone Pings', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig() });
    const { client, upstream } = await startTurn(stack);
    const pingTimes = recordPingTimes(client);

    // One event every 300 ms for 3 s: the downstream is never idle for the interval.
    for (let i = 0; i < 10; i++) {
        await upstream.send(deltaEvent(`part ${i}`, i + 1));
        await client.nextMessage();
        await sleep(300);
    }
    assert.equal(pingTimes.length, 0, 'the relay sent a Ping while events were flowing');

    await upstream.send(deltaEvent('last', 11));
    await client.nextMessage();
    const lastWriteAt = Date.now();
    await sleep(INTERVAL_MS + SLACK_MS);
    assert.ok(pingTimes.length >= 1, 'no Ping after the events stopped');
    assertBetween(pingTimes[0] - lastWriteAt, INTERVAL_MS - EARLY_MS, INTERVAL_MS + SLACK_MS, 'time from the last event to the first Ping');
});

test('Pings continue between turns', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig() });
    const { client, upstream } = await startTurn(stack);
    const pingTimes = recordPingTimes(client);

    await upstream.send(createdEvent('resp_short'));
    await upstream.send(terminalEvent({ id: 'resp_short', usage: usageOf({ input: 2, output: 1 }) }));
    await client.nextMessage();
    await client.nextMessage();
    await sleep(INTERVAL_MS * 2 + 600);

    assert.ok(pingTimes.length >= 2, `expected at least 2 Pings on the idle connection, got ${pingTimes.length}`);
    assert.equal(client.closeInfo, null);
});

test('interval 0 sends no Ping', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, {
        config: keepaliveConfig({ passthrough_downstream_ping_interval_seconds: 0 }),
    });
    const { client, upstream } = await startTurn(stack);
    const pingTimes = recordPingTimes(client);

    await upstream.send(createdEvent('resp_no_ping'));
    await client.nextMessage();
    await sleep(INTERVAL_MS * 3);

    assert.equal(pingTimes.length, 0);
    assert.equal(traces(stack.relay, 'downstream_ping_ok').length, 0);
    assert.equal(traces(stack.relay, 'downstream_ping_unsupported').length, 0);
});

// ---------------------------------------------------------------------------
// Pong handling and keepalive failure

test('unanswered Ping closes 1001', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig({ upstream_drain_timeout_seconds: 3 }) });
    const { raw, upstream } = await startRawTurn(stack);

    await upstream.send(createdEvent('resp_gone'));
    const created = await raw.nextFrame();
    assert.equal(created.opcode, OPCODE.TEXT);

    const ping = await raw.nextFrame(INTERVAL_MS + SLACK_MS);
    assert.equal(ping.opcode, OPCODE.PING, `expected a Ping, got opcode ${ping.opcode}`);
    const closeFrame = await raw.nextFrame(TIMEOUT_MS + SLACK_MS);
    assert.equal(closeFrame.opcode, OPCODE.CLOSE, `expected a Close after the missed Pong, got opcode ${closeFrame.opcode}`);
    const close = parseClosePayload(closeFrame.payload);
    assert.equal(close.code, 1001);
    assert.equal(close.reason, 'keepalive timeout');
    assertBetween(closeFrame.at - ping.at, TIMEOUT_MS - EARLY_MS, TIMEOUT_MS + SLACK_MS, 'time from the Ping to the Close');
    // The client never replies with a Close, so the relay has to close the socket itself.
    await raw.waitEnded(5000);

    const failed = await waitForTrace(stack.relay, 'downstream_ping_failed');
    assert.equal(failed.graceful, 'true');

    // The upstream is drained for the rest of the turn, then closed with 1001.
    await sleep(300);
    assert.ok(upstream.isOpen, 'the relay closed the upstream before the turn ended');
    await upstream.send(deltaEvent('unseen'));
    await upstream.send(terminalEvent({ id: 'resp_gone', usage: usageOf({ input: 21, cached: 1, output: 4, reasoning: 2 }) }));
    const upstreamClose = await withTimeout(upstream.closed, 3000, 'the relay to close the upstream after the terminal event');
    assert.equal(upstreamClose.code, 1001);
    await waitForTrace(stack.relay, 'drain_terminal');

    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assert.equal(record.status, 'completed');
    assert.equal(record.response_id, 'resp_gone');
    assert.equal(record.client_connected, false);
    assert.equal(record.input_tokens, 21);
    assert.equal(record.cached_tokens, 1);
    assert.equal(record.output_tokens, 4);
    assert.equal(record.reasoning_tokens, 2);
    assert.equal(record.total_tokens, 25);
});

test('Pong with wrong payload misses deadline', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig() });
    const { raw, upstream } = await startRawTurn(stack);
    respondToPings(raw, 'wrong');

    await upstream.send(createdEvent('resp_wrong_pong'));
    await raw.nextFrame();
    const ping = await raw.nextFrame(INTERVAL_MS + SLACK_MS);
    assert.equal(ping.opcode, OPCODE.PING);
    const closeFrame = await raw.nextFrame(TIMEOUT_MS + SLACK_MS);
    assert.equal(closeFrame.opcode, OPCODE.CLOSE, `expected a Close, got opcode ${closeFrame.opcode}`);
    assert.equal(parseClosePayload(closeFrame.payload).code, 1001);
    assert.equal(parseClosePayload(closeFrame.payload).reason, 'keepalive timeout');
});

test('duplicate and unsolicited Pongs ignored', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig() });
    const { raw, upstream } = await startRawTurn(stack);
    respondToPings(raw, 'twice');

    await upstream.send(createdEvent('resp_pongs'));
    await raw.nextFrame();
    raw.sendFrame({ opcode: OPCODE.PONG, payload: Buffer.from('unsolicited') });
    for (let i = 0; i < 5; i++) {
        await sleep(700);
        raw.sendFrame({ opcode: OPCODE.PONG, payload: Buffer.from(`unsolicited ${i}`) });
    }

    const pings = raw.received.filter((frame) => frame.opcode === OPCODE.PING);
    assert.ok(pings.length >= 3, `expected at least 3 Pings in 3.5 s, got ${pings.length}`);
    const closes = raw.received.filter((frame) => frame.opcode === OPCODE.CLOSE);
    assert.equal(closes.length, 0, 'the relay closed a client that answered every Ping');
    assert.equal(raw.isEnded, false);
    assert.equal(traces(stack.relay, 'downstream_ping_failed').length, 0);

    const terminal = terminalEvent({ id: 'resp_pongs', usage: usageOf({ input: 3, output: 3 }) });
    await upstream.send(terminal);
    const relayed = await raw.nextFrameOf([OPCODE.TEXT]);
    assert.equal(relayed.payload.toString('utf8'), terminal);
});

test('client that stops reading detected', { timeout: 60000 }, async (t) => {
    const stack = await startStack(t, { config: keepaliveConfig({ upstream_drain_timeout_seconds: 20 }) });
    const { raw, upstream } = await startRawTurn(stack);

    await upstream.send(createdEvent('resp_stalled'));
    await raw.nextFrame();
    raw.socket.pause();
    const pausedAt = Date.now();

    // 24 MiB is far more than the socket buffers between the relay and the client hold,
    // so the relay's send stalls and its Ping waits behind unsent bytes.
    const chunk = 'x'.repeat(1024 * 1024);
    const sends = [];
    for (let i = 0; i < 24; i++) {
        sends.push(upstream.send(deltaEvent(chunk, i + 1)));
    }
    sends.push(upstream.send(terminalEvent({ id: 'resp_stalled', usage: usageOf({ input: 8, output: 24 }) })));

    const failed = await waitForTrace(stack.relay, 'downstream_ping_failed', INTERVAL_MS + TIMEOUT_MS + 5000);
    const detectedAfter = Date.now() - pausedAt;
    assert.equal(failed.graceful, 'true');
    assertBetween(detectedAfter, INTERVAL_MS + TIMEOUT_MS - EARLY_MS, INTERVAL_MS + TIMEOUT_MS + 1500,
        'time from the client pausing to downstream_ping_failed');

    // The upstream is drained through the rest of the data to the terminal event.
    await withTimeout(Promise.all(sends), 20000, 'the relay to read the whole turn from the upstream');
    const upstreamClose = await withTimeout(upstream.closed, 20000, 'the relay to close the upstream');
    assert.equal(upstreamClose.code, 1001);
    const [record] = await waitForRecords(ledgerOf(stack), 1);
    assert.equal(record.status, 'completed');
    assert.equal(record.client_connected, false);
    assert.equal(record.input_tokens, 8);
    assert.equal(record.output_tokens, 24);
});

// ---------------------------------------------------------------------------
// Configuration and the refused-timer path

// Matches value as a number in a message, also when it is written with trailing zeros.
function numberPattern(value)
{
    const text = String(value).replace('.', '\\.');
    const fraction = Number.isInteger(value) ? '(\\.0+)?' : '0*';
    return new RegExp(`(^|[^0-9.])${text}${fraction}([^0-9]|$)`);
}

test('invalid ping pairs rejected at start-up', { timeout: 60000 }, async (t) => {
    const dir = await makeTempDir();
    t.after(() => fsp.rm(dir, { recursive: true, force: true }));
    const pairs = [[1.25, 0], [1.25, 1.25], [1.25, 2.5], [0.75, 0.875]];

    for (const [interval, timeout] of pairs) {
        const { configPath } = await writeRelayConfig(dir, {
            upstreamUrl: 'ws://127.0.0.1:9/v1/responses',
            openai_ws: {
                passthrough_downstream_ping_interval_seconds: interval,
                passthrough_downstream_ping_timeout_seconds: timeout,
            },
        });
        const result = await runRelay(['-c', configPath], { env: relayEnv(), timeoutMs: 5000 });
        const label = `interval ${interval}, timeout ${timeout}`;
        assert.equal(result.code, 1, `${label}: exit status ${result.code}, stderr:\n${result.stderr}`);
        assert.equal(result.stderr.trim().split('\n').length, 1, `${label}: expected one message, got:\n${result.stderr}`);
        assert.match(result.stderr, /passthrough_downstream_ping_interval_seconds/, label);
        assert.match(result.stderr, /passthrough_downstream_ping_timeout_seconds/, label);
        assert.match(result.stderr, numberPattern(interval), `${label}: the message does not name the interval`);
        assert.match(result.stderr, numberPattern(timeout), `${label}: the message does not name the timeout`);
    }

    // Interval 0 turns keepalive off, so the timeout is not checked against it.
    const { configPath } = await writeRelayConfig(dir, {
        upstreamUrl: 'ws://127.0.0.1:9/v1/responses',
        openai_ws: {
            passthrough_downstream_ping_interval_seconds: 0,
            passthrough_downstream_ping_timeout_seconds: 0,
        },
    });
    const valid = await runRelay(['-c', configPath, '--check-config'], { env: relayEnv(), timeoutMs: 5000 });
    assert.equal(valid.code, 0, `interval 0 with timeout 0 rejected:\n${valid.stderr}`);
});

test('refused timers traced once per connection', { timeout: 30000 }, async (t) => {
    const stack = await startStack(t, {
        config: keepaliveConfig(),
        env: { WSRELAY_TEST_REFUSE_TIMEOUTS: '1' },
    });

    const turns = [];
    for (const id of ['resp_refused_a', 'resp_refused_b']) {
        const { client, upstream } = await startTurn(stack);
        turns.push({ id, client, upstream, pingTimes: recordPingTimes(client) });
    }
    for (const turn of turns) {
        await turn.upstream.send(createdEvent(turn.id));
        await turn.client.nextMessage();
    }
    await sleep(INTERVAL_MS * 2 + 500);
    for (const turn of turns) {
        const terminal = terminalEvent({ id: turn.id, usage: usageOf({ input: 4, output: 2 }) });
        await turn.upstream.send(terminal);
        const relayed = await turn.client.nextMessage();
        assert.equal(relayed.data.toString('utf8'), terminal);
        assert.equal(turn.pingTimes.length, 0, 'a Ping was sent although timers were refused');
        assert.equal(turn.client.closeInfo, null);
    }

    const conns = traces(stack.relay, 'relay_start').map((fields) => fields.conn);
    assert.equal(conns.length, 2);
    for (const conn of conns) {
        const unsupported = traces(stack.relay, 'downstream_ping_unsupported', conn);
        assert.equal(unsupported.length, 1, `conn ${conn} has ${unsupported.length} downstream_ping_unsupported lines`);
        assert.notEqual(unsupported[0].level, 'debug');
    }
    const records = await waitForRecords(ledgerOf(stack), 2);
    assert.deepEqual(records.map((record) => record.status), ['completed', 'completed']);
});

// ---------------------------------------------------------------------------
// An idle-sensitive proxy between the client and the relay

const PROXY_IDLE_SECONDS = 2;
const UPSTREAM_SILENCE_MS = 5000;

// Runs one turn through HAProxy whose tunnel timeout is 2 s, with the upstream silent for
// 5 s in the middle. Returns null when HAProxy is not installed.
async function turnThroughProxy(t, pingIntervalSeconds)
{
    if (!fs.existsSync(HAPROXY_BIN)) {
        return null;
    }
    const stack = await startStack(t, {
        config: keepaliveConfig({
            passthrough_downstream_ping_interval_seconds: pingIntervalSeconds,
            upstream_drain_timeout_seconds: 8,
        }),
    });
    const proxy = await startHaproxy(stack.dir, stack.port, PROXY_IDLE_SECONDS);
    t.after(() => proxy.stop());
    const client = await openClient(proxy.port);
    t.after(() => client.terminate());
    let closedAt = null;
    client.closed.then(() => {
        closedAt = Date.now();
    });

    const upstream = await stack.upstream.nextConnection();
    await client.send(responseCreate());
    await upstream.nextMessage();
    await upstream.send(createdEvent('resp_proxy'));
    await client.nextMessage();
    const silenceStart = Date.now();
    await sleep(UPSTREAM_SILENCE_MS);

    const terminal = terminalEvent({ id: 'resp_proxy', usage: usageOf({ input: 12, output: 6 }) });
    await upstream.send(deltaEvent('after the silence'));
    await upstream.send(terminal);
    return { stack, client, terminal, silenceStart, closedAt: () => closedAt };
}

test('idle proxy keeps turn with Pings', { timeout: 30000 }, async (t) => {
    const run = await turnThroughProxy(t, INTERVAL_MS / 1000);
    if (run === null) {
        console.log(`skipping: HAProxy is not installed at ${HAPROXY_BIN}`);
        t.skip(`HAProxy is not installed at ${HAPROXY_BIN}`);
        return;
    }
    const delta = await run.client.nextMessage();
    assert.match(delta.data.toString('utf8'), /after the silence/);
    const terminal = await run.client.nextMessage();
    assert.equal(terminal.data.toString('utf8'), run.terminal);
    assert.equal(run.client.closeInfo, null);
    assert.ok(run.client.pings.length >= 3, `expected Pings through the proxy, got ${run.client.pings.length}`);

    const [record] = await waitForRecords(ledgerOf(run.stack), 1);
    assert.equal(record.client_connected, true);
    assert.equal(record.input_tokens, 12);
});

test('idle proxy cuts turn without Pings', { timeout: 30000 }, async (t) => {
    const run = await turnThroughProxy(t, 0);
    if (run === null) {
        console.log(`skipping: HAProxy is not installed at ${HAPROXY_BIN}`);
        t.skip(`HAProxy is not installed at ${HAPROXY_BIN}`);
        return;
    }
    const closedAt = run.closedAt();
    assert.notEqual(closedAt, null, 'the proxy did not cut the idle connection: this scenario cannot show the keepalive working');
    assertBetween(closedAt - run.silenceStart, PROXY_IDLE_SECONDS * 1000 - 500, UPSTREAM_SILENCE_MS,
        'time from the start of the silence to the proxy closing the connection');
    assert.equal(run.client.received.length, 1, 'the client got events after the proxy cut the connection');

    // The relay saw the client go and drained the upstream for the usage.
    const [record] = await waitForRecords(ledgerOf(run.stack), 1, 8000);
    assert.equal(record.status, 'completed');
    assert.equal(record.client_connected, false);
    assert.equal(record.input_tokens, 12);
});

// ---------------------------------------------------------------------------
// The {"type":"keepalive"} event

function eventKeepaliveConfig(seconds)
{
    return keepaliveConfig({
        passthrough_downstream_ping_interval_seconds: 0,
        passthrough_downstream_event_keepalive_seconds: seconds,
    });
}

// Resolves with the first recorded message that matches, waiting up to ms for it.
async function waitForMessage(messages, match, label, ms = 3000)
{
    const deadline = Date.now() + ms;
    for (;;) {
        const found = messages.find(match);
        if (found) {
            return found;
        }
        assert.ok(Date.now() < deadline, `no ${label} at the client within ${ms} ms`);
        await sleep(10);
    }
}

test('keepalive events during silent turn', { timeout: 30000 }, async (t) => {
    const stack = await startStack(t, { config: eventKeepaliveConfig(1) });
    const { client, upstream } = await startTurn(stack);
    const messages = recordMessages(client);
    const turnOpenedAt = Date.now();

    // Silent from the start of the turn.
    await sleep(2500);
    const beforeCreated = keepaliveMessages(messages);
    assert.equal(beforeCreated.length, 2, `expected 2 keepalive events in the first 2.5 s of the turn, got ${beforeCreated.length}`);
    assertBetween(beforeCreated[0].at - turnOpenedAt, INTERVAL_MS - EARLY_MS, INTERVAL_MS + SLACK_MS, 'time to the first keepalive event');
    for (const message of beforeCreated) {
        assert.equal(message.isBinary, false);
        assert.deepEqual(JSON.parse(message.text), { type: 'keepalive' });
    }

    // Silent after a first event.
    await upstream.send(createdEvent('resp_event_keepalive'));
    const created = await waitForMessage(messages, (message) => message.text.includes('response.created'), 'response.created');
    await sleep(2500);
    const afterCreated = keepaliveMessages(messages).filter((message) => message.at >= created.at);
    assert.equal(afterCreated.length, 2, `expected 2 keepalive events in 2.5 s after response.created, got ${afterCreated.length}`);
    assertBetween(afterCreated[0].at - created.at, INTERVAL_MS - EARLY_MS, INTERVAL_MS + SLACK_MS, 'time from response.created to the next keepalive event');
    gaps(afterCreated.map((message) => message.at)).forEach((gap) => {
        assertBetween(gap, INTERVAL_MS - EARLY_MS, INTERVAL_MS + SLACK_MS, 'gap between keepalive events');
    });

    // No keepalive event once the turn has ended.
    const terminal = terminalEvent({ id: 'resp_event_keepalive', usage: usageOf({ input: 1, output: 1 }) });
    await upstream.send(terminal);
    const ended = await waitForMessage(messages, (message) => message.text === terminal, 'terminal event');
    await sleep(2500);
    const afterEnd = messages.slice(messages.indexOf(ended) + 1);
    assert.equal(afterEnd.length, 0, `the relay sent ${afterEnd.length} message(s) between turns`);
});

test('no keepalive events when disabled', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: eventKeepaliveConfig(0) });
    const { client, upstream } = await startTurn(stack);
    const messages = recordMessages(client);

    await sleep(1500);
    await upstream.send(createdEvent('resp_no_events'));
    await sleep(2000);
    assert.equal(messages.length, 1);
    assert.equal(keepaliveMessages(messages).length, 0);
});

test('keepalive event not inside fragmented message', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: eventKeepaliveConfig(1) });
    const { raw, upstream } = await startRawTurn(stack);

    await new Promise((resolve, reject) => {
        upstream.ws.send('{"type":"response.output_text.delta","delta":"fir', { fin: false }, (error) => (error ? reject(error) : resolve()));
    });
    const first = await raw.nextFrame();
    assert.equal(first.opcode, OPCODE.TEXT);
    assert.equal(first.fin, false);

    await sleep(2500);
    await new Promise((resolve, reject) => {
        upstream.ws.send('st"}', { fin: true }, (error) => (error ? reject(error) : resolve()));
    });
    const last = await raw.nextFrameOf([OPCODE.TEXT, OPCODE.BINARY, OPCODE.CONTINUATION]);
    assert.equal(last.opcode, OPCODE.CONTINUATION, `a data frame with opcode ${last.opcode} arrived inside the fragmented message`);
    assert.equal(last.fin, true);

    // Once the message is whole, the silence gets its keepalive event.
    const keepalive = await raw.nextFrameOf([OPCODE.TEXT], INTERVAL_MS + SLACK_MS);
    assert.deepEqual(JSON.parse(keepalive.payload.toString('utf8')), { type: 'keepalive' });
});
