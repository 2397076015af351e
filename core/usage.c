/* SPDX-License-Identifier: MIT */
/*
 * Usage records. Each worker gathers its records in memory and appends them
 * with one io_uring write linked to an fdatasync, one batch in flight at a
 * time. The file is opened O_APPEND, so several workers write whole lines,
 * and it is synced after every batch. A failed write keeps its batch and is
 * retried after WR_LEDGER_RETRY_MS. Records that do not fit the bounded
 * queue meanwhile are counted and logged.
 */
#include "core/usage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/relay_internal.h"

int wr_ledger_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

    return fd < 0 ? -errno : fd;
}

int wr_ledger_init(struct wr_ledger *ledger)
{
    memset(ledger, 0, sizeof(*ledger));
    ledger->fill = malloc(WR_LEDGER_QUEUE_BYTES);
    ledger->write = malloc(WR_LEDGER_QUEUE_BYTES);
    if (ledger->fill == NULL || ledger->write == NULL) {
        wr_ledger_free(ledger);
        return WR_ENOMEM;
    }
    return 0;
}

void wr_ledger_free(struct wr_ledger *ledger)
{
    free(ledger->fill);
    free(ledger->write);
    ledger->fill = ledger->write = NULL;
}

size_t wr_usage_json_string(char *out, size_t cap, const char *s)
{
    size_t len = 0;

    if (s == NULL || s[0] == '\0') {
        return (size_t)snprintf(out, cap, "null");
    }
    if (cap < 3) {
        return cap;
    }
    out[len++] = '"';
    for (; *s != '\0' && len + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            out[len++] = '\\';
            out[len++] = (char)c;
        } else if (c < 0x20) {
            len += (size_t)snprintf(out + len, cap - len, "\\u%04x", c);
        } else {
            out[len++] = (char)c;
        }
    }
    out[len++] = '"';
    return len;
}

/* Writes the names of the fields set in mask, comma-separated, into out. */
static const char *malformed_names(unsigned mask, char *out, size_t cap)
{
    static const char *const names[WR_SCAN_FIELD_COUNT] = {
        "type", "response.id", "response.status", "response.model", "input_tokens",
        "cached_tokens", "output_tokens", "reasoning_tokens", "total_tokens",
    };
    size_t len = 0;

    out[0] = '\0';
    for (int field = 0; field < WR_SCAN_FIELD_COUNT; field++) {
        if ((mask & WR_SCAN_BIT(field)) && len < cap) {
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? "," : "", names[field]);
        }
    }
    return out;
}

void wr_usage_record(struct wr_relay *r, const struct wr_turn *turn, const char *status,
                     const char *reason, const struct wr_scan *scan)
{
    struct wr_worker *w = r->worker;
    struct wr_ledger *ledger = &w->ledger;
    const struct wr_conf *conf = w->server->conf;
    uint64_t tokens[5] = {0, 0, 0, 0, 0};
    const char *response_id = turn->response_id;
    const char *model = turn->model;
    /*
     * Worst case: four escaped strings of at most 128 bytes (6 bytes each as
     * \u00XX), a client name of 63, and under 400 bytes of keys and numbers,
     * about 3,900 bytes in all.
     */
    char line[4096], ts[32];
    size_t n = 0;

    if (scan != NULL) {
        for (int i = 0; i < 5; i++) {
            if (scan->found & WR_SCAN_BIT(WR_SCAN_INPUT_TOKENS + i)) {
                tokens[i] = scan->tokens[i];
            }
        }
        if (scan->found & WR_SCAN_BIT(WR_SCAN_RESPONSE_ID)) {
            response_id = scan->response_id;
        }
        if (scan->found & WR_SCAN_BIT(WR_SCAN_RESPONSE_MODEL)) {
            model = scan->model;
        }
        if (scan->malformed != 0) {
            struct wr_log_line warn;
            char names[160];

            wr_log_begin(&warn, WR_LOG_WARN, "usage_malformed");
            wr_log_str(&warn, "conn", r->id);
            wr_log_str(&warn, "response_id", response_id[0] ? response_id : "unknown");
            wr_log_str(&warn, "fields", malformed_names(scan->malformed, names, sizeof(names)));
            wr_log_end(&warn);
        }
    }

    wr_log_timestamp(ts);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "{\"ts\":\"%s\",\"instance\":\"%s\","
                          "\"conn\":\"%s\",\"client\":", ts, w->server->instance, r->id);
    n += wr_usage_json_string(line + n, sizeof(line) - n,
                     r->client_id >= 0 ? conf->clients[r->client_id].name : NULL);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"response_id\":");
    n += wr_usage_json_string(line + n, sizeof(line) - n, response_id);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"model\":");
    n += wr_usage_json_string(line + n, sizeof(line) - n, model);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"status\":");
    n += wr_usage_json_string(line + n, sizeof(line) - n, status);
    if (reason != NULL) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"reason\":\"%s\"", reason);
    }
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          ",\"input_tokens\":%llu,\"cached_tokens\":%llu,\"output_tokens\":%llu,"
                          "\"reasoning_tokens\":%llu,\"total_tokens\":%llu,\"duration_ms\":%llu,"
                          "\"first_token_ms\":",
                          (unsigned long long)tokens[0], (unsigned long long)tokens[1],
                          (unsigned long long)tokens[2], (unsigned long long)tokens[3],
                          (unsigned long long)tokens[4],
                          (unsigned long long)(w->now_ms - turn->start_ms));
    if (turn->first_token_ms >= 0) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%lld", (long long)turn->first_token_ms);
    } else {
        n += (size_t)snprintf(line + n, sizeof(line) - n, "null");
    }
    n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"client_connected\":%s}\n",
                          r->client_gone ? "false" : "true");
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1; /* unreachable with the bounds above */
    }

    if (ledger->fill_len + n > WR_LEDGER_QUEUE_BYTES) {
        ledger->dropped++;
        return;
    }
    memcpy(ledger->fill + ledger->fill_len, line, n);
    ledger->fill_len += n;
}

