/* SPDX-License-Identifier: MIT */
/* Tests for loading, validating and printing the libconfig configuration. */
#include "conf/conf.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

/* SHA-256 of "wsrelay-demo-key", the public demo key of the sample files. */
#define HASH_DEMO "ae1d82035fb11e15a2168348e53458a10434bc5af359e99aa90ef1860a587239"
#define HASH_OTHER "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define MOCK_URL "ws://127.0.0.1:18080/v1/responses"

#define CLIENT_ALICE "{ name = \"alice\"; key_sha256 = \"" HASH_DEMO "\"; }"
#define CLIENTS "  auth: { clients = ( " CLIENT_ALICE " ); };\n"

/*
 * Configuration texts with the clients on line 2 and body from line 3. GW ends with a
 * ws:// upstream, so no CA file is needed and the body's line numbers stay fixed.
 */
#define GW(body) \
    "gateway: {\n" CLIENTS body "  openai_ws: { upstream_url = \"" MOCK_URL "\"; };\n};\n"
/* The body starts on line 5, inside openai_ws after a ws:// upstream_url. */
#define GW_WS(body) \
    "gateway: {\n" CLIENTS "  openai_ws: {\n    upstream_url = \"" MOCK_URL "\";\n" body \
    "  };\n};\n"
/* The body starts on line 4, inside an openai_ws group without upstream_url. */
#define GW_OPENAI(body) "gateway: {\n" CLIENTS "  openai_ws: {\n" body "  };\n};\n"

static char dir[PATH_MAX];
static char cfg_path[PATH_MAX + 16];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/wr-conf-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    snprintf(cfg_path, sizeof(cfg_path), "%s/wsrelay.cfg", dir);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_dir(void)
{
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(conf, .init = make_dir, .fini = remove_dir);

/* Writes text to dir/name and returns the path in out. */
static void write_file(const char *name, const char *text, char *out, size_t out_len)
{
    FILE *f;

    cr_assert_lt((size_t)snprintf(out, out_len, "%s/%s", dir, name), out_len, "path too long");
    f = fopen(out, "w");
    cr_assert_not_null(f, "cannot create %s", out);
    cr_assert_geq(fputs(text, f), 0, "cannot write %s", out);
    cr_assert_eq(fclose(f), 0, "cannot close %s", out);
}

static int load_text(const char *text, struct wr_conf *conf, char *err, size_t err_len)
{
    char path[PATH_MAX];

    write_file("wsrelay.cfg", text, path, sizeof(path));
    return wr_conf_load(conf, cfg_path, err, err_len);
}

/* Loads text, which must be valid. The caller frees conf with wr_conf_free. */
static void load_ok(const char *label, const char *text, struct wr_conf *conf)
{
    char err[1024] = "";
    int rc = load_text(text, conf, err, sizeof(err));

    cr_assert_eq(rc, 0, "%s: load failed with %d: %s", label, rc, err);
}

static char *print_conf(const struct wr_conf *conf)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    cr_assert_not_null(out, "open_memstream failed");
    wr_conf_print(conf, out);
    cr_assert_eq(fclose(out), 0, "closing the memory stream failed");
    return text;
}

/* Writes the path of a file in the source tree, from WR_SOURCE_DIR or from this file's path. */
static void source_path(const char *relative, char *out, size_t out_len)
{
    const char *source_dir = getenv("WR_SOURCE_DIR");
    const char *tests_dir_end = strrchr(__FILE__, '/');

    if (source_dir != NULL) {
        snprintf(out, out_len, "%s/%s", source_dir, relative);
        return;
    }
    cr_assert_not_null(tests_dir_end, "set WR_SOURCE_DIR to the source directory");
    snprintf(out, out_len, "%.*s/../%s", (int)(tests_dir_end - __FILE__), __FILE__, relative);
}

/* An invalid configuration and what its one-line message must contain. */
struct error_case {
    const char *label;
    const char *text;
    unsigned line;
    const char *key;
    const char *value;
    const char *allowed;
};

static void check_error_case(const struct error_case *c)
{
    struct wr_conf conf;
    char err[2048] = "";
    char prefix[PATH_MAX + 32];
    char key[256];
    int rc = load_text(c->text, &conf, err, sizeof(err));

    cr_assert_eq(rc, WR_ECONF, "%s: load returned %d instead of WR_ECONF", c->label, rc);
    snprintf(prefix, sizeof(prefix), "%s:%u: ", cfg_path, c->line);
    snprintf(key, sizeof(key), " %s: ", c->key);
    cr_expect_eq(strncmp(err, prefix, strlen(prefix)), 0,
                 "%s: message does not start with file and line %s: %s", c->label, prefix, err);
    cr_expect_not_null(strstr(err, key), "%s: message does not name key %s: %s", c->label,
                       c->key, err);
    cr_expect_not_null(strstr(err, c->value), "%s: message does not name value %s: %s",
                       c->label, c->value, err);
    cr_expect_not_null(strstr(err, c->allowed), "%s: message does not say %s: %s", c->label,
                       c->allowed, err);
    cr_expect_null(strchr(err, '\n'), "%s: message spans lines: %s", c->label, err);
    cr_expect_null(conf.clients, "%s: failed load left clients allocated", c->label);
}

static void check_error_cases(const struct error_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        check_error_case(&cases[i]);
    }
}

static bool system_ca_readable(void)
{
    return access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0;
}

/* Defaults and the sample files. */

Test(conf, defaults_with_only_clients)
{
    struct wr_conf conf;
    char real_dir[PATH_MAX];
    char ledger[PATH_MAX + 16];

    if (!system_ca_readable()) {
        cr_skip_test("the default wss:// upstream needs /etc/ssl/certs/ca-certificates.crt");
    }
    load_ok("defaults", "gateway: {\n" CLIENTS "};\n", &conf);
    cr_assert_not_null(realpath(dir, real_dir), "realpath of the test directory failed");
    snprintf(ledger, sizeof(ledger), "%s/usage.jsonl", real_dir);

    cr_expect_str_eq(conf.listen, "127.0.0.1:8080");
    cr_expect_str_eq(conf.listen_addr.host, "127.0.0.1");
    cr_expect_eq(conf.listen_addr.port, 8080);
    cr_expect_eq(conf.workers, 0);
    cr_expect_eq(conf.max_connections, 10000);
    cr_expect_eq(conf.handshake_timeout_ms, 10000);
    cr_expect_eq(conf.log_level, WR_LOG_INFO);
    cr_expect_str_eq(conf.tls_cert_file, "");
    cr_expect_str_eq(conf.tls_key_file, "");
    cr_assert_eq(conf.num_clients, 1);
    cr_expect_str_eq(conf.clients[0].name, "alice");
    cr_expect_str_eq(conf.upstream_url, "wss://api.openai.com/v1/responses");
    cr_expect(conf.upstream_tls);
    cr_expect_str_eq(conf.upstream.host, "api.openai.com");
    cr_expect_eq(conf.upstream.port, 443);
    cr_expect_str_eq(conf.upstream_path, "/v1/responses");
    cr_expect_str_eq(conf.upstream_api_key_env, "OPENAI_API_KEY");
    cr_expect_str_eq(conf.upstream_ca_file, "/etc/ssl/certs/ca-certificates.crt");
    cr_expect_str_eq(conf.upstream_proxy, "");
    cr_expect_eq(conf.dial_timeout_ms, 10000);
    cr_expect_eq(conf.client_first_message_timeout_ms, 30000);
    cr_expect_eq(conf.write_timeout_ms, 120000);
    cr_expect_eq(conf.client_read_limit_bytes, 67108864);
    cr_expect_eq(conf.upstream_read_limit_bytes, 67108864);
    cr_expect_eq(conf.ping_interval_ms, 20000);
    cr_expect_eq(conf.ping_timeout_ms, 5000);
    cr_expect_eq(conf.event_keepalive_ms, 0);
    cr_expect_eq(conf.upstream_drain_timeout_ms, 10000);
    cr_expect_str_eq(conf.ledger_path, ledger);
    wr_conf_free(&conf);
}

