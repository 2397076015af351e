/* SPDX-License-Identifier: MIT */
/* Return codes and the buffer shape shared by every wsrelay module. */
#ifndef WR_WR_H
#define WR_WR_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Functions that can fail return 0 or a byte count on success and a negative
 * code otherwise. Kernel and libc failures are negative errno values, which
 * stay above -4096; wsrelay's own codes count down from -4096 so the two
 * ranges never overlap.
 */
enum wr_code {
    WR_AGAIN = -4096,              /* more input is needed */
    WR_EHTTP_TOO_LARGE = -4097,    /* request head over 16 KiB or too many headers */
    WR_EHTTP_MALFORMED = -4098,    /* request/status line or header syntax */
    WR_EWS_RESERVED_BITS = -4099,  /* RSV1-3 set, no extension was negotiated */
    WR_EWS_OPCODE = -4100,         /* reserved opcode */
    WR_EWS_CONTROL_FRAGMENTED = -4101, /* control frame without FIN */
    WR_EWS_CONTROL_TOO_LONG = -4102,   /* control frame payload over 125 bytes */
    WR_EWS_UNMASKED = -4103,       /* client frame without a mask */
    WR_EWS_MASKED = -4104,         /* server frame with a mask */
    WR_EWS_LENGTH = -4105,         /* non-minimal length or 64-bit length with the top bit set */
    WR_EWS_CONTINUATION = -4106,   /* continuation without a message, or new message inside one */
    WR_EWS_CLOSE_PAYLOAD = -4107,  /* 1-byte close, invalid code, or reason not UTF-8 */
    WR_EWS_TOO_BIG = -4108,        /* message over the configured read limit */
    WR_ESCAN_SYNTAX = -4109,       /* event scanner met invalid JSON */
    WR_ENOMEM = -4110,             /* allocation failed */
    WR_ECONF = -4111,              /* invalid configuration */
    WR_EUPSTREAM_STATUS = -4112,   /* upstream replied to the upgrade with a non-101 status */
    WR_EUPSTREAM_HANDSHAKE = -4113, /* upstream 101 is not a valid WebSocket accept */
    WR_ECODE_MIN = -4113,
};

/* Returns a static name for a wsrelay code or a negative errno ("ECONNRESET"). */
const char *wr_strerror(int code);

/*
 * A byte buffer. start and end bound the allocation; pos and last bound the
 * unread data. Invariant: start <= pos <= last <= end.
 */
struct wr_buf {
    uint8_t *start;
    uint8_t *end;
    uint8_t *pos;
    uint8_t *last;
};

static inline size_t wr_buf_len(const struct wr_buf *b)
{
    assert(b->start <= b->pos);
    assert(b->pos <= b->last);
    assert(b->last <= b->end);
    return (size_t)(b->last - b->pos);
}

/* A span of bytes inside a caller's buffer; nothing is owned or copied. */
struct wr_span {
    const char *ptr;
    size_t len;
};

#endif
