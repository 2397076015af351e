/* SPDX-License-Identifier: MIT */
/* A relay: one downstream client connection and its own upstream connection. */
#ifndef WR_CORE_RELAY_H
#define WR_CORE_RELAY_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "proto/scan.h"
#include "proto/ws_frame.h"
#include "ring/ud.h"

struct wr_worker;
struct wr_tls;

#define WR_RELAY_IOV_MAX 8
#define WR_RELAY_PAUSE_BYTES (256 * 1024)  /* stop reading a leg while its peer has this much unsent */
#define WR_RELAY_RESUME_BYTES (64 * 1024)
/*
 * Past this much unsent on a leg, relayed bytes are copied to the heap so a
 * slow peer does not hold the worker's shared receive buffers.
 */
#define WR_RELAY_COPY_BYTES (64 * 1024)
/*
 * First size of the head buffers. Codex's requests fit, and a small start
 * keeps thousands of simultaneous handshakes from touching 32 KiB each.
 */
#define WR_RELAY_HEAD_INITIAL 2048
#define WR_RELAY_COPY_MIN 4096 /* smallest data[] of a copied segment, so small copies share one */
#define WR_TIMER_SLACK_MS 50    /* link timeouts fire up to this much late, see relay_link_timer */
#define WR_RELAY_CLOSE_WAIT_MS 2000 /* wait for the client's Close after ours, then close TCP */

/* A run of bytes waiting to be sent on a leg. */
struct wr_seg {
    struct wr_seg *next;
    uint8_t *ptr;
    uint32_t len;
    int32_t bid;   /* provided buffer that contains ptr, or -1 when the bytes are in data[] */
    bool business; /* data-frame bytes relayed from the other leg */
    uint32_t cap;  /* bytes data[] can hold (copies only): later copies fill the rest */
    uint8_t data[];
};

/* Incoming frame state of one leg. */
struct wr_ws_in {
    uint8_t hdr[WR_WS_MAX_HEADER]; /* header bytes split across receives */
    uint8_t hdr_len;
    bool in_frame;
    struct wr_ws_header cur;
    uint64_t done;           /* payload bytes of cur consumed */
    uint8_t out_mask[4];     /* wsrelay's mask for the relayed copy of cur (client frames) */
    uint8_t ctrl[WR_WS_MAX_CONTROL_PAYLOAD];
    struct wr_ws_sequence seq;
    struct wr_scan *scan;    /* scanner of the current text message, NULL when not scanning */
    bool forwarding;         /* the current data frame is relayed to the other leg */
    bool text_message;       /* the open data message is text */
    bool broken;             /* a protocol error was seen: the rest of the stream is ignored */
};

enum wr_leg_state {
    WR_LEG_NONE = 0,
    WR_LEG_HANDSHAKE,  /* downstream: reading the request; upstream: connecting and upgrading */
    WR_LEG_OPEN,
    WR_LEG_CLOSING,    /* our Close is queued or sent; waiting for the peer's or for the send */
    WR_LEG_SHUTDOWN,   /* cancel and close submitted */
    WR_LEG_CLOSED,
};

struct wr_leg {
    int fd;                   /* direct descriptor (downstream) or file descriptor (upstream) */
    bool fixed;
    uint8_t state;            /* enum wr_leg_state */
    bool recv_armed;
    bool send_armed;
    bool recv_paused;         /* the other leg has too much unsent */
    bool waiting_buffer;      /* receive got -ENOBUFS; re-armed when buffers return */
    bool close_after_send;    /* close the socket once the queue is empty */
    bool out_frame_open;      /* a relayed frame is partly queued: control frames must wait */
    bool peer_closed;         /* the peer's Close frame arrived */
    bool recv_cancel_pending; /* the receive is being cancelled to re-arm it with a new timer */
    bool recv_multishot;      /* the pending receive is multishot: it stays armed across data */
    bool recv_bulk;           /* a receive filled its buffer: use single-shot, flow-controlled */
    uint64_t recv_deadline;   /* deadline linked to the pending receive, 0 for none */
    uint64_t send_deadline;   /* deadline linked to the pending send, 0 for none */
    bool send_cancel_pending;
    struct wr_seg *out_head;
    struct wr_seg *out_tail;
    struct wr_seg *ctrl_head; /* control frames waiting for a frame boundary */
    struct wr_seg *ctrl_tail;
    size_t out_bytes;
    size_t send_len;          /* bytes in the send in flight */
    uint64_t send_progress_ms; /* last time the leg's send made progress */
    struct msghdr msg;
    struct iovec iov[WR_RELAY_IOV_MAX];
    struct __kernel_timespec recv_ts;
    struct __kernel_timespec send_ts;
    struct wr_ws_in in;
    struct wr_tls *tls;       /* NULL for a plain TCP leg */
};

