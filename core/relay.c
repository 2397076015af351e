/* SPDX-License-Identifier: MIT */
/*
 * Relay lifecycle: slots, traces, send queues, receives, timers and the ways
 * a relay ends. The handshake is in handshake.c and frame relaying in frames.c.
 *
 * Timers are io_uring link timeouts on the operations that are pending anyway:
 * the downstream receive carries the handshake, first-message and close
 * deadlines; the upstream receive carries the keepalive Ping trigger, the Pong
 * deadline, the event keepalive and the drain deadline; every send carries the
 * write-stall deadline (and the keepalive ones while the upstream receive is
 * paused by backpressure). A fired timer cancels its operation, and the
 * completion handler then checks every deadline and re-arms.
 */
#include "core/relay_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/usage.h"
#include "tls/tls.h"

void relay_trace(struct wr_relay *r, enum wr_log_level level, const char *stage,
                 const char *direction, int graceful, unsigned code, int err)
{
    struct wr_log_line line;

    if (!wr_log_enabled(level)) {
        return;
    }
    wr_log_begin(&line, level, "relay_trace");
    wr_log_str(&line, "conn", r->id);
    wr_log_str(&line, "stage", stage);
    if (direction != NULL) {
        wr_log_str(&line, "direction", direction);
    }
    if (graceful >= 0) {
        wr_log_bool(&line, "graceful", graceful != 0);
    }
    wr_log_bool(&line, "wrote_downstream", r->wrote_downstream);
    if (code != 0) {
        wr_log_int(&line, "code", code);
    }
    if (err != 0) {
        wr_log_str(&line, "err", wr_strerror(err));
    }
    wr_log_end(&line);
}

/* ---- deadlines ---- */

static uint64_t earliest(uint64_t a, uint64_t b)
{
    if (a == 0) {
        return b;
    }
    if (b == 0) {
        return a;
    }
    return a < b ? a : b;
}

