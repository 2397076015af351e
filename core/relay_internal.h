/* SPDX-License-Identifier: MIT */
/* Functions shared by the relay's files: lifecycle, queues, handshake, frames. */
#ifndef WR_CORE_RELAY_INTERNAL_H
#define WR_CORE_RELAY_INTERNAL_H

#include "core/relay.h"
#include "proto/http.h"
#include "ring/worker.h"

/* The leg a frame came from. */
enum wr_side {
    WR_FROM_CLIENT,
    WR_FROM_UPSTREAM,
};

/* The way a client connection ended, for traces and close codes. */
struct wr_client_end {
    const char *stage;   /* trace stage */
    bool graceful;
    unsigned close_code; /* Close to send, 0 for none */
    const char *reason;
    int err;             /* negative code for err=, 0 for none */
};

static inline const struct wr_conf *relay_conf(const struct wr_relay *r)
{
    return r->worker->server->conf;
}

/* timers.c */
uint64_t relay_earliest(uint64_t a, uint64_t b);
uint64_t relay_latest(uint64_t a, uint64_t b);
uint64_t relay_recv_deadline(const struct wr_relay *r, const struct wr_leg *leg);
uint64_t relay_send_deadline(const struct wr_relay *r, const struct wr_leg *leg);
void relay_link_timer(struct wr_relay *r, struct io_uring_sqe *sqe, struct __kernel_timespec *ts,
                      uint64_t deadline);
void relay_check_timers(struct wr_relay *r);
void relay_on_link_timeout(struct wr_relay *r, int res);

/* legs.c */
bool relay_leg_writable(const struct wr_leg *leg);
void relay_queue_free_all(struct wr_worker *w, struct wr_leg *leg);
bool relay_queue_consume(struct wr_worker *w, struct wr_leg *leg, size_t n);

/* ending.c */
void relay_down_close_soon(struct wr_relay *r);

/* relay.c, legs.c, ending.c, timers.c */
void relay_trace(struct wr_relay *r, enum wr_log_level level, const char *stage,
                 const char *direction, int graceful, unsigned code, int err);
void relay_arm_recv(struct wr_relay *r, struct wr_leg *leg);
void relay_retime(struct wr_relay *r);
void relay_flush(struct wr_relay *r, struct wr_leg *leg);
void relay_queue_copy(struct wr_relay *r, struct wr_leg *leg, const void *data, size_t len,
                      bool business);
void relay_queue_slice(struct wr_relay *r, struct wr_leg *leg, uint8_t *ptr, size_t len, int bid);
void relay_queue_control(struct wr_relay *r, struct wr_leg *leg, uint8_t opcode,
                         const uint8_t *payload, size_t len);
void relay_queue_close(struct wr_relay *r, struct wr_leg *leg, unsigned code, const char *reason);
void relay_leg_frame_boundary(struct wr_relay *r, struct wr_leg *leg);
void relay_shutdown_leg(struct wr_relay *r, struct wr_leg *leg);
void relay_client_gone(struct wr_relay *r, const struct wr_client_end *end);
void relay_upstream_lost(struct wr_relay *r, int err, unsigned upstream_close_code);
void relay_upstream_closed(struct wr_relay *r, unsigned code, const uint8_t *reason,
                           size_t reason_len);
void relay_close_upstream(struct wr_relay *r, unsigned code, const char *reason);
void relay_maybe_finish(struct wr_relay *r);

/* handshake.c */
size_t handshake_room(char **buf, size_t *cap, size_t len);
void handshake_on_request(struct wr_relay *r, int res);
void handshake_reply_error(struct wr_relay *r, int status, const char *extra_headers,
                           const char *message, const char *type, const char *code);
void handshake_on_connect(struct wr_relay *r, int res);
void handshake_on_upstream_recv(struct wr_relay *r, int res);
void handshake_dial_failed(struct wr_relay *r, int status, int err, const char *why);
/* TLS legs: one handshake step, one read of upgrade plaintext, and a failed handshake. */
int handshake_tls_step(struct wr_relay *r, struct wr_leg *leg);
int handshake_tls_plaintext(struct wr_relay *r, struct wr_leg *leg);
void handshake_tls_failed(struct wr_relay *r, struct wr_leg *leg, int code);

/* frames.c */
void frames_scan_release(struct wr_worker *w, struct wr_scan *scan);
int frames_process(struct wr_relay *r, enum wr_side from, uint8_t *data, size_t len, int bid);
void turns_on_upstream_message(struct wr_relay *r, struct wr_scan *scan);
void turns_open(struct wr_relay *r);
void turns_settle_all(struct wr_relay *r, const char *reason);
void turns_free(struct wr_relay *r);

#endif
