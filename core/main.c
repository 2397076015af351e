/* SPDX-License-Identifier: MIT */
/*
 * wsrelay's entry point: parses the command line, loads the configuration,
 * opens the ledger, resolves the upstream, starts one io_uring worker per
 * core and waits for signals. Exit status: 0 after a clean shutdown, 1 for a
 * bad argument or configuration, 2 for a start-up failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/log.h"
#include "core/server.h"
#include "core/upstream.h"
#include "core/usage.h"
#include "ring/worker.h"
#include "tls/tls.h"

#define EXIT_CONFIG 1
#define EXIT_STARTUP 2
#define WR_TRIM_SECONDS 10

static void usage(FILE *out)
{
    fprintf(out,
            "usage: wsrelay -c FILE [--check-config]\n"
            "       wsrelay --version | --help\n"
            "\n"
            "Relays the OpenAI Responses API over WebSocket, keeps idle client\n"
            "connections alive with Ping/Pong and records token usage per turn.\n"
            "\n"
            "  -c, --config FILE   libconfig file (see conf/wsrelay.cfg)\n"
            "      --check-config  validate FILE, print the effective configuration, exit\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          print this help and exit\n");
}

static bool kernel_supported(char *release, size_t len)
{
    struct utsname u;
    unsigned major = 0, minor = 0;

    if (uname(&u) != 0) {
        return true;
    }
    snprintf(release, len, "%s", u.release);
    if (sscanf(u.release, "%u.%u", &major, &minor) != 2) {
        return true;
    }
    return major > 6 || (major == 6 && minor >= 1);
}

static int check_ledger_dir(const char *path, char *err, size_t err_len)
{
    char copy[PATH_MAX];
    const char *dir;

    snprintf(copy, sizeof(copy), "%s", path);
    dir = dirname(copy);
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, err_len, "ledger directory %s is missing or not writable: %s", dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static void reopen_ledger(struct wr_server *server, const char *path)
{
    int fd = wr_ledger_open(path);

    if (fd < 0) {
        wr_log_msg(WR_LOG_ERROR, "ledger_reopen_failed", "cannot reopen ledger %s: %s", path,
                   strerror(-fd));
        return;
    }
    /* dup2 swaps the file under the same descriptor, so workers need no notice. */
    if (dup2(fd, server->ledger_fd) < 0) {
        wr_log_msg(WR_LOG_ERROR, "ledger_reopen_failed", "dup2: %s", strerror(errno));
    } else {
        wr_log_msg(WR_LOG_INFO, "ledger_reopened", "ledger %s reopened", path);
    }
    close(fd);
}

