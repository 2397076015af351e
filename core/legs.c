/* SPDX-License-Identifier: MIT */
/*
 * A leg's send queue and receive. Relayed bytes are queued as segments that
 * reference the worker's provided receive buffers until sent. Once the peer
 * is slow they are copied to the heap instead. One send is in flight per
 * socket, so order is kept and a short write continues where it stopped.
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

void relay_queue_free_all(struct wr_worker *w, struct wr_leg *leg)
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

bool relay_leg_writable(const struct wr_leg *leg)
{
    return leg->state == WR_LEG_OPEN || leg->state == WR_LEG_CLOSING ||
           leg->state == WR_LEG_HANDSHAKE;
}

void relay_queue_copy(struct wr_relay *r, struct wr_leg *leg, const void *data, size_t len,
                      bool business)
{
    struct wr_seg *tail = leg->out_tail;
    struct wr_seg *seg;
    size_t cap;

    if (!relay_leg_writable(leg) || len == 0) {
        return;
    }
    if (tail != NULL && tail->bid < 0 && tail->business == business && tail->cap != 0) {
        /* Bytes after tail->ptr + tail->len are past any send in flight, so appending is safe. */
        size_t used = (size_t)(tail->ptr - tail->data) + tail->len;

        if (tail->cap - used >= len) {
            memcpy(tail->ptr + tail->len, data, len);
            tail->len += (uint32_t)len;
            leg->out_bytes += len;
            return;
        }
    }
    cap = len > WR_RELAY_COPY_MIN ? len : WR_RELAY_COPY_MIN;
    seg = malloc(sizeof(*seg) + cap);
    if (seg == NULL) {
        abort();
    }
    memcpy(seg->data, data, len);
    seg->ptr = seg->data;
    seg->len = (uint32_t)len;
    seg->bid = -1;
    seg->business = business;
    seg->cap = (uint32_t)cap;
    seg_append(leg, seg, false);
}

void relay_queue_slice(struct wr_relay *r, struct wr_leg *leg, uint8_t *ptr, size_t len, int bid)
{
    struct wr_seg *tail = leg->out_tail;
    struct wr_seg *seg;

    if (!relay_leg_writable(leg) || len == 0) {
        return;
    }
    struct wr_leg *source = leg == &r->down ? &r->up : &r->down;

    /*
     * Bytes a cancelled multishot receive still delivers keep their buffers:
     * the pool bounds them, where copies would grow the heap.
     */
    if (bid < 0 || (leg->out_bytes > WR_RELAY_COPY_BYTES &&
                    !(source->recv_multishot && source->recv_cancel_pending))) {
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

    if (!relay_leg_writable(leg)) {
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
    seg->cap = 0; /* a control frame may wait on its own list: nothing is appended to it */
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
bool relay_queue_consume(struct wr_worker *w, struct wr_leg *leg, size_t n)
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
        const uint8_t *data = seg->ptr;
        size_t chunk = seg->len < WR_RING_BUF_SIZE ? seg->len : WR_RING_BUF_SIZE;
        int ret;

        if (chunk < WR_RING_BUF_SIZE && seg->next != NULL) {
            /*
             * Gather small segments into one buffer so they leave as one TLS
             * record: a record per relayed event costs a seal and 22 bytes each.
             */
            uint8_t *stage = r->worker->tls_stage;

            chunk = 0;
            for (; seg != NULL && chunk < WR_RING_BUF_SIZE; seg = seg->next) {
                size_t take = WR_RING_BUF_SIZE - chunk < seg->len ? WR_RING_BUF_SIZE - chunk
                                                                  : seg->len;
                memcpy(stage + chunk, seg->ptr, take);
                chunk += take;
            }
            data = stage;
        }
        ret = wr_tls_write(tls, data, chunk);

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
        tls->fill_business |= relay_queue_consume(r->worker, leg, (size_t)ret);
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

    if (leg->send_armed || !relay_leg_writable(leg)) {
        return;
    }
    if (leg->tls != NULL) {
        if (!tls_encrypt_queue(r, leg) || leg->send_armed || !relay_leg_writable(leg)) {
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
    leg->send_deadline = r->timers_unsupported ? 0 : relay_send_deadline(r, leg);
    relay_link_timer(r, sqe, &leg->send_ts, leg->send_deadline);
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
    bool multishot = false;

    if (leg->recv_armed || leg->recv_paused || leg->waiting_buffer ||
        (leg->state != WR_LEG_OPEN && leg->state != WR_LEG_CLOSING && !handshake)) {
        return;
    }
    sqe = wr_worker_sqe(w);
    if (handshake && leg == &r->down && leg->tls == NULL) {
        size_t room = handshake_room(&r->request, &r->request_cap, r->request_len);

        io_uring_prep_recv(sqe, leg->fd, r->request + r->request_len, room, 0);
    } else if (handshake && leg->tls == NULL) {
        size_t room = handshake_room(&r->response, &r->response_cap, r->response_len);

        io_uring_prep_recv(sqe, leg->fd, r->response + r->response_len, room, 0);
    } else if (leg == &r->up && leg->tls == NULL && leg->state == WR_LEG_OPEN &&
               !leg->recv_bulk && relay_recv_deadline(r, leg) == 0) {
        /*
         * With no timer to carry, the upstream receive of a stream of events
         * is multishot: one SQE serves the whole stream. A deadline, a pause
         * or bulk data (a full buffer) cancels it.
         */
        io_uring_prep_recv_multishot(sqe, leg->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = WR_RING_BGID;
        multishot = true;
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
    leg->recv_deadline = r->timers_unsupported ? 0 : relay_recv_deadline(r, leg);
    relay_link_timer(r, sqe, &leg->recv_ts, leg->recv_deadline);
    leg->recv_armed = true;
    leg->recv_cancel_pending = false;
    leg->recv_multishot = multishot;
    r->inflight++;
}

void wr_relay_buffers_returned(struct wr_worker *w, struct wr_relay *r)
{
    r->down.waiting_buffer = false;
    r->up.waiting_buffer = false;
    relay_arm_recv(r, &r->down);
    relay_arm_recv(r, &r->up);
}
