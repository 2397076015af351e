// TLS helpers for the integration tests: throwaway certificates made with openssl,
// a wss:// upstream (Node https + ws), a CONNECT proxy and a wss:// client.
// Everything listens on and connects to 127.0.0.1 only.

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

import { WebSocket, WebSocketServer } from 'ws';

import {
    AsyncQueue,
    CLIENT_KEY,
    ClientConnection,
    LOOPBACK,
    UPSTREAM_PATH,
    UpstreamConnection,
    withTimeout,
} from './harness.mjs';

const run = promisify(execFile);

async function openssl(args, cwd)
{
    try {
        await run('openssl', args, { cwd, timeout: 20000 });
    } catch (error) {
        throw new Error(`openssl ${args.join(' ')} failed: ${error.stderr ?? error.message}`);
    }
}

async function makeCa(dir, name)
{
    await openssl([
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=wsrelay test ${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ], dir);
    // `openssl ca` keeps its issued serials in a small database of its own.
    await fsp.mkdir(path.join(dir, `${name}-db`));
    await fsp.writeFile(path.join(dir, `${name}-db`, 'index.txt'), '');
    await fsp.writeFile(path.join(dir, `${name}-db`, 'serial'), '1000\n');
    await fsp.writeFile(path.join(dir, `${name}.cnf`), [
        '[ca]',
        'default_ca = test_ca',
        '[test_ca]',
        `dir = ${path.join(dir, `${name}-db`)}`,
        'database = $dir/index.txt',
        'serial = $dir/serial',
        'new_certs_dir = $dir',
        `certificate = ${path.join(dir, `${name}.pem`)}`,
        `private_key = ${path.join(dir, `${name}.key`)}`,
        'default_md = sha256',
        'policy = any_policy',
        'unique_subject = no',
        'copy_extensions = none',
        '[any_policy]',
        'commonName = supplied',
        '[leaf]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        'extendedKeyUsage = serverAuth',
        'subjectAltName = $ENV::WSRELAY_TEST_SAN',
        '',
    ].join('\n'));
}

// Issues a leaf certificate from CA `ca` for the subject alternative names san
// ("DNS:localhost,IP:127.0.0.1"), valid from startDate to endDate (YYYYMMDDHHMMSSZ).
async function makeLeaf(dir, ca, name, commonName, san, { startDate = null, endDate = null } = {})
{
    await openssl([
        'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${commonName}`,
    ], dir);
    const args = ['ca', '-batch', '-notext', '-config', `${ca}.cnf`, '-extensions', 'leaf',
        '-in', `${name}.csr`, '-out', `${name}.pem`];
    if (startDate && endDate) {
        args.push('-startdate', startDate, '-enddate', endDate);
    } else {
        args.push('-days', '2');
    }
    try {
        await run('openssl', args, { cwd: dir, timeout: 20000, env: { ...process.env, WSRELAY_TEST_SAN: san } });
    } catch (error) {
        throw new Error(`openssl ${args.join(' ')} failed: ${error.stderr ?? error.message}`);
    }
}

// Creates, in dir, a throwaway CA and leaves: `good` for localhost and 127.0.0.1,
// `expired` (same names, expired in 2020), `wrongName` for other.invalid, and
// `untrusted` for localhost from a second CA. Returns the file paths.
export async function makeCertificates(dir)
{
    await makeCa(dir, 'ca');
    await makeCa(dir, 'rogue-ca');
    const local = 'DNS:localhost,IP:127.0.0.1';
    await makeLeaf(dir, 'ca', 'good', 'localhost', local);
    await makeLeaf(dir, 'ca', 'expired', 'localhost', local,
        { startDate: '20200101000000Z', endDate: '20200102000000Z' });
    await makeLeaf(dir, 'ca', 'wrong-name', 'other.invalid', 'DNS:other.invalid');
    await makeLeaf(dir, 'rogue-ca', 'untrusted', 'localhost', local);
    const pair = (name) => ({ cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) });
    return {
        caFile: path.join(dir, 'ca.pem'),
        good: pair('good'),
        expired: pair('expired'),
        wrongName: pair('wrong-name'),
        untrusted: pair('untrusted'),
    };
}

