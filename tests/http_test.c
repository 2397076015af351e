/* SPDX-License-Identifier: MIT */
/* Tests for the HTTP head parsers, the upgrade checks and the error replies. */
#include "proto/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tests/feed.h"

#define RAW(s) s, sizeof(s) - 1

#define H_HOST "Host: 127.0.0.1:8080\r\n"
#define H_UPGRADE "Upgrade: websocket\r\n"
#define H_CONNECTION "Connection: Upgrade\r\n"
#define H_VERSION "Sec-WebSocket-Version: 13\r\n"
#define H_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define H_ALL H_HOST H_UPGRADE H_CONNECTION H_VERSION H_KEY

static int parse_request_buf(const uint8_t *buf, size_t len, size_t last_len, void *out)
{
    return wr_http_parse_request((const char *)buf, len, last_len, out);
}

static int parse_response_buf(const uint8_t *buf, size_t len, size_t last_len, void *out)
{
    return wr_http_parse_response((const char *)buf, len, last_len, out);
}

static bool same_span(struct wr_span a, const uint8_t *base_a, struct wr_span b,
                      const uint8_t *base_b)
{
    return a.len == b.len && a.ptr - (const char *)base_a == b.ptr - (const char *)base_b;
}

static bool same_headers(const struct wr_http_header *a, size_t num_a, const uint8_t *base_a,
                         const struct wr_http_header *b, size_t num_b, const uint8_t *base_b)
{
    size_t i;

    if (num_a != num_b) {
        return false;
    }
    for (i = 0; i < num_a; i++) {
        if (!same_span(a[i].name, base_a, b[i].name, base_b) ||
            !same_span(a[i].value, base_a, b[i].value, base_b)) {
            return false;
        }
    }
    return true;
}

static bool same_request(const void *a, const uint8_t *base_a, const void *b,
                         const uint8_t *base_b)
{
    const struct wr_http_request *x = a;
    const struct wr_http_request *y = b;

    return same_span(x->method, base_a, y->method, base_b) &&
           same_span(x->target, base_a, y->target, base_b) &&
           same_span(x->path, base_a, y->path, base_b) && x->minor_version == y->minor_version &&
           same_headers(x->headers, x->num_headers, base_a, y->headers, y->num_headers, base_b);
}

static bool same_response(const void *a, const uint8_t *base_a, const void *b,
                          const uint8_t *base_b)
{
    const struct wr_http_response *x = a;
    const struct wr_http_response *y = b;

    return x->status == y->status && x->minor_version == y->minor_version &&
           same_span(x->reason, base_a, y->reason, base_b) &&
           same_headers(x->headers, x->num_headers, base_a, y->headers, y->num_headers, base_b);
}

static const struct feed_parser request_parser = {
    parse_request_buf, same_request, sizeof(struct wr_http_request)
};

static const struct feed_parser response_parser = {
    parse_response_buf, same_response, sizeof(struct wr_http_response)
};

static void assert_span(struct wr_span span, const char *expect, const char *name)
{
    size_t len = strlen(expect);

    cr_assert_eq(span.len, len, "%s: length %zu, expected %zu (\"%s\")", name, span.len, len,
                 expect);
    cr_assert(memcmp(span.ptr, expect, len) == 0, "%s: got \"%.*s\", expected \"%s\"", name,
              (int)span.len, span.ptr, expect);
}

static void assert_header(const struct wr_http_header *headers, size_t n, const char *name,
                          const char *expect)
{
    const struct wr_span *value = wr_http_header_get(headers, n, name);

    cr_assert_not_null(value, "header %s is missing", name);
    assert_span(*value, expect, name);
}

/* Parses a complete request three ways and leaves the whole parse in req, with spans into g. */
static void parse_request_ok(const char *label, const char *text, size_t len,
                             struct wr_http_request *req, struct feed_guard *g)
{
    feed_run(&request_parser, label, text, len, (int)len, req, g);
}

static void parse_request_fails(const char *label, const char *text, size_t len, int expect)
{
    struct wr_http_request req;
    struct feed_guard g;

    feed_run(&request_parser, label, text, len, expect, &req, &g);
    feed_guard_free(&g);
}

