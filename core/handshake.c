/* SPDX-License-Identifier: MIT */
/*
 * The two upgrades of a relay: the client's request is checked and
 * authenticated, the upstream is dialled and upgraded, and only then does the
 * client get its 101, so upstream refusals reach it as HTTP statuses.
 */
#include "core/relay_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "core/log.h"
#include "core/upstream.h"
#include "tls/tls.h"

/* Client headers copied upstream, besides every x-codex-* header. */
static const char *const forwarded_headers[] = {
    "session-id", "thread-id", "session_id", "conversation_id", "x-client-request-id",
    "originator", "user-agent", "accept-language", "version", "openai-organization",
    "openai-project",
};

/* Upstream 101 headers copied into the client's 101. */
static const char *const returned_headers[] = {
    "x-codex-turn-state", "openai-model", "x-models-etag", "x-reasoning-included", "x-request-id",
};

static void log_rejection(struct wr_relay *r, int status, const char *why)
{
    struct wr_log_line line;

    if (!wr_log_enabled(WR_LOG_INFO)) {
        return;
    }
    wr_log_begin(&line, WR_LOG_INFO, "handshake_rejected");
    wr_log_str(&line, "conn", r->id);
    wr_log_int(&line, "status", status);
    wr_log_str(&line, "reason", why);
    wr_log_end(&line);
}

void handshake_reply_error(struct wr_relay *r, int status, const char *extra_headers,
                           const char *message, const char *type, const char *code)
{
    char reply[2048];
    size_t len;

    len = wr_http_format_error(reply, sizeof(reply), status, extra_headers, message, type, code);
    if (len >= sizeof(reply)) {
        len = sizeof(reply) - 1;
    }
    log_rejection(r, status, message);
    if (r->down.tls != NULL && !r->down.tls->handshake_done) {
        /* Without a TLS session there is no way to send the status: the connection just closes. */
        r->handshake_deadline = 0;
        relay_shutdown_leg(r, &r->down);
        return;
    }
    r->handshake_deadline = 0;
    r->down.state = WR_LEG_CLOSING;
    r->down.close_after_send = true;
    r->down.peer_closed = true;
    r->close_deadline = r->worker->now_ms + relay_conf(r)->write_timeout_ms;
    relay_queue_copy(r, &r->down, reply, len, false);
    relay_flush(r, &r->down);
}

static bool header_is(struct wr_span name, const char *want)
{
    return name.len == strlen(want) && strncasecmp(name.ptr, want, name.len) == 0;
}

static bool is_forwarded(struct wr_span name)
{
    if (name.len > 8 && strncasecmp(name.ptr, "x-codex-", 8) == 0) {
        return true;
    }
    for (size_t i = 0; i < sizeof(forwarded_headers) / sizeof(forwarded_headers[0]); i++) {
        if (header_is(name, forwarded_headers[i])) {
            return true;
        }
    }
    return false;
}

/* Returns the client index whose key hash matches, or -1. Every hash is compared in full. */
static int authenticate(const struct wr_conf *conf, const struct wr_http_request *req)
{
    const struct wr_span *auth = wr_http_header_get(req->headers, req->num_headers,
                                                    "authorization");
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    const char *key;
    size_t key_len;
    int found = -1;

    if (auth == NULL || auth->len < 7 || strncasecmp(auth->ptr, "bearer ", 7) != 0) {
        return -1;
    }
    key = auth->ptr + 7;
    key_len = auth->len - 7;
    while (key_len > 0 && *key == ' ') {
        key++;
        key_len--;
    }
    if (key_len == 0 || wc_Sha256Hash((const uint8_t *)key, (unsigned)key_len, digest) != 0) {
        return -1;
    }
    for (unsigned i = 0; i < conf->num_clients; i++) {
        unsigned diff = 0;

        for (size_t j = 0; j < sizeof(digest); j++) {
            diff |= digest[j] ^ conf->clients[i].key_sha256[j];
        }
        if (diff == 0 && found < 0) {
            found = (int)i;
        }
    }
    return found;
}

static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*len >= cap) {
        return -1;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len) {
        *len = cap;
        return -1;
    }
    *len += (size_t)n;
    return 0;
}

