// End to end with the real Codex CLI: codex exec -> wsrelay -> bench/mock_upstream.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { CODEX_JS, runCodexRunner, skipWithoutCodex } from './lib/codex.mjs';
import { BUILD_DIR } from './lib/harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MOCK_BIN = path.join(BUILD_DIR, 'bench', 'mock_upstream');
const RUNNER = path.join(HERE, 'lib', 'codex-run.mjs');

test('codex exec through relay', { timeout: 420000 }, async (t) => {
    if (await skipWithoutCodex(t, 'the Codex test')) {
        return;
    }
    assert.ok(fs.existsSync(MOCK_BIN), `mock upstream not found at ${MOCK_BIN}: build bench/ or set WR_BUILD_DIR`);

    const result = await runCodexRunner(RUNNER, [CODEX_JS, MOCK_BIN], 300000);

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
