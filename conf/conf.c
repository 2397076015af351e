/* SPDX-License-Identifier: MIT */
/*
 * Loads a libconfig file into a validated struct wr_conf. This file walks the groups,
 * conf_parse.c reads and checks single values, and conf_print.c prints the result.
 */
#include "conf/conf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf_internal.h"

#define WR_CONF_MAX_WORKERS 1024
#define WR_CONF_MAX_CONNECTIONS 1000000
#define WR_CONF_MAX_READ_LIMIT (1LL << 40)

/* The keys allowed in each group, in the order of the sample configuration. */
static const char *const top_keys[] = { "gateway", NULL };
static const char *const gateway_keys[] = {
    "listen", "workers", "max_connections", "handshake_timeout_seconds", "log_level",
    "tls", "auth", "openai_ws", "usage", NULL,
};
static const char *const tls_keys[] = { "cert_file", "key_file", NULL };
static const char *const auth_keys[] = { "clients", NULL };
static const char *const client_keys[] = { "name", "key_sha256", NULL };
static const char *const openai_ws_keys[] = {
    "upstream_url", "upstream_api_key_env", "upstream_ca_file", "upstream_proxy",
    "dial_timeout_seconds", "client_first_message_timeout_seconds", "write_timeout_seconds",
    "client_read_limit_bytes", "upstream_read_limit_bytes",
    "passthrough_downstream_ping_interval_seconds",
    "passthrough_downstream_ping_timeout_seconds",
    "passthrough_downstream_event_keepalive_seconds", "upstream_drain_timeout_seconds", NULL,
};
static const char *const usage_keys[] = { "ledger_path", NULL };

static const char *const log_level_names[] = { "error", "warn", "info", "debug" };

/* Groups. */

static int load_tls(struct conf_loader *ld, const config_setting_t *tls,
                    const config_setting_t *anchor)
{
    struct wr_conf *conf = ld->conf;
    const char *prefix = "gateway.tls";
    const config_setting_t *cert_at = NULL;
    const config_setting_t *key_at = NULL;
    char cert[PATH_MAX] = "";
    char key[PATH_MAX] = "";
    bool has_cert;
    bool has_key;
    int rc;

    if (tls != NULL && (rc = conf_check_members(ld, tls, prefix, tls_keys)) < 0) {
        return rc;
    }
    if ((rc = conf_read_string(ld, tls, prefix, "cert_file", cert, sizeof(cert), &cert_at)) < 0 ||
        (rc = conf_read_string(ld, tls, prefix, "key_file", key, sizeof(key), &key_at)) < 0) {
        return rc;
    }
    has_cert = cert[0] != '\0';
    has_key = key[0] != '\0';
    if (has_cert != has_key) {
        const config_setting_t *at = has_cert ? key_at : cert_at;

        return conf_fail(ld, at != NULL ? at : anchor,
                         has_cert ? "gateway.tls.key_file" : "gateway.tls.cert_file",
                         "invalid value \"\": must be set when %s is set, because downstream "
                         "TLS needs both (leave both empty for plain TCP)",
                         has_cert ? "cert_file" : "key_file");
    }
    if (!has_cert) {
        return 0;
    }
    rc = conf_resolve_file(ld, cert_at, "gateway.tls.cert_file", cert, conf->tls_cert_file, true);
    if (rc < 0) {
        return rc;
    }
    return conf_resolve_file(ld, key_at, "gateway.tls.key_file", key, conf->tls_key_file, true);
}

static bool is_hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static int load_client(struct conf_loader *ld, const config_setting_t *entry, const char *prefix,
                       struct wr_conf_client *client)
{
    char key[WR_CONF_KEY_LEN];
    const config_setting_t *name_at = NULL;
    const config_setting_t *hash_at = NULL;
    const char *hash = NULL;
    size_t len;
    size_t i;
    int rc;

    if (config_setting_type(entry) != CONFIG_TYPE_GROUP) {
        return conf_fail_invalid(ld, entry, prefix,
                                 "must be a group { name = \"...\"; key_sha256 = \"...\"; }");
    }
    if ((rc = conf_check_members(ld, entry, prefix, client_keys)) < 0) {
        return rc;
    }

