// Command line: --check-config, --version, --help, exit statuses and signals.

import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';

import {
    CLIENT_KEY,
    LOOPBACK,
    UPSTREAM_KEY,
    UPSTREAM_KEY_ENV,
    freePort,
    makeTempDir,
    relayConfigText,
    relayEnv,
    runRelay,
    sha256Hex,
    startStack,
    withTimeout,
    writeRelayConfig,
} from './lib/harness.mjs';

const UPSTREAM_URL = `ws://${LOOPBACK}:9/v1/responses`;

async function tempDir(t)
{
    const dir = await makeTempDir('wsrelay-cli-');
    t.after(() => fsp.rm(dir, { recursive: true, force: true }));
    return dir;
}

function nonEmptyLines(text)
{
    return text.split('\n').filter((line) => line.trim() !== '');
}

test('check-config prints effective config', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const { configPath, port } = await writeRelayConfig(dir, { upstreamUrl: UPSTREAM_URL });

    const result = await runRelay(['-c', configPath, '--check-config']);
    assert.equal(result.code, 0, result.stderr);
    const lines = nonEmptyLines(result.stdout);
    assert.ok(lines.length > 10, `only ${lines.length} lines printed`);

    // The line about the key variable has a free form; every other line is key = value.
    for (const line of lines.filter((text) => !text.includes(UPSTREAM_KEY_ENV))) {
        assert.match(line, /^[A-Za-z0-9_.[\]-]+ = \S.*$/);
    }
    assert.ok(lines.some((line) => new RegExp(`\\blisten = "?${LOOPBACK}:${port}"?$`).test(line)), 'no listen line');
    assert.ok(lines.some((line) => /\bdial_timeout_seconds = 3(\.0+)?$/.test(line)), 'no dial_timeout_seconds line');
    // Keys left out of the file are printed with their defaults.
    assert.ok(lines.some((line) => /\bclient_read_limit_bytes = 67108864$/.test(line)), 'no default client_read_limit_bytes line');
});

test('check-config redacts secrets', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const { configPath } = await writeRelayConfig(dir, { upstreamUrl: UPSTREAM_URL });

    const result = await runRelay(['-c', configPath, '--check-config']);
    assert.equal(result.code, 0, result.stderr);
    const output = result.stdout + result.stderr;
    assert.ok(!output.includes(sha256Hex(CLIENT_KEY)), 'the client key hash is printed');
    assert.ok(!output.includes(UPSTREAM_KEY), 'the upstream key is printed');
    assert.ok(output.includes('test'), 'the client name is missing');
});

test('check-config reports key variable', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const { configPath } = await writeRelayConfig(dir, { upstreamUrl: UPSTREAM_URL });

    const withKey = await runRelay(['-c', configPath, '--check-config']);
    const withoutKey = await runRelay(['-c', configPath, '--check-config'], {
        env: relayEnv({ [UPSTREAM_KEY_ENV]: undefined }),
    });
    assert.equal(withKey.code, 0, withKey.stderr);
    assert.equal(withoutKey.code, 0, withoutKey.stderr);

    const mentions = (text) => nonEmptyLines(text).filter((line) => line.includes(UPSTREAM_KEY_ENV)).join('\n');
    assert.notEqual(mentions(withKey.stdout), '', 'no line names the key variable');
    assert.notEqual(mentions(withKey.stdout), mentions(withoutKey.stdout), 'set and unset key variable print the same');
});

const INVALID_CONFIGS = [
    { name: 'unknown key', key: /bogus_key/, options: { gateway: { bogus_key: 1 } } },
    { name: 'wrong type', key: /workers/, options: { gateway: { workers: 'two' } } },
    { name: 'out-of-range value', key: /max_connections/, options: { gateway: { max_connections: 0 } } },
    { name: 'bad log level', key: /log_level/, options: { gateway: { log_level: 'verbose' } } },
    {
        name: 'ping timeout not below interval',
        key: /passthrough_downstream_ping_(timeout|interval)_seconds/,
        options: {
            openai_ws: {
                passthrough_downstream_ping_interval_seconds: 5,
                passthrough_downstream_ping_timeout_seconds: 5,
            },
        },
    },
    { name: 'bad upstream scheme', key: /upstream_url/, options: { upstreamUrl: `ftp://${LOOPBACK}:9/v1/responses` } },
    { name: 'short key hash', key: /key_sha256/, options: { clients: [{ name: 'test', key_sha256: 'abc123' }] } },
    { name: 'no clients', key: /clients/, options: { clients: [] } },
    { name: 'cert without key', key: /cert_file|key_file/, options: { gateway: { tls: { cert_file: 'cert.pem' } } } },
];