Test(conf, defaults_function_fills_fields)
{
    struct wr_conf conf;

    memset(&conf, 0xa5, sizeof(conf));
    wr_conf_defaults(&conf);
    cr_expect_null(conf.clients);
    cr_expect_eq(conf.num_clients, 0);
    cr_expect_eq(conf.listen_addr.port, 8080);
    cr_expect_eq(conf.upstream.port, 443);
    cr_expect_str_eq(conf.upstream_path, "/v1/responses");
    cr_expect_eq(conf.ping_interval_ms, 20000);
    cr_expect_str_eq(conf.ledger_path, "usage.jsonl");
}

/* Checks the demo client of a sample file against a SHA-256 computed here. */
static void check_demo_client(const struct wr_conf *conf)
{
    uint8_t expected[32];
    const char *key = "wsrelay-demo-key";

    cr_assert_eq(wc_Sha256Hash((const uint8_t *)key, (uint32_t)strlen(key), expected), 0,
                 "wc_Sha256Hash failed");
    cr_assert_eq(conf->num_clients, 1);
    cr_expect_str_eq(conf->clients[0].name, "demo");
    cr_expect_eq(memcmp(conf->clients[0].key_sha256, expected, 32), 0,
                 "key_sha256 is not the SHA-256 of %s", key);
}

Test(conf, loads_mock_sample)
{
    struct wr_conf conf;
    char path[PATH_MAX];
    char err[1024] = "";
    const char *ledger_end = "/conf/../build/usage.jsonl";
    size_t ledger_len;
    int rc;

    source_path("conf/wsrelay-mock.cfg", path, sizeof(path));
    rc = wr_conf_load(&conf, path, err, sizeof(err));
    cr_assert_eq(rc, 0, "loading %s failed: %s", path, err);
    cr_expect_str_eq(conf.listen, "127.0.0.1:8080");
    cr_expect_not(conf.upstream_tls);
    cr_expect_str_eq(conf.upstream.host, "127.0.0.1");
    cr_expect_eq(conf.upstream.port, 18080);
    cr_expect_str_eq(conf.upstream_path, "/v1/responses");
    cr_expect_str_eq(conf.upstream_api_key_env, "");
    ledger_len = strlen(conf.ledger_path);
    cr_expect_eq(conf.ledger_path[0], '/', "ledger_path %s is not absolute", conf.ledger_path);
    cr_expect(ledger_len > strlen(ledger_end) &&
              strcmp(conf.ledger_path + ledger_len - strlen(ledger_end), ledger_end) == 0,
              "ledger_path %s does not end in %s", conf.ledger_path, ledger_end);
    check_demo_client(&conf);
    wr_conf_free(&conf);
}

Test(conf, loads_openai_sample)
{
    struct wr_conf conf;
    char path[PATH_MAX];
    char err[1024] = "";
    int rc;

    if (!system_ca_readable()) {
        cr_skip_test("the sample's upstream_ca_file /etc/ssl/certs/ca-certificates.crt is missing");
    }
    source_path("conf/wsrelay.cfg", path, sizeof(path));
    rc = wr_conf_load(&conf, path, err, sizeof(err));
    cr_assert_eq(rc, 0, "loading %s failed: %s", path, err);
    cr_expect(conf.upstream_tls);
    cr_expect_str_eq(conf.upstream.host, "api.openai.com");
    cr_expect_eq(conf.upstream.port, 443);
    cr_expect_str_eq(conf.upstream_path, "/v1/responses");
    cr_expect_str_eq(conf.upstream_api_key_env, "OPENAI_API_KEY");
    cr_expect_eq(conf.listen_addr.port, 8080);
    check_demo_client(&conf);
    wr_conf_free(&conf);
}

/* Unknown keys, types and syntax. */

Test(conf, rejects_unknown_keys)
{
    static const struct error_case cases[] = {
        { "top level", "extra = 1;\n" GW(""), 1, "extra", "1", "allowed keys are gateway" },
        { "gateway", GW("  colour = \"blue\";\n"), 3, "gateway.colour", "\"blue\"",
          "allowed keys are listen," },
        { "openai_ws", GW_OPENAI("    dial_timeout = 5;\n"), 4,
          "gateway.openai_ws.dial_timeout", "5", "dial_timeout_seconds" },
        { "tls", GW("  tls: { cert = \"x.pem\"; };\n"), 3, "gateway.tls.cert", "\"x.pem\"",
          "allowed keys are cert_file, key_file" },
        { "usage", GW("  usage: { path = \"u.jsonl\"; };\n"), 3, "gateway.usage.path",
          "\"u.jsonl\"", "allowed keys are ledger_path" },
        { "auth", "gateway: {\n  auth: { clients = ( " CLIENT_ALICE " );\n    admins = 2; };\n};\n",
          3, "gateway.auth.admins", "2", "allowed keys are clients" },
        { "client entry",
          "gateway: {\n  auth: { clients = (\n    { name = \"a\"; key_sha256 = \"" HASH_DEMO
          "\"; role = \"admin\"; }\n  ); };\n};\n",
          3, "gateway.auth.clients[0].role", "\"admin\"", "allowed keys are name, key_sha256" },
    };

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, rejects_wrong_types)
{
    static const struct error_case cases[] = {
        { "string as int", GW("  listen = 8080;\n"), 3, "gateway.listen", "8080",
          "must be a string" },
        { "string as bool", GW("  log_level = true;\n"), 3, "gateway.log_level", "true",
          "must be a string" },
        { "int as string", GW("  workers = \"4\";\n"), 3, "gateway.workers", "\"4\"",
          "must be an integer from 0 to 1024" },
        { "int as float", GW("  max_connections = 2.5;\n"), 3, "gateway.max_connections", "2.5",
          "must be an integer from 1 to 1000000" },
        { "duration as string", GW_WS("    dial_timeout_seconds = \"10\";\n"), 5,
          "gateway.openai_ws.dial_timeout_seconds", "\"10\"", "must be a number of seconds" },
        { "duration as bool", GW("  handshake_timeout_seconds = false;\n"), 3,
          "gateway.handshake_timeout_seconds", "false", "must be a number of seconds" },
        { "group as string", GW("  tls = \"on\";\n"), 3, "gateway.tls", "\"on\"",
          "must be a group" },
        { "gateway as int", "gateway = 1;\n", 1, "gateway", "1", "must be a group" },
        { "clients as group", "gateway: {\n  auth: { clients = { name = \"a\"; }; };\n};\n", 2,
          "gateway.auth.clients", "{ ... }", "must be a list of client groups" },
        { "client as string", "gateway: {\n  auth: { clients = ( \"alice\" ); };\n};\n", 2,
          "gateway.auth.clients[0]", "\"alice\"", "must be a group" },
    };

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, rejects_syntax_error)
{
    struct wr_conf conf;
    char err[1024] = "";
    char prefix[PATH_MAX + 64];
    int rc = load_text("gateway: {\n  listen = \"127.0.0.1:8080\";\n  workers = ;\n};\n", &conf,
                       err, sizeof(err));

    cr_assert_eq(rc, WR_ECONF);
    snprintf(prefix, sizeof(prefix), "%s:3: ", cfg_path);
    cr_expect_eq(strncmp(err, prefix, strlen(prefix)), 0, "message %s does not start with %s",
                 err, prefix);
    cr_expect_not_null(strstr(err, "syntax error"), "message %s does not say syntax error", err);
}

