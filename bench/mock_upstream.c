/* SPDX-License-Identifier: MIT */
/* A fast mock of the OpenAI Responses WebSocket endpoint, for tests and benchmarks. */

/*
 * Each worker thread runs its own epoll loop over its own SO_REUSEPORT
 * listener, so a connection never moves between threads. A connection reads
 * the upgrade request, then WebSocket frames. Every response.create message
 * queues a turn, whose events are formatted into a per-connection arena and
 * sent with sendmsg, many frames per call. Long strings (the reply text, the
 * large "result") are never copied: their iovecs point into static buffers
 * that repeat a pattern. Pauses inside a turn use a timerfd, never a sleep.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/wr.h"
#include "proto/http.h"
#include "proto/ws_frame.h"

#define MOCK_DEFAULT_LISTEN "127.0.0.1:18080"
#define MOCK_MAX_THREADS 256
#define MOCK_IN_BYTES WR_HTTP_MAX_HEAD_BYTES /* also fits any control frame (139 bytes) */
#define MOCK_ARENA_BYTES 16384
#define MOCK_SEGMENTS 64
#define MOCK_IOVECS 64
#define MOCK_EVENT_ROOM 2048     /* arena bytes one event needs, long strings aside */
#define MOCK_EVENT_SEGMENTS 4    /* queue segments one event needs */
#define MOCK_FRAME_SLOT 10       /* longest unmasked frame header */
#define MOCK_COPY_MAX 256        /* pattern runs up to this length are copied into the arena */
#define MOCK_PATTERN_SPAN 65536  /* maximum pattern run in one iovec */
#define MOCK_MAX_TURNS 8         /* response.create messages queued on one connection */
#define MOCK_SCAN_BYTES 65536    /* prefix of each client message searched for fields */
#define MOCK_MODEL_BYTES 1024    /* maximum model value parsed */
#define MOCK_ECHO_MODEL_BYTES 256 /* maximum model copied into responses */
#define MOCK_ERROR_CODE_BYTES 64
#define MOCK_PUMP_BUDGET (4u << 20) /* bytes sent for one connection before others get a turn */
#define MOCK_READS_PER_WAKEUP 4
#define MOCK_ACCEPTS_PER_WAKEUP 64
#define MOCK_ACCEPT_PAUSE_MS 100
#define MOCK_CLOSE_WAIT_MS 5000  /* wait for the client's Close after sending ours */
#define MOCK_LINGER_MS 2000      /* drain unread request bytes after an HTTP error reply */
#define MOCK_MAX_DELTAS 10000000ull
#define MOCK_MAX_DELTA_BYTES (16ull << 20)
#define MOCK_MAX_LARGE_BYTES (4ull << 30)
#define MOCK_MAX_SILENCE_MS 86400000ull

#define MOCK_TEXT_UNIT "Hello from mock_upstream. "
#define MOCK_RESULT_UNIT "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

enum log_level {
    LOG_ERROR,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
};

enum scenario {
    SCENARIO_NORMAL,
    SCENARIO_ERROR, /* an error event replaces the events after the last delta */
    SCENARIO_RESET, /* TCP RST at the midpoint */
    SCENARIO_CLOSE, /* Close frame at the midpoint */
};

/* Settings for generating one turn: the instance defaults, overridden per request by the model. */
struct turn_params {
    uint64_t deltas;
    uint64_t delta_bytes;
    uint64_t silence_ms;
    bool silence_at_start;  /* before response.created, else at the midpoint */
    uint64_t large_bytes;   /* 0: no large output item */
    enum scenario scenario;
    unsigned close_code;    /* 0 sends a Close without a code */
    char close_reason[WR_WS_MAX_CLOSE_REASON + 1];
    size_t close_reason_len;
    char error_code[MOCK_ERROR_CODE_BYTES];
    bool usage_alias;       /* prompt_/completion_ token names */
};

/* Command line settings, read-only once the workers start. */
struct options {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    unsigned threads;
    struct turn_params defaults;
    char *auth_expected; /* "Bearer TOKEN", or NULL to accept every request */
    enum log_level log_level;
};

/* A string repeated without end. span contains enough of it for one iovec at any phase. */
struct pattern {
    const char *unit;
    size_t period;
    uint8_t *span; /* MOCK_PATTERN_SPAN + period bytes */
};

static struct pattern text_pattern = { MOCK_TEXT_UNIT, sizeof(MOCK_TEXT_UNIT) - 1, NULL };
static struct pattern result_pattern = { MOCK_RESULT_UNIT, sizeof(MOCK_RESULT_UNIT) - 1, NULL };

static atomic_uint_fast64_t next_conn_id = 1;

enum watch_kind {
    WATCH_LISTEN,
    WATCH_WAKE,
    WATCH_ACCEPT_TIMER,
    WATCH_SOCKET,
    WATCH_TIMER,
};

/* Target of an epoll event's data pointer. */
struct watch {
    enum watch_kind kind;
    struct conn *conn; /* NULL for the worker's own descriptors */
};

struct worker {
    unsigned index;
    const struct options *opts;
    int epoll_fd;
    int listen_fd;
    int wake_fd;          /* eventfd written by main to stop the worker */
    int accept_timer_fd;  /* resumes accepting after descriptors ran out */
    bool accept_paused;
    bool stopping;
    pthread_t thread;
    struct watch listen_watch;
    struct watch wake_watch;
    struct watch accept_timer_watch;
    struct conn *conns;     /* open connections, doubly linked */
    struct conn *graveyard; /* closed this batch, freed once no event can name them */
    uint64_t accepted;
    uint64_t turns;
    uint64_t accept_failures;
    uint64_t timer_failures;
};

/* A queued piece of output: bytes in the arena, or a run of a pattern. */
struct out_segment {
    const uint8_t *ptr;            /* literal: next byte to send */
    const struct pattern *pattern; /* NULL for a literal */
    uint64_t offset;               /* pattern: position of the next byte in the repetition */
    uint64_t len;                  /* bytes left to send */
};

/* One bounded capture of a JSON string's raw bytes (escapes kept as sent). */
struct capture {
    char *buf;
    size_t cap;
    size_t len;
    bool cut;   /* the string was longer than cap */
    bool found;
};

enum scan_key {
    SCAN_KEY_NONE,
    SCAN_KEY_TYPE,
    SCAN_KEY_MODEL,
    SCAN_KEY_GENERATE,
    SCAN_KEY_OTHER,
};

/*
 * Incremental search for the top-level "type", "model" and "generate" members
 * of a client message. It tracks nesting and strings only and validates
 * nothing, which is enough to read well-formed requests.
 */
struct request_scan {
    uint64_t fed;         /* message bytes seen, at most MOCK_SCAN_BYTES */
    uint32_t depth;       /* open objects and arrays */
    bool in_string;
    bool escape;          /* the previous string byte was a backslash */
    bool expect_key;      /* at depth 1, the next string is a member name */
    enum scan_key key;    /* member whose value comes next at depth 1 */
    int generate;         /* -1 absent, 0 false, 1 true */
    struct capture *open; /* capture of the string being read, or NULL */
    struct capture key_text;
    struct capture type;
    struct capture model;
    char key_buf[16];
    char type_buf[32];
    char model_buf[MOCK_MODEL_BYTES];
};

struct turn {
    struct turn_params params;
    bool generate;
    uint64_t payload_bytes; /* length of the response.create message */
    char model[MOCK_ECHO_MODEL_BYTES + 1]; /* JSON-safe */
};

enum stage {
    STAGE_START,
    STAGE_CREATED,
    STAGE_IN_PROGRESS,
    STAGE_ITEM_ADDED,
    STAGE_PART_ADDED,
    STAGE_DELTAS,
    STAGE_TEXT_DONE,
    STAGE_PART_DONE,
    STAGE_ITEM_DONE,
    STAGE_LARGE,
    STAGE_COMPLETED,
    STAGE_ERROR,
    STAGE_DONE,
};

/* Progress through the turn at the head of the queue. */
struct turn_cursor {
    enum stage stage;
    uint64_t number;        /* n in resp_mock_<conn>_<n> */
    uint64_t delta_index;
    uint32_t sequence;      /* sequence_number of the next event */
    int64_t created_at;     /* Unix seconds */
    bool mid_pending;       /* the midpoint was reached and its actions have not run */
    bool mid_silence_done;
    bool waiting;           /* a silence timer is armed */
    char delta_prefix[192]; /* the delta event up to its text, formatted once per turn */
    size_t delta_prefix_len;
};

