// Data relaying: turns, large messages, fragmentation and Ping/Pong handling.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';

import {
    OPCODE,
    responseCreate,
    sha256Hex,
    startStack,
    turnEvents,
    waitFor,
} from './lib/harness.mjs';

test('turn relays events in order', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    const request = responseCreate('gpt-test', 'say hi');
    await client.send(request);
    const forwarded = await upstream.nextMessage();
    assert.equal(forwarded.isBinary, false);
    assert.deepEqual(forwarded.data, Buffer.from(request));

    // Non-ASCII text and odd spacing must survive: the relay does not rewrite events.
    const events = turnEvents({ id: 'resp_turn1', deltas: ['Hel', 'lo ', 'wörld ✓ 😀'] });
    events.splice(1, 0, '{"type":"response.in_progress" ,  "response":{"id":"resp_turn1"}}');
    await upstream.sendAll(events);

    for (const event of events) {
        const message = await client.nextMessage();
        assert.equal(message.isBinary, false);
        assert.deepEqual(message.data, Buffer.from(event));
    }
    assert.equal(client.errors.length, 0);
    assert.equal(upstream.errors.length, 0);
});

test('two turns on one connection', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    for (const id of ['resp_first', 'resp_second']) {
        const request = responseCreate('gpt-test', `turn ${id}`);
        await client.send(request);
        const forwarded = await upstream.nextMessage();
        assert.equal(forwarded.data.toString('utf8'), request);

        const events = turnEvents({ id, deltas: ['a', 'b'] });
        await upstream.sendAll(events);
        for (const event of events) {
            const message = await client.nextMessage();
            assert.equal(message.data.toString('utf8'), event);
        }
    }
    assert.equal(stack.upstream.connections.length, 1);
});

test('binary messages relayed both ways', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    const toUpstream = crypto.randomBytes(70000);
    await client.send(toUpstream, { binary: true });
    const atUpstream = await upstream.nextMessage();
    assert.equal(atUpstream.isBinary, true);
    assert.deepEqual(atUpstream.data, toUpstream);

    const toClient = crypto.randomBytes(300);
    await upstream.send(toClient, { binary: true });
    const atClient = await client.nextMessage();
    assert.equal(atClient.isBinary, true);
    assert.deepEqual(atClient.data, toClient);
});

test('20 MB each way with bounded memory', { timeout: 120000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    // A relay may touch a fixed pool of receive buffers gradually. So 1 MiB messages go
    // each way until the RSS stops growing, and only later growth depends on message size.
    const chunk = crypto.randomBytes(1024 * 1024);
    let idleKiB = stack.relay.memory().VmRSS;
    let stableRounds = 0;
    for (let round = 0; round < 96 && stableRounds < 3; round++) {
        await client.send(chunk, { binary: true });
        await upstream.nextMessage();
        await upstream.send(chunk, { binary: true });
        await client.nextMessage();
        const rssKiB = stack.relay.memory().VmRSS;
        stableRounds = rssKiB - idleKiB < 64 ? stableRounds + 1 : 0;
        idleKiB = rssKiB;
    }
    assert.equal(stableRounds, 3, `relay RSS still growing after 96 MiB of warm-up traffic (${idleKiB} KiB)`);

    const size = 20 * 1024 * 1024;
    const toUpstream = crypto.randomBytes(size);
    const sent = client.send(toUpstream, { binary: true });
    const atUpstream = await upstream.nextMessage(90000);
    await sent;
    assert.equal(atUpstream.isBinary, true);
    assert.equal(atUpstream.data.length, size);
    assert.equal(sha256Hex(atUpstream.data), sha256Hex(toUpstream));

    // Base64 of 15 MiB is exactly 20 MiB of text.
    const toClient = crypto.randomBytes(15 * 1024 * 1024).toString('base64');
    assert.equal(toClient.length, size);
    const sentDown = upstream.send(toClient);
    const atClient = await client.nextMessage(90000);
    await sentDown;
    assert.equal(atClient.isBinary, false);
    assert.equal(atClient.data.length, size);
    assert.equal(sha256Hex(atClient.data), sha256Hex(toClient));

    // A relay that buffered a whole message would have grown by at least 20 MiB.
    const peakKiB = stack.relay.memory().VmHWM;
    const growthKiB = peakKiB - idleKiB;
    assert.ok(growthKiB < 16 * 1024, `relay peak RSS grew by ${growthKiB} KiB (idle ${idleKiB} KiB, peak ${peakKiB} KiB)`);
});