Test(http, parses_codex_upgrade_request)
{
    static const char text[] =
        "GET /v1/responses HTTP/1.1\r\n"
        "Host: 127.0.0.1:8080\r\n"
        "Connection: Upgrade\r\n"
        "Upgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "authorization: Bearer wr-test-client-key\r\n"
        "OpenAI-Beta: responses_websockets=2026-02-06\r\n"
        "session_id: 0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\r\n"
        "originator: codex_cli_rs\r\n"
        "user-agent: codex_cli_rs/0.46.0 (Debian 12.0.0; x86_64) xterm-256color\r\n"
        "version: 0.46.0\r\n"
        "x-codex-beta-features: unified_exec\r\n"
        "x-codex-turn-metadata: {\"sandbox\":\"workspace-write\"}\r\n"
        "\r\n";
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("codex request", RAW(text), &req, &g);

    assert_span(req.method, "GET", "method");
    assert_span(req.target, "/v1/responses", "target");
    assert_span(req.path, "/v1/responses", "path");
    cr_assert_eq(req.minor_version, 1);
    cr_assert_eq(req.num_headers, 13);
    assert_span(req.headers[0].name, "Host", "first header name");
    assert_span(req.headers[0].value, "127.0.0.1:8080", "first header value");
    assert_header(req.headers, req.num_headers, "Authorization", "Bearer wr-test-client-key");
    assert_header(req.headers, req.num_headers, "openai-beta",
                  "responses_websockets=2026-02-06");
    assert_header(req.headers, req.num_headers, "session_id",
                  "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    assert_header(req.headers, req.num_headers, "Originator", "codex_cli_rs");
    assert_header(req.headers, req.num_headers, "User-Agent",
                  "codex_cli_rs/0.46.0 (Debian 12.0.0; x86_64) xterm-256color");
    assert_header(req.headers, req.num_headers, "x-codex-turn-metadata",
                  "{\"sandbox\":\"workspace-write\"}");
    cr_assert_eq(wr_http_check_upgrade(&req), WR_HTTP_UPGRADE_OK);
    feed_guard_free(&g);
}

Test(http, parses_request_without_headers)
{
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("no headers", RAW("GET / HTTP/1.0\r\n\r\n"), &req, &g);
    cr_assert_eq(req.num_headers, 0);
    cr_assert_eq(req.minor_version, 0);
    assert_span(req.target, "/", "target");
    feed_guard_free(&g);
}

Test(http, accepts_bare_lf_lines)
{
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("bare LF", RAW("GET /responses HTTP/1.1\nHost: a\nX-B:  b \n\n"), &req, &g);
    cr_assert_eq(req.num_headers, 2);
    assert_span(req.headers[0].value, "a", "Host");
    assert_span(req.headers[1].value, "b", "X-B");
    feed_guard_free(&g);

    parse_request_ok("LF then CRLF", RAW("GET / HTTP/1.1\r\nHost: a\n\r\n"), &req, &g);
    cr_assert_eq(req.num_headers, 1);
    feed_guard_free(&g);
}

Test(http, trims_value_whitespace)
{
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("whitespace",
                     RAW("GET / HTTP/1.1\r\nA: \t x \t y\t \r\nB:\r\nC:   \r\nD:z\r\n\r\n"), &req,
                     &g);
    cr_assert_eq(req.num_headers, 4);
    assert_span(req.headers[0].value, "x \t y", "A");
    assert_span(req.headers[1].value, "", "B");
    assert_span(req.headers[2].value, "", "C");
    assert_span(req.headers[3].value, "z", "D");
    feed_guard_free(&g);
}

Test(http, keeps_obs_text_in_values)
{
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("obs-text", RAW("GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n"), &req, &g);
    assert_span(req.headers[0].value, "caf\xc3\xa9", "X-Name");
    feed_guard_free(&g);
}

Test(http, splits_query_from_path)
{
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("query", RAW("GET /v1/responses?model=x&a=b HTTP/1.1\r\n" H_UPGRADE
                                  H_CONNECTION H_VERSION H_KEY "\r\n"),
                     &req, &g);
    assert_span(req.target, "/v1/responses?model=x&a=b", "target");
    assert_span(req.path, "/v1/responses", "path");
    cr_assert_eq(wr_http_check_upgrade(&req), WR_HTTP_UPGRADE_OK);
    feed_guard_free(&g);
}

Test(http, returns_head_length_before_body)
{
    static const char text[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x85\x01\x02\x03\x04";
    struct wr_http_request req;
    struct feed_guard g;
    const uint8_t *buf;
    int rc;

    feed_guard_init(&g, sizeof(text) - 1);
    buf = feed_guard_place(&g, text, sizeof(text) - 1);
    rc = wr_http_parse_request((const char *)buf, sizeof(text) - 1, 0, &req);
    cr_assert_eq(rc, (int)(sizeof(text) - 1 - 6));
    cr_assert_eq(req.num_headers, 1);
    feed_guard_free(&g);
}

Test(http, finds_terminator_across_calls)
{
    static const char text[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    static const size_t cuts[] = { 23, 24, 25, 26 };
    size_t len = sizeof(text) - 1;
    struct wr_http_request req;
    size_t i;

    for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        cr_assert_eq(wr_http_parse_request(text, cuts[i], 0, &req), WR_AGAIN, "cut at %zu",
                     cuts[i]);
        cr_assert_eq(wr_http_parse_request(text, len, cuts[i], &req), (int)len,
                     "rest after cut at %zu", cuts[i]);
    }
}

Test(http, returns_again_for_empty_input)
{
    struct wr_http_request req;

    cr_assert_eq(wr_http_parse_request("", 0, 0, &req), WR_AGAIN);
}

struct malformed_case {
    const char *label;
    const char *text;
    size_t len;
};

Test(http, rejects_malformed_requests)
{
    static const struct malformed_case cases[] = {
        { "empty method", RAW(" / HTTP/1.1\r\nHost: a\r\n\r\n") },
        { "empty target", RAW("GET  HTTP/1.1\r\nHost: a\r\n\r\n") },
        { "empty request line", RAW("\r\nGET / HTTP/1.1\r\n\r\n") },
        { "method with separator", RAW("G(T / HTTP/1.1\r\n\r\n") },
        { "method with slash", RAW("GE/T / HTTP/1.1\r\n\r\n") },
        { "two spaces after method", RAW("GET  / HTTP/1.1\r\n\r\n") },
        { "two spaces after target", RAW("GET /  HTTP/1.1\r\n\r\n") },
        { "tab after method", RAW("GET\t/ HTTP/1.1\r\n\r\n") },
        { "control in target", RAW("GET /a\x01 HTTP/1.1\r\n\r\n") },
        { "missing version", RAW("GET /\r\n\r\n") },
        { "HTTP/2.0", RAW("GET / HTTP/2.0\r\n\r\n") },
        { "HTTP/1.2", RAW("GET / HTTP/1.2\r\n\r\n") },
        { "HTTP/0.9", RAW("GET / HTTP/0.9\r\n\r\n") },
        { "lowercase version", RAW("GET / http/1.1\r\n\r\n") },
        { "version with suffix", RAW("GET / HTTP/1.10\r\n\r\n") },
        { "space after version", RAW("GET / HTTP/1.1 \r\n\r\n") },
        { "bare CR in request line", RAW("GET / HTTP/1.1\rX\r\n\r\n") },
        { "missing colon", RAW("GET / HTTP/1.1\r\nHost a\r\n\r\n") },
        { "space before colon", RAW("GET / HTTP/1.1\r\nHost : a\r\n\r\n") },
        { "tab before colon", RAW("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n") },
        { "empty header name", RAW("GET / HTTP/1.1\r\n: a\r\n\r\n") },
        { "separator in name", RAW("GET / HTTP/1.1\r\nX@Y: a\r\n\r\n") },
        { "obsolete folding with space", RAW("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n") },
        { "obsolete folding with tab", RAW("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n") },
        { "folding on first header", RAW("GET / HTTP/1.1\r\n X: a\r\n\r\n") },
        { "NUL in value", RAW("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n") },
        { "control in value", RAW("GET / HTTP/1.1\r\nX: a\x01 b\r\n\r\n") },
        { "DEL in value", RAW("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n") },
        { "bare CR in value", RAW("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n") },
        { "escape in value", RAW("GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n") },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_request_fails(cases[i].label, cases[i].text, cases[i].len, WR_EHTTP_MALFORMED);
    }
}

Test(http, accepts_tab_inside_value)
{
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("tab in value", RAW("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n"), &req, &g);
    assert_span(req.headers[0].value, "a\tb", "X");
    feed_guard_free(&g);
}

#define PAD_HEAD "GET /v1/responses HTTP/1.1\r\nX-Pad: "

/* Builds a request of exactly len bytes whose one header is padded with 'a'. */
static char *padded_request(size_t len)
{
    static const char head[] = PAD_HEAD;
    size_t pad = len - (sizeof(head) - 1) - 4;
    char *text = malloc(len);

    cr_assert_not_null(text);
    memcpy(text, head, sizeof(head) - 1);
    memset(text + sizeof(head) - 1, 'a', pad);
    memcpy(text + len - 4, "\r\n\r\n", 4);
    return text;
}

Test(http, accepts_head_at_size_limit, .timeout = 120)
{
    char *text = padded_request(WR_HTTP_MAX_HEAD_BYTES);
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("16384-byte head", text, WR_HTTP_MAX_HEAD_BYTES, &req, &g);
    cr_assert_eq(req.num_headers, 1);
    cr_assert_eq(req.headers[0].value.len, WR_HTTP_MAX_HEAD_BYTES - (sizeof(PAD_HEAD) - 1) - 4);
    feed_guard_free(&g);
    free(text);
}

Test(http, rejects_head_over_size_limit, .timeout = 120)
{
    char *text = padded_request(WR_HTTP_MAX_HEAD_BYTES + 1);

    parse_request_fails("16385-byte head", text, WR_HTTP_MAX_HEAD_BYTES + 1, WR_EHTTP_TOO_LARGE);
    free(text);
}

Test(http, rejects_incomplete_head_at_limit)
{
    char *text = padded_request(WR_HTTP_MAX_HEAD_BYTES + 4);
    struct wr_http_request req;

    cr_assert_eq(wr_http_parse_request(text, WR_HTTP_MAX_HEAD_BYTES - 1, 0, &req), WR_AGAIN);
    cr_assert_eq(wr_http_parse_request(text, WR_HTTP_MAX_HEAD_BYTES, 0, &req),
                 WR_EHTTP_TOO_LARGE);
    cr_assert_eq(wr_http_parse_request(text, WR_HTTP_MAX_HEAD_BYTES, WR_HTTP_MAX_HEAD_BYTES - 1,
                                       &req),
                 WR_EHTTP_TOO_LARGE);
    free(text);
}

Test(http, ignores_bytes_after_head_at_limit)
{
    char *head = padded_request(WR_HTTP_MAX_HEAD_BYTES);
    size_t len = WR_HTTP_MAX_HEAD_BYTES + 8;
    struct wr_http_request req;
    struct feed_guard g;
    char *text = malloc(len);
    const uint8_t *buf;

    cr_assert_not_null(text);
    memcpy(text, head, WR_HTTP_MAX_HEAD_BYTES);
    memset(text + WR_HTTP_MAX_HEAD_BYTES, 'b', 8);
    feed_guard_init(&g, len);
    buf = feed_guard_place(&g, text, len);
    cr_assert_eq(wr_http_parse_request((const char *)buf, len, 0, &req), WR_HTTP_MAX_HEAD_BYTES);
    feed_guard_free(&g);
    free(text);
    free(head);
}

/* Builds a request with count headers named X-H0, X-H1, ... */
static size_t request_with_headers(char *out, size_t cap, int count)
{
    size_t len = (size_t)snprintf(out, cap, "GET / HTTP/1.1\r\n");
    int i;

    for (i = 0; i < count; i++) {
        len += (size_t)snprintf(out + len, cap - len, "X-H%d: %d\r\n", i, i);
    }
    len += (size_t)snprintf(out + len, cap - len, "\r\n");
    cr_assert_lt(len, cap);
    return len;
}

Test(http, accepts_64_headers)
{
    char text[2048];
    size_t len = request_with_headers(text, sizeof(text), WR_HTTP_MAX_HEADERS);
    struct wr_http_request req;
    struct feed_guard g;

    parse_request_ok("64 headers", text, len, &req, &g);
    cr_assert_eq(req.num_headers, WR_HTTP_MAX_HEADERS);
    assert_span(req.headers[63].name, "X-H63", "last name");
    assert_span(req.headers[63].value, "63", "last value");
    feed_guard_free(&g);
}

Test(http, rejects_65_headers)
{
    char text[2048];
    size_t len = request_with_headers(text, sizeof(text), WR_HTTP_MAX_HEADERS + 1);

    parse_request_fails("65 headers", text, len, WR_EHTTP_TOO_LARGE);
}

struct verdict_case {
    const char *label;
    const char *text;
    size_t len;
    enum wr_http_verdict verdict;
};

Test(http, checks_upgrade_in_order)
{
    static const struct verdict_case cases[] = {
        { "valid", RAW("GET /v1/responses HTTP/1.1\r\n" H_ALL "\r\n"), WR_HTTP_UPGRADE_OK },
        { "short path", RAW("GET /responses HTTP/1.1\r\n" H_ALL "\r\n"), WR_HTTP_UPGRADE_OK },
        { "backend path", RAW("GET /backend-api/codex/responses HTTP/1.1\r\n" H_ALL "\r\n"),
          WR_HTTP_UPGRADE_OK },
        { "HTTP/1.0", RAW("GET /v1/responses HTTP/1.0\r\n" H_ALL "\r\n"), WR_HTTP_UPGRADE_OK },
        { "POST", RAW("POST /v1/responses HTTP/1.1\r\n" H_ALL "\r\n"), WR_HTTP_BAD_METHOD },
        { "lowercase get", RAW("get /v1/responses HTTP/1.1\r\n" H_ALL "\r\n"),
          WR_HTTP_BAD_METHOD },
        { "POST to unknown path", RAW("POST /nope HTTP/1.1\r\n\r\n"), WR_HTTP_BAD_METHOD },
        { "unknown path", RAW("GET /v1/chat HTTP/1.1\r\n" H_ALL "\r\n"), WR_HTTP_NOT_FOUND },
        { "trailing slash", RAW("GET /v1/responses/ HTTP/1.1\r\n" H_ALL "\r\n"),
          WR_HTTP_NOT_FOUND },
        { "path case", RAW("GET /V1/responses HTTP/1.1\r\n" H_ALL "\r\n"), WR_HTTP_NOT_FOUND },
        { "absolute form", RAW("GET http://a/v1/responses HTTP/1.1\r\n" H_ALL "\r\n"),
          WR_HTTP_NOT_FOUND },
        { "unknown path without upgrade", RAW("GET /x HTTP/1.1\r\n\r\n"), WR_HTTP_NOT_FOUND },
        { "no upgrade headers", RAW("GET /v1/responses HTTP/1.1\r\n" H_HOST "\r\n"),
          WR_HTTP_NOT_UPGRADE },
        { "no Upgrade", RAW("GET /v1/responses HTTP/1.1\r\n" H_CONNECTION H_VERSION H_KEY "\r\n"),
          WR_HTTP_NOT_UPGRADE },
        { "no Connection", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_VERSION H_KEY "\r\n"),
          WR_HTTP_NOT_UPGRADE },
        { "Upgrade h2c", RAW("GET /v1/responses HTTP/1.1\r\nUpgrade: h2c\r\n" H_CONNECTION
                             H_VERSION H_KEY "\r\n"),
          WR_HTTP_NOT_UPGRADE },
        { "Connection keep-alive", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE
                                       "Connection: keep-alive\r\n" H_VERSION H_KEY "\r\n"),
          WR_HTTP_NOT_UPGRADE },
        { "token in other header", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE
                                       "X-Connection: Upgrade\r\n" H_VERSION H_KEY "\r\n"),
          WR_HTTP_NOT_UPGRADE },
        { "token lists", RAW("GET /v1/responses HTTP/1.1\r\nUpgrade: foo/2, WebSocket\r\n"
                             "Connection: keep-alive, Upgrade\r\n" H_VERSION H_KEY "\r\n"),
          WR_HTTP_UPGRADE_OK },
        { "repeated Connection", RAW("GET /v1/responses HTTP/1.1\r\nConnection: keep-alive\r\n"
                                     H_UPGRADE "connection: UPGRADE\r\n" H_VERSION H_KEY "\r\n"),
          WR_HTTP_UPGRADE_OK },
        { "repeated Upgrade", RAW("GET /v1/responses HTTP/1.1\r\nUpgrade: h2c\r\n"
                                  "UPGRADE: websocket\r\n" H_CONNECTION H_VERSION H_KEY "\r\n"),
          WR_HTTP_UPGRADE_OK },
        { "no upgrade and bad version", RAW("GET /v1/responses HTTP/1.1\r\n" H_CONNECTION
                                            "Sec-WebSocket-Version: 8\r\n" H_KEY "\r\n"),
          WR_HTTP_NOT_UPGRADE },
        { "no version", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION H_KEY "\r\n"),
          WR_HTTP_BAD_VERSION },
        { "version 8", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                           "Sec-WebSocket-Version: 8\r\n" H_KEY "\r\n"),
          WR_HTTP_BAD_VERSION },
        { "version 13 twice", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                                  H_VERSION H_VERSION H_KEY "\r\n"),
          WR_HTTP_BAD_VERSION },
        { "version list", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                              "Sec-WebSocket-Version: 13, 8\r\n" H_KEY "\r\n"),
          WR_HTTP_BAD_VERSION },
        { "bad version and no key", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                                        "Sec-WebSocket-Version: 7\r\n\r\n"),
          WR_HTTP_BAD_VERSION },
        { "no key", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION H_VERSION
                        "\r\n"),
          WR_HTTP_BAD_KEY },
        { "key twice", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION H_VERSION
                           H_KEY H_KEY "\r\n"),
          WR_HTTP_BAD_KEY },
        { "key of 23 chars", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                                 H_VERSION "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n\r\n"),
          WR_HTTP_BAD_KEY },
        { "key of 25 chars", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                                 H_VERSION "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n\r\n"),
          WR_HTTP_BAD_KEY },
        { "key without padding", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                                     H_VERSION "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA\r\n"
                                     "\r\n"),
          WR_HTTP_BAD_KEY },
        { "key of 15 bytes", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                                 H_VERSION "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQA=\r\n\r\n"),
          WR_HTTP_BAD_KEY },
        { "key outside alphabet", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                                      H_VERSION "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j-Q==\r\n"
                                      "\r\n"),
          WR_HTTP_BAD_KEY },
        { "key with stray bits", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION
                                     H_VERSION "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n"
                                     "\r\n"),
          WR_HTTP_BAD_KEY },
        { "empty key", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE H_CONNECTION H_VERSION
                           "Sec-WebSocket-Key:\r\n\r\n"),
          WR_HTTP_BAD_KEY },
        { "key with plus and slash", RAW("GET /v1/responses HTTP/1.1\r\n" H_UPGRADE
                                         H_CONNECTION H_VERSION
                                         "Sec-WebSocket-Key: ++//++//++//++//++//+w==\r\n\r\n"),
          WR_HTTP_UPGRADE_OK },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wr_http_request req;
        struct feed_guard g;
        enum wr_http_verdict verdict;

        parse_request_ok(cases[i].label, cases[i].text, cases[i].len, &req, &g);
        verdict = wr_http_check_upgrade(&req);
        cr_assert_eq(verdict, cases[i].verdict, "%s: verdict %d, expected %d", cases[i].label,
                     verdict, cases[i].verdict);
        feed_guard_free(&g);
    }
}

