/* SPDX-License-Identifier: MIT */
/* Latency histogram and /proc sampling of the proxy under test, for the load generator. */
#include "bench/loadgen_stats.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t histogram_index(uint64_t value)
{
    unsigned exponent;
    unsigned shift;

    if (value < LG_HISTOGRAM_LINEAR) {
        return (size_t)value;
    }
    exponent = 63u - (unsigned)__builtin_clzll(value); /* 7 to 63 */
    shift = exponent - LG_HISTOGRAM_SUB_BITS;
    return LG_HISTOGRAM_LINEAR + (size_t)(exponent - 7) * (1u << LG_HISTOGRAM_SUB_BITS) +
           (size_t)((value >> shift) - (1u << LG_HISTOGRAM_SUB_BITS));
}

/* Returns the middle of the range of values that land in bucket index. */
static uint64_t histogram_bucket_value(size_t index)
{
    size_t above;
    unsigned exponent;
    unsigned shift;
    uint64_t low;

    if (index < LG_HISTOGRAM_LINEAR) {
        return (uint64_t)index;
    }
    above = index - LG_HISTOGRAM_LINEAR;
    exponent = 7 + (unsigned)(above >> LG_HISTOGRAM_SUB_BITS);
    shift = exponent - LG_HISTOGRAM_SUB_BITS;
    low = ((uint64_t)(1u << LG_HISTOGRAM_SUB_BITS) + (above & ((1u << LG_HISTOGRAM_SUB_BITS) - 1)))
          << shift;
    return low + (((uint64_t)1 << shift) >> 1);
}

void lg_histogram_record(struct lg_histogram *h, uint64_t value)
{
    h->buckets[histogram_index(value)]++;
    h->count++;
    if (value > h->max) {
        h->max = value;
    }
}

uint64_t lg_histogram_percentile(const struct lg_histogram *h, double fraction)
{
    uint64_t rank;
    uint64_t seen = 0;
    uint64_t value;
    size_t i;

    if (h->count == 0) {
        return 0;
    }
    rank = (uint64_t)(fraction * (double)h->count + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > h->count) {
        rank = h->count;
    }
    for (i = 0; i < LG_HISTOGRAM_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            value = histogram_bucket_value(i);
            return value < h->max ? value : h->max;
        }
    }
    return h->max;
}

/* Reads utime + stime (fields 14 and 15 of /proc/PID/stat) in clock ticks. */
static int read_cpu_ticks(pid_t pid, uint64_t *ticks)
{
    char path[64];
    char line[1024];
    unsigned long long utime;
    unsigned long long stime;
    const char *after_name;
    FILE *f;
    bool ok;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (f == NULL) {
        return -errno;
    }
    ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    if (!ok) {
        return -EIO;
    }

    /* The command name in field 2 may contain spaces and parentheses, so skip past the last ')'. */
    after_name = strrchr(line, ')');
    if (after_name == NULL ||
        sscanf(after_name + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
               &stime) != 2) {
        return -EIO;
    }
    *ticks = utime + stime;
    return 0;
}

/* Reads VmRSS from /proc/PID/status in KiB. Kernel threads and zombies have none and count as 0. */
static int read_rss_kib(pid_t pid, uint64_t *rss_kib)
{
    char path[64];
    char line[256];
    unsigned long long kib;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "re");
    if (f == NULL) {
        return -errno;
    }
    *rss_kib = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %llu kB", &kib) == 1) {
            *rss_kib = kib;
            break;
        }
    }
    fclose(f);
    return 0;
}

static bool pid_listed(const pid_t *pids, size_t n, pid_t pid)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (pids[i] == pid) {
            return true;
        }
    }
    return false;
}

/* Appends the children of every thread of pid to pids, up to LG_PROC_MAX_PIDS in all. */
static void append_children(pid_t pid, pid_t *pids, size_t *n)
{
    char path[64];
    struct dirent *entry;
    DIR *tasks;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    tasks = opendir(path);
    if (tasks == NULL) {
        return;
    }
    while ((entry = readdir(tasks)) != NULL && *n < LG_PROC_MAX_PIDS) {
        char children_path[300];
        FILE *f;
        int child;

        if (entry->d_name[0] == '.') {
            continue;
        }
        snprintf(children_path, sizeof(children_path), "/proc/%d/task/%s/children", (int)pid,
                 entry->d_name);
        f = fopen(children_path, "re");
        if (f == NULL) {
            continue;
        }
        while (*n < LG_PROC_MAX_PIDS && fscanf(f, "%d", &child) == 1) {
            if (!pid_listed(pids, *n, (pid_t)child)) {
                pids[(*n)++] = (pid_t)child;
            }
        }
        fclose(f);
    }
    closedir(tasks);
}

int lg_machine_busy_ticks(uint64_t *ticks)
{
    unsigned long long user, nice, system, idle, iowait, irq, softirq, steal;
    FILE *f = fopen("/proc/stat", "re");
    int n;

    if (f == NULL) {
        return -errno;
    }
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle,
               &iowait, &irq, &softirq, &steal);
    fclose(f);
    if (n != 8) {
        return -EIO;
    }
    *ticks = user + nice + system + irq + softirq + steal;
    return 0;
}

int lg_proc_sample(const pid_t *roots, size_t num_roots, struct lg_proc_sample *out)
{
    pid_t pids[LG_PROC_MAX_PIDS];
    size_t unique_roots;
    size_t n = 0;
    size_t i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < num_roots && n < LG_PROC_MAX_PIDS; i++) {
        if (!pid_listed(pids, n, roots[i])) {
            pids[n++] = roots[i];
        }
    }
    unique_roots = n;
    /* pids grows while it is walked, so this visits every descendant breadth-first. */
    for (i = 0; i < n; i++) {
        append_children(pids[i], pids, &n);
    }

    for (i = 0; i < n; i++) {
        uint64_t ticks = 0;
        uint64_t rss = 0;

        if (read_cpu_ticks(pids[i], &ticks) < 0 || read_rss_kib(pids[i], &rss) < 0) {
            if (i < unique_roots) {
                return -ESRCH;
            }
            continue;
        }
        out->cpu_ticks += ticks;
        out->rss_kib += rss;
        out->processes++;
    }
    return 0;
}