/* Builds the upstream upgrade request into r->response (free until the reply arrives). */
static size_t build_upstream_request(struct wr_relay *r, const struct wr_http_request *req)
{
    struct wr_server *server = r->worker->server;
    const struct wr_conf *conf = server->conf;
    uint8_t nonce[16];
    char key[32];
    size_t len = 0, cap = WR_HTTP_MAX_HEAD_BYTES;
    char *buf = r->response;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;

    for (int i = 0; i < 16; i += 4) {
        wr_worker_random(r->worker, nonce + i);
    }
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)nonce[i] << 16 | (uint32_t)nonce[i + 1] << 8 | nonce[i + 2];
        key[k++] = b64[(v >> 18) & 63];
        key[k++] = b64[(v >> 12) & 63];
        key[k++] = b64[(v >> 6) & 63];
        key[k++] = b64[v & 63];
    }
    key[k++] = b64[nonce[15] >> 2];
    key[k++] = b64[(nonce[15] & 3) << 4];
    key[k++] = '=';
    key[k++] = '=';
    key[k] = '\0';
    wr_ws_accept_key(key, k, r->upstream_accept);

    append(buf, cap, &len,
           "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n"
           "OpenAI-Beta: responses_websockets=2026-02-06\r\n",
           conf->upstream_path, server->upstream_host_header, key);
    if (server->upstream_key != NULL) {
        append(buf, cap, &len, "Authorization: Bearer %s\r\n", server->upstream_key);
    }
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct wr_http_header *h = &req->headers[i];

        if (is_forwarded(h->name)) {
            append(buf, cap, &len, "%.*s: %.*s\r\n", (int)h->name.len, h->name.ptr,
                   (int)h->value.len, h->value.ptr);
        }
    }
    append(buf, cap, &len, "\r\n");
    return len;
}

static void start_dial(struct wr_relay *r)
{
    struct wr_worker *w = r->worker;
    const struct wr_addr_list *addrs = &w->addrs;
    bool proxy = relay_conf(r)->upstream_proxy[0] != '\0';
    struct io_uring_sqe *sqe;
    const struct sockaddr_storage *addr;
    int fd, one = 1;

    if (r->next_addr >= addrs->count) {
        if (addrs->count == 0) {
            handshake_dial_failed(r, 502, -EHOSTUNREACH,
                                  proxy ? "upstream proxy host not resolved"
                                        : "upstream host not resolved");
        } else {
            handshake_dial_failed(r, 502, -EHOSTUNREACH,
                                  proxy ? "upstream proxy unreachable" : "upstream unreachable");
        }
        return;
    }
    addr = &addrs->addrs[r->next_addr];
    fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        handshake_dial_failed(r, 502, -errno, "cannot create the upstream socket");
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    r->up.fd = fd;
    r->up.fixed = false;
    r->up.state = WR_LEG_HANDSHAKE;

    sqe = wr_worker_sqe(w);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)addr, addrs->lens[r->next_addr]);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_US_CONNECT, r->slot, r->gen));
    if (r->dial_deadline != 0) {
        struct io_uring_sqe *timer;

        sqe->flags |= IOSQE_IO_LINK;
        r->up.recv_ts.tv_sec = (long long)(r->dial_deadline / 1000);
        r->up.recv_ts.tv_nsec = (long long)(r->dial_deadline % 1000) * 1000000;
        timer = wr_worker_sqe(w);
        io_uring_prep_link_timeout(timer, &r->up.recv_ts, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(timer, wr_ring_ud_pack(WR_OP_LINK_TIMEOUT, r->slot, r->gen));
    }
    r->inflight++;
}

void handshake_dial_failed(struct wr_relay *r, int status, int err, const char *why)
{
    relay_trace(r, WR_LOG_WARN, "upstream_dial_failed", "client_to_upstream", 0, 0, err);
    relay_shutdown_leg(r, &r->up);
    if (status == 504) {
        handshake_reply_error(r, 504, NULL, why, "upstream_error", "upstream_timeout");
    } else {
        handshake_reply_error(r, status, NULL, why, "upstream_error", "upstream_unavailable");
    }
}

