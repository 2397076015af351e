/* SPDX-License-Identifier: MIT */
/*
 * Incremental scanner that pulls a few fields out of one JSON event message.
 *
 * The scanner tracks the nesting of objects and arrays and follows only the
 * objects that lead to wanted fields: the top-level object, its "response"
 * object, "response"."usage" and the two usage detail objects. Keys in those
 * objects are decoded and looked up in a small table. Every other string is
 * skipped with memchr, which keeps multi-megabyte values cheap. Captured
 * strings and numbers are decoded byte by byte, because they are short.
 *
 * NOTE: Validation stops at structure, literals, numbers and escapes. Control
 * characters inside strings and invalid UTF-8 are not rejected.
 */
#include "proto/scan.h"

#include <string.h>

/* Parser states. Each comment lists the bytes that the state expects. */
enum scan_state {
    ST_VALUE,        /* whitespace, then the first byte of any value */
    ST_ARRAY_FIRST,  /* whitespace, then a value or the ']' of an empty array */
    ST_OBJECT_FIRST, /* whitespace, then the '"' of a key or the '}' of an empty object */
    ST_KEY,          /* whitespace, then the '"' of a key */
    ST_COLON,        /* whitespace, then ':' */
    ST_AFTER_VALUE,  /* whitespace, then ',' or the bracket that closes the container */
    ST_STRING,       /* bytes of a key or value string, up to its closing '"' */
    ST_NUMBER,       /* more bytes of a number, or the first byte after it */
    ST_LITERAL,      /* the remaining letters of true, false or null */
    ST_END,          /* whitespace after the top-level value */
};

/* Positions inside a number, as in the JSON number grammar. */
enum scan_number_pos {
    NUM_MINUS,      /* after '-': a digit */
    NUM_ZERO,       /* after a leading '0': '.', 'e', or the end */
    NUM_INT,        /* in the integer digits */
    NUM_DOT,        /* after '.': a digit */
    NUM_FRACTION,   /* in the fraction digits */
    NUM_EXP,        /* after 'e': a sign or a digit */
    NUM_EXP_SIGN,   /* after the exponent sign: a digit */
    NUM_EXP_DIGITS, /* in the exponent digits */
};

/* Kinds of open string: a key or a value, decoded or skipped. */
enum scan_target {
    TARGET_SKIP_VALUE,
    TARGET_SKIP_KEY,
    TARGET_KEY,   /* a key in an object on the path, decoded for the lookup */
    TARGET_VALUE, /* the value of a wanted string field, decoded into _text */
};

/* Objects on the path to wanted fields. Each kind is one bit of _entered. */
enum scan_kind {
    KIND_TOP,
    KIND_RESPONSE,
    KIND_USAGE,
    KIND_INPUT_DETAILS,
    KIND_OUTPUT_DETAILS,
};

/* Values of _key: KEY_FIELD + field for a field, KEY_ENTER + kind for an object to follow. */
enum {
    KEY_NONE = 0,
    KEY_FIELD = 1,
    KEY_ENTER = KEY_FIELD + WR_SCAN_FIELD_COUNT,
};

enum {
    FLAG_DECODE = 1 << 0,   /* string bytes are decoded into _text */
    FLAG_FULL = 1 << 1,     /* _text had no room for a byte, so the string was cut */
    FLAG_NEGATIVE = 1 << 2, /* the number has a minus sign */
    FLAG_NOT_INT = 1 << 3,  /* the number has a fraction or an exponent */
    FLAG_OVERFLOW = 1 << 4, /* the integer part is over INT64_MAX */
};

#define SCAN_KEY_MAX 32 /* longer than every key in the table, so longer keys never match */
#define SCAN_REPLACEMENT 0xFFFD

struct scan_key {
    const char *name;
    uint8_t len;
    uint8_t kind; /* the object the key belongs to */
    uint8_t key;  /* what its value fills */
};

