// Helpers for the keepalive, usage ledger and Codex keepalive tests, on top of harness.mjs:
// ledger reading, timestamped frames, Responses API events with chosen usage, raw upstream
// frame writes, child processes and an HAProxy front. Everything stays on 127.0.0.1.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

import {
    LOOPBACK,
    OPCODE,
    encodeFrame,
    freePort,
    logfmtFields,
    sleep,
    waitFor,
    withTimeout,
} from './harness.mjs';

// ---------------------------------------------------------------------------
// Usage ledger

// Parses ledger text into records. Text after the last newline is returned as trailing,
// since a poll may catch a line that the relay is still writing.
export function parseLedgerText(text)
{
    const end = text.lastIndexOf('\n') + 1;
    const records = [];
    const lines = text.slice(0, end).split('\n').slice(0, -1);
    lines.forEach((line, index) => {
        try {
            records.push(JSON.parse(line));
        } catch (error) {
            throw new Error(`ledger line ${index + 1} is not JSON (${error.message}): ${JSON.stringify(line.slice(0, 300))}`);
        }
    });
    return { records, trailing: text.slice(end) };
}

// Returns the records of a ledger file, or [] when the file does not exist. Throws when a
// line is not JSON or the file ends inside a line.
export function readLedger(file)
{
    let text;
    try {
        text = fs.readFileSync(file, 'utf8');
    } catch (error) {
        if (error.code === 'ENOENT') {
            return [];
        }
        throw error;
    }
    const { records, trailing } = parseLedgerText(text);
    if (trailing.length > 0) {
        throw new Error(`ledger ${file} ends inside a line: ${JSON.stringify(trailing.slice(0, 300))}`);
    }
    return records;
}

// Polls the ledger until it contains at least count whole records, then returns them all.
export async function waitForRecords(file, count, ms = 5000)
{
    await waitFor(() => {
        let text;
        try {
            text = fs.readFileSync(file, 'utf8');
        } catch (error) {
            if (error.code === 'ENOENT') {
                return false;
            }
            throw error;
        }
        return parseLedgerText(text).records.length >= count;
    }, ms, `${count} record(s) in the ledger ${file}`);
    return readLedger(file);
}

// ---------------------------------------------------------------------------
// Relay traces

// Returns the parsed relay_trace lines of a stage, optionally of one connection.
export function traces(relay, stage, conn = null)
{
    return relay.lines
        .filter((line) => line.includes(` stage=${stage}`))
        .map(logfmtFields)
        .filter((fields) => fields.event === 'relay_trace' && fields.stage === stage)
        .filter((fields) => conn === null || fields.conn === conn);
}

// Waits for the relay_trace line of a stage and returns its fields.
export async function waitForTrace(relay, stage, ms = 5000)
{
    const line = await relay.waitForLine(new RegExp(` stage=${stage}( |$)`), ms);
    return logfmtFields(line);
}

// Returns the id of the only connection that has a relay_start line.
export function onlyConn(relay)
{
    const starts = traces(relay, 'relay_start');
    if (starts.length !== 1) {
        throw new Error(`expected one relay_start line, found ${starts.length}:\n${relay.stderr}`);
    }
    return starts[0].conn;
}

// ---------------------------------------------------------------------------
// Timestamped traffic at the client

// Records the arrival time (Date.now()) of every Ping at a `ws` client.
export function recordPingTimes(client)
{
    const times = [];
    client.ws.on('ping', () => times.push(Date.now()));
    return times;
}

// Records every message at a `ws` client as { at, text, isBinary }.
export function recordMessages(client)
{
    const messages = [];
    client.ws.on('message', (data, isBinary) => {
        messages.push({ at: Date.now(), text: Buffer.from(data).toString('utf8'), isBinary });
    });
    return messages;
}

// Calls onFrame for each frame a RawClient decodes from now on, after setting frame.at to
// its arrival time. The listener runs after the RawClient's own, so the frame is already queued.
export function watchRawFrames(raw, onFrame = () => {})
{
    let seen = raw.received.length;
    raw.socket.on('data', () => {
        const now = Date.now();
        for (; seen < raw.received.length; seen++) {
            const frame = raw.received[seen];
            frame.at = now;
            onFrame(frame);
        }
    });
}