    rc = conf_read_string(ld, entry, prefix, "name", client->name, sizeof(client->name), &name_at);
    if (rc < 0) {
        return rc;
    }
    if (name_at == NULL) {
        return conf_fail(ld, entry, conf_join_key(key, prefix, "name"),
                         "missing: every client needs a name of 1 to 63 printable ASCII "
                         "characters");
    }
    len = strlen(client->name);
    for (i = 0; i < len && client->name[i] >= 0x20 && client->name[i] < 0x7f; i++) {
    }
    if (len == 0 || i < len) {
        return conf_fail_invalid(ld, name_at, conf_join_key(key, prefix, "name"),
                                 "must be 1 to 63 printable ASCII characters");
    }

    rc = conf_read_string_ref(ld, entry, prefix, "key_sha256", &hash, &hash_at);
    if (rc < 0) {
        return rc;
    }
    if (hash_at == NULL) {
        return conf_fail(ld, entry, conf_join_key(key, prefix, "key_sha256"),
                         "missing: every client needs the SHA-256 of its key as 64 lowercase "
                         "hex digits");
    }
    len = strlen(hash);
    for (i = 0; i < len && is_hex_lower(hash[i]); i++) {
    }
    if (len != 64 || i < len) {
        char allowed[160];

        snprintf(allowed, sizeof(allowed), "must be exactly 64 lowercase hex digits, the "
                 "SHA-256 of the client key (found %zu characters)", len);
        return conf_fail_invalid(ld, hash_at, conf_join_key(key, prefix, "key_sha256"), allowed);
    }
    for (i = 0; i < 32; i++) {
        client->key_sha256[i] = (uint8_t)(hex_value(hash[2 * i]) * 16 + hex_value(hash[2 * i + 1]));
    }
    return 0;
}

/* Rejects client i when an earlier client has the same name or the same key hash. */
static int check_client_unique(struct conf_loader *ld, const config_setting_t *entry,
                               const char *prefix, unsigned i)
{
    const struct wr_conf_client *clients = ld->conf->clients;
    char key[WR_CONF_KEY_LEN];
    char allowed[160];
    unsigned j;

    for (j = 0; j < i; j++) {
        if (strcmp(clients[j].name, clients[i].name) == 0) {
            snprintf(allowed, sizeof(allowed), "already used by gateway.auth.clients[%u]: "
                     "client names must be unique", j);
            return conf_fail_invalid(ld, conf_member(entry, "name"),
                                     conf_join_key(key, prefix, "name"), allowed);
        }
        if (memcmp(clients[j].key_sha256, clients[i].key_sha256, 32) == 0) {
            snprintf(allowed, sizeof(allowed), "same key as gateway.auth.clients[%u] (\"%s\"): "
                     "every client needs its own key", j, clients[j].name);
            return conf_fail_invalid(ld, conf_member(entry, "key_sha256"),
                                     conf_join_key(key, prefix, "key_sha256"), allowed);
        }
    }
    return 0;
}

static int load_auth(struct conf_loader *ld, const config_setting_t *auth,
                     const config_setting_t *anchor)
{
    const char *allowed = "must be a list of client groups "
                          "( { name = \"...\"; key_sha256 = \"...\"; } ) with at least one entry";
    struct wr_conf *conf = ld->conf;
    const config_setting_t *list;
    char prefix[WR_CONF_KEY_LEN];
    unsigned n;
    unsigned i;
    int rc;

    if (auth == NULL) {
        return conf_fail(ld, anchor, "gateway.auth",
                         "missing: add auth: { clients = ( { name = \"...\"; "
                         "key_sha256 = \"...\"; } ); }; with at least one client");
    }
    if ((rc = conf_check_members(ld, auth, "gateway.auth", auth_keys)) < 0) {
        return rc;
    }
    list = conf_member(auth, "clients");
    if (list == NULL) {
        return conf_fail(ld, auth, "gateway.auth.clients", "missing: %s", allowed);
    }
    if (config_setting_type(list) != CONFIG_TYPE_LIST || config_setting_length(list) == 0) {
        return conf_fail_invalid(ld, list, "gateway.auth.clients", allowed);
    }

    n = (unsigned)config_setting_length(list);
    conf->clients = calloc(n, sizeof(*conf->clients));
    if (conf->clients == NULL) {
        return conf_fail(ld, list, "gateway.auth.clients", "out of memory for %u clients", n);
    }
    for (i = 0; i < n; i++) {
        const config_setting_t *entry = config_setting_get_elem(list, i);

        snprintf(prefix, sizeof(prefix), "gateway.auth.clients[%u]", i);
        if ((rc = load_client(ld, entry, prefix, &conf->clients[i])) < 0 ||
            (rc = check_client_unique(ld, entry, prefix, i)) < 0) {
            return rc;
        }
        conf->num_clients = i + 1;
    }
    return 0;
}