static int run(struct wr_conf *conf)
{
    struct wr_server server;
    char err[512], release[128] = "";
    sigset_t signals;
    uint8_t id[8];
    unsigned started = 0;
    struct wr_resolver resolver;
    int exit_code = 0;

    /*
     * Workers write log lines through their rings at the file position. With
     * O_APPEND every write lands at the end, even when stderr is a shared file.
     */
    int stderr_flags = fcntl(STDERR_FILENO, F_GETFL);
    if (stderr_flags >= 0 && !(stderr_flags & O_APPEND)) {
        fcntl(STDERR_FILENO, F_SETFL, stderr_flags | O_APPEND);
    }
    memset(&server, 0, sizeof(server));
    server.conf = conf;
    server.ledger_fd = -1;
    wr_log_level = conf->log_level;
    server.test_refuse_timeouts = getenv("WSRELAY_TEST_REFUSE_TIMEOUTS") != NULL;

    if (!kernel_supported(release, sizeof(release))) {
        fprintf(stderr, "wsrelay: kernel %s is too old: wsrelay needs Linux 6.1 or later "
                        "(io_uring with DEFER_TASKRUN)\n", release);
        return EXIT_STARTUP;
    }
    if (wr_tls_global_init() < 0) {
        fprintf(stderr, "wsrelay: cannot initialise wolfSSL\n");
        return EXIT_STARTUP;
    }
    if (conf->upstream_api_key_env[0] != '\0') {
        server.upstream_key = getenv(conf->upstream_api_key_env);
        if (server.upstream_key == NULL || server.upstream_key[0] == '\0') {
            fprintf(stderr, "wsrelay: environment variable %s (upstream_api_key_env) is not set; "
                            "export it or set upstream_api_key_env = \"\" in %s\n",
                    conf->upstream_api_key_env, conf->path);
            return EXIT_STARTUP;
        }
    }
    if (check_ledger_dir(conf->ledger_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "wsrelay: %s\n", err);
        return EXIT_STARTUP;
    }
    server.ledger_fd = wr_ledger_open(conf->ledger_path);
    if (server.ledger_fd < 0) {
        fprintf(stderr, "wsrelay: cannot open ledger %s: %s\n", conf->ledger_path,
                strerror(-server.ledger_fd));
        return EXIT_STARTUP;
    }

    if (getrandom(id, sizeof(id), 0) != sizeof(id)) {
        memset(id, 0, sizeof(id));
    }
    for (size_t i = 0; i < sizeof(id); i++) {
        snprintf(server.instance + 2 * i, 3, "%02x", id[i]);
    }
    snprintf(server.upstream_host_header, sizeof(server.upstream_host_header),
             strchr(conf->upstream.host, ':') ? "[%s]" : "%s", conf->upstream.host);
    if (conf->upstream.port != (conf->upstream_tls ? 443 : 80)) {
        size_t n = strlen(server.upstream_host_header);
        snprintf(server.upstream_host_header + n, sizeof(server.upstream_host_header) - n, ":%u",
                 conf->upstream.port);
    }
    /* NOTE: this first lookup blocks start-up for as long as the system resolver takes. */
    wr_resolver_init(&resolver, &server);

    server.num_workers = conf->workers;
    if (server.num_workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        server.num_workers = n > 0 ? (unsigned)n : 1;
    }
    server.workers = calloc(server.num_workers, sizeof(*server.workers));
    if (server.workers == NULL) {
        fprintf(stderr, "wsrelay: out of memory\n");
        return EXIT_STARTUP;
    }

    /* Workers inherit this mask; only the main thread takes signals. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (unsigned i = 0; i < server.num_workers; i++) {
        int ret = wr_worker_init(&server.workers[i], &server, i + 1, err, sizeof(err));
        if (ret < 0) {
            fprintf(stderr, "wsrelay: worker %u: %s\n", i + 1, err);
            exit_code = EXIT_STARTUP;
            goto out;
        }
    }
    for (unsigned i = 0; i < server.num_workers; i++) {
        if (wr_worker_start(&server.workers[i]) < 0) {
            fprintf(stderr, "wsrelay: cannot start worker thread %u\n", i + 1);
            atomic_store(&server.shutting_down, true);
            exit_code = EXIT_STARTUP;
            break;
        }
        started++;
    }
    if (exit_code == 0 && wr_resolver_start(&resolver) < 0) {
        fprintf(stderr, "wsrelay: cannot start the resolver thread\n");
        atomic_store(&server.shutting_down, true);
        exit_code = EXIT_STARTUP;
    }
    if (exit_code == 0) {
        wr_log_msg(WR_LOG_INFO, "started",
                   "wsrelay %s listening on %s with %u workers, upstream %s, instance %s",
                   WR_VERSION, conf->listen, server.num_workers, conf->upstream_url,
                   server.instance);
    }

    while (exit_code == 0) {
        struct timespec trim_every = {WR_TRIM_SECONDS, 0};
        int sig = sigtimedwait(&signals, NULL, &trim_every);

        if (sig < 0) {
            /*
             * Handshake buffers freed after a burst of connections leave free
             * pages inside the workers' heaps; hand them back to the kernel.
             */
            malloc_trim(0);
            continue;
        }
        if (sig == SIGHUP) {
            reopen_ledger(&server, conf->ledger_path);
            continue;
        }
        if (sig == SIGINT || sig == SIGTERM) {
            wr_log_msg(WR_LOG_INFO, "stopping",
                       "signal %s: closing idle connections, draining turns for up to %u ms",
                       sig == SIGINT ? "SIGINT" : "SIGTERM", conf->upstream_drain_timeout_ms);
            break;
        }
    }
    atomic_store(&server.shutting_down, true);
    for (unsigned i = 0; i < started; i++) {
        wr_worker_wake(&server.workers[i]);
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(server.workers[i].thread, NULL);
    }
    if (exit_code == 0) {
        wr_log_msg(WR_LOG_INFO, "stopped", "all connections closed, ledger flushed");
    }
out:
    /* Stopped before the workers are freed, because it posts address lists to them. */
    wr_resolver_stop(&resolver);
    for (unsigned i = 0; i < server.num_workers; i++) {
        wr_worker_free(&server.workers[i]);
    }
    free(server.workers);
    if (server.ledger_fd >= 0) {
        fsync(server.ledger_fd);
        close(server.ledger_fd);
    }
    return exit_code;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool check = false;
    struct wr_conf conf;
    char err[1024];
    int opt, ret;

    while ((opt = getopt_long(argc, argv, "c:Vh", options, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'k': check = true; break;
        case 'V': printf("wsrelay %s\n", WR_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wsrelay: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return EXIT_CONFIG;
    }
    if (path == NULL) {
        fprintf(stderr, "wsrelay: missing -c FILE\n");
        usage(stderr);
        return EXIT_CONFIG;
    }
    if (wr_conf_load(&conf, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "wsrelay: %s\n", err);
        return EXIT_CONFIG;
    }
    if (check) {
        wr_conf_print(&conf, stdout);
        if (check_ledger_dir(conf.ledger_path, err, sizeof(err)) < 0) {
            printf("warning: %s: start-up would fail with exit status 2\n", err);
        }
        wr_conf_free(&conf);
        return 0;
    }
    ret = run(&conf);
    wr_conf_free(&conf);
    return ret;
}
