// The pinned Codex CLI for the end-to-end tests: installing it, running a runner script in a
// network namespace of its own, and the Codex configuration and environment that the runner
// scripts share. Codex reaches nothing beyond 127.0.0.1.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CLIENT_KEY, LOOPBACK } from './harness.mjs';
import { collectProcess } from './more.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export const CODEX_VERSION = '0.169.0';
export const CODEX_PREFIX = path.resolve(HERE, '..', '.codex-cli');
const CODEX_PACKAGE = path.join(CODEX_PREFIX, 'node_modules', '@openai', 'codex');
export const CODEX_JS = path.join(CODEX_PACKAGE, 'bin', 'codex.js');

// npm error codes that mean the registry could not be reached.
const NPM_NETWORK_ERRORS = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)\b/;

function installedCodexVersion()
{
    try {
        return JSON.parse(fs.readFileSync(path.join(CODEX_PACKAGE, 'package.json'), 'utf8')).version;
    } catch {
        return null;
    }
}

// Installs the pinned Codex CLI into tests/node/.codex-cli/ unless it is already there.
// Returns a skip reason when npm cannot reach the registry, and throws on other failures.
export async function ensureCodex()
{
    if (installedCodexVersion() === CODEX_VERSION) {
        return null;
    }
    const result = await collectProcess('npm', [
        'install', '--prefix', CODEX_PREFIX, '--no-save', '--no-audit', '--no-fund',
        `@openai/codex@${CODEX_VERSION}`,
    ], {}, 300000);
    if (result.code !== 0 && NPM_NETWORK_ERRORS.test(result.stderr)) {
        return `npm cannot reach the registry to install @openai/codex@${CODEX_VERSION}: ${result.stderr.trim().split('\n').pop()}`;
    }
    if (result.code !== 0 || installedCodexVersion() !== CODEX_VERSION) {
        throw new Error(`npm install @openai/codex@${CODEX_VERSION} failed (exit status ${result.code}):\n${result.stderr}`);
    }
    return null;
}

// Installs Codex when needed and skips t when npm cannot reach the registry. Returns true
// when the test was skipped. testName names the test in the log line ("the Codex test").
export async function skipWithoutCodex(t, testName)
{
    const skipReason = await ensureCodex();
    if (!skipReason) {
        return false;
    }
    console.log(`skipping ${testName}: ${skipReason}`);
    t.skip(skipReason);
    return true;
}

// Returns true when an unprivileged user and network namespace with a working loopback
// can be created, so that a child process reaches nothing beyond 127.0.0.1.
export async function canIsolateNetwork()
{
    try {
        const probe = await collectProcess('unshare', ['-rn', '--', 'sh', '-c', 'ip link set lo up'], {}, 10000);
        return probe.code === 0;
    } catch {
        return false;
    }
}

// Returns [command, args] that run `node script ...args` inside a fresh network namespace
// when isolated is true, or directly otherwise.
export function isolatedNodeCommand(isolated, script, args)
{
    if (!isolated) {
        return [process.execPath, [script, ...args]];
    }
    return ['unshare', ['-rn', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, script, ...args]];
}

// Runs `node runner ...args`, in a network namespace of its own when one can be created,
// and returns the JSON object that the runner prints on its last line of stdout. Fails the
// test when the runner prints no such object or reports an error in it.
export async function runCodexRunner(runner, args, timeoutMs)
{
    const isolated = await canIsolateNetwork();
    if (!isolated) {
        console.log('no network namespace available: Codex runs with a proxy on a closed loopback port instead');
    }
    const [command, commandArgs] = isolatedNodeCommand(isolated, runner, args);
    const outcome = await collectProcess(command, commandArgs, { env: process.env }, timeoutMs);

    const lastLine = outcome.stdout.trim().split('\n').pop() ?? '';
    let result;
    assert.doesNotThrow(() => {
        result = JSON.parse(lastLine);
    }, `the runner printed no result; exit ${outcome.code}, stderr:\n${outcome.stderr}`);
    assert.equal(result.error, undefined, result.error);
    return result;
}

// Returns the config.toml that sends Codex, with the given model, to the relay's WebSocket
// Responses endpoint on relayPort. extraLines go at the end of the provider section.
export function codexConfig(relayPort, model, extraLines = [])
{
    return [
        `model = "${model}"`,
        'model_provider = "wsrelay"',
        'check_for_update_on_startup = false',
        '',
        '[analytics]',
        'enabled = false',
        '',
        '[model_providers.wsrelay]',
        'name = "wsrelay"',
        `base_url = "http://${LOOPBACK}:${relayPort}/v1"`,
        'wire_api = "responses"',
        'env_key = "WSRELAY_KEY"',
        'supports_websockets = true',
        ...extraLines,
        '',
    ].join('\n');
}

// Creates CODEX_HOME with configText as its config.toml, and an empty working directory, both
// under dir. Returns the node arguments and spawn options of `codex exec "say hi"` there.
export async function prepareCodexExec(dir, codexJs, configText)
{
    const codexHome = path.join(dir, 'codex-home');
    const workDir = path.join(dir, 'work');
    await fsp.mkdir(codexHome);
    await fsp.mkdir(workDir);
    await fsp.writeFile(path.join(codexHome, 'config.toml'), configText);

    // A minimal environment: no OpenAI credentials, and a proxy on a closed loopback
    // port for any HTTP request that is not to loopback.
    const env = {
        PATH: process.env.PATH,
        HOME: dir,
        CODEX_HOME: codexHome,
        WSRELAY_KEY: CLIENT_KEY,
        HTTP_PROXY: `http://${LOOPBACK}:9`,
        HTTPS_PROXY: `http://${LOOPBACK}:9`,
        ALL_PROXY: `http://${LOOPBACK}:9`,
        NO_PROXY: `${LOOPBACK},localhost`,
        NO_COLOR: '1',
    };
    return { args: [codexJs, 'exec', '--skip-git-repo-check', 'say hi'], options: { cwd: workDir, env } };
}
