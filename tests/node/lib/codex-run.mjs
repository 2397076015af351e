// Runs the Codex CLI once through the relay in front of bench/mock_upstream and prints
// one JSON object with the outcome on stdout. codex.test.mjs starts this script, inside
// a network namespace of its own when it can, so Codex reaches nothing beyond loopback.
//
// Usage: node codex-run.mjs CODEX_JS MOCK_UPSTREAM_BIN

import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

import {
    CLIENT_KEY,
    LOOPBACK,
    freePort,
    makeTempDir,
    relayEnv,
    sleep,
    startRelay,
    withTimeout,
    writeRelayConfig,
} from './harness.mjs';

const CODEX_TIMEOUT_MS = 120000;
const MODEL = 'mock:deltas=3';

function codexConfig(relayPort)
{
    return [
        `model = "${MODEL}"`,
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
        '',
    ].join('\n');
}

// Spawns a process and collects its output; resolves with its exit once it has closed.
function run(command, args, options, timeoutMs)
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
        child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    return { child, done: closed.finally(() => clearTimeout(timer)) };
}

async function waitForPort(port, ms, isExited)
{
    const deadline = Date.now() + ms;
    for (;;) {
        if (isExited()) {
            throw new Error(`process exited before listening on ${port}`);
        }
        const connected = await new Promise((resolve) => {
            const socket = net.connect({ host: LOOPBACK, port });
            socket.once('connect', () => {
                socket.destroy();
                resolve(true);
            });
            socket.once('error', () => resolve(false));
        });
        if (connected) {
            return;
        }
        if (Date.now() >= deadline) {
            throw new Error(`nothing listened on ${LOOPBACK}:${port} within ${ms} ms`);
        }
        await sleep(25);
    }
}

async function main()
{
    const [codexJs, mockBin] = process.argv.slice(2);
    const dir = await makeTempDir('wsrelay-codex-');
    const result = { model: MODEL };
    let mock = null;
    let relay = null;
    try {
        const mockPort = await freePort();
        mock = run(mockBin, ['--listen', `${LOOPBACK}:${mockPort}`, '--quiet'], {}, CODEX_TIMEOUT_MS * 2);
        let mockExited = false;
        mock.done.then(() => {
            mockExited = true;
        });
        await waitForPort(mockPort, 8000, () => mockExited);

        const { configPath, port } = await writeRelayConfig(dir, {
            upstreamUrl: `ws://${LOOPBACK}:${mockPort}/v1/responses`,
        });
        relay = await startRelay({ configPath, port, env: relayEnv() });

        const codexHome = path.join(dir, 'codex-home');
        const workDir = path.join(dir, 'work');
        await fsp.mkdir(codexHome);
        await fsp.mkdir(workDir);
        await fsp.writeFile(path.join(codexHome, 'config.toml'), codexConfig(port));

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
        const codex = run(process.execPath, [codexJs, 'exec', '--skip-git-repo-check', 'say hi'],
            { cwd: workDir, env }, CODEX_TIMEOUT_MS);
        result.codex = await codex.done;

        // The relay logs relay_complete once Codex has closed its connection.
        try {
            await relay.waitForLine(/ stage=relay_complete( |$)/, 5000);
        } catch {
            // The test reports the missing line together with the whole log.
        }
    } catch (error) {
        result.error = error.stack ?? String(error);
    } finally {
        if (relay) {
            result.relayExit = await relay.stop();
            result.relayLines = relay.lines;
        }
        if (mock) {
            mock.child.kill('SIGTERM');
            const mockResult = await withTimeout(mock.done, 5000, 'the mock upstream to exit').catch(() => {
                mock.child.kill('SIGKILL');
                return { code: null, signal: 'SIGKILL', stderr: '' };
            });
            result.mockStderr = mockResult.stderr;
        }
        await fsp.rm(dir, { recursive: true, force: true });
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
