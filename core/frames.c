/* SPDX-License-Identifier: MIT */
/*
 * Frame relaying. Bytes are parsed as they arrive and relayed without waiting
 * for whole messages. A data frame's header is queued on the other leg as
 * soon as it is decoded, and its payload follows slice by slice, so opcode,
 * FIN and fragment boundaries stay as the sender made them. Client frames are
 * re-masked in place with a fresh key of wsrelay's, and upstream frames pass
 * through unchanged. Ping frames get their Pong on their own leg.
 */
#include "core/relay_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/usage.h"

static struct wr_leg *source_leg(struct wr_relay *r, enum wr_side from)
{
    return from == WR_FROM_CLIENT ? &r->down : &r->up;
}

static struct wr_leg *target_leg(struct wr_relay *r, enum wr_side from)
{
    return from == WR_FROM_CLIENT ? &r->up : &r->down;
}

static bool forwarding(const struct wr_relay *r, enum wr_side from)
{
    if (from == WR_FROM_CLIENT) {
        return !r->client_gone && !r->upstream_gone && r->up.state == WR_LEG_OPEN;
    }
    return !r->client_gone && r->down.state == WR_LEG_OPEN;
}

static int protocol_error(struct wr_relay *r, enum wr_side from, int code)
{
    if (from == WR_FROM_CLIENT) {
        struct wr_client_end end = {"client_protocol_error", false, 1002, "protocol error", code};

        r->down.in.broken = true;
        relay_client_gone(r, &end);
    } else {
        relay_upstream_lost(r, code, 1002);
    }
    return 1;
}

static int message_too_big(struct wr_relay *r, enum wr_side from)
{
    if (from == WR_FROM_CLIENT) {
        struct wr_client_end end = {"client_message_too_big", false, 1009, "message too big",
                                    WR_EWS_TOO_BIG};

        r->down.in.broken = true;
        relay_client_gone(r, &end);
    } else {
        relay_upstream_lost(r, WR_EWS_TOO_BIG, 1009);
    }
    return 1;
}

/* Kinds of upstream event for turn tracking, kept in the scanner's tag. */
enum event_kind {
    EVENT_OTHER = 0,
    EVENT_CREATED,  /* response.created or response.in_progress: carries the response id */
    EVENT_DELTA,    /* any *.delta: the turn's first token */
    EVENT_TERMINAL, /* settles the oldest open turn */
    EVENT_FAILED,   /* response.failed, terminal unless an error event already settled it */
    EVENT_ERROR,    /* error, terminal */
};

/*
 * Classifies an upstream event as soon as its type is read and narrows the
 * scan to what that kind needs, so a delta costs a few bytes of scanning.
 */
static void classify_upstream_event(struct wr_scan *scan)
{
    const char *type = scan->type;
    size_t len = strlen(type);

    if (len > 6 && memcmp(type + len - 6, ".delta", 6) == 0) {
        scan->tag = EVENT_DELTA;
        scan->want = 0;
    } else if (wr_scan_is_terminal(type)) {
        scan->tag = strcmp(type, "error") == 0             ? EVENT_ERROR
                    : strcmp(type, "response.failed") == 0 ? EVENT_FAILED
                                                           : EVENT_TERMINAL;
    } else if (strcmp(type, "response.created") == 0 || strcmp(type, "response.in_progress") == 0) {
        scan->tag = EVENT_CREATED;
        scan->want &= WR_SCAN_BIT(WR_SCAN_RESPONSE_ID) | WR_SCAN_BIT(WR_SCAN_RESPONSE_MODEL);
    } else {
        scan->tag = EVENT_OTHER;
        scan->want = 0;
    }
}

/*
 * Scanners exist only while a text message is open, so an idle relay keeps
 * none. Freed ones wait on a per-worker list, linked through their first bytes.
 */
static struct wr_scan *scan_acquire(struct wr_worker *w)
{
    void *scan = w->free_scans;

    if (scan != NULL) {
        memcpy(&w->free_scans, scan, sizeof(void *));
        return scan;
    }
    return malloc(sizeof(struct wr_scan));
}

void frames_scan_release(struct wr_worker *w, struct wr_scan *scan)
{
    if (scan == NULL) {
        return;
    }
    memcpy(scan, &w->free_scans, sizeof(void *));
    w->free_scans = scan;
}