#define SCAN_KEY(name, kind, key) { name, sizeof(name) - 1, kind, key }

static const struct scan_key scan_keys[] = {
    SCAN_KEY("type", KIND_TOP, KEY_FIELD + WR_SCAN_TYPE),
    SCAN_KEY("response", KIND_TOP, KEY_ENTER + KIND_RESPONSE),
    SCAN_KEY("id", KIND_RESPONSE, KEY_FIELD + WR_SCAN_RESPONSE_ID),
    SCAN_KEY("status", KIND_RESPONSE, KEY_FIELD + WR_SCAN_RESPONSE_STATUS),
    SCAN_KEY("model", KIND_RESPONSE, KEY_FIELD + WR_SCAN_RESPONSE_MODEL),
    SCAN_KEY("usage", KIND_RESPONSE, KEY_ENTER + KIND_USAGE),
    SCAN_KEY("input_tokens", KIND_USAGE, KEY_FIELD + WR_SCAN_INPUT_TOKENS),
    SCAN_KEY("prompt_tokens", KIND_USAGE, KEY_FIELD + WR_SCAN_INPUT_TOKENS),
    SCAN_KEY("output_tokens", KIND_USAGE, KEY_FIELD + WR_SCAN_OUTPUT_TOKENS),
    SCAN_KEY("completion_tokens", KIND_USAGE, KEY_FIELD + WR_SCAN_OUTPUT_TOKENS),
    SCAN_KEY("total_tokens", KIND_USAGE, KEY_FIELD + WR_SCAN_TOTAL_TOKENS),
    SCAN_KEY("input_tokens_details", KIND_USAGE, KEY_ENTER + KIND_INPUT_DETAILS),
    SCAN_KEY("prompt_tokens_details", KIND_USAGE, KEY_ENTER + KIND_INPUT_DETAILS),
    SCAN_KEY("output_tokens_details", KIND_USAGE, KEY_ENTER + KIND_OUTPUT_DETAILS),
    SCAN_KEY("completion_tokens_details", KIND_USAGE, KEY_ENTER + KIND_OUTPUT_DETAILS),
    SCAN_KEY("cached_tokens", KIND_INPUT_DETAILS, KEY_FIELD + WR_SCAN_CACHED_TOKENS),
    SCAN_KEY("reasoning_tokens", KIND_OUTPUT_DETAILS, KEY_FIELD + WR_SCAN_REASONING_TOKENS),
};

static const char scan_literals[3][6] = { "true", "false", "null" };

static const char *const scan_terminal_types[] = {
    "response.completed", "response.done",     "response.failed", "response.incomplete",
    "response.cancelled", "response.canceled", "error",
};

static const uint8_t *skip_space(const uint8_t *p, const uint8_t *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }
    return p;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

static bool is_string_field(int field)
{
    return field <= WR_SCAN_RESPONSE_MODEL;
}

/* Returns the field that the current value fills if that field is still wanted, or -1. */
static int wanted_field(const struct wr_scan *s)
{
    int field;

    if (s->_key < KEY_FIELD || s->_key >= KEY_ENTER) {
        return -1;
    }
    field = s->_key - KEY_FIELD;
    if ((s->want & WR_SCAN_BIT(field)) == 0) {
        return -1;
    }
    return field;
}

static void mark_found(struct wr_scan *s, int field)
{
    s->found |= WR_SCAN_BIT(field);
    s->want &= ~WR_SCAN_BIT(field);
    if (field == WR_SCAN_TYPE && s->on_type != NULL) {
        s->on_type(s);
    }
}

static void mark_malformed(struct wr_scan *s, int field)
{
    s->malformed |= WR_SCAN_BIT(field);
    s->want &= ~WR_SCAN_BIT(field);
}

