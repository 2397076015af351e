// Test harness for black-box tests of the wsrelay binary: a scriptable `ws` upstream,
// a relay config writer, a relay process wrapper and a raw TCP WebSocket client.
// Everything listens on and connects to 127.0.0.1 only.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { WebSocket, WebSocketServer } from 'ws';

export const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BUILD_DIR = process.env.WR_BUILD_DIR
    ? path.resolve(process.env.WR_BUILD_DIR)
    : path.join(REPO_DIR, 'build');
export const RELAY_BIN = path.join(BUILD_DIR, 'wsrelay');

export const LOOPBACK = '127.0.0.1';
export const UPSTREAM_PATH = '/v1/responses';

// Recognisable secrets, so that a leak into the logs is easy to grep for.
export const CLIENT_KEY = 'wsrtest-client-secret-6f1d2c9e8a47b305';
export const WRONG_CLIENT_KEY = 'wsrtest-wrong-secret-93a0b7c41e5d26f8';
export const UPSTREAM_KEY = 'sk-wsrtest-upstream-secret-0c7e5a3b91d4f862';
export const UPSTREAM_KEY_ENV = 'WSRELAY_TEST_UPSTREAM_KEY';

export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const OPCODE = Object.freeze({
    CONTINUATION: 0x0,
    TEXT: 0x1,
    BINARY: 0x2,
    CLOSE: 0x8,
    PING: 0x9,
    PONG: 0xa,
});

const DEFAULT_WAIT_MS = 5000;

// ---------------------------------------------------------------------------
// Small utilities

export function sha256Hex(data)
{
    return crypto.createHash('sha256').update(data).digest('hex');
}

