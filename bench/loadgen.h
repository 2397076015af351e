/* SPDX-License-Identifier: MIT */
/* Shared state of the load generator: options, connections, totals and the measured window. */
#ifndef WR_BENCH_LOADGEN_H
#define WR_BENCH_LOADGEN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "bench/loadgen_stats.h"
#include "proto/ws_frame.h"

#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull

#define LG_READ_BYTES (256 * 1024)  /* one recv into the shared buffer */
#define LG_READS_PER_WAKEUP 4       /* recv calls for one connection before others get a turn */
#define LG_EPOLL_EVENTS 512
#define LG_TICK_MS 20               /* maximum epoll wait, so timers and ramp-up stay on time */
#define LG_RSS_PERIOD_NS (250 * NS_PER_MS)
#define LG_HANDSHAKE_TIMEOUT_NS (10 * NS_PER_S) /* connect plus the upgrade */
#define LG_CLOSE_TIMEOUT_NS (2 * NS_PER_S)      /* wait for the server's Close and EOF */
#define LG_DRAIN_TIMEOUT_NS (3 * NS_PER_S)      /* all connections, after the window */
#define LG_HEAD_BYTES 1024          /* first bytes kept of each message, where "type" is */
#define LG_TAIL_BYTES 128           /* last bytes kept, where the mock writes "ts_ns" */
#define LG_KEPT_OUT_BYTES 4096      /* larger send buffers are freed once empty */
#define LG_MAX_PROXY_PIDS 8
#define LG_MAX_CONNECTIONS 1000000
#define LG_ERRORS_PRINTED 3         /* per kind; later ones are only counted */
#define LG_BEARER_MAX 512

/* Filler repeated to pad response.create to --request-bytes. */
#define LG_REQUEST_TEXT "Refactor the parser so that every state saves its position on exit. "

enum lg_mode {
    MODE_STREAM, /* each connection runs its turns back to back */
    MODE_CHURN,  /* connect, one turn, close, repeat */
    MODE_IDLE,   /* one turn per connection, then hold the connections open */
};

enum conn_state {
    CONN_UNUSED,     /* slot not started yet */
    CONN_CONNECTING, /* non-blocking connect in progress */
    CONN_HANDSHAKE,  /* upgrade request queued, reading the 101 */
    CONN_READY,      /* WebSocket open, no turn in flight, not idle */
    CONN_TURN,       /* response.create sent, reading events until the terminal one */
    CONN_IDLE,       /* turn done, held open, replying to Pings with Pongs */
    CONN_CLOSING,    /* Close sent, waiting for the server's Close and EOF */
    CONN_DONE,       /* socket closed; a churn slot restarts from here */
    CONN_STATE_COUNT,
};

enum lg_error {
    ERR_CONNECT,      /* socket or connect failed, or timed out */
    ERR_HANDSHAKE,    /* not a valid 101, or it timed out */
    ERR_PROTOCOL,     /* invalid frame from the server */
    ERR_CLOSED,       /* EOF, reset or Close from the server before the client was done */
    ERR_TURN_TIMEOUT, /* no event within the turn timeout */
    ERR_FAILED_EVENT, /* the turn ended with a failure event: response.failed, error, ... */
    ERR_KIND_COUNT,
};

enum lg_phase {
    PHASE_SETUP,   /* opening connections (and, in idle mode, running their turn) */
    PHASE_MEASURE, /* the measured window */
    PHASE_DRAIN,   /* closing what is still open */
    PHASE_DONE,
};

struct options {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const char *target;      /* as given, for the Host header and the report */
    const char *path;
    const char *label;
    const char *key;         /* sent as "Authorization: Bearer KEY"; never printed */
    enum lg_mode mode;
    unsigned connections;
    unsigned turns;          /* per connection in stream mode */
    uint64_t max_turns;      /* count bound over the whole run */
    uint64_t duration_ns;    /* time bound over the whole run */
    uint64_t idle_ns;
    uint64_t turn_timeout_ns;
    double ramp_rate;        /* connections started per second; 0 = all at once */
    size_t request_bytes;
    uint64_t deltas;
    uint64_t delta_bytes;
    uint64_t silence_ms;
    uint64_t large_bytes;
    pid_t proxy_pids[LG_MAX_PROXY_PIDS];
    size_t num_proxy_pids;
    pid_t upstream_pid;      /* mock_upstream, for its CPU time; 0 = none */
};

/* Pending output: whole frames only, so a Pong queued behind a request never splits it. */
struct out_queue {
    uint8_t *data;
    size_t pos; /* next byte to send */
    size_t len;
    size_t cap;
};

