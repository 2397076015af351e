/* SPDX-License-Identifier: MIT */
/* Load generator connections: connect, WebSocket upgrade, frames, turns and Close. */
#include "bench/loadgen.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/wr.h"
#include "proto/http.h"

const char *const lg_error_names[ERR_KIND_COUNT] = {
    "connect", "handshake", "protocol", "closed", "turn_timeout", "failed_event",
};


/* xorshift64*: masks and handshake keys need to vary, not to be secret. */
static uint64_t random_next(struct loadgen *lg)
{
    lg->rng ^= lg->rng >> 12;
    lg->rng ^= lg->rng << 25;
    lg->rng ^= lg->rng >> 27;
    return lg->rng * 0x2545F4914F6CDD1Dull;
}

static void base64_encode(const uint8_t *in, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    size_t o = 0;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);

        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

/* ---- Errors ---- */

static void count_error(struct loadgen *lg, struct conn *c, enum lg_error kind, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

/* Counts an error and prints the first few of each kind to stderr. */
static void count_error(struct loadgen *lg, struct conn *c, enum lg_error kind, const char *fmt,
                        ...)
{
    uint64_t n = ++lg->totals.errors[kind];
    va_list ap;

    if (n > LG_ERRORS_PRINTED) {
        return;
    }
    fprintf(stderr, "loadgen: connection %u: %s error: ", c->index, lg_error_names[kind]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (n == LG_ERRORS_PRINTED) {
        fprintf(stderr, " (further %s errors are counted, not printed)", lg_error_names[kind]);
    }
    fputc('\n', stderr);
}

/* ---- Connection state and output ---- */

static void conn_set_state(struct loadgen *lg, struct conn *c, enum conn_state state)
{
    assert(lg->state_count[c->state] > 0);
    lg->state_count[c->state]--;
    lg->state_count[state]++;
    c->state = state;
}

static int conn_watch(struct loadgen *lg, struct conn *c, bool want_write)
{
    struct epoll_event ev;

    if (c->want_write == want_write) {
        return 0;
    }
    ev.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0);
    ev.data.ptr = c;
    if (epoll_ctl(lg->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        return -errno;
    }
    c->want_write = want_write;
    return 0;
}

static uint8_t *out_reserve(struct out_queue *q, size_t len)
{
    size_t need = q->len + len;

    if (need > q->cap) {
        size_t cap = q->cap ? q->cap : 256;
        uint8_t *data;

        while (cap < need) {
            cap *= 2;
        }
        data = realloc(q->data, cap);
        if (data == NULL) {
            return NULL;
        }
        q->data = data;
        q->cap = cap;
    }
    q->len = need;
    return q->data + need - len;
}

static void out_free(struct out_queue *q)
{
    free(q->data);
    memset(q, 0, sizeof(*q));
}

/* Queues one masked client frame; a client must mask every frame (RFC 6455 section 5.3). */
static int queue_frame(struct loadgen *lg, struct conn *c, uint8_t opcode, const uint8_t *payload,
                       size_t len)
{
    uint8_t header[WR_WS_MAX_HEADER];
    uint64_t random = random_next(lg);
    uint8_t mask[4];
    size_t header_len;
    uint8_t *dst;

    memcpy(mask, &random, sizeof(mask));
    header_len = wr_ws_header_encode(header, true, opcode, len, mask);
    dst = out_reserve(&c->out, header_len + len);
    if (dst == NULL) {
        return WR_ENOMEM;
    }
    memcpy(dst, header, header_len);
    if (len > 0) {
        memcpy(dst + header_len, payload, len);
        wr_ws_mask(dst + header_len, len, mask, 0);
    }
    return 0;
}

/* Sends what is queued, and watches EPOLLOUT while bytes remain. Returns 0 or a negative errno. */
static int conn_flush(struct loadgen *lg, struct conn *c)
{
    struct out_queue *q = &c->out;

    while (q->pos < q->len) {
        ssize_t n = send(c->fd, q->data + q->pos, q->len - q->pos, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return conn_watch(lg, c, true);
            }
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        q->pos += (size_t)n;
    }

    /* Idle connections keep no request-sized buffer around. */
    if (q->cap > LG_KEPT_OUT_BYTES) {
        out_free(q);
    }
    q->pos = 0;
    q->len = 0;
    return conn_watch(lg, c, false);
}

void lg_conn_close_socket(struct loadgen *lg, struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    free(c->handshake);
    c->handshake = NULL;
    out_free(&c->out);
    c->want_write = false;
    c->deadline_ns = 0;
    conn_set_state(lg, c, CONN_DONE);
    if (lg->opts.mode == MODE_CHURN && lg->phase <= PHASE_MEASURE && lg->turn_budget > 0) {
        c->restart = true;
        lg->restarts_pending = true;
    }
}

/* Ends a connection after an error, counting a turn in flight as abandoned. */
static void conn_abort(struct loadgen *lg, struct conn *c)
{
    if (c->state == CONN_TURN) {
        lg->totals.turns_abandoned++;
    }
    lg_conn_close_socket(lg, c);
}

/* Describes a negative errno with strerror, and a wsrelay code (WR_E*) by its name. */
static const char *error_text(int err)
{
    return err <= WR_AGAIN ? wr_strerror(err) : strerror(-err);
}

static void conn_fail_errno(struct loadgen *lg, struct conn *c, enum lg_error kind, int err,
                            const char *action)
{
    count_error(lg, c, kind, "%s failed: %s", action, error_text(err));
    conn_abort(lg, c);
}

/* Sends a Close with code 1000 and waits for the server's Close and EOF. */
void lg_conn_begin_close(struct loadgen *lg, struct conn *c)
{
    uint8_t payload[WR_WS_MAX_CONTROL_PAYLOAD];
    size_t len = wr_ws_close_build(payload, 1000, "", 0);
    int rc;

    if (c->state == CONN_TURN) {
        lg->totals.turns_abandoned++;
    }
    if (c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE) {
        lg_conn_close_socket(lg, c);
        return;
    }
    conn_set_state(lg, c, CONN_CLOSING);
    c->deadline_ns = lg_now_ns() + LG_CLOSE_TIMEOUT_NS;
    if (c->close_handshake) {
        /* The server closed first, and the reply to its Close is queued already. */
        return;
    }
    rc = queue_frame(lg, c, WR_WS_OP_CLOSE, payload, len);
    if (rc == 0) {
        rc = conn_flush(lg, c);
    }
    if (rc < 0) {
        /* The server may have closed first, so a failed Close does not count as an error. */
        lg_conn_close_socket(lg, c);
    }
}

/* ---- Turns ---- */

/* Churn mode takes its count from the budget when a connection starts, the others per turn. */
static bool turn_may_start(struct loadgen *lg, struct conn *c)
{
    if (lg->phase > PHASE_MEASURE) {
        return false;
    }
    switch (lg->opts.mode) {
    case MODE_STREAM:
        return lg->turn_budget > 0 && c->turns_done < lg->opts.turns;
    case MODE_IDLE:
        return lg->turn_budget > 0 && c->turns_done == 0;
    case MODE_CHURN:
        return c->turns_done == 0;
    }
    return false;
}

static void turn_start(struct loadgen *lg, struct conn *c)
{
    int rc;

    if (lg->opts.mode != MODE_CHURN) {
        lg->turn_budget--;
    }
    lg->totals.turns_started++;
    conn_set_state(lg, c, CONN_TURN);
    c->deadline_ns = lg_now_ns() + lg->opts.turn_timeout_ns;
    rc = queue_frame(lg, c, WR_WS_OP_TEXT, lg->request, lg->request_len);
    if (rc == 0) {
        rc = conn_flush(lg, c);
    }
    if (rc < 0) {
        conn_fail_errno(lg, c, ERR_CLOSED, rc, "sending response.create");
    }
}

/* Starts the next turn, keeps the connection idle, or closes it, by mode and bounds. */
void lg_turn_next(struct loadgen *lg, struct conn *c)
{
    if (lg->opts.mode == MODE_STREAM && lg->phase == PHASE_SETUP) {
        /* Streaming turns wait for the window, so that it measures every connection busy. */
        c->deadline_ns = 0;
        return;
    }
    if (turn_may_start(lg, c)) {
        turn_start(lg, c);
        return;
    }
    if (lg->opts.mode == MODE_IDLE && lg->phase <= PHASE_MEASURE) {
        conn_set_state(lg, c, CONN_IDLE);
        c->deadline_ns = 0;
        return;
    }
    conn_set_state(lg, c, CONN_READY);
    lg_conn_begin_close(lg, c);
}

/* ---- Incoming messages ---- */

/* Finds "key" followed by optional spaces and a colon, and returns the byte after the colon. */
static const char *json_find_value(const char *text, size_t len, const char *key)
{
    size_t key_len = strlen(key);
    const char *end = text + len;
    const char *p = text;

    while (p + key_len + 2 < end) {
        const char *hit = memmem(p, (size_t)(end - p), key, key_len);
        const char *q;

        if (hit == NULL) {
            return NULL;
        }
        q = hit + key_len;
        if (hit > text && hit[-1] == '"' && q < end && *q == '"') {
            q++;
            while (q < end && (*q == ' ' || *q == '\t')) {
                q++;
            }
            if (q < end && *q == ':') {
                q++;
                while (q < end && (*q == ' ' || *q == '\t')) {
                    q++;
                }
                return q;
            }
        }
        p = hit + 1;
    }
    return NULL;
}

/* Copies the string value of the first "type" member into out, or returns false. */
static bool message_type(const struct frame_reader *r, char *out, size_t cap)
{
    const char *end = r->head + r->head_len;
    const char *p = json_find_value(r->head, r->head_len, "type");
    size_t n = 0;

    if (p == NULL || p >= end || *p != '"') {
        return false;
    }
    for (p++; p < end && *p != '"' && n + 1 < cap; p++) {
        out[n++] = *p;
    }
    out[n] = '\0';
    return p < end && *p == '"';
}

static bool parse_ts_ns(const char *text, size_t len, uint64_t *ts)
{
    const char *p = json_find_value(text, len, "ts_ns");
    const char *end = text + len;
    uint64_t value = 0;
    bool digits = false;

    if (p == NULL) {
        return false;
    }
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        value = value * 10 + (uint64_t)(*p - '0');
        digits = true;
    }
    *ts = value;
    return digits && p < end;
}

/* Looks for "ts_ns" in the head of the message, then in its tail. */
static bool message_ts_ns(const struct frame_reader *r, uint64_t *ts)
{
    return parse_ts_ns(r->head, r->head_len, ts) || parse_ts_ns(r->tail, r->tail_len, ts);
}

static bool type_is_failure(const char *type)
{
    return strcmp(type, "response.failed") == 0 || strcmp(type, "response.incomplete") == 0 ||
           strcmp(type, "response.cancelled") == 0 || strcmp(type, "error") == 0;
}

static void on_text_message(struct loadgen *lg, struct conn *c)
{
    struct frame_reader *r = &c->reader;
    uint64_t arrived = lg_now_ns();
    char type[64];
    uint64_t sent;

    lg->totals.events++;
    if (lg->window.open && message_ts_ns(r, &sent)) {
        lg_histogram_record(&lg->latency, arrived > sent ? arrived - sent : 0);
    }
    if (c->state != CONN_TURN || !message_type(r, type, sizeof(type))) {
        return;
    }

    c->deadline_ns = arrived + lg->opts.turn_timeout_ns;
    if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.done") == 0) {
        lg->totals.turns_completed++;
    } else if (type_is_failure(type)) {
        count_error(lg, c, ERR_FAILED_EVENT, "the turn ended with %s", type);
    } else {
        return;
    }
    c->turns_done++;
    conn_set_state(lg, c, CONN_READY);
    lg_turn_next(lg, c);
}

