/* SPDX-License-Identifier: MIT */
/*
 * The worker loop. Each worker owns one io_uring (SINGLE_ISSUER and
 * DEFER_TASKRUN, so completions run only when this thread waits), its own
 * SO_REUSEPORT listener with a multishot accept into direct descriptors, a
 * ring of provided receive buffers, and an array of relay slots. Both legs of
 * every relay live on the same ring, so nothing on the data path is shared.
 */
#include "ring/worker.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/relay.h"
#include "ring/ud.h"

#define WR_RING_ENTRIES 4096
#define WR_LOG_SINK_BYTES (1024 * 1024)

uint64_t wr_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct io_uring_sqe *wr_worker_sqe(struct wr_worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

    while (sqe == NULL) {
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    return sqe;
}

void wr_worker_random(struct wr_worker *w, uint8_t out[4])
{
    if (w->rand_pos + 4 > sizeof(w->rand_pool)) {
        if (wc_RNG_GenerateBlock(&w->rng, w->rand_pool, sizeof(w->rand_pool)) != 0) {
            /* NOTE: wolfCrypt's DRBG fails only if its reseed fails; getrandom() then fills in. */
            if (getrandom(w->rand_pool, sizeof(w->rand_pool), 0) < 0) {
                abort();
            }
        }
        w->rand_pos = 0;
    }
    memcpy(out, w->rand_pool + w->rand_pos, 4);
    w->rand_pos += 4;
}

uint8_t *wr_worker_buf(struct wr_worker *w, uint16_t bid)
{
    return w->buf_base + (size_t)bid * WR_RING_BUF_SIZE;
}

void wr_worker_buf_ref(struct wr_worker *w, uint16_t bid)
{
    w->buf_refs[bid]++;
}

void wr_worker_buf_unref(struct wr_worker *w, uint16_t bid)
{
    assert(w->buf_refs[bid] > 0);
    if (--w->buf_refs[bid] > 0) {
        return;
    }
    io_uring_buf_ring_add(w->buf_ring, wr_worker_buf(w, bid), WR_RING_BUF_SIZE, bid,
                          io_uring_buf_ring_mask(WR_RING_BUF_COUNT), 0);
    io_uring_buf_ring_advance(w->buf_ring, 1);
    w->buf_free++;
}

static int setup_buffers(struct wr_worker *w)
{
    size_t ring_bytes = WR_RING_BUF_COUNT * sizeof(struct io_uring_buf);
    struct io_uring_buf_reg reg;
    void *mem;
    int ret;

    mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) {
        return -errno;
    }
    w->buf_ring = mem;
    io_uring_buf_ring_init(w->buf_ring);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)mem;
    reg.ring_entries = WR_RING_BUF_COUNT;
    reg.bgid = WR_RING_BGID;
    ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (ret < 0) {
        return ret;
    }

    /* Pages of the buffers are touched only as traffic needs them. */
    w->buf_base = mmap(NULL, (size_t)WR_RING_BUF_COUNT * WR_RING_BUF_SIZE, PROT_READ | PROT_WRITE,
                       MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
    if (w->buf_base == MAP_FAILED) {
        w->buf_base = NULL;
        return -errno;
    }
    w->buf_refs = calloc(WR_RING_BUF_COUNT, sizeof(*w->buf_refs));
    if (w->buf_refs == NULL) {
        return WR_ENOMEM;
    }
    for (unsigned i = 0; i < WR_RING_BUF_COUNT; i++) {
        io_uring_buf_ring_add(w->buf_ring, wr_worker_buf(w, (uint16_t)i), WR_RING_BUF_SIZE,
                              (unsigned short)i, io_uring_buf_ring_mask(WR_RING_BUF_COUNT),
                              (int)i);
    }
    io_uring_buf_ring_advance(w->buf_ring, WR_RING_BUF_COUNT);
    w->buf_free = WR_RING_BUF_COUNT;
    return 0;
}

