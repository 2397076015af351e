/* SPDX-License-Identifier: MIT */
/* logfmt lines on stderr; worker threads hand them to their ring to write. */
#ifndef WR_CORE_LOG_H
#define WR_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

#define WR_LOG_LINE_MAX 2048

/*
 * A worker's pending output. Lines are appended to fill while write contains the
 * bytes of the write in flight; the worker swaps them when that write ends.
 */
struct wr_log_sink {
    char *fill;
    size_t fill_len;
    char *write;
    size_t write_len;
    size_t write_done;
    size_t cap;
    uint64_t dropped; /* lines lost because fill was full, reported once it drains */
    bool write_in_flight;
};

/* One line under construction. */
struct wr_log_line {
    char buf[WR_LOG_LINE_MAX];
    size_t len;
    bool truncated;
};

extern enum wr_log_level wr_log_level;

static inline bool wr_log_enabled(enum wr_log_level level)
{
    return level <= wr_log_level;
}

/* Routes this thread's lines into sink (NULL: write them to stderr at once). */
void wr_log_set_sink(struct wr_log_sink *sink);
int wr_log_sink_init(struct wr_log_sink *sink, size_t cap);
void wr_log_sink_free(struct wr_log_sink *sink);

/* Starts a line with ts, level and event. */
void wr_log_begin(struct wr_log_line *line, enum wr_log_level level, const char *event);
/* Appends key=value, quoting and escaping value when logfmt needs it. */
void wr_log_str(struct wr_log_line *line, const char *key, const char *value);
void wr_log_strn(struct wr_log_line *line, const char *key, const char *value, size_t len);
void wr_log_int(struct wr_log_line *line, const char *key, long long value);
void wr_log_bool(struct wr_log_line *line, const char *key, bool value);
/* Ends the line and hands it to the thread's sink or to stderr. */
void wr_log_end(struct wr_log_line *line);

/* Logs "event" with a free-form msg=... value. For start-up and rare events. */
void wr_log_msg(enum wr_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats the current UTC time as RFC 3339 with milliseconds; returns the length (24). */
size_t wr_log_timestamp(char out[32]);

#endif
