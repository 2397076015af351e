/* SPDX-License-Identifier: MIT */
/* Latency histogram and /proc sampling of the proxy under test, for the load generator. */
#ifndef WR_BENCH_LOADGEN_STATS_H
#define WR_BENCH_LOADGEN_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Values below 128 get a bucket each. Above, every power of two is split
 * into 64 buckets, and a percentile is reported as the middle of its bucket,
 * so it is within 1/128 (0.8%) of the recorded value.
 */
#define LG_HISTOGRAM_LINEAR 128
#define LG_HISTOGRAM_SUB_BITS 6
#define LG_HISTOGRAM_BUCKETS (LG_HISTOGRAM_LINEAR + (64 - 7) * (1 << LG_HISTOGRAM_SUB_BITS))

/* Log-linear histogram of non-negative integers (nanoseconds in the load generator). */
struct lg_histogram {
    uint64_t count;
    uint64_t max;
    uint64_t buckets[LG_HISTOGRAM_BUCKETS];
};

void lg_histogram_record(struct lg_histogram *h, uint64_t value);

/*
 * Returns the value at fraction (0 < fraction <= 1) of the recorded values,
 * which is the middle of the bucket that contains that rank, capped at the
 * maximum. Returns 0 for an empty histogram.
 */
uint64_t lg_histogram_percentile(const struct lg_histogram *h, double fraction);

#define LG_PROC_MAX_PIDS 256

/* CPU time and resident memory of a set of processes at one moment. */
struct lg_proc_sample {
    unsigned processes; /* processes found: the roots and all their descendants */
    uint64_t cpu_ticks; /* utime + stime of every thread, live or exited, in clock ticks */
    uint64_t rss_kib;   /* sum of VmRSS */
};

/*
 * Reads /proc for the given root processes and every descendant (found
 * through /proc/PID/task/TID/children) and sums their CPU time and VmRSS.
 * Returns 0, or -ESRCH if a root process does not exist. A descendant that
 * exits during the read is skipped.
 * NOTE: the CPU time of a descendant that exits between two samples is
 * lost, so the difference between the samples undercounts it.
 */
int lg_proc_sample(const pid_t *roots, size_t num_roots, struct lg_proc_sample *out);

/*
 * Reads the busy time of all CPUs from the first line of /proc/stat (user,
 * nice, system, irq, softirq and steal) in clock ticks. Returns 0 or a
 * negative errno.
 */
int lg_machine_busy_ticks(uint64_t *ticks);

#endif