export function sleep(ms)
{
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// Rejects with a message naming `description` when promise has not settled within ms.
export function withTimeout(promise, ms, description)
{
    let timer;
    const deadline = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${description}`)), ms);
    });
    return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// Polls check() every intervalMs until it returns a truthy value or ms have passed.
export async function waitFor(check, ms, description, intervalMs = 20)
{
    const deadline = Date.now() + ms;
    for (;;) {
        const value = await check();
        if (value) {
            return value;
        }
        if (Date.now() >= deadline) {
            throw new Error(`timed out after ${ms} ms waiting for ${description}`);
        }
        await sleep(intervalMs);
    }
}

// A FIFO whose consumers wait with a deadline. fail() rejects current and later waits
// once the queued items are used up, so a closed connection fails a test at once.
export class AsyncQueue {
    #items = [];
    #waiters = [];
    #error = null;

    constructor(label)
    {
        this.label = label;
    }

    get length()
    {
        return this.#items.length;
    }

    push(item)
    {
        const waiter = this.#waiters.shift();
        if (waiter) {
            clearTimeout(waiter.timer);
            waiter.resolve(item);
            return;
        }
        this.#items.push(item);
    }

    fail(error)
    {
        if (this.#error) {
            return;
        }
        this.#error = error;
        for (const waiter of this.#waiters.splice(0)) {
            clearTimeout(waiter.timer);
            waiter.reject(error);
        }
    }

    next(ms = DEFAULT_WAIT_MS)
    {
        if (this.#items.length > 0) {
            return Promise.resolve(this.#items.shift());
        }
        if (this.#error) {
            return Promise.reject(this.#error);
        }
        return new Promise((resolve, reject) => {
            const waiter = { resolve, reject, timer: null };
            waiter.timer = setTimeout(() => {
                const index = this.#waiters.indexOf(waiter);
                if (index >= 0) {
                    this.#waiters.splice(index, 1);
                }
                reject(new Error(`timed out after ${ms} ms waiting for ${this.label}`));
            }, ms);
            this.#waiters.push(waiter);
        });
    }
}

// Returns a TCP port on 127.0.0.1 that was free a moment ago.
export async function freePort()
{
    const server = net.createServer();
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, LOOPBACK, resolve);
    });
    const { port } = server.address();
    await new Promise((resolve) => server.close(resolve));
    return port;
}

// Returns the fields of /proc/<pid>/status that are sizes (VmRSS, VmHWM, ...) in KiB.
export function readProcMemory(pid)
{
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const fields = {};
    for (const line of text.split('\n')) {
        const match = /^(\w+):\s+(\d+) kB$/.exec(line);
        if (match) {
            fields[match[1]] = Number(match[2]);
        }
    }
    return fields;
}

// Builds the events of one Responses API turn as JSON text, in the order an upstream sends them.
export function turnEvents({ id = 'resp_test', model = 'gpt-test', deltas = ['Hel', 'lo', '!'] } = {})
{
    const created = {
        type: 'response.created',
        sequence_number: 0,
        response: { id, object: 'response', status: 'in_progress', model },
    };
    const events = [JSON.stringify(created)];
    deltas.forEach((delta, index) => {
        events.push(JSON.stringify({
            type: 'response.output_text.delta',
            sequence_number: index + 1,
            item_id: 'msg_1',
            output_index: 0,
            content_index: 0,
            delta,
        }));
    });
    const completed = {
        type: 'response.completed',
        sequence_number: deltas.length + 1,
        response: {
            id,
            object: 'response',
            status: 'completed',
            model,
            usage: {
                input_tokens: 17,
                input_tokens_details: { cached_tokens: 3 },
                output_tokens: 9,
                output_tokens_details: { reasoning_tokens: 0 },
                total_tokens: 26,
            },
        },
    };
    events.push(JSON.stringify(completed));
    return events;
}

export function responseCreate(model = 'gpt-test', input = 'say hi')
{
    return JSON.stringify({
        type: 'response.create',
        model,
        input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: input }] }],
    });
}

// ---------------------------------------------------------------------------
// Scriptable upstream: a `ws` server on 127.0.0.1 that records what the relay sends.

// One upstream WebSocket connection accepted from the relay.
export class UpstreamConnection {
    constructor(ws, request, socket, rawFrames = null)
    {
        this.ws = ws;
        this.socket = socket;
        this.request = request;
        this.headers = { ...request.headers };
        this.messages = new AsyncQueue('a message at the upstream');
        this.received = [];
        this.pings = [];
        this.pongs = [];
        this.errors = [];
        this.closeInfo = null;
        // Frames as the relay sent them, masks included; null unless the upstream records frames.
        this.rawFrames = rawFrames;

        ws.on('message', (data, isBinary) => {
            const message = { data: Buffer.from(data), isBinary };
            this.received.push(message);
            this.messages.push(message);
        });
        ws.on('ping', (data) => this.pings.push(Buffer.from(data)));
        ws.on('pong', (data) => this.pongs.push(Buffer.from(data)));
        ws.on('error', (error) => this.errors.push(error));
        this.closed = new Promise((resolve) => {
            ws.on('close', (code, reason) => {
                this.closeInfo = { code, reason: reason.toString('utf8') };
                this.messages.fail(new Error(`upstream connection closed (code ${code})`));
                resolve(this.closeInfo);
            });
        });
    }

    get isOpen()
    {
        return this.ws.readyState === WebSocket.OPEN;
    }

    // Sends a text message (objects as JSON) and resolves once ws has written it.
    // fin false sends a fragment; the message goes on with the next send.
    send(data, { binary = false, fin = true } = {})
    {
        const payload = typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data);
        return new Promise((resolve, reject) => {
            this.ws.send(payload, { binary, fin }, (error) => (error ? reject(error) : resolve()));
        });
    }

    async sendAll(messages)
    {
        for (const message of messages) {
            await this.send(message);
        }
    }

    nextMessage(ms = DEFAULT_WAIT_MS)
    {
        return this.messages.next(ms);
    }

    // Ends the TCP connection with a reset (RST), without a Close frame.
    reset()
    {
        this.socket.resetAndDestroy();
    }

    // Ends the TCP connection with a FIN, without a Close frame.
    endWithoutClose()
    {
        this.socket.end();
    }
}

export class Upstream {
    constructor(options = {})
    {
        // 'accept', 'hang' (read the request, never respond), or { status, headers, body }.
        this.handshake = options.handshake ?? 'accept';
        this.responseHeaders = options.responseHeaders ?? {};
        this.onConnection = options.onConnection ?? null;
        // Decoding every frame a second time is slow for large messages, so it is opt-in.
        this.recordFrames = options.recordFrames ?? false;
        this.tcpConnections = 0;
        this.requests = [];
        this.connections = [];
        this.port = 0;
        this.#connectionQueue = new AsyncQueue('an upstream connection from the relay');

        this.server = http.createServer((request, response) => {
            response.writeHead(426, { 'Content-Type': 'text/plain' });
            response.end('WebSocket upgrade expected\n');
        });
        // ws would accept permessage-deflate if it were offered, which lets a test see
        // that the relay does not offer it.
        this.wss = new WebSocketServer({
            noServer: true,
            perMessageDeflate: true,
            maxPayload: 128 * 1024 * 1024,
        });
        this.wss.on('headers', (headers) => {
            for (const [name, value] of Object.entries(this.responseHeaders)) {
                headers.push(`${name}: ${value}`);
            }
        });
        this.server.on('connection', (socket) => {
            this.tcpConnections += 1;
            this.#sockets.add(socket);
            socket.on('close', () => this.#sockets.delete(socket));
            socket.on('error', () => {});
        });
        this.server.on('upgrade', (request, socket, head) => this.#onUpgrade(request, socket, head));
    }

    #connectionQueue;
    #sockets = new Set();

    get url()
    {
        return `ws://${LOOPBACK}:${this.port}${UPSTREAM_PATH}`;
    }

    async listen()
    {
        await new Promise((resolve, reject) => {
            this.server.once('error', reject);
            this.server.listen(0, LOOPBACK, resolve);
        });
        this.port = this.server.address().port;
        return this;
    }

    #onUpgrade(request, socket, head)
    {
        this.requests.push({
            method: request.method,
            url: request.url,
            headers: { ...request.headers },
            rawHeaders: [...request.rawHeaders],
        });
        const mode = this.handshake;
        if (mode === 'hang') {
            return;
        }
        if (typeof mode === 'object') {
            const body = mode.body ?? JSON.stringify({
                error: { message: `upstream test status ${mode.status}`, type: 'test_error', code: null },
            });
            const lines = [`HTTP/1.1 ${mode.status} ${http.STATUS_CODES[mode.status] ?? 'Status'}`];
            for (const [name, value] of Object.entries(mode.headers ?? {})) {
                lines.push(`${name}: ${value}`);
            }
            lines.push('Content-Type: application/json');
            lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
            lines.push('Connection: close');
            socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
            return;
        }
        let rawFrames = null;
        if (this.recordFrames) {
            const decoder = new FrameDecoder();
            rawFrames = [];
            const record = (chunk) => rawFrames.push(...decoder.push(chunk));
            record(head);
            socket.on('data', record);
        }
        this.wss.handleUpgrade(request, socket, head, (ws) => {
            const connection = new UpstreamConnection(ws, request, socket, rawFrames);
            this.connections.push(connection);
            this.#connectionQueue.push(connection);
            if (this.onConnection) {
                this.onConnection(connection);
            }
        });
    }

    nextConnection(ms = DEFAULT_WAIT_MS)
    {
        return this.#connectionQueue.next(ms);
    }

    async close()
    {
        for (const client of this.wss.clients) {
            client.terminate();
        }
        for (const socket of this.#sockets) {
            socket.destroy();
        }
        await new Promise((resolve) => this.server.close(() => resolve()));
        this.wss.close();
    }
}