/* Binds a socket to the listen address; reuse_port lets every worker bind its own. */
static int bind_listener(const struct wr_conf_endpoint *ep, bool reuse_port, char *err,
                         size_t err_len)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int fd, one = 1, ret;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", ep->port);
    ret = getaddrinfo(ep->host, port, &hints, &res);
    if (ret != 0) {
        snprintf(err, err_len, "cannot resolve listen address %s: %s", ep->host, gai_strerror(ret));
        return -EINVAL;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ret = -errno;
        snprintf(err, err_len, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return ret;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    /* Accepted sockets inherit TCP_NODELAY: relayed frames go out without delay. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 ||
        (reuse_port && listen(fd, 4096) < 0)) {
        ret = -errno;
        snprintf(err, err_len, "cannot listen on %s port %u: %s", ep->host, ep->port,
                 strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return ret;
    }
    freeaddrinfo(res);
    return fd;
}

static int open_listener(const struct wr_conf_endpoint *ep, bool first, char *err,
                         size_t err_len)
{
    /*
     * SO_REUSEPORT would let this bind share a port that another wsrelay
     * holds, so the first worker checks with a plain bind that the port is free.
     */
    if (first) {
        int probe = bind_listener(ep, false, err, err_len);

        if (probe < 0) {
            return probe;
        }
        close(probe);
    }
    return bind_listener(ep, true, err, err_len);
}

int wr_worker_init(struct wr_worker *w, struct wr_server *server, unsigned id, char *err,
                   size_t err_len)
{
    const struct wr_conf *conf = server->conf;
    struct io_uring_params params;
    struct rlimit rl;
    unsigned table;
    int ret;

    memset(w, 0, sizeof(*w));
    w->id = id;
    w->server = server;
    w->listen_fd = -1;
    w->wake_fd = -1;

    memset(&params, 0, sizeof(params));
    /* Created disabled so the main thread can register buffers and files; the
     * worker thread enables it and so becomes its single issuer. */
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                   IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED;
    params.cq_entries = WR_RING_ENTRIES * 4;
    ret = io_uring_queue_init_params(WR_RING_ENTRIES, &w->ring, &params);
    if (ret < 0) {
        snprintf(err, err_len,
                 "io_uring setup failed (%s): wsrelay needs Linux 6.1 or later with io_uring "
                 "enabled (DEFER_TASKRUN)",
                 strerror(-ret));
        return ret;
    }

    /*
     * Downstream sockets are direct descriptors, which do not count against
     * RLIMIT_NOFILE, so each relay uses only one ordinary descriptor (its
     * upstream socket). The kernel caps one table at RLIMIT_NOFILE entries.
     */
    getrlimit(RLIMIT_NOFILE, &rl);
    table = conf->max_connections + 64;
    if (rl.rlim_cur != RLIM_INFINITY && table > rl.rlim_cur) {
        table = (unsigned)rl.rlim_cur;
    }
    ret = io_uring_register_files_sparse(&w->ring, table);
    if (ret < 0) {
        snprintf(err, err_len, "cannot register %u direct descriptors: %s", table, strerror(-ret));
        return ret;
    }

    ret = setup_buffers(w);
    if (ret < 0) {
        snprintf(err, err_len, "cannot set up receive buffers: %s", wr_strerror(ret));
        return ret;
    }

    w->num_slots = conf->max_connections + 64;
    w->slots = calloc(w->num_slots, sizeof(*w->slots));
    w->free_slots = malloc(w->num_slots * sizeof(*w->free_slots));
    if (w->slots == NULL || w->free_slots == NULL) {
        snprintf(err, err_len, "out of memory for %u relay slots", w->num_slots);
        return WR_ENOMEM;
    }
    /* Slots are left untouched until used, so idle capacity costs no resident memory. */
    for (unsigned i = 0; i < w->num_slots; i++) {
        w->free_slots[w->num_slots - 1 - i] = i;
    }
    w->num_free_slots = w->num_slots;

    if (wr_log_sink_init(&w->log, WR_LOG_SINK_BYTES) < 0 || wr_ledger_init(&w->ledger) < 0 ||
        wc_InitRng(&w->rng) != 0) {
        snprintf(err, err_len, "cannot initialise the log buffer or the random generator");
        return WR_ENOMEM;
    }
    w->rand_pos = sizeof(w->rand_pool);

    ret = wr_tls_ctx_init(&w->tls, conf, err, err_len);
    if (ret < 0) {
        return ret;
    }
    w->plain = malloc(WR_RING_BUF_SIZE);
    w->tls_stage = malloc(WR_RING_BUF_SIZE);
    if (w->plain == NULL || w->tls_stage == NULL) {
        snprintf(err, err_len, "out of memory for the TLS buffer");
        return WR_ENOMEM;
    }
    w->addrs = server->first_addrs;
    atomic_init(&w->addr_inbox, NULL);

    w->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (w->wake_fd < 0) {
        snprintf(err, err_len, "eventfd: %s", strerror(errno));
        return -errno;
    }
    ret = open_listener(&conf->listen_addr, id == 1, err, err_len);
    if (ret < 0) {
        return ret;
    }
    w->listen_fd = ret;
    return 0;
}

void wr_worker_free(struct wr_worker *w)
{
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
    }
    if (w->wake_fd >= 0) {
        close(w->wake_fd);
    }
    if (w->ring.ring_fd > 0) {
        io_uring_queue_exit(&w->ring);
    }
    if (w->buf_base != NULL) {
        munmap(w->buf_base, (size_t)WR_RING_BUF_COUNT * WR_RING_BUF_SIZE);
    }
    if (w->buf_ring != NULL) {
        munmap(w->buf_ring, WR_RING_BUF_COUNT * sizeof(struct io_uring_buf));
    }
    free(w->buf_refs);
    free(w->slots);
    free(w->free_slots);
    while (w->free_scans != NULL) {
        void *scan = w->free_scans;

        memcpy(&w->free_scans, scan, sizeof(void *));
        free(scan);
    }
    while (w->free_segs != NULL) {
        struct wr_seg *next = w->free_segs->next;
        free(w->free_segs);
        w->free_segs = next;
    }
    wc_FreeRng(&w->rng);
    wr_tls_ctx_free(&w->tls);
    free(w->plain);
    free(w->tls_stage);
    free(atomic_exchange(&w->addr_inbox, NULL));
    wr_log_sink_free(&w->log);
    wr_ledger_free(&w->ledger);
}