/* Handles a whole control frame. Returns false once the connection is closed. */
static bool on_control_frame(struct loadgen *lg, struct conn *c)
{
    struct frame_reader *r = &c->reader;
    unsigned code;
    const uint8_t *reason;
    size_t reason_len;
    int rc;

    switch (r->frame.opcode) {
    case WR_WS_OP_PING:
        lg->totals.pings++;
        rc = queue_frame(lg, c, WR_WS_OP_PONG, r->control, r->control_len);
        if (rc == 0) {
            rc = conn_flush(lg, c);
        }
        if (rc < 0) {
            conn_fail_errno(lg, c, ERR_CLOSED, rc, "sending a Pong");
            return false;
        }
        lg->totals.pongs++;
        return true;
    case WR_WS_OP_PONG:
        return true;
    case WR_WS_OP_CLOSE:
        break;
    default:
        assert(!"data opcode reached on_control_frame");
        return true;
    }

    if (wr_ws_close_parse(r->control, r->control_len, &code, &reason, &reason_len) < 0) {
        count_error(lg, c, ERR_PROTOCOL, "invalid Close payload");
        conn_abort(lg, c);
        return false;
    }
    c->close_handshake = true;
    if (c->state == CONN_CLOSING) {
        /* The server replied to our Close and closes the TCP connection next. */
        return true;
    }
    count_error(lg, c, ERR_CLOSED, "the server sent Close %u in state %d", code, (int)c->state);
    rc = queue_frame(lg, c, WR_WS_OP_CLOSE, r->control, r->control_len < 2 ? r->control_len : 2);
    if (rc == 0) {
        rc = conn_flush(lg, c);
    }
    if (rc < 0) {
        conn_abort(lg, c);
        return false;
    }
    lg_conn_begin_close(lg, c);
    return c->fd >= 0;
}

