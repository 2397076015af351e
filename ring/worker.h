/* SPDX-License-Identifier: MIT */
/* One io_uring worker thread: its ring, listener, receive buffers and relay slots. */
#ifndef WR_RING_WORKER_H
#define WR_RING_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "core/server.h"
#include "core/usage.h"
#include "tls/tls.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/random.h>

#define WR_RING_BUF_SIZE 16384   /* bytes per provided receive buffer */
#define WR_RING_BUF_COUNT 512    /* provided buffers per worker (power of two) */
#define WR_RING_BGID 1

struct wr_relay;
struct wr_seg;

struct wr_worker {
    unsigned id;
    struct wr_server *server;
    struct io_uring ring;
    pthread_t thread;

    int listen_fd;
    bool accept_armed;
    int wake_fd;          /* eventfd the main thread writes to on SIGTERM */
    uint64_t wake_value;  /* read target of the pending WR_OP_WAKE */

    /* Provided receive buffers: a buffer goes back to the ring when its refs drop to 0. */
    struct io_uring_buf_ring *buf_ring;
    uint8_t *buf_base;
    uint16_t *buf_refs;
    unsigned buf_free;    /* buffers currently in the ring */
    struct wr_relay *buf_waiters; /* relays whose receive got -ENOBUFS */

    /* Relay slots; user_data carries the index and generation. */
    struct wr_relay *slots;
    unsigned num_slots;
    uint32_t *free_slots;
    unsigned num_free_slots;
    unsigned live_relays;
    uint64_t conn_seq;

    struct wr_seg *free_segs;
    void *free_scans;     /* freed event scanners, linked through their first bytes */
    struct wr_log_sink log;
    WC_RNG rng;
    uint8_t rand_pool[256];
    unsigned rand_pos;

    uint64_t now_ms;      /* CLOCK_MONOTONIC, refreshed once per completion batch */
    bool stopping;        /* shutdown began: no new connections */
    uint64_t stop_deadline_ms;
    struct wr_ledger ledger;

    struct wr_tls_ctx tls;
    uint8_t *plain;       /* decrypted bytes of one TLS record batch, WR_RING_BUF_SIZE long */
    uint8_t *tls_stage;   /* small segments gathered into one TLS record, WR_RING_BUF_SIZE long */
    struct wr_addr_list addrs;                 /* the worker's copy, read only by this thread */
    _Atomic(struct wr_addr_list *) addr_inbox; /* a newer list from the resolver, or NULL */
};

/* Creates the ring, buffers, listener and slots of worker id. Returns 0 or a negative code. */
int wr_worker_init(struct wr_worker *w, struct wr_server *server, unsigned id, char *err,
                   size_t err_len);
void wr_worker_free(struct wr_worker *w);

/* Runs the worker loop in a new thread. */
int wr_worker_start(struct wr_worker *w);

/* Wakes the worker to check for shutdown and for new upstream addresses (any thread). */
void wr_worker_wake(struct wr_worker *w);

/*
 * Hands list to the worker, which takes ownership, and wakes it (any thread).
 * A list the worker has not taken yet is replaced and freed.
 */
void wr_worker_post_addrs(struct wr_worker *w, struct wr_addr_list *list);

/* Returns an SQE, submitting the queue first if it is full; never NULL on a live ring. */
struct io_uring_sqe *wr_worker_sqe(struct wr_worker *w);

/* Returns 4 fresh random bytes for a frame mask. */
void wr_worker_random(struct wr_worker *w, uint8_t out[4]);

/* Buffer refcounting for provided buffers. */
uint8_t *wr_worker_buf(struct wr_worker *w, uint16_t bid);
void wr_worker_buf_ref(struct wr_worker *w, uint16_t bid);
void wr_worker_buf_unref(struct wr_worker *w, uint16_t bid);

uint64_t wr_now_ms(void);

#endif