static void scan_start(struct wr_relay *r, struct wr_ws_in *in, enum wr_side from)
{
    if (in->scan == NULL) {
        in->scan = scan_acquire(r->worker);
        if (in->scan == NULL) {
            return; /* usage of this message is lost, the relay goes on */
        }
    }
    wr_scan_init(in->scan, from == WR_FROM_CLIENT ? WR_SCAN_BIT(WR_SCAN_TYPE) : WR_SCAN_ALL);
    if (from == WR_FROM_UPSTREAM) {
        in->scan->on_type = classify_upstream_event;
    }
}

static int frame_start(struct wr_relay *r, enum wr_side from, uint8_t *hdr, size_t hdr_len,
                       int bid)
{
    const struct wr_conf *conf = relay_conf(r);
    struct wr_ws_in *in = &source_leg(r, from)->in;
    struct wr_leg *dst = target_leg(r, from);
    uint64_t limit = from == WR_FROM_CLIENT ? conf->client_read_limit_bytes
                                            : conf->upstream_read_limit_bytes;
    int ret;

    in->in_frame = true;
    in->done = 0;
    if (wr_ws_is_control(in->cur.opcode)) {
        return 0;
    }
    ret = wr_ws_sequence_check(&in->seq, &in->cur, limit);
    if (ret == WR_EWS_TOO_BIG) {
        return message_too_big(r, from);
    }
    if (ret < 0) {
        return protocol_error(r, from, ret);
    }
    if (from == WR_FROM_CLIENT) {
        r->got_client_message = true;
    }
    if (in->cur.opcode == WR_WS_OP_TEXT) {
        in->text_message = true;
        scan_start(r, in, from);
    } else if (in->cur.opcode == WR_WS_OP_BINARY) {
        in->text_message = false;
    }

    in->forwarding = forwarding(r, from);
    if (!in->forwarding) {
        return 0;
    }
    if (from == WR_FROM_CLIENT) {
        uint8_t fresh[WR_WS_MAX_HEADER];
        size_t n;

        wr_worker_random(r->worker, in->out_mask);
        n = wr_ws_header_encode(fresh, in->cur.fin, in->cur.opcode, in->cur.payload_len,
                                in->out_mask);
        if (bid >= 0 && n == hdr_len) {
            memcpy(hdr, fresh, n); /* same length: rewrite in place, relay zero-copy */
            relay_queue_slice(r, dst, hdr, n, bid);
        } else {
            relay_queue_copy(r, dst, fresh, n, true);
        }
    } else if (bid >= 0) {
        relay_queue_slice(r, dst, hdr, hdr_len, bid);
    } else {
        relay_queue_copy(r, dst, hdr, hdr_len, true);
    }
    dst->out_frame_open = true;
    return 0;
}

static void frame_payload(struct wr_relay *r, enum wr_side from, uint8_t *data, size_t len,
                          int bid)
{
    struct wr_ws_in *in = &source_leg(r, from)->in;
    struct wr_scan *scan = in->scan;
    bool scanning = scan != NULL && scan->want != 0 && in->text_message;

    if (wr_ws_is_control(in->cur.opcode)) {
        memcpy(in->ctrl + in->done, data, len);
        if (in->cur.masked) {
            wr_ws_mask(in->ctrl + in->done, len, in->cur.mask, in->done);
        }
        return;
    }
    if (from == WR_FROM_CLIENT) {
        if (scanning) {
            wr_ws_mask(data, len, in->cur.mask, in->done);
            wr_scan_feed(scan, data, len);
            if (in->forwarding) {
                wr_ws_mask(data, len, in->out_mask, in->done);
            }
        } else if (in->forwarding) {
            uint8_t both[4];

            for (int i = 0; i < 4; i++) {
                both[i] = in->cur.mask[i] ^ in->out_mask[i];
            }
            wr_ws_mask(data, len, both, in->done);
        }
    } else if (scanning) {
        wr_scan_feed(scan, data, len);
    }
    if (in->forwarding) {
        relay_queue_slice(r, target_leg(r, from), data, len, bid);
    }
}

static void pong_received(struct wr_relay *r, const uint8_t *payload, size_t len)
{
    if (!r->ping_outstanding || len != sizeof(r->ping_payload) ||
        memcmp(payload, r->ping_payload, len) != 0) {
        return; /* duplicate, late or unsolicited */
    }
    r->ping_outstanding = false;
    relay_trace(r, r->ping_ok_logged ? WR_LOG_DEBUG : WR_LOG_INFO, "downstream_ping_ok",
                "downstream_keepalive", 1, 0, 0);
    r->ping_ok_logged = true;
}

