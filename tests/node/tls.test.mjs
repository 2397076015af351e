// TLS legs: a wss:// upstream, certificate failures, large messages, a TLS downstream,
// session resumption and the CONNECT proxy.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import net from 'node:net';
import { after, before, test } from 'node:test';

import {
    LOOPBACK,
    freePort,
    logfmtFields,
    makeTempDir,
    openClient,
    responseCreate,
    startRelay,
    turnEvents,
    waitFor,
    writeRelayConfig,
} from './lib/harness.mjs';
import {
    makeCertificates,
    openTlsClient,
    startConnectProxy,
    startTlsUpstream,
    upgradeStatus,
} from './lib/tls.mjs';

let certDir;
let certs;

before(async () => {
    certDir = await makeTempDir('wsrelay-tls-');
    certs = await makeCertificates(certDir);
});

after(async () => {
    await fsp.rm(certDir, { recursive: true, force: true });
});

// Starts a relay in front of upstreamUrl; config adds to the test defaults.
async function startTlsRelay(t, upstreamUrl, { openai_ws = {}, gateway = {} } = {})
{
    const dir = await makeTempDir();
    t.after(() => fsp.rm(dir, { recursive: true, force: true }));
    const written = await writeRelayConfig(dir, {
        upstreamUrl,
        gateway: { workers: 1, ...gateway },
        openai_ws: { upstream_ca_file: certs.caFile, ...openai_ws },
    });
    const relay = await startRelay({ configPath: written.configPath, port: written.port });
    t.after(() => relay.stop());
    return relay;
}

async function startUpstreamWith(t, pair)
{
    const upstream = await startTlsUpstream(pair);
    t.after(() => upstream.close());
    return upstream;
}

// Runs one turn through client and upstream and checks every event arrives intact.
async function relayTurn(client, upstream, id)
{
    const request = responseCreate('gpt-test', `turn ${id}`);
    await client.send(request);
    const forwarded = await upstream.nextMessage();
    assert.equal(forwarded.data.toString('utf8'), request);
    const events = turnEvents({ id, deltas: ['wss ', 'wörld ✓'] });
    await upstream.sendAll(events);
    for (const event of events) {
        const message = await client.nextMessage();
        assert.equal(message.data.toString('utf8'), event);
    }
}

async function rejectionLine(relay)
{
    return logfmtFields(await relay.waitForLine('event=handshake_rejected'));
}

test('turn over wss upstream', { timeout: 30000 }, async (t) => {
    const upstream = await startUpstreamWith(t, certs.good);
    const relay = await startTlsRelay(t, upstream.url());
    const client = await openClient(relay.port);
    t.after(() => client.terminate());
    const connection = await upstream.nextConnection();

    await relayTurn(client, connection, 'resp_wss');
    assert.equal(upstream.servernames[0], 'localhost');
    assert.equal(upstream.alpn[0], 'http/1.1');
    assert.equal(connection.headers['openai-beta'], 'responses_websockets=2026-02-06');
});

for (const [name, pairName, pattern] of [
    ['untrusted issuer gives 502', 'untrusted', /issuer is not trusted/],
    ['wrong host name gives 502', 'wrongName', /does not match the host name/],
    ['expired certificate gives 502', 'expired', /certificate has expired/],
]) {
    test(name, { timeout: 30000 }, async (t) => {
        const upstream = await startUpstreamWith(t, certs[pairName]);
        const relay = await startTlsRelay(t, upstream.url());

        const status = await upgradeStatus(relay.port);
        assert.equal(status, 502);
        const fields = await rejectionLine(relay);
        assert.equal(fields.status, '502');
        assert.match(fields.reason, pattern);
        assert.equal(upstream.connections.length, 0);
    });
}

test('address host checked against IP SAN', { timeout: 30000 }, async (t) => {
    const good = await startUpstreamWith(t, certs.good);
    const goodRelay = await startTlsRelay(t, good.url('127.0.0.1'));
    assert.equal(await upgradeStatus(goodRelay.port), 101);
    assert.equal(good.servernames[0], false);

    // This certificate names only other.invalid, so 127.0.0.1 must not match it.
    const wrong = await startUpstreamWith(t, certs.wrongName);
    const wrongRelay = await startTlsRelay(t, wrong.url('127.0.0.1'));
    assert.equal(await upgradeStatus(wrongRelay.port), 502);
    assert.match((await rejectionLine(wrongRelay)).reason, /does not match the host name/);
});

test('silent TLS upstream gives 504', { timeout: 30000 }, async (t) => {
    // Accepts TCP and never replies to the ClientHello.
    const sockets = new Set();
    const silent = net.createServer((socket) => {
        sockets.add(socket);
        socket.on('error', () => {});
    });
    await new Promise((resolve) => silent.listen(0, LOOPBACK, resolve));
    t.after(() => {
        for (const socket of sockets) {
            socket.destroy();
        }
        return new Promise((resolve) => silent.close(resolve));
    });
    const relay = await startTlsRelay(t, `wss://localhost:${silent.address().port}/v1/responses`, {
        openai_ws: { dial_timeout_seconds: 1 },
    });

    const started = Date.now();
    assert.equal(await upgradeStatus(relay.port), 504);
    assert.ok(Date.now() - started >= 900, 'the relay gave up before the dial timeout');
    assert.match((await rejectionLine(relay)).reason, /timed out/);
});