for (const { name, key, options } of INVALID_CONFIGS) {
    test(`check-config rejects ${name}`, { timeout: 20000 }, async (t) => {
        const dir = await tempDir(t);
        // The certificate exists so that only the missing key file makes that config invalid.
        await fsp.writeFile(path.join(dir, 'cert.pem'), '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
        const { configPath } = await writeRelayConfig(dir, { upstreamUrl: UPSTREAM_URL, ...options });

        const result = await runRelay(['-c', configPath, '--check-config']);
        assert.equal(result.code, 1, `exit status ${result.code}; stderr: ${result.stderr}`);
        const lines = nonEmptyLines(result.stderr);
        assert.equal(lines.length, 1, `expected one stderr line, got:\n${result.stderr}`);
        assert.ok(lines[0].includes(configPath), `the message does not name the file: ${lines[0]}`);
        assert.match(lines[0], key);
    });
}

test('check-config rejects syntax error', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const configPath = path.join(dir, 'broken.conf');
    const text = relayConfigText({
        listen: `${LOOPBACK}:8080`,
        upstreamUrl: UPSTREAM_URL,
        ledgerPath: path.join(dir, 'usage.jsonl'),
    });
    // Drops the closing brace of the gateway group.
    await fsp.writeFile(configPath, text.replace(/};\s*$/, ''));

    const result = await runRelay(['-c', configPath, '--check-config']);
    assert.equal(result.code, 1, result.stderr);
    const lines = nonEmptyLines(result.stderr);
    assert.equal(lines.length, 1, result.stderr);
    assert.ok(lines[0].includes(configPath), lines[0]);
});

test('invalid config stops the relay', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const { configPath } = await writeRelayConfig(dir, { upstreamUrl: UPSTREAM_URL, gateway: { bogus_key: 1 } });

    const result = await runRelay(['-c', configPath]);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(nonEmptyLines(result.stderr).length, 1, result.stderr);
});

test('missing config file exits 1', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const configPath = path.join(dir, 'absent.conf');

    const result = await runRelay(['-c', configPath, '--check-config']);
    assert.equal(result.code, 1, result.stderr);
    assert.ok(result.stderr.includes(configPath), result.stderr);
});

test('version and help exit 0', { timeout: 20000 }, async () => {
    const version = await runRelay(['--version']);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout + version.stderr, /\d+\.\d+\.\d+/);

    const help = await runRelay(['--help']);
    assert.equal(help.code, 0, help.stderr);
    const helpText = help.stdout + help.stderr;
    assert.ok(helpText.includes('--check-config'), helpText);
    assert.ok(helpText.includes('-c'), helpText);
});

test('bad argument exits 1', { timeout: 20000 }, async () => {
    const unknown = await runRelay(['--no-such-option']);
    assert.equal(unknown.code, 1, unknown.stderr);
    assert.notEqual(unknown.stderr.trim(), '');

    const missingValue = await runRelay(['-c']);
    assert.equal(missingValue.code, 1, missingValue.stderr);
});

test('listen port in use exits 2', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const blocker = net.createServer();
    await new Promise((resolve, reject) => {
        blocker.once('error', reject);
        blocker.listen(0, LOOPBACK, resolve);
    });
    t.after(() => new Promise((resolve) => blocker.close(resolve)));
    const { port } = blocker.address();
    const { configPath } = await writeRelayConfig(dir, { upstreamUrl: UPSTREAM_URL, port });

    const result = await runRelay(['-c', configPath]);
    assert.equal(result.code, 2, result.stderr);
    assert.notEqual(result.stderr.trim(), '');
});

test('missing key variable exits 2', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const { configPath } = await writeRelayConfig(dir, { upstreamUrl: UPSTREAM_URL });

    const result = await runRelay(['-c', configPath], { env: relayEnv({ [UPSTREAM_KEY_ENV]: undefined }) });
    assert.equal(result.code, 2, result.stderr);
    assert.ok(result.stderr.includes(UPSTREAM_KEY_ENV), result.stderr);
});

test('missing ledger directory exits 2', { timeout: 20000 }, async (t) => {
    const dir = await tempDir(t);
    const { configPath } = await writeRelayConfig(dir, {
        upstreamUrl: UPSTREAM_URL,
        port: await freePort(),
        usage: { ledger_path: path.join(dir, 'no-such-dir', 'usage.jsonl') },
    });

    const result = await runRelay(['-c', configPath]);
    assert.equal(result.code, 2, result.stderr);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
    test(`${signal} closes idle clients and exits 0`, { timeout: 20000 }, async (t) => {
        const stack = await startStack(t);
        const client = await stack.openClient();
        await stack.upstream.nextConnection();

        stack.relay.child.kill(signal);
        const close = await client.waitClosed(5000);
        assert.equal(close.code, 1001);
        const exit = await withTimeout(stack.relay.exited, 8000, `the relay to exit after ${signal}`);
        assert.equal(exit.signal, null);
        assert.equal(exit.code, 0);
    });
}
