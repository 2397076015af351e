/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 head parsing, WebSocket upgrade checks and JSON error replies. */
#include "proto/http.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha.h>

#define WS_KEY_LEN 24
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* The unparsed rest of a complete head. */
struct head_cursor {
    const char *pos;
    const char *end;
};

/* Returns true for an RFC 9110 tchar, the characters of methods and field names. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

/* Returns true for a field value or reason phrase byte: HTAB, SP, VCHAR or obs-text. */
static bool is_text_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool span_equal_nocase(struct wr_span s, const char *text, size_t text_len)
{
    size_t i;

    if (s.len != text_len) {
        return false;
    }
    for (i = 0; i < text_len; i++) {
        if (ascii_lower(s.ptr[i]) != ascii_lower(text[i])) {
            return false;
        }
    }
    return true;
}

static bool span_equal(struct wr_span s, const char *text)
{
    size_t text_len = strlen(text);

    return s.len == text_len && memcmp(s.ptr, text, text_len) == 0;
}

/*
 * Finds the empty line that ends the head: LF LF or LF CR LF. Bytes before
 * last_len - 2 were searched by the previous call, because a terminator that
 * started there would already have been complete.
 */
static int find_head_end(const char *buf, size_t len, size_t last_len)
{
    size_t limit = len < WR_HTTP_MAX_HEAD_BYTES ? len : WR_HTTP_MAX_HEAD_BYTES;
    size_t i = (last_len <= len && last_len > 2) ? last_len - 2 : 0;

    while (i < limit) {
        const char *lf = memchr(buf + i, '\n', limit - i);

        if (lf == NULL) {
            break;
        }
        i = (size_t)(lf - buf);
        if (i + 1 < limit && buf[i + 1] == '\n') {
            return (int)(i + 2);
        }
        if (i + 2 < limit && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            return (int)(i + 3);
        }
        i++;
    }
    return len >= WR_HTTP_MAX_HEAD_BYTES ? WR_EHTTP_TOO_LARGE : WR_AGAIN;
}

/* Takes the next line from a complete head, without its LF or CR LF. */
static struct wr_span next_line(struct head_cursor *cur)
{
    const char *lf = memchr(cur->pos, '\n', (size_t)(cur->end - cur->pos));
    struct wr_span line = { cur->pos, 0 };

    /* The head always ends in LF, so every line has one. */
    assert(lf != NULL);
    line.len = (size_t)(lf - cur->pos);
    if (line.len > 0 && line.ptr[line.len - 1] == '\r') {
        line.len--;
    }
    cur->pos = lf + 1;
    return line;
}

/* Parses "HTTP/1.0" or "HTTP/1.1" at s; other versions are rejected. */
static int parse_version(const char *s, size_t n, int *minor_version)
{
    if (n < 8 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1')) {
        return WR_EHTTP_MALFORMED;
    }
    *minor_version = s[7] - '0';
    return 8;
}

static int parse_request_line(struct wr_span line, struct wr_http_request *req)
{
    const char *s = line.ptr;
    size_t n = line.len;
    size_t i = 0;
    size_t start;
    const char *query;

    while (i < n && is_tchar((unsigned char)s[i])) {
        i++;
    }
    if (i == 0 || i == n || s[i] != ' ') {
        return WR_EHTTP_MALFORMED;
    }
    req->method = (struct wr_span){ s, i };
    i++;

    start = i;
    while (i < n && is_target_char((unsigned char)s[i])) {
        i++;
    }
    if (i == start || i == n || s[i] != ' ') {
        return WR_EHTTP_MALFORMED;
    }
    req->target = (struct wr_span){ s + start, i - start };
    query = memchr(req->target.ptr, '?', req->target.len);
    req->path.ptr = req->target.ptr;
    req->path.len = query != NULL ? (size_t)(query - req->target.ptr) : req->target.len;
    i++;

    if (n - i != 8 || parse_version(s + i, n - i, &req->minor_version) < 0) {
        return WR_EHTTP_MALFORMED;
    }
    return 0;
}

