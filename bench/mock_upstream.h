/* SPDX-License-Identifier: MIT */
/* Constants, types and functions shared by the files of mock_upstream. */
#ifndef WR_BENCH_MOCK_UPSTREAM_H
#define WR_BENCH_MOCK_UPSTREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

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

/* The reply text and the large "result" string, set up by pattern_init at start-up. */
extern struct pattern text_pattern;
extern struct pattern result_pattern;

/* Names of enum scenario, in its order. */
extern const char *const scenario_names[];

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

/* Outcome of one turn_step call. */
enum step {
    STEP_EMITTED, /* an event was queued, or the cursor moved */
    STEP_WAIT,    /* a silence timer runs */
    STEP_RESET,   /* reset the connection once the queue is sent */
    STEP_CLOSE,   /* a Close frame was queued */
    STEP_DONE,    /* the turn is finished */
};

/* mock_upstream.c: logging */
bool log_enabled(const struct options *opts, enum log_level level);
void mock_log(const struct options *opts, enum log_level level, const char *fmt, ...);
const char *log_value(char *out, size_t cap, const char *s, size_t len);

/* mock_model.c: numbers, the model grammar and the request scanner */
bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
bool text_equal(const char *s, size_t len, const char *word);
bool apply_model_key(struct turn_params *p, const char *key, size_t key_len,
                     const char *value, size_t value_len);
const char *apply_model(struct turn_params *p, const char *model, size_t len,
                        size_t *bad_len);
void scan_init(struct request_scan *s);
void scan_feed(struct request_scan *s, const uint8_t *p, size_t n);
bool scan_is_response_create(const struct request_scan *s);
bool model_is_json_safe(const struct capture *c);

/* mock_out.c: the output queue */
bool out_empty(const struct conn *c);
bool out_has_room(struct conn *c, size_t arena_bytes);
void out_bytes(struct conn *c, const void *data, size_t len);
__attribute__((format(printf, 2, 3)))
void out_printf(struct conn *c, const char *fmt, ...);
void out_run(struct conn *c, const struct pattern *p, uint64_t offset, uint64_t len);
void frame_begin(struct conn *c);
void frame_end(struct conn *c, uint8_t opcode);
void queue_control(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len);
int out_flush(struct conn *c, size_t *sent);

/* mock_turn.c: turn generation */
enum step turn_step(struct conn *c);

/* mock_conn.c: connections */
void conn_close(struct conn *c, const char *reason);
bool conn_arm_timer(struct conn *c, enum timer_purpose purpose, uint64_t ms);
void conn_on_timer(struct conn *c);
void conn_on_socket(struct conn *c, uint32_t events);
void conn_open(struct worker *w, int fd);

/* mock_http.c: the request head */
void http_process(struct conn *c);

/* mock_worker.c: workers and listening sockets */
void *worker_run(void *arg);
int worker_init(struct worker *w, unsigned index, const struct options *opts);
void worker_close_fds(struct worker *w);
void set_port(struct sockaddr_storage *addr, uint16_t port);
void format_address(const struct sockaddr_storage *addr, char *out, size_t cap);
int listeners_open(struct options *opts, struct worker *workers);

#endif