enum conn_state {
    CONN_HTTP,         /* reading the request head */
    CONN_HTTP_REPLIED, /* an HTTP reply other than 101 is being sent */
    CONN_LINGER,       /* reply sent, reading until EOF before closing */
    CONN_WS,
};

enum timer_purpose {
    TIMER_NONE,
    TIMER_SILENCE,
    TIMER_CLOSE_WAIT,
    TIMER_LINGER,
};

struct conn {
    struct worker *worker;
    struct conn *prev;
    struct conn *next;
    uint64_t id;
    int fd;
    int timer_fd; /* created on first use */
    enum timer_purpose timer_purpose;
    struct watch socket_watch;
    struct watch timer_watch;
    enum conn_state state;
    bool closed;
    bool want_write;      /* EPOLLOUT is registered */
    bool warned_model;    /* a model problem was logged on this connection */

    /* Input: the request head, then undecoded frame bytes. */
    uint8_t in[MOCK_IN_BYTES];
    size_t in_len;
    size_t head_seen;     /* in_len at the previous parse attempt */

    /* WebSocket reader. */
    struct wr_ws_header hdr; /* header of the data frame being read */
    bool in_frame;
    uint64_t frame_left;  /* payload bytes of that frame not yet read */
    uint64_t frame_offset;
    struct wr_ws_sequence seq;
    bool msg_text;
    uint64_t msg_bytes;
    struct request_scan scan;

    /* Close handshake and control replies. */
    bool close_sent;
    bool close_received;
    bool close_reply_pending;
    bool fail_pending;    /* our Close reports an error: close TCP once it is sent */
    bool reset_pending;
    bool pong_pending;
    uint8_t close_payload[WR_WS_MAX_CONTROL_PAYLOAD];
    size_t close_payload_len;
    uint8_t pong_payload[WR_WS_MAX_CONTROL_PAYLOAD];
    size_t pong_len;

    /* Output queue. The arena is reset only when every segment has been sent. */
    struct out_segment segs[MOCK_SEGMENTS];
    unsigned seg_head;
    unsigned seg_count;
    uint8_t arena[MOCK_ARENA_BYTES];
    size_t arena_used;
    size_t frame_start;   /* arena offset of the open frame's header slot */
    unsigned frame_first_seg;
    uint64_t frame_len;   /* payload bytes of the open frame so far */

    /* Turns, oldest first. */
    struct turn turns[MOCK_MAX_TURNS];
    unsigned turn_head;
    unsigned turn_count;
    uint64_t turns_started;
    struct turn_cursor cursor;
};

/* ---- Logging ---- */

static bool log_enabled(const struct options *opts, enum log_level level)
{
    return level <= opts->log_level;
}

/* Writes one logfmt line to stderr with a single write, so threads do not interleave. */
static void mock_log(const struct options *opts, enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    char line[1024];
    struct timespec now;
    struct tm tm;
    size_t len;
    int n;
    va_list ap;

    if (!log_enabled(opts, level)) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    len = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + len, sizeof(line) - len, ".%03ldZ level=%s ", now.tv_nsec / 1000000,
                 names[level]);
    len += (size_t)n;

    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    len += (size_t)n < sizeof(line) - len - 1 ? (size_t)n : sizeof(line) - len - 2;
    line[len++] = '\n';
    if (write(STDERR_FILENO, line, len) < 0) {
        return;
    }
}

/*
 * Formats bytes as a quoted logfmt value in out (cap >= 8): quotes and
 * backslashes escaped, control bytes shown as '?', and "..." at the end when
 * the value did not fit.
 */