Test(http, maps_verdicts_to_status)
{
    cr_assert_eq(wr_http_verdict_status(WR_HTTP_UPGRADE_OK), 0);
    cr_assert_eq(wr_http_verdict_status(WR_HTTP_BAD_METHOD), 405);
    cr_assert_eq(wr_http_verdict_status(WR_HTTP_NOT_FOUND), 404);
    cr_assert_eq(wr_http_verdict_status(WR_HTTP_NOT_UPGRADE), 426);
    cr_assert_eq(wr_http_verdict_status(WR_HTTP_BAD_VERSION), 426);
    cr_assert_eq(wr_http_verdict_status(WR_HTTP_BAD_KEY), 400);
}

struct token_case {
    const char *value;
    const char *token;
    bool found;
};

Test(http, finds_tokens_in_lists)
{
    static const struct token_case cases[] = {
        { "Upgrade", "upgrade", true },
        { "keep-alive, Upgrade", "upgrade", true },
        { "keep-alive,Upgrade", "upgrade", true },
        { "UPGRADE,keep-alive", "upgrade", true },
        { " \tupgrade\t ", "upgrade", true },
        { ",, upgrade ,,", "upgrade", true },
        { "keep-alive", "upgrade", false },
        { "upgrades", "upgrade", false },
        { "pre-upgrade", "upgrade", false },
        { "up grade", "upgrade", false },
        { "upgrade;q=1", "upgrade", false },
        { "", "upgrade", false },
        { ",", "upgrade", false },
        { "websocket", "websocket", true },
        { "WebSocket", "websocket", true },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wr_span value = { cases[i].value, strlen(cases[i].value) };

        cr_assert_eq(wr_http_has_token(value, cases[i].token), cases[i].found,
                     "\"%s\" holding \"%s\"", cases[i].value, cases[i].token);
    }
}

