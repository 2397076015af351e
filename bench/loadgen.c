/* SPDX-License-Identifier: MIT */
/* WebSocket load generator for the Responses API: drives wsrelay, a proxy or the mock upstream. */

/*
 * One thread runs a level-triggered epoll loop over every connection. Each
 * connection upgrades to WebSocket, sends response.create messages whose
 * model ("mock:deltas=K,bytes=S,...") sets what mock_upstream streams back,
 * and reads events until response.completed. Latency is the time from the
 * "ts_ns" that the mock writes into each delta (CLOCK_MONOTONIC when it sent
 * the event) to the moment the whole event has arrived here.
 *
 * The measured window covers steady load only. It opens once every
 * connection is set up (at once in churn mode), and it closes when the last
 * turn ends, when the duration bound passes or, in idle mode, when the idle
 * time is over. Rates, latency and the proxy's CPU time and memory cover the
 * window. The result is one JSON object on stdout.
 *
 * loadgen_conn.c runs the connections, loadgen_run.c the loop and the
 * window, and this file the command line and the report.
 */

#include "bench/loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/wr.h"
#include "proto/http.h"

static const char *const mode_names[] = { "stream", "churn", "idle" };

volatile sig_atomic_t lg_stop_signal;

static void on_stop_signal(int sig)
{
    lg_stop_signal = sig;
}

/* ---- Report ---- */

static void print_number_or_null(const char *name, bool valid, double value, const char *suffix)
{
    if (valid) {
        printf("\"%s\":%.3f%s", name, value, suffix);
    } else {
        printf("\"%s\":null%s", name, suffix);
    }
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\') {
            printf("\\%c", ch);
        } else if (ch < 0x20) {
            printf("\\u%04x", ch);
        } else {
            putchar(ch);
        }
    }
    putchar('"');
}

static void print_proxy(const struct loadgen *lg, uint64_t events, double window_s)
{
    const struct window *w = &lg->window;
    double cpu_s;
    uint64_t growth;
    size_t i;

    if (lg->opts.num_proxy_pids == 0) {
        printf("\"proxy\":null");
        return;
    }
    cpu_s = (double)(w->proxy_end.cpu_ticks - w->proxy_start.cpu_ticks) /
            (double)sysconf(_SC_CLK_TCK);
    growth = w->proxy_rss_peak_kib > lg->proxy_baseline.rss_kib
                 ? w->proxy_rss_peak_kib - lg->proxy_baseline.rss_kib
                 : 0;

    printf("\"proxy\":{\"pids\":[");
    for (i = 0; i < lg->opts.num_proxy_pids; i++) {
        printf("%s%d", i ? "," : "", (int)lg->opts.proxy_pids[i]);
    }
    printf("],\"processes\":%u,", w->proxy_end.processes);
    print_number_or_null("cpu_s", true, cpu_s, ",");
    print_number_or_null("cpu_s_per_million_events", events > 0, cpu_s * 1e6 / (double)events, ",");
    print_number_or_null("cpu_percent_of_core", window_s > 0, 100.0 * cpu_s / window_s, ",");
    printf("\"rss_baseline_kib\":%" PRIu64 ",\"rss_kib\":%" PRIu64 ",",
           lg->proxy_baseline.rss_kib, w->proxy_rss_peak_kib);
    print_number_or_null("rss_kib_per_connection", true,
                         (double)growth / (double)lg->opts.connections, "}");
}

/*
 * Prints the CPU time of the client, the upstream and the whole machine over
 * the window. other_cpu_s is what none of them nor the proxy used: other
 * programs running at the same time, or kernel threads such as ksoftirqd.
 */
static void print_cpu(const struct loadgen *lg)
{
    const struct window *w = &lg->window;
    double tick_s = 1.0 / (double)sysconf(_SC_CLK_TCK);
    double client = w->cpu_end.client_s - w->cpu_start.client_s;
    double upstream = (double)(w->cpu_end.upstream_ticks - w->cpu_start.upstream_ticks) * tick_s;
    double machine = (double)(w->cpu_end.machine_ticks - w->cpu_start.machine_ticks) * tick_s;
    double proxy = (double)(w->proxy_end.cpu_ticks - w->proxy_start.cpu_ticks) * tick_s;

    print_number_or_null("client_cpu_s", true, client, ",");
    print_number_or_null("upstream_cpu_s", lg->opts.upstream_pid != 0, upstream, ",");
    print_number_or_null("machine_busy_cpu_s", machine > 0, machine, ",");
    print_number_or_null("other_cpu_s", machine > 0, machine - client - upstream - proxy, ",");
}

