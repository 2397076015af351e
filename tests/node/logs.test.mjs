// Trace lines on stderr: logfmt shape, relay_start fields, and no secrets.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
    CLIENT_KEY,
    UPSTREAM_KEY,
    WRONG_CLIENT_KEY,
    logfmtFields,
    parseLogfmt,
    responseCreate,
    startStack,
    turnEvents,
    upgradeRequest,
    withTimeout,
} from './lib/harness.mjs';

const LINE_START = /^ts=(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) level=(error|warn|info|debug)( |$)/;

// Runs one refused upgrade and one whole turn, then stops the relay and returns its stderr lines.
async function exerciseRelay(t)
{
    const stack = await startStack(t);

    const refused = await stack.rawClient();
    refused.write(upgradeRequest({ key: WRONG_CLIENT_KEY }));
    const response = await refused.readResponse();
    assert.equal(response.status, 401);

    const client = await stack.openClient({ headers: { 'OpenAI-Beta': 'responses_websockets=2026-02-06' } });
    const upstream = await stack.upstream.nextConnection();
    await client.send(responseCreate());
    await upstream.nextMessage();
    const events = turnEvents({ id: 'resp_logs' });
    await upstream.sendAll(events);
    for (let i = 0; i < events.length; i++) {
        await client.nextMessage();
    }
    client.ws.close(1000);
    await client.waitClosed();
    await withTimeout(upstream.closed, 3000, 'the relay to close the upstream');
    await stack.relay.waitForLine(/ stage=relay_complete( |$)/);

    const exit = await stack.relay.stop();
    return { lines: stack.relay.lines, stdout: stack.relay.stdout, exit };
}

test('log lines are logfmt', { timeout: 30000 }, async (t) => {
    const startedMs = Date.now();
    const { lines } = await exerciseRelay(t);
    const endedMs = Date.now();

    assert.ok(lines.length > 0, 'the relay wrote no log lines');
    for (const line of lines) {
        const start = LINE_START.exec(line);
        assert.ok(start, `line does not begin with ts= and level=: ${line}`);
        const ts = Date.parse(start[1]);
        // One second of slack on each side for clock granularity.
        assert.ok(ts >= startedMs - 1000, `timestamp ${start[1]} is before the test run`);
        assert.ok(ts <= endedMs + 1000, `timestamp ${start[1]} is after the test run`);
        assert.doesNotThrow(() => parseLogfmt(line), `line is not valid logfmt: ${line}`);
    }
});

test('relay traces carry conn and instance', { timeout: 30000 }, async (t) => {
    const { lines } = await exerciseRelay(t);

    const starts = lines.filter((line) => / stage=relay_start( |$)/.test(line)).map(logfmtFields);
    assert.ok(starts.length >= 1, 'no relay_start line');
    for (const fields of starts) {
        assert.equal(fields.event, 'relay_trace');
        assert.match(fields.conn, /^\d+-\d+$/);
        assert.match(fields.instance, /^\S+$/);
    }
    const instances = new Set(starts.map((fields) => fields.instance));
    assert.equal(instances.size, 1, 'relay_start lines of one process carry different instances');

    const completes = lines.filter((line) => / stage=relay_complete( |$)/.test(line)).map(logfmtFields);
    assert.ok(completes.length >= 1, 'no relay_complete line');
    const startedConns = new Set(starts.map((fields) => fields.conn));
    for (const fields of completes) {
        assert.ok(startedConns.has(fields.conn), `relay_complete for conn ${fields.conn} without its relay_start`);
    }
});

test('instance differs between runs', { timeout: 40000 }, async (t) => {
    const instances = [];
    for (let run = 0; run < 2; run++) {
        const { lines } = await exerciseRelay(t);
        const start = lines.find((line) => / stage=relay_start( |$)/.test(line));
        assert.ok(start, `no relay_start line in run ${run + 1}`);
        instances.push(logfmtFields(start).instance);
    }
    assert.notEqual(instances[0], instances[1]);
});

test('logs never contain keys', { timeout: 30000 }, async (t) => {
    const { lines, stdout } = await exerciseRelay(t);
    const text = `${lines.join('\n')}\n${stdout}`;

    assert.ok(!text.includes(CLIENT_KEY), 'a log line contains the client key');
    assert.ok(!text.includes(WRONG_CLIENT_KEY), 'a log line contains a rejected client key');
    assert.ok(!text.includes(UPSTREAM_KEY), 'a log line contains the upstream key');
    assert.ok(!/Bearer /i.test(text), 'a log line contains an Authorization value');
});