void handshake_on_request(struct wr_relay *r, int res)
{
    struct wr_server *server = r->worker->server;
    const struct wr_conf *conf = server->conf;
    struct wr_http_request req;
    size_t last_len = r->request_len;
    const struct wr_span *key;
    int ret;

    if (res == -ECANCELED || res == -EINTR) {
        if (r->handshake_deadline != 0 && wr_now_ms() >= r->handshake_deadline) {
            r->handshake_deadline = 0;
            handshake_reply_error(r, 408, NULL, "the request did not arrive in time",
                                  "invalid_request_error", "request_timeout");
            return;
        }
        relay_arm_recv(r, &r->down);
        return;
    }
    if (res <= 0) {
        relay_shutdown_leg(r, &r->down);
        return;
    }
    r->request_len += (size_t)res;
    ret = wr_http_parse_request(r->request, r->request_len, last_len, &req);
    if (ret == WR_AGAIN) {
        if (r->request_len >= WR_HTTP_MAX_HEAD_BYTES) {
            ret = WR_EHTTP_TOO_LARGE;
        } else {
            relay_arm_recv(r, &r->down);
            return;
        }
    }
    if (ret == WR_EHTTP_TOO_LARGE) {
        handshake_reply_error(r, 431, NULL, "request headers are larger than 16 KiB",
                              "invalid_request_error", "request_header_fields_too_large");
        return;
    }
    if (ret < 0) {
        handshake_reply_error(r, 400, NULL, "malformed HTTP request", "invalid_request_error",
                              "bad_request");
        return;
    }
    r->request_head_len = (size_t)ret;
    r->handshake_deadline = 0;

    switch (wr_http_check_upgrade(&req)) {
    case WR_HTTP_UPGRADE_OK:
        break;
    case WR_HTTP_BAD_METHOD:
        handshake_reply_error(r, 405, "Allow: GET\r\n", "only GET is allowed",
                              "invalid_request_error", "method_not_allowed");
        return;
    case WR_HTTP_NOT_FOUND:
        handshake_reply_error(r, 404, NULL, "unknown path; use /v1/responses",
                              "invalid_request_error", "not_found");
        return;
    case WR_HTTP_NOT_UPGRADE:
        handshake_reply_error(r, 426, "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                              "this endpoint only accepts WebSocket upgrades",
                              "invalid_request_error", "upgrade_required");
        return;
    case WR_HTTP_BAD_VERSION:
        handshake_reply_error(r, 426, "Sec-WebSocket-Version: 13\r\n",
                              "Sec-WebSocket-Version must be 13", "invalid_request_error",
                              "upgrade_required");
        return;
    case WR_HTTP_BAD_KEY:
        handshake_reply_error(r, 400, NULL, "missing or malformed Sec-WebSocket-Key",
                              "invalid_request_error", "bad_request");
        return;
    }

    r->client_id = authenticate(conf, &req);
    if (r->client_id < 0) {
        r->client_id = -1;
        handshake_reply_error(r, 401, "WWW-Authenticate: Bearer\r\n",
                              "missing or unknown client key", "invalid_request_error",
                              "invalid_api_key");
        return;
    }
    if (atomic_fetch_add(&server->active, 1) >= conf->max_connections) {
        atomic_fetch_sub(&server->active, 1);
        handshake_reply_error(r, 503, NULL, "too many connections", "server_error",
                              "max_connections");
        r->client_id = -1;
        return;
    }
    r->counted = true;

    key = wr_http_header_get(req.headers, req.num_headers, "sec-websocket-key");
    memcpy(r->ws_key, key->ptr,
           key->len < sizeof(r->ws_key) - 1 ? key->len : sizeof(r->ws_key) - 1);

    if (wr_log_enabled(WR_LOG_INFO)) {
        struct wr_log_line line;

        wr_log_begin(&line, WR_LOG_INFO, "relay_trace");
        wr_log_str(&line, "conn", r->id);
        wr_log_str(&line, "stage", "relay_start");
        wr_log_str(&line, "instance", server->instance);
        wr_log_str(&line, "client", conf->clients[r->client_id].name);
        wr_log_strn(&line, "path", req.path.ptr, req.path.len);
        wr_log_end(&line);
    }

    r->response = malloc(WR_HTTP_MAX_HEAD_BYTES);
    if (r->response == NULL) {
        abort();
    }
    r->dial_deadline = r->worker->now_ms + conf->dial_timeout_ms;
    r->response_len = build_upstream_request(r, &req);
    if (r->response_len < WR_HTTP_MAX_HEAD_BYTES) {
        /* Keep what the request used, at least the initial size, for the upstream's reply. */
        r->response_cap = r->response_len > WR_RELAY_HEAD_INITIAL ? r->response_len
                                                                   : WR_RELAY_HEAD_INITIAL;
        r->response = realloc(r->response, r->response_cap);
        if (r->response == NULL) {
            abort();
        }
    }
    if (r->response_len >= WR_HTTP_MAX_HEAD_BYTES) {
        handshake_reply_error(r, 431, NULL, "forwarded headers are too large",
                              "invalid_request_error", "request_header_fields_too_large");
        return;
    }
    start_dial(r);
}

