// The WebSocket upgrade: headers copied each way, the upstream key, declined extensions.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
    CLIENT_KEY,
    UPSTREAM_KEY,
    UPSTREAM_PATH,
    expectedAccept,
    randomWsKey,
    startStack,
    upgradeRequest,
} from './lib/harness.mjs';

const BETA = 'responses_websockets=2026-02-06';

// Headers Codex sends that the relay copies upstream, with distinct values.
const FORWARDED = {
    'session_id': '0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
    'session-id': '0199a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b',
    'thread-id': 'thread-7f3e',
    'conversation_id': 'conv-19c2',
    'x-client-request-id': 'req-client-5521',
    'x-codex-turn-metadata': '{"turn_id":"t-1","sandbox":"seccomp"}',
    'x-codex-beta-features': 'feature_a,feature_b',
    'originator': 'codex_cli_rs',
    'user-agent': 'codex_cli_rs/0.169.0 (Debian 12; x86_64) node-test',
    'accept-language': 'en-GB,en;q=0.8',
    'version': '0.169.0',
    'openai-organization': 'org-wsrtest',
    'openai-project': 'proj_wsrtest',
};

// Headers the relay must not copy upstream.
const NOT_FORWARDED = {
    'cookie': 'session=should-not-leave',
    'x-forwarded-for': '198.51.100.23',
    'x-foo': 'bar',
};

// Headers of the upstream's 101 that the relay copies into the client's 101.
const UPSTREAM_101 = {
    'x-codex-turn-state': 'turn-state-abc123',
    'openai-model': 'gpt-5.2-codex',
    'x-models-etag': 'W/"models-etag-42"',
    'x-reasoning-included': 'true',
    'x-request-id': 'req_upstream_9d8c',
};

test('codex headers forwarded upstream', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { upstream: { responseHeaders: UPSTREAM_101 } });
    const client = await stack.openClient({
        headers: { 'OpenAI-Beta': BETA, ...FORWARDED, ...NOT_FORWARDED },
        perMessageDeflate: true,
    });
    const upstream = await stack.upstream.nextConnection();
    const seen = upstream.headers;

    for (const [name, value] of Object.entries(FORWARDED)) {
        assert.equal(seen[name], value, `upstream header ${name}`);
    }
    for (const name of Object.keys(NOT_FORWARDED)) {
        assert.equal(seen[name], undefined, `upstream header ${name} must not be copied`);
    }
    assert.equal(seen.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(seen['openai-beta'], BETA);
    assert.equal(upstream.request.url, UPSTREAM_PATH);

    const rawUpstreamHead = upstream.request.rawHeaders.join('\n');
    assert.ok(!rawUpstreamHead.includes(CLIENT_KEY), 'the client key reached the upstream');

    // permessage-deflate: offered by the client, accepted by neither leg.
    assert.equal(seen['sec-websocket-extensions'], undefined);
    assert.equal(seen['sec-websocket-protocol'], undefined);
    assert.equal(upstream.ws.extensions, '');
    assert.equal(client.ws.extensions, '');

    const answered = client.response.headers;
    for (const [name, value] of Object.entries(UPSTREAM_101)) {
        assert.equal(answered[name], value, `client 101 header ${name}`);
    }
    assert.equal(answered['sec-websocket-protocol'], undefined);
    assert.equal(answered['sec-websocket-extensions'], undefined);
});

test('upstream headers without client extras', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.openClient();
    const upstream = await stack.upstream.nextConnection();
    const seen = upstream.headers;

    // The relay adds OpenAI-Beta itself when the client sent none.
    assert.equal(seen['openai-beta'], BETA);
    assert.equal(seen.authorization, `Bearer ${UPSTREAM_KEY}`);
    for (const name of Object.keys(FORWARDED)) {
        assert.equal(seen[name], undefined, `upstream header ${name} appeared without the client sending it`);
    }
    for (const name of Object.keys(UPSTREAM_101)) {
        assert.equal(client.response.headers[name], undefined, `client 101 header ${name} appeared without the upstream sending it`);
    }
});

test('empty key variable sends no Authorization', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t, { config: { openai_ws: { upstream_api_key_env: '' } } });
    await stack.openClient();
    const upstream = await stack.upstream.nextConnection();

    assert.equal(upstream.headers.authorization, undefined);
    assert.equal(upstream.headers['openai-beta'], BETA);
    assert.ok(!upstream.request.rawHeaders.join('\n').includes(CLIENT_KEY));
});

test('raw 101 declines subprotocol and extensions', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.rawClient();
    const wsKey = randomWsKey();
    client.write(upgradeRequest({
        wsKey,
        headers: {
            'Sec-WebSocket-Protocol': 'chat, superchat',
            'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits',
        },
    }));
    const response = await client.readResponse();

    assert.equal(response.status, 101);
    assert.equal(response.headers['sec-websocket-accept'], expectedAccept(wsKey));
    assert.equal(response.headers.upgrade.toLowerCase(), 'websocket');
    assert.match(response.headers.connection, /\bupgrade\b/i);
    assert.equal(response.headers['sec-websocket-protocol'], undefined);
    assert.equal(response.headers['sec-websocket-extensions'], undefined);

    const upstream = await stack.upstream.nextConnection();
    assert.equal(upstream.headers['sec-websocket-protocol'], undefined);
    assert.equal(upstream.headers['sec-websocket-extensions'], undefined);
});

for (const requestPath of ['/v1/responses', '/responses', '/backend-api/codex/responses', '/v1/responses?stream=1&x=%20']) {
    test(`upgrade accepted on ${requestPath}`, { timeout: 20000 }, async (t) => {
        const stack = await startStack(t);
        const client = await stack.openClient({ path: requestPath });
        const upstream = await stack.upstream.nextConnection();

        assert.equal(client.response.statusCode, 101);
        // The upstream path comes from upstream_url, whatever path the client used.
        assert.equal(upstream.request.url, UPSTREAM_PATH);
    });
}

test('upgrade tokens matched in lists', { timeout: 20000 }, async (t) => {
    const stack = await startStack(t);
    const client = await stack.rawClient();
    client.write(upgradeRequest({
        headers: { 'Connection': 'keep-alive, Upgrade', 'Upgrade': 'WebSocket' },
    }));
    const response = await client.readResponse();
    assert.equal(response.status, 101);
});
