/* SPDX-License-Identifier: MIT */
/* A fast mock of the OpenAI Responses WebSocket endpoint, for tests and benchmarks. */

/*
 * Each worker thread runs its own epoll loop over its own SO_REUSEPORT
 * listener, so a connection never moves between threads. A connection reads
 * the upgrade request, then WebSocket frames. Every response.create message
 * queues a turn, whose events are formatted into a per-connection arena and
 * sent with sendmsg, many frames per call. Long strings (the reply text, the
 * large "result") are never copied: their iovecs point into static buffers
 * that repeat a pattern. Pauses inside a turn use a timerfd, never a sleep.
 *
 * mock_worker.c runs the epoll loops and the listeners, mock_http.c handles
 * the request head, and mock_conn.c reads frames and pumps output. mock_turn.c
 * formats the events of a turn into the queue of mock_out.c, and mock_model.c
 * scans client messages and applies the "mock:..." model grammar. This file
 * contains logging, the command line and start-up.
 */
#include "bench/mock_upstream.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- Logging ---- */

bool log_enabled(const struct options *opts, enum log_level level)
{
    return level <= opts->log_level;
}

/* Writes one logfmt line to stderr with a single write, so threads do not interleave. */
void mock_log(const struct options *opts, enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    char line[1024];
    struct timespec now;
    struct tm tm;
    size_t len;
    int n;
    va_list ap;

    if (!log_enabled(opts, level)) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    len = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + len, sizeof(line) - len, ".%03ldZ level=%s ", now.tv_nsec / 1000000,
                 names[level]);
    len += (size_t)n;

    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    len += (size_t)n < sizeof(line) - len - 1 ? (size_t)n : sizeof(line) - len - 2;
    line[len++] = '\n';
    if (write(STDERR_FILENO, line, len) < 0) {
        return;
    }
}

/*
 * Formats bytes as a quoted logfmt value in out (cap >= 8): quotes and
 * backslashes escaped, control bytes shown as '?', and "..." at the end when
 * the value did not fit.
 */
