/* SPDX-License-Identifier: MIT */
/* Test helpers that feed a parser its input whole, byte by byte and cut in two. */
#ifndef WR_TESTS_FEED_H
#define WR_TESTS_FEED_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/wr.h"

/* Writable memory whose last byte is followed by a PROT_NONE page, so any over-read faults. */
struct feed_guard {
    uint8_t *map;
    size_t map_len;
    uint8_t *limit; /* first byte of the guard page */
};

static inline void feed_guard_init(struct feed_guard *g, size_t capacity)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_len = (capacity / page + 1) * page;

    g->map_len = data_len + page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(g->map, MAP_FAILED, "mmap of %zu bytes failed", g->map_len);
    g->limit = g->map + data_len;
    cr_assert_eq(mprotect(g->limit, page, PROT_NONE), 0, "mprotect of the guard page failed");
}

/* Copies len bytes so that they end right before the guard page, and returns their start. */
static inline uint8_t *feed_guard_place(struct feed_guard *g, const void *data, size_t len)
{
    uint8_t *dst = g->limit - len;

    cr_assert_geq((size_t)(g->limit - g->map), len, "input of %zu bytes does not fit", len);
    if (len > 0) {
        memcpy(dst, data, len);
    }
    return dst;
}

static inline void feed_guard_free(struct feed_guard *g)
{
    munmap(g->map, g->map_len);
    g->map = NULL;
}

/* A parser under test: the stateless re-parse shape, with last_len as a hint. */
struct feed_parser {
    int (*parse)(const uint8_t *buf, size_t len, size_t last_len, void *out);
    /* Compares two results by offsets into their own buffers. NULL skips the comparison. */
    bool (*same)(const void *a, const uint8_t *base_a, const void *b, const uint8_t *base_b);
    size_t out_size;
};

/*
 * Checks the result for a strict prefix of the input: valid input must need
 * more bytes, and invalid input may fail early but then must keep failing.
 */
static inline void feed_check_prefix(const char *label, const char *mode, size_t n, int rc,
                                     int expect, bool *failed)
{
    if (expect >= 0) {
        cr_assert_eq(rc, WR_AGAIN, "%s: %s prefix of %zu bytes returned %s, expected WR_AGAIN",
                     label, mode, n, wr_strerror(rc));
        return;
    }
    if (*failed) {
        cr_assert_eq(rc, expect, "%s: %s prefix of %zu bytes returned %s after failing with %s",
                     label, mode, n, wr_strerror(rc), wr_strerror(expect));
        return;
    }
    cr_assert(rc == WR_AGAIN || rc == expect,
              "%s: %s prefix of %zu bytes returned %s, expected WR_AGAIN or %s", label, mode, n,
              wr_strerror(rc), wr_strerror(expect));
    *failed = rc == expect;
}

static inline void feed_check_final(const struct feed_parser *p, const char *label,
                                    const char *mode, int rc, int expect, const void *out,
                                    const uint8_t *base, const void *whole_out,
                                    const uint8_t *whole_base)
{
    cr_assert_eq(rc, expect, "%s: %s returned %s (%d), expected %s (%d)", label, mode,
                 wr_strerror(rc), rc, wr_strerror(expect), expect);
    if (rc >= 0 && p->same != NULL) {
        cr_assert(p->same(out, base, whole_out, whole_base),
                  "%s: %s parsed differently from the whole input", label, mode);
    }
}

/*
 * Runs p over data three ways: whole, one byte at a time (last_len set to the
 * previous length), and cut at every position into two calls. Each call gets
 * its input right before a guard page. Returns the whole parse in out, whose
 * spans point into keep, and the caller frees keep with feed_guard_free.
 */
static inline int feed_run(const struct feed_parser *p, const char *label, const void *data,
                           size_t len, int expect, void *out, struct feed_guard *keep)
{
    struct feed_guard scratch;
    void *tmp = malloc(p->out_size);
    const uint8_t *whole;
    const uint8_t *buf;
    size_t prev = 0;
    size_t n;
    size_t k;
    bool failed = false;
    char mode[48];
    int whole_rc;
    int rc;

    cr_assert_not_null(tmp, "malloc failed");
    feed_guard_init(keep, len);
    feed_guard_init(&scratch, len);

    whole = feed_guard_place(keep, data, len);
    whole_rc = p->parse(whole, len, 0, out);
    feed_check_final(p, label, "whole input", whole_rc, expect, out, whole, out, whole);

    for (n = 0; n < len; n++) {
        buf = feed_guard_place(&scratch, data, n);
        rc = p->parse(buf, n, prev, tmp);
        feed_check_prefix(label, "byte-by-byte", n, rc, expect, &failed);
        prev = n;
    }
    buf = feed_guard_place(&scratch, data, len);
    rc = p->parse(buf, len, prev, tmp);
    feed_check_final(p, label, "byte-by-byte input", rc, expect, tmp, buf, out, whole);

    failed = false;
    for (k = 0; k < len; k++) {
        buf = feed_guard_place(&scratch, data, k);
        rc = p->parse(buf, k, 0, tmp);
        feed_check_prefix(label, "cut", k, rc, expect, &failed);
        if (rc != WR_AGAIN) {
            continue;
        }
        buf = feed_guard_place(&scratch, data, len);
        rc = p->parse(buf, len, k, tmp);
        snprintf(mode, sizeof(mode), "input cut at %zu", k);
        feed_check_final(p, label, mode, rc, expect, tmp, buf, out, whole);
    }

    feed_guard_free(&scratch);
    free(tmp);
    return whole_rc;
}

#endif
