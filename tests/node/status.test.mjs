// HTTP responses before the upgrade: one status per failed check, each with a JSON error body.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
    LOOPBACK,
    WRONG_CLIENT_KEY,
    freePort,
    sleep,
    startSharedStack,
    startStack,
    upgradeRequest,
    waitFor,
} from './lib/harness.mjs';

// Asserts the OpenAI-style body {"error":{"message":...,"type":...,"code":...}}.
function assertErrorBody(response)
{
    const text = response.body.toString('utf8');
    let body;
    assert.doesNotThrow(() => {
        body = JSON.parse(text);
    }, `body is not JSON: ${JSON.stringify(text)}`);
    assert.equal(typeof body.error, 'object');
    assert.notEqual(body.error, null);
    assert.equal(typeof body.error.message, 'string');
    assert.ok(body.error.message.length > 0, 'error.message is empty');
    assert.equal(typeof body.error.type, 'string');
    assert.ok('code' in body.error, 'error.code is missing');
}

// Returns the lowercased tokens of all Connection headers of a response.
function connectionTokens(response)
{
    return (response.headers.connection ?? '').split(',').map((token) => token.trim().toLowerCase());
}

// Sends request on a fresh connection and returns the relay's response once it has closed the connection.
async function responseTo(stack, request, ms = 5000)
{
    const client = await stack.rawClient();
    client.write(request);
    const response = await client.readResponse(ms);
    await client.waitEnded(3000);
    return response;
}

describe('checks before the upstream dial', () => {
    let stack;

    before(async () => {
        stack = await startSharedStack();
    });

    after(async () => {
        await stack.teardown();
    });

    test('oversized request head gets 431', { timeout: 15000 }, async () => {
        const request = upgradeRequest({ headers: { 'X-Padding': 'p'.repeat(17 * 1024) } });
        const response = await responseTo(stack, request);
        assert.equal(response.status, 431);
        assertErrorBody(response);
    });

    test('header line without colon gets 400', { timeout: 15000 }, async () => {
        const request = upgradeRequest().replace('\r\n\r\n', '\r\nThis line has no colon\r\n\r\n');
        const response = await responseTo(stack, request);
        assert.equal(response.status, 400);
        assertErrorBody(response);
    });

    test('malformed request line gets 400', { timeout: 15000 }, async () => {
        const request = upgradeRequest({ requestLine: 'GET /v1/responses' });
        const response = await responseTo(stack, request);
        assert.equal(response.status, 400);
        assertErrorBody(response);
    });

    test('POST gets 405 with Allow', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ method: 'POST' }));
        assert.equal(response.status, 405);
        assert.equal(response.headers.allow, 'GET');
        assertErrorBody(response);
    });

    test('method checked before path', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ method: 'PUT', path: '/nowhere' }));
        assert.equal(response.status, 405);
    });

    test('unknown path gets 404', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ path: '/v1/chat/completions' }));
        assert.equal(response.status, 404);
        assertErrorBody(response);
    });

    test('missing Upgrade gets 426', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ headers: { Upgrade: null } }));
        assert.equal(response.status, 426);
        assert.equal(response.headers.upgrade.toLowerCase(), 'websocket');
        assert.ok(connectionTokens(response).includes('upgrade'), `Connection: ${response.headers.connection}`);
        assertErrorBody(response);
    });

    test('Connection without upgrade gets 426', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ headers: { Connection: 'keep-alive' } }));
        assert.equal(response.status, 426);
        assert.equal(response.headers.upgrade.toLowerCase(), 'websocket');
        assertErrorBody(response);
    });

    test('wrong WebSocket version gets 426', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ headers: { 'Sec-WebSocket-Version': '8' } }));
        assert.equal(response.status, 426);
        assert.equal(response.headers['sec-websocket-version'], '13');
        assertErrorBody(response);
    });

    test('missing WebSocket version gets 426', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ headers: { 'Sec-WebSocket-Version': null } }));
        assert.equal(response.status, 426);
        assert.equal(response.headers['sec-websocket-version'], '13');
    });

    test('malformed WebSocket key gets 400', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ wsKey: 'not-a-16-byte-nonce' }));
        assert.equal(response.status, 400);
        assertErrorBody(response);
    });

    test('missing WebSocket key gets 400', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ headers: { 'Sec-WebSocket-Key': null } }));
        assert.equal(response.status, 400);
        assertErrorBody(response);
    });

    test('version checked before client key', { timeout: 15000 }, async () => {
        const request = upgradeRequest({ key: WRONG_CLIENT_KEY, headers: { 'Sec-WebSocket-Version': '7' } });
        const response = await responseTo(stack, request);
        assert.equal(response.status, 426);
    });

    test('missing client key gets 401', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ key: null }));
        assert.equal(response.status, 401);
        assert.match(response.headers['www-authenticate'], /^Bearer\b/);
        assertErrorBody(response);
        await sleep(200);
        assert.equal(stack.upstream.tcpConnections, 0);
    });

    test('wrong client key gets 401', { timeout: 15000 }, async () => {
        const response = await responseTo(stack, upgradeRequest({ key: WRONG_CLIENT_KEY }));
        assert.equal(response.status, 401);
        assert.match(response.headers['www-authenticate'], /^Bearer\b/);
        assertErrorBody(response);
        await sleep(200);
        assert.equal(stack.upstream.tcpConnections, 0);
    });

    test('non-Bearer Authorization gets 401', { timeout: 15000 }, async () => {
        const request = upgradeRequest({ key: null, headers: { Authorization: 'Basic dGVzdDp0ZXN0' } });
        const response = await responseTo(stack, request);
        assert.equal(response.status, 401);
    });

    // Runs last in this suite: every request above was refused before the upstream dial.
    test('refused requests never dial upstream', { timeout: 15000 }, async () => {
        // A relay that dialled in parallel with the checks would show up within this pause.
        await sleep(300);
        assert.equal(stack.upstream.tcpConnections, 0);
        assert.equal(stack.upstream.requests.length, 0);
    });
});