/* Steps of the upstream dial after the TCP connect. */
enum wr_up_phase {
    WR_UP_CONNECT = 0,  /* TCP connect to the upstream or the proxy */
    WR_UP_PROXY,        /* CONNECT sent, reading the proxy's reply */
    WR_UP_TLS,          /* TLS handshake */
    WR_UP_UPGRADE,      /* WebSocket upgrade request sent, reading the reply */
};

/* A turn: a response.create relayed upstream, until its terminal event. */
struct wr_turn {
    struct wr_turn *next;
    uint64_t start_ms;
    int64_t first_token_ms;   /* -1 until the first *.delta event */
    bool error_seen;          /* settled by an error event; absorbs one response.failed */
    char response_id[WR_SCAN_MAX_STRING + 1];
    char model[WR_SCAN_MAX_STRING + 1];
};

struct wr_relay {
    uint32_t slot;
    uint32_t gen;
    bool in_use;
    char id[24];              /* "<worker>-<sequence>" */
    struct wr_worker *worker;
    unsigned inflight;        /* submitted operations not yet completed, timers excluded */
    bool counted;             /* counted in server->active */
    bool client_gone;         /* graceful or not, no more business writes downstream */
    bool upstream_gone;
    bool wrote_downstream;    /* a business write has made progress */
    bool got_client_message;
    bool timers_unsupported;
    bool ping_outstanding;
    bool ping_ok_logged;
    bool completed_logged;
    int client_id;            /* index into conf->clients, -1 before authentication */
    unsigned next_addr;

    struct wr_leg down;
    struct wr_leg up;

    /* Handshake phase. */
    char *request;            /* downstream request head, grown up to 16 KiB as it arrives */
    size_t request_len;
    size_t request_cap;
    size_t request_head_len;
    char *response;           /* upstream request, then response head, grown up to 16 KiB */
    size_t response_len;
    size_t response_cap;
    char ws_key[32];
    char upstream_accept[32];
    char *upgrade;            /* upstream upgrade request, kept until the tunnel and TLS are up */
    size_t upgrade_len;
    uint8_t up_phase;         /* enum wr_up_phase */

    /* Deadlines, CLOCK_MONOTONIC milliseconds; 0 = none. */
    uint64_t handshake_deadline;
    uint64_t dial_deadline;
    uint64_t first_message_deadline;
    uint64_t drain_deadline;
    uint64_t close_deadline;
    uint64_t last_business_ms;
    uint64_t last_ping_ms;
    uint64_t last_event_keepalive_ms;
    uint8_t ping_payload[8];

    struct wr_turn *turns;    /* open turns, oldest first */
    struct wr_turn *turns_tail;
    unsigned open_turns;
    struct wr_turn *failed_absorber; /* error-settled turn whose response.failed is still due */
    char absorb_id[WR_SCAN_MAX_STRING + 1];
    bool absorb_pending;
    uint64_t start_ms;

    struct wr_relay *next_waiter; /* worker->buf_waiters list */
};

/* Takes a newly accepted downstream direct descriptor. */
void wr_relay_accept(struct wr_worker *w, int fd);

/* Handles one completion for relay r. */
void wr_relay_complete(struct wr_worker *w, struct wr_relay *r, enum wr_ring_op op, int res,
                       unsigned flags);

/* Re-arms a receive that failed with -ENOBUFS. */
void wr_relay_buffers_returned(struct wr_worker *w, struct wr_relay *r);

/* Starts the shutdown of r: idle relays close with 1001, turns in flight drain. */
void wr_relay_shutdown(struct wr_worker *w, struct wr_relay *r);

#endif