static const char *log_value(char *out, size_t cap, const char *s, size_t len)
{
    size_t pos = 1;
    size_t i;

    out[0] = '"';
    for (i = 0; i < len && pos + 6 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == '"' || ch == '\\') {
            out[pos++] = '\\';
        }
        out[pos++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (i < len) {
        memcpy(out + pos, "...", 3);
        pos += 3;
    }
    out[pos++] = '"';
    out[pos] = '\0';
    return out;
}

/* ---- Number and text helpers ---- */

/* Parses a decimal number of len bytes into *out. Fails on other bytes or a value above max. */
static bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
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

static bool text_equal(const char *s, size_t len, const char *word)
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

static const char *const scenario_names[] = { "normal", "error", "reset", "close" };

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
static bool apply_model_key(struct turn_params *p, const char *key, size_t key_len,
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
static const char *apply_model(struct turn_params *p, const char *model, size_t len,
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

static void scan_init(struct request_scan *s)
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
static void scan_feed(struct request_scan *s, const uint8_t *p, size_t n)
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

static bool scan_is_response_create(const struct request_scan *s)
{
    return s->type.found && !s->type.cut && text_equal(s->type.buf, s->type.len, "response.create");
}

/* True if a captured model can be echoed inside JSON quotes as it is. */
static bool model_is_json_safe(const struct capture *c)
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

/* ---- Output queue ---- */

static bool out_empty(const struct conn *c)
{
    return c->seg_head == c->seg_count;
}

/* Returns true if the queue can take an event needing arena_bytes of arena. */
static bool out_has_room(struct conn *c, size_t arena_bytes)
{
    if (out_empty(c)) {
        c->seg_head = 0;
        c->seg_count = 0;
        c->arena_used = 0;
    } else if (c->seg_head > 0 && c->seg_count + MOCK_EVENT_SEGMENTS > MOCK_SEGMENTS) {
        memmove(c->segs, c->segs + c->seg_head,
                (c->seg_count - c->seg_head) * sizeof(c->segs[0]));
        c->seg_count -= c->seg_head;
        c->seg_head = 0;
    }
    return c->seg_count + MOCK_EVENT_SEGMENTS <= MOCK_SEGMENTS &&
           MOCK_ARENA_BYTES - c->arena_used >= arena_bytes;
}

/* Queues the arena bytes at ptr, extending the last segment when they follow it. */
static void out_append_literal(struct conn *c, const uint8_t *ptr, size_t len)
{
    struct out_segment *last = out_empty(c) ? NULL : &c->segs[c->seg_count - 1];

    if (len == 0) {
        return;
    }
    if (last != NULL && last->pattern == NULL && last->ptr + last->len == ptr) {
        last->len += len;
        return;
    }
    if (c->seg_count >= MOCK_SEGMENTS) {
        abort(); /* out_has_room reserves segments before every event */
    }
    c->segs[c->seg_count++] = (struct out_segment){ .ptr = ptr, .len = len };
}

static void out_bytes(struct conn *c, const void *data, size_t len)
{
    uint8_t *dst = c->arena + c->arena_used;

    if (len > MOCK_ARENA_BYTES - c->arena_used) {
        abort(); /* out_has_room reserves arena bytes before every event */
    }
    memcpy(dst, data, len);
    c->arena_used += len;
    c->frame_len += len;
    out_append_literal(c, dst, len);
}

__attribute__((format(printf, 2, 3)))
static void out_printf(struct conn *c, const char *fmt, ...)
{
    size_t room = MOCK_ARENA_BYTES - c->arena_used;
    uint8_t *dst = c->arena + c->arena_used;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf((char *)dst, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        abort(); /* every event fits in MOCK_EVENT_ROOM */
    }
    c->arena_used += (size_t)n;
    c->frame_len += (uint64_t)n;
    out_append_literal(c, dst, (size_t)n);
}

/* Queues len bytes of a pattern from offset: copied when short, referenced otherwise. */
static void out_run(struct conn *c, const struct pattern *p, uint64_t offset, uint64_t len)
{
    if (len <= MOCK_COPY_MAX) {
        out_bytes(c, p->span + offset % p->period, (size_t)len);
        return;
    }
    if (c->seg_count >= MOCK_SEGMENTS) {
        abort();
    }
    c->segs[c->seg_count++] = (struct out_segment){ .pattern = p, .offset = offset, .len = len };
    c->frame_len += len;
}

/* Opens a frame: its header slot is reserved now and filled by frame_end. */
static void frame_begin(struct conn *c)
{
    c->frame_start = c->arena_used;
    c->arena_used += MOCK_FRAME_SLOT;
    c->frame_first_seg = c->seg_count;
    c->frame_len = 0;
}

/*
 * Writes the header of the open frame. The header and the frame's first
 * literal slide down over the unused part of the slot, so consecutive small
 * frames stay one contiguous literal and go out in one iovec.
 */
static void frame_end(struct conn *c, uint8_t opcode)
{
    uint8_t hdr[WR_WS_MAX_HEADER];
    uint8_t *slot = c->arena + c->frame_start;
    size_t h = wr_ws_header_encode(hdr, true, opcode, c->frame_len, NULL);
    struct out_segment *first;
    struct out_segment *prev;

    if (c->seg_count == c->frame_first_seg) {
        memcpy(slot, hdr, h);
        c->arena_used = c->frame_start + h;
        out_append_literal(c, slot, h);
        return;
    }

    first = &c->segs[c->frame_first_seg];
    if (first->pattern != NULL || first->ptr != slot + MOCK_FRAME_SLOT) {
        abort(); /* every payload starts with a literal */
    }
    memmove(slot + h, slot + MOCK_FRAME_SLOT, (size_t)first->len);
    memcpy(slot, hdr, h);
    first->ptr = slot;
    first->len += h;
    if (c->seg_count == c->frame_first_seg + 1) {
        c->arena_used -= MOCK_FRAME_SLOT - h;
    }

    if (c->frame_first_seg == c->seg_head) {
        return;
    }
    prev = first - 1;
    if (prev->pattern == NULL && prev->ptr + prev->len == first->ptr) {
        prev->len += first->len;
        memmove(first, first + 1, (c->seg_count - c->frame_first_seg - 1) * sizeof(*first));
        c->seg_count--;
    }
}

static void queue_control(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    frame_begin(c);
    out_bytes(c, payload, len);
    frame_end(c, opcode);
}

/* Marks n sent bytes off the front of the queue. */
static void out_advance(struct conn *c, size_t n)
{
    while (n > 0) {
        struct out_segment *seg = &c->segs[c->seg_head];
        uint64_t step = seg->len < n ? seg->len : n;

        if (seg->pattern != NULL) {
            seg->offset += step;
        } else {
            seg->ptr += step;
        }
        seg->len -= step;
        n -= (size_t)step;
        if (seg->len == 0) {
            c->seg_head++;
        }
    }
}

static size_t out_fill_iovecs(const struct conn *c, struct iovec *iov)
{
    size_t count = 0;
    unsigned i;

    for (i = c->seg_head; i < c->seg_count && count < MOCK_IOVECS; i++) {
        const struct out_segment *seg = &c->segs[i];
        uint64_t offset = seg->offset;
        uint64_t left = seg->len;

        if (seg->pattern == NULL) {
            iov[count].iov_base = (void *)seg->ptr;
            iov[count++].iov_len = (size_t)seg->len;
            continue;
        }
        while (left > 0 && count < MOCK_IOVECS) {
            size_t phase = (size_t)(offset % seg->pattern->period);
            uint64_t chunk = MOCK_PATTERN_SPAN + seg->pattern->period - phase;

            if (chunk > left) {
                chunk = left;
            }
            iov[count].iov_base = seg->pattern->span + phase;
            iov[count++].iov_len = (size_t)chunk;
            offset += chunk;
            left -= chunk;
        }
    }
    return count;
}

/*
 * Sends queued output until the queue is empty, the socket is full or the
 * budget is spent. Returns 0, -EAGAIN (socket full), or another negative errno.
 */
static int out_flush(struct conn *c, size_t *sent)
{
    struct iovec iov[MOCK_IOVECS];
    struct msghdr msg;
    ssize_t n;

    while (!out_empty(c) && *sent < MOCK_PUMP_BUDGET) {
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = out_fill_iovecs(c, iov);
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        out_advance(c, (size_t)n);
        *sent += (size_t)n;
    }
    return 0;
}

/* ---- Connection plumbing ---- */

static void conn_set_want_write(struct conn *c, bool on)
{
    struct epoll_event ev;

    if (c->want_write == on || c->closed) {
        return;
    }
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.ptr = &c->socket_watch;
    if (epoll_ctl(c->worker->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
        c->want_write = on;
    }
}

static void conn_close(struct conn *c, const char *reason)
{
    struct worker *w = c->worker;

    if (c->closed) {
        return;
    }
    mock_log(w->opts, LOG_DEBUG, "event=conn_closed conn=%" PRIu64 " reason=%s", c->id, reason);
    c->closed = true;
    close(c->fd);
    if (c->timer_fd >= 0) {
        close(c->timer_fd);
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->next = w->graveyard;
    w->graveyard = c;
}

/* Closes with SO_LINGER 0, so the kernel sends RST instead of FIN. */
static void conn_reset(struct conn *c)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };

    if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0) {
        mock_log(c->worker->opts, LOG_WARN, "event=reset_failed conn=%" PRIu64 " err=%s", c->id,
                 strerror(errno));
    }
    conn_close(c, "reset");
}

/* Arms the connection's timer for ms milliseconds, creating its timerfd on first use. */
static bool conn_arm_timer(struct conn *c, enum timer_purpose purpose, uint64_t ms)
{
    struct itimerspec spec;
    struct epoll_event ev;

    if (c->timer_fd < 0) {
        c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (c->timer_fd < 0) {
            goto fail;
        }
        ev.events = EPOLLIN;
        ev.data.ptr = &c->timer_watch;
        if (epoll_ctl(c->worker->epoll_fd, EPOLL_CTL_ADD, c->timer_fd, &ev) < 0) {
            close(c->timer_fd);
            c->timer_fd = -1;
            goto fail;
        }
    }
    memset(&spec, 0, sizeof(spec));
    spec.it_value.tv_sec = (time_t)(ms / 1000);
    spec.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) {
        spec.it_value.tv_nsec = 1; /* zero would disarm the timer */
    }
    if (timerfd_settime(c->timer_fd, 0, &spec, NULL) < 0) {
        goto fail;
    }
    c->timer_purpose = purpose;
    return true;

fail:
    /* Log the first failure and then every 1000th, so a descriptor shortage does not flood
     * stderr. */
    if (c->worker->timer_failures++ % 1000 == 0) {
        mock_log(c->worker->opts, LOG_ERROR,
                 "event=timer_failed conn=%" PRIu64 " err=%s count=%" PRIu64
                 " action=close_connection hint=\"raise the open file limit (ulimit -n)\"",
                 c->id, strerror(errno), c->worker->timer_failures);
    }
    conn_close(c, "timer_failed");
    return false;
}

static void conn_drop_turns(struct conn *c)
{
    c->turn_count = 0;
    c->cursor.stage = STAGE_START;
    c->cursor.waiting = false;
    if (c->timer_purpose == TIMER_SILENCE) {
        c->timer_purpose = TIMER_NONE;
    }
}

/* Queues a Close with code and reason, after the frames already queued. */
static void conn_request_close(struct conn *c, unsigned code, const char *reason,
                               size_t reason_len, bool failure)
{
    if (c->close_sent || c->close_reply_pending) {
        return;
    }
    c->close_payload_len = wr_ws_close_build(c->close_payload, code, reason, reason_len);
    c->close_reply_pending = true;
    c->fail_pending = failure;
    c->pong_pending = false;
    conn_drop_turns(c);
}

/* ---- Turn generation ---- */

enum step {
    STEP_EMITTED, /* an event was queued, or the cursor moved */
    STEP_WAIT,    /* a silence timer runs */
    STEP_RESET,   /* reset the connection once the queue is sent */
    STEP_CLOSE,   /* a Close frame was queued */
    STEP_DONE,    /* the turn is finished */
};

static void turn_start(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;
    int n;

    cur->number = ++c->turns_started;
    cur->delta_index = 0;
    cur->sequence = 0;
    cur->created_at = (int64_t)time(NULL);
    cur->mid_pending = false;
    cur->mid_silence_done = false;
    cur->waiting = false;
    n = snprintf(cur->delta_prefix, sizeof(cur->delta_prefix),
                 "{\"type\":\"response.output_text.delta\",\"item_id\":\"msg_mock_%" PRIu64
                 "_%" PRIu64 "\",\"output_index\":0,\"content_index\":0,\"delta\":\"",
                 c->id, cur->number);
    cur->delta_prefix_len = (size_t)n;
    c->worker->turns++;
    mock_log(c->worker->opts, LOG_DEBUG,
             "event=turn_started conn=%" PRIu64 " turn=%" PRIu64 " generate=%d deltas=%" PRIu64
             " bytes=%" PRIu64 " scenario=%s payload_bytes=%" PRIu64,
             c->id, cur->number, t->generate, t->params.deltas, t->params.delta_bytes,
             scenario_names[t->params.scenario], t->payload_bytes);
}

static uint64_t turn_output_tokens(const struct turn *t)
{
    return t->generate ? t->params.deltas : 0;
}

/* response.created and response.in_progress carry the same in-progress response object. */
static void emit_response_state(struct conn *c, const struct turn *t, const char *type)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"%s\",\"sequence_number\":%" PRIu32 ",\"response\":{\"id\":\"resp_mock_%"
               PRIu64 "_%" PRIu64 "\",\"object\":\"response\",\"created_at\":%" PRId64
               ",\"status\":\"in_progress\",\"model\":\"%s\",\"output\":[],\"usage\":null}}",
               type, cur->sequence++, c->id, cur->number, cur->created_at, t->model);
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_item_added(struct conn *c)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.output_item.added\",\"sequence_number\":%" PRIu32
               ",\"output_index\":0,\"item\":{\"id\":\"msg_mock_%" PRIu64 "_%" PRIu64
               "\",\"type\":\"message\",\"status\":\"in_progress\",\"role\":\"assistant\","
               "\"content\":[]}}",
               cur->sequence++, c->id, cur->number);
    frame_end(c, WR_WS_OP_TEXT);
}