/* Streaming decoder state for frames from the server. */
struct frame_reader {
    uint8_t header[WR_WS_MAX_HEADER];
    size_t header_len;       /* bytes of the next frame header gathered so far */
    bool in_payload;
    struct wr_ws_header frame;
    uint64_t payload_left;
    struct wr_ws_sequence sequence;
    uint8_t message_opcode;  /* text or binary, of the message being read */
    uint64_t message_len;
    char head[LG_HEAD_BYTES];
    size_t head_len;
    char tail[LG_TAIL_BYTES]; /* the last bytes past head, oldest first */
    size_t tail_len;
    uint8_t control[WR_WS_MAX_CONTROL_PAYLOAD];
    size_t control_len;
};

struct conn {
    int fd;                  /* -1 when closed */
    unsigned index;
    enum conn_state state;
    bool want_write;         /* EPOLLOUT is registered */
    bool restart;            /* churn: start again after this event batch */
    bool close_handshake;    /* the server's Close has arrived */
    uint64_t deadline_ns;    /* for the current state; 0 = none */
    unsigned turns_done;
    char ws_key[25];
    char *handshake;         /* response head being read, NULL after the upgrade */
    size_t handshake_len;
    struct out_queue out;
    struct frame_reader reader;
};

struct totals {
    uint64_t events;          /* text messages */
    uint64_t bytes;           /* payload bytes of data frames */
    uint64_t turns_started;
    uint64_t turns_completed;
    uint64_t turns_abandoned; /* in flight when the run stopped */
    uint64_t connections_opened; /* upgrades that got a valid 101 */
    uint64_t connections_cycled; /* connections that ran their turns and closed cleanly */
    uint64_t pings;
    uint64_t pongs;
    uint64_t close_timeouts;
    uint64_t errors[ERR_KIND_COUNT];
};

/* CPU counters read together at one moment. */
struct cpu_marks {
    double client_s;         /* this process, from getrusage */
    uint64_t upstream_ticks; /* --upstream-pid and its descendants */
    uint64_t machine_ticks;  /* busy time of all CPUs */
};

struct window {
    bool open;
    bool opened;
    uint64_t start_ns;
    uint64_t end_ns;
    struct totals start;      /* totals when the window opened */
    struct totals end;
    struct cpu_marks cpu_start;
    struct cpu_marks cpu_end;
    struct lg_proc_sample proxy_start;
    struct lg_proc_sample proxy_end;
    uint64_t proxy_rss_peak_kib;
    uint64_t next_rss_ns;
};

struct loadgen {
    struct options opts;
    int epoll_fd;
    struct conn *conns;
    enum lg_phase phase;
    const char *stopped_by;
    uint64_t run_start_ns;
    uint64_t run_deadline_ns;
    uint64_t phase_deadline_ns; /* end of the idle time, or of the drain */
    uint64_t next_deadline_check_ns; /* connection deadlines are scanned once per tick */
    unsigned next_slot;         /* slots below this have been started */
    uint64_t turn_budget;       /* turns (churn: connections) that may still start */
    unsigned state_count[CONN_STATE_COUNT];
    bool restarts_pending;
    struct totals totals;
    struct window window;
    struct lg_histogram latency; /* nanoseconds, window only */
    struct lg_proc_sample proxy_baseline; /* before the first connection */
    struct cpu_marks cpu_at_start;
    uint8_t *request;            /* the response.create message, unmasked */
    size_t request_len;
    char upgrade_head[1024 + LG_BEARER_MAX]; /* the request head without Sec-WebSocket-Key */
    size_t upgrade_head_len;
    uint8_t read_buf[LG_READ_BYTES];
    uint64_t rng;
};

/* Names of the error kinds, as the report prints them. */
extern const char *const lg_error_names[ERR_KIND_COUNT];

/* The signal that asked the run to stop, or 0. */
extern volatile sig_atomic_t lg_stop_signal;

static inline uint64_t lg_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Connections (loadgen_conn.c). */
void lg_conn_start(struct loadgen *lg, struct conn *c);
void lg_conn_begin_close(struct loadgen *lg, struct conn *c);
void lg_conn_close_socket(struct loadgen *lg, struct conn *c);
void lg_turn_next(struct loadgen *lg, struct conn *c);
void lg_conn_on_event(struct loadgen *lg, struct conn *c, uint32_t events);
void lg_conns_check_deadlines(struct loadgen *lg, uint64_t now);

/* The event loop (loadgen_run.c). */
int lg_run(struct loadgen *lg);

#endif
