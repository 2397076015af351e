/* SPDX-License-Identifier: MIT */
/*
 * Deadlines and the keepalive policy. Timers are io_uring link timeouts on
 * the operations that are pending anyway, with no timer thread or timerfd.
 * The downstream receive carries the handshake, first-message and close
 * deadlines. The upstream receive carries the keepalive Ping trigger, the
 * Pong deadline, the event keepalive and the drain deadline. Every send
 * carries the write-stall deadline, plus the keepalive ones while the
 * upstream receive is paused by backpressure. A fired timer cancels its
 * operation, and the completion handler then checks every deadline and
 * re-arms. A deadline that appears earlier than the armed one re-arms the
 * operation at once (relay_retime).
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

/* ---- deadlines ---- */

uint64_t relay_earliest(uint64_t a, uint64_t b)
{
    if (a == 0) {
        return b;
    }
    if (b == 0) {
        return a;
    }
    return a < b ? a : b;
}

uint64_t relay_latest(uint64_t a, uint64_t b)
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
    return relay_latest(r->last_business_ms, r->last_ping_ms) + interval;
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
    return relay_latest(relay_latest(r->last_business_ms, r->last_event_keepalive_ms),
                        r->turns->start_ms) +
           every;
}

static uint64_t keepalive_deadline(const struct wr_relay *r)
{
    return relay_earliest(relay_earliest(ping_due(r), pong_deadline(r)), event_keepalive_due(r));
}

/*
 * The downstream receive carries the keepalive deadlines while the client is
 * connected: it is pending for the whole of a streaming turn (clients rarely
 * send), so its timer is armed once per Ping interval instead of once per
 * upstream receive. Business writes move the Ping later, which the fired
 * timer finds and re-arms for. The upstream receive carries the drain.
 */
uint64_t relay_recv_deadline(const struct wr_relay *r, const struct wr_leg *leg)
{
    if (leg == &r->down) {
        switch (leg->state) {
        case WR_LEG_HANDSHAKE:
            return r->handshake_deadline;
        case WR_LEG_OPEN:
            return relay_earliest(r->got_client_message ? 0 : r->first_message_deadline,
                                  keepalive_deadline(r));
        case WR_LEG_CLOSING:
            return r->close_deadline;
        default:
            return 0;
        }
    }
    if (leg->state == WR_LEG_HANDSHAKE) {
        return r->dial_deadline;
    }
    return r->drain_deadline;
}

/*
 * Returns true when keepalive detects a stalled downstream write before the
 * write timeout would: a stuck send stops business writes, so a Ping is
 * queued behind it and its Pong never comes. Sends then need no timer.
 */
static bool keepalive_covers_stall(const struct wr_relay *r)
{
    const struct wr_conf *conf = relay_conf(r);

    return conf->ping_interval_ms != 0 && r->wrote_downstream && !r->timers_unsupported &&
           (uint64_t)conf->ping_interval_ms + conf->ping_timeout_ms <= conf->write_timeout_ms;
}

uint64_t relay_send_deadline(const struct wr_relay *r, const struct wr_leg *leg)
{
    uint64_t deadline = 0;

    if (leg == &r->up && leg->state == WR_LEG_HANDSHAKE) {
        return r->dial_deadline;
    }
    if (leg == &r->up || !keepalive_covers_stall(r) || leg->state != WR_LEG_OPEN) {
        deadline = leg->send_progress_ms + relay_conf(r)->write_timeout_ms;
    }
    if (!r->down.recv_armed && !r->down.recv_cancel_pending) {
        /* The downstream receive is paused by backpressure: a send carries keepalive. */
        deadline = relay_earliest(deadline, keepalive_deadline(r));
    }
    if (leg == &r->down && leg->state == WR_LEG_CLOSING) {
        deadline = relay_earliest(deadline, r->close_deadline);
    }
    return deadline;
}

/* Links a timeout to the SQE just prepared, if a deadline applies. */
void relay_link_timer(struct wr_relay *r, struct io_uring_sqe *sqe,
                       struct __kernel_timespec *ts, uint64_t deadline)
{
    struct wr_worker *w = r->worker;
    struct io_uring_sqe *timer;

    if (deadline == 0 || r->timers_unsupported) {
        return;
    }
    /*
     * Rounding up to a multiple of WR_TIMER_SLACK_MS lets timers of many
     * connections expire together, so thousands of idle relays wake the
     * worker a few times a second instead of once per Ping.
     */
    deadline = (deadline + WR_TIMER_SLACK_MS - 1) / WR_TIMER_SLACK_MS * WR_TIMER_SLACK_MS;
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

static void retime_leg(struct wr_relay *r, struct wr_leg *leg)
{
    uint64_t due;
    struct io_uring_sqe *sqe;
    enum wr_ring_op op = leg == &r->down ? WR_OP_DS_RECV : WR_OP_US_RECV;

    if (!leg->recv_armed || leg->recv_cancel_pending || r->timers_unsupported) {
        return;
    }
    due = relay_recv_deadline(r, leg);
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
    due = relay_send_deadline(r, leg);
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
    retime_send(r, &r->up);
}

/* ---- timers ---- */

static void send_ping(struct wr_relay *r)
{
    wr_worker_random(r->worker, r->ping_payload);
    wr_worker_random(r->worker, r->ping_payload + 4);
    r->ping_outstanding = true;
    r->last_ping_ms = r->worker->now_ms;
    relay_queue_control(r, &r->down, WR_WS_OP_PING, r->ping_payload, sizeof(r->ping_payload));
    relay_retime(r); /* the Pong deadline is earlier than what the receive carries */
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

void relay_check_timers(struct wr_relay *r)
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
            relay_down_close_soon(r);
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

void relay_on_link_timeout(struct wr_relay *r, int res)
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