test('request head under 16 KiB accepted', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.rawClient();
    client.write(upgradeRequest({ headers: { 'X-Padding': 'p'.repeat(15 * 1024) } }));
    const response = await client.readResponse();
    assert.equal(response.status, 101);
});

test('connection limit gets 503', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: { gateway: { max_connections: 1 } } });
    const first = await stack.openClient();
    await stack.upstream.nextConnection();

    const response = await responseTo(stack, upgradeRequest());
    assert.equal(response.status, 503);
    assertErrorBody(response);
    assert.equal(stack.upstream.connections.length, 1);

    // The slot is released once the first connection has gone.
    first.ws.close(1000);
    await first.waitClosed();
    const status = await waitFor(async () => {
        const client = await stack.rawClient();
        client.write(upgradeRequest());
        const again = await client.readResponse(1000);
        client.destroy();
        return again.status === 101 ? 101 : null;
    }, 3000, 'a 101 after the first client closed', 100);
    assert.equal(status, 101);
});

test('upstream 429 copied with Retry-After', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, {
        upstream: { handshake: { status: 429, headers: { 'Retry-After': '17' } } },
    });
    const response = await responseTo(stack, upgradeRequest());
    assert.equal(response.status, 429);
    assert.equal(response.headers['retry-after'], '17');
    assertErrorBody(response);
    assert.equal(stack.upstream.requests.length, 1);
});

test('upstream 500 gets 502', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { upstream: { handshake: { status: 500 } } });
    const response = await responseTo(stack, upgradeRequest());
    assert.equal(response.status, 502);
    assertErrorBody(response);
    assert.equal(stack.upstream.requests.length, 1);
});

test('closed upstream port gets 502', { timeout: 20000 }, async (t) => {
    const port = await freePort();
    const stack = await startStack(t, {
        upstream: false,
        upstreamUrl: `ws://${LOOPBACK}:${port}/v1/responses`,
    });
    const response = await responseTo(stack, upgradeRequest());
    assert.equal(response.status, 502);
    assertErrorBody(response);
});

test('silent upstream gets 504', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, {
        upstream: { handshake: 'hang' },
        config: { openai_ws: { dial_timeout_seconds: 1 } },
    });
    const started = Date.now();
    const response = await responseTo(stack, upgradeRequest(), 6000);
    const elapsed = Date.now() - started;
    assert.equal(response.status, 504);
    assertErrorBody(response);
    assert.ok(elapsed >= 800, `504 after ${elapsed} ms, before the 1 s dial timeout`);
    assert.ok(elapsed < 4000, `504 after ${elapsed} ms, long after the 1 s dial timeout`);
    assert.ok(stack.upstream.tcpConnections >= 1, 'the relay never reached the upstream');
});

test('incomplete request gets 408', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: { gateway: { handshake_timeout_seconds: 1 } } });
    const client = await stack.rawClient();
    const started = Date.now();
    client.write('GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
    const response = await client.readResponse(6000);
    const elapsed = Date.now() - started;
    assert.equal(response.status, 408);
    assertErrorBody(response);
    assert.ok(elapsed >= 800, `408 after ${elapsed} ms, before the 1 s handshake timeout`);
    assert.ok(elapsed < 4000, `408 after ${elapsed} ms, long after the 1 s handshake timeout`);
    await client.waitEnded(3000);
});