Test(http, gets_first_header_by_name)
{
    static const char text[] = "GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n";
    struct wr_http_request req;
    const struct wr_span *value;

    cr_assert_eq(wr_http_parse_request(RAW(text), 0, &req), (int)(sizeof(text) - 1));
    value = wr_http_header_get(req.headers, req.num_headers, "x-A");
    cr_assert_not_null(value);
    assert_span(*value, "1", "X-A");
    value = wr_http_header_get(req.headers, req.num_headers, "X-B");
    cr_assert_not_null(value);
    assert_span(*value, "3", "X-B");
    cr_assert_null(wr_http_header_get(req.headers, req.num_headers, "X-C"));
    cr_assert_null(wr_http_header_get(req.headers, req.num_headers, "X-"));
    cr_assert_null(wr_http_header_get(req.headers, req.num_headers, "X-AA"));
}

Test(http, computes_rfc6455_accept_key)
{
    char out[29];

    memset(out, 'x', sizeof(out));
    wr_ws_accept_key(RAW("dGhlIHNhbXBsZSBub25jZQ=="), out);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(http, accept_key_uses_key_len)
{
    char whole[29];
    char cut[29];

    wr_ws_accept_key(RAW("dGhlIHNhbXBsZSBub25jZQ=="), whole);
    wr_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==trailing", 24, cut);
    cr_assert_str_eq(cut, whole);
}

Test(http, parses_switching_protocols)
{
    static const char text[] =
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        "x-codex-turn-state: abc\r\n"
        "\r\n";
    struct wr_http_response res;
    struct feed_guard g;

    feed_run(&response_parser, "101", RAW(text), (int)(sizeof(text) - 1), &res, &g);
    cr_assert_eq(res.status, 101);
    cr_assert_eq(res.minor_version, 1);
    assert_span(res.reason, "Switching Protocols", "reason");
    cr_assert_eq(res.num_headers, 4);
    assert_header(res.headers, res.num_headers, "sec-websocket-accept",
                  "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    feed_guard_free(&g);
}

Test(http, parses_status_without_reason)
{
    struct wr_http_response res;
    struct feed_guard g;

    feed_run(&response_parser, "empty reason", RAW("HTTP/1.1 101 \r\n\r\n"),
             (int)sizeof("HTTP/1.1 101 \r\n\r\n") - 1, &res, &g);
    cr_assert_eq(res.status, 101);
    cr_assert_eq(res.reason.len, 0);
    feed_guard_free(&g);

    feed_run(&response_parser, "no reason", RAW("HTTP/1.0 429\r\nRetry-After: 7\r\n\r\n"),
             (int)sizeof("HTTP/1.0 429\r\nRetry-After: 7\r\n\r\n") - 1, &res, &g);
    cr_assert_eq(res.status, 429);
    cr_assert_eq(res.minor_version, 0);
    cr_assert_eq(res.reason.len, 0);
    assert_header(res.headers, res.num_headers, "Retry-After", "7");
    feed_guard_free(&g);
}

Test(http, rejects_malformed_responses)
{
    static const struct malformed_case cases[] = {
        { "two-digit status", RAW("HTTP/1.1 10 X\r\n\r\n") },
        { "four-digit status", RAW("HTTP/1.1 1010 X\r\n\r\n") },
        { "letter in status", RAW("HTTP/1.1 1a1 X\r\n\r\n") },
        { "no space before status", RAW("HTTP/1.1101 X\r\n\r\n") },
        { "two spaces before status", RAW("HTTP/1.1  101 X\r\n\r\n") },
        { "junk before status", RAW("HTTP/1.1_101 X\r\n\r\n") },
        { "no space after status", RAW("HTTP/1.1 101X\r\n\r\n") },
        { "HTTP/2", RAW("HTTP/2 101 X\r\n\r\n") },
        { "HTTP/1.2", RAW("HTTP/1.2 101 X\r\n\r\n") },
        { "no version", RAW("101 Switching Protocols\r\n\r\n") },
        { "control in reason", RAW("HTTP/1.1 101 Swi\x01tching\r\n\r\n") },
        { "tab instead of space", RAW("HTTP/1.1 101\tX\r\n\r\n") },
        { "space before colon", RAW("HTTP/1.1 101 X\r\nUpgrade : websocket\r\n\r\n") },
        { "obsolete folding", RAW("HTTP/1.1 101 X\r\nA: b\r\n c\r\n\r\n") },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wr_http_response res;
        struct feed_guard g;

        feed_run(&response_parser, cases[i].label, cases[i].text, cases[i].len,
                 WR_EHTTP_MALFORMED, &res, &g);
        feed_guard_free(&g);
    }
}

Test(http, rejects_response_over_size_limit, .timeout = 120)
{
    size_t len = WR_HTTP_MAX_HEAD_BYTES + 1;
    char *text = padded_request(len);
    struct wr_http_response res;

    memcpy(text, "HTTP/1.1 101 Switching Pr", 25);
    cr_assert_eq(wr_http_parse_response(text, len, 0, &res), WR_EHTTP_TOO_LARGE);
    cr_assert_eq(wr_http_parse_response(text, len - 1, 0, &res), WR_EHTTP_TOO_LARGE);
    cr_assert_eq(wr_http_parse_response(text, len - 2, 0, &res), WR_AGAIN);
    free(text);
}

/* Parses a formatted error reply and returns its body, which follows the head. */
static const char *parse_reply(const char *reply, size_t len, struct wr_http_response *res)
{
    int head_len = wr_http_parse_response(reply, len, 0, res);

    cr_assert_gt(head_len, 0, "reply head: %s\n%s", wr_strerror(head_len), reply);
    return reply + head_len;
}

Test(http, formats_error_reply)
{
    static const char body[] =
        "{\"error\":{\"message\":\"Only GET is allowed\",\"type\":\"invalid_request_error\","
        "\"code\":\"method_not_allowed\"}}";
    char reply[1024];
    char length[16];
    struct wr_http_response res;
    const char *got;
    size_t len;

    len = wr_http_format_error(reply, sizeof(reply), 405, "Allow: GET\r\n",
                               "Only GET is allowed", "invalid_request_error",
                               "method_not_allowed");
    cr_assert_lt(len, sizeof(reply));
    cr_assert_eq(strlen(reply), len);

    got = parse_reply(reply, len, &res);
    cr_assert_eq(res.status, 405);
    assert_span(res.reason, "Method Not Allowed", "reason");
    assert_header(res.headers, res.num_headers, "Content-Type", "application/json");
    snprintf(length, sizeof(length), "%zu", sizeof(body) - 1);
    assert_header(res.headers, res.num_headers, "Content-Length", length);
    assert_header(res.headers, res.num_headers, "Connection", "close");
    assert_header(res.headers, res.num_headers, "Allow", "GET");
    cr_assert_eq(res.num_headers, 4);
    cr_assert_str_eq(got, body);
}

Test(http, formats_reply_with_two_extra_headers)
{
    char reply[1024];
    struct wr_http_response res;
    size_t len;

    len = wr_http_format_error(reply, sizeof(reply), 426,
                               "Upgrade: websocket\r\nConnection: Upgrade\r\n", "Upgrade required",
                               "invalid_request_error", NULL);
    parse_reply(reply, len, &res);
    cr_assert_eq(res.status, 426);
    assert_span(res.reason, "Upgrade Required", "reason");
    cr_assert_eq(res.num_headers, 5);
    assert_header(res.headers, res.num_headers, "Upgrade", "websocket");
    cr_assert(wr_http_has_token(res.headers[2].value, "close"), "first Connection is close");
    cr_assert(wr_http_has_token(res.headers[4].value, "upgrade"), "second Connection is Upgrade");
}

Test(http, formats_null_code)
{
    char reply[512];
    struct wr_http_response res;
    const char *got;
    size_t len;

    len = wr_http_format_error(reply, sizeof(reply), 404, NULL, "Not found", "not_found", NULL);
    got = parse_reply(reply, len, &res);
    cr_assert_eq(res.num_headers, 3);
    cr_assert_str_eq(got, "{\"error\":{\"message\":\"Not found\",\"type\":\"not_found\","
                          "\"code\":null}}");
}

Test(http, escapes_json_strings)
{
    char reply[512];
    struct wr_http_response res;
    const char *got;
    size_t len;

    len = wr_http_format_error(reply, sizeof(reply), 400, NULL, "a\"b\\c\nd\x01" "e\x1f\t",
                               "t\"", "caf\xc3\xa9");
    got = parse_reply(reply, len, &res);
    cr_assert_str_eq(got, "{\"error\":{\"message\":\"a\\\"b\\\\c\\u000ad\\u0001e\\u001f\\u0009\","
                          "\"type\":\"t\\\"\",\"code\":\"caf\xc3\xa9\"}}");
}

Test(http, truncates_reply_like_snprintf)
{
    static const size_t caps[] = { 1, 2, 17, 100 };
    char full[512];
    char small[512];
    size_t need;
    size_t i;

    need = wr_http_format_error(NULL, 0, 401, "WWW-Authenticate: Bearer\r\n", "Invalid key",
                                "invalid_request_error", "invalid_api_key");
    cr_assert_eq(wr_http_format_error(full, sizeof(full), 401, "WWW-Authenticate: Bearer\r\n",
                                      "Invalid key", "invalid_request_error", "invalid_api_key"),
                 need);
    cr_assert_eq(strlen(full), need);

    for (i = 0; i <= sizeof(caps) / sizeof(caps[0]); i++) {
        size_t cap = i < sizeof(caps) / sizeof(caps[0]) ? caps[i] : need;
        size_t rc;

        memset(small, 'X', sizeof(small));
        rc = wr_http_format_error(small, cap, 401, "WWW-Authenticate: Bearer\r\n", "Invalid key",
                                  "invalid_request_error", "invalid_api_key");
        cr_assert_eq(rc, need, "cap %zu", cap);
        cr_assert_eq(small[cap - 1], '\0', "cap %zu: no NUL at the end", cap);
        cr_assert(memcmp(small, full, cap - 1) == 0, "cap %zu: prefix differs", cap);
        cr_assert_eq(small[cap], 'X', "cap %zu: wrote past cap", cap);
    }
}

struct reason_case {
    int status;
    const char *reason;
};

Test(http, names_reason_phrases)
{
    static const struct reason_case cases[] = {
        { 101, "Switching Protocols" }, { 400, "Bad Request" },
        { 401, "Unauthorized" },        { 404, "Not Found" },
        { 405, "Method Not Allowed" },  { 408, "Request Timeout" },
        { 426, "Upgrade Required" },    { 429, "Too Many Requests" },
        { 431, "Request Header Fields Too Large" },
        { 502, "Bad Gateway" },         { 503, "Service Unavailable" },
        { 504, "Gateway Timeout" },     { 299, "Unknown" },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_assert_str_eq(wr_http_reason(cases[i].status), cases[i].reason, "status %d",
                         cases[i].status);
    }
}
