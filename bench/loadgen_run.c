/* SPDX-License-Identifier: MIT */
/* Load generator event loop: ramp-up, churn restarts, phases and the measured window. */
#include "bench/loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>

static double client_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- Phases and the measured window ---- */

static void proxy_sample(struct loadgen *lg, struct lg_proc_sample *out)
{
    if (lg->opts.num_proxy_pids == 0) {
        memset(out, 0, sizeof(*out));
        return;
    }
    if (lg_proc_sample(lg->opts.proxy_pids, lg->opts.num_proxy_pids, out) < 0) {
        fprintf(stderr, "loadgen: a proxy process has exited; its CPU time and memory are lost\n");
        memset(out, 0, sizeof(*out));
    }
    if (out->rss_kib > lg->window.proxy_rss_peak_kib) {
        lg->window.proxy_rss_peak_kib = out->rss_kib;
    }
}

static void cpu_marks_read(const struct loadgen *lg, struct cpu_marks *m)
{
    struct lg_proc_sample upstream;

    m->client_s = client_cpu_s();
    m->upstream_ticks = 0;
    if (lg->opts.upstream_pid != 0 && lg_proc_sample(&lg->opts.upstream_pid, 1, &upstream) == 0) {
        m->upstream_ticks = upstream.cpu_ticks;
    }
    if (lg_machine_busy_ticks(&m->machine_ticks) < 0) {
        m->machine_ticks = 0;
    }
}

static void window_open(struct loadgen *lg, uint64_t now)
{
    struct window *w = &lg->window;
    unsigned i;

    w->open = true;
    w->opened = true;
    w->start_ns = now;
    w->start = lg->totals;
    cpu_marks_read(lg, &w->cpu_start);
    proxy_sample(lg, &w->proxy_start);
    w->next_rss_ns = now + LG_RSS_PERIOD_NS;
    lg->phase = PHASE_MEASURE;
    if (lg->opts.mode == MODE_IDLE) {
        lg->phase_deadline_ns = now + lg->opts.idle_ns;
    }
    if (lg->opts.mode == MODE_STREAM) {
        for (i = 0; i < lg->next_slot; i++) {
            if (lg->conns[i].state == CONN_READY) {
                lg_turn_next(lg, &lg->conns[i]);
            }
        }
    }
}

static void window_close(struct loadgen *lg, uint64_t now, const char *reason)
{
    struct window *w = &lg->window;
    unsigned i;

    if (!w->opened) {
        /* The bound was reached before set-up ended, so the report covers the whole run. */
        w->opened = true;
        w->start_ns = lg->run_start_ns;
        w->start = (struct totals){ 0 };
        w->cpu_start = lg->cpu_at_start;
        w->proxy_start = lg->proxy_baseline;
    }
    w->open = false;
    w->end_ns = now;
    w->end = lg->totals;
    cpu_marks_read(lg, &w->cpu_end);
    proxy_sample(lg, &w->proxy_end);
    lg->stopped_by = reason;

    lg->phase = PHASE_DRAIN;
    lg->phase_deadline_ns = now + LG_DRAIN_TIMEOUT_NS;
    for (i = 0; i < lg->next_slot; i++) {
        struct conn *c = &lg->conns[i];

        c->restart = false;
        if (c->fd >= 0 && c->state != CONN_CLOSING) {
            lg_conn_begin_close(lg, c);
        }
    }
}

static bool setup_done(const struct loadgen *lg)
{
    const unsigned *n = lg->state_count;
    unsigned pending = n[CONN_CONNECTING] + n[CONN_HANDSHAKE];

    if (lg->next_slot < lg->opts.connections) {
        return false;
    }
    if (lg->opts.mode == MODE_IDLE) {
        pending += n[CONN_READY] + n[CONN_TURN];
    }
    return pending == 0;
}

/* Returns true when no turn is in flight and none can start, so the work of the run is over. */
static bool work_done(const struct loadgen *lg)
{
    const unsigned *n = lg->state_count;
    unsigned busy = n[CONN_CONNECTING] + n[CONN_HANDSHAKE] + n[CONN_READY] + n[CONN_TURN];

    if (lg->opts.mode == MODE_CHURN) {
        return lg->turn_budget == 0 && !lg->restarts_pending && busy + n[CONN_CLOSING] == 0;
    }
    return lg->next_slot == lg->opts.connections && busy == 0;
}