const char *log_value(char *out, size_t cap, const char *s, size_t len)
{
    size_t pos = 1;
    size_t i;

    out[0] = '"';
    for (i = 0; i < len && pos + 6 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == '"' || ch == '\\') {
            out[pos++] = '\\';
        }
        out[pos++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (i < len) {
        memcpy(out + pos, "...", 3);
        pos += 3;
    }
    out[pos++] = '"';
    out[pos] = '\0';
    return out;
}

/* ---- Command line ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: mock_upstream [OPTIONS]\n"
        "\n"
        "Mock of the OpenAI Responses WebSocket endpoint, for tests and benchmarks.\n"
        "Every response.create message gets one streamed response (a turn).\n"
        "\n"
        "Options:\n"
        "  --listen HOST:PORT       address to listen on: a numeric IPv4 address or\n"
        "                           [IPv6] address (default " MOCK_DEFAULT_LISTEN ";\n"
        "                           port 0 picks a free port, shown in the start-up line)\n"
        "  --threads N              worker threads, each with its own listener (default 1)\n"
        "  --deltas K               response.output_text.delta events per turn (default 5)\n"
        "  --delta-bytes S          bytes of text in each delta (default 16)\n"
        "  --silence-ms N           pause inside each turn, in milliseconds (default 0: none)\n"
        "  --silence-at start|mid   where the pause goes: before response.created, or at the\n"
        "                           midpoint (default mid)\n"
        "  --large-bytes N          add a response.output_item.done event whose \"result\"\n"
        "                           string is N bytes long (default 0: none)\n"
        "  --scenario NAME          normal, error, reset or close (default normal)\n"
        "  --close-code C           Close code for the close scenario, 0 for none (default 1011)\n"
        "  --close-reason TEXT      Close reason for the close scenario, at most 123 bytes\n"
        "                           (default empty)\n"
        "  --usage standard|alias   usage token names: input_/output_ or prompt_/completion_\n"
        "                           (default standard)\n"
        "  --require-auth TOKEN     answer 401 unless the request has\n"
        "                           \"Authorization: Bearer TOKEN\" (default: accept any)\n"
        "  --quiet                  log errors and warnings only\n"
        "  --debug                  also log each request line, the request headers\n"
        "                           (secrets redacted), messages and turns\n"
        "  -h, --help               print this help and exit\n"
        "\n"
        "The midpoint is right after the first delta, or after response.created in a\n"
        "turn without deltas. Scenarios: error sends an error event in place of the\n"
        "events after the last delta; reset sends a TCP RST at the midpoint; close sends\n"
        "a Close frame at the midpoint.\n"
        "\n"
        "A request whose model is \"mock:key=value,key=value,...\" overrides the options\n"
        "for its turn. Keys: deltas, bytes (delta size), silence_ms, silence_at\n"
        "(start|mid), large (bytes), error[=CODE], reset, close=CODE, reason (URL-escaped),\n"
        "usage (alias|standard), scenario (normal|error|reset|close).\n"
        "\n"
        "Usage in response.completed: input_tokens = message bytes / 4, output_tokens =\n"
        "number of deltas (0 for \"generate\": false), total_tokens = their sum.\n");
}

static int parse_listen(const char *text, struct options *opts)
{
    const char *colon;
    char host[INET6_ADDRSTRLEN];
    size_t host_len;
    uint64_t port;

    memset(&opts->addr, 0, sizeof(opts->addr));
    if (text[0] == '[') {
        const char *bracket = strchr(text, ']');

        if (bracket == NULL || bracket[1] != ':') {
            return -1;
        }
        host_len = (size_t)(bracket - text - 1);
        colon = bracket + 1;
        text++;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            return -1;
        }
        host_len = (size_t)(colon - text);
    }
    if (host_len == 0 || host_len >= sizeof(host) ||
        !parse_u64(colon + 1, strlen(colon + 1), 65535, &port)) {
        return -1;
    }
    memcpy(host, text, host_len);
    host[host_len] = '\0';

    if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&opts->addr)->sin6_addr) == 1) {
        opts->addr.ss_family = AF_INET6;
        opts->addr_len = sizeof(struct sockaddr_in6);
    } else if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&opts->addr)->sin_addr) == 1) {
        opts->addr.ss_family = AF_INET;
        opts->addr_len = sizeof(struct sockaddr_in);
    } else {
        return -1;
    }
    set_port(&opts->addr, (uint16_t)port);
    return 0;
}

static bool option_number(const char *name, const char *value, uint64_t min, uint64_t max,
                          uint64_t *out)
{
    if (parse_u64(value, strlen(value), max, out) && *out >= min) {
        return true;
    }
    fprintf(stderr, "mock_upstream: invalid %s \"%s\": expected a whole number from %" PRIu64
            " to %" PRIu64 "\n", name, value, min, max);
    return false;
}

/* Sets an option that takes one of a few words, with the same rules as the model key. */
static bool option_word(struct turn_params *p, const char *name, const char *key, const char *value)
{
    if (apply_model_key(p, key, strlen(key), value, strlen(value))) {
        return true;
    }
    fprintf(stderr, "mock_upstream: invalid %s \"%s\"\n", name, value);
    return false;
}

enum {
    OPT_LISTEN = 256,
    OPT_THREADS,
    OPT_DELTAS,
    OPT_DELTA_BYTES,
    OPT_SILENCE_MS,
    OPT_SILENCE_AT,
    OPT_LARGE_BYTES,
    OPT_SCENARIO,
    OPT_CLOSE_CODE,
    OPT_CLOSE_REASON,
    OPT_USAGE,
    OPT_REQUIRE_AUTH,
    OPT_QUIET,
    OPT_DEBUG,
};

/* Applies one option. Returns false after printing what was wrong. */
static bool options_apply(struct options *opts, int opt, const char *arg)
{
    struct turn_params *p = &opts->defaults;
    uint64_t number;
    size_t len;

    switch (opt) {
    case OPT_LISTEN:
        if (parse_listen(arg, opts) < 0) {
            fprintf(stderr, "mock_upstream: invalid --listen \"%s\": expected IPV4:PORT or "
                    "[IPV6]:PORT with a numeric address, e.g. 127.0.0.1:18080\n", arg);
            return false;
        }
        return true;
    case OPT_THREADS:
        if (!option_number("--threads", arg, 1, MOCK_MAX_THREADS, &number)) {
            return false;
        }
        opts->threads = (unsigned)number;
        return true;
    case OPT_DELTAS:
        return option_number("--deltas", arg, 0, MOCK_MAX_DELTAS, &p->deltas);
    case OPT_DELTA_BYTES:
        return option_number("--delta-bytes", arg, 0, MOCK_MAX_DELTA_BYTES, &p->delta_bytes);
    case OPT_SILENCE_MS:
        return option_number("--silence-ms", arg, 0, MOCK_MAX_SILENCE_MS, &p->silence_ms);
    case OPT_LARGE_BYTES:
        return option_number("--large-bytes", arg, 0, MOCK_MAX_LARGE_BYTES, &p->large_bytes);
    case OPT_CLOSE_CODE:
        if (!option_number("--close-code", arg, 0, 65535, &number)) {
            return false;
        }
        p->close_code = (unsigned)number;
        return true;
    case OPT_CLOSE_REASON:
        len = strlen(arg);
        if (len > WR_WS_MAX_CLOSE_REASON) {
            fprintf(stderr, "mock_upstream: --close-reason is %zu bytes, the maximum is %d\n",
                    len, WR_WS_MAX_CLOSE_REASON);
            return false;
        }
        memcpy(p->close_reason, arg, len);
        p->close_reason_len = len;
        return true;
    case OPT_SILENCE_AT:
        return option_word(p, "--silence-at", "silence_at", arg);
    case OPT_SCENARIO:
        return option_word(p, "--scenario", "scenario", arg);
    case OPT_USAGE:
        return option_word(p, "--usage", "usage", arg);
    case OPT_REQUIRE_AUTH:
        free(opts->auth_expected);
        opts->auth_expected = malloc(strlen(arg) + sizeof("Bearer "));
        if (opts->auth_expected == NULL) {
            return false;
        }
        strcpy(opts->auth_expected, "Bearer ");
        strcat(opts->auth_expected, arg);
        return true;
    case OPT_QUIET:
        opts->log_level = LOG_WARN;
        return true;
    case OPT_DEBUG:
        opts->log_level = LOG_DEBUG;
        return true;
    default:
        return false;
    }
}

/* Returns 0 to run, 1 after --help, -1 on an invalid command line. */
static int options_parse(int argc, char **argv, struct options *opts)
{
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "deltas", required_argument, NULL, OPT_DELTAS },
        { "delta-bytes", required_argument, NULL, OPT_DELTA_BYTES },
        { "silence-ms", required_argument, NULL, OPT_SILENCE_MS },
        { "silence-at", required_argument, NULL, OPT_SILENCE_AT },
        { "large-bytes", required_argument, NULL, OPT_LARGE_BYTES },
        { "scenario", required_argument, NULL, OPT_SCENARIO },
        { "close-code", required_argument, NULL, OPT_CLOSE_CODE },
        { "close-reason", required_argument, NULL, OPT_CLOSE_REASON },
        { "usage", required_argument, NULL, OPT_USAGE },
        { "require-auth", required_argument, NULL, OPT_REQUIRE_AUTH },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "debug", no_argument, NULL, OPT_DEBUG },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt;

    memset(opts, 0, sizeof(*opts));
    opts->threads = 1;
    opts->log_level = LOG_INFO;
    opts->defaults.deltas = 5;
    opts->defaults.delta_bytes = 16;
    opts->defaults.close_code = 1011;
    strcpy(opts->defaults.error_code, "mock_error");
    parse_listen(MOCK_DEFAULT_LISTEN, opts);

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 1;
        }
        if (opt == '?' || !options_apply(opts, opt, optarg)) {
            fprintf(stderr, "Run mock_upstream --help for the options.\n");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mock_upstream: unexpected argument \"%s\"\n", argv[optind]);
        fprintf(stderr, "Run mock_upstream --help for the options.\n");
        return -1;
    }
    return 0;
}