/* Reads the four strings of openai_ws and resolves the CA file. */
static int load_upstream_target(struct conf_loader *ld, const config_setting_t *ws,
                                const config_setting_t *anchor)
{
    const char *prefix = "gateway.openai_ws";
    struct wr_conf *conf = ld->conf;
    const config_setting_t *at = NULL;
    const char *reason;
    char raw_ca[PATH_MAX];
    int rc;

    rc = conf_read_string(ld, ws, prefix, "upstream_url", conf->upstream_url,
                          sizeof(conf->upstream_url), &at);
    if (rc < 0) {
        return rc;
    }
    if ((reason = conf_parse_upstream_url(conf->upstream_url, conf)) != NULL) {
        char shown[WR_CONF_VALUE_LEN];

        conf_format_string(conf->upstream_url, shown, sizeof(shown));
        return conf_fail(ld, at ? at : anchor, "gateway.openai_ws.upstream_url",
                         "invalid value %s: %s (expected ws:// or wss://, a host, an optional "
                         "port from 1 to 65535, then a path and query)", shown, reason);
    }

    rc = conf_read_string(ld, ws, prefix, "upstream_api_key_env", conf->upstream_api_key_env,
                          sizeof(conf->upstream_api_key_env), &at);
    if (rc < 0) {
        return rc;
    }
    if (!conf_is_env_name(conf->upstream_api_key_env)) {
        return conf_fail_invalid(ld, at, "gateway.openai_ws.upstream_api_key_env",
                                 "must be \"\" or an environment variable name made of letters, "
                                 "digits and '_', not starting with a digit");
    }

    rc = conf_read_string(ld, ws, prefix, "upstream_proxy", conf->upstream_proxy,
                          sizeof(conf->upstream_proxy), &at);
    if (rc < 0) {
        return rc;
    }
    if (conf->upstream_proxy[0] != '\0' &&
        (reason = conf_parse_proxy(conf->upstream_proxy, &conf->proxy)) != NULL) {
        char shown[WR_CONF_VALUE_LEN];

        conf_format_string(conf->upstream_proxy, shown, sizeof(shown));
        return conf_fail(ld, at, "gateway.openai_ws.upstream_proxy",
                         "invalid value %s: %s (expected \"\" or http://host:port)", shown,
                         reason);
    }

    memcpy(raw_ca, conf->upstream_ca_file, sizeof(raw_ca));
    rc = conf_read_string(ld, ws, prefix, "upstream_ca_file", raw_ca, sizeof(raw_ca), &at);
    if (rc < 0) {
        return rc;
    }
    if (conf->upstream_tls && raw_ca[0] == '\0') {
        return conf_fail(ld, at ? at : anchor, "gateway.openai_ws.upstream_ca_file",
                         "invalid value \"\": must be a readable PEM file because "
                         "upstream_url uses wss://");
    }
    return conf_resolve_file(ld, at ? at : anchor, "gateway.openai_ws.upstream_ca_file", raw_ca,
                             conf->upstream_ca_file, conf->upstream_tls);
}

/* Checks that a Pong deadline fits inside each Ping interval. */
static int check_ping(struct conf_loader *ld, const config_setting_t *interval_at,
                      const config_setting_t *timeout_at, const config_setting_t *anchor)
{
    const struct wr_conf *conf = ld->conf;
    const config_setting_t *at = anchor;
    char interval[32];
    char timeout[32];

    if (timeout_at != NULL) {
        at = timeout_at;
    } else if (interval_at != NULL) {
        at = interval_at;
    }
    if (conf->ping_interval_ms == 0 ||
        (conf->ping_timeout_ms > 0 && conf->ping_timeout_ms < conf->ping_interval_ms)) {
        return 0;
    }
    conf_format_seconds(conf->ping_interval_ms, interval, sizeof(interval));
    conf_format_seconds(conf->ping_timeout_ms, timeout, sizeof(timeout));
    return conf_fail(ld, at, "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds",
                     "invalid value %s: must be greater than 0 and less than "
                     "passthrough_downstream_ping_interval_seconds (%s), or set the interval "
                     "to 0 to disable keepalive", timeout, interval);
}