/* Parses "HTTP/1.1 101 Switching Protocols"; the reason and the space before it are optional. */
static int parse_status_line(struct wr_span line, struct wr_http_response *res)
{
    const char *s = line.ptr;
    size_t n = line.len;
    size_t i;
    size_t k;

    if (parse_version(s, n, &res->minor_version) < 0) {
        return WR_EHTTP_MALFORMED;
    }
    if (n < 12 || s[8] != ' ') {
        return WR_EHTTP_MALFORMED;
    }
    res->status = 0;
    for (k = 9; k < 12; k++) {
        if (s[k] < '0' || s[k] > '9') {
            return WR_EHTTP_MALFORMED;
        }
        res->status = res->status * 10 + (s[k] - '0');
    }

    res->reason = (struct wr_span){ s + n, 0 };
    if (n == 12) {
        return 0;
    }
    if (s[12] != ' ') {
        return WR_EHTTP_MALFORMED;
    }
    for (i = 13; i < n; i++) {
        if (!is_text_char((unsigned char)s[i])) {
            return WR_EHTTP_MALFORMED;
        }
    }
    res->reason = (struct wr_span){ s + 13, n - 13 };
    return 0;
}

static int parse_header_line(struct wr_span line, struct wr_http_header *hdr)
{
    const char *s = line.ptr;
    size_t n = line.len;
    size_t i = 0;
    size_t start;
    size_t end;

    /* Obsolete line folding (a line starting with SP or HTAB) is rejected, as RFC 9112 allows. */
    while (i < n && is_tchar((unsigned char)s[i])) {
        i++;
    }
    if (i == 0 || i == n || s[i] != ':') {
        return WR_EHTTP_MALFORMED;
    }
    hdr->name = (struct wr_span){ s, i };
    i++;

    while (i < n && is_ows(s[i])) {
        i++;
    }
    start = i;
    for (; i < n; i++) {
        if (!is_text_char((unsigned char)s[i])) {
            return WR_EHTTP_MALFORMED;
        }
    }
    end = n;
    while (end > start && is_ows(s[end - 1])) {
        end--;
    }
    hdr->value = (struct wr_span){ s + start, end - start };
    return 0;
}

/* Parses header lines up to the empty line that ends the head. */
static int parse_headers(struct head_cursor *cur, struct wr_http_header *headers,
                         size_t *num_headers)
{
    struct wr_span line;
    int rc;

    *num_headers = 0;
    for (;;) {
        line = next_line(cur);
        if (line.len == 0) {
            return 0;
        }
        if (*num_headers == WR_HTTP_MAX_HEADERS) {
            return WR_EHTTP_TOO_LARGE;
        }
        rc = parse_header_line(line, &headers[*num_headers]);
        if (rc < 0) {
            return rc;
        }
        (*num_headers)++;
    }
}

int wr_http_parse_request(const char *buf, size_t len, size_t last_len,
                          struct wr_http_request *req)
{
    int head_len = find_head_end(buf, len, last_len);
    struct head_cursor cur;
    int rc;

    if (head_len < 0) {
        return head_len;
    }
    cur.pos = buf;
    cur.end = buf + head_len;

    rc = parse_request_line(next_line(&cur), req);
    if (rc < 0) {
        return rc;
    }
    rc = parse_headers(&cur, req->headers, &req->num_headers);
    return rc < 0 ? rc : head_len;
}

int wr_http_parse_response(const char *buf, size_t len, size_t last_len,
                           struct wr_http_response *res)
{
    int head_len = find_head_end(buf, len, last_len);
    struct head_cursor cur;
    int rc;

    if (head_len < 0) {
        return head_len;
    }
    cur.pos = buf;
    cur.end = buf + head_len;

    rc = parse_status_line(next_line(&cur), res);
    if (rc < 0) {
        return rc;
    }
    rc = parse_headers(&cur, res->headers, &res->num_headers);
    return rc < 0 ? rc : head_len;
}

