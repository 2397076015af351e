/* SPDX-License-Identifier: MIT */
/* Replies to the HTTP request head: the WebSocket upgrade, /v1/models or an error. */
#include "bench/mock_upstream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- HTTP ---- */

static bool header_is_secret(struct wr_span name)
{
    static const char *const secrets[] = { "authorization", "proxy-authorization", "cookie",
                                           "api-key", "x-api-key" };
    size_t i;
    size_t j;

    for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        const char *s = secrets[i];

        if (strlen(s) != name.len) {
            continue;
        }
        for (j = 0; j < name.len; j++) {
            char ch = name.ptr[j];

            if ((ch >= 'A' && ch <= 'Z' ? ch + 32 : ch) != s[j]) {
                break;
            }
        }
        if (j == name.len) {
            return true;
        }
    }
    return false;
}

static void http_log_request(struct conn *c, const struct wr_http_request *req)
{
    const struct options *opts = c->worker->opts;
    char method[40];
    char target[512];
    char name[128];
    char value[512];
    size_t i;

    if (!log_enabled(opts, LOG_DEBUG)) {
        return;
    }
    mock_log(opts, LOG_DEBUG, "event=http_request conn=%" PRIu64 " method=%s target=%s", c->id,
             log_value(method, sizeof(method), req->method.ptr, req->method.len),
             log_value(target, sizeof(target), req->target.ptr, req->target.len));
    for (i = 0; i < req->num_headers; i++) {
        const struct wr_http_header *h = &req->headers[i];
        bool secret = header_is_secret(h->name);

        mock_log(opts, LOG_DEBUG, "event=http_header conn=%" PRIu64 " name=%s value=%s", c->id,
                 log_value(name, sizeof(name), h->name.ptr, h->name.len),
                 secret ? "[redacted]" : log_value(value, sizeof(value), h->value.ptr,
                                                   h->value.len));
    }
}

static void http_reply(struct conn *c, const char *text, size_t len, int status)
{
    mock_log(c->worker->opts, LOG_DEBUG, "event=http_reply conn=%" PRIu64 " status=%d", c->id,
             status);
    out_has_room(c, len); /* the reply is the first output, so this only resets the queue */
    out_bytes(c, text, len);
    c->state = status == 101 ? CONN_WS : CONN_HTTP_REPLIED;
}

static void http_reply_error(struct conn *c, int status, const char *extra, const char *message,
                             const char *code)
{
    char buf[1024];
    size_t len = wr_http_format_error(buf, sizeof(buf), status, extra, message,
                                      "invalid_request_error", code);

    if (len >= sizeof(buf)) {
        abort(); /* every message here is short */
    }
    http_reply(c, buf, len, status);
}

/* A Sec-WebSocket-Key is base64 of 16 bytes: 22 characters ending in A, Q, g or w, then "==". */
static bool ws_key_valid(const struct wr_span *key)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    if (key == NULL || key->len != 24 || key->ptr[22] != '=' || key->ptr[23] != '=') {
        return false;
    }
    for (i = 0; i < 22; i++) {
        if (memchr(alphabet, key->ptr[i], sizeof(alphabet) - 1) == NULL) {
            return false;
        }
    }
    return memchr("AQgw", key->ptr[21], 4) != NULL;
}

static bool span_is(struct wr_span s, const char *text)
{
    return text_equal(s.ptr, s.len, text);
}

static void http_upgrade(struct conn *c, const struct wr_http_request *req)
{
    const struct wr_span *version = wr_http_header_get(req->headers, req->num_headers,
                                                       "Sec-WebSocket-Version");
    const struct wr_span *key = wr_http_header_get(req->headers, req->num_headers,
                                                   "Sec-WebSocket-Key");
    char accept[29];
    char reply[512];
    int len;

    if (version == NULL || !span_is(*version, "13")) {
        http_reply_error(c, 426, "Sec-WebSocket-Version: 13\r\n",
                         "Sec-WebSocket-Version must be 13.", "unsupported_version");
        return;
    }
    if (!ws_key_valid(key)) {
        http_reply_error(c, 400, NULL, "Sec-WebSocket-Key is missing or invalid.",
                         "invalid_websocket_key");
        return;
    }
    wr_ws_accept_key(key->ptr, key->len, accept);
    /* NOTE: The model is unknown until the first message, so openai-model is always "mock".
     * Codex 0.169.0 compares it with the model it asked for and, for a "mock:..." model,
     * prints a warning that the request was routed to a fallback model. */
    len = snprintf(reply, sizeof(reply),
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                   "x-request-id: req_mock_%" PRIu64 "\r\nopenai-model: mock\r\n\r\n",
                   accept, c->id);
    http_reply(c, reply, (size_t)len, 101);
}

static void http_models(struct conn *c)
{
    static const char body[] = "{\"object\":\"list\",\"data\":[{\"id\":\"mock\",\"object\":"
                               "\"model\",\"created\":0,\"owned_by\":\"mock_upstream\"}]}";
    char reply[512];
    int len;

    len = snprintf(reply, sizeof(reply),
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   sizeof(body) - 1, body);
    http_reply(c, reply, (size_t)len, 200);
}

static bool http_authorized(const struct conn *c, const struct wr_http_request *req)
{
    const char *expected = c->worker->opts->auth_expected;
    const struct wr_span *auth;

    if (expected == NULL) {
        return true;
    }
    auth = wr_http_header_get(req->headers, req->num_headers, "Authorization");
    return auth != NULL && span_is(*auth, expected);
}

static void http_route(struct conn *c, const struct wr_http_request *req)
{
    const struct wr_span *upgrade = wr_http_header_get(req->headers, req->num_headers, "Upgrade");
    const struct wr_span *connection = wr_http_header_get(req->headers, req->num_headers,
                                                          "Connection");
    bool is_get = span_is(req->method, "GET");

    http_log_request(c, req);
    if (!http_authorized(c, req)) {
        http_reply_error(c, 401, "WWW-Authenticate: Bearer\r\n",
                         "Missing or invalid bearer token.", "invalid_api_key");
        return;
    }
    if (is_get && upgrade != NULL && connection != NULL &&
        wr_http_has_token(*upgrade, "websocket") && wr_http_has_token(*connection, "upgrade")) {
        http_upgrade(c, req);
        return;
    }
    if (is_get && (span_is(req->path, "/v1/models") || span_is(req->path, "/models"))) {
        http_models(c);
        return;
    }
    http_reply_error(c, 404, NULL, "Not found: mock_upstream serves WebSocket upgrades only.",
                     "not_found");
}

void http_process(struct conn *c)
{
    struct wr_http_request req;
    int rc = wr_http_parse_request((const char *)c->in, c->in_len, c->head_seen, &req);

    if (rc == WR_AGAIN) {
        c->head_seen = c->in_len;
        return;
    }
    if (rc == WR_EHTTP_TOO_LARGE) {
        http_reply_error(c, 431, NULL, "Request headers are larger than 16 KiB.",
                         "headers_too_large");
        c->in_len = 0;
        return;
    }
    if (rc < 0) {
        http_reply_error(c, 400, NULL, "Malformed HTTP request.", "bad_request");
        c->in_len = 0;
        return;
    }

    http_route(c, &req);
    /* Bytes after the head are the first frames when the reply was a 101. */
    memmove(c->in, c->in + rc, c->in_len - (size_t)rc);
    c->in_len -= (size_t)rc;
    if (c->state != CONN_WS) {
        c->in_len = 0;
    }
}
