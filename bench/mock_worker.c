/* SPDX-License-Identifier: MIT */
/* Worker threads, each an epoll loop over its own SO_REUSEPORT listener. */
#include "bench/mock_upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* ---- Workers ---- */

static void worker_pause_accept(struct worker *w, int err)
{
    struct itimerspec spec = { .it_value = { 0, MOCK_ACCEPT_PAUSE_MS * 1000000L } };

    /* Log the first failure and then every 1000th, so a long shortage does not flood stderr. */
    if (w->accept_failures++ % 1000 == 0) {
        mock_log(w->opts, LOG_WARN,
                 "event=accept_paused worker=%u err=%s count=%" PRIu64
                 " hint=\"raise the open file limit (ulimit -n)\"",
                 w->index, strerror(err), w->accept_failures);
    }
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->listen_fd, NULL) == 0) {
        w->accept_paused = true;
        timerfd_settime(w->accept_timer_fd, 0, &spec, NULL);
    }
}

static void worker_resume_accept(struct worker *w)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &w->listen_watch };
    uint64_t expirations;

    if (read(w->accept_timer_fd, &expirations, sizeof(expirations)) < 0 || !w->accept_paused) {
        return;
    }
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev) == 0) {
        w->accept_paused = false;
    }
}

static void worker_accept(struct worker *w)
{
    int i;

    for (i = 0; i < MOCK_ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int err = errno;

        if (fd >= 0) {
            conn_open(w, fd);
            continue;
        }
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            worker_pause_accept(w, err);
            return;
        }
        /* EAGAIN ends the batch, while ECONNABORTED only loses that one client. */
        if (err != EINTR && err != ECONNABORTED) {
            return;
        }
    }
}

static void worker_dispatch(struct worker *w, const struct epoll_event *ev)
{
    struct watch *watch = ev->data.ptr;

    switch (watch->kind) {
    case WATCH_LISTEN:
        worker_accept(w);
        break;
    case WATCH_WAKE:
        w->stopping = true;
        break;
    case WATCH_ACCEPT_TIMER:
        worker_resume_accept(w);
        break;
    case WATCH_SOCKET:
        if (!watch->conn->closed) {
            conn_on_socket(watch->conn, ev->events);
        }
        break;
    case WATCH_TIMER:
        if (!watch->conn->closed) {
            conn_on_timer(watch->conn);
        }
        break;
    }
}

static void worker_free_graveyard(struct worker *w)
{
    while (w->graveyard != NULL) {
        struct conn *c = w->graveyard;

        w->graveyard = c->next;
        free(c);
    }
}

void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct epoll_event events[256];
    int n;
    int i;

    while (!w->stopping) {
        n = epoll_wait(w->epoll_fd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            mock_log(w->opts, LOG_ERROR, "event=epoll_failed worker=%u err=%s", w->index,
                     strerror(errno));
            break;
        }
        for (i = 0; i < n; i++) {
            worker_dispatch(w, &events[i]);
        }
        worker_free_graveyard(w);
    }

    while (w->conns != NULL) {
        conn_close(w->conns, "shutdown");
    }
    worker_free_graveyard(w);
    mock_log(w->opts, LOG_INFO,
             "event=worker_stopped worker=%u connections=%" PRIu64 " turns=%" PRIu64, w->index,
             w->accepted, w->turns);
    return NULL;
}

static int worker_add(struct worker *w, int fd, struct watch *watch, enum watch_kind kind)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = watch };

    watch->kind = kind;
    watch->conn = NULL;
    return epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

int worker_init(struct worker *w, unsigned index, const struct options *opts)
{
    w->index = index;
    w->opts = opts;
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->accept_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (w->epoll_fd < 0 || w->wake_fd < 0 || w->accept_timer_fd < 0) {
        return -errno;
    }
    if (worker_add(w, w->listen_fd, &w->listen_watch, WATCH_LISTEN) < 0 ||
        worker_add(w, w->wake_fd, &w->wake_watch, WATCH_WAKE) < 0 ||
        worker_add(w, w->accept_timer_fd, &w->accept_timer_watch, WATCH_ACCEPT_TIMER) < 0) {
        return -errno;
    }
    return 0;
}

void worker_close_fds(struct worker *w)
{
    int *fds[] = { &w->epoll_fd, &w->wake_fd, &w->accept_timer_fd, &w->listen_fd };
    size_t i;

    for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    }
}

/* ---- Listening sockets ---- */

void set_port(struct sockaddr_storage *addr, uint16_t port)
{
    if (addr->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)addr)->sin6_port = htons(port);
    } else {
        ((struct sockaddr_in *)addr)->sin_port = htons(port);
    }
}

static uint16_t get_port(const struct sockaddr_storage *addr)
{
    if (addr->ss_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    }
    return ntohs(((const struct sockaddr_in *)addr)->sin_port);
}

void format_address(const struct sockaddr_storage *addr, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];

    if (addr->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, host, sizeof(host));
        snprintf(out, cap, "[%s]:%u", host, get_port(addr));
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%u", host, get_port(addr));
    }
}

/*
 * Binds a plain socket to the address and releases it. SO_REUSEPORT lets any
 * socket of the same user join a port, so without this check a port already
 * served by another program would silently share its connections with the
 * mock. Port 0 is replaced by the free port the kernel picked.
 */
static int port_check_free(struct options *opts)
{
    struct sockaddr_storage bound;
    socklen_t len = sizeof(bound);
    int enable = 1;
    int fd = socket(opts->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = 0;

    if (fd < 0) {
        return -errno;
    }
    /* SO_REUSEADDR only skips TIME_WAIT leftovers, so a listening socket still blocks the bind. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable));
    if (opts->addr.ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &enable, sizeof(enable));
    }
    if (bind(fd, (struct sockaddr *)&opts->addr, opts->addr_len) < 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &len) < 0) {
        rc = -errno;
    } else {
        set_port(&opts->addr, get_port(&bound));
    }
    close(fd);
    return rc;
}

/* Opens one SO_REUSEPORT listener per worker, all on the same port. */
int listeners_open(struct options *opts, struct worker *workers)
{
    int enable = 1;
    unsigned i;
    int rc = port_check_free(opts);

    if (rc < 0) {
        return rc;
    }
    for (i = 0; i < opts->threads; i++) {
        int fd = socket(opts->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        workers[i].listen_fd = fd;
        if (fd < 0) {
            return -errno;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable));
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &enable, sizeof(enable)) < 0) {
            return -errno;
        }
        if (opts->addr.ss_family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &enable, sizeof(enable));
        }
        if (bind(fd, (struct sockaddr *)&opts->addr, opts->addr_len) < 0 ||
            listen(fd, 4096) < 0) {
            return -errno;
        }
    }
    return 0;
}
