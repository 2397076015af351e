/* SPDX-License-Identifier: MIT */
/* The ways a relay ends: client gone, upstream lost or closed, shutdown. */
#include "core/relay_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/usage.h"
#include "tls/tls.h"

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
        relay_queue_free_all(w, leg);
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
    relay_queue_free_all(w, &r->down);
    relay_queue_free_all(w, &r->up);
    frames_scan_release(w, r->down.in.scan);
    frames_scan_release(w, r->up.in.scan);
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

void relay_down_close_soon(struct wr_relay *r)
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
        relay_down_close_soon(r);
        relay_flush(r, down);
    } else if (end->close_code == 0 && down->peer_closed && down->state == WR_LEG_OPEN &&
               !down->out_frame_open) {
        /* The client's Close had no code, so the reply is an empty Close. */
        relay_queue_control(r, down, WR_WS_OP_CLOSE, NULL, 0);
        relay_down_close_soon(r);
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
    relay_down_close_soon(r);
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

    /* Reply to the upstream's Close, then close its socket. */
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
    relay_down_close_soon(r);
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
            relay_down_close_soon(r);
            relay_flush(r, &r->down);
        }
        relay_close_upstream(r, 1001, "server shutting down");
        relay_maybe_finish(r);
        return;
    }
    r->drain_deadline = relay_earliest(r->drain_deadline, w->stop_deadline_ms);
    relay_retime(r);
}
