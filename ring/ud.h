/* SPDX-License-Identifier: MIT */
/* The one place that defines how io_uring user_data is packed. */
#ifndef WR_RING_UD_H
#define WR_RING_UD_H

#include <stdint.h>

/*
 * user_data contains the operation (8 bits), the relay slot (24 bits) and the
 * slot's generation (32 bits) rather than a pointer: a completion that
 * arrives after its relay was closed and the slot reused carries an old
 * generation and is dropped instead of touching the new relay.
 */
enum wr_ring_op {
    WR_OP_ACCEPT = 1,
    WR_OP_WAKE,          /* worker eventfd read: shutdown or ledger reopen */
    WR_OP_LOG_WRITE,
    WR_OP_DS_RECV,
    WR_OP_DS_SEND,
    WR_OP_DS_CLOSE,
    WR_OP_US_CONNECT,
    WR_OP_US_RECV,
    WR_OP_US_SEND,
    WR_OP_US_CLOSE,
    WR_OP_LINK_TIMEOUT,  /* the timer linked to any of the above; its result is ignored */
    WR_OP_CANCEL,
    WR_OP_LEDGER_WRITE,
    WR_OP_LEDGER_FSYNC,
    WR_OP_LEDGER_RETRY,  /* timer before a failed ledger write is tried again */
};

static inline uint64_t wr_ring_ud_pack(enum wr_ring_op op, uint32_t slot, uint32_t gen)
{
    return ((uint64_t)op << 56) | ((uint64_t)(slot & 0xffffff) << 32) | gen;
}

static inline enum wr_ring_op wr_ring_ud_op(uint64_t ud)
{
    return (enum wr_ring_op)(ud >> 56);
}

static inline uint32_t wr_ring_ud_slot(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xffffff;
}

static inline uint32_t wr_ring_ud_gen(uint64_t ud)
{
    return (uint32_t)ud;
}

#endif