Test(conf, rejects_duplicate_setting)
{
    struct wr_conf conf;
    char err[1024] = "";
    int rc = load_text(GW("  workers = 1;\n  workers = 2;\n"), &conf, err, sizeof(err));

    cr_assert_eq(rc, WR_ECONF);
    cr_expect_not_null(strstr(err, ":4: "), "message %s does not name line 4", err);
    cr_expect_not_null(strstr(err, "duplicate setting name"), "message: %s", err);
}

Test(conf, rejects_missing_file)
{
    struct wr_conf conf;
    char path[PATH_MAX + 16];
    char err[1024] = "";
    int rc;

    snprintf(path, sizeof(path), "%s/absent.cfg", dir);
    rc = wr_conf_load(&conf, path, err, sizeof(err));
    cr_assert_eq(rc, WR_ECONF);
    cr_expect_eq(strncmp(err, path, strlen(path)), 0, "message %s does not name %s", err, path);
    cr_expect_not_null(strstr(err, "No such file or directory"), "message: %s", err);
}

Test(conf, rejects_directory_as_file)
{
    struct wr_conf conf;
    char err[1024] = "";
    int rc = wr_conf_load(&conf, dir, err, sizeof(err));

    cr_assert_eq(rc, WR_ECONF);
    cr_expect_eq(strncmp(err, dir, strlen(dir)), 0, "message %s does not name %s", err, dir);
    cr_expect_not_null(strstr(err, "Is a directory"), "message: %s", err);
}

Test(conf, names_included_file_in_error)
{
    struct wr_conf conf;
    char part[PATH_MAX];
    char real_dir[PATH_MAX];
    char prefix[PATH_MAX + 64];
    char err[1024] = "";
    int rc;

    write_file("part.cfg", CLIENTS "  workers = 4096;\n", part, sizeof(part));
    rc = load_text("gateway: {\n  @include \"part.cfg\"\n};\n", &conf, err, sizeof(err));
    cr_assert_eq(rc, WR_ECONF);
    cr_assert_not_null(realpath(dir, real_dir));
    snprintf(prefix, sizeof(prefix), "%s/part.cfg:2: gateway.workers: invalid value 4096", real_dir);
    cr_expect_eq(strncmp(err, prefix, strlen(prefix)), 0, "message %s does not start with %s",
                 err, prefix);
}

Test(conf, rejects_missing_groups)
{
    static const struct error_case cases[] = {
        { "no auth", "gateway: {\n  workers = 2;\n};\n", 1, "gateway.auth", "missing",
          "clients" },
        { "no clients", "gateway: {\n  auth: { };\n};\n", 2, "gateway.auth.clients", "missing",
          "at least one entry" },
        { "empty clients", "gateway: {\n  auth: { clients = ( ); };\n};\n", 2,
          "gateway.auth.clients", "()", "at least one entry" },
        { "client without hash", "gateway: {\n  auth: { clients = (\n    { name = \"a\"; }\n"
          "  ); };\n};\n", 3, "gateway.auth.clients[0].key_sha256", "missing", "64 lowercase hex" },
        { "client without name", "gateway: {\n  auth: { clients = (\n    { key_sha256 = \""
          HASH_DEMO "\"; }\n  ); };\n};\n", 3, "gateway.auth.clients[0].name", "missing",
          "1 to 63 printable ASCII" },
    };
    struct wr_conf conf;
    char err[1024] = "";
    char prefix[PATH_MAX + 64];
    int rc;

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));

    /* Without gateway there is no line to name. */
    rc = load_text("# nothing here\n", &conf, err, sizeof(err));
    cr_assert_eq(rc, WR_ECONF);
    snprintf(prefix, sizeof(prefix), "%s: gateway: missing", cfg_path);
    cr_expect_eq(strncmp(err, prefix, strlen(prefix)), 0, "message %s does not start with %s",
                 err, prefix);
}

/* Numeric ranges. */

struct int_case {
    const char *label;
    const char *text;
    long long expected;
};

Test(conf, accepts_integers_at_bounds)
{
    static const struct int_case workers[] = {
        { "workers 0", GW("  workers = 0;\n"), 0 },
        { "workers 1024", GW("  workers = 1024;\n"), 1024 },
    };
    static const struct int_case connections[] = {
        { "max_connections 1", GW("  max_connections = 1;\n"), 1 },
        { "max_connections 1000000", GW("  max_connections = 1000000;\n"), 1000000 },
    };
    static const struct int_case limits[] = {
        { "read limit 1", GW_WS("    client_read_limit_bytes = 1;\n"
                                "    upstream_read_limit_bytes = 1;\n"), 1 },
        { "read limit 2^40", GW_WS("    client_read_limit_bytes = 1099511627776L;\n"
                                   "    upstream_read_limit_bytes = 1099511627776L;\n"),
          1099511627776LL },
    };
    struct wr_conf conf;
    size_t i;

    for (i = 0; i < 2; i++) {
        load_ok(workers[i].label, workers[i].text, &conf);
        cr_expect_eq(conf.workers, (unsigned)workers[i].expected, "%s", workers[i].label);
        wr_conf_free(&conf);

        load_ok(connections[i].label, connections[i].text, &conf);
        cr_expect_eq(conf.max_connections, (unsigned)connections[i].expected, "%s",
                     connections[i].label);
        wr_conf_free(&conf);

        load_ok(limits[i].label, limits[i].text, &conf);
        cr_expect_eq(conf.client_read_limit_bytes, (uint64_t)limits[i].expected, "%s",
                     limits[i].label);
        cr_expect_eq(conf.upstream_read_limit_bytes, (uint64_t)limits[i].expected, "%s",
                     limits[i].label);
        wr_conf_free(&conf);
    }
}