static int control_frame(struct wr_relay *r, enum wr_side from)
{
    struct wr_leg *src = source_leg(r, from);
    struct wr_ws_in *in = &src->in;
    size_t len = (size_t)in->cur.payload_len;
    const uint8_t *reason;
    size_t reason_len;
    unsigned code;

    switch (in->cur.opcode) {
    case WR_WS_OP_PING:
        if (src->state == WR_LEG_OPEN && !(from == WR_FROM_CLIENT && r->client_gone)) {
            relay_queue_control(r, src, WR_WS_OP_PONG, in->ctrl, len);
        }
        return 0;
    case WR_WS_OP_PONG:
        if (from == WR_FROM_CLIENT) {
            pong_received(r, in->ctrl, len);
        }
        return 0;
    default:
        break;
    }

    if (wr_ws_close_parse(in->ctrl, len, &code, &reason, &reason_len) < 0) {
        return protocol_error(r, from, WR_EWS_CLOSE_PAYLOAD);
    }
    src->peer_closed = true;
    if (src->state == WR_LEG_CLOSING) {
        /* This is the reply to our own Close. */
        if (!src->send_armed && src->out_head == NULL) {
            relay_shutdown_leg(r, src);
        }
        return 1;
    }
    if (from == WR_FROM_CLIENT) {
        struct wr_client_end end = {"client_disconnected", true, code, NULL, 0};
        char text[WR_WS_MAX_CLOSE_REASON + 1];

        if (reason_len > 0) {
            memcpy(text, reason, reason_len);
        }
        text[reason_len] = '\0';
        end.reason = text;
        relay_client_gone(r, &end);
    } else {
        relay_upstream_closed(r, code, reason, reason_len);
    }
    return 1;
}

static int frame_end(struct wr_relay *r, enum wr_side from)
{
    struct wr_ws_in *in = &source_leg(r, from)->in;
    struct wr_scan *scan = in->scan;

    in->in_frame = false;
    if (wr_ws_is_control(in->cur.opcode)) {
        return control_frame(r, from);
    }
    if (in->forwarding) {
        relay_leg_frame_boundary(r, target_leg(r, from));
    }
    if (!in->cur.fin || scan == NULL) {
        return 0;
    }
    if (in->text_message) {
        wr_scan_finish(scan);
        if (from == WR_FROM_CLIENT) {
            if (in->forwarding && (scan->found & WR_SCAN_BIT(WR_SCAN_TYPE)) &&
                strcmp(scan->type, "response.create") == 0) {
                turns_open(r);
            }
        } else {
            turns_on_upstream_message(r, scan);
        }
    }
    frames_scan_release(r->worker, scan);
    in->scan = NULL;
    return 0;
}