static uint64_t latest(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static uint64_t ping_due(const struct wr_relay *r)
{
    uint32_t interval = relay_conf(r)->ping_interval_ms;

    if (interval == 0 || !r->wrote_downstream || r->ping_outstanding || r->client_gone ||
        r->timers_unsupported || r->down.state != WR_LEG_OPEN) {
        return 0;
    }
    return latest(r->last_business_ms, r->last_ping_ms) + interval;
}

static uint64_t pong_deadline(const struct wr_relay *r)
{
    if (!r->ping_outstanding || r->client_gone) {
        return 0;
    }
    return r->last_ping_ms + relay_conf(r)->ping_timeout_ms;
}

static uint64_t event_keepalive_due(const struct wr_relay *r)
{
    uint32_t every = relay_conf(r)->event_keepalive_ms;

    if (every == 0 || r->open_turns == 0 || r->client_gone || r->down.state != WR_LEG_OPEN) {
        return 0;
    }
    return latest(latest(r->last_business_ms, r->last_event_keepalive_ms), r->turns->start_ms) +
           every;
}

static uint64_t keepalive_deadline(const struct wr_relay *r)
{
    return earliest(earliest(ping_due(r), pong_deadline(r)), event_keepalive_due(r));
}

static uint64_t recv_deadline(const struct wr_relay *r, const struct wr_leg *leg)
{
    if (leg == &r->down) {
        switch (leg->state) {
        case WR_LEG_HANDSHAKE: return r->handshake_deadline;
        case WR_LEG_OPEN: return r->got_client_message ? 0 : r->first_message_deadline;
        case WR_LEG_CLOSING: return r->close_deadline;
        default: return 0;
        }
    }
    if (leg->state == WR_LEG_HANDSHAKE) {
        return r->dial_deadline;
    }
    return earliest(keepalive_deadline(r), r->drain_deadline);
}

static uint64_t send_deadline(const struct wr_relay *r, const struct wr_leg *leg)
{
    uint64_t deadline = leg->send_progress_ms + relay_conf(r)->write_timeout_ms;

    if (leg == &r->up && leg->state == WR_LEG_HANDSHAKE) {
        return r->dial_deadline;
    }
    if (leg == &r->down && !r->up.recv_armed) {
        deadline = earliest(deadline, keepalive_deadline(r));
    }
    if (leg == &r->down && leg->state == WR_LEG_CLOSING) {
        deadline = earliest(deadline, r->close_deadline);
    }
    return deadline;
}

/* Links a timeout to the SQE just prepared, if a deadline applies. */
static void link_timer(struct wr_relay *r, struct io_uring_sqe *sqe,
                       struct __kernel_timespec *ts, uint64_t deadline)
{
    struct wr_worker *w = r->worker;
    struct io_uring_sqe *timer;

    if (deadline == 0 || r->timers_unsupported) {
        return;
    }
    ts->tv_sec = (long long)(deadline / 1000);
    ts->tv_nsec = (long long)(deadline % 1000) * 1000000;
    sqe->flags |= IOSQE_IO_LINK;
    timer = wr_worker_sqe(w);
    io_uring_prep_link_timeout(timer, ts, IORING_TIMEOUT_ABS);
    if (w->server->test_refuse_timeouts) {
        /* An unknown flag bit makes the kernel reject the timeout with -EINVAL. */
        timer->timeout_flags |= 1u << 30;
    }
    io_uring_sqe_set_data64(timer, wr_ring_ud_pack(WR_OP_LINK_TIMEOUT, r->slot, r->gen));
}

/* ---- segments and send queues ---- */

static struct wr_seg *seg_slice_alloc(struct wr_worker *w)
{
    struct wr_seg *seg = w->free_segs;

    if (seg != NULL) {
        w->free_segs = seg->next;
        return seg;
    }
    return malloc(sizeof(struct wr_seg));
}

static void seg_free(struct wr_worker *w, struct wr_seg *seg)
{
    if (seg->bid >= 0) {
        wr_worker_buf_unref(w, (uint16_t)seg->bid);
        seg->next = w->free_segs;
        w->free_segs = seg;
        return;
    }
    free(seg);
}

static void seg_append(struct wr_leg *leg, struct wr_seg *seg, bool control_queue)
{
    struct wr_seg **head = control_queue ? &leg->ctrl_head : &leg->out_head;
    struct wr_seg **tail = control_queue ? &leg->ctrl_tail : &leg->out_tail;

    seg->next = NULL;
    if (*tail != NULL) {
        (*tail)->next = seg;
    } else {
        *head = seg;
    }
    *tail = seg;
    if (!control_queue) {
        leg->out_bytes += seg->len;
    }
}

static void queue_free_all(struct wr_worker *w, struct wr_leg *leg)
{
    struct wr_seg *seg, *next;

    for (seg = leg->out_head; seg != NULL; seg = next) {
        next = seg->next;
        seg_free(w, seg);
    }
    for (seg = leg->ctrl_head; seg != NULL; seg = next) {
        next = seg->next;
        seg_free(w, seg);
    }
    leg->out_head = leg->out_tail = NULL;
    leg->ctrl_head = leg->ctrl_tail = NULL;
    leg->out_bytes = 0;
}

static bool leg_writable(const struct wr_leg *leg)
{
    return leg->state == WR_LEG_OPEN || leg->state == WR_LEG_CLOSING ||
           leg->state == WR_LEG_HANDSHAKE;
}

void relay_queue_copy(struct wr_relay *r, struct wr_leg *leg, const void *data, size_t len,
                      bool business)
{
    struct wr_seg *seg;

    if (!leg_writable(leg) || len == 0) {
        return;
    }
    seg = malloc(sizeof(*seg) + len);
    if (seg == NULL) {
        abort();
    }
    memcpy(seg->data, data, len);
    seg->ptr = seg->data;
    seg->len = (uint32_t)len;
    seg->bid = -1;
    seg->business = business;
    seg_append(leg, seg, false);
}

void relay_queue_slice(struct wr_relay *r, struct wr_leg *leg, uint8_t *ptr, size_t len, int bid)
{
    struct wr_seg *tail = leg->out_tail;
    struct wr_seg *seg;

    if (!leg_writable(leg) || len == 0) {
        return;
    }
    if (bid < 0 || leg->out_bytes > WR_RELAY_COPY_BYTES) {
        relay_queue_copy(r, leg, ptr, len, true);
        return;
    }
    if (tail != NULL && tail->bid == bid && tail->business && tail->ptr + tail->len == ptr) {
        tail->len += (uint32_t)len;
        leg->out_bytes += len;
        return;
    }
    seg = seg_slice_alloc(r->worker);
    if (seg == NULL) {
        abort();
    }
    seg->ptr = ptr;
    seg->len = (uint32_t)len;
    seg->bid = bid;
    seg->business = true;
    wr_worker_buf_ref(r->worker, (uint16_t)bid);
    seg_append(leg, seg, false);
}

void relay_queue_control(struct wr_relay *r, struct wr_leg *leg, uint8_t opcode,
                         const uint8_t *payload, size_t len)
{
    uint8_t mask[4];
    bool masked = leg == &r->up;
    struct wr_seg *seg;
    size_t hdr_len;

    if (!leg_writable(leg)) {
        return;
    }
    seg = malloc(sizeof(*seg) + WR_WS_MAX_HEADER + len);
    if (seg == NULL) {
        abort();
    }
    if (masked) {
        wr_worker_random(r->worker, mask);
    }
    hdr_len = wr_ws_header_encode(seg->data, true, opcode, len, masked ? mask : NULL);
    if (len > 0) {
        memcpy(seg->data + hdr_len, payload, len);
    }
    if (masked) {
        wr_ws_mask(seg->data + hdr_len, len, mask, 0);
    }
    seg->ptr = seg->data;
    seg->len = (uint32_t)(hdr_len + len);
    seg->bid = -1;
    seg->business = false;
    seg_append(leg, seg, leg->out_frame_open);
    relay_flush(r, leg);
}

void relay_queue_close(struct wr_relay *r, struct wr_leg *leg, unsigned code, const char *reason)
{
    uint8_t payload[WR_WS_MAX_CONTROL_PAYLOAD];
    size_t len = wr_ws_close_build(payload, code, reason, reason ? strlen(reason) : 0);

    relay_queue_control(r, leg, WR_WS_OP_CLOSE, payload, len);
}

void relay_leg_frame_boundary(struct wr_relay *r, struct wr_leg *leg)
{
    leg->out_frame_open = false;
    if (leg->ctrl_head != NULL) {
        struct wr_seg *seg = leg->ctrl_head, *next;

        leg->ctrl_head = leg->ctrl_tail = NULL;
        for (; seg != NULL; seg = next) {
            next = seg->next;
            seg_append(leg, seg, false);
        }
    }
}

/* Drops n bytes from the front of leg's queue. Returns true when any were business bytes. */
static bool queue_consume(struct wr_worker *w, struct wr_leg *leg, size_t n)
{
    bool business = false;

    while (n > 0 && leg->out_head != NULL) {
        struct wr_seg *seg = leg->out_head;
        size_t take = n < seg->len ? n : seg->len;

        business |= seg->business;
        seg->ptr += take;
        seg->len -= (uint32_t)take;
        leg->out_bytes -= take;
        n -= take;
        if (seg->len == 0) {
            leg->out_head = seg->next;
            if (leg->out_head == NULL) {
                leg->out_tail = NULL;
            }
            seg_free(w, seg);
        }
    }
    return business;
}

/*
 * Encrypts queued segments into the leg's ciphertext buffer until it contains
 * WR_TLS_OUT_HIGH bytes, so a large message is never encrypted whole.
 * Returns false when wolfSSL failed and the leg has been given up.
 */
static bool tls_encrypt_queue(struct wr_relay *r, struct wr_leg *leg)
{
    struct wr_tls *tls = leg->tls;

    if (!tls->handshake_done) {
        return true; /* plaintext waits for the handshake, which fills tls->fill itself */
    }
    while (leg->out_head != NULL && tls->fill_len < WR_TLS_OUT_HIGH) {
        struct wr_seg *seg = leg->out_head;
        size_t chunk = seg->len < WR_RING_BUF_SIZE ? seg->len : WR_RING_BUF_SIZE;
        int ret = wr_tls_write(tls, seg->ptr, chunk);

        if (ret < 0) {
            if (leg == &r->down) {
                struct wr_client_end end = {"client_disconnected", false, 0, NULL, -EPROTO};
                relay_client_gone(r, &end);
                relay_shutdown_leg(r, leg);
            } else {
                relay_upstream_lost(r, -EPROTO, 0);
            }
            return false;
        }
        tls->fill_business |= queue_consume(r->worker, leg, (size_t)ret);
    }
    return true;
}

void relay_flush(struct wr_relay *r, struct wr_leg *leg)
{
    struct wr_worker *w = r->worker;
    struct io_uring_sqe *sqe;
    struct wr_seg *seg;
    unsigned n = 0;
    size_t total = 0;

    if (leg->send_armed || !leg_writable(leg)) {
        return;
    }
    if (leg->tls != NULL) {
        if (!tls_encrypt_queue(r, leg) || leg->send_armed || !leg_writable(leg)) {
            return;
        }
        total = wr_tls_take(leg->tls);
        if (total == 0) {
            return;
        }
        leg->iov[0].iov_base = leg->tls->sending + leg->tls->sent;
        leg->iov[0].iov_len = total;
        n = 1;
    } else {
        if (leg->out_head == NULL) {
            return;
        }
        for (seg = leg->out_head; seg != NULL && n < WR_RELAY_IOV_MAX; seg = seg->next) {
            leg->iov[n].iov_base = seg->ptr;
            leg->iov[n].iov_len = seg->len;
            total += seg->len;
            n++;
        }
    }
    memset(&leg->msg, 0, sizeof(leg->msg));
    leg->msg.msg_iov = leg->iov;
    leg->msg.msg_iovlen = n;
    if (leg->send_progress_ms == 0) {
        leg->send_progress_ms = w->now_ms;
    }

    sqe = wr_worker_sqe(w);
    io_uring_prep_sendmsg(sqe, leg->fd, &leg->msg, MSG_NOSIGNAL);
    if (leg->fixed) {
        sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(leg == &r->down ? WR_OP_DS_SEND : WR_OP_US_SEND,
                                                 r->slot, r->gen));
    leg->send_deadline = r->timers_unsupported ? 0 : send_deadline(r, leg);
    link_timer(r, sqe, &leg->send_ts, leg->send_deadline);
    leg->send_armed = true;
    leg->send_cancel_pending = false;
    leg->send_len = total;
    r->inflight++;
}

void relay_arm_recv(struct wr_relay *r, struct wr_leg *leg)
{
    struct wr_worker *w = r->worker;
    struct io_uring_sqe *sqe;
    bool handshake = leg->state == WR_LEG_HANDSHAKE;

    if (leg->recv_armed || leg->recv_paused || leg->waiting_buffer ||
        (leg->state != WR_LEG_OPEN && leg->state != WR_LEG_CLOSING && !handshake)) {
        return;
    }
    sqe = wr_worker_sqe(w);
    if (handshake && leg == &r->down && leg->tls == NULL) {
        io_uring_prep_recv(sqe, leg->fd, r->request + r->request_len,
                           WR_HTTP_MAX_HEAD_BYTES - r->request_len, 0);
    } else if (handshake && leg->tls == NULL) {
        io_uring_prep_recv(sqe, leg->fd, r->response + r->response_len,
                           WR_HTTP_MAX_HEAD_BYTES - r->response_len, 0);
    } else {
        io_uring_prep_recv(sqe, leg->fd, NULL, WR_RING_BUF_SIZE, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = WR_RING_BGID;
    }
    if (leg->fixed) {
        sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(leg == &r->down ? WR_OP_DS_RECV : WR_OP_US_RECV,
                                                 r->slot, r->gen));
    leg->recv_deadline = r->timers_unsupported ? 0 : recv_deadline(r, leg);
    link_timer(r, sqe, &leg->recv_ts, leg->recv_deadline);
    leg->recv_armed = true;
    leg->recv_cancel_pending = false;
    r->inflight++;
}

static void retime_leg(struct wr_relay *r, struct wr_leg *leg)
{
    uint64_t due;
    struct io_uring_sqe *sqe;
    enum wr_ring_op op = leg == &r->down ? WR_OP_DS_RECV : WR_OP_US_RECV;

    if (!leg->recv_armed || leg->recv_cancel_pending || r->timers_unsupported) {
        return;
    }
    due = recv_deadline(r, leg);
    if (due == 0 || (leg->recv_deadline != 0 && leg->recv_deadline <= due)) {
        return; /* a later deadline is found lazily when the armed one fires */
    }
    /* The receive completes with -ECANCELED and is re-armed with the earlier deadline. */
    sqe = wr_worker_sqe(r->worker);
    io_uring_prep_cancel64(sqe, wr_ring_ud_pack(op, r->slot, r->gen), 0);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_CANCEL, r->slot, r->gen));
    leg->recv_cancel_pending = true;
}