static void submit_batch(struct wr_worker *w)
{
    struct wr_ledger *ledger = &w->ledger;
    struct io_uring_sqe *sqe;

    sqe = wr_worker_sqe(w);
    io_uring_prep_write(sqe, w->server->ledger_fd, ledger->write + ledger->write_done,
                        (unsigned)(ledger->write_len - ledger->write_done), (__u64)-1);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_LEDGER_WRITE, 0, 0));
    sqe = wr_worker_sqe(w);
    io_uring_prep_fsync(sqe, w->server->ledger_fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_LEDGER_FSYNC, 0, 0));
    ledger->in_flight = true;
}

void wr_ledger_flush(struct wr_worker *w)
{
    struct wr_ledger *ledger = &w->ledger;
    char *swap;

    if (ledger->dropped > 0) {
        wr_log_msg(WR_LOG_ERROR, "ledger_dropped",
                   "worker %u dropped %llu usage records: the ledger queue was full", w->id,
                   (unsigned long long)ledger->dropped);
        ledger->dropped = 0;
    }
    if (ledger->in_flight || ledger->retry_armed || ledger->fill_len == 0 ||
        w->server->ledger_fd < 0) {
        return;
    }
    swap = ledger->write;
    ledger->write = ledger->fill;
    ledger->write_len = ledger->fill_len;
    ledger->write_done = 0;
    ledger->fill = swap;
    ledger->fill_len = 0;
    submit_batch(w);
}

static void arm_retry(struct wr_worker *w, int err)
{
    struct wr_ledger *ledger = &w->ledger;
    uint64_t at = wr_now_ms() + WR_LEDGER_RETRY_MS;
    struct io_uring_sqe *sqe;

    wr_log_msg(WR_LOG_ERROR, "ledger_write_failed",
               "worker %u: writing the usage ledger failed (%s); retrying in %d ms", w->id,
               wr_strerror(err), WR_LEDGER_RETRY_MS);
    ledger->retry_armed = true;
    ledger->retry_ts.tv_sec = (long long)(at / 1000);
    ledger->retry_ts.tv_nsec = (long long)(at % 1000) * 1000000;
    sqe = wr_worker_sqe(w);
    io_uring_prep_timeout(sqe, &ledger->retry_ts, 0, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_LEDGER_RETRY, 0, 0));
}

void wr_ledger_complete(struct wr_worker *w, int op, int res)
{
    struct wr_ledger *ledger = &w->ledger;

    switch (op) {
    case WR_OP_LEDGER_WRITE:
        if (res > 0) {
            ledger->write_done += (size_t)res;
        } else if (res < 0 && res != -ECANCELED) {
            ledger->in_flight = false;
            arm_retry(w, res);
        }
        return;
    case WR_OP_LEDGER_FSYNC:
        if (!ledger->in_flight) {
            return; /* the write failed and its retry is armed */
        }
        if (res < 0 && res != -ECANCELED) {
            ledger->in_flight = false;
            arm_retry(w, res);
            return;
        }
        if (ledger->write_done < ledger->write_len) {
            submit_batch(w); /* short write: the rest goes next */
            return;
        }
        ledger->in_flight = false;
        return;
    case WR_OP_LEDGER_RETRY:
        ledger->retry_armed = false;
        submit_batch(w);
        return;
    default:
        return;
    }
}