const struct wr_span *wr_http_header_get(const struct wr_http_header *headers, size_t n,
                                         const char *name)
{
    size_t name_len = strlen(name);
    size_t i;

    for (i = 0; i < n; i++) {
        if (span_equal_nocase(headers[i].name, name, name_len)) {
            return &headers[i].value;
        }
    }
    return NULL;
}

bool wr_http_has_token(struct wr_span value, const char *token)
{
    size_t token_len = strlen(token);
    const char *p = value.ptr;
    const char *end = value.ptr + value.len;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma != NULL ? comma : end;
        struct wr_span item;

        while (p < item_end && is_ows(*p)) {
            p++;
        }
        item = (struct wr_span){ p, (size_t)(item_end - p) };
        while (item.len > 0 && is_ows(item.ptr[item.len - 1])) {
            item.len--;
        }
        if (span_equal_nocase(item, token, token_len)) {
            return true;
        }
        p = comma != NULL ? comma + 1 : end;
    }
    return false;
}

/* Returns true if any occurrence of the named header contains token in its list. */
static bool any_header_has_token(const struct wr_http_request *req, const char *name,
                                 const char *token)
{
    size_t name_len = strlen(name);
    size_t i;

    for (i = 0; i < req->num_headers; i++) {
        if (span_equal_nocase(req->headers[i].name, name, name_len) &&
            wr_http_has_token(req->headers[i].value, token)) {
            return true;
        }
    }
    return false;
}

/* Returns the value of a header that must appear once, or NULL if it is missing or repeated. */
static const struct wr_span *single_header(const struct wr_http_request *req, const char *name)
{
    size_t name_len = strlen(name);
    const struct wr_span *found = NULL;
    size_t i;

    for (i = 0; i < req->num_headers; i++) {
        if (span_equal_nocase(req->headers[i].name, name, name_len)) {
            if (found != NULL) {
                return NULL;
            }
            found = &req->headers[i].value;
        }
    }
    return found;
}

static int base64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/*
 * Returns true if key is the canonical base64 of 16 bytes: 22 alphabet
 * characters, "==", and zero in the 4 unused bits of the last character.
 */
static bool ws_key_valid(struct wr_span key)
{
    size_t i;

    if (key.len != WS_KEY_LEN || key.ptr[22] != '=' || key.ptr[23] != '=') {
        return false;
    }
    for (i = 0; i < 22; i++) {
        if (base64_value(key.ptr[i]) < 0) {
            return false;
        }
    }
    return (base64_value(key.ptr[21]) & 0x0f) == 0;
}

static bool upgrade_path_known(struct wr_span path)
{
    return span_equal(path, "/v1/responses") || span_equal(path, "/responses") ||
           span_equal(path, "/backend-api/codex/responses");
}

enum wr_http_verdict wr_http_check_upgrade(const struct wr_http_request *req)
{
    const struct wr_span *version;
    const struct wr_span *key;

    if (!span_equal(req->method, "GET")) {
        return WR_HTTP_BAD_METHOD;
    }
    if (!upgrade_path_known(req->path)) {
        return WR_HTTP_NOT_FOUND;
    }
    if (!any_header_has_token(req, "Upgrade", "websocket") ||
        !any_header_has_token(req, "Connection", "upgrade")) {
        return WR_HTTP_NOT_UPGRADE;
    }

    /* RFC 6455 section 11.3 allows the version and the key only once in a request. */
    version = single_header(req, "Sec-WebSocket-Version");
    if (version == NULL || !span_equal(*version, "13")) {
        return WR_HTTP_BAD_VERSION;
    }
    key = single_header(req, "Sec-WebSocket-Key");
    if (key == NULL || !ws_key_valid(*key)) {
        return WR_HTTP_BAD_KEY;
    }
    return WR_HTTP_UPGRADE_OK;
}

