/* SPDX-License-Identifier: MIT */
/*
 * TLS on a relay leg through wolfSSL, with no socket call inside wolfSSL.
 * Ciphertext from a ring receive is lent to the connection while one
 * completion is handled. Ciphertext that wolfSSL writes collects in a buffer
 * that the caller sends with the ring.
 */
#ifndef WR_TLS_TLS_H
#define WR_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

/* Ciphertext produced past this many unsent bytes waits: the caller stops encrypting. */
#define WR_TLS_OUT_HIGH (64 * 1024)

/* wolfSSL types, kept opaque so that callers need not include wolfSSL. */
struct WOLFSSL_CTX;
struct WOLFSSL;
struct WOLFSSL_SESSION;

/* Per-worker TLS state: contexts, the last upstream session and handshake counts. */
struct wr_tls_ctx {
    struct WOLFSSL_CTX *client;       /* upstream context, NULL for a ws:// upstream */
    struct WOLFSSL_CTX *server;       /* downstream context, NULL without gateway.tls */
    struct WOLFSSL_SESSION *session;  /* last upstream session, offered for resumption */
    uint64_t full_handshakes;         /* upstream handshakes that did not resume */
    uint64_t resumed_handshakes;
    uint64_t downstream_handshakes;
};

/*
 * One TLS connection and its ciphertext buffers. wolfSSL appends to fill. A
 * send takes the whole fill buffer as sending, which stays untouched until
 * the kernel has taken every byte, so the two buffers are swapped, not copied.
 */
struct wr_tls {
    struct WOLFSSL *ssl;
    struct wr_tls_ctx *ctx;
    const uint8_t *in;       /* ciphertext lent for the current completion */
    size_t in_len;
    uint8_t *fill;           /* ciphertext produced and not yet handed to a send */
    size_t fill_len;
    size_t fill_cap;
    uint8_t *sending;        /* ciphertext of the send in flight: sending[sent, sending_len) */
    size_t sent;
    size_t sending_len;
    size_t sending_cap;
    bool fill_business;      /* fill contains data-frame bytes relayed from the other leg */
    bool sending_business;
    bool handshake_done;
    bool client;
    bool failed;             /* a callback could not allocate: the connection is lost */
};

/* Results of wr_tls_handshake and wr_tls_read besides a byte count. */
#define WR_TLS_CLOSED 0     /* the peer sent close_notify */

/*
 * Initialises the wolfSSL library once per process. Call before any worker
 * starts. Returns 0 or a negative code.
 */
int wr_tls_global_init(void);

/*
 * Creates the contexts that conf needs: a client context when the upstream
 * is wss://, a server context when gateway.tls is set. Returns 0, or a
 * negative code with a message in err.
 */
int wr_tls_ctx_init(struct wr_tls_ctx *ctx, const struct wr_conf *conf, char *err,
                    size_t err_len);
void wr_tls_ctx_free(struct wr_tls_ctx *ctx);

/*
 * Creates a client connection to host (SNI and certificate name check),
 * offering the worker's last session. Returns NULL when out of memory.
 */
struct wr_tls *wr_tls_new_client(struct wr_tls_ctx *ctx, const char *host);

/* Creates a server connection. Returns NULL when out of memory. */
struct wr_tls *wr_tls_new_server(struct wr_tls_ctx *ctx);

void wr_tls_free(struct wr_tls *tls);

/*
 * Lends len bytes of ciphertext to the following wr_tls_handshake and
 * wr_tls_read calls. Every byte has been taken once either returns WR_AGAIN;
 * the caller keeps calling until then or drops the connection.
 */
void wr_tls_feed(struct wr_tls *tls, const uint8_t *data, size_t len);

/*
 * Advances the handshake with the lent input. Returns 0 once it is complete,
 * WR_AGAIN while it needs more input, or a negative wolfSSL error code (see
 * wr_tls_describe). The handshake's own output collects in tls->fill.
 */
int wr_tls_handshake(struct wr_tls *tls);

/*
 * Decrypts into buf. Returns the byte count, WR_AGAIN when the lent input is
 * used up, WR_TLS_CLOSED after close_notify, or a negative wolfSSL error.
 */
int wr_tls_read(struct wr_tls *tls, uint8_t *buf, size_t cap);

/* Encrypts len bytes into tls->fill. Returns len or a negative wolfSSL error. */
int wr_tls_write(struct wr_tls *tls, const uint8_t *data, size_t len);

/*
 * Moves the filled ciphertext to the sending side when nothing is being sent.
 * Returns the bytes left to send, 0 when there is nothing to send.
 */
size_t wr_tls_take(struct wr_tls *tls);

/* Marks n bytes of the send in flight as sent. */
void wr_tls_sent(struct wr_tls *tls, size_t n);

/* Returns true when no ciphertext waits to be sent or is being sent. */
static inline bool wr_tls_idle(const struct wr_tls *tls)
{
    return tls->fill_len == 0 && tls->sent == tls->sending_len;
}

/*
 * Keeps the connection's session as the worker's next resumption offer. Call
 * once the peer has sent application data, because a TLS 1.3 server sends its
 * ticket after the handshake.
 */
void wr_tls_save_session(struct wr_tls *tls);

/*
 * Writes why a handshake failed into buf: the certificate problem in plain
 * words (expired, untrusted issuer, host name mismatch, not yet valid),
 * a received alert, or wolfSSL's reason text, with wolfSSL's error code.
 */
void wr_tls_describe(const struct wr_tls *tls, int code, char *buf, size_t len);

/*
 * Returns the cipher suite list, in wolfSSL's syntax, that wsrelay offers:
 * ChaCha20-Poly1305 first because this wolfSSL build has no AES-NI.
 */
const char *wr_tls_cipher_list(void);

#endif