static void submit_accept(struct wr_worker *w)
{
    struct io_uring_sqe *sqe = wr_worker_sqe(w);

    io_uring_prep_multishot_accept_direct(sqe, w->listen_fd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_ACCEPT, 0, 0));
    w->accept_armed = true;
}

static void submit_wake_read(struct wr_worker *w)
{
    struct io_uring_sqe *sqe = wr_worker_sqe(w);

    io_uring_prep_read(sqe, w->wake_fd, &w->wake_value, sizeof(w->wake_value), 0);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_WAKE, 0, 0));
}

void wr_worker_wake(struct wr_worker *w)
{
    uint64_t one = 1;

    if (write(w->wake_fd, &one, sizeof(one)) < 0) {
        /* The eventfd counter cannot overflow from one write per signal. */
    }
}

void wr_worker_post_addrs(struct wr_worker *w, struct wr_addr_list *list)
{
    /* The thread that exchanges a list out of the inbox owns it, so no list is freed twice. */
    free(atomic_exchange(&w->addr_inbox, list));
    wr_worker_wake(w);
}

static void take_addrs(struct wr_worker *w)
{
    struct wr_addr_list *list = atomic_exchange(&w->addr_inbox, NULL);

    if (list != NULL) {
        w->addrs = *list;
        free(list);
    }
}

/* Hands the pending log lines to the ring; one write is in flight at a time. */
static void flush_log(struct wr_worker *w)
{
    struct wr_log_sink *sink = &w->log;
    struct io_uring_sqe *sqe;
    char *swap;

    if (sink->write_in_flight || (sink->fill_len == 0 && sink->dropped == 0)) {
        return;
    }
    if (sink->dropped > 0 && sink->fill_len + 128 <= sink->cap) {
        struct wr_log_line line;
        uint64_t dropped = sink->dropped;

        sink->dropped = 0;
        wr_log_begin(&line, WR_LOG_WARN, "log_dropped");
        wr_log_int(&line, "worker", w->id);
        wr_log_int(&line, "lines", (long long)dropped);
        wr_log_end(&line);
    }
    swap = sink->write;
    sink->write = sink->fill;
    sink->write_len = sink->fill_len;
    sink->write_done = 0;
    sink->fill = swap;
    sink->fill_len = 0;
    sink->write_in_flight = true;

    sqe = wr_worker_sqe(w);
    io_uring_prep_write(sqe, STDERR_FILENO, sink->write, (unsigned)sink->write_len, (__u64)-1);
    io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_LOG_WRITE, 0, 0));
}

