/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 WebSocket upgrade: request and response parsing, checks, replies. */
#ifndef WR_PROTO_HTTP_H
#define WR_PROTO_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/wr.h"

#define WR_HTTP_MAX_HEAD_BYTES 16384 /* request or response head, CRLFCRLF included */
#define WR_HTTP_MAX_HEADERS 64

struct wr_http_header {
    struct wr_span name;
    struct wr_span value; /* leading and trailing spaces and tabs removed */
};

struct wr_http_request {
    struct wr_span method;
    struct wr_span target; /* request-target as sent */
    struct wr_span path;   /* target up to the first '?' */
    int minor_version;     /* HTTP/1.x */
    size_t num_headers;
    struct wr_http_header headers[WR_HTTP_MAX_HEADERS];
};

struct wr_http_response {
    int status;
    int minor_version;
    struct wr_span reason;
    size_t num_headers;
    struct wr_http_header headers[WR_HTTP_MAX_HEADERS];
};

/*
 * Parses a request head at buf. Stateless: the caller re-parses the whole
 * buffer when more bytes arrive, and last_len (the length at the previous
 * call, 0 the first time) lets the parser skip the search for the end of the
 * head over bytes it has seen. Returns the head length including the final
 * CRLFCRLF; WR_AGAIN if the head is incomplete and len < 16 KiB;
 * WR_EHTTP_TOO_LARGE if the head is or would be over 16 KiB or has more than
 * WR_HTTP_MAX_HEADERS headers; WR_EHTTP_MALFORMED on a syntax error. Spans
 * point into buf. Never reads past buf + len.
 */
int wr_http_parse_request(const char *buf, size_t len, size_t last_len,
                          struct wr_http_request *req);

/* Parses a response head the same way as wr_http_parse_request. */
int wr_http_parse_response(const char *buf, size_t len, size_t last_len,
                           struct wr_http_response *res);

/* Returns the value of the first header named name (case-insensitive), or NULL. */
const struct wr_span *wr_http_header_get(const struct wr_http_header *headers, size_t n,
                                         const char *name);

/* Returns true if the comma-separated list value contains token (case-insensitive). */
bool wr_http_has_token(struct wr_span value, const char *token);

/* Outcome of the upgrade checks, in the order they run. */
enum wr_http_verdict {
    WR_HTTP_UPGRADE_OK = 0,
    WR_HTTP_BAD_METHOD,  /* 405, Allow: GET */
    WR_HTTP_NOT_FOUND,   /* 404 */
    WR_HTTP_NOT_UPGRADE, /* 426, Upgrade: websocket, Connection: Upgrade */
    WR_HTTP_BAD_VERSION, /* 426, Sec-WebSocket-Version: 13 */
    WR_HTTP_BAD_KEY,     /* 400 */
};

/*
 * Checks a parsed request against the WebSocket upgrade rules: GET, a path of
 * /v1/responses, /responses or /backend-api/codex/responses (query ignored),
 * Upgrade holding "websocket" and Connection holding "upgrade",
 * Sec-WebSocket-Version 13, and a Sec-WebSocket-Key that is base64 of 16 bytes.
 * Authorization is not looked at here.
 */
enum wr_http_verdict wr_http_check_upgrade(const struct wr_http_request *req);

/* Returns the HTTP status for a verdict (0 for WR_HTTP_UPGRADE_OK). */
int wr_http_verdict_status(enum wr_http_verdict verdict);

/* Writes the 28-character Sec-WebSocket-Accept value for key, NUL-terminated. */
void wr_ws_accept_key(const char *key, size_t key_len, char out[29]);

/*
 * Formats a complete error reply: status line, Content-Type application/json,
 * Content-Length, Connection: close, the extra header lines (each ending in
 * CRLF, may be NULL), and the body {"error":{"message":...,"type":...,"code":...}}
 * with message, type and code JSON-escaped (code NULL gives "code":null).
 * Returns the length written, or the length needed if it is >= cap (as snprintf).
 */
size_t wr_http_format_error(char *out, size_t cap, int status, const char *extra_headers,
                            const char *message, const char *type, const char *code);

/* Returns the reason phrase for an HTTP status ("Not Found"), "Unknown" if none. */
const char *wr_http_reason(int status);

#endif
