/* SPDX-License-Identifier: MIT */
/* wolfSSL on memory buffers: handshakes and records cut at every byte, resumption, failures. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls/tls.h"

static char cert_dir[] = "/tmp/wsrelay-tls-test-XXXXXX";
static struct wr_conf conf;
static struct wr_tls_ctx ctx;

static void run_or_fail(const char *command)
{
    cr_assert_eq(system(command), 0, "command failed: %s", command);
}

/* Makes a CA and leaves for localhost and for other.invalid with openssl. */
static void make_certificates(void)
{
    char command[2048];

    cr_assert_not_null(mkdtemp(cert_dir));
    snprintf(command, sizeof(command),
             "cd %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
             "-out ca.pem -days 2 -subj /CN=unit-ca -addext basicConstraints=critical,CA:TRUE "
             "2>/dev/null && "
             "for name in localhost other.invalid; do "
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout $name.key -out $name.csr -subj /CN=$name 2>/dev/null && "
             "printf 'subjectAltName=DNS:%%s\\nbasicConstraints=CA:FALSE\\n' $name > $name.ext && "
             "openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile $name.ext -out $name.pem 2>/dev/null || exit 1; done",
             cert_dir);
    run_or_fail(command);
}

/* Builds contexts whose server presents the certificate of name. */
static void setup_contexts(const char *name)
{
    char err[512];

    wr_conf_defaults(&conf);
    conf.upstream_tls = true;
    snprintf(conf.upstream_ca_file, sizeof(conf.upstream_ca_file), "%s/ca.pem", cert_dir);
    snprintf(conf.tls_cert_file, sizeof(conf.tls_cert_file), "%s/%s.pem", cert_dir, name);
    snprintf(conf.tls_key_file, sizeof(conf.tls_key_file), "%s/%s.key", cert_dir, name);
    cr_assert_eq(wr_tls_ctx_init(&ctx, &conf, err, sizeof(err)), 0, "%s", err);
}

static void setup(void)
{
    cr_assert_eq(wr_tls_global_init(), 0);
    make_certificates();
    setup_contexts("localhost");
}

static void teardown(void)
{
    char command[512];

    wr_tls_ctx_free(&ctx);
    snprintf(command, sizeof(command), "rm -rf %s", cert_dir);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", cert_dir);
    }
}

/* Plaintext collected on the receiving side. */
struct sink {
    uint8_t data[65536];
    size_t len;
    int error;
};

/*
 * Hands everything from has produced to to, step bytes per call, running to's
 * handshake until it completes and then reading. Returns the bytes moved.
 */
static size_t pump(struct wr_tls *from, struct wr_tls *to, size_t step, struct sink *sink)
{
    size_t n = wr_tls_take(from), moved = n;
    const uint8_t *p = from->sending + from->sent;

    while (n > 0) {
        size_t piece = n < step ? n : step;

        wr_tls_feed(to, p, piece);
        for (;;) {
            int ret;

            if (!to->handshake_done) {
                ret = wr_tls_handshake(to);
                if (ret == 0) {
                    continue;
                }
            } else {
                ret = wr_tls_read(to, sink->data + sink->len, sizeof(sink->data) - sink->len);
                if (ret > 0) {
                    sink->len += (size_t)ret;
                    continue;
                }
            }
            if (ret != WR_AGAIN) {
                sink->error = ret;
                return moved;
            }
            break;
        }
        cr_assert_eq(to->in_len, 0, "input left after WR_AGAIN");
        p += piece;
        n -= piece;
    }
    wr_tls_sent(from, moved);
    return moved;
}

/* Runs a client-server handshake, step bytes per delivery. */
static void handshake(struct wr_tls *client, struct wr_tls *server, size_t step,
                      struct sink *at_client, struct sink *at_server)
{
    cr_assert_eq(wr_tls_handshake(client), WR_AGAIN);
    for (int round = 0; round < 20 && !(client->handshake_done && server->handshake_done); round++) {
        pump(client, server, step, at_server);
        cr_assert_eq(at_server->error, 0, "server error %d", at_server->error);
        pump(server, client, step, at_client);
        if (at_client->error != 0) {
            return;
        }
    }
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 60);

