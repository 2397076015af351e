// Closing: Close codes relayed, upstream loss, client loss, protocol errors, limits and timeouts.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
    OPCODE,
    closePayload,
    logfmtFields,
    parseClosePayload,
    responseCreate,
    sleep,
    startStack,
    turnEvents,
    withTimeout,
} from './lib/harness.mjs';

// Reads the relay's Close frame at a raw client and replies with a Close of the same code.
async function expectRawClose(client, ms = 5000)
{
    const frame = await client.nextFrame(ms);
    assert.equal(frame.opcode, OPCODE.CLOSE, `expected a Close frame, got opcode ${frame.opcode}`);
    assert.equal(frame.masked, false);
    const close = parseClosePayload(frame.payload);
    client.sendFrame({ opcode: OPCODE.CLOSE, payload: frame.payload.subarray(0, 2) });
    return close;
}

test('upstream Close code and reason relayed', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    upstream.ws.close(4000, 'upstream says bye ✓');
    const close = await client.waitClosed();
    assert.equal(close.code, 4000);
    assert.equal(close.reason, 'upstream says bye ✓');
    assert.equal(client.errors.length, 0);
});

test('upstream Close with 123-byte reason', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    const reason = 'r'.repeat(123);
    upstream.ws.close(3000, reason);
    const close = await client.waitClosed();
    assert.equal(close.code, 3000);
    assert.equal(close.reason, reason);
});

test('upstream Close without code relayed empty', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();

    upstream.ws.close();
    const frame = await client.nextFrame();
    assert.equal(frame.opcode, OPCODE.CLOSE);
    assert.equal(frame.payload.length, 0);
});

test('upstream Close without code at ws client', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    upstream.ws.close();
    const close = await client.waitClosed();
    assert.equal(close.code, 1005);
    assert.equal(close.reason, '');
    assert.equal(client.errors.length, 0);
});

// Starts a turn, lets the upstream announce the response id, then loses the upstream with lose().
async function loseUpstreamMidTurn(t, lose)
{
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    await client.send(responseCreate());
    await upstream.nextMessage();
    const [created] = turnEvents({ id: 'resp_x' });
    await upstream.send(created);
    const relayed = await client.nextMessage();
    assert.equal(relayed.data.toString('utf8'), created);

    lose(upstream);
    const failed = await client.nextMessage();
    const close = await client.waitClosed();
    return { failed, close, client };
}

function parseEvent(message)
{
    const text = message.data.toString('utf8');
    try {
        return JSON.parse(text);
    } catch (error) {
        assert.fail(`event is not valid JSON (${error.message}): ${text}`);
    }
}

function assertUpstreamFailed(message, responseId)
{
    assert.equal(message.isBinary, false);
    const event = parseEvent(message);
    assert.equal(event.type, 'response.failed');
    assert.equal(event.response.id, responseId);
    assert.equal(event.response.status, 'failed');
    assert.equal(event.response.error.code, 'upstream_error');
    assert.equal(typeof event.response.error.message, 'string');
}

test('upstream reset mid-turn fails the turn', { timeout: 20000 }, async (t) => {
    const { failed, close } = await loseUpstreamMidTurn(t, (upstream) => upstream.reset());
    assertUpstreamFailed(failed, 'resp_x');
    assert.equal(close.code, 1011);
});

test('upstream EOF mid-turn fails the turn', { timeout: 20000 }, async (t) => {
    const { failed, close } = await loseUpstreamMidTurn(t, (upstream) => upstream.endWithoutClose());
    assertUpstreamFailed(failed, 'resp_x');
    assert.equal(close.code, 1011);
});

test('upstream reset before response id', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    await client.send(responseCreate());
    await upstream.nextMessage();
    upstream.reset();

    const failed = await client.nextMessage();
    const event = parseEvent(failed);
    assert.equal(event.type, 'response.failed');
    assert.match(event.response.id, /^resp_wsrelay_\d+-\d+$/);
    assert.equal(event.response.error.code, 'upstream_error');
    const close = await client.waitClosed();
    assert.equal(close.code, 1011);
});

test('upstream reset between turns', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    await client.send(responseCreate());
    await upstream.nextMessage();
    const events = turnEvents({ id: 'resp_done' });
    await upstream.sendAll(events);
    for (let i = 0; i < events.length; i++) {
        await client.nextMessage();
    }

    upstream.reset();
    const close = await client.waitClosed();
    assert.equal(close.code, 1011);
    assert.equal(client.received.length, events.length, 'the client got a message after the turn had completed');
});

test('client reset mid-turn drains upstream', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();

    client.sendText(responseCreate());
    await upstream.nextMessage();
    const events = turnEvents({ id: 'resp_gone' });
    await upstream.send(events[0]);
    const created = await client.nextFrame();
    assert.equal(created.opcode, OPCODE.TEXT);

    // Only this connection dials upstream; the readiness probe of the harness does not.
    const dialLine = await stack.relay.waitForLine(/ stage=upstream_dial_ok( |$)/);
    const conn = logfmtFields(dialLine).conn;

    client.reset();
    const line = await stack.relay.waitForLine(
        (text) => / stage=client_disconnected( |$)/.test(text) && text.includes(` conn=${conn} `));
    assert.equal(logfmtFields(line).graceful, 'true');

    // The turn is still open, so the relay keeps reading upstream for its terminal event.
    await sleep(300);
    assert.equal(upstream.closeInfo, null, 'the relay closed the upstream before the terminal event');
    assert.equal(upstream.isOpen, true);

    await upstream.sendAll(events.slice(1));
    const close = await withTimeout(upstream.closed, 3000, 'the relay to close the upstream after the terminal event');
    assert.equal(close.code, 1001);
});