// Makes a RawClient respond to Pings: 'echo' sends one Pong with the Ping's payload, 'twice'
// two of them, 'wrong' a Pong whose payload differs from the Ping's.
export function respondToPings(raw, mode = 'echo')
{
    watchRawFrames(raw, (frame) => {
        if (frame.opcode !== OPCODE.PING || raw.isEnded) {
            return;
        }
        let payload = frame.payload;
        if (mode === 'wrong') {
            payload = Buffer.from(frame.payload.map((byte) => byte ^ 0xff));
            if (payload.length === 0) {
                payload = Buffer.from('not-the-ping-payload');
            }
        }
        raw.sendFrame({ opcode: OPCODE.PONG, payload });
        if (mode === 'twice') {
            raw.sendFrame({ opcode: OPCODE.PONG, payload });
        }
    });
}

// Returns the differences between consecutive times.
export function gaps(times)
{
    return times.slice(1).map((time, index) => time - times[index]);
}

// ---------------------------------------------------------------------------
// Responses API events

export function createdEvent(id, model = 'gpt-test')
{
    return JSON.stringify({
        type: 'response.created',
        response: { id, object: 'response', status: 'in_progress', model },
    });
}

export function deltaEvent(delta, sequence = 1)
{
    return JSON.stringify({
        type: 'response.output_text.delta',
        sequence_number: sequence,
        item_id: 'msg_1',
        output_index: 0,
        content_index: 0,
        delta,
    });
}

// Builds a terminal event. Members of response come in this order: id, object, status,
// model (left out when null), then the members of extra, then usage (left out when undefined).
export function terminalEvent({
    type = 'response.completed',
    id,
    status = 'completed',
    model = 'gpt-test',
    usage,
    extra = {},
})
{
    const response = { id, object: 'response', status };
    if (model !== null) {
        response.model = model;
    }
    Object.assign(response, extra);
    if (usage !== undefined) {
        response.usage = usage;
    }
    return JSON.stringify({ type, response });
}

// Usage in the Responses API shape.
export function usageOf({ input = 0, cached = 0, output = 0, reasoning = 0, total = input + output })
{
    return {
        input_tokens: input,
        input_tokens_details: { cached_tokens: cached },
        output_tokens: output,
        output_tokens_details: { reasoning_tokens: reasoning },
        total_tokens: total,
    };
}

export function prewarmCreate(model = 'gpt-test')
{
    return JSON.stringify({ type: 'response.create', model, generate: false, input: [] });
}

// ---------------------------------------------------------------------------
// Raw writes from the upstream side

// Encodes an unmasked frame, as a server sends it.
export function serverFrame({ opcode = OPCODE.TEXT, payload, fin = true })
{
    return encodeFrame({ opcode, payload: Buffer.from(payload), fin, mask: false });
}

// Writes bytes to the upstream connection's socket in pieces cut at the given offsets,
// pausing gapMs between pieces so that the relay is likely to read them separately.
// Bypasses ws, so nothing else may be sent on that connection meanwhile.
export async function writeInPieces(connection, bytes, cuts, gapMs = 2)
{
    let start = 0;
    for (const cut of [...cuts, bytes.length]) {
        const piece = bytes.subarray(start, cut);
        start = cut;
        await new Promise((resolve, reject) => {
            connection.socket.write(piece, (error) => (error ? reject(error) : resolve()));
        });
        if (cut < bytes.length && gapMs > 0) {
            await sleep(gapMs);
        }
    }
}

// ---------------------------------------------------------------------------
// Processes

// Spawns a process that collects its output. Returns { child, stdout, stderr, done }, where
// stdout and stderr grow as output arrives and done resolves with { code, signal, stdout,
// stderr } once the process has closed, or has failed to start.
export function spawnProcess(command, args, options)
{
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = { child, stdout: '', stderr: '', done: null };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
        proc.stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
        proc.stderr += chunk;
    });
    proc.done = new Promise((resolve) => {
        child.on('error', (error) => resolve({ code: null, signal: null, stdout: proc.stdout, stderr: `${proc.stderr}${error.message}` }));
        child.on('close', (code, signal) => resolve({ code, signal, stdout: proc.stdout, stderr: proc.stderr }));
    });
    return proc;
}