/*
 * A send waiting for socket space has sent nothing, so cancelling it loses no
 * bytes; a partial count in its completion is consumed as usual.
 */
static void retime_send(struct wr_relay *r, struct wr_leg *leg)
{
    uint64_t due;
    struct io_uring_sqe *sqe;
    enum wr_ring_op op = leg == &r->down ? WR_OP_DS_SEND : WR_OP_US_SEND;

    if (!leg->send_armed || leg->send_cancel_pending || r->timers_unsupported) {
        return;
    }
    due = send_deadline(r, leg);
    if (due == 0 || (leg->send_deadline != 0 && leg->send_deadline <= due)) {
        return;
    }
    sqe = wr_worker_sqe(r->worker);
    io_uring_prep_cancel64(sqe, wr_ring_ud_pack(op, r->slot, r->gen), 0);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_CANCEL, r->slot, r->gen));
    leg->send_cancel_pending = true;
}

/*
 * Re-arms pending operations whose linked timer is later than a deadline that
 * has just appeared: the first business write, a turn opening, a drain, or
 * the upstream receive pausing so that the downstream send carries keepalive.
 */
void relay_retime(struct wr_relay *r)
{
    retime_leg(r, &r->down);
    retime_leg(r, &r->up);
    retime_send(r, &r->down);
}