static int load_openai_ws(struct conf_loader *ld, const config_setting_t *ws,
                          const config_setting_t *anchor)
{
    const char *prefix = "gateway.openai_ws";
    struct wr_conf *conf = ld->conf;
    const config_setting_t *interval_at = NULL;
    const config_setting_t *timeout_at = NULL;
    const config_setting_t *at = NULL;
    long long client_limit = (long long)conf->client_read_limit_bytes;
    long long upstream_limit = (long long)conf->upstream_read_limit_bytes;
    int rc;

    if (ws != NULL && (rc = conf_check_members(ld, ws, prefix, openai_ws_keys)) < 0) {
        return rc;
    }
    if ((rc = load_upstream_target(ld, ws, anchor)) < 0) {
        return rc;
    }
    if ((rc = conf_read_duration(ld, ws, prefix, "dial_timeout_seconds", true,
                                 &conf->dial_timeout_ms, &at)) < 0 ||
        (rc = conf_read_duration(ld, ws, prefix, "client_first_message_timeout_seconds", true,
                                 &conf->client_first_message_timeout_ms, &at)) < 0 ||
        (rc = conf_read_duration(ld, ws, prefix, "write_timeout_seconds", true,
                                 &conf->write_timeout_ms, &at)) < 0 ||
        (rc = conf_read_int(ld, ws, prefix, "client_read_limit_bytes", 1, WR_CONF_MAX_READ_LIMIT,
                            "a number of bytes", &client_limit)) < 0 ||
        (rc = conf_read_int(ld, ws, prefix, "upstream_read_limit_bytes", 1, WR_CONF_MAX_READ_LIMIT,
                            "a number of bytes", &upstream_limit)) < 0 ||
        (rc = conf_read_duration(ld, ws, prefix, "passthrough_downstream_ping_interval_seconds",
                                 false, &conf->ping_interval_ms, &interval_at)) < 0 ||
        (rc = conf_read_duration(ld, ws, prefix, "passthrough_downstream_ping_timeout_seconds",
                                 false, &conf->ping_timeout_ms, &timeout_at)) < 0 ||
        (rc = conf_read_duration(ld, ws, prefix, "passthrough_downstream_event_keepalive_seconds",
                                 false, &conf->event_keepalive_ms, &at)) < 0 ||
        (rc = conf_read_duration(ld, ws, prefix, "upstream_drain_timeout_seconds", false,
                                 &conf->upstream_drain_timeout_ms, &at)) < 0) {
        return rc;
    }
    conf->client_read_limit_bytes = (uint64_t)client_limit;
    conf->upstream_read_limit_bytes = (uint64_t)upstream_limit;
    return check_ping(ld, interval_at, timeout_at, ws != NULL ? ws : anchor);
}

static int load_usage(struct conf_loader *ld, const config_setting_t *usage,
                      const config_setting_t *anchor)
{
    struct wr_conf *conf = ld->conf;
    const config_setting_t *at = NULL;
    char raw[PATH_MAX];
    int rc;

    if (usage != NULL && (rc = conf_check_members(ld, usage, "gateway.usage", usage_keys)) < 0) {
        return rc;
    }
    memcpy(raw, conf->ledger_path, sizeof(raw));
    rc = conf_read_string(ld, usage, "gateway.usage", "ledger_path", raw, sizeof(raw), &at);
    if (rc < 0) {
        return rc;
    }
    if (raw[0] == '\0') {
        return conf_fail_invalid(ld, at, "gateway.usage.ledger_path", "must be a file path");
    }
    /* The ledger directory is checked at start-up, where a failure has its own exit status. */
    return conf_resolve_file(ld, at ? at : anchor, "gateway.usage.ledger_path", raw,
                             conf->ledger_path, false);
}

