/* SPDX-License-Identifier: MIT */
/* The "mock:key=value,..." model grammar and the scanner that finds a message's type and model. */
#include "bench/mock_upstream.h"

#include <string.h>

/* ---- Number and text helpers ---- */

/* Parses a decimal number of len bytes into *out. Fails on other bytes or a value above max. */
bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t value = 0;
    size_t i;

    if (len == 0 || len > 20) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        if (value > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10) {
            return false;
        }
        value = value * 10 + (uint64_t)(s[i] - '0');
    }
    if (value > max) {
        return false;
    }
    *out = value;
    return true;
}

bool text_equal(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* Decodes %XX escapes into out, stopping after cap bytes. Returns false on a broken escape. */
static bool percent_decode(const char *s, size_t len, char *out, size_t cap, size_t *out_len)
{
    size_t n = 0;
    size_t i;

    for (i = 0; i < len && n < cap; i++) {
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (i + 2 >= len || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) {
            return false;
        }
        out[n++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
        i += 2;
    }
    *out_len = n;
    return true;
}

/* Copies an error code made of letters, digits, '_', '.' and '-'. */
static bool set_error_code(struct turn_params *p, const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len >= sizeof(p->error_code)) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';

        if (!ok) {
            return false;
        }
    }
    memcpy(p->error_code, s, len);
    p->error_code[len] = '\0';
    return true;
}

const char *const scenario_names[] = { "normal", "error", "reset", "close" };

static bool parse_scenario(const char *s, size_t len, enum scenario *out)
{
    size_t i;

    for (i = 0; i < sizeof(scenario_names) / sizeof(scenario_names[0]); i++) {
        if (text_equal(s, len, scenario_names[i])) {
            *out = (enum scenario)i;
            return true;
        }
    }
    return false;
}

static bool is_flag_on(const char *s, size_t len)
{
    return len == 0 || text_equal(s, len, "1") || text_equal(s, len, "true");
}

/*
 * Applies one key=value of the model grammar (an empty value for a bare key)
 * to p. Returns false for an unknown key or an invalid value.
 */
bool apply_model_key(struct turn_params *p, const char *key, size_t key_len,
                     const char *value, size_t value_len)
{
    uint64_t number;

    if (text_equal(key, key_len, "deltas")) {
        return parse_u64(value, value_len, MOCK_MAX_DELTAS, &p->deltas);
    }
    if (text_equal(key, key_len, "bytes")) {
        return parse_u64(value, value_len, MOCK_MAX_DELTA_BYTES, &p->delta_bytes);
    }
    if (text_equal(key, key_len, "silence_ms")) {
        return parse_u64(value, value_len, MOCK_MAX_SILENCE_MS, &p->silence_ms);
    }
    if (text_equal(key, key_len, "silence_at")) {
        if (!text_equal(value, value_len, "start") && !text_equal(value, value_len, "mid")) {
            return false;
        }
        p->silence_at_start = text_equal(value, value_len, "start");
        return true;
    }
    if (text_equal(key, key_len, "large")) {
        return parse_u64(value, value_len, MOCK_MAX_LARGE_BYTES, &p->large_bytes);
    }
    if (text_equal(key, key_len, "error")) {
        if (!is_flag_on(value, value_len) && !set_error_code(p, value, value_len)) {
            return false;
        }
        p->scenario = SCENARIO_ERROR;
        return true;
    }
    if (text_equal(key, key_len, "reset")) {
        if (!is_flag_on(value, value_len)) {
            return false;
        }
        p->scenario = SCENARIO_RESET;
        return true;
    }
    if (text_equal(key, key_len, "close")) {
        if (!parse_u64(value, value_len, 65535, &number)) {
            return false;
        }
        p->scenario = SCENARIO_CLOSE;
        p->close_code = (unsigned)number;
        return true;
    }
    if (text_equal(key, key_len, "reason")) {
        char reason[WR_WS_MAX_CLOSE_REASON];
        size_t reason_len;

        if (!percent_decode(value, value_len, reason, sizeof(reason), &reason_len)) {
            return false;
        }
        memcpy(p->close_reason, reason, reason_len);
        p->close_reason_len = reason_len;
        return true;
    }
    if (text_equal(key, key_len, "usage")) {
        if (!text_equal(value, value_len, "alias") && !text_equal(value, value_len, "standard")) {
            return false;
        }
        p->usage_alias = text_equal(value, value_len, "alias");
        return true;
    }
    if (text_equal(key, key_len, "scenario")) {
        return parse_scenario(value, value_len, &p->scenario);
    }
    return false;
}

/*
 * Applies a "mock:key=value,..." model to p. Returns the first key that was
 * unknown or had an invalid value (its length in *bad_len), or NULL.
 */
const char *apply_model(struct turn_params *p, const char *model, size_t len,
                        size_t *bad_len)
{
    const char *s = model + 5;
    const char *end = model + len;
    const char *bad = NULL;

    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *eq;
        const char *value;
        size_t key_len;

        if (comma == NULL) {
            comma = end;
        }
        eq = memchr(s, '=', (size_t)(comma - s));
        key_len = (size_t)((eq != NULL ? eq : comma) - s);
        value = eq != NULL ? eq + 1 : comma;
        if (key_len > 0 && !apply_model_key(p, s, key_len, value, (size_t)(comma - value)) &&
            bad == NULL) {
            bad = s;
            *bad_len = (size_t)(comma - s);
        }
        s = comma + 1;
    }
    return bad;
}