/* Sends the upgrade request: from r->upgrade after a proxy, else from r->response. */
static void send_upgrade(struct wr_relay *r)
{
    r->up_phase = WR_UP_UPGRADE;
    if (r->upgrade != NULL) {
        relay_queue_copy(r, &r->up, r->upgrade, r->upgrade_len, false);
        free(r->upgrade);
        r->upgrade = NULL;
    } else {
        relay_queue_copy(r, &r->up, r->response, r->response_len, false);
    }
    r->response_len = 0;
    relay_flush(r, &r->up);
}

/* Begins the TLS handshake on the upstream, or the upgrade on a ws:// upstream. */
static void start_tls_or_upgrade(struct wr_relay *r)
{
    struct wr_worker *w = r->worker;
    const struct wr_conf *conf = relay_conf(r);
    int ret;

    if (!conf->upstream_tls) {
        send_upgrade(r);
        relay_arm_recv(r, &r->up);
        return;
    }
    r->up.tls = wr_tls_new_client(&w->tls, conf->upstream.host);
    if (r->up.tls == NULL) {
        handshake_dial_failed(r, 502, WR_ENOMEM, "cannot create the upstream TLS connection");
        return;
    }
    r->up_phase = WR_UP_TLS;
    ret = wr_tls_handshake(r->up.tls);
    if (ret != WR_AGAIN) {
        handshake_tls_failed(r, &r->up, ret);
        return;
    }
    relay_flush(r, &r->up);
    relay_arm_recv(r, &r->up);
}

void handshake_tls_failed(struct wr_relay *r, struct wr_leg *leg, int code)
{
    char why[400], detail[300];

    if (leg == &r->up) {
        if (code == WR_TLS_CLOSED) {
            snprintf(why, sizeof(why), "upstream closed the TLS connection during the handshake");
        } else {
            wr_tls_describe(leg->tls, code, detail, sizeof(detail));
            snprintf(why, sizeof(why), "upstream TLS handshake failed: %s", detail);
        }
        handshake_dial_failed(r, 502, -EPROTO, why);
        return;
    }
    if (wr_log_enabled(WR_LOG_INFO)) {
        struct wr_log_line line;

        if (code == WR_TLS_CLOSED) {
            snprintf(detail, sizeof(detail), "client closed the TLS connection");
        } else if (code == WR_EHTTP_TOO_LARGE) {
            snprintf(detail, sizeof(detail), "client sent more than 16 KiB before the 101");
        } else {
            wr_tls_describe(leg->tls, code, detail, sizeof(detail));
        }
        wr_log_begin(&line, WR_LOG_INFO, "downstream_tls_failed");
        wr_log_str(&line, "conn", r->id);
        wr_log_str(&line, "reason", detail);
        wr_log_end(&line);
    }
    relay_shutdown_leg(r, &r->down);
    if (r->up.state == WR_LEG_HANDSHAKE) {
        r->client_gone = true;
        relay_shutdown_leg(r, &r->up);
    }
}

int handshake_tls_step(struct wr_relay *r, struct wr_leg *leg)
{
    int ret = wr_tls_handshake(leg->tls);

    if (ret == WR_AGAIN) {
        return ret;
    }
    if (ret < 0) {
        handshake_tls_failed(r, leg, ret);
        return ret;
    }
    if (leg == &r->up) {
        send_upgrade(r);
    }
    return 0;
}

/*
 * Returns the free bytes after len in *buf, doubling the buffer (up to the
 * 16 KiB head limit) when it is full. Returns 0 at the limit.
 */
size_t handshake_room(char **buf, size_t *cap, size_t len)
{
    if (len >= *cap && *cap < WR_HTTP_MAX_HEAD_BYTES) {
        size_t grown = *cap * 2 > WR_HTTP_MAX_HEAD_BYTES ? WR_HTTP_MAX_HEAD_BYTES : *cap * 2;
        char *bigger = realloc(*buf, grown);

        if (bigger == NULL) {
            abort();
        }
        *buf = bigger;
        *cap = grown;
    }
    return len < *cap ? *cap - len : 0;
}