export async function startUpstream(options = {})
{
    return new Upstream(options).listen();
}

// ---------------------------------------------------------------------------
// Relay configuration (libconfig syntax)

function formatConfigValue(value)
{
    if (typeof value === 'string') {
        return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
    }
    if (typeof value === 'boolean') {
        return value ? 'true' : 'false';
    }
    if (typeof value === 'bigint') {
        return `${value}L`;
    }
    if (typeof value === 'number' && Number.isInteger(value)) {
        // libconfig needs the L suffix for integers outside 32 bits.
        return Math.abs(value) > 2147483647 ? `${value}L` : String(value);
    }
    if (typeof value === 'number' && Number.isFinite(value)) {
        return String(value);
    }
    throw new Error(`cannot write ${typeof value} ${String(value)} as a libconfig value`);
}

function formatConfigGroup(group, indent)
{
    const pad = ' '.repeat(indent);
    const lines = [];
    for (const [key, value] of Object.entries(group)) {
        if (value === undefined) {
            continue;
        }
        if (Array.isArray(value)) {
            const items = value.map((item) => `${pad}  {\n${formatConfigGroup(item, indent + 4)}${pad}  }`);
            lines.push(`${pad}${key} = (\n${items.join(',\n')}\n${pad});\n`);
        } else if (value !== null && typeof value === 'object') {
            lines.push(`${pad}${key}: {\n${formatConfigGroup(value, indent + 2)}${pad}};\n`);
        } else {
            lines.push(`${pad}${key} = ${formatConfigValue(value)};\n`);
        }
    }
    return lines.join('');
}

// Builds the text of a relay config. Keys given in options override the test defaults;
// a key set to undefined is left out so that the relay's own default applies.
export function relayConfigText(options)
{
    const gateway = {
        listen: options.listen,
        workers: 2,
        log_level: 'info',
        ...options.gateway,
        auth: {
            clients: options.clients ?? [{ name: 'test', key_sha256: sha256Hex(CLIENT_KEY) }],
        },
        openai_ws: {
            upstream_url: options.upstreamUrl,
            upstream_api_key_env: UPSTREAM_KEY_ENV,
            dial_timeout_seconds: 3,
            upstream_drain_timeout_seconds: 3,
            // Keepalive has its own tests. Off here, so no relay Ping can be mistaken for a relayed one.
            passthrough_downstream_ping_interval_seconds: 0,
            ...options.openai_ws,
        },
        usage: {
            ledger_path: options.ledgerPath,
            ...options.usage,
        },
    };
    return formatConfigGroup({ gateway }, 0);
}