void wr_relay_buffers_returned(struct wr_worker *w, struct wr_relay *r)
{
    r->down.waiting_buffer = false;
    r->up.waiting_buffer = false;
    relay_arm_recv(r, &r->down);
    relay_arm_recv(r, &r->up);
}

/* ---- closing ---- */

void relay_shutdown_leg(struct wr_relay *r, struct wr_leg *leg)
{
    struct wr_worker *w = r->worker;
    struct io_uring_sqe *sqe;

    if (leg->state == WR_LEG_NONE || leg->state == WR_LEG_SHUTDOWN ||
        leg->state == WR_LEG_CLOSED) {
        return;
    }
    leg->state = WR_LEG_SHUTDOWN;
    if (!leg->send_armed) {
        queue_free_all(w, leg);
    }

    /* The close is hard-linked so it runs even when there was nothing to cancel. */
    sqe = wr_worker_sqe(w);
    io_uring_prep_cancel_fd(sqe, leg->fd, IORING_ASYNC_CANCEL_ALL |
                                              (leg->fixed ? IORING_ASYNC_CANCEL_FD_FIXED : 0));
    sqe->flags |= IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_CANCEL, r->slot, r->gen));
    sqe = wr_worker_sqe(w);
    if (leg->fixed) {
        io_uring_prep_close_direct(sqe, (unsigned)leg->fd);
    } else {
        io_uring_prep_close(sqe, leg->fd);
    }
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(leg == &r->down ? WR_OP_DS_CLOSE : WR_OP_US_CLOSE,
                                                 r->slot, r->gen));
    r->inflight++;
}

void relay_close_upstream(struct wr_relay *r, unsigned code, const char *reason)
{
    struct wr_leg *up = &r->up;

    r->drain_deadline = 0;
    if (up->state != WR_LEG_OPEN) {
        if (up->state == WR_LEG_HANDSHAKE) {
            relay_shutdown_leg(r, up);
        }
        return;
    }
    r->upstream_gone = true;
    if (up->out_frame_open) {
        /* A client frame is half relayed: no Close can follow it. */
        relay_shutdown_leg(r, up);
        return;
    }
    up->state = WR_LEG_CLOSING;
    up->close_after_send = true;
    relay_queue_close(r, up, code, reason);
}

void relay_maybe_finish(struct wr_relay *r)
{
    struct wr_worker *w = r->worker;
    bool down_done = r->down.state == WR_LEG_NONE || r->down.state == WR_LEG_CLOSED;
    bool up_done = r->up.state == WR_LEG_NONE || r->up.state == WR_LEG_CLOSED;

    if (!down_done || !up_done || r->inflight > 0 || !r->in_use) {
        return;
    }
    turns_settle_all(r, r->worker->stopping ? "shutdown" : "upstream_lost");
    turns_free(r);
    if (r->client_id >= 0 && !r->completed_logged) {
        r->completed_logged = true;
        relay_trace(r, WR_LOG_INFO, "relay_complete", NULL, -1, 0, 0);
    }
    if (r->down.waiting_buffer || r->up.waiting_buffer) {
        struct wr_relay **link = &w->buf_waiters;

        while (*link != NULL && *link != r) {
            link = &(*link)->next_waiter;
        }
        if (*link == r) {
            *link = r->next_waiter;
        }
    }
    queue_free_all(w, &r->down);
    queue_free_all(w, &r->up);
    free(r->down.in.scan);
    free(r->up.in.scan);
    free(r->request);
    free(r->response);
    free(r->upgrade);
    wr_tls_free(r->down.tls);
    wr_tls_free(r->up.tls);
    r->down.tls = r->up.tls = NULL;
    r->request = r->response = r->upgrade = NULL;
    if (r->counted) {
        atomic_fetch_sub(&w->server->active, 1);
    }
    r->in_use = false;
    w->free_slots[w->num_free_slots++] = r->slot;
    w->live_relays--;
}

static void down_close_soon(struct wr_relay *r)
{
    r->down.state = WR_LEG_CLOSING;
    r->down.close_after_send = true;
    r->close_deadline = r->worker->now_ms + WR_RELAY_CLOSE_WAIT_MS;
    relay_retime(r);
}

