/* SPDX-License-Identifier: MIT */
/* wolfSSL contexts and connections whose I/O callbacks work on memory buffers. */
#include "tls/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "core/wr.h"

/* A ciphertext buffer starts at this size, and one grown past it is freed once empty. */
#define KEEP_BYTES 16384

static const char alpn_http11[] = "http/1.1";

/*
 * cipher_bench (bench/cipher_bench.c) on Debian's wolfSSL 5.5.4, which is built
 * without AES-NI, seals 16 KiB records at about 365 MB/s with
 * ChaCha20-Poly1305 against 158 MB/s with AES-128-GCM, so ChaCha20 comes first.
 */
static const char cipher_list[] =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

const char *wr_tls_cipher_list(void)
{
    return cipher_list;
}

/*
 * Copies lent ciphertext to wolfSSL. An empty input returns WANT_READ, so
 * the caller arms a receive.
 */
static int io_recv(WOLFSSL *ssl, char *buf, int size, void *arg)
{
    struct wr_tls *tls = arg;
    size_t n;

    if (tls->in_len == 0) {
        return WOLFSSL_CBIO_ERR_WANT_READ;
    }
    n = tls->in_len < (size_t)size ? tls->in_len : (size_t)size;
    memcpy(buf, tls->in, n);
    tls->in += n;
    tls->in_len -= n;
    return (int)n;
}

/* Appends wolfSSL's ciphertext to the fill buffer, which grows to take all of it. */
static int io_send(WOLFSSL *ssl, char *buf, int size, void *arg)
{
    struct wr_tls *tls = arg;
    size_t need = tls->fill_len + (size_t)size;

    if (need > tls->fill_cap) {
        size_t cap = tls->fill_cap ? tls->fill_cap : KEEP_BYTES;
        uint8_t *grown;

        while (cap < need) {
            cap *= 2;
        }
        grown = realloc(tls->fill, cap);
        if (grown == NULL) {
            tls->failed = true;
            return WOLFSSL_CBIO_ERR_GENERAL;
        }
        tls->fill = grown;
        tls->fill_cap = cap;
    }
    memcpy(tls->fill + tls->fill_len, buf, (size_t)size);
    tls->fill_len += (size_t)size;
    return size;
}

int wr_tls_global_init(void)
{
    return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : WR_ENOMEM;
}

static int common_setup(WOLFSSL_CTX *ctx, const char *what, char *err, size_t err_len)
{
    if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
        snprintf(err, err_len, "%s TLS context: cannot require TLS 1.2 or later", what);
        return WR_ECONF;
    }
    if (wolfSSL_CTX_set_cipher_list(ctx, cipher_list) != WOLFSSL_SUCCESS) {
        snprintf(err, err_len, "%s TLS context: wolfSSL rejected the cipher list %s", what,
                 cipher_list);
        return WR_ECONF;
    }
    wolfSSL_CTX_SetIORecv(ctx, io_recv);
    wolfSSL_CTX_SetIOSend(ctx, io_send);
    return 0;
}

int wr_tls_ctx_init(struct wr_tls_ctx *ctx, const struct wr_conf *conf, char *err,
                    size_t err_len)
{
    int ret;

    memset(ctx, 0, sizeof(*ctx));
    if (conf->upstream_tls) {
        ctx->client = wolfSSL_CTX_new(wolfSSLv23_client_method());
        if (ctx->client == NULL) {
            snprintf(err, err_len, "cannot create the upstream TLS context");
            return WR_ENOMEM;
        }
        if ((ret = common_setup(ctx->client, "upstream", err, err_len)) < 0) {
            return ret;
        }
        ret = wolfSSL_CTX_load_verify_locations(ctx->client, conf->upstream_ca_file, NULL);
        if (ret != WOLFSSL_SUCCESS) {
            snprintf(err, err_len, "cannot load CA certificates from %s (upstream_ca_file): %s",
                     conf->upstream_ca_file, wolfSSL_ERR_reason_error_string(ret));
            return WR_ECONF;
        }
        wolfSSL_CTX_set_verify(ctx->client, WOLFSSL_VERIFY_PEER, NULL);
    }
    if (conf->tls_cert_file[0] != '\0') {
        ctx->server = wolfSSL_CTX_new(wolfSSLv23_server_method());
        if (ctx->server == NULL) {
            snprintf(err, err_len, "cannot create the downstream TLS context");
            return WR_ENOMEM;
        }
        if ((ret = common_setup(ctx->server, "downstream", err, err_len)) < 0) {
            return ret;
        }
        ret = wolfSSL_CTX_use_certificate_chain_file(ctx->server, conf->tls_cert_file);
        if (ret != WOLFSSL_SUCCESS) {
            snprintf(err, err_len,
                     "cannot load the certificate chain %s (gateway.tls.cert_file): %s",
                     conf->tls_cert_file, wolfSSL_ERR_reason_error_string(ret));
            return WR_ECONF;
        }
        ret = wolfSSL_CTX_use_PrivateKey_file(ctx->server, conf->tls_key_file,
                                              WOLFSSL_FILETYPE_PEM);
        if (ret != WOLFSSL_SUCCESS) {
            snprintf(err, err_len, "cannot load the private key %s (gateway.tls.key_file): %s",
                     conf->tls_key_file, wolfSSL_ERR_reason_error_string(ret));
            return WR_ECONF;
        }
        if (wolfSSL_CTX_check_private_key(ctx->server) != WOLFSSL_SUCCESS) {
            snprintf(err, err_len, "gateway.tls.key_file %s does not match the certificate in %s",
                     conf->tls_key_file, conf->tls_cert_file);
            return WR_ECONF;
        }
    }
    return 0;
}