int frames_process(struct wr_relay *r, enum wr_side from, uint8_t *data, size_t len, int bid)
{
    struct wr_leg *src = source_leg(r, from);
    struct wr_ws_in *in = &src->in;
    enum wr_ws_role role = from == WR_FROM_CLIENT ? WR_WS_FROM_CLIENT : WR_WS_FROM_SERVER;

    while (len > 0) {
        if (in->broken || (src->state != WR_LEG_OPEN && src->state != WR_LEG_CLOSING)) {
            return 1;
        }
        if (!in->in_frame) {
            uint8_t *hdr;
            size_t used;
            int h;

            if (in->hdr_len == 0) {
                h = wr_ws_header_decode(data, len, role, &in->cur);
                if (h == WR_AGAIN) {
                    memcpy(in->hdr, data, len);
                    in->hdr_len = (uint8_t)len;
                    return 0;
                }
                hdr = data;
                used = h > 0 ? (size_t)h : 0;
            } else {
                size_t take = WR_WS_MAX_HEADER - in->hdr_len;

                if (take > len) {
                    take = len;
                }
                memcpy(in->hdr + in->hdr_len, data, take);
                h = wr_ws_header_decode(in->hdr, in->hdr_len + take, role, &in->cur);
                if (h == WR_AGAIN) {
                    in->hdr_len = (uint8_t)(in->hdr_len + take);
                    return 0;
                }
                hdr = in->hdr;
                used = h > 0 ? (size_t)h - in->hdr_len : 0;
            }
            if (h < 0) {
                return protocol_error(r, from, h);
            }
            /* A header assembled from two receives is copied, not sliced. */
            if (frame_start(r, from, hdr, (size_t)h, in->hdr_len == 0 ? bid : -1) != 0) {
                return 1;
            }
            in->hdr_len = 0;
            data += used;
            len -= used;
            if (in->cur.payload_len == 0 && frame_end(r, from) != 0) {
                return 1;
            }
            continue;
        }

        size_t take = len;
        if (take > in->cur.payload_len - in->done) {
            take = (size_t)(in->cur.payload_len - in->done);
        }
        frame_payload(r, from, data, take, bid);
        in->done += take;
        data += take;
        len -= take;
        if (in->done == in->cur.payload_len && frame_end(r, from) != 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- turns ---- */

void turns_open(struct wr_relay *r)
{
    struct wr_turn *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return;
    }
    t->start_ms = r->worker->now_ms;
    t->first_token_ms = -1;
    if (r->turns_tail != NULL) {
        r->turns_tail->next = t;
    } else {
        r->turns = t;
    }
    r->turns_tail = t;
    r->open_turns++;
    if (relay_conf(r)->event_keepalive_ms != 0) {
        relay_retime(r);
    }
}

static struct wr_turn *turn_pop(struct wr_relay *r)
{
    struct wr_turn *t = r->turns;

    r->turns = t->next;
    if (r->turns == NULL) {
        r->turns_tail = NULL;
    }
    r->open_turns--;
    return t;
}

void turns_on_upstream_message(struct wr_relay *r, struct wr_scan *scan)
{
    struct wr_turn *t = r->turns;
    bool has_id = (scan->found & WR_SCAN_BIT(WR_SCAN_RESPONSE_ID)) != 0;

    switch (scan->tag) {
    case EVENT_CREATED:
        if (t != NULL && has_id && t->response_id[0] == '\0') {
            memcpy(t->response_id, scan->response_id, sizeof(t->response_id));
        }
        if (t != NULL && (scan->found & WR_SCAN_BIT(WR_SCAN_RESPONSE_MODEL)) &&
            t->model[0] == '\0') {
            memcpy(t->model, scan->model, sizeof(t->model));
        }
        return;
    case EVENT_DELTA:
        if (t != NULL && t->first_token_ms < 0) {
            t->first_token_ms = (int64_t)(r->worker->now_ms - t->start_ms);
        }
        return;
    case EVENT_FAILED:
        if (r->absorb_pending &&
            (r->absorb_id[0] == '\0' || (has_id && strcmp(scan->response_id, r->absorb_id) == 0))) {
            r->absorb_pending = false;
            return;
        }
        break;
    case EVENT_TERMINAL:
    case EVENT_ERROR:
        break;
    default:
        return;
    }

    if (t == NULL) {
        return; /* a terminal event with no open turn opens nothing to record */
    }
    t = turn_pop(r);
    if (scan->tag == EVENT_ERROR) {
        r->absorb_pending = true;
        memcpy(r->absorb_id, t->response_id, sizeof(r->absorb_id));
        wr_usage_record(r, t, "error", NULL, scan);
    } else {
        /* Without response.status, the status is the type's suffix: "response.completed". */
        const char *status = (scan->found & WR_SCAN_BIT(WR_SCAN_RESPONSE_STATUS))
                                 ? scan->status
                                 : scan->type + strlen("response.");
        wr_usage_record(r, t, status, NULL, scan);
    }
    free(t);

    if (r->client_gone && r->open_turns == 0 && r->up.state == WR_LEG_OPEN) {
        relay_trace(r, WR_LOG_INFO, "drain_terminal", "upstream_to_client", 1, 0, 0);
        relay_close_upstream(r, 1001, "client disconnected");
    } else if (r->worker->stopping && r->open_turns == 0) {
        /* Shutting down: the turn that was let finish has finished. */
        wr_relay_shutdown(r->worker, r);
    }
}

void turns_settle_all(struct wr_relay *r, const char *reason)
{
    while (r->turns != NULL) {
        struct wr_turn *t = turn_pop(r);

        wr_usage_record(r, t, "unsettled", reason, NULL);
        free(t);
    }
}

void turns_free(struct wr_relay *r)
{
    while (r->turns != NULL) {
        free(turn_pop(r));
    }
}