Test(conf, rejects_integers_past_bounds)
{
    static const struct error_case cases[] = {
        { "workers -1", GW("  workers = -1;\n"), 3, "gateway.workers", "-1", "from 0 to 1024" },
        { "workers 1025", GW("  workers = 1025;\n"), 3, "gateway.workers", "1025",
          "from 0 to 1024" },
        { "max_connections 0", GW("  max_connections = 0;\n"), 3, "gateway.max_connections", "0",
          "from 1 to 1000000" },
        { "max_connections 1000001", GW("  max_connections = 1000001;\n"), 3,
          "gateway.max_connections", "1000001", "from 1 to 1000000" },
        { "client limit 0", GW_WS("    client_read_limit_bytes = 0;\n"), 5,
          "gateway.openai_ws.client_read_limit_bytes", "0", "from 1 to 1099511627776" },
        { "client limit 2^40+1", GW_WS("    client_read_limit_bytes = 1099511627777L;\n"), 5,
          "gateway.openai_ws.client_read_limit_bytes", "1099511627777", "from 1 to 1099511627776" },
        { "upstream limit 0", GW_WS("    upstream_read_limit_bytes = 0;\n"), 5,
          "gateway.openai_ws.upstream_read_limit_bytes", "0", "from 1 to 1099511627776" },
        { "upstream limit 2^40+1", GW_WS("    upstream_read_limit_bytes = 1099511627777L;\n"), 5,
          "gateway.openai_ws.upstream_read_limit_bytes", "1099511627777",
          "from 1 to 1099511627776" },
    };

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, rejects_wrapped_32bit_literal)
{
    /* libconfig 1.5 would load these as 1 and 0 without the literal check. */
    static const struct error_case cases[] = {
        { "2^32+1", GW_WS("    client_read_limit_bytes = 4294967297;\n"), 5,
          "gateway.openai_ws.client_read_limit_bytes", "4294967297", "L suffix" },
        { "2^40", GW_WS("    upstream_read_limit_bytes = 1099511627776;\n"), 5,
          "gateway.openai_ws.upstream_read_limit_bytes", "1099511627776", "L suffix" },
        { "duration 2^32", GW_WS("    write_timeout_seconds = 4294967296;\n"), 5,
          "gateway.openai_ws.write_timeout_seconds", "4294967296", "L suffix" },
    };

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

struct duration_case {
    const char *label;
    const char *text;
    uint32_t expected_ms;
};

Test(conf, accepts_durations_at_bounds)
{
    static const struct duration_case cases[] = {
        { "one millisecond", GW_WS("    dial_timeout_seconds = 0.001;\n"), 1 },
        { "rounds up to 1 ms", GW_WS("    dial_timeout_seconds = 0.0006;\n"), 1 },
        { "half a second", GW_WS("    dial_timeout_seconds = 0.5;\n"), 500 },
        { "one day", GW_WS("    dial_timeout_seconds = 86400;\n"), 86400000 },
        { "one day as float", GW_WS("    dial_timeout_seconds = 86400.0;\n"), 86400000 },
        { "int64 literal", GW_WS("    dial_timeout_seconds = 7L;\n"), 7000 },
    };
    struct wr_conf conf;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        load_ok(cases[i].label, cases[i].text, &conf);
        cr_expect_eq(conf.dial_timeout_ms, cases[i].expected_ms, "%s: got %u ms",
                     cases[i].label, conf.dial_timeout_ms);
        wr_conf_free(&conf);
    }

    load_ok("drain 0", GW_WS("    upstream_drain_timeout_seconds = 0;\n"), &conf);
    cr_expect_eq(conf.upstream_drain_timeout_ms, 0);
    wr_conf_free(&conf);

    load_ok("keepalive 86400",
            GW_WS("    passthrough_downstream_event_keepalive_seconds = 86400;\n"), &conf);
    cr_expect_eq(conf.event_keepalive_ms, 86400000);
    wr_conf_free(&conf);
}

Test(conf, rejects_durations_past_bounds)
{
    static const struct error_case cases[] = {
        { "dial 0", GW_WS("    dial_timeout_seconds = 0;\n"), 5,
          "gateway.openai_ws.dial_timeout_seconds", "invalid value 0:", "greater than 0" },
        { "dial -1", GW_WS("    dial_timeout_seconds = -1;\n"), 5,
          "gateway.openai_ws.dial_timeout_seconds", "-1", "greater than 0" },
        { "dial rounds to 0", GW_WS("    dial_timeout_seconds = 0.0004;\n"), 5,
          "gateway.openai_ws.dial_timeout_seconds", "0.0004", "at least 0.001" },
        { "dial over a day", GW_WS("    dial_timeout_seconds = 86400.001;\n"), 5,
          "gateway.openai_ws.dial_timeout_seconds", "86400.001", "at most 86400" },
        { "handshake 0", GW("  handshake_timeout_seconds = 0;\n"), 3,
          "gateway.handshake_timeout_seconds", "invalid value 0:", "greater than 0" },
        { "write 0.0", GW_WS("    write_timeout_seconds = 0.0;\n"), 5,
          "gateway.openai_ws.write_timeout_seconds", "invalid value 0:", "greater than 0" },
        { "first message 0", GW_WS("    client_first_message_timeout_seconds = 0;\n"), 5,
          "gateway.openai_ws.client_first_message_timeout_seconds", "invalid value 0:",
          "greater than 0" },
        { "drain -0.5", GW_WS("    upstream_drain_timeout_seconds = -0.5;\n"), 5,
          "gateway.openai_ws.upstream_drain_timeout_seconds", "-0.5", "from 0 to 86400" },
        { "keepalive 86401", GW_WS("    passthrough_downstream_event_keepalive_seconds = 86401;\n"),
          5, "gateway.openai_ws.passthrough_downstream_event_keepalive_seconds", "86401",
          "from 0 to 86400" },
        { "infinite interval", GW_WS("    passthrough_downstream_ping_interval_seconds = 1e400;\n"),
          5, "gateway.openai_ws.passthrough_downstream_ping_interval_seconds", "inf",
          "from 0 to 86400" },
    };

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, accepts_valid_ping_pairs)
{
    static const struct {
        const char *label;
        const char *text;
        uint32_t interval_ms;
        uint32_t timeout_ms;
    } cases[] = {
        { "20/5", GW_WS("    passthrough_downstream_ping_interval_seconds = 20;\n"
                        "    passthrough_downstream_ping_timeout_seconds = 5;\n"), 20000, 5000 },
        { "0/0", GW_WS("    passthrough_downstream_ping_interval_seconds = 0;\n"
                       "    passthrough_downstream_ping_timeout_seconds = 0;\n"), 0, 0 },
        { "0.5/0.25", GW_WS("    passthrough_downstream_ping_interval_seconds = 0.5;\n"
                            "    passthrough_downstream_ping_timeout_seconds = 0.25;\n"),
          500, 250 },
    };
    struct wr_conf conf;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        load_ok(cases[i].label, cases[i].text, &conf);
        cr_expect_eq(conf.ping_interval_ms, cases[i].interval_ms, "%s", cases[i].label);
        cr_expect_eq(conf.ping_timeout_ms, cases[i].timeout_ms, "%s", cases[i].label);
        wr_conf_free(&conf);
    }
}

