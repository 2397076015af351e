// End to end with the real Codex CLI: codex exec -> wsrelay -> bench/mock_upstream.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { BUILD_DIR, withTimeout } from './lib/harness.mjs';

const CODEX_VERSION = '0.169.0';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const CODEX_PREFIX = path.join(HERE, '.codex-cli');
const CODEX_PACKAGE = path.join(CODEX_PREFIX, 'node_modules', '@openai', 'codex');
const CODEX_JS = path.join(CODEX_PACKAGE, 'bin', 'codex.js');
const MOCK_BIN = path.join(BUILD_DIR, 'bench', 'mock_upstream');
const RUNNER = path.join(HERE, 'lib', 'codex-run.mjs');

// npm error codes that mean the registry could not be reached at all.
const NETWORK_ERRORS = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)\b/;

function collect(command, args, options, timeoutMs)
{
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
        stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
        stderr += chunk;
    });
    const closed = new Promise((resolve) => {
        child.on('error', (error) => resolve({ code: null, signal: null, stdout, stderr: `${stderr}${error.message}` }));
        child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
    return withTimeout(closed, timeoutMs, `${path.basename(command)} ${args[0] ?? ''}`).catch((error) => {
        child.kill('SIGKILL');
        throw error;
    });
}

function installedCodexVersion()
{
    try {
        return JSON.parse(fs.readFileSync(path.join(CODEX_PACKAGE, 'package.json'), 'utf8')).version;
    } catch {
        return null;
    }
}

// Installs the pinned Codex CLI into .codex-cli/ unless it is there. Returns a skip reason
// when npm cannot reach the registry, and throws on any other failure.
async function ensureCodex()
{
    if (installedCodexVersion() === CODEX_VERSION) {
        return null;
    }
    const result = await collect('npm', [
        'install', '--prefix', CODEX_PREFIX, '--no-save', '--no-audit', '--no-fund',
        `@openai/codex@${CODEX_VERSION}`,
    ], {}, 300000);
    if (result.code !== 0 && NETWORK_ERRORS.test(result.stderr)) {
        return `npm cannot reach the registry to install @openai/codex@${CODEX_VERSION}: ${result.stderr.trim().split('\n').pop()}`;
    }
    assert.equal(result.code, 0, `npm install @openai/codex@${CODEX_VERSION} failed:\n${result.stderr}`);
    assert.equal(installedCodexVersion(), CODEX_VERSION);
    return null;
}

// True when a user and network namespace with a working loopback can be made here.
async function canIsolateNetwork()
{
    try {
        const probe = await collect('unshare', ['-rn', '--', 'sh', '-c', 'ip link set lo up'], {}, 10000);
        return probe.code === 0;
    } catch {
        return false;
    }
}

test('codex exec through relay', { timeout: 420000 }, async (t) => {
    const skipReason = await ensureCodex();
    if (skipReason) {
        console.log(`skipping the Codex test: ${skipReason}`);
        t.skip(skipReason);
        return;
    }
    assert.ok(fs.existsSync(MOCK_BIN), `mock upstream not found at ${MOCK_BIN}: build bench/ or set WR_BUILD_DIR`);

    const isolated = await canIsolateNetwork();
    if (!isolated) {
        console.log('no network namespace available: Codex runs with a proxy on a closed loopback port instead');
    }
    const [command, args] = isolated
        ? ['unshare', ['-rn', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, RUNNER, CODEX_JS, MOCK_BIN]]
        : [process.execPath, [RUNNER, CODEX_JS, MOCK_BIN]];
    const outcome = await collect(command, args, { env: process.env }, 300000);

    const lastLine = outcome.stdout.trim().split('\n').pop() ?? '';
    let result;
    assert.doesNotThrow(() => {
        result = JSON.parse(lastLine);
    }, `the runner printed no result; exit ${outcome.code}, stderr:\n${outcome.stderr}`);
    assert.equal(result.error, undefined, result.error);

    const relayLog = (result.relayLines ?? []).join('\n');
    const codexOutput = `stdout:\n${result.codex.stdout}\nstderr:\n${result.codex.stderr}\nrelay log:\n${relayLog}`;
    assert.equal(result.codex.signal, null, `codex was killed\n${codexOutput}`);
    assert.equal(result.codex.code, 0, codexOutput);
    // bench/mock_upstream streams repetitions of this sentence as output text deltas.
    assert.match(result.codex.stdout, /Hello from mock_upstream\./, codexOutput);
    assert.match(relayLog, / stage=upstream_dial_ok( |$)/m, codexOutput);
    assert.match(relayLog, / stage=relay_complete( |$)/m, codexOutput);
    assert.equal(result.relayExit.code, 0, relayLog);
});