// Spawns a process and resolves with { code, signal, stdout, stderr } once it has closed.
// Kills it with SIGKILL and rejects when it runs longer than timeoutMs.
export function collectProcess(command, args, options, timeoutMs)
{
    const proc = spawnProcess(command, args, options);
    return withTimeout(proc.done, timeoutMs, `${path.basename(command)} to exit`).catch((error) => {
        proc.child.kill('SIGKILL');
        throw new Error(`${error.message}; stderr so far:\n${proc.stderr}`);
    });
}

// Resolves once a TCP connection to 127.0.0.1:port succeeds; rejects when isExited()
// turns true or ms pass first.
export async function waitForListener(port, ms, isExited = () => false)
{
    const deadline = Date.now() + ms;
    for (;;) {
        if (isExited()) {
            throw new Error(`the process exited before listening on ${LOOPBACK}:${port}`);
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

// ---------------------------------------------------------------------------
// HAProxy in front of the relay

export const HAPROXY_BIN = '/usr/sbin/haproxy';

// Starts HAProxy (mode http) on a free 127.0.0.1 port forwarding to the relay on
// backendPort. Every timeout, including the WebSocket tunnel's, is idleSeconds.
// Returns null when the HAProxy binary is not installed.
export async function startHaproxy(dir, backendPort, idleSeconds)
{
    if (!fs.existsSync(HAPROXY_BIN)) {
        return null;
    }
    const port = await freePort();
    const config = [
        'global',
        '    maxconn 64',
        '',
        'defaults',
        '    mode http',
        `    timeout connect ${idleSeconds}s`,
        `    timeout client ${idleSeconds}s`,
        `    timeout server ${idleSeconds}s`,
        `    timeout tunnel ${idleSeconds}s`,
        '',
        'frontend relay_front',
        `    bind ${LOOPBACK}:${port}`,
        '    default_backend relay_back',
        '',
        'backend relay_back',
        `    server relay ${LOOPBACK}:${backendPort}`,
        '',
    ].join('\n');
    const configPath = path.join(dir, 'haproxy.cfg');
    await fsp.writeFile(configPath, config);

    const child = spawn(HAPROXY_BIN, ['-db', '-f', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
        output += chunk;
    });
    child.stderr.on('data', (chunk) => {
        output += chunk;
    });
    let exitInfo = null;
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
        exitInfo = { code, signal };
        resolve(exitInfo);
    }));
    const proxy = {
        port,
        child,
        get output()
        {
            return output;
        },
        async stop()
        {
            if (exitInfo === null) {
                child.kill('SIGTERM');
                await withTimeout(exited, 5000, 'HAProxy to exit').catch(() => {
                    child.kill('SIGKILL');
                    return exited;
                });
            }
        },
    };
    try {
        await waitForListener(port, 5000, () => exitInfo !== null);
    } catch (error) {
        await proxy.stop();
        throw new Error(`${error.message}; HAProxy output:\n${output}`);
    }
    return proxy;
}

// ---------------------------------------------------------------------------
// tmpfs for the full-filesystem test

// Mounts a tmpfs of the given size on dir. Returns null on success, or the reason
// mounting is not possible here.
export async function mountTmpfs(dir, size)
{
    const result = await collectProcess('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], {}, 10000);
    if (result.code === 0) {
        return null;
    }
    return `mount -t tmpfs failed with exit status ${result.code}: ${result.stderr.trim()}`;
}

export async function unmount(dir)
{
    const result = await collectProcess('umount', [dir], {}, 10000);
    if (result.code !== 0) {
        throw new Error(`umount ${dir} failed with exit status ${result.code}: ${result.stderr.trim()}`);
    }
}

// Fills the filesystem holding dir with one file of 4 KiB writes until ENOSPC, at most
// maxBytes. Returns the filler's path.
export function fillFilesystem(dir, maxBytes)
{
    const filler = path.join(dir, 'filler');
    const block = Buffer.alloc(4096, 0x2e);
    const fd = fs.openSync(filler, 'w');
    try {
        for (let written = 0; written < maxBytes; written += block.length) {
            try {
                fs.writeSync(fd, block);
            } catch (error) {
                if (error.code === 'ENOSPC') {
                    return filler;
                }
                throw error;
            }
        }
    } finally {
        fs.closeSync(fd);
    }
    throw new Error(`the filesystem of ${dir} took ${maxBytes} bytes without reporting ENOSPC`);
}