void wr_tls_ctx_free(struct wr_tls_ctx *ctx)
{
    if (ctx->session != NULL) {
        wolfSSL_SESSION_free(ctx->session);
    }
    if (ctx->client != NULL) {
        wolfSSL_CTX_free(ctx->client);
    }
    if (ctx->server != NULL) {
        wolfSSL_CTX_free(ctx->server);
    }
    memset(ctx, 0, sizeof(*ctx));
}

static struct wr_tls *tls_new(struct wr_tls_ctx *ctx, WOLFSSL_CTX *wctx, bool client)
{
    struct wr_tls *tls = calloc(1, sizeof(*tls));

    if (tls == NULL) {
        return NULL;
    }
    tls->ssl = wolfSSL_new(wctx);
    if (tls->ssl == NULL) {
        free(tls);
        return NULL;
    }
    tls->ctx = ctx;
    tls->client = client;
    wolfSSL_SetIOReadCtx(tls->ssl, tls);
    wolfSSL_SetIOWriteCtx(tls->ssl, tls);
    wolfSSL_UseALPN(tls->ssl, (char *)alpn_http11, sizeof(alpn_http11) - 1,
                    WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
    return tls;
}

static bool is_ip_literal(const char *host)
{
    unsigned char addr[16];

    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

struct wr_tls *wr_tls_new_client(struct wr_tls_ctx *ctx, const char *host)
{
    struct wr_tls *tls = tls_new(ctx, ctx->client, true);
    int ok;

    if (tls == NULL) {
        return NULL;
    }
    if (is_ip_literal(host)) {
        /* SNI carries host names only, so an address is checked against the IP SANs. */
        ok = wolfSSL_X509_VERIFY_PARAM_set1_ip_asc(wolfSSL_get0_param(tls->ssl), host);
    } else {
        ok = wolfSSL_UseSNI(tls->ssl, WOLFSSL_SNI_HOST_NAME, host, (unsigned short)strlen(host)) ==
                 WOLFSSL_SUCCESS &&
             wolfSSL_check_domain_name(tls->ssl, host) == WOLFSSL_SUCCESS;
    }
    if (!ok) {
        wr_tls_free(tls);
        return NULL;
    }
    wolfSSL_UseSessionTicket(tls->ssl);
    if (ctx->session != NULL) {
        /* A session the server no longer accepts only costs a full handshake. */
        wolfSSL_set_session(tls->ssl, ctx->session);
    }
    return tls;
}

struct wr_tls *wr_tls_new_server(struct wr_tls_ctx *ctx)
{
    return tls_new(ctx, ctx->server, false);
}

void wr_tls_free(struct wr_tls *tls)
{
    if (tls == NULL) {
        return;
    }
    wolfSSL_free(tls->ssl);
    free(tls->fill);
    free(tls->sending);
    free(tls);
}

void wr_tls_feed(struct wr_tls *tls, const uint8_t *data, size_t len)
{
    tls->in = data;
    tls->in_len = len;
}

/* Returns WR_AGAIN for a wait on input, else wolfSSL's negative error code. */
static int last_error(struct wr_tls *tls, int ret)
{
    int err = wolfSSL_get_error(tls->ssl, ret);

    if (err == WOLFSSL_ERROR_WANT_READ && !tls->failed) {
        return WR_AGAIN;
    }
    if (tls->failed) {
        return SOCKET_ERROR_E;
    }
    return err < 0 ? err : FATAL_ERROR;
}

int wr_tls_handshake(struct wr_tls *tls)
{
    int ret = tls->client ? wolfSSL_connect(tls->ssl) : wolfSSL_accept(tls->ssl);

    if (ret != WOLFSSL_SUCCESS) {
        return last_error(tls, ret);
    }
    tls->handshake_done = true;
    if (!tls->client) {
        tls->ctx->downstream_handshakes++;
    } else if (wolfSSL_session_reused(tls->ssl)) {
        tls->ctx->resumed_handshakes++;
    } else {
        tls->ctx->full_handshakes++;
    }
    return 0;
}

int wr_tls_read(struct wr_tls *tls, uint8_t *buf, size_t cap)
{
    int ret = wolfSSL_read(tls->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);

    if (ret > 0) {
        return ret;
    }
    if (wolfSSL_get_error(tls->ssl, ret) == WOLFSSL_ERROR_ZERO_RETURN) {
        return WR_TLS_CLOSED;
    }
    return last_error(tls, ret);
}

int wr_tls_write(struct wr_tls *tls, const uint8_t *data, size_t len)
{
    int ret = wolfSSL_write(tls->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);

    if (ret > 0) {
        return ret;
    }
    return last_error(tls, ret);
}

size_t wr_tls_take(struct wr_tls *tls)
{
    uint8_t *swap;
    size_t cap;

    if (tls->sent < tls->sending_len) {
        return tls->sending_len - tls->sent;
    }
    if (tls->fill_len == 0) {
        return 0;
    }
    swap = tls->sending;
    cap = tls->sending_cap;
    tls->sending = tls->fill;
    tls->sending_cap = tls->fill_cap;
    tls->sending_len = tls->fill_len;
    tls->sending_business = tls->fill_business;
    tls->sent = 0;
    tls->fill = swap;
    tls->fill_cap = cap;
    tls->fill_len = 0;
    tls->fill_business = false;
    return tls->sending_len;
}

void wr_tls_sent(struct wr_tls *tls, size_t n)
{
    tls->sent += n;
    if (tls->sent < tls->sending_len) {
        return;
    }
    tls->sent = tls->sending_len = 0;
    if (tls->sending_cap > KEEP_BYTES) {
        free(tls->sending);
        tls->sending = NULL;
        tls->sending_cap = 0;
    }
    if (tls->fill_len == 0 && tls->fill_cap > KEEP_BYTES) {
        free(tls->fill);
        tls->fill = NULL;
        tls->fill_cap = 0;
    }
}

void wr_tls_save_session(struct wr_tls *tls)
{
    WOLFSSL_SESSION *session;

    /*
     * A session taken from a resumed TLS 1.3 connection made the next
     * resumption fail with an illegal_parameter alert from OpenSSL 3.0 (Node
     * 20) with wolfSSL 5.5.4, so only full handshakes replace the kept session.
     */
    if (wolfSSL_session_reused(tls->ssl)) {
        return;
    }
    session = wolfSSL_get1_session(tls->ssl);
    if (session == NULL) {
        return;
    }
    if (tls->ctx->session != NULL) {
        wolfSSL_SESSION_free(tls->ctx->session);
    }
    tls->ctx->session = session;
}

void wr_tls_describe(const struct wr_tls *tls, int code, char *buf, size_t len)
{
    char reason[WOLFSSL_MAX_ERROR_SZ];
    const char *what = NULL;

    snprintf(reason, sizeof(reason), "%s", wolfSSL_ERR_reason_error_string((unsigned long)code));
    switch (code) {
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
        what = "certificate issuer is not trusted";
        break;
    case ASN_AFTER_DATE_E:
        what = "certificate has expired";
        break;
    case ASN_BEFORE_DATE_E:
        what = "certificate is not yet valid";
        break;
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
        what = "certificate does not match the host name";
        break;
    case FATAL_ERROR: {
        WOLFSSL_ALERT_HISTORY history;

        if (wolfSSL_get_alert_history(tls->ssl, &history) == WOLFSSL_SUCCESS &&
            history.last_rx.code >= 0) {
            snprintf(buf, len, "peer sent the TLS alert %s (wolfSSL error %d)",
                     wolfSSL_alert_desc_string_long(history.last_rx.code), code);
            return;
        }
        break;
    }
    default:
        break;
    }
    if (what != NULL) {
        snprintf(buf, len, "%s (wolfSSL error %d: %s)", what, code, reason);
    } else {
        snprintf(buf, len, "wolfSSL error %d: %s", code, reason);
    }
}