test('20 MB each way over TLS', { timeout: 180000 }, async (t) => {
    const upstream = await startUpstreamWith(t, certs.good);
    const relay = await startTlsRelay(t, upstream.url(), {
        gateway: { tls: { cert_file: certs.good.cert, key_file: certs.good.key } },
    });
    const client = await openTlsClient(relay.port, certs.caFile);
    t.after(() => client.terminate());
    const connection = await upstream.nextConnection();

    // Warm up with 1 MiB messages until the RSS stops growing, as the plain-TCP test does.
    const chunk = crypto.randomBytes(1024 * 1024);
    let idleKiB = relay.memory().VmRSS;
    let stableRounds = 0;
    for (let round = 0; round < 96 && stableRounds < 3; round++) {
        await client.send(chunk, { binary: true });
        await connection.nextMessage();
        await connection.send(chunk, { binary: true });
        await client.nextMessage();
        const rssKiB = relay.memory().VmRSS;
        stableRounds = rssKiB - idleKiB < 64 ? stableRounds + 1 : 0;
        idleKiB = rssKiB;
    }
    assert.equal(stableRounds, 3, `relay RSS still growing after 96 MiB of warm-up traffic (${idleKiB} KiB)`);

    const size = 20 * 1024 * 1024;
    const toUpstream = crypto.randomBytes(size);
    const sent = client.send(toUpstream, { binary: true });
    const atUpstream = await connection.nextMessage(90000);
    await sent;
    assert.equal(atUpstream.data.length, size);
    assert.ok(atUpstream.data.equals(toUpstream));

    const toClient = crypto.randomBytes(size);
    const sentDown = connection.send(toClient, { binary: true });
    const atClient = await client.nextMessage(90000);
    await sentDown;
    assert.equal(atClient.data.length, size);
    assert.ok(atClient.data.equals(toClient));

    // A relay that buffered a whole message would have grown by at least 20 MiB.
    const peakKiB = relay.memory().VmHWM;
    const growthKiB = peakKiB - idleKiB;
    assert.ok(growthKiB < 16 * 1024, `relay peak RSS grew by ${growthKiB} KiB (idle ${idleKiB} KiB, peak ${peakKiB} KiB)`);
});

test('keepalive pings over TLS downstream', { timeout: 30000 }, async (t) => {
    const upstream = await startUpstreamWith(t, certs.good);
    const relay = await startTlsRelay(t, upstream.url(), {
        gateway: { tls: { cert_file: certs.good.cert, key_file: certs.good.key } },
        openai_ws: {
            passthrough_downstream_ping_interval_seconds: 0.3,
            passthrough_downstream_ping_timeout_seconds: 0.2,
        },
    });
    const client = await openTlsClient(relay.port, certs.caFile);
    t.after(() => client.terminate());
    const connection = await upstream.nextConnection();

    // Pings start after the first business frame has gone downstream.
    await relayTurn(client, connection, 'resp_keepalive');
    await waitFor(() => client.pings.length >= 2, 5000, 'two relay Pings at the wss:// client');
    assert.equal(client.pings[0].length, 8);
    await relay.waitForLine(/stage=downstream_ping_ok/);
    assert.equal(client.closeInfo, null);
});

test('later connections resume the session', { timeout: 30000 }, async (t) => {
    const upstream = await startUpstreamWith(t, certs.good);
    const relay = await startTlsRelay(t, upstream.url());

    // A third connection checks that a resumed connection does not spoil the kept session.
    for (const id of ['resp_first', 'resp_second', 'resp_third']) {
        const client = await openClient(relay.port);
        const connection = await upstream.nextConnection();
        await relayTurn(client, connection, id);
        client.terminate();
    }
    assert.equal(upstream.handshakes, 3);
    assert.equal(upstream.resumed, 2);

    await relay.stop();
    const counts = relay.linesMatching('event=tls_handshakes').map(logfmtFields);
    assert.equal(counts.length, 1);
    assert.equal(counts[0].upstream_full, '1');
    assert.equal(counts[0].upstream_resumed, '2');
});

test('turn through a CONNECT proxy', { timeout: 30000 }, async (t) => {
    const upstream = await startUpstreamWith(t, certs.good);
    const proxy = await startConnectProxy();
    t.after(() => proxy.close());
    const relay = await startTlsRelay(t, upstream.url(), { openai_ws: { upstream_proxy: proxy.url } });

    const client = await openClient(relay.port);
    t.after(() => client.terminate());
    const connection = await upstream.nextConnection();
    await relayTurn(client, connection, 'resp_proxy');
    assert.equal(proxy.requests.length, 1);
    assert.equal(proxy.requests[0].url, `localhost:${upstream.port}`);
});

test('proxy refusal gives 502', { timeout: 30000 }, async (t) => {
    const upstream = await startUpstreamWith(t, certs.good);
    const proxy = await startConnectProxy({ refuse: 403 });
    t.after(() => proxy.close());
    const relay = await startTlsRelay(t, upstream.url(), { openai_ws: { upstream_proxy: proxy.url } });

    assert.equal(await upgradeStatus(relay.port), 502);
    assert.match((await rejectionLine(relay)).reason, /proxy answered CONNECT with HTTP 403/);
    assert.equal(upstream.handshakes, 0);
});

test('unreachable proxy gives 502', { timeout: 30000 }, async (t) => {
    const upstream = await startUpstreamWith(t, certs.good);
    const closedPort = await freePort();
    const relay = await startTlsRelay(t, upstream.url(), {
        openai_ws: { upstream_proxy: `http://127.0.0.1:${closedPort}` },
    });

    assert.equal(await upgradeStatus(relay.port), 502);
    assert.match((await rejectionLine(relay)).reason, /proxy unreachable/);
});
