/* SPDX-License-Identifier: MIT */
/* Upstream name resolution off the workers, and the proxy's CONNECT request. */
#include "core/upstream.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "ring/worker.h"

int wr_resolve(const char *host, unsigned port, struct wr_addr_list *list)
{
    struct addrinfo hints, *res = NULL, *ai;
    char service[8];
    int ret;

    memset(list, 0, sizeof(*list));
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%u", port);
    ret = getaddrinfo(host, service, &hints, &res);
    if (ret != 0) {
        return ret;
    }
    for (ai = res; ai != NULL && list->count < WR_MAX_UPSTREAM_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(list->addrs[0])) {
            continue;
        }
        memcpy(&list->addrs[list->count], ai->ai_addr, ai->ai_addrlen);
        list->lens[list->count] = ai->ai_addrlen;
        list->count++;
    }
    freeaddrinfo(res);
    return 0;
}

bool wr_addr_list_equal(const struct wr_addr_list *a, const struct wr_addr_list *b)
{
    if (a->count != b->count) {
        return false;
    }
    for (unsigned i = 0; i < a->count; i++) {
        if (a->lens[i] != b->lens[i] || memcmp(&a->addrs[i], &b->addrs[i], a->lens[i]) != 0) {
            return false;
        }
    }
    return true;
}

unsigned wr_resolve_delay_ms(bool resolved, unsigned failures)
{
    unsigned delay = WR_RESOLVE_RETRY_MIN_MS;

    if (resolved) {
        return WR_RESOLVE_INTERVAL_MS;
    }
    for (unsigned i = 1; i < failures && delay < WR_RESOLVE_INTERVAL_MS; i++) {
        delay *= 2;
    }
    return delay < WR_RESOLVE_INTERVAL_MS ? delay : WR_RESOLVE_INTERVAL_MS;
}

size_t wr_proxy_connect_request(char *buf, size_t cap, const char *host, unsigned port)
{
    const char *fmt = strchr(host, ':') != NULL
                          ? "CONNECT [%s]:%u HTTP/1.1\r\nHost: [%s]:%u\r\n\r\n"
                          : "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n\r\n";
    int n = snprintf(buf, cap, fmt, host, port, host, port);

    return n < 0 ? cap : (size_t)n;
}

static void lookup(struct wr_resolver *res, bool at_start)
{
    struct wr_addr_list list;
    int ret = wr_resolve(res->host, res->port, &list);

    if (ret != 0 || list.count == 0) {
        res->failures++;
        /* A host that keeps failing is reported on the first failures and then every tenth. */
        if (res->failures <= 3 || res->failures % 10 == 0) {
            wr_log_msg(WR_LOG_WARN, "upstream_resolve_failed",
                       "cannot resolve %s: %s; %s, retrying in %u ms", res->host,
                       ret != 0 ? gai_strerror(ret) : "no address",
                       res->last.count == 0 ? "dials answer 502" : "keeping the previous addresses",
                       wr_resolve_delay_ms(res->last.count > 0, res->failures));
        }
        return;
    }
    if (res->failures > 0 && !at_start) {
        wr_log_msg(WR_LOG_INFO, "upstream_resolved", "%s resolved to %u addresses", res->host,
                   list.count);
    }
    res->failures = 0;
    if (at_start) {
        res->last = list;
        res->server->first_addrs = list;
        return;
    }
    if (wr_addr_list_equal(&list, &res->last)) {
        return;
    }
    res->last = list;
    for (unsigned i = 0; i < res->server->num_workers; i++) {
        struct wr_addr_list *copy = malloc(sizeof(*copy));

        if (copy == NULL) {
            continue; /* that worker keeps its previous list until the next change */
        }
        *copy = list;
        wr_worker_post_addrs(&res->server->workers[i], copy);
    }
}

void wr_resolver_init(struct wr_resolver *res, struct wr_server *server)
{
    const struct wr_conf *conf = server->conf;
    const struct wr_conf_endpoint *target = conf->upstream_proxy[0] ? &conf->proxy
                                                                    : &conf->upstream;

    memset(res, 0, sizeof(*res));
    res->server = server;
    res->host = target->host;
    res->port = target->port;
    pthread_mutex_init(&res->lock, NULL);
    pthread_cond_init(&res->wake, NULL);
    lookup(res, true);
}

static void *resolver_main(void *arg)
{
    struct wr_resolver *res = arg;

    pthread_mutex_lock(&res->lock);
    while (!res->stop) {
        unsigned delay = wr_resolve_delay_ms(res->last.count > 0, res->failures);
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += delay / 1000;
        until.tv_nsec += (long)(delay % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!res->stop && pthread_cond_timedwait(&res->wake, &res->lock, &until) != ETIMEDOUT) {
        }
        if (res->stop) {
            break;
        }
        pthread_mutex_unlock(&res->lock);
        lookup(res, false);
        pthread_mutex_lock(&res->lock);
    }
    pthread_mutex_unlock(&res->lock);
    return NULL;
}

int wr_resolver_start(struct wr_resolver *res)
{
    int ret = pthread_create(&res->thread, NULL, resolver_main, res);

    if (ret != 0) {
        return -ret;
    }
    res->started = true;
    return 0;
}

void wr_resolver_stop(struct wr_resolver *res)
{
    if (res->started) {
        pthread_mutex_lock(&res->lock);
        res->stop = true;
        pthread_cond_signal(&res->wake);
        pthread_mutex_unlock(&res->lock);
        pthread_join(res->thread, NULL);
        res->started = false;
    }
    pthread_mutex_destroy(&res->lock);
    pthread_cond_destroy(&res->wake);
}
