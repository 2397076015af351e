/* SPDX-License-Identifier: MIT */
/* Prints the effective configuration, with client key hashes redacted. */
#include "conf/conf.h"

#include <stdlib.h>

#include "conf/conf_internal.h"

static void print_string(FILE *out, const char *key, const char *value)
{
    char tmp[5];
    size_t i;

    fprintf(out, "%s = \"", key);
    for (i = 0; value[i] != '\0'; i++) {
        fputs(conf_escape_char((unsigned char)value[i], tmp), out);
    }
    fputs("\"\n", out);
}

static void print_seconds(FILE *out, const char *key, uint32_t ms)
{
    char seconds[32];

    conf_format_seconds(ms, seconds, sizeof(seconds));
    fprintf(out, "%s = %s\n", key, seconds);
}

void wr_conf_print(const struct wr_conf *conf, FILE *out)
{
    const char *env = conf->upstream_api_key_env;
    unsigned i;

    print_string(out, "gateway.listen", conf->listen);
    fprintf(out, "gateway.workers = %u\n", conf->workers);
    fprintf(out, "gateway.max_connections = %u\n", conf->max_connections);
    print_seconds(out, "gateway.handshake_timeout_seconds", conf->handshake_timeout_ms);
    print_string(out, "gateway.log_level", wr_conf_log_level_name(conf->log_level));
    print_string(out, "gateway.tls.cert_file", conf->tls_cert_file);
    print_string(out, "gateway.tls.key_file", conf->tls_key_file);
    for (i = 0; i < conf->num_clients; i++) {
        char key[WR_CONF_KEY_LEN];

        snprintf(key, sizeof(key), "gateway.auth.clients[%u].name", i);
        print_string(out, key, conf->clients[i].name);
        fprintf(out, "gateway.auth.clients[%u].key_sha256 = <redacted>\n", i);
    }
    print_string(out, "gateway.openai_ws.upstream_url", conf->upstream_url);
    print_string(out, "gateway.openai_ws.upstream_api_key_env", env);
    print_string(out, "gateway.openai_ws.upstream_ca_file", conf->upstream_ca_file);
    print_string(out, "gateway.openai_ws.upstream_proxy", conf->upstream_proxy);
    print_seconds(out, "gateway.openai_ws.dial_timeout_seconds", conf->dial_timeout_ms);
    print_seconds(out, "gateway.openai_ws.client_first_message_timeout_seconds",
                  conf->client_first_message_timeout_ms);
    print_seconds(out, "gateway.openai_ws.write_timeout_seconds", conf->write_timeout_ms);
    fprintf(out, "gateway.openai_ws.client_read_limit_bytes = %llu\n",
            (unsigned long long)conf->client_read_limit_bytes);
    fprintf(out, "gateway.openai_ws.upstream_read_limit_bytes = %llu\n",
            (unsigned long long)conf->upstream_read_limit_bytes);
    print_seconds(out, "gateway.openai_ws.passthrough_downstream_ping_interval_seconds",
                  conf->ping_interval_ms);
    print_seconds(out, "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds",
                  conf->ping_timeout_ms);
    print_seconds(out, "gateway.openai_ws.passthrough_downstream_event_keepalive_seconds",
                  conf->event_keepalive_ms);
    print_seconds(out, "gateway.openai_ws.upstream_drain_timeout_seconds",
                  conf->upstream_drain_timeout_ms);
    print_string(out, "gateway.usage.ledger_path", conf->ledger_path);

    if (env[0] == '\0') {
        fputs("upstream_api_key_env is empty: no Authorization is sent upstream\n", out);
    } else {
        fprintf(out, "upstream_api_key_env %s is %s\n", env,
                getenv(env) != NULL ? "set" : "not set");
    }
}
