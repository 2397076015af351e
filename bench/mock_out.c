/* SPDX-License-Identifier: MIT */
/* The per-connection output queue: frames of arena bytes and pattern runs, sent with sendmsg. */
#include "bench/mock_upstream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* ---- Output queue ---- */

bool out_empty(const struct conn *c)
{
    return c->seg_head == c->seg_count;
}

/* Returns true if the queue can take an event needing arena_bytes of arena. */
bool out_has_room(struct conn *c, size_t arena_bytes)
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

void out_bytes(struct conn *c, const void *data, size_t len)
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
void out_printf(struct conn *c, const char *fmt, ...)
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
void out_run(struct conn *c, const struct pattern *p, uint64_t offset, uint64_t len)
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
void frame_begin(struct conn *c)
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
void frame_end(struct conn *c, uint8_t opcode)
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

void queue_control(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
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
int out_flush(struct conn *c, size_t *sent)
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
