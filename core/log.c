/* SPDX-License-Identifier: MIT */
/* logfmt formatting and the per-thread route to a worker's ring or to stderr. */
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum wr_log_level wr_log_level = WR_LOG_INFO;

static __thread struct wr_log_sink *thread_sink;

void wr_log_set_sink(struct wr_log_sink *sink)
{
    thread_sink = sink;
}

int wr_log_sink_init(struct wr_log_sink *sink, size_t cap)
{
    memset(sink, 0, sizeof(*sink));
    sink->fill = malloc(cap);
    sink->write = malloc(cap);
    if (sink->fill == NULL || sink->write == NULL) {
        free(sink->fill);
        free(sink->write);
        return WR_ENOMEM;
    }
    sink->cap = cap;
    return 0;
}

void wr_log_sink_free(struct wr_log_sink *sink)
{
    free(sink->fill);
    free(sink->write);
    memset(sink, 0, sizeof(*sink));
}

size_t wr_log_timestamp(char out[32])
{
    struct timespec now;
    struct tm tm;
    int n;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                            now.tv_nsec / 1000000);
    return n > 0 && n < 32 ? (size_t)n : 0;
}

static void line_put(struct wr_log_line *line, const char *s, size_t n)
{
    /* Two bytes stay free for the newline and a NUL. */
    size_t room = sizeof(line->buf) - 2 - line->len;

    if (n > room) {
        n = room;
        line->truncated = true;
    }
    for (size_t i = 0; i < n; i++) {
        line->buf[line->len + i] = s[i];
    }
    line->len += n;
}

void wr_log_begin(struct wr_log_line *line, enum wr_log_level level, const char *event)
{
    char ts[32];
    size_t n = wr_log_timestamp(ts);

    line->len = 0;
    line->truncated = false;
    line_put(line, "ts=", 3);
    line_put(line, ts, n);
    wr_log_str(line, "level", wr_conf_log_level_name(level));
    wr_log_str(line, "event", event);
}

static bool needs_quotes(const char *v, size_t n)
{
    if (n == 0) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '=' || c == '\\') {
            return true;
        }
    }
    return false;
}

void wr_log_strn(struct wr_log_line *line, const char *key, const char *value, size_t n)
{
    line_put(line, " ", 1);
    line_put(line, key, strlen(key));
    line_put(line, "=", 1);
    if (!needs_quotes(value, n)) {
        line_put(line, value, n);
        return;
    }
    line_put(line, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        char esc[5];

        switch (c) {
        case '"': line_put(line, "\\\"", 2); break;
        case '\\': line_put(line, "\\\\", 2); break;
        case '\n': line_put(line, "\\n", 2); break;
        case '\r': line_put(line, "\\r", 2); break;
        case '\t': line_put(line, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(esc, sizeof(esc), "\\x%02x", c);
                line_put(line, esc, 4);
            } else {
                line_put(line, (const char *)&value[i], 1);
            }
        }
    }
    line_put(line, "\"", 1);
}

void wr_log_str(struct wr_log_line *line, const char *key, const char *value)
{
    wr_log_strn(line, key, value, strlen(value));
}

void wr_log_int(struct wr_log_line *line, const char *key, long long value)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", value);

    wr_log_strn(line, key, num, (size_t)n);
}

void wr_log_bool(struct wr_log_line *line, const char *key, bool value)
{
    wr_log_strn(line, key, value ? "true" : "false", value ? 4 : 5);
}

static void write_all_stderr(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

void wr_log_end(struct wr_log_line *line)
{
    struct wr_log_sink *sink = thread_sink;

    if (line->truncated) {
        wr_log_str(line, "truncated", "true");
    }
    line->buf[line->len++] = '\n';
    if (sink == NULL) {
        write_all_stderr(line->buf, line->len);
        return;
    }
    if (sink->fill_len + line->len > sink->cap) {
        sink->dropped++;
        return;
    }
    memcpy(sink->fill + sink->fill_len, line->buf, line->len);
    sink->fill_len += line->len;
}

void wr_log_msg(enum wr_log_level level, const char *event, const char *fmt, ...)
{
    struct wr_log_line line;
    char msg[1024];
    va_list ap;

    if (!wr_log_enabled(level)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    wr_log_begin(&line, level, event);
    wr_log_str(&line, "msg", msg);
    wr_log_end(&line);
}