/* Names why the work ended: the idle time, the count bound, or connections lost early. */
static const char *stop_reason(const struct loadgen *lg)
{
    if (lg->opts.mode == MODE_IDLE) {
        return "idle_time";
    }
    if (lg->totals.turns_started >= lg->opts.max_turns && lg->totals.turns_abandoned == 0) {
        return "count";
    }
    return "connections_ended";
}

static void update_phase(struct loadgen *lg, uint64_t now)
{
    if (lg->phase <= PHASE_MEASURE) {
        if (lg_stop_signal != 0) {
            window_close(lg, now, "signal");
            return;
        }
        if (now >= lg->run_deadline_ns) {
            window_close(lg, now, "duration");
            return;
        }
    }

    switch (lg->phase) {
    case PHASE_SETUP:
        if (setup_done(lg)) {
            window_open(lg, now);
        }
        break;
    case PHASE_MEASURE:
        if (lg->opts.mode == MODE_IDLE ? now >= lg->phase_deadline_ns : work_done(lg)) {
            window_close(lg, now, stop_reason(lg));
        } else if (now >= lg->window.next_rss_ns) {
            struct lg_proc_sample sample;

            proxy_sample(lg, &sample);
            lg->window.next_rss_ns = now + LG_RSS_PERIOD_NS;
        }
        break;
    case PHASE_DRAIN:
        if (lg->state_count[CONN_DONE] + lg->state_count[CONN_UNUSED] == lg->opts.connections ||
            now >= lg->phase_deadline_ns) {
            lg->phase = PHASE_DONE;
        }
        break;
    case PHASE_DONE:
        break;
    }
}

/* Starts the slots whose ramp-up time has come, and churn restarts. */
static void start_connections(struct loadgen *lg, uint64_t now)
{
    unsigned i;

    if (lg->phase > PHASE_MEASURE) {
        return;
    }
    while (lg->next_slot < lg->opts.connections) {
        uint64_t due = lg->run_start_ns;

        if (lg->opts.ramp_rate > 0) {
            due += (uint64_t)((double)lg->next_slot * 1e9 / lg->opts.ramp_rate);
        }
        if (due > now || (lg->opts.mode == MODE_CHURN && lg->turn_budget == 0)) {
            break;
        }
        lg_conn_start(lg, &lg->conns[lg->next_slot++]);
    }
    if (!lg->restarts_pending) {
        return;
    }
    lg->restarts_pending = false;
    for (i = 0; i < lg->next_slot; i++) {
        struct conn *c = &lg->conns[i];

        if (!c->restart) {
            continue;
        }
        c->restart = false;
        if (lg->turn_budget > 0) {
            lg_conn_start(lg, c);
        }
    }
}

int lg_run(struct loadgen *lg)
{
    struct epoll_event events[LG_EPOLL_EVENTS];
    unsigned i;

    lg->run_start_ns = lg_now_ns();
    lg->run_deadline_ns = lg->run_start_ns + lg->opts.duration_ns;
    cpu_marks_read(lg, &lg->cpu_at_start);
    lg->phase = PHASE_SETUP;
    if (lg->opts.mode == MODE_CHURN) {
        window_open(lg, lg->run_start_ns);
    }

    while (lg->phase != PHASE_DONE) {
        uint64_t now = lg_now_ns();
        int n;

        start_connections(lg, now);
        n = epoll_wait(lg->epoll_fd, events, LG_EPOLL_EVENTS, LG_TICK_MS);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "loadgen: epoll_wait failed: %s\n", strerror(errno));
            return -1;
        }
        for (i = 0; n > 0 && i < (unsigned)n; i++) {
            lg_conn_on_event(lg, events[i].data.ptr, events[i].events);
        }
        now = lg_now_ns();
        if (now >= lg->next_deadline_check_ns) {
            lg_conns_check_deadlines(lg, now);
            lg->next_deadline_check_ns = now + LG_TICK_MS * NS_PER_MS;
        }
        update_phase(lg, now);
    }

    for (i = 0; i < lg->next_slot; i++) {
        if (lg->conns[i].fd >= 0) {
            lg_conn_close_socket(lg, &lg->conns[i]);
        }
    }
    return 0;
}