/* Keeps the first LG_HEAD_BYTES of the message and the last LG_TAIL_BYTES after them. */
static void message_keep(struct frame_reader *r, const uint8_t *data, size_t len)
{
    size_t room = LG_HEAD_BYTES - r->head_len;
    size_t n = len < room ? len : room;

    memcpy(r->head + r->head_len, data, n);
    r->head_len += n;
    data += n;
    len -= n;
    if (len >= LG_TAIL_BYTES) {
        memcpy(r->tail, data + len - LG_TAIL_BYTES, LG_TAIL_BYTES);
        r->tail_len = LG_TAIL_BYTES;
    } else if (len > 0) {
        size_t keep = r->tail_len + len <= LG_TAIL_BYTES ? r->tail_len : LG_TAIL_BYTES - len;

        memmove(r->tail, r->tail + r->tail_len - keep, keep);
        memcpy(r->tail + keep, data, len);
        r->tail_len = keep + len;
    }
}

/* Validates a new frame header and sets up its payload. Returns false once the connection is closed. */
static bool on_frame_header(struct loadgen *lg, struct conn *c)
{
    struct frame_reader *r = &c->reader;
    int rc = wr_ws_sequence_check(&r->sequence, &r->frame, 0);

    if (rc < 0) {
        count_error(lg, c, ERR_PROTOCOL, "%s", wr_strerror(rc));
        conn_abort(lg, c);
        return false;
    }
    r->in_payload = true;
    r->payload_left = r->frame.payload_len;
    r->control_len = 0;
    if (!wr_ws_is_control(r->frame.opcode) && r->frame.opcode != WR_WS_OP_CONTINUATION) {
        r->message_opcode = r->frame.opcode;
        r->message_len = 0;
        r->head_len = 0;
        r->tail_len = 0;
    }
    return true;
}