test('client Close while idle closes upstream', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    client.ws.close(1000, 'client done');
    const clientClose = await client.waitClosed();
    assert.equal(clientClose.code, 1000);
    const upstreamClose = await withTimeout(upstream.closed, 3000, 'the relay to close the upstream');
    assert.equal(upstreamClose.code, 1001);
});

const PROTOCOL_ERRORS = [
    { name: 'unmasked frame', frame: { opcode: OPCODE.TEXT, payload: 'hi', mask: false } },
    { name: 'RSV1 set', frame: { opcode: OPCODE.TEXT, payload: 'hi', rsv1: true } },
    { name: 'RSV3 set', frame: { opcode: OPCODE.BINARY, payload: 'hi', rsv3: true } },
    { name: 'opcode 3', frame: { opcode: 0x3, payload: 'hi' } },
    { name: 'opcode 11', frame: { opcode: 0xb, payload: 'hi' } },
    { name: 'fragmented ping', frame: { opcode: OPCODE.PING, payload: 'p', fin: false } },
    { name: '126-byte ping', frame: { opcode: OPCODE.PING, payload: Buffer.alloc(126, 0x61) } },
    { name: 'close with code 1005', frame: { opcode: OPCODE.CLOSE, payload: closePayload(1005) } },
    { name: 'close with code 1004', frame: { opcode: OPCODE.CLOSE, payload: closePayload(1004) } },
    { name: 'close with code 5000', frame: { opcode: OPCODE.CLOSE, payload: closePayload(5000) } },
    { name: 'close with 1-byte payload', frame: { opcode: OPCODE.CLOSE, payload: Buffer.from([0x03]) } },
    {
        name: 'close with invalid UTF-8 reason',
        frame: { opcode: OPCODE.CLOSE, payload: closePayload(1000, Buffer.from([0x62, 0x79, 0xff, 0xfe])) },
    },
    { name: 'continuation without start', frame: { opcode: OPCODE.CONTINUATION, payload: 'tail' } },
];

for (const { name, frame } of PROTOCOL_ERRORS) {
    test(`client ${name} gets 1002`, { timeout: 20000 }, async (t) => {
        const stack = await startStack(t);
        const client = await stack.rawUpgrade();
        const upstream = await stack.upstream.nextConnection();

        client.sendFrame(frame);
        const close = await expectRawClose(client);
        assert.equal(close.code, 1002);

        const upstreamClose = await withTimeout(upstream.closed, 3000, 'the relay to close the upstream');
        assert.equal(upstreamClose.code, 1001);
        assert.equal(upstream.received.length, 0);
        await client.waitEnded(3000);
    });
}

test('client new message inside fragments gets 1002', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.rawUpgrade();
    await stack.upstream.nextConnection();

    client.sendFrame({ opcode: OPCODE.TEXT, payload: 'first part', fin: false });
    client.sendFrame({ opcode: OPCODE.TEXT, payload: 'a new message' });
    const close = await expectRawClose(client);
    assert.equal(close.code, 1002);
    await client.waitEnded(3000);
});

test('client message at read limit relayed', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: { openai_ws: { client_read_limit_bytes: 1024 } } });
    const client = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();

    const payload = 'x'.repeat(1024);
    client.sendText(payload);
    const message = await upstream.nextMessage();
    assert.equal(message.data.toString('utf8'), payload);
});

test('client message over read limit gets 1009', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: { openai_ws: { client_read_limit_bytes: 1024 } } });
    const client = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();

    client.sendText('x'.repeat(2000));
    const close = await expectRawClose(client);
    assert.equal(close.code, 1009);

    const upstreamClose = await withTimeout(upstream.closed, 3000, 'the relay to close the upstream');
    assert.equal(upstreamClose.code, 1001);
    assert.equal(upstream.received.length, 0);
    await client.waitEnded(3000);
});

test('fragments over read limit get 1009', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: { openai_ws: { client_read_limit_bytes: 1024 } } });
    const client = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();

    client.sendFrame({ opcode: OPCODE.TEXT, payload: 'a'.repeat(600), fin: false });
    client.sendFrame({ opcode: OPCODE.CONTINUATION, payload: 'b'.repeat(600), fin: true });
    const close = await expectRawClose(client);
    assert.equal(close.code, 1009);

    await withTimeout(upstream.closed, 3000, 'the relay to close the upstream');
    assert.equal(upstream.received.length, 0, 'the upstream received a message over the limit');
    await client.waitEnded(3000);
});

test('first message timeout closes 1008', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: { openai_ws: { client_first_message_timeout_seconds: 1 } } });
    const started = Date.now();
    const client = await stack.openClient();

    const close = await client.waitClosed(5000);
    const elapsed = Date.now() - started;
    assert.equal(close.code, 1008);
    assert.equal(close.reason, 'first message timeout');
    assert.ok(elapsed >= 800, `closed after ${elapsed} ms, before the 1 s timeout`);
    assert.ok(elapsed < 4000, `closed after ${elapsed} ms, long after the 1 s timeout`);
});

test('first message in time keeps connection', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: { openai_ws: { client_first_message_timeout_seconds: 1 } } });
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    await sleep(200);
    await client.send(responseCreate());
    await upstream.nextMessage();
    await sleep(1500);
    assert.equal(client.closeInfo, null, 'the relay closed a client that had sent its first message');
    assert.equal(upstream.closeInfo, null);
});
