/* SPDX-License-Identifier: MIT */
/*
 * The way to the upstream: a resolver thread that keeps the workers' address
 * lists fresh without blocking them, and the HTTP CONNECT request of a proxy.
 */
#ifndef WR_CORE_UPSTREAM_H
#define WR_CORE_UPSTREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/server.h"

#define WR_RESOLVE_INTERVAL_MS 30000   /* refresh of a resolved host */
#define WR_RESOLVE_RETRY_MIN_MS 1000   /* first retry of a host that did not resolve */

struct wr_resolver {
    struct wr_server *server;
    const char *host;            /* the upstream host, or the proxy host when one is set */
    unsigned port;
    struct wr_addr_list last;    /* the list the workers have */
    unsigned failures;           /* failed lookups in a row */
    pthread_t thread;
    pthread_mutex_t lock;        /* guards stop; the workers never take it */
    pthread_cond_t wake;
    bool stop;
    bool started;
};

/*
 * Resolves the dial target of server's configuration once into
 * server->first_addrs. A failure is logged and leaves the list empty.
 */
void wr_resolver_init(struct wr_resolver *res, struct wr_server *server);

/* Starts the thread that refreshes the workers' lists. Returns 0 or a negative errno. */
int wr_resolver_start(struct wr_resolver *res);

/* Stops and joins the thread. */
void wr_resolver_stop(struct wr_resolver *res);

/*
 * Resolves host and port into list, at most WR_MAX_UPSTREAM_ADDRS addresses in
 * the resolver's order. Blocks; never call it on a worker. Returns 0 or a
 * getaddrinfo error code.
 */
int wr_resolve(const char *host, unsigned port, struct wr_addr_list *list);

/* Returns true when a and b hold the same addresses in the same order. */
bool wr_addr_list_equal(const struct wr_addr_list *a, const struct wr_addr_list *b);

/*
 * Returns the wait before the next lookup: the refresh interval once
 * resolved, otherwise a retry that doubles from WR_RESOLVE_RETRY_MIN_MS with
 * each failure up to the refresh interval.
 */
unsigned wr_resolve_delay_ms(bool resolved, unsigned failures);

/*
 * Writes the CONNECT request for host and port into buf, with an IPv6 host
 * in brackets. Returns the length, or a length >= cap when buf is too small.
 */
size_t wr_proxy_connect_request(char *buf, size_t cap, const char *host, unsigned port);

#endif