Test(conf, rejects_invalid_ping_pairs)
{
    static const struct error_case cases[] = {
        { "20/20", GW_WS("    passthrough_downstream_ping_interval_seconds = 20;\n"
                         "    passthrough_downstream_ping_timeout_seconds = 20;\n"), 6,
          "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds", "invalid value 20:",
          "less than passthrough_downstream_ping_interval_seconds (20)" },
        { "20/0", GW_WS("    passthrough_downstream_ping_interval_seconds = 20;\n"
                        "    passthrough_downstream_ping_timeout_seconds = 0;\n"), 6,
          "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds", "invalid value 0:",
          "less than passthrough_downstream_ping_interval_seconds (20)" },
        { "0.5/1", GW_WS("    passthrough_downstream_ping_interval_seconds = 0.5;\n"
                         "    passthrough_downstream_ping_timeout_seconds = 1;\n"), 6,
          "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds", "invalid value 1:",
          "(0.5)" },
        { "3 with default 5", GW_WS("    passthrough_downstream_ping_interval_seconds = 3;\n"), 5,
          "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds", "invalid value 5:",
          "(3)" },
    };

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Strings with a syntax of their own. */

Test(conf, accepts_listen_forms)
{
    static const struct {
        const char *text;
        const char *host;
        uint16_t port;
    } cases[] = {
        { GW("  listen = \"[::1]:8080\";\n"), "::1", 8080 },
        { GW("  listen = \"0.0.0.0:1\";\n"), "0.0.0.0", 1 },
        { GW("  listen = \"localhost:65535\";\n"), "localhost", 65535 },
        { GW("  listen = \"[fe80::1:2]:443\";\n"), "fe80::1:2", 443 },
    };
    struct wr_conf conf;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        load_ok(cases[i].host, cases[i].text, &conf);
        cr_expect_str_eq(conf.listen_addr.host, cases[i].host);
        cr_expect_eq(conf.listen_addr.port, cases[i].port, "%s", cases[i].host);
        wr_conf_free(&conf);
    }
}

Test(conf, rejects_bad_listen_forms)
{
#define LISTEN_CASE(value, reason) \
    { value, GW("  listen = \"" value "\";\n"), 3, "gateway.listen", "\"" value "\"", reason }
    static const struct error_case cases[] = {
        LISTEN_CASE("localhost", "port is missing"),
        LISTEN_CASE("127.0.0.1:", "from 1 to 65535"),
        LISTEN_CASE("127.0.0.1:0", "from 1 to 65535"),
        LISTEN_CASE("127.0.0.1:65536", "from 1 to 65535"),
        LISTEN_CASE("127.0.0.1:80x", "from 1 to 65535"),
        LISTEN_CASE("127.0.0.1:-80", "from 1 to 65535"),
        LISTEN_CASE(":8080", "host is missing"),
        LISTEN_CASE("::1:8080", "in brackets"),
        LISTEN_CASE("[::1", "closing ]"),
        LISTEN_CASE("[::1]8080", "expected :port"),
        LISTEN_CASE("[]:8080", "host is missing"),
        LISTEN_CASE("[1.2.3.4]:80", "only for IPv6"),
        LISTEN_CASE("ho st:80", "only letters, digits"),
        LISTEN_CASE("", "host is missing"),
    };
#undef LISTEN_CASE

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, accepts_upstream_urls)
{
    static const struct {
        const char *url;
        bool tls;
        const char *host;
        uint16_t port;
        const char *path;
    } cases[] = {
        { MOCK_URL, false, "127.0.0.1", 18080, "/v1/responses" },
        { "ws://relay.test", false, "relay.test", 80, "/" },
        { "ws://relay.test?beta=1", false, "relay.test", 80, "/?beta=1" },
        { "ws://[::1]:9000/r?x=1&y=2", false, "::1", 9000, "/r?x=1&y=2" },
        { "WS://relay.test/", false, "relay.test", 80, "/" },
        { "wss://relay.test/v1/responses", true, "relay.test", 443, "/v1/responses" },
    };
    char ca[PATH_MAX];
    char text[PATH_MAX + 512];
    struct wr_conf conf;
    size_t i;

    write_file("ca.pem", "not parsed here\n", ca, sizeof(ca));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), GW_OPENAI("    upstream_url = \"%s\";\n"
                                               "    upstream_ca_file = \"%s\";\n"),
                 cases[i].url, ca);
        load_ok(cases[i].url, text, &conf);
        cr_expect_eq(conf.upstream_tls, cases[i].tls, "%s", cases[i].url);
        cr_expect_str_eq(conf.upstream.host, cases[i].host, "%s", cases[i].url);
        cr_expect_eq(conf.upstream.port, cases[i].port, "%s", cases[i].url);
        cr_expect_str_eq(conf.upstream_path, cases[i].path, "%s", cases[i].url);
        cr_expect_str_eq(conf.upstream_url, cases[i].url, "%s", cases[i].url);
        wr_conf_free(&conf);
    }
}

Test(conf, rejects_bad_upstream_urls)
{
#define URL_CASE(value, reason) \
    { value, GW_OPENAI("    upstream_url = \"" value "\";\n"), 4, \
      "gateway.openai_ws.upstream_url", "\"" value "\"", reason }
    static const struct error_case cases[] = {
        URL_CASE("http://api.openai.com/v1/responses", "ws:// or wss://"),
        URL_CASE("https://api.openai.com/v1/responses", "ws:// or wss://"),
        URL_CASE("wss//api.openai.com/v1/responses", "ws:// or wss://"),
        URL_CASE("ws:///v1/responses", "host is missing"),
        URL_CASE("ws://:8080/v1/responses", "host is missing"),
        URL_CASE("ws://relay.test:0/v1", "from 1 to 65535"),
        URL_CASE("ws://relay.test:70000/v1", "from 1 to 65535"),
        URL_CASE("ws://relay.test:http/v1", "from 1 to 65535"),
        URL_CASE("ws://relay.test:/v1", "from 1 to 65535"),
        URL_CASE("ws://relay.test/v1#top", "fragment"),
        URL_CASE("ws://user:pw@relay.test/v1", "userinfo"),
        URL_CASE("ws://relay.test/a b", "without spaces"),
    };
#undef URL_CASE

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, accepts_http_proxy)
{
    struct wr_conf conf;

    load_ok("proxy", GW_WS("    upstream_proxy = \"http://127.0.0.1:3128\";\n"), &conf);
    cr_expect_str_eq(conf.upstream_proxy, "http://127.0.0.1:3128");
    cr_expect_str_eq(conf.proxy.host, "127.0.0.1");
    cr_expect_eq(conf.proxy.port, 3128);
    wr_conf_free(&conf);

    load_ok("proxy with slash", GW_WS("    upstream_proxy = \"http://[::1]:8888/\";\n"), &conf);
    cr_expect_str_eq(conf.proxy.host, "::1");
    cr_expect_eq(conf.proxy.port, 8888);
    wr_conf_free(&conf);
}