static void on_log_write(struct wr_worker *w, int res)
{
    struct wr_log_sink *sink = &w->log;
    struct io_uring_sqe *sqe;

    if (res == -EINTR || res == -EAGAIN) {
        res = 0;
    }
    if (res < 0) {
        /* stderr is gone; count the lost lines and keep relaying. */
        sink->dropped++;
        sink->write_in_flight = false;
        return;
    }
    sink->write_done += (size_t)res;
    if (sink->write_done < sink->write_len) {
        sqe = wr_worker_sqe(w);
        io_uring_prep_write(sqe, STDERR_FILENO, sink->write + sink->write_done,
                            (unsigned)(sink->write_len - sink->write_done), (__u64)-1);
        io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_LOG_WRITE, 0, 0));
        return;
    }
    sink->write_in_flight = false;
}

static void begin_shutdown(struct wr_worker *w)
{
    struct io_uring_sqe *sqe;

    if (w->stopping) {
        return;
    }
    w->stopping = true;
    w->stop_deadline_ms = w->now_ms + w->server->conf->upstream_drain_timeout_ms;
    /* Stop accepting now: the ring keeps the listener open until its teardown after exit. */
    if (w->listen_fd >= 0) {
        shutdown(w->listen_fd, SHUT_RDWR);
    }
    if (w->accept_armed) {
        sqe = wr_worker_sqe(w);
        io_uring_prep_cancel64(sqe, wr_ring_ud_pack(WR_OP_ACCEPT, 0, 0), 0);
        io_uring_sqe_set_data64(sqe, wr_ring_ud_pack(WR_OP_CANCEL, 0, 0));
    }
    for (unsigned i = 0; i < w->num_slots; i++) {
        if (w->slots[i].in_use) {
            wr_relay_shutdown(w, &w->slots[i]);
        }
    }
}

static void on_accept(struct wr_worker *w, int res, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE)) {
        w->accept_armed = false;
    }
    if (res >= 0) {
        wr_relay_accept(w, res);
    } else if (w->stopping) {
        return; /* the listener was shut down */
    } else if (res != -ECANCELED && res != -EAGAIN && res != -EINTR) {
        /* -ENFILE: the direct descriptor table is full; re-armed below. */
        struct wr_log_line line;

        if (wr_log_enabled(WR_LOG_WARN)) {
            wr_log_begin(&line, WR_LOG_WARN, "accept_failed");
            wr_log_int(&line, "worker", w->id);
            wr_log_str(&line, "err", wr_strerror(res));
            wr_log_end(&line);
        }
    }
    if (!w->accept_armed && !w->stopping && res != -ENFILE) {
        submit_accept(w);
    }
}

static void dispatch(struct wr_worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum wr_ring_op op = wr_ring_ud_op(ud);
    struct wr_relay *r;
    uint32_t slot;


    switch (op) {
    case WR_OP_ACCEPT:
        on_accept(w, cqe->res, cqe->flags);
        return;
    case WR_OP_WAKE:
        take_addrs(w);
        if (atomic_load(&w->server->shutting_down)) {
            begin_shutdown(w);
        } else {
            submit_wake_read(w);
        }
        return;
    case WR_OP_LOG_WRITE:
        on_log_write(w, cqe->res);
        return;
    case WR_OP_CANCEL:
        if (wr_ring_ud_slot(ud) == 0 && wr_ring_ud_gen(ud) == 0) {
            return;
        }
        break;
    case WR_OP_LEDGER_WRITE:
    case WR_OP_LEDGER_FSYNC:
    case WR_OP_LEDGER_RETRY:
        wr_ledger_complete(w, op, cqe->res);
        return;
    default:
        break;
    }

    slot = wr_ring_ud_slot(ud);
    if (slot >= w->num_slots) {
        return;
    }
    r = &w->slots[slot];
    if (!r->in_use || r->gen != wr_ring_ud_gen(ud)) {
        /* A completion for a relay that has since been freed: its buffer still goes back. */
        if (cqe->flags & IORING_CQE_F_BUFFER) {
            uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            w->buf_refs[bid] = 1;
            wr_worker_buf_unref(w, bid);
        }
        return;
    }
    wr_relay_complete(w, r, op, cqe->res, cqe->flags);
}