/* Handles the end of a frame's payload. Returns false once the connection is closed. */
static bool on_frame_end(struct loadgen *lg, struct conn *c)
{
    struct frame_reader *r = &c->reader;

    r->in_payload = false;
    r->header_len = 0;
    if (wr_ws_is_control(r->frame.opcode)) {
        return on_control_frame(lg, c);
    }
    if (r->frame.fin && r->message_opcode == WR_WS_OP_TEXT) {
        on_text_message(lg, c);
    }
    return c->fd >= 0;
}

/* Feeds bytes read from the server to the frame decoder. Returns false once the connection is closed. */
static bool frames_feed(struct loadgen *lg, struct conn *c, const uint8_t *data, size_t len)
{
    struct frame_reader *r = &c->reader;

    while (len > 0 || (r->in_payload && r->payload_left == 0)) {
        if (!r->in_payload) {
            size_t old_len = r->header_len;
            size_t copy = WR_WS_MAX_HEADER - old_len;
            int rc;

            if (copy > len) {
                copy = len;
            }
            memcpy(r->header + old_len, data, copy);
            r->header_len += copy;
            rc = wr_ws_header_decode(r->header, r->header_len, WR_WS_FROM_SERVER, &r->frame);
            if (rc == WR_AGAIN) {
                return true; /* all of data went into the partial header */
            }
            if (rc < 0) {
                count_error(lg, c, ERR_PROTOCOL, "%s", wr_strerror(rc));
                conn_abort(lg, c);
                return false;
            }
            /* Only the header's own bytes are consumed; the rest is payload. */
            data += (size_t)rc - old_len;
            len -= (size_t)rc - old_len;
            if (!on_frame_header(lg, c)) {
                return false;
            }
            continue;
        }

        if (r->payload_left > 0) {
            size_t n = r->payload_left < len ? (size_t)r->payload_left : len;

            if (wr_ws_is_control(r->frame.opcode)) {
                memcpy(r->control + r->control_len, data, n);
                r->control_len += n;
            } else {
                lg->totals.bytes += n;
                r->message_len += n;
                message_keep(r, data, n);
            }
            data += n;
            len -= n;
            r->payload_left -= n;
        }
        if (r->payload_left == 0 && !on_frame_end(lg, c)) {
            return false;
        }
    }
    return true;
}