Test(conf, rejects_bad_proxy)
{
#define PROXY_CASE(value, reason) \
    { value, GW_WS("    upstream_proxy = \"" value "\";\n"), 5, \
      "gateway.openai_ws.upstream_proxy", "\"" value "\"", reason }
    static const struct error_case cases[] = {
        PROXY_CASE("http://proxy.test", "port is missing"),
        PROXY_CASE("https://proxy.test:3128", "http://"),
        PROXY_CASE("socks5://proxy.test:1080", "http://"),
        PROXY_CASE("proxy.test:3128", "http://"),
        PROXY_CASE("http://proxy.test:3128/path", "path"),
        PROXY_CASE("http://user:pw@proxy.test:3128", "userinfo"),
        PROXY_CASE("http://proxy.test:99999", "from 1 to 65535"),
    };
#undef PROXY_CASE

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, rejects_bad_log_level_and_env)
{
    static const struct error_case cases[] = {
        { "log level", GW("  log_level = \"verbose\";\n"), 3, "gateway.log_level",
          "\"verbose\"", "one of error, warn, info, debug" },
        { "log level case", GW("  log_level = \"INFO\";\n"), 3, "gateway.log_level",
          "\"INFO\"", "one of error, warn, info, debug" },
        { "env with space", GW_WS("    upstream_api_key_env = \"MY KEY\";\n"), 5,
          "gateway.openai_ws.upstream_api_key_env", "\"MY KEY\"", "environment variable name" },
        { "env with digit", GW_WS("    upstream_api_key_env = \"1KEY\";\n"), 5,
          "gateway.openai_ws.upstream_api_key_env", "\"1KEY\"", "environment variable name" },
    };
    struct wr_conf conf;
    size_t i;

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));

    for (i = 0; i < 4; i++) {
        static const char *const names[] = { "error", "warn", "info", "debug" };
        char text[512];

        snprintf(text, sizeof(text), GW("  log_level = \"%s\";\n"), names[i]);
        load_ok(names[i], text, &conf);
        cr_expect_eq(conf.log_level, (enum wr_log_level)i, "%s", names[i]);
        cr_expect_str_eq(wr_conf_log_level_name(conf.log_level), names[i]);
        wr_conf_free(&conf);
    }
}

/* Files: TLS pair, CA file, relative paths. */

Test(conf, rejects_only_one_tls_file)
{
    char cert[PATH_MAX];
    char text_cert[PATH_MAX + 512];
    char text_key[PATH_MAX + 512];
    struct error_case cases[2];

    write_file("cert.pem", "certificate\n", cert, sizeof(cert));
    snprintf(text_cert, sizeof(text_cert), GW("  tls: {\n    cert_file = \"cert.pem\";\n  };\n"));
    snprintf(text_key, sizeof(text_key), GW("  tls: {\n    key_file = \"cert.pem\";\n  };\n"));
    cases[0] = (struct error_case){ "only cert", text_cert, 3, "gateway.tls.key_file",
                                    "invalid value \"\"", "must be set when cert_file is set" };
    cases[1] = (struct error_case){ "only key", text_key, 3, "gateway.tls.cert_file",
                                    "invalid value \"\"", "must be set when key_file is set" };
    check_error_cases(cases, 2);
}

Test(conf, rejects_unreadable_cert)
{
    char pem[PATH_MAX];
    char sub[PATH_MAX + 8];
    static const struct error_case cases[] = {
        { "missing cert", GW("  tls: {\n    cert_file = \"absent.pem\";\n    key_file = "
                             "\"key.pem\";\n  };\n"), 4, "gateway.tls.cert_file",
          "\"absent.pem\"", "No such file or directory" },
        { "missing key", GW("  tls: {\n    cert_file = \"key.pem\";\n    key_file = "
                            "\"absent.pem\";\n  };\n"), 5, "gateway.tls.key_file",
          "\"absent.pem\"", "must be a readable PEM file" },
        { "directory", GW("  tls: {\n    cert_file = \"certs\";\n    key_file = "
                          "\"key.pem\";\n  };\n"), 4, "gateway.tls.cert_file", "\"certs\"",
          "Is a directory" },
    };

    write_file("key.pem", "key\n", pem, sizeof(pem));
    snprintf(sub, sizeof(sub), "%s/certs", dir);
    cr_assert_eq(mkdir(sub, 0700), 0, "mkdir %s failed", sub);
    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, rejects_mode_000_cert)
{
    char pem[PATH_MAX];
    static const struct error_case cases[] = {
        { "mode 000", GW("  tls: {\n    cert_file = \"locked.pem\";\n    key_file = "
                         "\"locked.pem\";\n  };\n"), 4, "gateway.tls.cert_file",
          "\"locked.pem\"", "Permission denied" },
    };

    if (geteuid() == 0) {
        /* A skipped test does not run the suite's .fini. */
        remove_dir();
        cr_skip_test("root can read a file with mode 000");
    }
    write_file("locked.pem", "key\n", pem, sizeof(pem));
    cr_assert_eq(chmod(pem, 0), 0, "chmod %s failed", pem);
    check_error_cases(cases, 1);
}

Test(conf, checks_ca_only_for_wss)
{
    static const struct error_case cases[] = {
        { "wss with missing CA", GW_OPENAI("    upstream_url = \"wss://relay.test/v1\";\n"
                                           "    upstream_ca_file = \"absent-ca.pem\";\n"),
          5, "gateway.openai_ws.upstream_ca_file", "\"absent-ca.pem\"",
          "No such file or directory" },
        { "wss with empty CA", GW_OPENAI("    upstream_url = \"wss://relay.test/v1\";\n"
                                         "    upstream_ca_file = \"\";\n"),
          5, "gateway.openai_ws.upstream_ca_file", "\"\"", "readable PEM file" },
    };
    char real_dir[PATH_MAX];
    char expected[PATH_MAX + 32];
    struct wr_conf conf;

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));

    load_ok("ws with missing CA", GW_WS("    upstream_ca_file = \"absent-ca.pem\";\n"), &conf);
    cr_assert_not_null(realpath(dir, real_dir));
    snprintf(expected, sizeof(expected), "%s/absent-ca.pem", real_dir);
    cr_expect_str_eq(conf.upstream_ca_file, expected);
    wr_conf_free(&conf);
}