static char *field_text(struct wr_scan *s, int field)
{
    switch (field) {
    case WR_SCAN_TYPE:
        return s->type;
    case WR_SCAN_RESPONSE_ID:
        return s->response_id;
    case WR_SCAN_RESPONSE_STATUS:
        return s->status;
    default:
        assert(field == WR_SCAN_RESPONSE_MODEL);
        return s->model;
    }
}

/* Returns the state that follows a complete value. */
static int value_done(struct wr_scan *s)
{
    s->_key = KEY_NONE;
    return s->_depth == 0 ? ST_END : ST_AFTER_VALUE;
}

/* Appends bytes to _text, or marks the string as cut when they do not all fit. */
static void text_put(struct wr_scan *s, const uint8_t *bytes, size_t n)
{
    size_t limit = s->_target == TARGET_KEY ? SCAN_KEY_MAX : WR_SCAN_MAX_STRING;

    if ((s->_flags & FLAG_FULL) != 0 || s->_len + n > limit) {
        s->_flags |= FLAG_FULL;
        return;
    }
    memcpy(s->_text + s->_len, bytes, n);
    s->_len += (uint16_t)n;
}

static void put_code_point(struct wr_scan *s, uint32_t cp)
{
    uint8_t utf8[4];
    size_t n;

    if (cp < 0x80) {
        utf8[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        utf8[0] = (uint8_t)(0xC0 | cp >> 6);
        utf8[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        utf8[0] = (uint8_t)(0xE0 | cp >> 12);
        utf8[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        utf8[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        utf8[0] = (uint8_t)(0xF0 | cp >> 18);
        utf8[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
        utf8[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        utf8[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    text_put(s, utf8, n);
}

/* Writes U+FFFD for a high surrogate that no low surrogate followed. */
static void flush_high(struct wr_scan *s)
{
    if (s->_high != 0) {
        s->_high = 0;
        put_code_point(s, SCAN_REPLACEMENT);
    }
}

/*
 * Decodes the code unit of one \uXXXX escape. A surrogate pair becomes one
 * code point. A lone surrogate and U+0000 become U+FFFD, because the results
 * are C strings and must stay valid UTF-8.
 */
static void put_code_unit(struct wr_scan *s, uint32_t unit)
{
    uint32_t cp;

    if (s->_high != 0 && unit >= 0xDC00 && unit <= 0xDFFF) {
        cp = 0x10000 + ((uint32_t)(s->_high - 0xD800) << 10) + (unit - 0xDC00);
        s->_high = 0;
        put_code_point(s, cp);
        return;
    }
    flush_high(s);
    if (unit >= 0xD800 && unit <= 0xDBFF) {
        s->_high = (uint16_t)unit;
        return;
    }
    if (unit == 0 || (unit >= 0xDC00 && unit <= 0xDFFF)) {
        unit = SCAN_REPLACEMENT;
    }
    put_code_point(s, unit);
}

/* Consumes one byte of an escape sequence, and decodes it when the string is captured. */
static int escape_byte(struct wr_scan *s, uint8_t c)
{
    uint8_t byte;
    int digit;

    if (s->_escape >= 2) {
        digit = hex_value(c);
        if (digit < 0) {
            return WR_ESCAN_SYNTAX;
        }
        s->_code = (uint16_t)(s->_code << 4 | (unsigned)digit);
        s->_escape = s->_escape == 5 ? 0 : s->_escape + 1;
        if (s->_escape == 0 && (s->_flags & FLAG_DECODE) != 0) {
            put_code_unit(s, s->_code);
        }
        return 0;
    }

    switch (c) {
    case '"':
    case '\\':
    case '/':
        byte = c;
        break;
    case 'b':
        byte = '\b';
        break;
    case 'f':
        byte = '\f';
        break;
    case 'n':
        byte = '\n';
        break;
    case 'r':
        byte = '\r';
        break;
    case 't':
        byte = '\t';
        break;
    case 'u':
        s->_escape = 2;
        s->_code = 0;
        return 0;
    default:
        return WR_ESCAN_SYNTAX;
    }
    s->_escape = 0;
    if ((s->_flags & FLAG_DECODE) != 0) {
        flush_high(s);
        text_put(s, &byte, 1);
    }
    return 0;
}

/*
 * Decodes string bytes into _text until the closing quote (returns 1), the
 * end of the chunk (returns 0), or _text filling up, which clears
 * FLAG_DECODE and returns 0 with bytes left for skip_string.
 */
static int decode_string(struct wr_scan *s, const uint8_t **pos, const uint8_t *end)
{
    const uint8_t *p = *pos;
    uint8_t c;
    int rc = 0;

    while (p < end && (s->_flags & FLAG_FULL) == 0) {
        if (s->_escape == 0) {
            /* Copy the run of plain bytes up to the next quote or backslash at once. */
            const uint8_t *run = p;
            size_t limit = s->_target == TARGET_KEY ? SCAN_KEY_MAX : WR_SCAN_MAX_STRING;
            size_t n, room;

            while (p < end && *p != '"' && *p != '\\') {
                p++;
            }
            n = (size_t)(p - run);
            if (n > 0) {
                flush_high(s);
                room = limit - s->_len;
                text_put(s, run, n < room ? n : room);
                if (n > room) {
                    s->_flags |= FLAG_FULL;
                    break;
                }
            }
            if (p == end) {
                break;
            }
        }
        c = *p++;
        if (s->_escape != 0) {
            rc = escape_byte(s, c);
            if (rc < 0) {
                break;
            }
            continue;
        }
        if (c == '"') {
            flush_high(s);
            rc = 1;
            break;
        }
        if (c == '\\') {
            s->_escape = 1;
            continue;
        }
        flush_high(s);
        text_put(s, &c, 1);
    }
    if ((s->_flags & FLAG_FULL) != 0) {
        s->_flags &= (uint8_t)~FLAG_DECODE;
    }
    *pos = p;
    return rc;
}

/* Finishes an escape sequence that may have started in an earlier chunk. */
static int finish_escape(struct wr_scan *s, const uint8_t **pos, const uint8_t *end)
{
    const uint8_t *p = *pos;
    int rc = 0;

    while (s->_escape != 0 && p < end && rc == 0) {
        rc = escape_byte(s, *p++);
    }
    *pos = p;
    return rc;
}

/*
 * Skips string bytes up to and including the closing quote (returns 1), or
 * to the end of the chunk (returns 0). The next quote is searched once and
 * searched again only after an escape has consumed it, so the work stays
 * linear however many escapes the string holds.
 */
static int skip_string(struct wr_scan *s, const uint8_t **pos, const uint8_t *end)
{
    const uint8_t *p = *pos;
    const uint8_t *quote;
    const uint8_t *backslash;
    int rc;

    rc = finish_escape(s, &p, end);
    if (rc < 0 || p == end) {
        *pos = p;
        return rc;
    }
    quote = memchr(p, '"', (size_t)(end - p));
    if (quote == NULL) {
        quote = end;
    }

    for (;;) {
        backslash = memchr(p, '\\', (size_t)(quote - p));
        if (backslash == NULL) {
            break;
        }
        p = backslash + 1;
        s->_escape = 1;
        rc = finish_escape(s, &p, end);
        if (rc < 0 || p == end) {
            *pos = p;
            return rc;
        }
        if (p > quote) {
            quote = memchr(p, '"', (size_t)(end - p));
            if (quote == NULL) {
                quote = end;
            }
        }
    }

    if (quote == end) {
        *pos = end;
        return 0;
    }
    *pos = quote + 1;
    return 1;
}

static void string_begin(struct wr_scan *s, uint8_t target)
{
    s->_target = target;
    s->_flags = target >= TARGET_KEY ? FLAG_DECODE : 0;
    s->_len = 0;
    s->_escape = 0;
    s->_high = 0;
}

/* Returns the length of text without a multi-byte character that the cut left incomplete. */
static size_t utf8_cut(const char *text, size_t len)
{
    size_t lead = len;
    size_t need;
    uint8_t c;

    while (lead > 0 && len - lead < 4 && ((uint8_t)text[lead - 1] & 0xC0) == 0x80) {
        lead--;
    }
    if (lead == 0) {
        return len;
    }
    lead--;
    c = (uint8_t)text[lead];
    if (c >= 0xF0) {
        need = 4;
    } else if (c >= 0xE0) {
        need = 3;
    } else if (c >= 0xC0) {
        need = 2;
    } else {
        need = 1;
    }
    return len - lead < need ? lead : len;
}

static int key_lookup(const struct wr_scan *s)
{
    uint8_t kind = s->_path[s->_depth - 1];
    size_t i;

    for (i = 0; i < sizeof(scan_keys) / sizeof(scan_keys[0]); i++) {
        if (scan_keys[i].kind == kind && scan_keys[i].len == s->_len &&
            memcmp(scan_keys[i].name, s->_text, s->_len) == 0) {
            return scan_keys[i].key;
        }
    }
    return KEY_NONE;
}

/* Handles the closing quote of a string and returns the next state. */
static int string_end(struct wr_scan *s)
{
    int field;
    size_t len;
    char *dst;

    switch (s->_target) {
    case TARGET_KEY:
        s->_key = (s->_flags & FLAG_FULL) != 0 ? KEY_NONE : (uint8_t)key_lookup(s);
        return ST_COLON;
    case TARGET_SKIP_KEY:
        s->_key = KEY_NONE;
        return ST_COLON;
    case TARGET_VALUE:
        field = wanted_field(s);
        if (field < 0) {
            break;
        }
        len = s->_len;
        if ((s->_flags & FLAG_FULL) != 0) {
            len = utf8_cut(s->_text, len);
        }
        dst = field_text(s, field);
        memcpy(dst, s->_text, len);
        dst[len] = '\0';
        mark_found(s, field);
        break;
    default:
        break;
    }
    return value_done(s);
}

/* Returns 1 when the string closed, 0 when the chunk ran out, or WR_ESCAN_SYNTAX. */
static int scan_string(struct wr_scan *s, const uint8_t **pos, const uint8_t *end)
{
    int rc;

    if ((s->_flags & FLAG_DECODE) != 0) {
        rc = decode_string(s, pos, end);
        if (rc != 0 || *pos == end) {
            return rc;
        }
    }
    return skip_string(s, pos, end);
}

static bool number_can_end(uint8_t sub)
{
    return sub == NUM_ZERO || sub == NUM_INT || sub == NUM_FRACTION || sub == NUM_EXP_DIGITS;
}

/* Stores a complete number in its token field and returns the next state. */
static int number_end(struct wr_scan *s)
{
    int field = wanted_field(s);

    if (field >= 0 && !is_string_field(field)) {
        if ((s->_flags & (FLAG_NEGATIVE | FLAG_NOT_INT | FLAG_OVERFLOW)) != 0) {
            mark_malformed(s, field);
        } else {
            s->tokens[field - WR_SCAN_INPUT_TOKENS] = s->_number;
            mark_found(s, field);
        }
    }
    return value_done(s);
}

static const uint8_t *scan_digits(const uint8_t *p, const uint8_t *end)
{
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
    }
    return p;
}

/*
 * Reads number bytes. Returns 1 with *pos at the first byte after the
 * number, 0 when the chunk ran out, or WR_ESCAN_SYNTAX. Token values above
 * INT64_MAX count as malformed, so that a stored token count always fits a
 * signed 64-bit integer.
 */
static int scan_number(struct wr_scan *s, const uint8_t **pos, const uint8_t *end)
{
    const uint8_t *p = *pos;
    unsigned digit;
    uint8_t c;

    while (p < end) {
        c = *p;
        switch (s->_sub) {
        case NUM_MINUS:
            if (c < '0' || c > '9') {
                return WR_ESCAN_SYNTAX;
            }
            s->_sub = c == '0' ? NUM_ZERO : NUM_INT;
            s->_number = c - '0';
            p++;
            break;
        case NUM_INT:
            while (p < end && *p >= '0' && *p <= '9') {
                digit = *p - '0';
                if (s->_number > ((uint64_t)INT64_MAX - digit) / 10) {
                    s->_flags |= FLAG_OVERFLOW;
                } else {
                    s->_number = s->_number * 10 + digit;
                }
                p++;
            }
            if (p == end) {
                break;
            }
            c = *p;
            /* fall through */
        case NUM_ZERO:
            if (c == '.') {
                s->_sub = NUM_DOT;
            } else if (c == 'e' || c == 'E') {
                s->_sub = NUM_EXP;
            } else {
                *pos = p;
                return 1;
            }
            s->_flags |= FLAG_NOT_INT;
            p++;
            break;
        case NUM_DOT:
            if (c < '0' || c > '9') {
                return WR_ESCAN_SYNTAX;
            }
            s->_sub = NUM_FRACTION;
            p++;
            break;
        case NUM_FRACTION:
            p = scan_digits(p, end);
            if (p == end) {
                break;
            }
            if (*p == 'e' || *p == 'E') {
                s->_sub = NUM_EXP;
                p++;
                break;
            }
            *pos = p;
            return 1;
        case NUM_EXP:
            if (c == '+' || c == '-') {
                s->_sub = NUM_EXP_SIGN;
                p++;
                break;
            }
            /* fall through */
        case NUM_EXP_SIGN:
            if (c < '0' || c > '9') {
                return WR_ESCAN_SYNTAX;
            }
            s->_sub = NUM_EXP_DIGITS;
            p++;
            break;
        case NUM_EXP_DIGITS:
            p = scan_digits(p, end);
            if (p == end) {
                break;
            }
            *pos = p;
            return 1;
        default:
            assert(0 && "invalid number position");
            return WR_ESCAN_SYNTAX;
        }
    }
    *pos = p;
    return 0;
}

/* Reads letters of a literal. Returns 1 once it is complete, 0 when the chunk ran out. */
static int scan_literal(struct wr_scan *s, const uint8_t **pos, const uint8_t *end)
{
    const uint8_t *p = *pos;
    const char *literal = scan_literals[s->_sub >> 3];
    unsigned i = s->_sub & 7;
    int rc = 0;

    while (p < end) {
        if (*p != (uint8_t)literal[i]) {
            return WR_ESCAN_SYNTAX;
        }
        p++;
        i++;
        if (literal[i] == '\0') {
            rc = 1;
            break;
        }
    }
    s->_sub = (uint8_t)((s->_sub & ~7u) | i);
    *pos = p;
    return rc;
}

static int container_open(struct wr_scan *s, uint8_t c)
{
    uint64_t bit;
    unsigned depth;
    unsigned kind;

    if (s->_depth >= WR_SCAN_MAX_DEPTH) {
        return WR_ESCAN_SYNTAX;
    }
    depth = ++s->_depth;
    bit = (uint64_t)1 << (depth - 1);
    if (c == '[') {
        s->_nest_bits |= bit;
        s->_key = KEY_NONE;
        return ST_ARRAY_FIRST;
    }
    s->_nest_bits &= ~bit;

    if (s->_on_path == depth - 1 && depth <= sizeof(s->_path)) {
        kind = depth == 1 ? KIND_TOP : (unsigned)s->_key - KEY_ENTER;
        if ((depth == 1 || s->_key >= KEY_ENTER) && (s->_entered & (1u << kind)) == 0) {
            s->_entered |= (uint8_t)(1u << kind);
            s->_path[depth - 1] = (uint8_t)kind;
            s->_on_path = (uint8_t)depth;
        }
    }
    s->_key = KEY_NONE;
    return ST_OBJECT_FIRST;
}

static int container_close(struct wr_scan *s, uint8_t c)
{
    bool is_array = ((s->_nest_bits >> (s->_depth - 1)) & 1) != 0;

    if ((c == ']') != is_array) {
        return WR_ESCAN_SYNTAX;
    }
    if (s->_on_path == s->_depth) {
        s->_on_path--;
    }
    s->_depth--;
    return value_done(s);
}

/*
 * Marks the token fields under an object that arrived as another JSON type
 * ("usage": "n/a"), so a caller can tell bad usage from missing usage.
 */
static void container_malformed(struct wr_scan *s)
{
    unsigned fields = 0;

    switch (s->_key - KEY_ENTER) {
    case KIND_USAGE:
        fields = WR_SCAN_BIT(WR_SCAN_INPUT_TOKENS) | WR_SCAN_BIT(WR_SCAN_CACHED_TOKENS) |
                 WR_SCAN_BIT(WR_SCAN_OUTPUT_TOKENS) | WR_SCAN_BIT(WR_SCAN_REASONING_TOKENS) |
                 WR_SCAN_BIT(WR_SCAN_TOTAL_TOKENS);
        break;
    case KIND_INPUT_DETAILS:
        fields = WR_SCAN_BIT(WR_SCAN_CACHED_TOKENS);
        break;
    case KIND_OUTPUT_DETAILS:
        fields = WR_SCAN_BIT(WR_SCAN_REASONING_TOKENS);
        break;
    default:
        return;
    }
    for (int field = 0; field < WR_SCAN_FIELD_COUNT; field++) {
        if ((fields & WR_SCAN_BIT(field)) && (s->want & WR_SCAN_BIT(field))) {
            mark_malformed(s, field);
        }
    }
}

/* Starts the value whose first byte is c and returns the next state. */
static int value_start(struct wr_scan *s, uint8_t c)
{
    int field = wanted_field(s);
    unsigned literal;

    /* In-progress responses carry "usage": null, so only other types count. */
    if (s->_key >= KEY_ENTER && c != '{' && c != 'n') {
        container_malformed(s);
    }

    switch (c) {
    case '"':
        if (field >= 0 && is_string_field(field)) {
            string_begin(s, TARGET_VALUE);
            return ST_STRING;
        }
        if (field >= 0) {
            mark_malformed(s, field);
        }
        string_begin(s, TARGET_SKIP_VALUE);
        return ST_STRING;
    case '{':
    case '[':
        if (field >= 0) {
            mark_malformed(s, field);
        }
        return container_open(s, c);
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        if (field >= 0 && is_string_field(field)) {
            mark_malformed(s, field);
        }
        s->_flags = 0;
        s->_number = 0;
        if (c == '-') {
            s->_flags = FLAG_NEGATIVE;
            s->_sub = NUM_MINUS;
        } else if (c == '0') {
            s->_sub = NUM_ZERO;
        } else {
            s->_sub = NUM_INT;
            s->_number = (uint64_t)(c - '0');
        }
        return ST_NUMBER;
    case 't':
    case 'f':
    case 'n':
        if (field >= 0) {
            mark_malformed(s, field);
        }
        /* _sub is the literal's index in scan_literals times 8, plus the letters read. */
        if (c == 't') {
            literal = 0;
        } else if (c == 'f') {
            literal = 1;
        } else {
            literal = 2;
        }
        s->_sub = (uint8_t)(literal << 3 | 1);
        return ST_LITERAL;
    default:
        return WR_ESCAN_SYNTAX;
    }
}

void wr_scan_init(struct wr_scan *s, unsigned want)
{
    memset(s, 0, sizeof(*s));
    s->want = want & WR_SCAN_ALL;
    s->_state = ST_VALUE;
}

/*
 * Runs the state machine over one chunk. Each state consumes what it can and
 * leaves the rest of the chunk to the next state. The state is saved on exit.
 */
static int scan_chunk(struct wr_scan *s, const uint8_t *p, const uint8_t *end)
{
    int state = s->_state;
    int rc = 0;

    while (p < end && rc >= 0 && s->want != 0) {
        switch (state) {
        case ST_VALUE:
        case ST_ARRAY_FIRST:
            p = skip_space(p, end);
            if (p == end) {
                break;
            }
            if (state == ST_ARRAY_FIRST && *p == ']') {
                rc = state = container_close(s, *p++);
                break;
            }
            rc = state = value_start(s, *p++);
            break;
        case ST_OBJECT_FIRST:
        case ST_KEY:
            p = skip_space(p, end);
            if (p == end) {
                break;
            }
            if (state == ST_OBJECT_FIRST && *p == '}') {
                rc = state = container_close(s, *p++);
                break;
            }
            if (*p++ != '"') {
                rc = WR_ESCAN_SYNTAX;
                break;
            }
            string_begin(s, s->_on_path == s->_depth ? TARGET_KEY : TARGET_SKIP_KEY);
            state = ST_STRING;
            break;
        case ST_COLON:
            p = skip_space(p, end);
            if (p == end) {
                break;
            }
            rc = *p++ == ':' ? 0 : WR_ESCAN_SYNTAX;
            state = ST_VALUE;
            break;
        case ST_AFTER_VALUE:
            p = skip_space(p, end);
            if (p == end) {
                break;
            }
            if (*p == ',') {
                p++;
                state = ((s->_nest_bits >> (s->_depth - 1)) & 1) != 0 ? ST_VALUE : ST_KEY;
            } else if (*p == '}' || *p == ']') {
                rc = state = container_close(s, *p++);
            } else {
                rc = WR_ESCAN_SYNTAX;
            }
            break;
        case ST_STRING:
            rc = scan_string(s, &p, end);
            if (rc == 1) {
                rc = state = string_end(s);
            }
            break;
        case ST_NUMBER:
            rc = scan_number(s, &p, end);
            if (rc == 1) {
                rc = state = number_end(s);
            }
            break;
        case ST_LITERAL:
            rc = scan_literal(s, &p, end);
            if (rc == 1) {
                rc = state = value_done(s);
            }
            break;
        case ST_END:
            p = skip_space(p, end);
            if (p != end) {
                rc = WR_ESCAN_SYNTAX;
            }
            break;
        default:
            assert(0 && "invalid scanner state");
            rc = WR_ESCAN_SYNTAX;
            break;
        }
    }

    if (rc < 0) {
        s->error = WR_ESCAN_SYNTAX;
        return s->error;
    }
    s->_state = (uint8_t)state;
    return 0;
}

int wr_scan_feed(struct wr_scan *s, const uint8_t *buf, size_t len)
{
    if (s->error != 0) {
        return s->error;
    }
    if (s->want == 0 || len == 0) {
        return 0;
    }
    return scan_chunk(s, buf, buf + len);
}

/*
 * A scanner that stopped early, because every wanted field was settled,
 * never saw the rest of the message, so finishing it reports no error.
 */
int wr_scan_finish(struct wr_scan *s)
{
    if (s->error != 0 || s->want == 0) {
        return s->error;
    }
    if (s->_state == ST_NUMBER && number_can_end(s->_sub)) {
        s->_state = (uint8_t)number_end(s);
    }
    if (s->_state != ST_END) {
        s->error = WR_ESCAN_SYNTAX;
    }
    return s->error;
}

bool wr_scan_is_terminal(const char *type)
{
    size_t i;

    if (type == NULL) {
        return false;
    }
    for (i = 0; i < sizeof(scan_terminal_types) / sizeof(scan_terminal_types[0]); i++) {
        if (strcmp(type, scan_terminal_types[i]) == 0) {
            return true;
        }
    }
    return false;
}
