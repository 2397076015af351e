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

/* Resolved addresses of the upstream, or of the proxy when one is set. */
struct wr_addr_list {
    unsigned count;                  /* 0: not resolved, every dial gets 502 */
    socklen_t lens[WR_MAX_UPSTREAM_ADDRS];
    struct sockaddr_storage addrs[WR_MAX_UPSTREAM_ADDRS];
};

/* Everything here is written before the workers start, except the atomics. */
struct wr_server {
    const struct wr_conf *conf;
    char instance[17];               /* random hex id of this process run */
    struct wr_addr_list first_addrs; /* resolved before the workers start */
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