/* Queues content_part.added, with an empty text, or content_part.done, with the whole text. */
static void emit_part(struct conn *c, const struct turn *t, bool done)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.content_part.%s\",\"sequence_number\":%" PRIu32
               ",\"item_id\":\"msg_mock_%" PRIu64 "_%" PRIu64
               "\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\","
               "\"text\":\"",
               done ? "done" : "added", cur->sequence++, c->id, cur->number);
    if (done) {
        out_run(c, &text_pattern, 0, t->params.deltas * t->params.delta_bytes);
    }
    out_printf(c, "\",\"annotations\":[]}}");
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_delta(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;
    struct timespec now;

    frame_begin(c);
    out_bytes(c, cur->delta_prefix, cur->delta_prefix_len);
    out_run(c, &text_pattern, cur->delta_index * t->params.delta_bytes, t->params.delta_bytes);
    clock_gettime(CLOCK_MONOTONIC, &now);
    out_printf(c, "\",\"logprobs\":[],\"sequence_number\":%" PRIu32 ",\"ts_ns\":%" PRIu64 "}",
               cur->sequence++, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_text_done(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.output_text.done\",\"sequence_number\":%" PRIu32
               ",\"item_id\":\"msg_mock_%" PRIu64 "_%" PRIu64
               "\",\"output_index\":0,\"content_index\":0,\"text\":\"",
               cur->sequence++, c->id, cur->number);
    out_run(c, &text_pattern, 0, t->params.deltas * t->params.delta_bytes);
    out_printf(c, "\",\"logprobs\":[]}");
    frame_end(c, WR_WS_OP_TEXT);
}

/* The finished assistant message item, shared by output_item.done and response.completed. */
static void out_message_item(struct conn *c, const struct turn *t)
{
    out_printf(c,
               "{\"id\":\"msg_mock_%" PRIu64 "_%" PRIu64
               "\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\","
               "\"content\":[{\"type\":\"output_text\",\"text\":\"",
               c->id, c->cursor.number);
    out_run(c, &text_pattern, 0, t->params.deltas * t->params.delta_bytes);
    out_printf(c, "\",\"annotations\":[]}]}");
}

static void emit_item_done(struct conn *c, const struct turn *t)
{
    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.output_item.done\",\"sequence_number\":%" PRIu32
               ",\"output_index\":0,\"item\":",
               c->cursor.sequence++);
    out_message_item(c, t);
    out_printf(c, "}");
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_large(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.output_item.done\",\"sequence_number\":%" PRIu32
               ",\"output_index\":1,\"item\":{\"id\":\"ig_mock_%" PRIu64 "_%" PRIu64
               "\",\"type\":\"image_generation_call\",\"status\":\"completed\",\"result\":\"",
               cur->sequence++, c->id, cur->number);
    out_run(c, &result_pattern, 0, t->params.large_bytes);
    out_printf(c, "\"}}");
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_completed(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;
    uint64_t input = t->payload_bytes / 4;
    uint64_t output = turn_output_tokens(t);
    const char *in_name = t->params.usage_alias ? "prompt" : "input";
    const char *out_name = t->params.usage_alias ? "completion" : "output";

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.completed\",\"sequence_number\":%" PRIu32
               ",\"response\":{\"id\":\"resp_mock_%" PRIu64 "_%" PRIu64
               "\",\"object\":\"response\",\"created_at\":%" PRId64
               ",\"status\":\"completed\",\"model\":\"%s\",\"output\":[",
               cur->sequence++, c->id, cur->number, cur->created_at, t->model);
    if (t->generate) {
        out_message_item(c, t);
    }
    out_printf(c,
               "],\"usage\":{\"%s_tokens\":%" PRIu64 ",\"%s_tokens_details\":{\"cached_tokens\":0},"
               "\"%s_tokens\":%" PRIu64 ",\"%s_tokens_details\":{\"reasoning_tokens\":0},"
               "\"total_tokens\":%" PRIu64 "}}}",
               in_name, input, in_name, out_name, output, out_name, input + output);
    frame_end(c, WR_WS_OP_TEXT);
}

/* Codex 0.169.0 treats an error event with a status and an error object as a failed HTTP
 * request: it retries, then falls back to HTTP POST. */
static void emit_error(struct conn *c, const struct turn *t)
{
    frame_begin(c);
    out_printf(c,
               "{\"type\":\"error\",\"sequence_number\":%" PRIu32
               ",\"status\":500,\"error\":{\"type\":\"server_error\",\"code\":\"%s\","
               "\"message\":\"mock_upstream failed this response as requested.\","
               "\"param\":null}}",
               c->cursor.sequence++, t->params.error_code);
    frame_end(c, WR_WS_OP_TEXT);
}

/* Runs the midpoint: the silence there, then a reset or Close for those scenarios. */
static enum step turn_midpoint(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;

    if (!cur->mid_silence_done) {
        cur->mid_silence_done = true;
        if (!t->params.silence_at_start && t->params.silence_ms > 0) {
            cur->waiting = true;
            return conn_arm_timer(c, TIMER_SILENCE, t->params.silence_ms) ? STEP_WAIT : STEP_DONE;
        }
    }
    cur->mid_pending = false;
    if (t->params.scenario == SCENARIO_RESET) {
        return STEP_RESET;
    }
    if (t->params.scenario == SCENARIO_CLOSE) {
        c->close_payload_len = wr_ws_close_build(c->close_payload, t->params.close_code,
                                                 t->params.close_reason,
                                                 t->params.close_reason_len);
        queue_control(c, WR_WS_OP_CLOSE, c->close_payload, c->close_payload_len);
        return STEP_CLOSE;
    }
    return STEP_EMITTED;
}

/* The stage after the content part opens or the deltas end. */
static enum stage stage_after_deltas(const struct turn *t)
{
    return t->params.scenario == SCENARIO_ERROR ? STAGE_ERROR : STAGE_TEXT_DONE;
}

/*
 * Queues the next event of the turn at the head of the queue. The midpoint
 * comes after the first delta, or after response.created in a turn without
 * deltas. The caller has checked out_has_room(MOCK_EVENT_ROOM).
 */
static enum step turn_step(struct conn *c)
{
    const struct turn *t = &c->turns[c->turn_head];
    struct turn_cursor *cur = &c->cursor;
    bool no_deltas = !t->generate || t->params.deltas == 0;

    if (cur->mid_pending) {
        return turn_midpoint(c, t);
    }