void relay_client_gone(struct wr_relay *r, const struct wr_client_end *end)
{
    struct wr_leg *down = &r->down;

    if (r->client_gone) {
        return;
    }
    r->client_gone = true;
    r->ping_outstanding = false;
    relay_trace(r, end->graceful ? WR_LOG_INFO : WR_LOG_WARN, end->stage,
                strcmp(end->stage, "downstream_ping_failed") == 0 ? "downstream_keepalive"
                                                                   : "client_to_upstream",
                end->graceful, end->close_code, end->err);

    if (end->close_code != 0 && down->state == WR_LEG_OPEN && !down->out_frame_open) {
        relay_queue_close(r, down, end->close_code, end->reason);
        down_close_soon(r);
        relay_flush(r, down);
    } else if (end->close_code == 0 && down->peer_closed && down->state == WR_LEG_OPEN &&
               !down->out_frame_open) {
        /* The client's Close had no code: answer with an empty Close. */
        relay_queue_control(r, down, WR_WS_OP_CLOSE, NULL, 0);
        down_close_soon(r);
        relay_flush(r, down);
    } else {
        relay_shutdown_leg(r, down);
    }

    if (r->up.state == WR_LEG_OPEN) {
        if (r->open_turns == 0) {
            relay_close_upstream(r, 1001, "client disconnected");
        } else {
            r->drain_deadline = r->worker->now_ms + relay_conf(r)->upstream_drain_timeout_ms;
            if (r->up.recv_paused) {
                r->up.recv_paused = false;
            }
            relay_arm_recv(r, &r->up);
            relay_retime(r);
        }
    } else if (r->up.state == WR_LEG_HANDSHAKE) {
        relay_shutdown_leg(r, &r->up);
    }
}

/* Writes the response.failed event the client gets when the upstream is lost mid-turn. */
static void send_turn_failed(struct wr_relay *r)
{
    char body[1280], id[WR_SCAN_MAX_STRING * 6 + 3], fallback[64];
    uint8_t hdr[WR_WS_MAX_HEADER];
    const char *raw = r->turns->response_id;
    size_t hdr_len, id_len;
    int n;

    if (raw[0] == '\0') {
        snprintf(fallback, sizeof(fallback), "resp_wsrelay_%s", r->id);
        raw = fallback;
    }
    id_len = wr_usage_json_string(id, sizeof(id), raw);
    n = snprintf(body, sizeof(body),
                 "{\"type\":\"response.failed\",\"response\":{\"id\":%.*s,\"status\":\"failed\","
                 "\"error\":{\"code\":\"upstream_error\",\"message\":\"the upstream connection "
                 "was lost before the response completed\"}}}",
                 (int)id_len, id);
    if (n < 0 || (size_t)n >= sizeof(body)) {
        return;
    }
    hdr_len = wr_ws_header_encode(hdr, true, WR_WS_OP_TEXT, (uint64_t)n, NULL);
    relay_queue_copy(r, &r->down, hdr, hdr_len, false);
    relay_queue_copy(r, &r->down, body, (size_t)n, false);
}

void relay_upstream_lost(struct wr_relay *r, int err, unsigned upstream_close_code)
{
    struct wr_leg *down = &r->down;

    if (r->upstream_gone && r->up.state != WR_LEG_OPEN) {
        return;
    }
    r->upstream_gone = true;
    relay_trace(r, WR_LOG_WARN, "upstream_disconnected", "upstream_to_client", 0, 0, err);

    if (upstream_close_code != 0 && r->up.state == WR_LEG_OPEN && !r->up.out_frame_open) {
        r->up.state = WR_LEG_CLOSING;
        r->up.close_after_send = true;
        relay_queue_close(r, &r->up, upstream_close_code, "message too big");
    } else {
        relay_shutdown_leg(r, &r->up);
    }

    if (r->client_gone || down->state != WR_LEG_OPEN) {
        turns_settle_all(r, "upstream_lost");
        return;
    }
    if (down->out_frame_open) {
        /* Mid-frame: nothing more can be written in the frame's place. */
        turns_settle_all(r, "upstream_lost");
        r->client_gone = true;
        down->state = WR_LEG_CLOSING;
        down->close_after_send = true;
        relay_flush(r, down);
        return;
    }
    if (!r->up.in.seq.in_message && r->open_turns > 0) {
        send_turn_failed(r);
    }
    turns_settle_all(r, "upstream_lost"); /* the client is still connected at this point */
    r->client_gone = true;
    relay_queue_close(r, down, 1011, "upstream connection lost");
    down_close_soon(r);
    relay_flush(r, down);
}

void relay_upstream_closed(struct wr_relay *r, unsigned code, const uint8_t *reason,
                           size_t reason_len)
{
    struct wr_leg *down = &r->down;
    char text[WR_WS_MAX_CLOSE_REASON + 1];

    if (reason_len > 0) {
        memcpy(text, reason, reason_len);
    }
    text[reason_len] = '\0';
    r->upstream_gone = true;
    relay_trace(r, WR_LOG_INFO, "upstream_disconnected", "upstream_to_client", 1, code, 0);

    /* Answer the upstream's Close, then close its socket. */
    if (r->up.state == WR_LEG_OPEN && !r->up.out_frame_open) {
        r->up.state = WR_LEG_CLOSING;
        r->up.close_after_send = true;
        relay_queue_close(r, &r->up, code, NULL);
    } else {
        relay_shutdown_leg(r, &r->up);
    }
    turns_settle_all(r, "upstream_closed");

    if (r->client_gone || down->state != WR_LEG_OPEN) {
        return;
    }
    r->client_gone = true;
    if (down->out_frame_open) {
        down->state = WR_LEG_CLOSING;
        down->close_after_send = true;
        relay_flush(r, down);
        return;
    }
    relay_queue_close(r, down, code, text);
    down_close_soon(r);
    relay_flush(r, down);
}