static void print_report(const struct loadgen *lg)
{
    const struct options *o = &lg->opts;
    const struct window *w = &lg->window;
    const struct totals *a = &w->start;
    const struct totals *b = &w->end;
    double window_s = (double)(w->end_ns - w->start_ns) / NS_PER_S;
    uint64_t events = b->events - a->events;
    uint64_t bytes = b->bytes - a->bytes;
    uint64_t cycles = b->connections_cycled - a->connections_cycled;
    bool timed = window_s > 0;
    bool measured = lg->latency.count > 0;
    uint64_t errors = 0;
    unsigned i;

    for (i = 0; i < ERR_KIND_COUNT; i++) {
        errors += lg->totals.errors[i];
    }

    printf("{\"label\":");
    print_json_string(o->label);
    printf(",\"mode\":\"%s\",\"target\":", mode_names[o->mode]);
    print_json_string(o->target);
    printf(",\"connections\":%u,\"turns_per_connection\":%u,\"max_turns\":%" PRIu64
           ",\"request_bytes\":%zu,\"deltas\":%" PRIu64 ",\"delta_bytes\":%" PRIu64
           ",\"silence_ms\":%" PRIu64 ",\"large_bytes\":%" PRIu64 ",",
           o->connections, o->turns, o->max_turns, lg->request_len, o->deltas, o->delta_bytes,
           o->silence_ms, o->large_bytes);
    print_number_or_null("idle_s", true, (double)o->idle_ns / NS_PER_S, ",");
    print_number_or_null("ramp_rate", true, o->ramp_rate, ",");
    print_number_or_null("duration_limit_s", true, (double)o->duration_ns / NS_PER_S, ",");
    printf("\"stopped_by\":\"%s\",", lg->stopped_by ? lg->stopped_by : "unknown");
    print_number_or_null("window_s", true, window_s, ",");
    printf("\"events\":%" PRIu64 ",", events);
    print_number_or_null("events_per_s", timed, (double)events / window_s, ",");
    printf("\"bytes\":%" PRIu64 ",", bytes);
    print_number_or_null("bytes_per_s", timed, (double)bytes / window_s, ",");
    printf("\"latency_samples\":%" PRIu64 ",", lg->latency.count);
    print_number_or_null("p50_us", measured, lg_histogram_percentile(&lg->latency, 0.50) / 1e3, ",");
    print_number_or_null("p99_us", measured, lg_histogram_percentile(&lg->latency, 0.99) / 1e3, ",");
    print_number_or_null("p999_us", measured, lg_histogram_percentile(&lg->latency, 0.999) / 1e3,
                         ",");
    print_number_or_null("max_us", measured, lg->latency.max / 1e3, ",");
    printf("\"turns_started\":%" PRIu64 ",\"turns_completed\":%" PRIu64
           ",\"turns_completed_in_window\":%" PRIu64 ",\"turns_abandoned\":%" PRIu64
           ",\"connections_opened\":%" PRIu64 ",\"connections_cycled\":%" PRIu64 ",",
           lg->totals.turns_started, lg->totals.turns_completed,
           b->turns_completed - a->turns_completed, lg->totals.turns_abandoned,
           lg->totals.connections_opened, lg->totals.connections_cycled);
    print_number_or_null("connections_per_s", timed, (double)cycles / window_s, ",");
    printf("\"pings_received\":%" PRIu64 ",\"pings_received_in_window\":%" PRIu64
           ",\"pongs_sent\":%" PRIu64 ",\"close_timeouts\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"error_kinds\":{",
           lg->totals.pings, b->pings - a->pings, lg->totals.pongs, lg->totals.close_timeouts,
           errors);
    for (i = 0; i < ERR_KIND_COUNT; i++) {
        printf("%s\"%s\":%" PRIu64, i ? "," : "", lg_error_names[i], lg->totals.errors[i]);
    }
    printf("},");
    print_cpu(lg);
    print_proxy(lg, events, window_s);
    printf("}\n");
    fflush(stdout);
}

/* ---- Set-up ---- */