/* ---- Request scanner ---- */

static void capture_init(struct capture *c, char *buf, size_t cap)
{
    c->buf = buf;
    c->cap = cap;
    c->len = 0;
    c->cut = false;
    c->found = false;
}

void scan_init(struct request_scan *s)
{
    s->fed = 0;
    s->depth = 0;
    s->in_string = false;
    s->escape = false;
    s->expect_key = false;
    s->key = SCAN_KEY_NONE;
    s->generate = -1;
    s->open = NULL;
    capture_init(&s->key_text, s->key_buf, sizeof(s->key_buf));
    capture_init(&s->type, s->type_buf, sizeof(s->type_buf));
    capture_init(&s->model, s->model_buf, sizeof(s->model_buf));
}

static enum scan_key scan_match_key(const struct capture *c)
{
    if (c->cut) {
        return SCAN_KEY_OTHER;
    }
    if (text_equal(c->buf, c->len, "type")) {
        return SCAN_KEY_TYPE;
    }
    if (text_equal(c->buf, c->len, "model")) {
        return SCAN_KEY_MODEL;
    }
    if (text_equal(c->buf, c->len, "generate")) {
        return SCAN_KEY_GENERATE;
    }
    return SCAN_KEY_OTHER;
}

static void scan_open_string(struct request_scan *s)
{
    s->in_string = true;
    s->open = NULL;
    if (s->depth != 1) {
        return;
    }
    if (s->expect_key) {
        s->open = &s->key_text;
        s->key_text.len = 0;
        s->key_text.cut = false;
    } else if (s->key == SCAN_KEY_TYPE && !s->type.found) {
        s->open = &s->type;
    } else if (s->key == SCAN_KEY_MODEL && !s->model.found) {
        s->open = &s->model;
    }
}

static void scan_close_string(struct request_scan *s)
{
    s->in_string = false;
    if (s->open == &s->key_text) {
        s->key = scan_match_key(&s->key_text);
    } else if (s->open != NULL) {
        s->open->found = true;
        s->key = SCAN_KEY_NONE;
    } else if (s->depth == 1 && !s->expect_key) {
        s->key = SCAN_KEY_NONE;
    }
    s->open = NULL;
}

/* Consumes string bytes from p[i..n) up to and including the closing quote. */
static size_t scan_string(struct request_scan *s, const uint8_t *p, size_t i, size_t n)
{
    struct capture *c = s->open;

    for (; i < n; i++) {
        uint8_t ch = p[i];

        if (s->escape) {
            s->escape = false;
        } else if (ch == '\\') {
            s->escape = true;
        } else if (ch == '"') {
            scan_close_string(s);
            return i + 1;
        }
        if (c != NULL) {
            if (c->len < c->cap) {
                c->buf[c->len++] = (char)ch;
            } else {
                c->cut = true;
            }
        }
    }
    return i;
}

/* Feeds message bytes. The caller passes no bytes past MOCK_SCAN_BYTES. */
void scan_feed(struct request_scan *s, const uint8_t *p, size_t n)
{
    size_t i = 0;

    s->fed += n;
    while (i < n) {
        uint8_t ch;

        if (s->in_string) {
            i = scan_string(s, p, i, n);
            continue;
        }
        ch = p[i++];
        switch (ch) {
        case '"':
            scan_open_string(s);
            break;
        case '{':
        case '[':
            s->depth++;
            if (s->depth == 1) {
                s->expect_key = ch == '{';
            }
            break;
        case '}':
        case ']':
            if (s->depth > 0) {
                s->depth--;
            }
            break;
        case ':':
            if (s->depth == 1) {
                s->expect_key = false;
            }
            break;
        case ',':
            if (s->depth == 1) {
                s->expect_key = true;
                s->key = SCAN_KEY_NONE;
            }
            break;
        case 't':
        case 'f':
            if (s->depth == 1 && !s->expect_key && s->key == SCAN_KEY_GENERATE &&
                s->generate < 0) {
                s->generate = ch == 't';
                s->key = SCAN_KEY_NONE;
            }
            break;
        default:
            break;
        }
    }
}

bool scan_is_response_create(const struct request_scan *s)
{
    return s->type.found && !s->type.cut && text_equal(s->type.buf, s->type.len, "response.create");
}

/* True if a captured model can be echoed inside JSON quotes as it is. */
bool model_is_json_safe(const struct capture *c)
{
    size_t i;

    if (!c->found || c->cut || c->len == 0 || c->len > MOCK_ECHO_MODEL_BYTES) {
        return false;
    }
    for (i = 0; i < c->len; i++) {
        unsigned char ch = (unsigned char)c->buf[i];

        if (ch < 0x20 || ch == '"' || ch == '\\' || ch == 0x7f) {
            return false;
        }
    }
    return true;
}