Test(conf, resolves_relative_paths)
{
    char real_dir[PATH_MAX];
    char sub[PATH_MAX + 8];
    char unused[PATH_MAX];
    char cwd[PATH_MAX];
    char expected[PATH_MAX + 64];
    char err[1024] = "";
    struct wr_conf conf;
    int rc;

    cr_assert_not_null(realpath(dir, real_dir));
    snprintf(sub, sizeof(sub), "%s/etc", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
    write_file("etc/cert.pem", "certificate\n", unused, sizeof(unused));
    write_file("etc/key.pem", "key\n", unused, sizeof(unused));
    write_file("etc/wsrelay.cfg",
               GW("  tls: { cert_file = \"cert.pem\"; key_file = \"./key.pem\"; };\n"
                  "  usage: { ledger_path = \"../ledger/usage.jsonl\"; };\n"),
               unused, sizeof(unused));

    /* A relative configuration path must resolve against its own directory, not the cwd. */
    cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
    cr_assert_eq(chdir(dir), 0);
    rc = wr_conf_load(&conf, "etc/wsrelay.cfg", err, sizeof(err));
    cr_assert_eq(chdir(cwd), 0);
    cr_assert_eq(rc, 0, "load failed: %s", err);

    cr_expect_str_eq(conf.path, "etc/wsrelay.cfg");
    snprintf(expected, sizeof(expected), "%s/etc", real_dir);
    cr_expect_str_eq(conf.dir, expected);
    snprintf(expected, sizeof(expected), "%s/etc/cert.pem", real_dir);
    cr_expect_str_eq(conf.tls_cert_file, expected);
    snprintf(expected, sizeof(expected), "%s/etc/./key.pem", real_dir);
    cr_expect_str_eq(conf.tls_key_file, expected);
    snprintf(expected, sizeof(expected), "%s/etc/../ledger/usage.jsonl", real_dir);
    cr_expect_str_eq(conf.ledger_path, expected);
    wr_conf_free(&conf);
}

Test(conf, keeps_absolute_ledger_path)
{
    struct wr_conf conf;

    /* The ledger directory is checked at start-up, not here. */
    load_ok("absolute", GW("  usage: { ledger_path = \"/nonexistent-dir/usage.jsonl\"; };\n"),
            &conf);
    cr_expect_str_eq(conf.ledger_path, "/nonexistent-dir/usage.jsonl");
    wr_conf_free(&conf);
}

Test(conf, rejects_empty_ledger_path)
{
    static const struct error_case cases[] = {
        { "empty ledger", GW("  usage: {\n    ledger_path = \"\";\n  };\n"), 4,
          "gateway.usage.ledger_path", "\"\"", "must be a file path" },
    };

    check_error_cases(cases, 1);
}

/* Clients. */

Test(conf, decodes_key_sha256)
{
    static const uint8_t expected[32] = {
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
        0xcd, 0xef,
    };
    struct wr_conf conf;

    load_ok("two clients", "gateway: {\n  auth: { clients = ( " CLIENT_ALICE ",\n"
            "    { name = \"bob smith\"; key_sha256 = \"" HASH_OTHER "\"; } ); };\n"
            "  openai_ws: { upstream_url = \"" MOCK_URL "\"; };\n};\n", &conf);
    cr_assert_eq(conf.num_clients, 2);
    cr_expect_str_eq(conf.clients[0].name, "alice");
    cr_expect_str_eq(conf.clients[1].name, "bob smith");
    cr_expect_eq(conf.clients[0].key_sha256[0], 0xae);
    cr_expect_eq(conf.clients[0].key_sha256[31], 0x39);
    cr_expect_eq(memcmp(conf.clients[1].key_sha256, expected, 32), 0);
    wr_conf_free(&conf);
    cr_expect_null(conf.clients);
    cr_expect_eq(conf.num_clients, 0);
}

/* One client with its name on line 3 and its hash on line 4, and a ws:// upstream. */
#define NAME_63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

#define CLIENT_TEXT(name, hash) \
    "gateway: {\n  auth: { clients = (\n    { name = \"" name "\";\n      key_sha256 = \"" \
    hash "\"; }\n  ); };\n  openai_ws: { upstream_url = \"" MOCK_URL "\"; };\n};\n"

Test(conf, rejects_bad_key_sha256)
{
#define HASH_CASE(label, hash) \
    { label, CLIENT_TEXT("alice", hash), 4, "gateway.auth.clients[0].key_sha256", \
      "\"" hash "\"", "exactly 64 lowercase hex digits" }
    static const struct error_case cases[] = {
        HASH_CASE("uppercase",
                  "AE1D82035FB11E15A2168348E53458A10434BC5AF359E99AA90EF1860A587239"),
        HASH_CASE("63 digits",
                  "ae1d82035fb11e15a2168348e53458a10434bc5af359e99aa90ef1860a58723"),
        HASH_CASE("65 digits",
                  "ae1d82035fb11e15a2168348e53458a10434bc5af359e99aa90ef1860a5872390"),
        HASH_CASE("non-hex",
                  "ge1d82035fb11e15a2168348e53458a10434bc5af359e99aa90ef1860a587239"),
        HASH_CASE("empty", ""),
    };
#undef HASH_CASE

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(conf, rejects_bad_client_names)
{
#define NAME_CASE(label, name, quoted) \
    { label, CLIENT_TEXT(name, HASH_DEMO), 3, "gateway.auth.clients[0].name", quoted, \
      "1 to 63 printable ASCII" }
    static const struct error_case cases[] = {
        NAME_CASE("empty", "", "\"\""),
        NAME_CASE("tab", "a\\tb", "\"a\\tb\""),
        NAME_CASE("non-ASCII", "caf\\xc3\\xa9", "\"caf\\xc3\\xa9\""),
    };
#undef NAME_CASE
    static const struct error_case too_long[] = {
        { "64 bytes", CLIENT_TEXT(NAME_63 "b", HASH_DEMO), 3, "gateway.auth.clients[0].name",
          "\"" NAME_63 "b\"", "at most 63 bytes" },
    };
    struct wr_conf conf;

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
    check_error_cases(too_long, 1);

    load_ok("63 bytes", CLIENT_TEXT(NAME_63, HASH_DEMO), &conf);
    cr_expect_eq(strlen(conf.clients[0].name), 63);
    wr_conf_free(&conf);
}

Test(conf, rejects_duplicate_clients)
{
    static const struct error_case cases[] = {
        { "same name", "gateway: {\n  auth: { clients = (\n    " CLIENT_ALICE ",\n"
          "    { name = \"alice\"; key_sha256 = \"" HASH_OTHER "\"; }\n  ); };\n};\n",
          4, "gateway.auth.clients[1].name", "\"alice\"",
          "already used by gateway.auth.clients[0]" },
        { "same hash", "gateway: {\n  auth: { clients = (\n    " CLIENT_ALICE ",\n"
          "    { name = \"bob\"; key_sha256 = \"" HASH_DEMO "\"; }\n  ); };\n};\n",
          4, "gateway.auth.clients[1].key_sha256", "\"" HASH_DEMO "\"",
          "same key as gateway.auth.clients[0]" },
    };

    check_error_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Error buffer handling. */

Test(conf, truncates_long_error_message)
{
    struct wr_conf conf;
    char err[16];
    int rc;

    memset(err, 'x', sizeof(err));
    rc = load_text(GW("  workers = 5000;\n"), &conf, err, sizeof(err));
    cr_assert_eq(rc, WR_ECONF);
    cr_expect_eq(strlen(err), sizeof(err) - 1);

    rc = load_text(GW("  workers = 5000;\n"), &conf, NULL, 0);
    cr_expect_eq(rc, WR_ECONF);
}

/* Printing. */

Test(conf, prints_mock_sample_redacted)
{
    struct wr_conf conf;
    char path[PATH_MAX];
    char err[1024] = "";
    char *text;
    int rc;

    source_path("conf/wsrelay-mock.cfg", path, sizeof(path));
    rc = wr_conf_load(&conf, path, err, sizeof(err));
    cr_assert_eq(rc, 0, "loading %s failed: %s", path, err);
    text = print_conf(&conf);

    cr_expect_not_null(strstr(text, "gateway.auth.clients[0].name = \"demo\"\n"), "%s", text);
    cr_expect_not_null(strstr(text, "gateway.auth.clients[0].key_sha256 = <redacted>\n"), "%s",
                       text);
    cr_expect_null(strstr(text, HASH_DEMO), "the key hash was printed: %s", text);
    cr_expect_null(strstr(text, "ae1d8203"), "part of the key hash was printed: %s", text);
    cr_expect_not_null(strstr(text, "gateway.openai_ws.upstream_url = \"" MOCK_URL "\"\n"), "%s",
                       text);
    cr_expect_not_null(strstr(text, "gateway.openai_ws.upstream_api_key_env = \"\"\n"), "%s", text);
    cr_expect_not_null(strstr(text, "gateway.openai_ws.dial_timeout_seconds = 10\n"), "%s", text);
    cr_expect_not_null(strstr(text, "\nupstream_api_key_env is empty: no Authorization is sent "
                              "upstream\n"), "%s", text);
    free(text);
    wr_conf_free(&conf);
}

Test(conf, prints_keys_in_sample_order)
{
    static const char *const keys[] = {
        "gateway.listen = ", "gateway.workers = ", "gateway.max_connections = ",
        "gateway.handshake_timeout_seconds = ", "gateway.log_level = ",
        "gateway.tls.cert_file = ", "gateway.tls.key_file = ",
        "gateway.auth.clients[0].name = ", "gateway.auth.clients[0].key_sha256 = ",
        "gateway.auth.clients[1].name = ", "gateway.auth.clients[1].key_sha256 = ",
        "gateway.openai_ws.upstream_url = ", "gateway.openai_ws.upstream_api_key_env = ",
        "gateway.openai_ws.upstream_ca_file = ", "gateway.openai_ws.upstream_proxy = ",
        "gateway.openai_ws.dial_timeout_seconds = ",
        "gateway.openai_ws.client_first_message_timeout_seconds = ",
        "gateway.openai_ws.write_timeout_seconds = ",
        "gateway.openai_ws.client_read_limit_bytes = ",
        "gateway.openai_ws.upstream_read_limit_bytes = ",
        "gateway.openai_ws.passthrough_downstream_ping_interval_seconds = ",
        "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds = ",
        "gateway.openai_ws.passthrough_downstream_event_keepalive_seconds = ",
        "gateway.openai_ws.upstream_drain_timeout_seconds = ",
        "gateway.usage.ledger_path = ", "upstream_api_key_env ",
    };
    struct wr_conf conf;
    const char *previous;
    char *text;
    size_t i;

    load_ok("two clients", "gateway: {\n  auth: { clients = ( " CLIENT_ALICE ",\n"
            "    { name = \"bob\"; key_sha256 = \"" HASH_OTHER "\"; } ); };\n"
            "  openai_ws: { upstream_url = \"" MOCK_URL "\"; };\n};\n", &conf);
    text = print_conf(&conf);
    cr_expect_eq(strncmp(text, keys[0], strlen(keys[0])), 0, "%s is not first in:\n%s", keys[0],
                 text);
    previous = text;
    for (i = 1; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char line_start[128];
        const char *at;

        snprintf(line_start, sizeof(line_start), "\n%s", keys[i]);
        at = strstr(previous, line_start);
        cr_expect_not_null(at, "%s is missing or out of order in:\n%s", keys[i], text);
        if (at != NULL) {
            previous = at + 1;
        }
    }
    cr_expect_null(strstr(text, HASH_OTHER), "the key hash was printed: %s", text);
    free(text);
    wr_conf_free(&conf);
}

Test(conf, prints_decimal_seconds)
{
    struct wr_conf conf;
    char *text;

    load_ok("decimals", GW_WS("    passthrough_downstream_ping_interval_seconds = 0.5;\n"
                              "    passthrough_downstream_ping_timeout_seconds = 0.25;\n"
                              "    dial_timeout_seconds = 1.001;\n"
                              "    write_timeout_seconds = 20.0;\n"), &conf);
    cr_expect_eq(conf.ping_interval_ms, 500);
    cr_expect_eq(conf.dial_timeout_ms, 1001);
    text = print_conf(&conf);
    cr_expect_not_null(strstr(text, "ping_interval_seconds = 0.5\n"), "%s", text);
    cr_expect_not_null(strstr(text, "ping_timeout_seconds = 0.25\n"), "%s", text);
    cr_expect_not_null(strstr(text, "dial_timeout_seconds = 1.001\n"), "%s", text);
    cr_expect_not_null(strstr(text, "write_timeout_seconds = 20\n"), "%s", text);
    cr_expect_null(strstr(text, "20.000"), "%s", text);
    free(text);
    wr_conf_free(&conf);
}

Test(conf, prints_whether_env_is_set)
{
    const char *name = "WR_CONF_TEST_UPSTREAM_KEY";
    const char *secret = "sk-conf-test-never-printed";
    struct wr_conf conf;
    char *text;

    load_ok("env", GW_WS("    upstream_api_key_env = \"WR_CONF_TEST_UPSTREAM_KEY\";\n"), &conf);

    cr_assert_eq(setenv(name, secret, 1), 0);
    text = print_conf(&conf);
    cr_expect_not_null(strstr(text, "\nupstream_api_key_env WR_CONF_TEST_UPSTREAM_KEY is set\n"),
                       "%s", text);
    cr_expect_null(strstr(text, secret), "the variable's value was printed: %s", text);
    free(text);

    cr_assert_eq(unsetenv(name), 0);
    text = print_conf(&conf);
    cr_expect_not_null(strstr(text,
                              "\nupstream_api_key_env WR_CONF_TEST_UPSTREAM_KEY is not set\n"),
                       "%s", text);
    free(text);
    wr_conf_free(&conf);
}

Test(conf, prints_escaped_strings)
{
    struct wr_conf conf;
    char *text;

    load_ok("quote in name", CLIENT_TEXT("say \\\"hi\\\"", HASH_DEMO), &conf);
    text = print_conf(&conf);
    cr_expect_not_null(strstr(text, "gateway.auth.clients[0].name = \"say \\\"hi\\\"\"\n"), "%s",
                       text);
    free(text);
    wr_conf_free(&conf);
}