Test(tls, handshake_and_records_split_at_every_byte)
{
    struct wr_tls *client = wr_tls_new_client(&ctx, "localhost");
    struct wr_tls *server = wr_tls_new_server(&ctx);
    struct sink at_client = {0}, at_server = {0};
    uint8_t message[40000];

    cr_assert_not_null(client);
    cr_assert_not_null(server);
    handshake(client, server, 1, &at_client, &at_server);
    cr_assert(client->handshake_done);
    cr_assert(server->handshake_done);
    cr_assert_eq(at_client.error, 0);

    for (size_t i = 0; i < sizeof(message); i++) {
        message[i] = (uint8_t)(i * 7 + 3);
    }
    cr_assert_eq(wr_tls_write(client, message, 16384), 16384);
    cr_assert_eq(wr_tls_write(client, message + 16384, sizeof(message) - 16384),
                 (int)(sizeof(message) - 16384));
    pump(client, server, 1, &at_server);
    pump(server, client, 1, &at_client); /* a TLS 1.3 server's session ticket */
    cr_assert_eq(at_server.error, 0);
    cr_assert_eq(at_server.len, sizeof(message));
    cr_assert_eq(memcmp(at_server.data, message, sizeof(message)), 0);
    cr_assert(wr_tls_idle(client));
    wr_tls_free(client);
    wr_tls_free(server);
}

Test(tls, records_split_at_odd_sizes)
{
    static const size_t steps[] = {2, 5, 13, 100, 1499, 4096, 20000};
    uint8_t message[30000];

    for (size_t i = 0; i < sizeof(message); i++) {
        message[i] = (uint8_t)(i ^ (i >> 8));
    }
    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        struct wr_tls *client = wr_tls_new_client(&ctx, "localhost");
        struct wr_tls *server = wr_tls_new_server(&ctx);
        struct sink at_client = {0}, at_server = {0};

        handshake(client, server, steps[s], &at_client, &at_server);
        cr_assert(client->handshake_done, "step %zu", steps[s]);
        cr_assert_eq(wr_tls_write(server, message, sizeof(message)), (int)sizeof(message));
        pump(server, client, steps[s], &at_client);
        cr_assert_eq(at_client.error, 0, "step %zu", steps[s]);
        cr_assert_eq(at_client.len, sizeof(message), "step %zu", steps[s]);
        cr_assert_eq(memcmp(at_client.data, message, sizeof(message)), 0, "step %zu", steps[s]);
        wr_tls_free(client);
        wr_tls_free(server);
    }
}

Test(tls, second_client_resumes_session)
{
    for (int i = 0; i < 2; i++) {
        struct wr_tls *client = wr_tls_new_client(&ctx, "localhost");
        struct wr_tls *server = wr_tls_new_server(&ctx);
        struct sink at_client = {0}, at_server = {0};
        static const uint8_t hello[] = "hello";

        handshake(client, server, 4096, &at_client, &at_server);
        cr_assert(client->handshake_done);
        /* The ticket follows the handshake; application data makes the client read it. */
        cr_assert_eq(wr_tls_write(server, hello, sizeof(hello)), (int)sizeof(hello));
        pump(server, client, 4096, &at_client);
        cr_assert_eq(at_client.len, sizeof(hello));
        wr_tls_save_session(client);
        wr_tls_free(client);
        wr_tls_free(server);
    }
    cr_assert_eq(ctx.full_handshakes, 1);
    cr_assert_eq(ctx.resumed_handshakes, 1);
    cr_assert_eq(ctx.downstream_handshakes, 2);
}

Test(tls, wrong_name_is_described)
{
    struct wr_tls *client, *server;
    struct sink at_client = {0}, at_server = {0};
    char why[300];

    wr_tls_ctx_free(&ctx);
    setup_contexts("other.invalid");
    client = wr_tls_new_client(&ctx, "localhost");
    server = wr_tls_new_server(&ctx);
    handshake(client, server, 4096, &at_client, &at_server);
    cr_assert_lt(at_client.error, 0);
    cr_assert_not(client->handshake_done);
    wr_tls_describe(client, at_client.error, why, sizeof(why));
    cr_assert_not_null(strstr(why, "does not match the host name"), "%s", why);
    wr_tls_free(client);
    wr_tls_free(server);
}

Test(tls, chacha_offered_first)
{
    cr_assert_eq(strncmp(wr_tls_cipher_list(), "TLS13-CHACHA20-POLY1305-SHA256:", 31), 0);
}