void wr_relay_shutdown(struct wr_worker *w, struct wr_relay *r)
{
    if (r->down.state == WR_LEG_HANDSHAKE || r->up.state == WR_LEG_HANDSHAKE) {
        relay_shutdown_leg(r, &r->down);
        relay_shutdown_leg(r, &r->up);
        relay_maybe_finish(r);
        return;
    }
    if (r->open_turns == 0) {
        if (!r->client_gone && r->down.state == WR_LEG_OPEN && !r->down.out_frame_open) {
            r->client_gone = true;
            relay_queue_close(r, &r->down, 1001, "server shutting down");
            down_close_soon(r);
            relay_flush(r, &r->down);
        }
        relay_close_upstream(r, 1001, "server shutting down");
        relay_maybe_finish(r);
        return;
    }
    r->drain_deadline = earliest(r->drain_deadline, w->stop_deadline_ms);
    relay_retime(r);
}

/* ---- timers ---- */

static void send_ping(struct wr_relay *r)
{
    wr_worker_random(r->worker, r->ping_payload);
    wr_worker_random(r->worker, r->ping_payload + 4);
    r->ping_outstanding = true;
    r->last_ping_ms = r->worker->now_ms;
    relay_queue_control(r, &r->down, WR_WS_OP_PING, r->ping_payload, sizeof(r->ping_payload));
}

static void send_event_keepalive(struct wr_relay *r)
{
    static const char event[] = "{\"type\":\"keepalive\"}";
    uint8_t frame[2 + sizeof(event) - 1];

    r->last_event_keepalive_ms = r->worker->now_ms;
    if (r->down.out_frame_open || r->up.in.seq.in_message) {
        return; /* only between messages; tried again after the next interval */
    }
    frame[0] = 0x80 | WR_WS_OP_TEXT;
    frame[1] = (uint8_t)(sizeof(event) - 1);
    memcpy(frame + 2, event, sizeof(event) - 1);
    relay_queue_copy(r, &r->down, frame, sizeof(frame), false);
    relay_flush(r, &r->down);
}

static void check_timers(struct wr_relay *r)
{
    struct wr_worker *w = r->worker;
    const struct wr_conf *conf = relay_conf(r);
    uint64_t now = w->now_ms = wr_now_ms();
    uint64_t due;

    if (r->down.state == WR_LEG_HANDSHAKE && r->handshake_deadline != 0 &&
        now >= r->handshake_deadline) {
        r->handshake_deadline = 0;
        handshake_reply_error(r, 408, NULL, "the request did not arrive in time",
                              "invalid_request_error", "request_timeout");
        return;
    }
    if (r->up.state == WR_LEG_HANDSHAKE && r->dial_deadline != 0 && now >= r->dial_deadline) {
        r->dial_deadline = 0;
        handshake_dial_failed(r, 504, -ETIMEDOUT, "upstream dial timed out");
        return;
    }
    if (r->down.state == WR_LEG_OPEN && !r->got_client_message && !r->client_gone &&
        r->first_message_deadline != 0 && now >= r->first_message_deadline) {
        struct wr_client_end end = {"client_first_message_timeout", false, 1008,
                                    "first message timeout", -ETIMEDOUT};
        relay_client_gone(r, &end);
        return;
    }
    due = pong_deadline(r);
    if (due != 0 && now >= due) {
        struct wr_client_end end = {"downstream_ping_failed", true, 1001, "keepalive timeout",
                                    -ETIMEDOUT};
        relay_client_gone(r, &end);
        return;
    }
    if (r->down.send_armed && r->down.send_progress_ms != 0 && !r->client_gone &&
        now >= r->down.send_progress_ms + conf->write_timeout_ms) {
        struct wr_client_end end = {"client_disconnected", true, 0, NULL, -ETIMEDOUT};
        relay_client_gone(r, &end);
        relay_shutdown_leg(r, &r->down);
        return;
    }
    if (r->up.send_armed && r->up.send_progress_ms != 0 && r->up.state == WR_LEG_OPEN &&
        now >= r->up.send_progress_ms + conf->write_timeout_ms) {
        relay_upstream_lost(r, -ETIMEDOUT, 0);
        return;
    }
    if (r->drain_deadline != 0 && now >= r->drain_deadline) {
        r->drain_deadline = 0;
        relay_trace(r, WR_LOG_INFO, "drain_timeout", "upstream_to_client", r->client_gone ? 1 : -1,
                    0, 0);
        turns_settle_all(r, w->stopping ? "shutdown" : "drain_timeout");
        if (!r->client_gone && r->down.state == WR_LEG_OPEN && !r->down.out_frame_open) {
            r->client_gone = true;
            relay_queue_close(r, &r->down, 1001, "server shutting down");
            down_close_soon(r);
            relay_flush(r, &r->down);
        }
        relay_close_upstream(r, 1001, "client disconnected");
        return;
    }
    if (r->down.state == WR_LEG_CLOSING && r->close_deadline != 0 && now >= r->close_deadline) {
        r->close_deadline = 0;
        relay_shutdown_leg(r, &r->down);
        return;
    }
    due = ping_due(r);
    if (due != 0 && now >= due) {
        send_ping(r);
    }
    due = event_keepalive_due(r);
    if (due != 0 && now >= due) {
        send_event_keepalive(r);
    }
}

/* ---- completions ---- */

static void on_link_timeout(struct wr_relay *r, int res)
{
    if (res == -ETIME || res == -ECANCELED || res == -EALREADY || res == -ENOENT || res >= 0) {
        return;
    }
    if (!r->timers_unsupported) {
        r->timers_unsupported = true;
        relay_trace(r, WR_LOG_WARN, "downstream_ping_unsupported", "downstream_keepalive", -1, 0,
                    res);
    }
}