static void build_request(struct loadgen *lg)
{
    const struct options *o = &lg->opts;
    char prefix[512];
    static const char suffix[] = "\"}]}]}";
    size_t prefix_len;
    size_t pad = 0;
    size_t unit_len = sizeof(LG_REQUEST_TEXT) - 1;
    size_t i;

    prefix_len = (size_t)snprintf(prefix, sizeof(prefix),
                                  "{\"type\":\"response.create\",\"model\":\"mock:deltas=%" PRIu64
                                  ",bytes=%" PRIu64 ",silence_ms=%" PRIu64 ",large=%" PRIu64
                                  "\",\"instructions\":\"\",\"store\":false,\"stream\":true,"
                                  "\"input\":[{\"type\":\"message\",\"role\":\"user\","
                                  "\"content\":[{\"type\":\"input_text\",\"text\":\"",
                                  o->deltas, o->delta_bytes, o->silence_ms, o->large_bytes);
    if (o->request_bytes > prefix_len + sizeof(suffix) - 1) {
        pad = o->request_bytes - prefix_len - (sizeof(suffix) - 1);
    }
    lg->request_len = prefix_len + pad + sizeof(suffix) - 1;
    lg->request = malloc(lg->request_len);
    if (lg->request == NULL) {
        fprintf(stderr, "loadgen: out of memory for a %zu-byte request\n", lg->request_len);
        exit(1);
    }
    memcpy(lg->request, prefix, prefix_len);
    for (i = 0; i < pad; i++) {
        lg->request[prefix_len + i] = (uint8_t)LG_REQUEST_TEXT[i % unit_len];
    }
    memcpy(lg->request + prefix_len + pad, suffix, sizeof(suffix) - 1);
}

static void build_upgrade_head(struct loadgen *lg)
{
    const struct options *o = &lg->opts;
    int n;

    n = snprintf(lg->upgrade_head, sizeof(lg->upgrade_head),
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "OpenAI-Beta: responses_websockets=2026-02-06\r\n"
                 "User-Agent: wsrelay-loadgen\r\n"
                 "%s%s%s",
                 o->path, o->target, o->key ? "Authorization: Bearer " : "", o->key ? o->key : "",
                 o->key ? "\r\n" : "");
    lg->upgrade_head_len = (size_t)n;
}

/* Raises the soft open-file limit to the hard one, because each connection needs one descriptor. */
static int raise_fd_limit(unsigned connections)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return -errno;
    }
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return -errno;
    }
    if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)connections + 32 > rl.rlim_cur) {
        fprintf(stderr,
                "loadgen: %u connections need %u descriptors but the open-file limit is %llu; "
                "lower --connections or raise the limit (ulimit -n)\n",
                connections, connections + 32, (unsigned long long)rl.rlim_cur);
        return -EMFILE;
    }
    return 0;
}

static int loadgen_init(struct loadgen *lg)
{
    struct lg_proc_sample upstream;
    unsigned i;

    lg->conns = calloc(lg->opts.connections, sizeof(*lg->conns));
    if (lg->conns == NULL) {
        fprintf(stderr, "loadgen: out of memory for %u connections\n", lg->opts.connections);
        return -1;
    }
    for (i = 0; i < lg->opts.connections; i++) {
        lg->conns[i].fd = -1;
        lg->conns[i].index = i;
        lg->conns[i].state = CONN_UNUSED;
    }
    lg->state_count[CONN_UNUSED] = lg->opts.connections;
    lg->turn_budget = lg->opts.max_turns;

    lg->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (lg->epoll_fd < 0) {
        fprintf(stderr, "loadgen: epoll_create1 failed: %s\n", strerror(errno));
        return -1;
    }
    if (getrandom(&lg->rng, sizeof(lg->rng), 0) != sizeof(lg->rng) || lg->rng == 0) {
        lg->rng = lg_now_ns() | 1;
    }
    build_request(lg);
    build_upgrade_head(lg);

    if (lg->opts.num_proxy_pids > 0 &&
        lg_proc_sample(lg->opts.proxy_pids, lg->opts.num_proxy_pids, &lg->proxy_baseline) < 0) {
        fprintf(stderr, "loadgen: a --proxy-pid process does not exist; check the PIDs\n");
        return -1;
    }
    if (lg->opts.upstream_pid != 0 && lg_proc_sample(&lg->opts.upstream_pid, 1, &upstream) < 0) {
        fprintf(stderr, "loadgen: --upstream-pid %d does not exist\n", (int)lg->opts.upstream_pid);
        return -1;
    }
    return 0;
}

