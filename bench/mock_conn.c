/* SPDX-License-Identifier: MIT */
/* Connections: lifecycle and timers, the send pump, WebSocket input and events. */
#include "bench/mock_upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static atomic_uint_fast64_t next_conn_id = 1;

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

void conn_close(struct conn *c, const char *reason)
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
bool conn_arm_timer(struct conn *c, enum timer_purpose purpose, uint64_t ms)
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

/* ---- Sending ---- */

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

void conn_on_timer(struct conn *c)
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

void conn_on_socket(struct conn *c, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        conn_on_readable(c);
    }
    if (!c->closed && (events & EPOLLOUT)) {
        conn_pump(c);
    }
}

void conn_open(struct worker *w, int fd)
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