static int load_gateway(struct conf_loader *ld, const config_setting_t *gw)
{
    struct wr_conf *conf = ld->conf;
    const config_setting_t *at = NULL;
    const config_setting_t *tls;
    const config_setting_t *auth;
    const config_setting_t *ws;
    const config_setting_t *usage;
    long long workers = conf->workers;
    long long max_connections = conf->max_connections;
    char log_level[16] = "";
    const char *reason;
    size_t i;
    int rc;

    if ((rc = conf_check_members(ld, gw, "gateway", gateway_keys)) < 0) {
        return rc;
    }

    if ((rc = conf_read_string(ld, gw, "gateway", "listen", conf->listen, sizeof(conf->listen),
                               &at)) < 0) {
        return rc;
    }
    if ((reason = conf_parse_listen(conf->listen, &conf->listen_addr)) != NULL) {
        char shown[WR_CONF_VALUE_LEN];

        conf_format_string(conf->listen, shown, sizeof(shown));
        return conf_fail(ld, at, "gateway.listen", "invalid value %s: %s (expected host:port "
                         "or [IPv6]:port with a port from 1 to 65535)", shown, reason);
    }

    if ((rc = conf_read_int(ld, gw, "gateway", "workers", 0, WR_CONF_MAX_WORKERS,
                            "an integer", &workers)) < 0 ||
        (rc = conf_read_int(ld, gw, "gateway", "max_connections", 1, WR_CONF_MAX_CONNECTIONS,
                            "an integer", &max_connections)) < 0 ||
        (rc = conf_read_duration(ld, gw, "gateway", "handshake_timeout_seconds", true,
                                 &conf->handshake_timeout_ms, &at)) < 0) {
        return rc;
    }
    conf->workers = (unsigned)workers;
    conf->max_connections = (unsigned)max_connections;

    rc = conf_read_string(ld, gw, "gateway", "log_level", log_level, sizeof(log_level), &at);
    if (rc < 0) {
        return rc;
    }
    for (i = 0; at != NULL && i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcmp(log_level, log_level_names[i]) == 0) {
            conf->log_level = (enum wr_log_level)i;
            break;
        }
    }
    if (at != NULL && i == sizeof(log_level_names) / sizeof(log_level_names[0])) {
        return conf_fail_invalid(ld, at, "gateway.log_level",
                                 "must be one of error, warn, info, debug");
    }

    if ((rc = conf_read_group(ld, gw, "gateway", "tls", &tls)) < 0 ||
        (rc = conf_read_group(ld, gw, "gateway", "auth", &auth)) < 0 ||
        (rc = conf_read_group(ld, gw, "gateway", "openai_ws", &ws)) < 0 ||
        (rc = conf_read_group(ld, gw, "gateway", "usage", &usage)) < 0) {
        return rc;
    }
    if ((rc = load_tls(ld, tls, tls ? tls : gw)) < 0 ||
        (rc = load_auth(ld, auth, gw)) < 0 ||
        (rc = load_openai_ws(ld, ws, gw)) < 0) {
        return rc;
    }
    return load_usage(ld, usage, usage ? usage : gw);
}

/* Public entry points. */

void wr_conf_defaults(struct wr_conf *conf)
{
    const char *reason;

    memset(conf, 0, sizeof(*conf));
    snprintf(conf->listen, sizeof(conf->listen), "127.0.0.1:8080");
    reason = conf_parse_listen(conf->listen, &conf->listen_addr);
    assert(reason == NULL);
    conf->workers = 0;
    conf->max_connections = 10000;
    conf->handshake_timeout_ms = 10000;
    conf->log_level = WR_LOG_INFO;

    snprintf(conf->upstream_url, sizeof(conf->upstream_url), "wss://api.openai.com/v1/responses");
    reason = conf_parse_upstream_url(conf->upstream_url, conf);
    assert(reason == NULL);
    (void)reason;
    snprintf(conf->upstream_api_key_env, sizeof(conf->upstream_api_key_env), "OPENAI_API_KEY");
    snprintf(conf->upstream_ca_file, sizeof(conf->upstream_ca_file),
             "/etc/ssl/certs/ca-certificates.crt");
    conf->dial_timeout_ms = 10000;
    conf->client_first_message_timeout_ms = 30000;
    conf->write_timeout_ms = 120000;
    conf->client_read_limit_bytes = 67108864;
    conf->upstream_read_limit_bytes = 67108864;
    conf->ping_interval_ms = 20000;
    conf->ping_timeout_ms = 5000;
    conf->event_keepalive_ms = 0;
    conf->upstream_drain_timeout_ms = 10000;

    /* Relative until wr_conf_load resolves it against the file's directory. */
    snprintf(conf->ledger_path, sizeof(conf->ledger_path), "usage.jsonl");
}

