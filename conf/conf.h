/* SPDX-License-Identifier: MIT */
/* The validated, read-only wsrelay configuration, loaded from a libconfig file. */
#ifndef WR_CONF_CONF_H
#define WR_CONF_CONF_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/wr.h"

enum wr_log_level {
    WR_LOG_ERROR = 0,
    WR_LOG_WARN = 1,
    WR_LOG_INFO = 2,
    WR_LOG_DEBUG = 3,
};

struct wr_conf_client {
    char name[64];
    uint8_t key_sha256[32];
};

/* A parsed "host:port" or "[v6]:port". */
struct wr_conf_endpoint {
    char host[256]; /* without brackets */
    uint16_t port;
};

struct wr_conf {
    char path[PATH_MAX]; /* the file as given */
    char dir[PATH_MAX];  /* its directory: relative paths are resolved against it */

    /* gateway */
    char listen[300];
    struct wr_conf_endpoint listen_addr;
    unsigned workers;           /* 0 = one per online CPU; resolved by the caller */
    unsigned max_connections;   /* 1 to 1,000,000 */
    uint32_t handshake_timeout_ms;
    enum wr_log_level log_level;

    /* gateway.tls; both empty, or both set to readable files (absolute paths) */
    char tls_cert_file[PATH_MAX];
    char tls_key_file[PATH_MAX];

    /* gateway.auth */
    struct wr_conf_client *clients; /* owned; freed by wr_conf_free */
    unsigned num_clients;           /* >= 1 */

    /* gateway.openai_ws */
    char upstream_url[1024];
    bool upstream_tls;                  /* wss:// */
    struct wr_conf_endpoint upstream;   /* host and port (default 80 or 443) */
    char upstream_path[1024];           /* path and query, "/" when empty */
    char upstream_api_key_env[256];     /* "" = send no Authorization upstream */
    char upstream_ca_file[PATH_MAX];    /* absolute */
    char upstream_proxy[1024];          /* "" or http://host:port */
    struct wr_conf_endpoint proxy;      /* valid when upstream_proxy is set */
    uint32_t dial_timeout_ms;
    uint32_t client_first_message_timeout_ms;
    uint32_t write_timeout_ms;
    uint64_t client_read_limit_bytes;
    uint64_t upstream_read_limit_bytes;
    uint32_t ping_interval_ms;          /* 0 disables downstream keepalive */
    uint32_t ping_timeout_ms;
    uint32_t event_keepalive_ms;        /* 0 = off */
    uint32_t upstream_drain_timeout_ms;

    /* gateway.usage */
    char ledger_path[PATH_MAX];         /* absolute */
};

/*
 * Loads and validates the file at path into conf, starting from the defaults.
 * Returns 0, or WR_ECONF with one message in err naming the file, the line
 * where libconfig knows it, the key, the value and what is allowed.
 * On failure conf contains nothing that needs wr_conf_free.
 */
int wr_conf_load(struct wr_conf *conf, const char *path, char *err, size_t err_len);

/* Fills conf with the defaults of every key and no clients. */
void wr_conf_defaults(struct wr_conf *conf);

/* Frees what wr_conf_load allocated. */
void wr_conf_free(struct wr_conf *conf);

/*
 * Prints the effective configuration, one "key = value" line per key with
 * the full dotted name (gateway.openai_ws.dial_timeout_seconds = 10), client
 * key hashes shown as "<redacted>", and a last line saying whether the
 * environment variable named by upstream_api_key_env is set (never its value).
 */
void wr_conf_print(const struct wr_conf *conf, FILE *out);

/* Returns the name of a log level ("info"). */
const char *wr_conf_log_level_name(enum wr_log_level level);

#endif