    switch (cur->stage) {
    case STAGE_START:
        turn_start(c, t);
        cur->stage = STAGE_CREATED;
        if (t->params.silence_at_start && t->params.silence_ms > 0) {
            cur->waiting = true;
            return conn_arm_timer(c, TIMER_SILENCE, t->params.silence_ms) ? STEP_WAIT : STEP_DONE;
        }
        return STEP_EMITTED;
    case STAGE_CREATED:
        emit_response_state(c, t, "response.created");
        cur->mid_pending = no_deltas;
        if (t->generate) {
            cur->stage = STAGE_IN_PROGRESS;
        } else {
            cur->stage = t->params.scenario == SCENARIO_ERROR ? STAGE_ERROR : STAGE_COMPLETED;
        }
        return STEP_EMITTED;
    case STAGE_IN_PROGRESS:
        emit_response_state(c, t, "response.in_progress");
        cur->stage = STAGE_ITEM_ADDED;
        return STEP_EMITTED;
    case STAGE_ITEM_ADDED:
        emit_item_added(c);
        cur->stage = STAGE_PART_ADDED;
        return STEP_EMITTED;
    case STAGE_PART_ADDED:
        emit_part(c, t, false);
        cur->stage = t->params.deltas > 0 ? STAGE_DELTAS : stage_after_deltas(t);
        return STEP_EMITTED;
    case STAGE_DELTAS:
        emit_delta(c, t);
        cur->delta_index++;
        cur->mid_pending = cur->delta_index == 1;
        if (cur->delta_index == t->params.deltas) {
            cur->stage = stage_after_deltas(t);
        }
        return STEP_EMITTED;
    case STAGE_TEXT_DONE:
        emit_text_done(c, t);
        cur->stage = STAGE_PART_DONE;
        return STEP_EMITTED;
    case STAGE_PART_DONE:
        emit_part(c, t, true);
        cur->stage = STAGE_ITEM_DONE;
        return STEP_EMITTED;
    case STAGE_ITEM_DONE:
        emit_item_done(c, t);
        cur->stage = t->params.large_bytes > 0 ? STAGE_LARGE : STAGE_COMPLETED;
        return STEP_EMITTED;
    case STAGE_LARGE:
        emit_large(c, t);
        cur->stage = STAGE_COMPLETED;
        return STEP_EMITTED;
    case STAGE_COMPLETED:
        emit_completed(c, t);
        cur->stage = STAGE_DONE;
        return STEP_EMITTED;
    case STAGE_ERROR:
        emit_error(c, t);
        cur->stage = STAGE_DONE;
        return STEP_EMITTED;
    case STAGE_DONE:
        return STEP_DONE;
    }
    abort();
}

static bool conn_can_generate(const struct conn *c)
{
    return c->state == CONN_WS && !c->closed && !c->close_sent && !c->close_reply_pending &&
           !c->reset_pending && c->turn_count > 0 && !c->cursor.waiting;
}

/* True if conn_fill still has a Close or a Pong to queue. */
static bool conn_has_control_reply(const struct conn *c)
{
    return c->close_reply_pending || (c->pong_pending && !c->close_sent);
}

/* Queues control replies, then turn events, until the queue is full or nothing is ready. */
static void conn_fill(struct conn *c)
{
    if (c->close_reply_pending && out_has_room(c, 256)) {
        queue_control(c, WR_WS_OP_CLOSE, c->close_payload, c->close_payload_len);
        c->close_reply_pending = false;
        c->close_sent = true;
    }
    if (c->pong_pending && !c->close_sent && out_has_room(c, 256)) {
        queue_control(c, WR_WS_OP_PONG, c->pong_payload, c->pong_len);
        c->pong_pending = false;
    }

    while (conn_can_generate(c) && out_has_room(c, MOCK_EVENT_ROOM)) {
        switch (turn_step(c)) {
        case STEP_EMITTED:
        case STEP_WAIT:
            break;
        case STEP_RESET:
            c->reset_pending = true;
            break;
        case STEP_CLOSE:
            c->close_sent = true;
            conn_drop_turns(c);
            break;
        case STEP_DONE:
            c->turn_head = (c->turn_head + 1) % MOCK_MAX_TURNS;
            c->turn_count--;
            c->cursor.stage = STAGE_START;
            break;
        }
    }
}

/* Runs once the queue is empty and nothing more can be generated now. */
static void conn_after_drain(struct conn *c)
{
    if (c->reset_pending) {
        conn_reset(c);
        return;
    }
    if (c->state == CONN_HTTP_REPLIED) {
        /* Reading to EOF before closing keeps unread request bytes from turning into an RST
         * that could destroy the reply. */
        shutdown(c->fd, SHUT_WR);
        c->state = CONN_LINGER;
        conn_arm_timer(c, TIMER_LINGER, MOCK_LINGER_MS);
        return;
    }
    if (c->close_sent && (c->close_received || c->fail_pending)) {
        conn_close(c, c->close_received ? "close_handshake" : "protocol_error");
        return;
    }
    if (c->close_sent && c->timer_purpose != TIMER_CLOSE_WAIT) {
        conn_arm_timer(c, TIMER_CLOSE_WAIT, MOCK_CLOSE_WAIT_MS);
    }
}

/* Generates and sends until the socket is full, the budget is spent or nothing is left. */
static void conn_pump(struct conn *c)
{
    size_t sent = 0;
    int rc;

    while (!c->closed) {
        conn_fill(c);
        rc = out_flush(c, &sent);
        if (rc == -EAGAIN) {
            conn_set_want_write(c, true);
            return;
        }
        if (rc < 0) {
            mock_log(c->worker->opts, LOG_DEBUG, "event=send_failed conn=%" PRIu64 " err=%s",
                     c->id, strerror(-rc));
            conn_close(c, "send_failed");
            return;
        }
        if (!out_empty(c) || (sent >= MOCK_PUMP_BUDGET && conn_can_generate(c))) {
            /* EPOLLOUT is level-triggered, so a writable socket brings the loop back here
             * after the other ready connections had their turn. */
            conn_set_want_write(c, true);
            return;
        }
        if (!conn_can_generate(c) && !conn_has_control_reply(c)) {
            break;
        }
    }
    if (c->closed) {
        return;
    }
    conn_set_want_write(c, false);
    conn_after_drain(c);
}

/* ---- WebSocket input ---- */

static void ws_enqueue_turn(struct conn *c)
{
    const struct options *opts = c->worker->opts;
    struct request_scan *s = &c->scan;
    struct turn *t;
    const char *bad;
    size_t bad_len = 0;
    char shown[96];

    if (c->turn_count == MOCK_MAX_TURNS) {
        conn_request_close(c, 1008, "too many queued requests", 24, true);
        return;
    }
    t = &c->turns[(c->turn_head + c->turn_count) % MOCK_MAX_TURNS];
    t->params = opts->defaults;
    t->generate = s->generate != 0;
    t->payload_bytes = c->msg_bytes;

    if (model_is_json_safe(&s->model)) {
        memcpy(t->model, s->model.buf, s->model.len);
        t->model[s->model.len] = '\0';
    } else {
        strcpy(t->model, "mock");
    }
    if (s->model.found && !s->model.cut && s->model.len >= 5 &&
        memcmp(s->model.buf, "mock:", 5) == 0) {
        bad = apply_model(&t->params, s->model.buf, s->model.len, &bad_len);
        if (bad != NULL && !c->warned_model) {
            c->warned_model = true;
            mock_log(opts, LOG_WARN,
                     "event=model_key_invalid conn=%" PRIu64 " key=%s hint=\"see --help for the "
                     "model grammar\"",
                     c->id, log_value(shown, sizeof(shown), bad, bad_len));
        }
    } else if (s->model.cut && !c->warned_model) {
        c->warned_model = true;
        mock_log(opts, LOG_WARN,
                 "event=model_too_long conn=%" PRIu64 " max_bytes=%d action=use_defaults", c->id,
                 MOCK_MODEL_BYTES);
    }
    c->turn_count++;
}

static void ws_message_end(struct conn *c)
{
    const struct options *opts = c->worker->opts;
    char shown[48];

    if (c->close_sent || c->close_received || c->close_reply_pending) {
        return;
    }
    if (!c->msg_text) {
        conn_request_close(c, 1003, "binary messages are not supported", 33, true);
        return;
    }
    if (log_enabled(opts, LOG_DEBUG)) {
        mock_log(opts, LOG_DEBUG, "event=client_message conn=%" PRIu64 " type=%s bytes=%" PRIu64,
                 c->id, log_value(shown, sizeof(shown), c->scan.type.buf, c->scan.type.len),
                 c->msg_bytes);
    }
    /* Other message types, such as response.processed, get no reply. */
    if (scan_is_response_create(&c->scan)) {
        ws_enqueue_turn(c);
    }
}

/* Counts payload bytes of a data frame, unmasking and scanning only a text message's prefix. */
static void ws_message_feed(struct conn *c, uint8_t *data, size_t n)
{
    if (c->msg_text && c->scan.fed < MOCK_SCAN_BYTES) {
        size_t m = n;

        if (m > MOCK_SCAN_BYTES - c->scan.fed) {
            m = (size_t)(MOCK_SCAN_BYTES - c->scan.fed);
        }
        wr_ws_mask(data, m, c->hdr.mask, c->frame_offset);
        scan_feed(&c->scan, data, m);
    }
    c->msg_bytes += n;
}