/* ---- Command line ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: loadgen --target HOST:PORT [OPTIONS]\n"
        "\n"
        "Opens WebSocket connections to a Responses API endpoint backed by mock_upstream,\n"
        "runs turns on them, and prints one JSON object with throughput, latency, errors\n"
        "and, with --proxy-pid, the proxy's CPU time and memory over the measured window.\n"
        "Every run is bounded by both --duration and --max-turns.\n"
        "\n"
        "Target:\n"
        "  --target HOST:PORT     127.0.0.1:PORT or [::1]:PORT; only loopback is accepted\n"
        "  --path PATH            request path (default /v1/responses)\n"
        "  --key KEY              send \"Authorization: Bearer KEY\" (default: no header)\n"
        "  --label TEXT           copied into the report (default: the target)\n"
        "\n"
        "Load:\n"
        "  --connections N        concurrent connections (default 10)\n"
        "  --turns N              turns per connection in stream mode (default 1)\n"
        "  --max-turns N          turns in the whole run; in churn mode, connections\n"
        "                         (default: connections x turns)\n"
        "  --duration SECONDS     time bound of the whole run (default 30)\n"
        "  --ramp-rate N          connections started per second (default 0: all at once)\n"
        "  --turn-timeout SECONDS longest wait for the next event of a turn (default 60)\n"
        "  --churn                connect, run one turn, close, and repeat on each connection\n"
        "  --idle SECONDS         run one turn per connection, then hold every connection\n"
        "                         open this long, answering Pings with Pongs\n"
        "\n"
        "Each turn (sent to mock_upstream in the model name):\n"
        "  --request-bytes N      size of the response.create message (default 30000)\n"
        "  --deltas K             response.output_text.delta events (default 50)\n"
        "  --delta-bytes S        text bytes in each delta (default 200)\n"
        "  --silence-ms N         pause in the middle of the turn, in ms (default 0)\n"
        "  --large-bytes N        add an event with an N-byte string (default 0: none)\n"
        "\n"
        "Measurement:\n"
        "  --proxy-pid PID        sample this process and its descendants from /proc\n"
        "                         (repeatable, up to %d)\n"
        "  --upstream-pid PID     also report the CPU time of this process (the mock)\n"
        "  -h, --help             print this help and exit\n"
        "\n"
        "Latency runs from the \"ts_ns\" that mock_upstream writes into each delta to the\n"
        "arrival of the whole event, and needs both on one machine (CLOCK_MONOTONIC).\n",
        LG_MAX_PROXY_PIDS);
}

static int parse_target(const char *text, struct options *o)
{
    char host[64];
    const char *colon;
    const char *host_start = text;
    size_t host_len;
    char *end;
    unsigned long port;

    if (text[0] == '[') {
        const char *bracket = strchr(text, ']');

        if (bracket == NULL || bracket[1] != ':') {
            return -1;
        }
        host_start = text + 1;
        host_len = (size_t)(bracket - host_start);
        colon = bracket + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            return -1;
        }
        host_len = (size_t)(colon - text);
    }
    if (host_len == 0 || host_len >= sizeof(host)) {
        return -1;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port == 0 || port > 65535) {
        return -1;
    }

    memset(&o->addr, 0, sizeof(o->addr));
    if (strcmp(host, "127.0.0.1") == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&o->addr;

        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        o->addr_len = sizeof(*sin);
    } else if (strcmp(host, "::1") == 0) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&o->addr;

        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sin6->sin6_addr = in6addr_loopback;
        o->addr_len = sizeof(*sin6);
    } else {
        return -2;
    }
    o->target = text;
    return 0;
}

/* Parses an unsigned integer option within [min, max]; exits with a message otherwise. */
static uint64_t option_u64(const char *name, const char *arg, uint64_t min, uint64_t max)
{
    char *end;
    unsigned long long value;

    errno = 0;
    value = strtoull(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-' || value < min || value > max) {
        fprintf(stderr, "loadgen: invalid %s '%s': expected an integer from %" PRIu64 " to %" PRIu64
                "\n", name, arg, min, max);
        exit(2);
    }
    return value;
}

/* Parses a duration in seconds (decimals allowed) within (0, max]; exits otherwise. */
static uint64_t option_seconds(const char *name, const char *arg, double max)
{
    char *end;
    double value;

    errno = 0;
    value = strtod(arg, &end);
    if (errno != 0 || end == arg || *end != '\0' || !(value > 0) || value > max) {
        fprintf(stderr, "loadgen: invalid %s '%s': expected seconds above 0 and at most %.0f\n",
                name, arg, max);
        exit(2);
    }
    return (uint64_t)(value * NS_PER_S);
}

