// Runs the Codex CLI once through the relay in front of bench/mock_upstream and prints
// one JSON object with the outcome on stdout. codex.test.mjs starts this script, inside
// a network namespace of its own when it can, so Codex reaches nothing beyond loopback.
//
// Usage: node codex-run.mjs CODEX_JS MOCK_UPSTREAM_BIN

import fsp from 'node:fs/promises';

import { codexConfig, prepareCodexExec } from './codex.mjs';
import {
    LOOPBACK,
    freePort,
    makeTempDir,
    relayEnv,
    startRelay,
    withTimeout,
    writeRelayConfig,
} from './harness.mjs';
import { spawnProcess, waitForListener } from './more.mjs';

const CODEX_TIMEOUT_MS = 120000;
const MODEL = 'mock:deltas=3';

// Spawns a process that collects its output and is killed with SIGKILL after timeoutMs.
// Returns { child, done }, where done resolves with its exit, also after that kill.
function run(command, args, options, timeoutMs)
{
    const { child, done } = spawnProcess(command, args, options);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    return { child, done: done.finally(() => clearTimeout(timer)) };
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
        await waitForListener(mockPort, 8000, () => mockExited);

        const { configPath, port } = await writeRelayConfig(dir, {
            upstreamUrl: `ws://${LOOPBACK}:${mockPort}/v1/responses`,
        });
        relay = await startRelay({ configPath, port, env: relayEnv() });

        const exec = await prepareCodexExec(dir, codexJs, codexConfig(port, MODEL));
        const codex = run(process.execPath, exec.args, exec.options, CODEX_TIMEOUT_MS);
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
