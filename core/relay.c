/* SPDX-License-Identifier: MIT */
/*
 * Relay lifecycle: accepting a connection into a slot, traces, and the
 * completions of every operation. Send queues are in legs.c, deadlines and
 * keepalive in timers.c, the endings in ending.c, the handshake in
 * handshake.c and frame relaying in frames.c.
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

/* ---- completions ---- */


static void on_send(struct wr_relay *r, struct wr_leg *leg, int res)
{
    struct wr_worker *w = r->worker;
    struct wr_leg *other = leg == &r->down ? &r->up : &r->down;
    bool business = false;

    leg->send_armed = false;
    if (leg->state == WR_LEG_SHUTDOWN || leg->state == WR_LEG_CLOSED) {
        relay_queue_free_all(w, leg);
        return;
    }
    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
        relay_check_timers(r);
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
        business = relay_queue_consume(w, leg, (size_t)res);
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
/* Stops a multishot receive; the rest of the data waits in the socket. */
static void cancel_multishot(struct wr_relay *r, struct wr_leg *leg)
{
    struct io_uring_sqe *sqe;

    if (!leg->recv_armed || !leg->recv_multishot || leg->recv_cancel_pending) {
        return;
    }
    sqe = wr_worker_sqe(r->worker);
    io_uring_prep_cancel64(sqe, wr_ring_ud_pack(WR_OP_US_RECV, r->slot, r->gen), 0);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_CANCEL, r->slot, r->gen));
    leg->recv_cancel_pending = true;
}

static void apply_backpressure(struct wr_relay *r, struct wr_leg *leg)
{
    bool from_client = leg == &r->down;
    struct wr_leg *other = from_client ? &r->up : &r->down;

    if (other->out_bytes > WR_RELAY_PAUSE_BYTES && relay_leg_writable(other) &&
        !(from_client ? r->upstream_gone : r->client_gone)) {
        leg->recv_paused = true;
        cancel_multishot(r, leg);
        relay_retime(r); /* a paused downstream receive hands its timers to the sends */
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
        relay_check_timers(r);
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

    /* A multishot receive that posts with F_MORE is still pending. */
    leg->recv_armed = (flags & IORING_CQE_F_MORE) != 0;
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
        relay_check_timers(r);
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

    /* A full buffer means bulk data: single-shot receives pace it; small ones go multishot. */
    leg->recv_bulk = bid >= 0 && (size_t)res == WR_RING_BUF_SIZE;
    if (leg->recv_bulk) {
        cancel_multishot(r, leg);
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
        relay_on_link_timeout(r, res);
        return;
    case WR_OP_CANCEL:
        return;
    case WR_OP_DS_RECV:
        r->inflight--;
        on_recv(r, &r->down, res, flags);
        break;
    case WR_OP_US_RECV:
        if (!(flags & IORING_CQE_F_MORE)) {
            r->inflight--;
        }
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
        relay_queue_free_all(w, &r->down);
        break;
    case WR_OP_US_CLOSE:
        r->inflight--;
        r->up.state = WR_LEG_CLOSED;
        relay_queue_free_all(w, &r->up);
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
    r->request = malloc(WR_RELAY_HEAD_INITIAL);
    r->request_cap = WR_RELAY_HEAD_INITIAL;
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