int handshake_tls_plaintext(struct wr_relay *r, struct wr_leg *leg)
{
    int n;

    if (leg == &r->up) {
        size_t room = handshake_room(&r->response, &r->response_cap, r->response_len);

        n = wr_tls_read(leg->tls, (uint8_t *)r->response + r->response_len, room);
        if (n > 0) {
            handshake_on_upstream_recv(r, n);
        }
        return n;
    }
    if (r->request_len >= WR_HTTP_MAX_HEAD_BYTES) {
        /* NOTE: more than 16 KiB sent after the request and before the 101 is not kept. */
        return WR_EHTTP_TOO_LARGE;
    }
    n = wr_tls_read(leg->tls, (uint8_t *)r->request + r->request_len,
                    handshake_room(&r->request, &r->request_cap, r->request_len));
    if (n > 0) {
        if (r->request_head_len == 0) {
            handshake_on_request(r, n);
        } else {
            /* Bytes behind a complete request are relayed after the 101. */
            r->request_len += (size_t)n;
        }
    }
    return n;
}

void handshake_on_connect(struct wr_relay *r, int res)
{
    const struct wr_conf *conf = relay_conf(r);

    if (r->up.state != WR_LEG_HANDSHAKE || r->client_gone) {
        return;
    }
    if (res == -ECANCELED || res == -ETIME) {
        handshake_dial_failed(r, 504, -ETIMEDOUT, "upstream dial timed out");
        return;
    }
    if (res < 0) {
        if (r->next_addr + 1 < r->worker->addrs.count) {
            /* Try the next resolved address on a fresh socket. */
            close(r->up.fd);
            r->up.fd = -1;
            r->up.state = WR_LEG_NONE;
            r->next_addr++;
            start_dial(r);
            return;
        }
        handshake_dial_failed(r, 502, res,
                              conf->upstream_proxy[0] != '\0' ? "upstream proxy unreachable"
                                                              : "upstream unreachable");
        return;
    }
    if (conf->upstream_proxy[0] != '\0') {
        char connect[600];
        size_t len = wr_proxy_connect_request(connect, sizeof(connect), conf->upstream.host,
                                              conf->upstream.port);

        /* The upgrade request waits in its own buffer while the reply is read into r->response. */
        r->upgrade = malloc(r->response_len);
        if (r->upgrade == NULL || len >= sizeof(connect)) {
            handshake_dial_failed(r, 502, WR_ENOMEM, "cannot build the CONNECT request");
            return;
        }
        memcpy(r->upgrade, r->response, r->response_len);
        r->upgrade_len = r->response_len;
        r->response_len = 0;
        r->up_phase = WR_UP_PROXY;
        relay_queue_copy(r, &r->up, connect, len, false);
        relay_flush(r, &r->up);
        relay_arm_recv(r, &r->up);
        return;
    }
    start_tls_or_upgrade(r);
}

static void copy_header(char *buf, size_t cap, size_t *len, const struct wr_http_response *res,
                        const char *name)
{
    const struct wr_span *v = wr_http_header_get(res->headers, res->num_headers, name);

    if (v != NULL) {
        append(buf, cap, len, "%s: %.*s\r\n", name, (int)v->len, v->ptr);
    }
}

static void upgrade_done(struct wr_relay *r, const struct wr_http_response *res, size_t head_len)
{
    const struct wr_conf *conf = relay_conf(r);
    char reply[4096];
    char accept[32];
    size_t len = 0;
    size_t up_extra = r->response_len - head_len;
    size_t down_extra = r->request_len - r->request_head_len;

    wr_ws_accept_key(r->ws_key, strlen(r->ws_key), accept);
    append(reply, sizeof(reply), &len,
           "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: %s\r\n",
           accept);
    for (size_t i = 0; i < sizeof(returned_headers) / sizeof(returned_headers[0]); i++) {
        copy_header(reply, sizeof(reply), &len, res, returned_headers[i]);
    }
    append(reply, sizeof(reply), &len, "\r\n");
    if (len >= sizeof(reply)) {
        handshake_dial_failed(r, 502, WR_EUPSTREAM_HANDSHAKE, "upstream headers too large");
        return;
    }

    r->dial_deadline = 0;
    if (r->up.tls != NULL) {
        wr_tls_save_session(r->up.tls);
    }
    r->up.state = WR_LEG_OPEN;
    r->down.state = WR_LEG_OPEN;
    r->first_message_deadline = r->worker->now_ms + conf->client_first_message_timeout_ms;
    relay_trace(r, WR_LOG_INFO, "upstream_dial_ok", "client_to_upstream", -1, 0, 0);
    relay_queue_copy(r, &r->down, reply, len, false);

    /* Frames that arrived right behind either head are relayed like any others. */
    if (up_extra > 0) {
        frames_process(r, WR_FROM_UPSTREAM, (uint8_t *)r->response + head_len, up_extra, -1);
    }
    if (down_extra > 0 && r->down.state == WR_LEG_OPEN) {
        frames_process(r, WR_FROM_CLIENT, (uint8_t *)r->request + r->request_head_len, down_extra,
                       -1);
    }
    free(r->request);
    r->request = NULL;
    free(r->response);
    r->response = NULL;
    relay_flush(r, &r->down);
    relay_flush(r, &r->up);
    relay_arm_recv(r, &r->down);
    relay_arm_recv(r, &r->up);
}