static void on_send(struct wr_relay *r, struct wr_leg *leg, int res)
{
    struct wr_worker *w = r->worker;
    struct wr_leg *other = leg == &r->down ? &r->up : &r->down;
    bool business = false;

    leg->send_armed = false;
    if (leg->state == WR_LEG_SHUTDOWN || leg->state == WR_LEG_CLOSED) {
        queue_free_all(w, leg);
        return;
    }
    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
        check_timers(r);
        relay_flush(r, leg);
        return;
    }
    if (res < 0) {
        if (leg == &r->down) {
            struct wr_client_end end = {"client_disconnected", true, 0, NULL, res};
            relay_client_gone(r, &end);
            relay_shutdown_leg(r, leg);
        } else {
            relay_upstream_lost(r, res, 0);
        }
        return;
    }

    if (leg->tls != NULL) {
        business = leg->tls->sending_business;
        wr_tls_sent(leg->tls, (size_t)res);
    } else {
        business = queue_consume(w, leg, (size_t)res);
    }
    if (res > 0) {
        leg->send_progress_ms = w->now_ms;
    }
    if (business && leg == &r->down) {
        bool first = !r->wrote_downstream;

        r->last_business_ms = w->now_ms;
        r->wrote_downstream = true;
        if (first) {
            relay_retime(r);
        }
    }
    if (leg->out_head == NULL && (leg->tls == NULL || wr_tls_idle(leg->tls))) {
        leg->send_progress_ms = 0;
        if (leg->close_after_send) {
            if (leg == &r->down && (leg->peer_closed || leg->in.broken)) {
                /* After a protocol error the connection is failed: no Close is awaited. */
                relay_shutdown_leg(r, leg);
            } else if (leg == &r->up) {
                relay_shutdown_leg(r, leg);
            } else if (leg->state != WR_LEG_CLOSING) {
                relay_shutdown_leg(r, leg);
            }
            /* Otherwise wait for the client's Close or the close deadline. */
        }
    }
    if (other->recv_paused && leg->out_bytes < WR_RELAY_RESUME_BYTES) {
        other->recv_paused = false;
        relay_arm_recv(r, other);
    }
    relay_flush(r, leg);
}

/* Ends a leg whose peer closed the connection (res 0) or failed it (res < 0). */
static void leg_ended(struct wr_relay *r, struct wr_leg *leg, int res)
{
    if (leg == &r->down) {
        struct wr_client_end end = {"client_disconnected", true, 0, NULL, res};
        leg->peer_closed = true;
        if (leg->state == WR_LEG_CLOSING) {
            relay_shutdown_leg(r, leg);
        } else {
            relay_client_gone(r, &end);
            relay_shutdown_leg(r, leg);
        }
    } else if (leg->state == WR_LEG_CLOSING) {
        relay_shutdown_leg(r, leg);
    } else {
        relay_upstream_lost(r, res == 0 ? -EPIPE : res, 0);
    }
}

static void wait_for_buffer(struct wr_relay *r, struct wr_leg *leg)
{
    struct wr_worker *w = r->worker;

    if (!leg->waiting_buffer) {
        leg->waiting_buffer = true;
        if (!(r->down.waiting_buffer && r->up.waiting_buffer)) {
            r->next_waiter = w->buf_waiters;
            w->buf_waiters = r;
        }
    }
}

/* Pauses leg's receives while the other leg has too much unsent. */
static void apply_backpressure(struct wr_relay *r, struct wr_leg *leg)
{
    bool from_client = leg == &r->down;
    struct wr_leg *other = from_client ? &r->up : &r->down;

    if (other->out_bytes > WR_RELAY_PAUSE_BYTES && leg_writable(other) &&
        !(from_client ? r->upstream_gone : r->client_gone)) {
        leg->recv_paused = true;
        if (!from_client) {
            relay_retime(r);
        }
    }
}

/*
 * Decrypts the ciphertext lent to leg->tls and hands the plaintext on: to the
 * TLS handshake, to the HTTP upgrade parsers, or to frame relaying. Returns
 * false when the leg ended.
 */
static bool tls_drain(struct wr_relay *r, struct wr_leg *leg)
{
    struct wr_worker *w = r->worker;
    struct wr_tls *tls = leg->tls;
    bool from_client = leg == &r->down;
    bool relaying = true;
    int n;

    for (;;) {
        if (leg->state == WR_LEG_SHUTDOWN || leg->state == WR_LEG_CLOSED) {
            return false;
        }
        if (!tls->handshake_done) {
            n = handshake_tls_step(r, leg);
            if (n == WR_AGAIN) {
                return true;
            }
            if (n < 0) {
                return false;
            }
            continue;
        }
        if (leg->state == WR_LEG_HANDSHAKE) {
            n = handshake_tls_plaintext(r, leg);
            if (n > 0) {
                /* A rejected upgrade leaves the leg closing: nothing more is read. */
                if (leg->state != WR_LEG_HANDSHAKE && leg->state != WR_LEG_OPEN) {
                    return false;
                }
                continue;
            }
        } else {
            n = wr_tls_read(tls, w->plain, WR_RING_BUF_SIZE);
            if (n > 0) {
                /* After a Close or an error the rest is read and dropped, as on a plain leg. */
                if (relaying && frames_process(r, from_client ? WR_FROM_CLIENT : WR_FROM_UPSTREAM,
                                               w->plain, (size_t)n, -1) != 0) {
                    relaying = false;
                }
                continue;
            }
        }
        if (n == WR_AGAIN) {
            return true;
        }
        if (leg->state == WR_LEG_HANDSHAKE) {
            handshake_tls_failed(r, leg, n);
        } else {
            leg_ended(r, leg, n == WR_TLS_CLOSED ? 0 : -EPROTO);
        }
        return false;
    }
}