static void ws_on_control(struct conn *c, const struct wr_ws_header *hdr, uint8_t *payload,
                          size_t len)
{
    const uint8_t *reason;
    size_t reason_len;
    unsigned code;

    wr_ws_mask(payload, len, hdr->mask, 0);
    switch (hdr->opcode) {
    case WR_WS_OP_PING:
        if (!c->close_sent && !c->close_reply_pending) {
            memcpy(c->pong_payload, payload, len);
            c->pong_len = len;
            c->pong_pending = true;
        }
        break;
    case WR_WS_OP_CLOSE:
        if (wr_ws_close_parse(payload, len, &code, &reason, &reason_len) < 0) {
            conn_request_close(c, 1002, "invalid close payload", 21, true);
            break;
        }
        c->close_received = true;
        conn_request_close(c, code, (const char *)reason, reason_len, false);
        break;
    default:
        break; /* Pong */
    }
}

/* Decodes the frames in c->in, keeping an incomplete header or control frame for later. */
static void ws_process(struct conn *c)
{
    size_t pos = 0;
    int rc;

    while (pos < c->in_len && !c->close_received && !c->fail_pending) {
        size_t avail = c->in_len - pos;
        size_t n;

        if (!c->in_frame) {
            struct wr_ws_header hdr;

            rc = wr_ws_header_decode(c->in + pos, avail, WR_WS_FROM_CLIENT, &hdr);
            if (rc == WR_AGAIN) {
                break;
            }
            if (rc < 0) {
                mock_log(c->worker->opts, LOG_DEBUG,
                         "event=protocol_error conn=%" PRIu64 " err=%s", c->id, wr_strerror(rc));
                conn_request_close(c, 1002, "protocol error", 14, true);
                break;
            }
            if (wr_ws_is_control(hdr.opcode)) {
                if (avail < (size_t)rc + hdr.payload_len) {
                    break;
                }
                ws_on_control(c, &hdr, c->in + pos + rc, (size_t)hdr.payload_len);
                pos += (size_t)rc + (size_t)hdr.payload_len;
                continue;
            }
            if (wr_ws_sequence_check(&c->seq, &hdr, 0) < 0) {
                conn_request_close(c, 1002, "unexpected continuation", 23, true);
                break;
            }
            if (hdr.opcode != WR_WS_OP_CONTINUATION) {
                c->msg_text = hdr.opcode == WR_WS_OP_TEXT;
                c->msg_bytes = 0;
                scan_init(&c->scan);
            }
            c->hdr = hdr;
            c->in_frame = true;
            c->frame_left = hdr.payload_len;
            c->frame_offset = 0;
            pos += (size_t)rc;
            avail -= (size_t)rc;
        }

        n = avail < c->frame_left ? avail : (size_t)c->frame_left;
        ws_message_feed(c, c->in + pos, n);
        pos += n;
        c->frame_left -= n;
        c->frame_offset += n;
        if (c->frame_left == 0) {
            c->in_frame = false;
            if (c->hdr.fin) {
                ws_message_end(c);
            }
        }
    }

    if (c->close_received || c->fail_pending) {
        pos = c->in_len; /* nothing after a Close or a protocol error is read */
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
}

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

static void http_process(struct conn *c)
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

/* ---- Connection events ---- */

static void conn_on_input(struct conn *c)
{
    switch (c->state) {
    case CONN_HTTP:
        http_process(c);
        if (c->state == CONN_WS && c->in_len > 0) {
            ws_process(c);
        }
        break;
    case CONN_WS:
        ws_process(c);
        break;
    case CONN_HTTP_REPLIED:
    case CONN_LINGER:
        c->in_len = 0;
        break;
    }
}

static void conn_on_readable(struct conn *c)
{
    int i;

    for (i = 0; i < MOCK_READS_PER_WAKEUP && !c->closed; i++) {
        size_t room = sizeof(c->in) - c->in_len;
        ssize_t n;

        if (room == 0) {
            break; /* only a head can fill it, and the parser rejects one over 16 KiB first */
        }
        n = read(c->fd, c->in + c->in_len, room);
        if (n == 0) {
            conn_close(c, c->state == CONN_LINGER ? "linger_done" : "peer_eof");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                conn_close(c, "read_failed");
            }
            break;
        }
        c->in_len += (size_t)n;
        conn_on_input(c);
        if ((size_t)n < room) {
            break;
        }
    }
    if (!c->closed) {
        conn_pump(c);
    }
}

static void conn_on_timer(struct conn *c)
{
    uint64_t expirations;

    if (read(c->timer_fd, &expirations, sizeof(expirations)) < 0) {
        return; /* EAGAIN: the timer was re-armed after it fired */
    }
    switch (c->timer_purpose) {
    case TIMER_SILENCE:
        c->timer_purpose = TIMER_NONE;
        c->cursor.waiting = false;
        conn_pump(c);
        break;
    case TIMER_CLOSE_WAIT:
        conn_close(c, "close_wait_timeout");
        break;
    case TIMER_LINGER:
        conn_close(c, "linger_timeout");
        break;
    case TIMER_NONE:
        break;
    }
}

static void conn_on_socket(struct conn *c, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        conn_on_readable(c);
    }
    if (!c->closed && (events & EPOLLOUT)) {
        conn_pump(c);
    }
}

static void conn_open(struct worker *w, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    struct epoll_event ev;
    int enable = 1;

    if (c == NULL) {
        mock_log(w->opts, LOG_ERROR, "event=accept_failed worker=%u err=%s", w->index,
                 strerror(ENOMEM));
        close(fd);
        return;
    }
    c->worker = w;
    c->id = atomic_fetch_add(&next_conn_id, 1);
    c->fd = fd;
    c->timer_fd = -1;
    c->socket_watch = (struct watch){ WATCH_SOCKET, c };
    c->timer_watch = (struct watch){ WATCH_TIMER, c };
    c->state = CONN_HTTP;

    /* Small frames must not wait for Nagle's algorithm: load generators time each delta. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof(enable));
    ev.events = EPOLLIN;
    ev.data.ptr = &c->socket_watch;
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        mock_log(w->opts, LOG_ERROR, "event=accept_failed worker=%u err=%s", w->index,
                 strerror(errno));
        close(fd);
        free(c);
        return;
    }
    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    w->accepted++;
    mock_log(w->opts, LOG_DEBUG, "event=conn_opened conn=%" PRIu64 " worker=%u", c->id, w->index);
}

/* ---- Workers ---- */

static void worker_pause_accept(struct worker *w, int err)
{
    struct itimerspec spec = { .it_value = { 0, MOCK_ACCEPT_PAUSE_MS * 1000000L } };

    /* Log the first failure and then every 1000th, so a long shortage does not flood stderr. */
    if (w->accept_failures++ % 1000 == 0) {
        mock_log(w->opts, LOG_WARN,
                 "event=accept_paused worker=%u err=%s count=%" PRIu64
                 " hint=\"raise the open file limit (ulimit -n)\"",
                 w->index, strerror(err), w->accept_failures);
    }
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->listen_fd, NULL) == 0) {
        w->accept_paused = true;
        timerfd_settime(w->accept_timer_fd, 0, &spec, NULL);
    }
}

static void worker_resume_accept(struct worker *w)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &w->listen_watch };
    uint64_t expirations;

    if (read(w->accept_timer_fd, &expirations, sizeof(expirations)) < 0 || !w->accept_paused) {
        return;
    }
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev) == 0) {
        w->accept_paused = false;
    }
}

static void worker_accept(struct worker *w)
{
    int i;

    for (i = 0; i < MOCK_ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int err = errno;

        if (fd >= 0) {
            conn_open(w, fd);
            continue;
        }
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            worker_pause_accept(w, err);
            return;
        }
        /* EAGAIN ends the batch, while ECONNABORTED only loses that one client. */
        if (err != EINTR && err != ECONNABORTED) {
            return;
        }
    }
}

static void worker_dispatch(struct worker *w, const struct epoll_event *ev)
{
    struct watch *watch = ev->data.ptr;

    switch (watch->kind) {
    case WATCH_LISTEN:
        worker_accept(w);
        break;
    case WATCH_WAKE:
        w->stopping = true;
        break;
    case WATCH_ACCEPT_TIMER:
        worker_resume_accept(w);
        break;
    case WATCH_SOCKET:
        if (!watch->conn->closed) {
            conn_on_socket(watch->conn, ev->events);
        }
        break;
    case WATCH_TIMER:
        if (!watch->conn->closed) {
            conn_on_timer(watch->conn);
        }
        break;
    }
}