/* Goes on through the tunnel after a 200 to CONNECT; any other reply is a 502. */
static void proxy_reply(struct wr_relay *r, const struct wr_http_response *resp, int head_len)
{
    char why[128];

    if (head_len < 0) {
        handshake_dial_failed(r, 502, head_len, "malformed reply from the upstream proxy");
        return;
    }
    if (resp->status != 200) {
        snprintf(why, sizeof(why), "upstream proxy answered CONNECT with HTTP %d", resp->status);
        handshake_dial_failed(r, 502, -ECONNREFUSED, why);
        return;
    }
    if ((size_t)head_len != r->response_len) {
        /* The upstream speaks only after wsrelay, so early bytes mean a broken tunnel. */
        handshake_dial_failed(r, 502, WR_EUPSTREAM_HANDSHAKE,
                              "upstream proxy sent data behind its CONNECT reply");
        return;
    }
    r->response_len = 0;
    start_tls_or_upgrade(r);
}

void handshake_on_upstream_recv(struct wr_relay *r, int res)
{
    struct wr_http_response resp;
    size_t last_len = r->response_len;
    const struct wr_span *v;
    char extra[512];
    int ret;

    if (r->client_gone) {
        relay_shutdown_leg(r, &r->up);
        return;
    }
    if (res == -ECANCELED || res == -ETIME) {
        handshake_dial_failed(r, 504, -ETIMEDOUT, "upstream handshake timed out");
        return;
    }
    if (res <= 0) {
        handshake_dial_failed(r, 502, res == 0 ? -EPIPE : res,
                              r->up_phase == WR_UP_PROXY
                                  ? "upstream proxy closed the connection before answering CONNECT"
                                  : "upstream closed the connection during the handshake");
        return;
    }
    r->response_len += (size_t)res;
    ret = wr_http_parse_response(r->response, r->response_len, last_len, &resp);
    if (ret == WR_AGAIN && r->response_len < WR_HTTP_MAX_HEAD_BYTES) {
        relay_arm_recv(r, &r->up);
        return;
    }
    if (r->up_phase == WR_UP_PROXY) {
        proxy_reply(r, &resp, ret);
        return;
    }
    if (ret < 0) {
        handshake_dial_failed(r, 502, ret < 0 ? ret : WR_EUPSTREAM_HANDSHAKE,
                              "malformed upstream handshake response");
        return;
    }
    if (resp.status == 429) {
        v = wr_http_header_get(resp.headers, resp.num_headers, "retry-after");
        extra[0] = '\0';
        if (v != NULL && v->len < 64) {
            snprintf(extra, sizeof(extra), "Retry-After: %.*s\r\n", (int)v->len, v->ptr);
        }
        relay_trace(r, WR_LOG_WARN, "upstream_dial_failed", "client_to_upstream", 0, 429,
                    WR_EUPSTREAM_STATUS);
        relay_shutdown_leg(r, &r->up);
        handshake_reply_error(r, 429, extra[0] ? extra : NULL, "upstream rate limit reached",
                              "rate_limit_error", "rate_limit_exceeded");
        return;
    }
    if (resp.status != 101) {
        char why[96];

        snprintf(why, sizeof(why), "upstream answered the upgrade with HTTP %d", resp.status);
        handshake_dial_failed(r, 502, WR_EUPSTREAM_STATUS, why);
        return;
    }
    v = wr_http_header_get(resp.headers, resp.num_headers, "sec-websocket-accept");
    if (v == NULL || v->len != strlen(r->upstream_accept) ||
        memcmp(v->ptr, r->upstream_accept, v->len) != 0 ||
        wr_http_header_get(resp.headers, resp.num_headers, "sec-websocket-extensions") != NULL) {
        handshake_dial_failed(r, 502, WR_EUPSTREAM_HANDSHAKE,
                              "upstream 101 has a wrong Sec-WebSocket-Accept or an extension");
        return;
    }
    upgrade_done(r, &resp, (size_t)ret);
}