enum {
    OPT_TARGET = 256,
    OPT_PATH,
    OPT_KEY,
    OPT_LABEL,
    OPT_CONNECTIONS,
    OPT_TURNS,
    OPT_MAX_TURNS,
    OPT_DURATION,
    OPT_RAMP_RATE,
    OPT_TURN_TIMEOUT,
    OPT_CHURN,
    OPT_IDLE,
    OPT_REQUEST_BYTES,
    OPT_DELTAS,
    OPT_DELTA_BYTES,
    OPT_SILENCE_MS,
    OPT_LARGE_BYTES,
    OPT_PROXY_PID,
    OPT_UPSTREAM_PID,
};

static const struct option long_options[] = {
    { "target", required_argument, NULL, OPT_TARGET },
    { "path", required_argument, NULL, OPT_PATH },
    { "key", required_argument, NULL, OPT_KEY },
    { "label", required_argument, NULL, OPT_LABEL },
    { "connections", required_argument, NULL, OPT_CONNECTIONS },
    { "turns", required_argument, NULL, OPT_TURNS },
    { "max-turns", required_argument, NULL, OPT_MAX_TURNS },
    { "duration", required_argument, NULL, OPT_DURATION },
    { "ramp-rate", required_argument, NULL, OPT_RAMP_RATE },
    { "turn-timeout", required_argument, NULL, OPT_TURN_TIMEOUT },
    { "churn", no_argument, NULL, OPT_CHURN },
    { "idle", required_argument, NULL, OPT_IDLE },
    { "request-bytes", required_argument, NULL, OPT_REQUEST_BYTES },
    { "deltas", required_argument, NULL, OPT_DELTAS },
    { "delta-bytes", required_argument, NULL, OPT_DELTA_BYTES },
    { "silence-ms", required_argument, NULL, OPT_SILENCE_MS },
    { "large-bytes", required_argument, NULL, OPT_LARGE_BYTES },
    { "proxy-pid", required_argument, NULL, OPT_PROXY_PID },
    { "upstream-pid", required_argument, NULL, OPT_UPSTREAM_PID },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* Applies one option; exits with status 2 on an invalid value. */
static void apply_option(struct options *o, int opt, const char *arg, bool *idle_set)
{
    switch (opt) {
    case OPT_TARGET: {
        int rc = parse_target(arg, o);

        if (rc == -2) {
            fprintf(stderr, "loadgen: target '%s' is not loopback: use 127.0.0.1:PORT or "
                    "[::1]:PORT\n", arg);
            exit(2);
        }
        if (rc < 0) {
            fprintf(stderr, "loadgen: invalid --target '%s': expected 127.0.0.1:PORT or "
                    "[::1]:PORT\n", arg);
            exit(2);
        }
        break;
    }
    case OPT_PATH:
        if (arg[0] != '/' || strpbrk(arg, " \r\n") != NULL || strlen(arg) > 256) {
            fprintf(stderr, "loadgen: invalid --path '%s': expected an absolute path of at most "
                    "256 bytes without spaces\n", arg);
            exit(2);
        }
        o->path = arg;
        break;
    case OPT_KEY:
        if (strpbrk(arg, "\r\n") != NULL || strlen(arg) > LG_BEARER_MAX - 32) {
            fprintf(stderr, "loadgen: invalid --key: it must be one line of at most %d bytes\n",
                    LG_BEARER_MAX - 32);
            exit(2);
        }
        o->key = arg;
        break;
    case OPT_LABEL:
        o->label = arg;
        break;
    case OPT_CONNECTIONS:
        o->connections = (unsigned)option_u64("--connections", arg, 1, LG_MAX_CONNECTIONS);
        break;
    case OPT_TURNS:
        o->turns = (unsigned)option_u64("--turns", arg, 1, 100000000);
        break;
    case OPT_MAX_TURNS:
        o->max_turns = option_u64("--max-turns", arg, 1, UINT64_MAX / 2);
        break;
    case OPT_DURATION:
        o->duration_ns = option_seconds("--duration", arg, 86400);
        break;
    case OPT_RAMP_RATE:
        o->ramp_rate = (double)option_u64("--ramp-rate", arg, 0, 10000000);
        break;
    case OPT_TURN_TIMEOUT:
        o->turn_timeout_ns = option_seconds("--turn-timeout", arg, 86400);
        break;
    case OPT_CHURN:
        o->mode = MODE_CHURN;
        break;
    case OPT_IDLE:
        o->mode = MODE_IDLE;
        o->idle_ns = option_seconds("--idle", arg, 86400);
        *idle_set = true;
        break;
    case OPT_REQUEST_BYTES:
        o->request_bytes = option_u64("--request-bytes", arg, 0, 64ull << 20);
        break;
    case OPT_DELTAS:
        o->deltas = option_u64("--deltas", arg, 0, 10000000);
        break;
    case OPT_DELTA_BYTES:
        o->delta_bytes = option_u64("--delta-bytes", arg, 0, 16ull << 20);
        break;
    case OPT_SILENCE_MS:
        o->silence_ms = option_u64("--silence-ms", arg, 0, 86400000);
        break;
    case OPT_LARGE_BYTES:
        o->large_bytes = option_u64("--large-bytes", arg, 0, 1ull << 32);
        break;
    case OPT_PROXY_PID:
        if (o->num_proxy_pids == LG_MAX_PROXY_PIDS) {
            fprintf(stderr, "loadgen: too many --proxy-pid options: at most %d\n",
                    LG_MAX_PROXY_PIDS);
            exit(2);
        }
        o->proxy_pids[o->num_proxy_pids++] = (pid_t)option_u64("--proxy-pid", arg, 1, INT32_MAX);
        break;
    case OPT_UPSTREAM_PID:
        o->upstream_pid = (pid_t)option_u64("--upstream-pid", arg, 1, INT32_MAX);
        break;
    default:
        usage(stderr);
        exit(2);
    }
}

static void parse_options(int argc, char **argv, struct options *o)
{
    bool churn_and_idle = false;
    bool idle_set = false;
    bool turns_set = false;
    int opt;

    o->path = "/v1/responses";
    o->mode = MODE_STREAM;
    o->connections = 10;
    o->turns = 1;
    o->duration_ns = 30 * NS_PER_S;
    o->turn_timeout_ns = 60 * NS_PER_S;
    o->request_bytes = 30000;
    o->deltas = 50;
    o->delta_bytes = 200;

    while ((opt = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if ((opt == OPT_CHURN && idle_set) || (opt == OPT_IDLE && o->mode == MODE_CHURN)) {
            churn_and_idle = true;
        }
        turns_set |= opt == OPT_TURNS;
        apply_option(o, opt, optarg, &idle_set);
    }
    if (optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
    if (o->target == NULL) {
        fprintf(stderr, "loadgen: --target is required\n");
        exit(2);
    }
    if (churn_and_idle) {
        fprintf(stderr, "loadgen: --churn and --idle cannot be combined\n");
        exit(2);
    }
    if (o->mode != MODE_STREAM && turns_set && o->turns != 1) {
        fprintf(stderr, "loadgen: --churn and --idle run one turn per connection; drop --turns\n");
        exit(2);
    }
    if (o->mode == MODE_IDLE && o->duration_ns <= o->idle_ns) {
        fprintf(stderr, "loadgen: --duration must be longer than --idle, to leave time to open "
                "the connections and run their turn\n");
        exit(2);
    }
    if (o->max_turns == 0) {
        o->max_turns = (uint64_t)o->connections * (o->mode == MODE_STREAM ? o->turns : 1);
    }
    if (o->mode == MODE_IDLE && o->max_turns < o->connections) {
        fprintf(stderr, "loadgen: --idle needs --max-turns of at least --connections\n");
        exit(2);
    }
    if (o->label == NULL) {
        o->label = o->target;
    }
}

int main(int argc, char **argv)
{
    static struct loadgen lg;
    struct sigaction sa;
    unsigned limit_s;

    parse_options(argc, argv, &lg.opts);
    if (raise_fd_limit(lg.opts.connections) < 0) {
        return 1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A last-resort bound in case the loop itself stalls: SIGALRM ends the process. */
    limit_s = (unsigned)(lg.opts.duration_ns / NS_PER_S) + 30;
    alarm(limit_s);

    if (loadgen_init(&lg) < 0 || lg_run(&lg) < 0) {
        return 1;
    }
    print_report(&lg);
    return 0;
}