static void on_tls_recv(struct wr_relay *r, struct wr_leg *leg, int res, int bid)
{
    struct wr_worker *w = r->worker;
    struct wr_leg *other = leg == &r->down ? &r->up : &r->down;
    bool handshake = leg->state == WR_LEG_HANDSHAKE;

    if (res == -ENOBUFS) {
        wait_for_buffer(r, leg);
        return;
    }
    if (res <= 0 && handshake) {
        /* Timeouts, errors and EOF during the handshake are handled as on a plain leg. */
        if (leg == &r->down) {
            handshake_on_request(r, res);
        } else {
            handshake_on_upstream_recv(r, res);
        }
        return;
    }
    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
        check_timers(r);
        relay_arm_recv(r, leg);
        return;
    }
    if (res <= 0) {
        leg_ended(r, leg, res);
        return;
    }

    wr_tls_feed(leg->tls, wr_worker_buf(w, (uint16_t)bid), (size_t)res);
    if (!tls_drain(r, leg)) {
        wr_tls_feed(leg->tls, NULL, 0);
        return;
    }
    wr_tls_feed(leg->tls, NULL, 0);
    if (leg->state != WR_LEG_HANDSHAKE && other->state != WR_LEG_HANDSHAKE) {
        apply_backpressure(r, leg);
        relay_flush(r, other);
    }
    relay_flush(r, leg);
    /* While the upstream is dialled, the client's next bytes wait for the 101, as on TCP. */
    if (!(handshake && leg == &r->down && r->request_head_len != 0)) {
        relay_arm_recv(r, leg);
    }
}

static void on_recv(struct wr_relay *r, struct wr_leg *leg, int res, unsigned flags)
{
    struct wr_worker *w = r->worker;
    bool from_client = leg == &r->down;
    int bid = -1;
    int ret;

    leg->recv_armed = false;
    if (flags & IORING_CQE_F_BUFFER) {
        bid = (int)(flags >> IORING_CQE_BUFFER_SHIFT);
        w->buf_refs[bid] = 1; /* the receive's own reference, dropped after processing */
    }
    if (leg->state == WR_LEG_SHUTDOWN || leg->state == WR_LEG_CLOSED) {
        goto out;
    }
    if (leg->tls != NULL && (bid >= 0 || res <= 0)) {
        on_tls_recv(r, leg, res, bid);
        goto out;
    }
    if (leg->state == WR_LEG_HANDSHAKE) {
        if (from_client) {
            handshake_on_request(r, res);
        } else {
            handshake_on_upstream_recv(r, res);
        }
        goto out;
    }
    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
        check_timers(r);
        relay_arm_recv(r, leg);
        goto out;
    }
    if (res == -ENOBUFS) {
        wait_for_buffer(r, leg);
        goto out;
    }
    if (res <= 0) {
        leg_ended(r, leg, res);
        goto out;
    }

    ret = frames_process(r, from_client ? WR_FROM_CLIENT : WR_FROM_UPSTREAM,
                         bid >= 0 ? wr_worker_buf(w, (uint16_t)bid) : NULL, (size_t)res, bid);
    if (ret == 0) {
        apply_backpressure(r, leg);
        relay_flush(r, from_client ? &r->up : &r->down);
    }
    /* A closing leg keeps reading: for the peer's Close, or for EOF, until its deadline. */
    relay_arm_recv(r, leg);
out:
    if (bid >= 0) {
        wr_worker_buf_unref(w, (uint16_t)bid);
    }
}

void wr_relay_complete(struct wr_worker *w, struct wr_relay *r, enum wr_ring_op op, int res,
                       unsigned flags)
{
    switch (op) {
    case WR_OP_LINK_TIMEOUT:
        on_link_timeout(r, res);
        return;
    case WR_OP_CANCEL:
        return;
    case WR_OP_DS_RECV:
        r->inflight--;
        on_recv(r, &r->down, res, flags);
        break;
    case WR_OP_US_RECV:
        r->inflight--;
        on_recv(r, &r->up, res, flags);
        break;
    case WR_OP_DS_SEND:
        r->inflight--;
        on_send(r, &r->down, res);
        break;
    case WR_OP_US_SEND:
        r->inflight--;
        on_send(r, &r->up, res);
        break;
    case WR_OP_US_CONNECT:
        r->inflight--;
        handshake_on_connect(r, res);
        break;
    case WR_OP_DS_CLOSE:
        r->inflight--;
        r->down.state = WR_LEG_CLOSED;
        queue_free_all(w, &r->down);
        break;
    case WR_OP_US_CLOSE:
        r->inflight--;
        r->up.state = WR_LEG_CLOSED;
        queue_free_all(w, &r->up);
        break;
    default:
        return;
    }
    relay_maybe_finish(r);
}

void wr_relay_accept(struct wr_worker *w, int fd)
{
    const struct wr_conf *conf = w->server->conf;
    struct wr_relay *r;
    uint32_t slot;
    uint32_t gen;

    if (w->num_free_slots == 0 || w->stopping) {
        struct io_uring_sqe *sqe = wr_worker_sqe(w);

        io_uring_prep_close_direct(sqe, (unsigned)fd);
        io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_CANCEL, 0, 0));
        return;
    }
    slot = w->free_slots[--w->num_free_slots];
    r = &w->slots[slot];
    gen = r->gen + 1;
    memset(r, 0, sizeof(*r));
    r->slot = slot;
    r->gen = gen;
    r->in_use = true;
    r->worker = w;
    r->client_id = -1;
    r->start_ms = w->now_ms;
    snprintf(r->id, sizeof(r->id), "%u-%llu", w->id, (unsigned long long)++w->conn_seq);
    r->down.fd = fd;
    r->down.fixed = true;
    r->down.state = WR_LEG_HANDSHAKE;
    r->up.fd = -1;
    r->up.state = WR_LEG_NONE;
    r->request = malloc(WR_HTTP_MAX_HEAD_BYTES);
    if (r->request == NULL) {
        abort();
    }
    if (w->tls.server != NULL) {
        r->down.tls = wr_tls_new_server(&w->tls);
        if (r->down.tls == NULL) {
            abort();
        }
    }
    r->handshake_deadline = w->now_ms + conf->handshake_timeout_ms;
    w->live_relays++;
    relay_arm_recv(r, &r->down);
}