/* Stores path and the absolute directory that contains it. */
static int set_paths(struct conf_loader *ld, const char *path)
{
    struct wr_conf *conf = ld->conf;
    char dir[PATH_MAX];
    const char *slash;

    if (path[0] == '\0' || strlen(path) >= sizeof(conf->path)) {
        snprintf(ld->err, ld->err_len, "invalid configuration file path: must be 1 to %d bytes",
                 PATH_MAX - 1);
        return WR_ECONF;
    }
    memcpy(conf->path, path, strlen(path) + 1);
    slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    }
    if (realpath(dir, conf->dir) == NULL) {
        snprintf(ld->err, ld->err_len, "%s: cannot read the configuration file: %s", path,
                 strerror(errno));
        return WR_ECONF;
    }
    return 0;
}

static int read_file(struct conf_loader *ld, config_t *cfg)
{
    const char *path = ld->conf->path;
    const char *error_file;
    int saved_errno;

    config_set_include_dir(cfg, ld->conf->dir);
    errno = 0;
    if (config_read_file(cfg, path) == CONFIG_TRUE) {
        return 0;
    }
    saved_errno = errno;

    if (config_error_type(cfg) == CONFIG_ERR_FILE_IO) {
        if (saved_errno == 0) {
            /* fopen accepts a directory, and libconfig then fails without an errno. */
            saved_errno = conf_file_readable(path);
        }
        snprintf(ld->err, ld->err_len, "%s: cannot read the configuration file: %s", path,
                 saved_errno != 0 ? strerror(saved_errno) : config_error_text(cfg));
        return WR_ECONF;
    }

    /* An included file is named relative to the include directory. */
    error_file = config_error_file(cfg) != NULL ? config_error_file(cfg) : path;
    if (strcmp(error_file, path) == 0 || error_file[0] == '/') {
        snprintf(ld->err, ld->err_len, "%s:%d: %s", error_file, config_error_line(cfg),
                 config_error_text(cfg));
    } else {
        snprintf(ld->err, ld->err_len, "%s/%s:%d: %s", ld->conf->dir, error_file,
                 config_error_line(cfg), config_error_text(cfg));
    }
    return WR_ECONF;
}

int wr_conf_load(struct wr_conf *conf, const char *path, char *err, size_t err_len)
{
    struct conf_loader ld = { conf, err, err_len };
    char dummy[1];
    config_t cfg;
    const config_setting_t *gw;
    int rc;

    if (err == NULL || err_len == 0) {
        ld.err = dummy;
        ld.err_len = sizeof(dummy);
    }
    ld.err[0] = '\0';
    wr_conf_defaults(conf);
    rc = set_paths(&ld, path);
    if (rc < 0) {
        return rc;
    }

    config_init(&cfg);
    rc = read_file(&ld, &cfg);
    if (rc < 0) {
        goto out;
    }
    rc = conf_check_members(&ld, config_root_setting(&cfg), "", top_keys);
    if (rc < 0) {
        goto out;
    }
    gw = config_lookup(&cfg, "gateway");
    if (gw == NULL) {
        rc = conf_fail(&ld, NULL, "gateway", "missing: the file must contain a group "
                       "gateway: { auth: { clients = ( ... ); }; };");
        goto out;
    }
    if (config_setting_type(gw) != CONFIG_TYPE_GROUP) {
        rc = conf_fail_invalid(&ld, gw, "gateway", "must be a group { ... }");
        goto out;
    }
    rc = load_gateway(&ld, gw);

out:
    config_destroy(&cfg);
    if (rc < 0) {
        wr_conf_free(conf);
    }
    return rc;
}

void wr_conf_free(struct wr_conf *conf)
{
    free(conf->clients);
    conf->clients = NULL;
    conf->num_clients = 0;
}

const char *wr_conf_log_level_name(enum wr_log_level level)
{
    if ((unsigned)level >= sizeof(log_level_names) / sizeof(log_level_names[0])) {
        return "unknown";
    }
    return log_level_names[level];
}