static void worker_free_graveyard(struct worker *w)
{
    while (w->graveyard != NULL) {
        struct conn *c = w->graveyard;

        w->graveyard = c->next;
        free(c);
    }
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct epoll_event events[256];
    int n;
    int i;

    while (!w->stopping) {
        n = epoll_wait(w->epoll_fd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            mock_log(w->opts, LOG_ERROR, "event=epoll_failed worker=%u err=%s", w->index,
                     strerror(errno));
            break;
        }
        for (i = 0; i < n; i++) {
            worker_dispatch(w, &events[i]);
        }
        worker_free_graveyard(w);
    }

    while (w->conns != NULL) {
        conn_close(w->conns, "shutdown");
    }
    worker_free_graveyard(w);
    mock_log(w->opts, LOG_INFO,
             "event=worker_stopped worker=%u connections=%" PRIu64 " turns=%" PRIu64, w->index,
             w->accepted, w->turns);
    return NULL;
}

static int worker_add(struct worker *w, int fd, struct watch *watch, enum watch_kind kind)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = watch };

    watch->kind = kind;
    watch->conn = NULL;
    return epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

static int worker_init(struct worker *w, unsigned index, const struct options *opts)
{
    w->index = index;
    w->opts = opts;
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->accept_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (w->epoll_fd < 0 || w->wake_fd < 0 || w->accept_timer_fd < 0) {
        return -errno;
    }
    if (worker_add(w, w->listen_fd, &w->listen_watch, WATCH_LISTEN) < 0 ||
        worker_add(w, w->wake_fd, &w->wake_watch, WATCH_WAKE) < 0 ||
        worker_add(w, w->accept_timer_fd, &w->accept_timer_watch, WATCH_ACCEPT_TIMER) < 0) {
        return -errno;
    }
    return 0;
}

static void worker_close_fds(struct worker *w)
{
    int *fds[] = { &w->epoll_fd, &w->wake_fd, &w->accept_timer_fd, &w->listen_fd };
    size_t i;

    for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    }
}

/* ---- Listening sockets ---- */

static void set_port(struct sockaddr_storage *addr, uint16_t port)
{
    if (addr->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)addr)->sin6_port = htons(port);
    } else {
        ((struct sockaddr_in *)addr)->sin_port = htons(port);
    }
}

static uint16_t get_port(const struct sockaddr_storage *addr)
{
    if (addr->ss_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    }
    return ntohs(((const struct sockaddr_in *)addr)->sin_port);
}

static void format_address(const struct sockaddr_storage *addr, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];

    if (addr->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, host, sizeof(host));
        snprintf(out, cap, "[%s]:%u", host, get_port(addr));
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%u", host, get_port(addr));
    }
}

/*
 * Binds a plain socket to the address and releases it. SO_REUSEPORT lets any
 * socket of the same user join a port, so without this check a port already
 * served by another program would silently share its connections with the
 * mock. Port 0 is replaced by the free port the kernel picked.
 */
static int port_check_free(struct options *opts)
{
    struct sockaddr_storage bound;
    socklen_t len = sizeof(bound);
    int enable = 1;
    int fd = socket(opts->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = 0;

    if (fd < 0) {
        return -errno;
    }
    /* SO_REUSEADDR only skips TIME_WAIT leftovers, so a listening socket still blocks the bind. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable));
    if (opts->addr.ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &enable, sizeof(enable));
    }
    if (bind(fd, (struct sockaddr *)&opts->addr, opts->addr_len) < 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &len) < 0) {
        rc = -errno;
    } else {
        set_port(&opts->addr, get_port(&bound));
    }
    close(fd);
    return rc;
}

/* Opens one SO_REUSEPORT listener per worker, all on the same port. */
static int listeners_open(struct options *opts, struct worker *workers)
{
    int enable = 1;
    unsigned i;
    int rc = port_check_free(opts);

    if (rc < 0) {
        return rc;
    }
    for (i = 0; i < opts->threads; i++) {
        int fd = socket(opts->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        workers[i].listen_fd = fd;
        if (fd < 0) {
            return -errno;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable));
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &enable, sizeof(enable)) < 0) {
            return -errno;
        }
        if (opts->addr.ss_family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &enable, sizeof(enable));
        }
        if (bind(fd, (struct sockaddr *)&opts->addr, opts->addr_len) < 0 ||
            listen(fd, 4096) < 0) {
            return -errno;
        }
    }
    return 0;
}

/* ---- Command line ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: mock_upstream [OPTIONS]\n"
        "\n"
        "Mock of the OpenAI Responses WebSocket endpoint, for tests and benchmarks.\n"
        "Every response.create message gets one streamed response (a turn).\n"
        "\n"
        "Options:\n"
        "  --listen HOST:PORT       address to listen on: a numeric IPv4 address or\n"
        "                           [IPv6] address (default " MOCK_DEFAULT_LISTEN ";\n"
        "                           port 0 picks a free port, shown in the start-up line)\n"
        "  --threads N              worker threads, each with its own listener (default 1)\n"
        "  --deltas K               response.output_text.delta events per turn (default 5)\n"
        "  --delta-bytes S          bytes of text in each delta (default 16)\n"
        "  --silence-ms N           pause inside each turn, in milliseconds (default 0: none)\n"
        "  --silence-at start|mid   where the pause goes: before response.created, or at the\n"
        "                           midpoint (default mid)\n"
        "  --large-bytes N          add a response.output_item.done event whose \"result\"\n"
        "                           string is N bytes long (default 0: none)\n"
        "  --scenario NAME          normal, error, reset or close (default normal)\n"
        "  --close-code C           Close code for the close scenario, 0 for none (default 1011)\n"
        "  --close-reason TEXT      Close reason for the close scenario, at most 123 bytes\n"
        "                           (default empty)\n"
        "  --usage standard|alias   usage token names: input_/output_ or prompt_/completion_\n"
        "                           (default standard)\n"
        "  --require-auth TOKEN     answer 401 unless the request has\n"
        "                           \"Authorization: Bearer TOKEN\" (default: accept any)\n"
        "  --quiet                  log errors and warnings only\n"
        "  --debug                  also log each request line, the request headers\n"
        "                           (secrets redacted), messages and turns\n"
        "  -h, --help               print this help and exit\n"
        "\n"
        "The midpoint is right after the first delta, or after response.created in a\n"
        "turn without deltas. Scenarios: error sends an error event in place of the\n"
        "events after the last delta; reset sends a TCP RST at the midpoint; close sends\n"
        "a Close frame at the midpoint.\n"
        "\n"
        "A request whose model is \"mock:key=value,key=value,...\" overrides the options\n"
        "for its turn. Keys: deltas, bytes (delta size), silence_ms, silence_at\n"
        "(start|mid), large (bytes), error[=CODE], reset, close=CODE, reason (URL-escaped),\n"
        "usage (alias|standard), scenario (normal|error|reset|close).\n"
        "\n"
        "Usage in response.completed: input_tokens = message bytes / 4, output_tokens =\n"
        "number of deltas (0 for \"generate\": false), total_tokens = their sum.\n");
}

static int parse_listen(const char *text, struct options *opts)
{
    const char *colon;
    char host[INET6_ADDRSTRLEN];
    size_t host_len;
    uint64_t port;

    memset(&opts->addr, 0, sizeof(opts->addr));
    if (text[0] == '[') {
        const char *bracket = strchr(text, ']');

        if (bracket == NULL || bracket[1] != ':') {
            return -1;
        }
        host_len = (size_t)(bracket - text - 1);
        colon = bracket + 1;
        text++;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            return -1;
        }
        host_len = (size_t)(colon - text);
    }
    if (host_len == 0 || host_len >= sizeof(host) ||
        !parse_u64(colon + 1, strlen(colon + 1), 65535, &port)) {
        return -1;
    }
    memcpy(host, text, host_len);
    host[host_len] = '\0';

    if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&opts->addr)->sin6_addr) == 1) {
        opts->addr.ss_family = AF_INET6;
        opts->addr_len = sizeof(struct sockaddr_in6);
    } else if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&opts->addr)->sin_addr) == 1) {
        opts->addr.ss_family = AF_INET;
        opts->addr_len = sizeof(struct sockaddr_in);
    } else {
        return -1;
    }
    set_port(&opts->addr, (uint16_t)port);
    return 0;
}

static bool option_number(const char *name, const char *value, uint64_t min, uint64_t max,
                          uint64_t *out)
{
    if (parse_u64(value, strlen(value), max, out) && *out >= min) {
        return true;
    }
    fprintf(stderr, "mock_upstream: invalid %s \"%s\": expected a whole number from %" PRIu64
            " to %" PRIu64 "\n", name, value, min, max);
    return false;
}

/* Sets an option that takes one of a few words, with the same rules as the model key. */
static bool option_word(struct turn_params *p, const char *name, const char *key, const char *value)
{
    if (apply_model_key(p, key, strlen(key), value, strlen(value))) {
        return true;
    }
    fprintf(stderr, "mock_upstream: invalid %s \"%s\"\n", name, value);
    return false;
}