/* ---- Start-up ---- */

static bool pattern_init(struct pattern *p)
{
    size_t size = MOCK_PATTERN_SPAN + p->period;
    size_t i;

    p->span = malloc(size);
    if (p->span == NULL) {
        return false;
    }
    for (i = 0; i < size; i++) {
        p->span[i] = (uint8_t)p->unit[i % p->period];
    }
    return true;
}

/* Raises the soft open-file limit to the hard one, because each connection uses one or two fds. */
static void raise_fd_limit(void)
{
    struct rlimit lim;

    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

static int run(struct options *opts, struct worker *workers)
{
    char address[INET6_ADDRSTRLEN + 16];
    sigset_t signals;
    unsigned started = 0;
    unsigned i;
    int sig = 0;
    int rc;

    rc = listeners_open(opts, workers);
    if (rc < 0) {
        format_address(&opts->addr, address, sizeof(address));
        fprintf(stderr, "mock_upstream: cannot listen on %s: %s%s\n", address, strerror(-rc),
                rc == -EADDRINUSE ? "; choose another port with --listen (port 0 picks a free one)"
                                  : "");
        return 1;
    }
    for (i = 0; i < opts->threads; i++) {
        rc = worker_init(&workers[i], i, opts);
        if (rc < 0) {
            fprintf(stderr, "mock_upstream: cannot set up worker %u: %s\n", i, strerror(-rc));
            return 1;
        }
    }

    /* Workers inherit the blocked mask, so SIGINT and SIGTERM reach sigwait below. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (i = 0; i < opts->threads; i++) {
        rc = pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]);
        if (rc != 0) {
            fprintf(stderr, "mock_upstream: cannot start worker %u: %s\n", i, strerror(rc));
            break;
        }
        started++;
    }
    if (started == opts->threads) {
        format_address(&opts->addr, address, sizeof(address));
        fprintf(stderr, "mock_upstream listening on %s\n", address);
        sigwait(&signals, &sig);
        mock_log(opts, LOG_INFO, "event=stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }

    for (i = 0; i < started; i++) {
        uint64_t wake = 1;

        if (write(workers[i].wake_fd, &wake, sizeof(wake)) < 0) {
            mock_log(opts, LOG_ERROR, "event=wake_failed worker=%u err=%s", i, strerror(errno));
        }
        pthread_join(workers[i].thread, NULL);
    }
    return started == opts->threads ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct options opts;
    struct worker *workers;
    unsigned i;
    int rc;

    rc = options_parse(argc, argv, &opts);
    if (rc != 0) {
        free(opts.auth_expected);
        return rc > 0 ? 0 : 2;
    }
    if (!pattern_init(&text_pattern) || !pattern_init(&result_pattern)) {
        fprintf(stderr, "mock_upstream: out of memory\n");
        return 1;
    }
    raise_fd_limit();

    workers = calloc(opts.threads, sizeof(*workers));
    if (workers == NULL) {
        fprintf(stderr, "mock_upstream: out of memory\n");
        return 1;
    }
    for (i = 0; i < opts.threads; i++) {
        workers[i].epoll_fd = -1;
        workers[i].wake_fd = -1;
        workers[i].accept_timer_fd = -1;
        workers[i].listen_fd = -1;
    }

    rc = run(&opts, workers);

    for (i = 0; i < opts.threads; i++) {
        worker_close_fds(&workers[i]);
    }
    free(workers);
    free(text_pattern.span);
    free(result_pattern.span);
    free(opts.auth_expected);
    return rc;
}
