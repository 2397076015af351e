/* SPDX-License-Identifier: MIT */
/* Process-wide state that workers read: configuration, upstream address, counters. */
#ifndef WR_CORE_SERVER_H
#define WR_CORE_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "conf/conf.h"

#define WR_MAX_UPSTREAM_ADDRS 8

struct wr_worker;

/* Everything here is written before the workers start, except the atomics. */
struct wr_server {
    const struct wr_conf *conf;
    char instance[17];               /* random hex id of this process run */
    struct sockaddr_storage upstream_addrs[WR_MAX_UPSTREAM_ADDRS];
    socklen_t upstream_addr_lens[WR_MAX_UPSTREAM_ADDRS];
    unsigned num_upstream_addrs;     /* 0: not resolved, every dial answers 502 */
    const char *upstream_key;        /* NULL: no Authorization header upstream */
    char upstream_host_header[300];  /* Host value: host, or host:port when not default */
    atomic_uint active;              /* downstream connections past authentication */
    atomic_bool shutting_down;
    unsigned num_workers;
    struct wr_worker *workers;
    int ledger_fd;                   /* O_APPEND; SIGHUP replaces it in place with dup2 */
    bool test_refuse_timeouts;       /* test hook: pretend the ring rejects link timeouts */
};

#endif