int wr_http_verdict_status(enum wr_http_verdict verdict)
{
    switch (verdict) {
    case WR_HTTP_UPGRADE_OK: return 0;
    case WR_HTTP_BAD_METHOD: return 405;
    case WR_HTTP_NOT_FOUND: return 404;
    case WR_HTTP_NOT_UPGRADE: return 426;
    case WR_HTTP_BAD_VERSION: return 426;
    case WR_HTTP_BAD_KEY: return 400;
    }
    assert(!"unknown verdict");
    return 400;
}

/* Writes the base64 of n bytes at in, with padding, and a NUL. */
static void base64_encode(const uint8_t *in, size_t n, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

void wr_ws_accept_key(const char *key, size_t key_len, char out[29])
{
    uint8_t digest[WC_SHA_DIGEST_SIZE];
    wc_Sha sha;
    int rc;

    rc = wc_InitSha(&sha);
    if (rc == 0) {
        rc = wc_ShaUpdate(&sha, (const uint8_t *)key, (word32)key_len);
    }
    if (rc == 0) {
        rc = wc_ShaUpdate(&sha, (const uint8_t *)WS_GUID, (word32)(sizeof(WS_GUID) - 1));
    }
    if (rc == 0) {
        rc = wc_ShaFinal(&sha, digest);
    }
    wc_ShaFree(&sha);

    /* An empty value matches no client's expected accept, so a hash failure fails the handshake. */
    if (rc != 0) {
        out[0] = '\0';
        return;
    }
    base64_encode(digest, sizeof(digest), out);
}

/* Output that counts every byte but stores only what fits, as snprintf does. */
struct text_writer {
    char *out;
    size_t cap;
    size_t len;
};

static void put_bytes(struct text_writer *w, const char *s, size_t n)
{
    if (w->len < w->cap) {
        size_t room = w->cap - w->len;

        memcpy(w->out + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

static void put_str(struct text_writer *w, const char *s)
{
    put_bytes(w, s, strlen(s));
}

/* Writes s as a JSON string, or null for NULL. */
static void put_json_string(struct text_writer *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;

    if (s == NULL) {
        put_str(w, "null");
        return;
    }
    put_bytes(w, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

        if (c != '"' && c != '\\' && c >= 0x20) {
            continue;
        }
        put_bytes(w, run, (size_t)(s - run));
        run = s + 1;
        if (c < 0x20) {
            put_bytes(w, esc, sizeof(esc));
        } else {
            put_bytes(w, "\\", 1);
            put_bytes(w, s, 1);
        }
    }
    put_bytes(w, run, (size_t)(s - run));
    put_bytes(w, "\"", 1);
}

static void put_error_body(struct text_writer *w, const char *message, const char *type,
                           const char *code)
{
    put_str(w, "{\"error\":{\"message\":");
    put_json_string(w, message);
    put_str(w, ",\"type\":");
    put_json_string(w, type);
    put_str(w, ",\"code\":");
    put_json_string(w, code);
    put_str(w, "}}");
}

size_t wr_http_format_error(char *out, size_t cap, int status, const char *extra_headers,
                            const char *message, const char *type, const char *code)
{
    struct text_writer w = { out, cap, 0 };
    struct text_writer sizer = { NULL, 0, 0 };
    char line[96];

    put_error_body(&sizer, message, type, code);

    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, wr_http_reason(status));
    put_str(&w, line);
    put_str(&w, "Content-Type: application/json\r\n");
    snprintf(line, sizeof(line), "Content-Length: %zu\r\n", sizer.len);
    put_str(&w, line);
    put_str(&w, "Connection: close\r\n");
    if (extra_headers != NULL) {
        put_str(&w, extra_headers);
    }
    put_str(&w, "\r\n");
    put_error_body(&w, message, type, code);

    if (cap > 0) {
        out[w.len < cap ? w.len : cap - 1] = '\0';
    }
    return w.len;
}

const char *wr_http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