// A wss:// upstream: Node's https server with a ws WebSocketServer on it.
// With noResume, the server issues no session tickets and keeps no session cache.
// ciphers (OpenSSL names) limits the suites the server accepts.
export class TlsUpstream {
    constructor({ cert, key }, { noResume = false, ciphers = undefined } = {})
    {
        this.connections = [];
        this.port = 0;
        this.handshakes = 0;
        this.resumed = 0;
        this.alpn = [];
        this.ciphers = [];
        this.servernames = [];
        this.#queue = new AsyncQueue('a wss:// upstream connection from the relay');
        this.server = https.createServer({
            cert: fs.readFileSync(cert),
            key: fs.readFileSync(key),
            ALPNProtocols: ['http/1.1'],
            secureOptions: noResume ? crypto.constants.SSL_OP_NO_TICKET : 0,
            ciphers,
        });
        this.server.on('secureConnection', (socket) => {
            this.handshakes += 1;
            if (socket.isSessionReused()) {
                this.resumed += 1;
            }

            this.alpn.push(socket.alpnProtocol);
            this.ciphers.push(socket.getCipher().standardName);
            this.servernames.push(socket.servername);
            this.#sockets.add(socket);
            socket.on('close', () => this.#sockets.delete(socket));
        });
        this.server.on('tlsClientError', () => {});
        this.wss = new WebSocketServer({ server: this.server, maxPayload: 128 * 1024 * 1024 });
        this.wss.on('connection', (ws, request) => {
            const connection = new UpstreamConnection(ws, request, request.socket);
            this.connections.push(connection);
            this.#queue.push(connection);
        });
    }

    #queue;
    #sockets = new Set();

    // The relay's upstream_url; host "localhost" exercises SNI and the name check.
    url(host = 'localhost')
    {
        return `wss://${host}:${this.port}${UPSTREAM_PATH}`;
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

    nextConnection(ms = 5000)
    {
        return this.#queue.next(ms);
    }

    async close()
    {
        for (const client of this.wss.clients) {
            client.terminate();
        }
        for (const socket of this.#sockets) {
            socket.destroy();
        }
        this.wss.close();
        await new Promise((resolve) => this.server.close(() => resolve()));
    }
}

export async function startTlsUpstream(pair, options = {})
{
    return new TlsUpstream(pair, options).listen();
}

// An HTTP CONNECT proxy that tunnels to 127.0.0.1 ports only, or rejects every CONNECT
// with the status `refuse` when that is set.
export class ConnectProxy {
    constructor({ refuse = null } = {})
    {
        this.refuse = refuse;
        this.requests = [];
        this.port = 0;
        this.#sockets = new Set();
        this.server = http.createServer((request, response) => {
            response.writeHead(405);
            response.end();
        });
        this.server.on('connect', (request, client, head) => this.#onConnect(request, client, head));
        this.server.on('connection', (socket) => {
            this.#sockets.add(socket);
            socket.on('close', () => this.#sockets.delete(socket));
        });
    }

    #sockets;

    #onConnect(request, client, head)
    {
        this.requests.push({ url: request.url, headers: { ...request.headers } });
        client.on('error', () => {});
        if (this.refuse !== null) {
            client.end(`HTTP/1.1 ${this.refuse} Refused\r\nContent-Length: 0\r\n\r\n`);
            return;
        }
        const match = /^(?:127\.0\.0\.1|localhost):(\d+)$/.exec(request.url);
        if (!match) {
            // The tests only ever tunnel to loopback; anything else is a test bug.
            client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
            return;
        }
        const target = net.connect({ host: LOOPBACK, port: Number(match[1]) });
        this.#sockets.add(target);
        target.on('close', () => this.#sockets.delete(target));
        target.on('error', () => client.destroy());
        target.once('connect', () => {
            client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
            if (head.length > 0) {
                target.write(head);
            }
            target.pipe(client);
            client.pipe(target);
        });
        client.on('close', () => target.destroy());
    }

    get url()
    {
        return `http://${LOOPBACK}:${this.port}`;
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

    async close()
    {
        for (const socket of this.#sockets) {
            socket.destroy();
        }
        await new Promise((resolve) => this.server.close(() => resolve()));
    }
}

export async function startConnectProxy(options = {})
{
    return new ConnectProxy(options).listen();
}

// Opens a `ws` client over wss:// to the relay, trusting the test CA.
export async function openTlsClient(port, caFile, { key = CLIENT_KEY, ms = 5000 } = {})
{
    const ws = new WebSocket(`wss://${LOOPBACK}:${port}${UPSTREAM_PATH}`, {
        headers: { Authorization: `Bearer ${key}` },
        ca: fs.readFileSync(caFile),
        perMessageDeflate: false,
        maxPayload: 128 * 1024 * 1024,
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
        await withTimeout(opened, ms, 'the wss:// client upgrade to complete');
    } catch (error) {
        ws.terminate();
        throw error;
    }
    return client;
}

// Sends an upgrade with the ws client and returns the relay's HTTP status, or 101.
export async function upgradeStatus(port, { ms = 8000 } = {})
{
    const ws = new WebSocket(`ws://${LOOPBACK}:${port}${UPSTREAM_PATH}`, {
        headers: { Authorization: `Bearer ${CLIENT_KEY}` },
        perMessageDeflate: false,
        handshakeTimeout: ms,
    });
    ws.on('error', () => {});
    const status = new Promise((resolve) => {
        ws.once('open', () => resolve(101));
        ws.once('unexpected-response', (request, response) => {
            resolve(response.statusCode);
            request.destroy();
        });
        ws.once('error', (error) => resolve(error));
    });
    try {
        return await withTimeout(status, ms, 'the relay to answer the upgrade');
    } finally {
        ws.terminate();
    }
}
