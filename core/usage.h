/* SPDX-License-Identifier: MIT */
/* The usage ledger: one JSON line per turn, appended through each worker's ring. */
#ifndef WR_CORE_USAGE_H
#define WR_CORE_USAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/relay.h"

struct wr_worker;

#define WR_LEDGER_QUEUE_BYTES (4 * 1024 * 1024) /* records waiting per worker before drops */
#define WR_LEDGER_RETRY_MS 1000

/* A worker's ledger output: lines gather in fill while write contains the batch in flight. */
struct wr_ledger {
    char *fill;
    size_t fill_len;
    char *write;
    size_t write_len;
    size_t write_done;
    bool in_flight;
    bool retry_armed;       /* a failed write waits for its retry timer */
    uint64_t dropped;       /* records lost to a full queue, not yet logged */
    struct __kernel_timespec retry_ts;
};

/* Opens the ledger file for appending (mode 0600 when created). Returns an fd or -errno. */
int wr_ledger_open(const char *path);

int wr_ledger_init(struct wr_ledger *ledger);
void wr_ledger_free(struct wr_ledger *ledger);

/*
 * Records a settled turn: status is the terminal status, "error", or
 * "unsettled" with reason. scan contains the terminal event's fields, or NULL.
 */
void wr_usage_record(struct wr_relay *r, const struct wr_turn *turn, const char *status,
                     const char *reason, const struct wr_scan *scan);

/*
 * Writes s as a JSON string (quoted and escaped), or null when s is NULL or
 * empty. Returns the length written; cap must leave room for the quotes.
 */
size_t wr_usage_json_string(char *out, size_t cap, const char *s);

/* Starts a write of the gathered records if none is in flight. */
void wr_ledger_flush(struct wr_worker *w);

/* Handles the completion of a ledger write, fsync or retry timer. */
void wr_ledger_complete(struct wr_worker *w, int op, int res);

#endif