static void rearm_buffer_waiters(struct wr_worker *w)
{
    while (w->buf_waiters != NULL && w->buf_free > 0) {
        struct wr_relay *r = w->buf_waiters;

        w->buf_waiters = r->next_waiter;
        r->next_waiter = NULL;
        wr_relay_buffers_returned(w, r);
    }
}

/*
 * liburing 2.3 declares io_uring_enable_rings but its shared library does not
 * export it, so the register call is made directly.
 */
static int enable_ring(struct io_uring *ring)
{
    long ret = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL,
                       0);

    return ret < 0 ? -errno : 0;
}

static void *worker_main(void *arg)
{
    struct wr_worker *w = arg;
    struct io_uring_cqe *cqe;
    unsigned head, count;

    int enable = enable_ring(&w->ring);

    if (enable < 0) {
        wr_log_msg(WR_LOG_ERROR, "worker_failed", "worker %u: cannot enable its io_uring: %s",
                   w->id, strerror(-enable));
        return NULL;
    }
    wr_log_set_sink(&w->log);
    w->now_ms = wr_now_ms();
    submit_accept(w);
    submit_wake_read(w);
    if (atomic_load(&w->server->shutting_down)) {
        begin_shutdown(w);
    }

    for (;;) {
        int ret;

        if (w->stopping && w->live_relays == 0 && w->ledger.fill_len == 0 &&
            !w->ledger.in_flight && !w->ledger.retry_armed) {
            break;
        }
        wr_ledger_flush(w);
        flush_log(w);
        ret = io_uring_submit_and_wait(&w->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            wr_log_msg(WR_LOG_ERROR, "worker_failed", "worker %u: io_uring_submit_and_wait: %s",
                       w->id, strerror(-ret));
            break;
        }
        w->now_ms = wr_now_ms();
        count = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe) {
            dispatch(w, cqe);
            count++;
        }
        io_uring_cq_advance(&w->ring, count);
        rearm_buffer_waiters(w);
    }

    if ((w->tls.client != NULL || w->tls.server != NULL) && wr_log_enabled(WR_LOG_INFO)) {
        struct wr_log_line line;

        wr_log_begin(&line, WR_LOG_INFO, "tls_handshakes");
        wr_log_int(&line, "worker", w->id);
        wr_log_int(&line, "upstream_full", (long long)w->tls.full_handshakes);
        wr_log_int(&line, "upstream_resumed", (long long)w->tls.resumed_handshakes);
        wr_log_int(&line, "downstream", (long long)w->tls.downstream_handshakes);
        wr_log_end(&line);
    }

    /* Write the last lines synchronously: the ring is about to go away. */
    wr_log_set_sink(NULL);
    while (w->log.write_in_flight) {
        if (io_uring_wait_cqe(&w->ring, &cqe) < 0) {
            break;
        }
        if (wr_ring_ud_op(io_uring_cqe_get_data64(cqe)) == WR_OP_LOG_WRITE) {
            on_log_write(w, cqe->res);
        }
        io_uring_cqe_seen(&w->ring, cqe);
    }
    if (w->log.fill_len > 0) {
        if (write(STDERR_FILENO, w->log.fill, w->log.fill_len) < 0) {
            /* Nothing else can report it. */
        }
    }
    return NULL;
}

int wr_worker_start(struct wr_worker *w)
{
    return -pthread_create(&w->thread, NULL, worker_main, w);
}