/* ---- Connect and upgrade ---- */

void lg_conn_start(struct loadgen *lg, struct conn *c)
{
    struct epoll_event ev;
    int enable = 1;
    int fd;

    c->restart = false;
    c->turns_done = 0;
    c->close_handshake = false;
    memset(&c->reader, 0, sizeof(c->reader));
    if (lg->opts.mode == MODE_CHURN) {
        lg->turn_budget--;
    }

    fd = socket(lg->opts.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        count_error(lg, c, ERR_CONNECT, "socket failed: %s", strerror(errno));
        conn_set_state(lg, c, CONN_DONE);
        return;
    }
    c->fd = fd;
    conn_set_state(lg, c, CONN_CONNECTING);
    c->deadline_ns = lg_now_ns() + LG_HANDSHAKE_TIMEOUT_NS;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof(enable));

    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.ptr = c;
    if (epoll_ctl(lg->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        conn_fail_errno(lg, c, ERR_CONNECT, -errno, "epoll_ctl");
        return;
    }
    c->want_write = true;
    if (connect(fd, (const struct sockaddr *)&lg->opts.addr, lg->opts.addr_len) != 0 &&
        errno != EINPROGRESS) {
        conn_fail_errno(lg, c, ERR_CONNECT, -errno, "connect");
    }
}

/* The connect finished: queues the upgrade request. */
static void on_connected(struct loadgen *lg, struct conn *c)
{
    uint8_t nonce[16];
    uint64_t r1 = random_next(lg);
    uint64_t r2 = random_next(lg);
    socklen_t len = sizeof(int);
    char *head;
    int err = 0;
    int rc;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err != 0) {
        conn_fail_errno(lg, c, ERR_CONNECT, -err, "connect");
        return;
    }

    memcpy(nonce, &r1, 8);
    memcpy(nonce + 8, &r2, 8);
    base64_encode(nonce, sizeof(nonce), c->ws_key);
    c->handshake = malloc(WR_HTTP_MAX_HEAD_BYTES);
    head = (char *)out_reserve(&c->out, lg->upgrade_head_len + 64);
    if (c->handshake == NULL || head == NULL) {
        conn_fail_errno(lg, c, ERR_CONNECT, -ENOMEM, "allocating the handshake");
        return;
    }
    c->handshake_len = 0;
    memcpy(head, lg->upgrade_head, lg->upgrade_head_len);
    rc = snprintf(head + lg->upgrade_head_len, 64, "Sec-WebSocket-Key: %s\r\n\r\n", c->ws_key);
    c->out.len -= 64 - (size_t)rc;
    conn_set_state(lg, c, CONN_HANDSHAKE);
    rc = conn_flush(lg, c);
    if (rc < 0) {
        conn_fail_errno(lg, c, ERR_HANDSHAKE, rc, "sending the upgrade request");
    }
}

/* Checks the 101 and starts the first turn. Returns false once the connection is closed. */
static bool on_upgrade_response(struct loadgen *lg, struct conn *c, const struct wr_http_response *res,
                                size_t head_len)
{
    const struct wr_span *accept;
    char expected[29];
    size_t extra = c->handshake_len - head_len;
    uint8_t *rest;

    if (res->status != 101) {
        count_error(lg, c, ERR_HANDSHAKE, "HTTP status %d in place of 101", res->status);
        conn_abort(lg, c);
        return false;
    }
    accept = wr_http_header_get(res->headers, res->num_headers, "Sec-WebSocket-Accept");
    wr_ws_accept_key(c->ws_key, strlen(c->ws_key), expected);
    if (accept == NULL || accept->len != 28 || memcmp(accept->ptr, expected, 28) != 0) {
        count_error(lg, c, ERR_HANDSHAKE, "missing or wrong Sec-WebSocket-Accept");
        conn_abort(lg, c);
        return false;
    }

    lg->totals.connections_opened++;
    c->deadline_ns = 0;
    conn_set_state(lg, c, CONN_READY);
    rest = (uint8_t *)c->handshake;
    c->handshake = NULL;
    lg_turn_next(lg, c);
    if (c->fd >= 0 && extra > 0 && !frames_feed(lg, c, rest + head_len, extra)) {
        free(rest);
        return false;
    }
    free(rest);
    return c->fd >= 0;
}