export async function makeTempDir(prefix = 'wsrelay-node-')
{
    return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

// Writes relay.conf into dir and returns its path and the listen port.
export async function writeRelayConfig(dir, options = {})
{
    const port = options.port ?? await freePort();
    const text = relayConfigText({
        listen: `${LOOPBACK}:${port}`,
        ledgerPath: path.join(dir, 'usage.jsonl'),
        ...options,
    });
    const configPath = path.join(dir, 'relay.conf');
    await fsp.writeFile(configPath, text);
    return { configPath, port, text };
}

// ---------------------------------------------------------------------------
// The relay process

export function relayEnv(extra = {})
{
    const env = { ...process.env, [UPSTREAM_KEY_ENV]: UPSTREAM_KEY, ...extra };
    for (const [name, value] of Object.entries(env)) {
        if (value === undefined) {
            delete env[name];
        }
    }
    return env;
}

// Relays still running when the test process exits, for example after an uncaught error.
const liveRelays = new Set();
process.on('exit', () => {
    for (const child of liveRelays) {
        child.kill('SIGKILL');
    }
});

function assertRelayBinary()
{
    if (!fs.existsSync(RELAY_BIN)) {
        throw new Error(`relay binary not found at ${RELAY_BIN}: build it or set WR_BUILD_DIR`);
    }
}

export class RelayProcess {
    constructor(child, port)
    {
        this.child = child;
        this.pid = child.pid;
        this.port = port;
        this.lines = [];
        this.stdout = '';
        this.exitInfo = null;
        this.#pending = '';

        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (chunk) => {
            this.stdout += chunk;
        });
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (chunk) => this.#onStderr(chunk));
        liveRelays.add(child);
        this.exited = new Promise((resolve) => {
            child.on('exit', (code, signal) => {
                liveRelays.delete(child);
                this.exitInfo = { code, signal };
                resolve(this.exitInfo);
            });
        });
        this.closed = new Promise((resolve) => child.on('close', resolve));
    }

    #pending;
    #lineWaiters = new Set();

    #onStderr(chunk)
    {
        this.#pending += chunk;
        let newline = this.#pending.indexOf('\n');
        while (newline >= 0) {
            const line = this.#pending.slice(0, newline);
            this.#pending = this.#pending.slice(newline + 1);
            this.lines.push(line);
            for (const waiter of this.#lineWaiters) {
                if (waiter.match(line)) {
                    waiter.resolve(line);
                }
            }
            newline = this.#pending.indexOf('\n');
        }
    }

    get stderr()
    {
        return this.lines.join('\n') + (this.#pending ? `\n${this.#pending}` : '');
    }

    linesMatching(pattern)
    {
        return this.lines.filter(lineMatcher(pattern));
    }

    // Resolves with the first stderr line, already printed or still to come, that matches.
    waitForLine(pattern, ms = DEFAULT_WAIT_MS)
    {
        const match = lineMatcher(pattern);
        const found = this.lines.find(match);
        if (found !== undefined) {
            return Promise.resolve(found);
        }
        let waiter;
        const promise = new Promise((resolve) => {
            waiter = {
                match,
                resolve: (line) => {
                    this.#lineWaiters.delete(waiter);
                    resolve(line);
                },
            };
            this.#lineWaiters.add(waiter);
        });
        return withTimeout(promise, ms, `a relay log line matching ${pattern}`)
            .finally(() => this.#lineWaiters.delete(waiter));
    }

    memory()
    {
        return readProcMemory(this.pid);
    }

    // Sends SIGTERM, then SIGKILL when the relay has not exited within graceMs.
    async stop(graceMs = 6000)
    {
        if (this.exitInfo === null) {
            this.child.kill('SIGTERM');
            try {
                await withTimeout(this.exited, graceMs, 'the relay to exit after SIGTERM');
            } catch {
                this.child.kill('SIGKILL');
                await withTimeout(this.exited, 3000, 'the relay to exit after SIGKILL');
            }
        }
        await withTimeout(this.closed, 2000, 'the relay output streams to close');
        return this.exitInfo;
    }
}

function lineMatcher(pattern)
{
    if (typeof pattern === 'function') {
        return pattern;
    }
    if (pattern instanceof RegExp) {
        return (line) => pattern.test(line);
    }
    return (line) => line.includes(pattern);
}

// Returns when a TCP connection to 127.0.0.1:port succeeds; throws if the relay exits first.
async function waitUntilListening(relay, ms)
{
    const deadline = Date.now() + ms;
    for (;;) {
        if (relay.exitInfo !== null) {
            throw new Error(`relay exited with ${JSON.stringify(relay.exitInfo)} before listening:\n${relay.stderr}`);
        }
        const connected = await new Promise((resolve) => {
            const socket = net.connect({ host: LOOPBACK, port: relay.port });
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
            throw new Error(`relay did not accept connections on port ${relay.port} within ${ms} ms:\n${relay.stderr}`);
        }
        await sleep(25);
    }
}

// Spawns `wsrelay -c configPath` and waits until it accepts TCP connections on port.
export async function startRelay({ configPath, port, env = relayEnv(), readyMs = 8000 })
{
    assertRelayBinary();
    const child = spawn(RELAY_BIN, ['-c', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const relay = new RelayProcess(child, port);
    try {
        await waitUntilListening(relay, readyMs);
    } catch (error) {
        await relay.stop();
        throw error;
    }
    return relay;
}

// Runs the relay binary to completion (for --check-config, --version, start-up failures).
export async function runRelay(args, { env = relayEnv(), timeoutMs = 10000 } = {})
{
    assertRelayBinary();
    const child = spawn(RELAY_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
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
    const closed = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    try {
        const { code, signal } = await withTimeout(closed, timeoutMs, `wsrelay ${args.join(' ')} to exit`);
        return { code, signal, stdout, stderr };
    } catch (error) {
        child.kill('SIGKILL');
        await withTimeout(closed, 3000, 'the killed relay to exit');
        throw new Error(`${error.message}; stderr so far:\n${stderr}`);
    }
}

// ---------------------------------------------------------------------------
// A relay in front of a scriptable upstream, torn down after the test.

export class Stack {
    constructor()
    {
        this.dir = null;
        this.upstream = null;
        this.relay = null;
        this.port = 0;
        this.configPath = null;
        this.configText = null;
        this.#cleanups = [];
    }

    #cleanups;

    // Registers fn to run at teardown, latest first.
    defer(fn)
    {
        this.#cleanups.push(fn);
    }

    async teardown()
    {
        const errors = [];
        for (const fn of this.#cleanups.splice(0).reverse()) {
            try {
                await fn();
            } catch (error) {
                errors.push(error);
            }
        }
        if (errors.length > 0) {
            throw errors[0];
        }
    }

    get url()
    {
        return `ws://${LOOPBACK}:${this.port}`;
    }

    async openClient(options = {})
    {
        const client = await openClient(this.port, options);
        this.defer(() => client.terminate());
        return client;
    }

    async rawClient()
    {
        const client = await RawClient.connect(this.port);
        this.defer(() => client.destroy());
        return client;
    }

    // Connects a raw client and completes the upgrade; throws unless the relay responds with 101.
    async rawUpgrade(requestOptions = {})
    {
        const client = await this.rawClient();
        const wsKey = requestOptions.wsKey ?? randomWsKey();
        client.write(upgradeRequest({ ...requestOptions, wsKey }));
        const response = await client.readResponse();
        if (response.status !== 101) {
            throw new Error(`expected 101 from the relay, got ${response.status}: ${response.body.toString()}`);
        }
        return client;
    }
}

// Starts an upstream (unless options.upstream is false), writes a config pointing at it,
// and starts the relay. The test context t tears everything down after the test.
export async function startStack(t, options = {})
{
    const stack = new Stack();
    t.after(() => stack.teardown());
    await setUpStack(stack, options);
    return stack;
}

// Like startStack, for suites that share one stack: the caller calls stack.teardown().
export async function startSharedStack(options = {})
{
    const stack = new Stack();
    try {
        await setUpStack(stack, options);
    } catch (error) {
        await stack.teardown();
        throw error;
    }
    return stack;
}

async function setUpStack(stack, options)
{
    stack.dir = await makeTempDir();
    stack.defer(() => fsp.rm(stack.dir, { recursive: true, force: true }));

    let upstreamUrl = options.upstreamUrl;
    if (options.upstream !== false) {
        stack.upstream = await startUpstream(options.upstream ?? {});
        stack.defer(() => stack.upstream.close());
        upstreamUrl = upstreamUrl ?? stack.upstream.url;
    }

    const written = await writeRelayConfig(stack.dir, { ...options.config, upstreamUrl });
    stack.port = written.port;
    stack.configPath = written.configPath;
    stack.configText = written.text;

    stack.relay = await startRelay({
        configPath: stack.configPath,
        port: stack.port,
        env: relayEnv(options.env),
    });
    stack.defer(() => stack.relay.stop());
}

// ---------------------------------------------------------------------------
// `ws` client

// A `ws` client connection with its received messages, Pings and Close recorded.
export class ClientConnection {
    constructor(ws)
    {
        this.ws = ws;
        this.response = null;
        this.messages = new AsyncQueue('a message at the client');
        this.received = [];
        this.pings = [];
        this.pongs = [];
        this.errors = [];
        this.closeInfo = null;

        ws.on('upgrade', (response) => {
            this.response = response;
        });
        ws.on('message', (data, isBinary) => {
            const message = { data: Buffer.from(data), isBinary };
            this.received.push(message);
            this.messages.push(message);
        });
        ws.on('ping', (data) => this.pings.push(Buffer.from(data)));
        ws.on('pong', (data) => this.pongs.push(Buffer.from(data)));
        ws.on('error', (error) => this.errors.push(error));
        this.closed = new Promise((resolve) => {
            ws.on('close', (code, reason) => {
                this.closeInfo = { code, reason: reason.toString('utf8') };
                this.messages.fail(new Error(`client connection closed (code ${code})`));
                resolve(this.closeInfo);
            });
        });
    }

    send(data, { binary = false } = {})
    {
        return new Promise((resolve, reject) => {
            this.ws.send(data, { binary }, (error) => (error ? reject(error) : resolve()));
        });
    }

    nextMessage(ms = DEFAULT_WAIT_MS)
    {
        return this.messages.next(ms);
    }

    waitClosed(ms = DEFAULT_WAIT_MS)
    {
        return withTimeout(this.closed, ms, 'the client connection to close');
    }

    terminate()
    {
        this.ws.terminate();
    }
}

// Opens a `ws` client to the relay on port and resolves once the 101 has arrived.
// key null sends no Authorization header.
export async function openClient(port, {
    path: requestPath = '/v1/responses',
    key = CLIENT_KEY,
    headers = {},
    perMessageDeflate = false,
    maxPayload = 128 * 1024 * 1024,
    ms = DEFAULT_WAIT_MS,
} = {})
{
    const allHeaders = { ...headers };
    if (key !== null) {
        allHeaders.Authorization = `Bearer ${key}`;
    }
    const ws = new WebSocket(`ws://${LOOPBACK}:${port}${requestPath}`, {
        headers: allHeaders,
        perMessageDeflate,
        maxPayload,
        handshakeTimeout: ms,
    });
    const client = new ClientConnection(ws);
    const opened = new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('unexpected-response', (request, response) => {
            reject(new Error(`relay responded to the upgrade with ${response.statusCode}`));
            request.destroy();
        });
        ws.once('error', reject);
    });
    try {
        await withTimeout(opened, ms, 'the client upgrade to complete');
    } catch (error) {
        ws.terminate();
        throw error;
    }
    return client;
}

// ---------------------------------------------------------------------------
// Raw TCP client with its own WebSocket frame codec

export function randomWsKey()
{
    return crypto.randomBytes(16).toString('base64');
}

export function expectedAccept(wsKey)
{
    return crypto.createHash('sha1').update(wsKey + WS_GUID).digest('base64');
}

// Builds an HTTP upgrade request. headers override the defaults by case-insensitive name;
// a header set to null is left out. key null sends no Authorization header.
export function upgradeRequest({
    method = 'GET',
    path: requestPath = '/v1/responses',
    key = CLIENT_KEY,
    wsKey = randomWsKey(),
    headers = {},
    requestLine = null,
} = {})
{
    const list = [
        ['Host', `${LOOPBACK}`],
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade'],
        ['Sec-WebSocket-Key', wsKey],
        ['Sec-WebSocket-Version', '13'],
    ];
    if (key !== null) {
        list.push(['Authorization', `Bearer ${key}`]);
    }
    for (const [name, value] of Object.entries(headers)) {
        const index = list.findIndex(([existing]) => existing.toLowerCase() === name.toLowerCase());
        if (index >= 0) {
            list.splice(index, 1);
        }
        if (value !== null) {
            list.push([name, value]);
        }
    }
    const first = requestLine ?? `${method} ${requestPath} HTTP/1.1`;
    return `${first}\r\n${list.map(([name, value]) => `${name}: ${value}`).join('\r\n')}\r\n\r\n`;
}

// Encodes one frame. mask: true for a random key, a 4-byte Buffer for that key, false for none.
export function encodeFrame({
    opcode,
    payload = Buffer.alloc(0),
    fin = true,
    rsv1 = false,
    rsv2 = false,
    rsv3 = false,
    mask = true,
})
{
    const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    const maskKey = mask === true ? crypto.randomBytes(4) : mask || null;
    let lengthBytes;
    if (body.length < 126) {
        lengthBytes = Buffer.from([body.length]);
    } else if (body.length < 65536) {
        lengthBytes = Buffer.alloc(3);
        lengthBytes[0] = 126;
        lengthBytes.writeUInt16BE(body.length, 1);
    } else {
        lengthBytes = Buffer.alloc(9);
        lengthBytes[0] = 127;
        lengthBytes.writeBigUInt64BE(BigInt(body.length), 1);
    }
    const first = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (rsv2 ? 0x20 : 0) | (rsv3 ? 0x10 : 0) | (opcode & 0x0f);
    if (maskKey) {
        lengthBytes[0] |= 0x80;
    }
    const parts = [Buffer.from([first]), lengthBytes];
    if (maskKey) {
        const masked = Buffer.alloc(body.length);
        for (let i = 0; i < body.length; i++) {
            masked[i] = body[i] ^ maskKey[i & 3];
        }
        parts.push(maskKey, masked);
    } else {
        parts.push(body);
    }
    return Buffer.concat(parts);
}

export function closePayload(code, reason = '')
{
    const reasonBytes = Buffer.isBuffer(reason) ? reason : Buffer.from(reason, 'utf8');
    const payload = Buffer.alloc(2 + reasonBytes.length);
    payload.writeUInt16BE(code, 0);
    reasonBytes.copy(payload, 2);
    return payload;
}

// Returns { code, reason } of a Close payload; code is null for an empty payload.
export function parseClosePayload(payload)
{
    if (payload.length === 0) {
        return { code: null, reason: '' };
    }
    if (payload.length === 1) {
        throw new Error('invalid Close payload: 1 byte long');
    }
    return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString('utf8') };
}

// Incremental decoder of WebSocket frames; unmasks masked payloads and reports the mask bit.
export class FrameDecoder {
    #buffer = Buffer.alloc(0);

    push(chunk)
    {
        this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
        const frames = [];
        for (;;) {
            const frame = this.#decodeOne();
            if (frame === null) {
                return frames;
            }
            frames.push(frame);
        }
    }

    #decodeOne()
    {
        const buf = this.#buffer;
        if (buf.length < 2) {
            return null;
        }
        const masked = (buf[1] & 0x80) !== 0;
        let length = buf[1] & 0x7f;
        let offset = 2;
        if (length === 126) {
            if (buf.length < 4) {
                return null;
            }
            length = buf.readUInt16BE(2);
            offset = 4;
        } else if (length === 127) {
            if (buf.length < 10) {
                return null;
            }
            length = Number(buf.readBigUInt64BE(2));
            offset = 10;
        }
        const maskKey = masked ? Buffer.from(buf.subarray(offset, offset + 4)) : null;
        if (masked) {
            offset += 4;
        }
        if (buf.length < offset + length) {
            return null;
        }
        let payload = Buffer.from(buf.subarray(offset, offset + length));
        if (maskKey) {
            for (let i = 0; i < payload.length; i++) {
                payload[i] ^= maskKey[i & 3];
            }
        }
        this.#buffer = buf.subarray(offset + length);
        return {
            fin: (buf[0] & 0x80) !== 0,
            rsv1: (buf[0] & 0x40) !== 0,
            rsv2: (buf[0] & 0x20) !== 0,
            rsv3: (buf[0] & 0x10) !== 0,
            opcode: buf[0] & 0x0f,
            masked,
            maskKey,
            payload,
        };
    }
}

function parseResponseHead(text)
{
    const [statusLine, ...headerLines] = text.split('\r\n');
    const match = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
    if (!match) {
        throw new Error(`malformed status line from the relay: ${JSON.stringify(statusLine)}`);
    }
    const headers = {};
    const rawHeaders = [];
    for (const line of headerLines) {
        const colon = line.indexOf(':');
        if (colon <= 0) {
            throw new Error(`malformed header line from the relay: ${JSON.stringify(line)}`);
        }
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        rawHeaders.push([name, value]);
        const lower = name.toLowerCase();
        headers[lower] = lower in headers ? `${headers[lower]}, ${value}` : value;
    }
    return { status: Number(match[1]), reason: match[2] ?? '', headers, rawHeaders };
}

// A TCP client that reads one HTTP response and, after a 101, WebSocket frames.
export class RawClient {
    constructor(socket)
    {
        this.socket = socket;
        this.frames = new AsyncQueue('a frame at the raw client');
        this.received = [];
        this.socketError = null;
        this.isEnded = false;
        this.#decoder = new FrameDecoder();
        this.#state = 'head';
        this.#buffer = Buffer.alloc(0);
        this.#response = null;

        this.response = new Promise((resolve, reject) => {
            this.#resolveResponse = resolve;
            this.#rejectResponse = reject;
        });
        // Keeps a rejection that no test awaits from crashing the run.
        this.response.catch(() => {});
        socket.on('data', (chunk) => this.#onData(chunk));
        socket.on('error', (error) => {
            this.socketError = error;
        });
        this.ended = new Promise((resolve) => {
            socket.on('close', () => {
                this.isEnded = true;
                this.#onClose();
                resolve({ error: this.socketError });
            });
        });
    }

    #decoder;
    #state;
    #buffer;
    #response;
    #resolveResponse;
    #rejectResponse;

    static async connect(port, ms = 3000)
    {
        const socket = net.connect({ host: LOOPBACK, port });
        await withTimeout(new Promise((resolve, reject) => {
            socket.once('connect', resolve);
            socket.once('error', reject);
        }), ms, `a TCP connection to ${LOOPBACK}:${port}`);
        socket.setNoDelay(true);
        return new RawClient(socket);
    }

    #onData(chunk)
    {
        if (this.#state === 'frames') {
            this.#pushFrames(chunk);
            return;
        }
        this.#buffer = Buffer.concat([this.#buffer, chunk]);
        if (this.#state === 'head') {
            const end = this.#buffer.indexOf('\r\n\r\n');
            if (end < 0) {
                return;
            }
            try {
                this.#response = parseResponseHead(this.#buffer.subarray(0, end).toString('latin1'));
            } catch (error) {
                this.#rejectResponse(error);
                this.#state = 'done';
                return;
            }
            const rest = this.#buffer.subarray(end + 4);
            this.#buffer = Buffer.alloc(0);
            if (this.#response.status === 101) {
                this.#response.body = Buffer.alloc(0);
                this.#state = 'frames';
                this.#resolveResponse(this.#response);
                if (rest.length > 0) {
                    this.#pushFrames(rest);
                }
                return;
            }
            this.#state = 'body';
            this.#buffer = rest;
        }
        if (this.#state === 'body') {
            this.#finishBodyIfComplete(false);
        }
    }

    #finishBodyIfComplete(atEnd)
    {
        const lengthHeader = this.#response.headers['content-length'];
        const expected = lengthHeader === undefined ? null : Number(lengthHeader);
        if (expected !== null && this.#buffer.length >= expected) {
            this.#response.body = this.#buffer.subarray(0, expected);
        } else if (atEnd) {
            this.#response.body = this.#buffer;
        } else {
            return;
        }
        this.#state = 'done';
        this.#resolveResponse(this.#response);
    }

    #pushFrames(chunk)
    {
        for (const frame of this.#decoder.push(chunk)) {
            this.received.push(frame);
            this.frames.push(frame);
        }
    }

    #onClose()
    {
        if (this.#state === 'body') {
            this.#finishBodyIfComplete(true);
        } else if (this.#state === 'head') {
            const got = this.#buffer.toString('latin1');
            this.#rejectResponse(new Error(`connection closed before a complete response head; got ${JSON.stringify(got)}`));
        }
        this.frames.fail(new Error('raw client connection closed'));
    }

    write(data)
    {
        this.socket.write(data);
    }

    readResponse(ms = DEFAULT_WAIT_MS)
    {
        return withTimeout(this.response, ms, 'an HTTP response from the relay');
    }

    sendFrame(options)
    {
        this.socket.write(encodeFrame(options));
    }

    sendText(text, options = {})
    {
        this.sendFrame({ opcode: OPCODE.TEXT, payload: Buffer.from(text, 'utf8'), ...options });
    }

    nextFrame(ms = DEFAULT_WAIT_MS)
    {
        return this.frames.next(ms);
    }

    // Returns the next frame with one of the given opcodes, skipping others.
    async nextFrameOf(opcodes, ms = DEFAULT_WAIT_MS)
    {
        const deadline = Date.now() + ms;
        for (;;) {
            const frame = await this.frames.next(Math.max(1, deadline - Date.now()));
            if (opcodes.includes(frame.opcode)) {
                return frame;
            }
        }
    }

    waitEnded(ms = DEFAULT_WAIT_MS)
    {
        return withTimeout(this.ended, ms, 'the relay to close the TCP connection');
    }

    reset()
    {
        this.socket.resetAndDestroy();
    }

    destroy()
    {
        this.socket.destroy();
    }
}

// ---------------------------------------------------------------------------
// logfmt

const LOGFMT_ESCAPES = { '\\': '\\', '"': '"', n: '\n', r: '\r', t: '\t' };

// Parses one logfmt line into [key, value] pairs in order; throws on malformed input.
// Bare values may not contain a space, '"', '=', '\' or a control byte: such values must be quoted.
export function parseLogfmt(line)
{
    const pairs = [];
    let pos = 0;
    while (pos < line.length) {
        if (pairs.length > 0) {
            if (line[pos] !== ' ') {
                throw new Error(`expected a space at column ${pos} of ${JSON.stringify(line)}`);
            }
            pos += 1;
        }
        const keyMatch = /^[A-Za-z0-9_.-]+=/.exec(line.slice(pos));
        if (!keyMatch) {
            throw new Error(`expected key= at column ${pos} of ${JSON.stringify(line)}`);
        }
        const key = keyMatch[0].slice(0, -1);
        pos += keyMatch[0].length;
        let value = '';
        if (line[pos] === '"') {
            pos += 1;
            for (;;) {
                if (pos >= line.length) {
                    throw new Error(`unterminated quoted value of ${key} in ${JSON.stringify(line)}`);
                }
                const ch = line[pos];
                const code = ch.charCodeAt(0);
                if (ch === '"') {
                    pos += 1;
                    break;
                }
                if (code < 0x20 || code === 0x7f) {
                    throw new Error(`unescaped control byte in the value of ${key}`);
                }
                if (ch !== '\\') {
                    value += ch;
                    pos += 1;
                    continue;
                }
                const next = line[pos + 1];
                if (next in LOGFMT_ESCAPES) {
                    value += LOGFMT_ESCAPES[next];
                    pos += 2;
                } else if (next === 'x' && /^[0-9a-fA-F]{2}$/.test(line.slice(pos + 2, pos + 4))) {
                    value += String.fromCharCode(parseInt(line.slice(pos + 2, pos + 4), 16));
                    pos += 4;
                } else {
                    throw new Error(`invalid escape \\${next} in the value of ${key}`);
                }
            }
        } else {
            const bare = /^[^ "=\\\x00-\x1f\x7f]*/.exec(line.slice(pos))[0];
            value = bare;
            pos += bare.length;
        }
        pairs.push([key, value]);
    }
    return pairs;
}

// Returns the parsed line as an object; later duplicate keys win.
export function logfmtFields(line)
{
    return Object.fromEntries(parseLogfmt(line));
}