test('fragmented message with interleaved Ping', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();

    const message = Buffer.from(responseCreate('gpt-test', 'fragments café and more'), 'utf8');
    // Split inside the two-byte 'é': the first two fragments alone are invalid UTF-8, the message is not.
    const accent = message.indexOf(Buffer.from('é', 'utf8'));
    const parts = [message.subarray(0, accent + 1), message.subarray(accent + 1, accent + 10), message.subarray(accent + 10)];

    client.sendFrame({ opcode: OPCODE.TEXT, payload: parts[0], fin: false });
    client.sendFrame({ opcode: OPCODE.PING, payload: 'ping-between-fragments' });
    client.sendFrame({ opcode: OPCODE.CONTINUATION, payload: parts[1], fin: false });
    client.sendFrame({ opcode: OPCODE.CONTINUATION, payload: parts[2], fin: true });

    const pong = await client.nextFrame();
    assert.equal(pong.opcode, OPCODE.PONG);
    assert.equal(pong.fin, true);
    assert.equal(pong.masked, false);
    assert.equal(pong.payload.toString('utf8'), 'ping-between-fragments');

    const whole = await upstream.nextMessage();
    assert.equal(whole.isBinary, false);
    assert.deepEqual(whole.data, message);
    assert.equal(upstream.pings.length, 0);
    assert.equal(upstream.errors.length, 0);
});

test('client fragments keep their boundaries', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { upstream: { recordFrames: true } });
    const client = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();
    const clientMask = Buffer.from([0x11, 0x22, 0x33, 0x44]);

    // The first fragment must reach the upstream before the client sends the rest.
    client.sendFrame({ opcode: OPCODE.TEXT, payload: 'alpha-', fin: false, mask: clientMask });
    await waitFor(() => upstream.rawFrames.length >= 1, 3000, 'the first fragment at the upstream');
    client.sendFrame({ opcode: OPCODE.CONTINUATION, payload: 'beta-', fin: false, mask: clientMask });
    client.sendFrame({ opcode: OPCODE.CONTINUATION, payload: 'gamma', fin: true, mask: clientMask });

    const message = await upstream.nextMessage();
    assert.equal(message.data.toString('utf8'), 'alpha-beta-gamma');
    const frames = upstream.rawFrames;
    assert.deepEqual(frames.map((frame) => frame.opcode), [OPCODE.TEXT, OPCODE.CONTINUATION, OPCODE.CONTINUATION]);
    assert.deepEqual(frames.map((frame) => frame.fin), [false, false, true]);
    assert.deepEqual(frames.map((frame) => frame.payload.toString('utf8')), ['alpha-', 'beta-', 'gamma']);

    // Each frame upstream carries a fresh mask of the relay's, never the client's.
    for (const frame of frames) {
        assert.equal(frame.masked, true);
        assert.notDeepEqual(frame.maskKey, clientMask);
    }
    const maskKeys = new Set(frames.map((frame) => frame.maskKey.toString('hex')));
    assert.equal(maskKeys.size, frames.length, 'the relay reused a mask key');
});

test('upstream fragments keep their boundaries', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.rawUpgrade();
    const upstream = await stack.upstream.nextConnection();

    await upstream.send('one-', { fin: false });
    const first = await client.nextFrame();
    assert.equal(first.opcode, OPCODE.TEXT);
    assert.equal(first.fin, false);
    assert.equal(first.payload.toString('utf8'), 'one-');

    await upstream.send('two-', { fin: false });
    await upstream.send('three', { fin: true });
    const second = await client.nextFrame();
    const third = await client.nextFrame();
    assert.equal(second.opcode, OPCODE.CONTINUATION);
    assert.equal(second.fin, false);
    assert.equal(second.payload.toString('utf8'), 'two-');
    assert.equal(third.opcode, OPCODE.CONTINUATION);
    assert.equal(third.fin, true);
    assert.equal(third.payload.toString('utf8'), 'three');
    for (const frame of [first, second, third]) {
        assert.equal(frame.masked, false);
    }
});

test('client Ping answered by relay', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    client.ws.ping(Buffer.from('client-ping-1'));
    await waitFor(() => client.pongs.length > 0, 3000, 'the Pong to the client Ping');
    assert.equal(client.pongs[0].toString('utf8'), 'client-ping-1');

    // An unsolicited Pong must not be relayed either.
    client.ws.pong(Buffer.from('client-pong-1'));

    // Frames on one leg stay in order, so once this message arrives, a relayed Ping or Pong would have too.
    await client.send('after-ping');
    const marker = await upstream.nextMessage();
    assert.equal(marker.data.toString('utf8'), 'after-ping');
    assert.equal(upstream.pings.length, 0);
    assert.equal(upstream.pongs.length, 0);
});

test('upstream Ping answered by relay', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    upstream.ws.ping(Buffer.from('upstream-ping-1'));
    await waitFor(() => upstream.pongs.length > 0, 3000, 'the Pong to the upstream Ping');
    assert.equal(upstream.pongs[0].toString('utf8'), 'upstream-ping-1');

    upstream.ws.pong(Buffer.from('upstream-pong-1'));

    await upstream.send('after-ping');
    const marker = await client.nextMessage();
    assert.equal(marker.data.toString('utf8'), 'after-ping');
    assert.equal(client.pings.length, 0);
    assert.equal(client.pongs.length, 0);
});
