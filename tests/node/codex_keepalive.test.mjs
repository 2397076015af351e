// The real Codex CLI through the relay while the upstream is silent longer than Codex's
// stream idle timeout: the {"type":"keepalive"} event keeps the turn alive, Pings alone do not.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { CODEX_JS, runCodexRunner, skipWithoutCodex } from './lib/codex.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const RUNNER = path.join(HERE, 'lib', 'codex-keepalive-run.mjs');
// The text the runner's upstream streams: "Hello", 5 s of silence, then " there".
const FINAL_TEXT = 'Hello there';
const TURN_OUTPUT_TOKENS = 2;

// Runs the runner with the given event keepalive. Returns null after skipping the test.
async function runCodex(t, eventKeepaliveSeconds)
{
    if (await skipWithoutCodex(t, 'the Codex keepalive test')) {
        return null;
    }
    const result = await runCodexRunner(RUNNER, [CODEX_JS, String(eventKeepaliveSeconds)], 150000);
    result.report = [
        `codex exit ${result.codex.code} after ${result.codexMs} ms`,
        `codex stdout:\n${result.codex.stdout}`,
        `codex stderr:\n${result.codex.stderr}`,
        `relay log:\n${(result.relayLines ?? []).join('\n')}`,
        `ledger:\n${(result.records ?? []).map((record) => JSON.stringify(record)).join('\n')}`,
    ].join('\n');
    return result;
}

function turnRecord(result)
{
    return (result.records ?? []).find((record) => record.output_tokens === TURN_OUTPUT_TOKENS);
}

test('Codex turn survives silence with keepalive event', { timeout: 400000 }, async (t) => {
    const result = await runCodex(t, 0.5);
    if (result === null) {
        return;
    }
    assert.equal(result.codex.signal, null, `codex was killed\n${result.report}`);
    assert.equal(result.codex.code, 0, result.report);
    assert.ok(result.codex.stdout.includes(FINAL_TEXT), `the final answer is missing from the Codex output\n${result.report}`);
    const record = turnRecord(result);
    assert.ok(record, `no ledger record of the turn\n${result.report}`);
    assert.equal(record.status, 'completed');
    assert.equal(record.client_connected, true, result.report);
    assert.equal(result.relayExit.code, 0, result.report);
});

test('Codex turn fails silence without keepalive event', { timeout: 400000 }, async (t) => {
    const result = await runCodex(t, 0);
    if (result === null) {
        return;
    }
    assert.notEqual(result.codex.code, 0, `Codex finished the turn without the keepalive event\n${result.report}`);
    assert.ok(!result.codex.stdout.includes(FINAL_TEXT), `Codex printed the final answer\n${result.report}`);
    assert.match(result.codex.stderr, /idle timeout/i, `Codex failed for another reason than its stream idle timeout\n${result.report}`);
    // The relay drained the upstream after Codex left and recorded the turn.
    const record = turnRecord(result);
    assert.ok(record, `no ledger record of the turn\n${result.report}`);
    assert.equal(record.status, 'completed');
    assert.equal(record.client_connected, false, result.report);
});