enum {
    OPT_LISTEN = 256,
    OPT_THREADS,
    OPT_DELTAS,
    OPT_DELTA_BYTES,
    OPT_SILENCE_MS,
    OPT_SILENCE_AT,
    OPT_LARGE_BYTES,
    OPT_SCENARIO,
    OPT_CLOSE_CODE,
    OPT_CLOSE_REASON,
    OPT_USAGE,
    OPT_REQUIRE_AUTH,
    OPT_QUIET,
    OPT_DEBUG,
};

/* Applies one option. Returns false after printing what was wrong. */
static bool options_apply(struct options *opts, int opt, const char *arg)
{
    struct turn_params *p = &opts->defaults;
    uint64_t number;
    size_t len;

    switch (opt) {
    case OPT_LISTEN:
        if (parse_listen(arg, opts) < 0) {
            fprintf(stderr, "mock_upstream: invalid --listen \"%s\": expected IPV4:PORT or "
                    "[IPV6]:PORT with a numeric address, e.g. 127.0.0.1:18080\n", arg);
            return false;
        }
        return true;
    case OPT_THREADS:
        if (!option_number("--threads", arg, 1, MOCK_MAX_THREADS, &number)) {
            return false;
        }
        opts->threads = (unsigned)number;
        return true;
    case OPT_DELTAS:
        return option_number("--deltas", arg, 0, MOCK_MAX_DELTAS, &p->deltas);
    case OPT_DELTA_BYTES:
        return option_number("--delta-bytes", arg, 0, MOCK_MAX_DELTA_BYTES, &p->delta_bytes);
    case OPT_SILENCE_MS:
        return option_number("--silence-ms", arg, 0, MOCK_MAX_SILENCE_MS, &p->silence_ms);
    case OPT_LARGE_BYTES:
        return option_number("--large-bytes", arg, 0, MOCK_MAX_LARGE_BYTES, &p->large_bytes);
    case OPT_CLOSE_CODE:
        if (!option_number("--close-code", arg, 0, 65535, &number)) {
            return false;
        }
        p->close_code = (unsigned)number;
        return true;
    case OPT_CLOSE_REASON:
        len = strlen(arg);
        if (len > WR_WS_MAX_CLOSE_REASON) {
            fprintf(stderr, "mock_upstream: --close-reason is %zu bytes, the maximum is %d\n",
                    len, WR_WS_MAX_CLOSE_REASON);
            return false;
        }
        memcpy(p->close_reason, arg, len);
        p->close_reason_len = len;
        return true;
    case OPT_SILENCE_AT:
        return option_word(p, "--silence-at", "silence_at", arg);
    case OPT_SCENARIO:
        return option_word(p, "--scenario", "scenario", arg);
    case OPT_USAGE:
        return option_word(p, "--usage", "usage", arg);
    case OPT_REQUIRE_AUTH:
        free(opts->auth_expected);
        opts->auth_expected = malloc(strlen(arg) + sizeof("Bearer "));
        if (opts->auth_expected == NULL) {
            return false;
        }
        strcpy(opts->auth_expected, "Bearer ");
        strcat(opts->auth_expected, arg);
        return true;
    case OPT_QUIET:
        opts->log_level = LOG_WARN;
        return true;
    case OPT_DEBUG:
        opts->log_level = LOG_DEBUG;
        return true;
    default:
        return false;
    }
}

/* Returns 0 to run, 1 after --help, -1 on an invalid command line. */
static int options_parse(int argc, char **argv, struct options *opts)
{
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "deltas", required_argument, NULL, OPT_DELTAS },
        { "delta-bytes", required_argument, NULL, OPT_DELTA_BYTES },
        { "silence-ms", required_argument, NULL, OPT_SILENCE_MS },
        { "silence-at", required_argument, NULL, OPT_SILENCE_AT },
        { "large-bytes", required_argument, NULL, OPT_LARGE_BYTES },
        { "scenario", required_argument, NULL, OPT_SCENARIO },
        { "close-code", required_argument, NULL, OPT_CLOSE_CODE },
        { "close-reason", required_argument, NULL, OPT_CLOSE_REASON },
        { "usage", required_argument, NULL, OPT_USAGE },
        { "require-auth", required_argument, NULL, OPT_REQUIRE_AUTH },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "debug", no_argument, NULL, OPT_DEBUG },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt;

    memset(opts, 0, sizeof(*opts));
    opts->threads = 1;
    opts->log_level = LOG_INFO;
    opts->defaults.deltas = 5;
    opts->defaults.delta_bytes = 16;
    opts->defaults.close_code = 1011;
    strcpy(opts->defaults.error_code, "mock_error");
    parse_listen(MOCK_DEFAULT_LISTEN, opts);

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 1;
        }
        if (opt == '?' || !options_apply(opts, opt, optarg)) {
            fprintf(stderr, "Run mock_upstream --help for the options.\n");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mock_upstream: unexpected argument \"%s\"\n", argv[optind]);
        fprintf(stderr, "Run mock_upstream --help for the options.\n");
        return -1;
    }
    return 0;
}

/* ---- Start-up ---- */

static bool pattern_init(struct pattern *p)
{
    size_t size = MOCK_PATTERN_SPAN + p->period;
    size_t i;

    p->span = malloc(size);
    if (p->span == NULL) {
        return false;
    }
    for (i = 0; i < size; i++) {
        p->span[i] = (uint8_t)p->unit[i % p->period];
    }
    return true;
}

/* Raises the soft open-file limit to the hard one, because each connection uses one or two fds. */
static void raise_fd_limit(void)
{
    struct rlimit lim;

    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

static int run(struct options *opts, struct worker *workers)
{
    char address[INET6_ADDRSTRLEN + 16];
    sigset_t signals;
    unsigned started = 0;
    unsigned i;
    int sig = 0;
    int rc;

    rc = listeners_open(opts, workers);
    if (rc < 0) {
        format_address(&opts->addr, address, sizeof(address));
        fprintf(stderr, "mock_upstream: cannot listen on %s: %s%s\n", address, strerror(-rc),
                rc == -EADDRINUSE ? "; choose another port with --listen (port 0 picks a free one)"
                                  : "");
        return 1;
    }
    for (i = 0; i < opts->threads; i++) {
        rc = worker_init(&workers[i], i, opts);
        if (rc < 0) {
            fprintf(stderr, "mock_upstream: cannot set up worker %u: %s\n", i, strerror(-rc));
            return 1;
        }
    }

    /* Workers inherit the blocked mask, so SIGINT and SIGTERM reach sigwait below. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (i = 0; i < opts->threads; i++) {
        rc = pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]);
        if (rc != 0) {
            fprintf(stderr, "mock_upstream: cannot start worker %u: %s\n", i, strerror(rc));
            break;
        }
        started++;
    }
    if (started == opts->threads) {
        format_address(&opts->addr, address, sizeof(address));
        fprintf(stderr, "mock_upstream listening on %s\n", address);
        sigwait(&signals, &sig);
        mock_log(opts, LOG_INFO, "event=stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }

    for (i = 0; i < started; i++) {
        uint64_t wake = 1;

        if (write(workers[i].wake_fd, &wake, sizeof(wake)) < 0) {
            mock_log(opts, LOG_ERROR, "event=wake_failed worker=%u err=%s", i, strerror(errno));
        }
        pthread_join(workers[i].thread, NULL);
    }
    return started == opts->threads ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct options opts;
    struct worker *workers;
    unsigned i;
    int rc;

    rc = options_parse(argc, argv, &opts);
    if (rc != 0) {
        free(opts.auth_expected);
        return rc > 0 ? 0 : 2;
    }
    if (!pattern_init(&text_pattern) || !pattern_init(&result_pattern)) {
        fprintf(stderr, "mock_upstream: out of memory\n");
        return 1;
    }
    raise_fd_limit();

    workers = calloc(opts.threads, sizeof(*workers));
    if (workers == NULL) {
        fprintf(stderr, "mock_upstream: out of memory\n");
        return 1;
    }
    for (i = 0; i < opts.threads; i++) {
        workers[i].epoll_fd = -1;
        workers[i].wake_fd = -1;
        workers[i].accept_timer_fd = -1;
        workers[i].listen_fd = -1;
    }

    rc = run(&opts, workers);

    for (i = 0; i < opts.threads; i++) {
        worker_close_fds(&workers[i]);
    }
    free(workers);
    free(text_pattern.span);
    free(result_pattern.span);
    free(opts.auth_expected);
    return rc;
}
