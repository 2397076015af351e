// Measures what TLS costs the relay: CPU seconds per GB relayed from a wss:// upstream
// against a ws:// one, and CPU milliseconds per upstream handshake with and without
// session resumption. Everything runs on 127.0.0.1 with a bounded amount of traffic.
//
// usage: WR_BUILD_DIR=BUILD node bench/tls_cost.mjs [MiB to relay, default 512] [dials, default 200]

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';

import {
    makeTempDir,
    openClient,
    startRelay,
    startUpstream,
    writeRelayConfig,
} from '../tests/node/lib/harness.mjs';
import { makeCertificates, startTlsUpstream } from '../tests/node/lib/tls.mjs';

const mib = Math.min(Number(process.argv[2] ?? 512), 4096);
const dials = Math.min(Number(process.argv[3] ?? 200), 2000);
const ticksPerSecond = 100; // USER_HZ on Linux

function cpuSeconds(pid)
{
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

async function withRelay(dir, upstreamUrl, caFile, fn)
{
    const written = await writeRelayConfig(dir, {
        upstreamUrl,
        gateway: { workers: 1, log_level: 'info' },
        openai_ws: { upstream_ca_file: caFile },
    });
    const relay = await startRelay({ configPath: written.configPath, port: written.port });
    try {
        return await fn(relay);
    } catch (error) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        console.error(relay.linesMatching(/level=(warn|error)|handshake_rejected/).slice(-6).join('\n'));
        throw error;
    } finally {
        await relay.stop();
    }
}

// Relays mib MiB downstream in 1 MiB binary messages; returns relay CPU seconds per GB.
async function relayCost(upstream, caFile, dir)
{
    const url = upstream.url instanceof Function ? upstream.url() : upstream.url;
    return withRelay(dir, url, caFile, async (relay) => {
        const client = await openClient(relay.port);
        const connection = await upstream.nextConnection();
        const chunk = Buffer.alloc(1024 * 1024, 0x61);
        const before = cpuSeconds(relay.pid);
        for (let i = 0; i < mib; i++) {
            const sent = connection.send(chunk, { binary: true });
            await client.nextMessage(30000);
            await sent;
        }
        const used = cpuSeconds(relay.pid) - before;
        client.terminate();
        return used / (mib / 1024);
    });
}

// Opens dials connections one after another; returns relay CPU milliseconds per connection.
async function dialCost(upstream, caFile, dir)
{
    return withRelay(dir, upstream.url(), caFile, async (relay) => {
        const before = cpuSeconds(relay.pid);
        for (let i = 0; i < dials; i++) {
            const client = await openClient(relay.port);
            await upstream.nextConnection();
            client.terminate();
        }
        return ((cpuSeconds(relay.pid) - before) * 1000) / dials;
    });
}

const dir = await makeTempDir('wsrelay-tls-cost-');
try {
    const certs = await makeCertificates(dir);
    const plain = await startUpstream();
    const secure = await startTlsUpstream(certs.good);
    const fresh = await startTlsUpstream(certs.good, { noResume: true });
    try {
        console.log(`${os.cpus()[0].model}, relay with 1 worker, ${mib} MiB downstream in 1 MiB messages`);
        const plainCost = await relayCost(plain, certs.caFile, dir);
        console.log(`relay CPU per GB, ws:// upstream: ${plainCost.toFixed(2)} s`);
        // Node's TLS 1.3 server picks the suite itself, so each one is measured on its own.
        for (const suite of ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384']) {
            const only = await startTlsUpstream(certs.good, { ciphers: suite });
            try {
                const cost = await relayCost(only, certs.caFile, dir);
                console.log(`relay CPU per GB, wss:// upstream with ${only.ciphers[0]}: ${cost.toFixed(2)} s`);
            } finally {
                await only.close();
            }
        }
        const plainDial = await dialCost({ url: () => plain.url, nextConnection: (ms) => plain.nextConnection(ms) }, certs.caFile, dir);
        const resumed = await dialCost(secure, certs.caFile, dir);
        const full = await dialCost(fresh, certs.caFile, dir);
        console.log(`relay CPU per connection over ${dials} dials: ws:// ${plainDial.toFixed(2)} ms, ` +
            `wss:// resumed ${resumed.toFixed(2)} ms (${secure.resumed} of ${secure.handshakes} resumed), ` +
            `wss:// full ${full.toFixed(2)} ms (${fresh.resumed} of ${fresh.handshakes} resumed)`);
    } finally {
        await plain.close();
        await secure.close();
        await fresh.close();
    }
} finally {
    await fsp.rm(dir, { recursive: true, force: true });
}