/* Reads the upgrade response. Returns false when the caller must stop reading. */
static bool handshake_read(struct loadgen *lg, struct conn *c)
{
    struct wr_http_response res;
    size_t last_len = c->handshake_len;
    ssize_t n;
    int rc;

    n = recv(c->fd, c->handshake + c->handshake_len, WR_HTTP_MAX_HEAD_BYTES - c->handshake_len, 0);
    if (n == 0) {
        count_error(lg, c, ERR_HANDSHAKE, "EOF before the upgrade response");
        conn_abort(lg, c);
        return false;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_fail_errno(lg, c, ERR_HANDSHAKE, -errno, "recv");
        }
        return false;
    }
    c->handshake_len += (size_t)n;
    rc = wr_http_parse_response(c->handshake, c->handshake_len, last_len, &res);
    if (rc == WR_AGAIN) {
        return true;
    }
    if (rc < 0) {
        count_error(lg, c, ERR_HANDSHAKE, "invalid upgrade response: %s", wr_strerror(rc));
        conn_abort(lg, c);
        return false;
    }
    on_upgrade_response(lg, c, &res, (size_t)rc);
    return false;
}

/* ---- Events ---- */

static void on_eof(struct loadgen *lg, struct conn *c, int err)
{
    if (c->state == CONN_CLOSING) {
        if (c->close_handshake && c->turns_done > 0) {
            lg->totals.connections_cycled++;
        }
        lg_conn_close_socket(lg, c);
        return;
    }
    if (err != 0) {
        count_error(lg, c, ERR_CLOSED, "recv failed: %s", error_text(err));
    } else {
        count_error(lg, c, ERR_CLOSED, "EOF in state %d", (int)c->state);
    }
    conn_abort(lg, c);
}

static void on_readable(struct loadgen *lg, struct conn *c)
{
    int i;

    for (i = 0; i < LG_READS_PER_WAKEUP && c->fd >= 0; i++) {
        ssize_t n;

        if (c->state == CONN_HANDSHAKE) {
            if (!handshake_read(lg, c)) {
                return;
            }
            continue;
        }
        n = recv(c->fd, lg->read_buf, sizeof(lg->read_buf), 0);
        if (n == 0) {
            on_eof(lg, c, 0);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return;
            }
            on_eof(lg, c, -errno);
            return;
        }
        if (!frames_feed(lg, c, lg->read_buf, (size_t)n) || (size_t)n < sizeof(lg->read_buf)) {
            return;
        }
    }
}

void lg_conn_on_event(struct loadgen *lg, struct conn *c, uint32_t events)
{
    int rc;

    if (c->fd < 0) {
        return; /* closed earlier in this batch */
    }
    if (c->state == CONN_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            on_connected(lg, c);
        }
        return;
    }
    if (events & EPOLLOUT) {
        rc = conn_flush(lg, c);
        if (rc < 0) {
            conn_fail_errno(lg, c, ERR_CLOSED, rc, "send");
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
        on_readable(lg, c);
    }
}

/* Applies per-connection deadlines: connect and upgrade, turn, and Close. */
void lg_conns_check_deadlines(struct loadgen *lg, uint64_t now)
{
    unsigned i;

    for (i = 0; i < lg->next_slot; i++) {
        struct conn *c = &lg->conns[i];

        if (c->fd < 0 || c->deadline_ns == 0 || now < c->deadline_ns) {
            continue;
        }
        switch (c->state) {
        case CONN_CONNECTING:
            count_error(lg, c, ERR_CONNECT, "connect timed out");
            conn_abort(lg, c);
            break;
        case CONN_HANDSHAKE:
            count_error(lg, c, ERR_HANDSHAKE, "upgrade response timed out");
            conn_abort(lg, c);
            break;
        case CONN_TURN:
            count_error(lg, c, ERR_TURN_TIMEOUT, "no event for %.1f s",
                        (double)lg->opts.turn_timeout_ns / NS_PER_S);
            conn_abort(lg, c);
            break;
        case CONN_CLOSING:
            lg->totals.close_timeouts++;
            lg_conn_close_socket(lg, c);
            break;
        default:
            c->deadline_ns = 0;
            break;
        }
    }
}
