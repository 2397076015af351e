/* SPDX-License-Identifier: MIT */
/* Tests for WebSocket frame headers, masking, message sequencing and Close payloads. */
#include "proto/ws_frame.h"

#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tests/feed.h"

#define BYTES(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int decode_client(const uint8_t *buf, size_t len, size_t last_len, void *out)
{
    return wr_ws_header_decode(buf, len, WR_WS_FROM_CLIENT, out);
}

static int decode_server(const uint8_t *buf, size_t len, size_t last_len, void *out)
{
    return wr_ws_header_decode(buf, len, WR_WS_FROM_SERVER, out);
}

static bool same_header(const void *a, const uint8_t *base_a, const void *b,
                        const uint8_t *base_b)
{
    const struct wr_ws_header *x = a;
    const struct wr_ws_header *y = b;

    return x->fin == y->fin && x->opcode == y->opcode && x->masked == y->masked &&
           x->payload_len == y->payload_len && memcmp(x->mask, y->mask, 4) == 0;
}

static const struct feed_parser client_decoder = {
    decode_client, same_header, sizeof(struct wr_ws_header)
};

static const struct feed_parser server_decoder = {
    decode_server, same_header, sizeof(struct wr_ws_header)
};

static const struct feed_parser *decoder_for(enum wr_ws_role role)
{
    return role == WR_WS_FROM_CLIENT ? &client_decoder : &server_decoder;
}

/* Decodes a header whole, byte by byte and cut at every position, and returns the whole result. */
static int decode_fed(enum wr_ws_role role, const char *label, const uint8_t *bytes, size_t len,
                      int expect, struct wr_ws_header *hdr)
{
    struct feed_guard g;
    int rc = feed_run(decoder_for(role), label, bytes, len, expect, hdr, &g);

    feed_guard_free(&g);
    return rc;
}

struct decode_case {
    const char *label;
    enum wr_ws_role role;
    const uint8_t *bytes;
    size_t len;
    bool fin;
    uint8_t opcode;
    uint64_t payload_len;
};

Test(ws_frame, decodes_length_forms)
{
    const struct decode_case cases[] = {
        { "empty text", WR_WS_FROM_SERVER, BYTES(0x81, 0x00), true, WR_WS_OP_TEXT, 0 },
        { "7-bit 125", WR_WS_FROM_SERVER, BYTES(0x82, 0x7d), true, WR_WS_OP_BINARY, 125 },
        { "16-bit 126", WR_WS_FROM_SERVER, BYTES(0x81, 0x7e, 0x00, 0x7e), true, WR_WS_OP_TEXT,
          126 },
        { "16-bit 65535", WR_WS_FROM_SERVER, BYTES(0x81, 0x7e, 0xff, 0xff), true, WR_WS_OP_TEXT,
          65535 },
        { "64-bit 65536", WR_WS_FROM_SERVER,
          BYTES(0x81, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00), true, WR_WS_OP_TEXT,
          65536 },
        { "64-bit 2^32", WR_WS_FROM_SERVER,
          BYTES(0x02, 0x7f, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00), false,
          WR_WS_OP_BINARY, 1ull << 32 },
        { "64-bit max", WR_WS_FROM_SERVER,
          BYTES(0x80, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), true,
          WR_WS_OP_CONTINUATION, INT64_MAX },
        { "unfinished text", WR_WS_FROM_SERVER, BYTES(0x01, 0x05), false, WR_WS_OP_TEXT, 5 },
        { "server close", WR_WS_FROM_SERVER, BYTES(0x88, 0x02), true, WR_WS_OP_CLOSE, 2 },
        { "server pong", WR_WS_FROM_SERVER, BYTES(0x8a, 0x00), true, WR_WS_OP_PONG, 0 },
        { "client 125", WR_WS_FROM_CLIENT, BYTES(0x81, 0xfd, 0x01, 0x02, 0x03, 0x04), true,
          WR_WS_OP_TEXT, 125 },
        { "client 126", WR_WS_FROM_CLIENT, BYTES(0x81, 0xfe, 0x00, 0x7e, 0x01, 0x02, 0x03, 0x04),
          true, WR_WS_OP_TEXT, 126 },
        { "client 65535", WR_WS_FROM_CLIENT,
          BYTES(0x81, 0xfe, 0xff, 0xff, 0x01, 0x02, 0x03, 0x04), true, WR_WS_OP_TEXT, 65535 },
        { "client 65536", WR_WS_FROM_CLIENT,
          BYTES(0x82, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x02, 0x03,
                0x04),
          true, WR_WS_OP_BINARY, 65536 },
        { "client ping 125", WR_WS_FROM_CLIENT, BYTES(0x89, 0xfd, 0x01, 0x02, 0x03, 0x04), true,
          WR_WS_OP_PING, 125 },
    };
    size_t i;

    for (i = 0; i < COUNT(cases); i++) {
        const struct decode_case *c = &cases[i];
        struct wr_ws_header hdr;
        int rc = decode_fed(c->role, c->label, c->bytes, c->len, (int)c->len, &hdr);

        cr_assert_eq(rc, (int)c->len, "%s: header length", c->label);
        cr_assert_eq(hdr.fin, c->fin, "%s: fin", c->label);
        cr_assert_eq(hdr.opcode, c->opcode, "%s: opcode", c->label);
        cr_assert_eq(hdr.payload_len, c->payload_len, "%s: payload length", c->label);
        cr_assert_eq(hdr.masked, c->role == WR_WS_FROM_CLIENT, "%s: masked", c->label);
        if (hdr.masked) {
            cr_assert(memcmp(hdr.mask, c->bytes + c->len - 4, 4) == 0, "%s: mask", c->label);
        }
    }
}

Test(ws_frame, decodes_header_before_payload)
{
    static const uint8_t frame[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                     0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    struct wr_ws_header hdr;

    cr_assert_eq(wr_ws_header_decode(frame, sizeof(frame), WR_WS_FROM_CLIENT, &hdr), 6);
    cr_assert_eq(hdr.payload_len, 5);
}

struct reject_case {
    const char *label;
    enum wr_ws_role role;
    const uint8_t *bytes;
    size_t len;
    int expect;
};

static void decode_rejects(const struct reject_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        struct wr_ws_header hdr;

        decode_fed(cases[i].role, cases[i].label, cases[i].bytes, cases[i].len, cases[i].expect,
                   &hdr);
    }
}

Test(ws_frame, rejects_non_minimal_lengths)
{
    const struct reject_case cases[] = {
        { "16-bit 125", WR_WS_FROM_SERVER, BYTES(0x81, 0x7e, 0x00, 0x7d), WR_EWS_LENGTH },
        { "16-bit 0", WR_WS_FROM_SERVER, BYTES(0x81, 0x7e, 0x00, 0x00), WR_EWS_LENGTH },
        { "client 16-bit 125", WR_WS_FROM_CLIENT,
          BYTES(0x81, 0xfe, 0x00, 0x7d, 0x01, 0x02, 0x03, 0x04), WR_EWS_LENGTH },
        { "64-bit 65535", WR_WS_FROM_SERVER,
          BYTES(0x81, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff), WR_EWS_LENGTH },
        { "64-bit 125", WR_WS_FROM_SERVER,
          BYTES(0x81, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7d), WR_EWS_LENGTH },
        { "64-bit 0", WR_WS_FROM_SERVER,
          BYTES(0x81, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00), WR_EWS_LENGTH },
        { "client 64-bit 65535", WR_WS_FROM_CLIENT,
          BYTES(0x81, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 1, 2, 3, 4),
          WR_EWS_LENGTH },
    };

    decode_rejects(cases, COUNT(cases));
}

Test(ws_frame, rejects_64_bit_top_bit)
{
    const struct reject_case cases[] = {
        { "top bit only", WR_WS_FROM_SERVER,
          BYTES(0x81, 0x7f, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00), WR_EWS_LENGTH },
        { "all bits", WR_WS_FROM_SERVER,
          BYTES(0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), WR_EWS_LENGTH },
        { "client top bit", WR_WS_FROM_CLIENT,
          BYTES(0x81, 0xff, 0x80, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 1, 2, 3, 4),
          WR_EWS_LENGTH },
    };

    decode_rejects(cases, COUNT(cases));
}

Test(ws_frame, rejects_each_reserved_bit)
{
    const struct reject_case cases[] = {
        { "RSV1", WR_WS_FROM_SERVER, BYTES(0xc1, 0x00), WR_EWS_RESERVED_BITS },
        { "RSV2", WR_WS_FROM_SERVER, BYTES(0xa1, 0x00), WR_EWS_RESERVED_BITS },
        { "RSV3", WR_WS_FROM_SERVER, BYTES(0x91, 0x00), WR_EWS_RESERVED_BITS },
        { "client RSV1", WR_WS_FROM_CLIENT, BYTES(0xc1, 0x80, 1, 2, 3, 4),
          WR_EWS_RESERVED_BITS },
        { "RSV1 on ping", WR_WS_FROM_SERVER, BYTES(0xc9, 0x00), WR_EWS_RESERVED_BITS },
        { "RSV before opcode", WR_WS_FROM_SERVER, BYTES(0xc3, 0x00), WR_EWS_RESERVED_BITS },
    };

    decode_rejects(cases, COUNT(cases));
}

Test(ws_frame, rejects_each_reserved_opcode)
{
    static const uint8_t reserved[] = { 0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf };
    size_t i;

    for (i = 0; i < COUNT(reserved); i++) {
        uint8_t server[2] = { (uint8_t)(0x80 | reserved[i]), 0x00 };
        uint8_t client[6] = { (uint8_t)(0x80 | reserved[i]), 0x80, 1, 2, 3, 4 };
        uint8_t unmasked[2] = { reserved[i], 0x00 };
        struct wr_ws_header hdr;
        char label[48];

        snprintf(label, sizeof(label), "server opcode 0x%x", reserved[i]);
        decode_fed(WR_WS_FROM_SERVER, label, server, sizeof(server), WR_EWS_OPCODE, &hdr);
        snprintf(label, sizeof(label), "client opcode 0x%x", reserved[i]);
        decode_fed(WR_WS_FROM_CLIENT, label, client, sizeof(client), WR_EWS_OPCODE, &hdr);
        snprintf(label, sizeof(label), "unmasked client opcode 0x%x", reserved[i]);
        decode_fed(WR_WS_FROM_CLIENT, label, unmasked, sizeof(unmasked), WR_EWS_OPCODE, &hdr);
    }
}

Test(ws_frame, rejects_fragmented_control)
{
    const struct reject_case cases[] = {
        { "ping", WR_WS_FROM_SERVER, BYTES(0x09, 0x00), WR_EWS_CONTROL_FRAGMENTED },
        { "pong", WR_WS_FROM_SERVER, BYTES(0x0a, 0x00), WR_EWS_CONTROL_FRAGMENTED },
        { "close", WR_WS_FROM_SERVER, BYTES(0x08, 0x02, 0x03, 0xe8), WR_EWS_CONTROL_FRAGMENTED },
        { "client ping", WR_WS_FROM_CLIENT, BYTES(0x09, 0x80, 1, 2, 3, 4),
          WR_EWS_CONTROL_FRAGMENTED },
        { "long fragmented ping", WR_WS_FROM_SERVER, BYTES(0x09, 0x7e, 0x00, 0x7e),
          WR_EWS_CONTROL_FRAGMENTED },
    };

    decode_rejects(cases, COUNT(cases));
}

Test(ws_frame, rejects_control_of_126_bytes)
{
    const struct reject_case cases[] = {
        { "ping 126", WR_WS_FROM_SERVER, BYTES(0x89, 0x7e, 0x00, 0x7e), WR_EWS_CONTROL_TOO_LONG },
        { "close 126", WR_WS_FROM_SERVER, BYTES(0x88, 0x7e, 0x00, 0x7e),
          WR_EWS_CONTROL_TOO_LONG },
        { "pong 64-bit", WR_WS_FROM_SERVER,
          BYTES(0x8a, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00),
          WR_EWS_CONTROL_TOO_LONG },
        { "client ping 126", WR_WS_FROM_CLIENT,
          BYTES(0x89, 0xfe, 0x00, 0x7e, 1, 2, 3, 4), WR_EWS_CONTROL_TOO_LONG },
        { "unmasked client ping 126", WR_WS_FROM_CLIENT, BYTES(0x89, 0x7e, 0x00, 0x7e),
          WR_EWS_CONTROL_TOO_LONG },
    };

    decode_rejects(cases, COUNT(cases));
}

Test(ws_frame, rejects_wrong_masking)
{
    const struct reject_case cases[] = {
        { "masked server text", WR_WS_FROM_SERVER, BYTES(0x81, 0x80, 1, 2, 3, 4),
          WR_EWS_MASKED },
        { "masked server ping", WR_WS_FROM_SERVER, BYTES(0x89, 0x81, 1, 2, 3, 4, 5),
          WR_EWS_MASKED },
        { "unmasked client text", WR_WS_FROM_CLIENT, BYTES(0x81, 0x05), WR_EWS_UNMASKED },
        { "unmasked client close", WR_WS_FROM_CLIENT, BYTES(0x88, 0x00), WR_EWS_UNMASKED },
        { "unmasked client 16-bit", WR_WS_FROM_CLIENT, BYTES(0x82, 0x7e, 0x01, 0x00),
          WR_EWS_UNMASKED },
    };

    decode_rejects(cases, COUNT(cases));
}

Test(ws_frame, returns_again_on_short_input)
{
    static const uint8_t frame[] = { 0x81, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4 };
    struct wr_ws_header hdr;
    size_t n;

    for (n = 0; n < sizeof(frame); n++) {
        cr_assert_eq(wr_ws_header_decode(frame, n, WR_WS_FROM_CLIENT, &hdr), WR_AGAIN,
                     "prefix of %zu bytes", n);
    }
    cr_assert_eq(wr_ws_header_decode(frame, sizeof(frame), WR_WS_FROM_CLIENT, &hdr), 14);
}

struct encode_case {
    bool fin;
    uint8_t opcode;
    uint64_t payload_len;
    bool masked;
    const uint8_t *bytes;
    size_t len;
};

Test(ws_frame, encodes_minimal_lengths)
{
    static const uint8_t key[4] = { 0xa1, 0xb2, 0xc3, 0xd4 };
    const struct encode_case cases[] = {
        { true, WR_WS_OP_TEXT, 0, false, BYTES(0x81, 0x00) },
        { true, WR_WS_OP_TEXT, 125, false, BYTES(0x81, 0x7d) },
        { false, WR_WS_OP_BINARY, 126, false, BYTES(0x02, 0x7e, 0x00, 0x7e) },
        { true, WR_WS_OP_CONTINUATION, 65535, false, BYTES(0x80, 0x7e, 0xff, 0xff) },
        { true, WR_WS_OP_TEXT, 65536, false,
          BYTES(0x81, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00) },
        { true, WR_WS_OP_TEXT, INT64_MAX, false,
          BYTES(0x81, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff) },
        { true, WR_WS_OP_PING, 4, true, BYTES(0x89, 0x84, 0xa1, 0xb2, 0xc3, 0xd4) },
        { true, WR_WS_OP_TEXT, 126, true, BYTES(0x81, 0xfe, 0x00, 0x7e, 0xa1, 0xb2, 0xc3, 0xd4) },
        { false, WR_WS_OP_TEXT, 65536, true,
          BYTES(0x01, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0xa1, 0xb2, 0xc3,
                0xd4) },
        { true, WR_WS_OP_CLOSE, 2, false, BYTES(0x88, 0x02) },
    };
    size_t i;

    for (i = 0; i < COUNT(cases); i++) {
        const struct encode_case *c = &cases[i];
        uint8_t out[WR_WS_MAX_HEADER];
        size_t len;

        memset(out, 0xee, sizeof(out));
        len = wr_ws_header_encode(out, c->fin, c->opcode, c->payload_len, c->masked ? key : NULL);
        cr_assert_eq(len, c->len, "case %zu: length %zu, expected %zu", i, len, c->len);
        cr_assert(memcmp(out, c->bytes, c->len) == 0, "case %zu: bytes differ", i);
    }
}

Test(ws_frame, decodes_what_it_encodes)
{
    static const uint8_t key[4] = { 0x01, 0x80, 0xfe, 0x7f };
    static const uint64_t lengths[] = { 0, 1, 125, 126, 127, 65535, 65536, 1ull << 32,
                                        INT64_MAX };
    size_t i;

    for (i = 0; i < COUNT(lengths); i++) {
        uint8_t out[WR_WS_MAX_HEADER];
        struct wr_ws_header hdr;
        size_t len;

        len = wr_ws_header_encode(out, false, WR_WS_OP_BINARY, lengths[i], key);
        cr_assert_eq(wr_ws_header_decode(out, len, WR_WS_FROM_CLIENT, &hdr), (int)len);
        cr_assert_eq(hdr.payload_len, lengths[i]);
        cr_assert_eq(hdr.fin, false);
        cr_assert_eq(hdr.opcode, WR_WS_OP_BINARY);
        cr_assert(memcmp(hdr.mask, key, 4) == 0);

        len = wr_ws_header_encode(out, true, WR_WS_OP_TEXT, lengths[i], NULL);
        cr_assert_eq(wr_ws_header_decode(out, len, WR_WS_FROM_SERVER, &hdr), (int)len);
        cr_assert_eq(hdr.payload_len, lengths[i]);
        cr_assert_eq(hdr.fin, true);
        cr_assert_eq(hdr.masked, false);
    }
}

static struct wr_ws_header frame(uint8_t opcode, bool fin, uint64_t payload_len)
{
    struct wr_ws_header hdr = { .fin = fin, .opcode = opcode, .payload_len = payload_len };

    return hdr;
}

struct sequence_step {
    uint8_t opcode;
    bool fin;
    uint64_t payload_len;
    int expect;
    bool in_message;      /* state after the step */
    uint64_t message_len; /* state after the step */
};

static void run_sequence(const char *label, const struct sequence_step *steps, size_t n,
                         uint64_t limit)
{
    struct wr_ws_sequence seq = { 0 };
    size_t i;

    for (i = 0; i < n; i++) {
        struct wr_ws_header hdr = frame(steps[i].opcode, steps[i].fin, steps[i].payload_len);
        int rc = wr_ws_sequence_check(&seq, &hdr, limit);

        cr_assert_eq(rc, steps[i].expect, "%s step %zu: returned %s, expected %s", label, i,
                     wr_strerror(rc), wr_strerror(steps[i].expect));
        cr_assert_eq(seq.in_message, steps[i].in_message, "%s step %zu: in_message", label, i);
        cr_assert_eq(seq.message_len, steps[i].message_len, "%s step %zu: message_len %llu",
                     label, i, (unsigned long long)seq.message_len);
    }
}

Test(ws_frame, rejects_continuation_first)
{
    static const struct sequence_step steps[] = {
        { WR_WS_OP_CONTINUATION, true, 3, WR_EWS_CONTINUATION, false, 0 },
        { WR_WS_OP_CONTINUATION, false, 3, WR_EWS_CONTINUATION, false, 0 },
        { WR_WS_OP_TEXT, true, 3, 0, false, 0 },
        { WR_WS_OP_CONTINUATION, true, 3, WR_EWS_CONTINUATION, false, 0 },
    };

    run_sequence("continuation first", steps, COUNT(steps), 0);
}

Test(ws_frame, rejects_new_message_inside_one)
{
    static const struct sequence_step steps[] = {
        { WR_WS_OP_TEXT, false, 10, 0, true, 10 },
        { WR_WS_OP_TEXT, true, 1, WR_EWS_CONTINUATION, true, 10 },
        { WR_WS_OP_BINARY, false, 1, WR_EWS_CONTINUATION, true, 10 },
        { WR_WS_OP_CONTINUATION, false, 5, 0, true, 15 },
        { WR_WS_OP_CONTINUATION, true, 5, 0, false, 0 },
        { WR_WS_OP_BINARY, true, 7, 0, false, 0 },
    };

    run_sequence("new message inside one", steps, COUNT(steps), 0);
}

Test(ws_frame, passes_interleaved_control_frames)
{
    static const struct sequence_step steps[] = {
        { WR_WS_OP_BINARY, false, 10, 0, true, 10 },
        { WR_WS_OP_PING, true, 125, 0, true, 10 },
        { WR_WS_OP_CONTINUATION, false, 10, 0, true, 20 },
        { WR_WS_OP_PONG, true, 0, 0, true, 20 },
        { WR_WS_OP_CLOSE, true, 2, 0, true, 20 },
        { WR_WS_OP_CONTINUATION, true, 0, 0, false, 0 },
        { WR_WS_OP_PING, true, 0, 0, false, 0 },
    };
    struct wr_ws_sequence seq = { 0 };
    struct wr_ws_header hdr = frame(WR_WS_OP_BINARY, false, 1);

    run_sequence("interleaved control", steps, COUNT(steps), 20);

    cr_assert_eq(wr_ws_sequence_check(&seq, &hdr, 0), 0);
    cr_assert_eq(seq.opcode, WR_WS_OP_BINARY);
    hdr = frame(WR_WS_OP_PING, true, 0);
    cr_assert_eq(wr_ws_sequence_check(&seq, &hdr, 0), 0);
    cr_assert_eq(seq.opcode, WR_WS_OP_BINARY);
    hdr = frame(WR_WS_OP_CONTINUATION, false, 0);
    cr_assert_eq(wr_ws_sequence_check(&seq, &hdr, 0), 0);
    cr_assert_eq(seq.opcode, WR_WS_OP_BINARY);
}

Test(ws_frame, limits_single_frame_message)
{
    static const struct sequence_step steps[] = {
        { WR_WS_OP_TEXT, true, 100, 0, false, 0 },
        { WR_WS_OP_TEXT, true, 101, WR_EWS_TOO_BIG, false, 0 },
        { WR_WS_OP_BINARY, false, 101, WR_EWS_TOO_BIG, false, 0 },
        { WR_WS_OP_BINARY, true, 100, 0, false, 0 },
    };

    run_sequence("single frame", steps, COUNT(steps), 100);
}

Test(ws_frame, limits_fragmented_message)
{
    static const struct sequence_step steps[] = {
        { WR_WS_OP_TEXT, false, 60, 0, true, 60 },
        { WR_WS_OP_CONTINUATION, false, 40, 0, true, 100 },
        { WR_WS_OP_CONTINUATION, true, 1, WR_EWS_TOO_BIG, true, 100 },
        { WR_WS_OP_CONTINUATION, false, 0, 0, true, 100 },
        { WR_WS_OP_CONTINUATION, true, 0, 0, false, 0 },
        { WR_WS_OP_TEXT, false, 100, 0, true, 100 },
        { WR_WS_OP_CONTINUATION, true, INT64_MAX, WR_EWS_TOO_BIG, true, 100 },
    };

    run_sequence("fragmented", steps, COUNT(steps), 100);
}

Test(ws_frame, allows_any_size_without_limit)
{
    static const struct sequence_step steps[] = {
        { WR_WS_OP_TEXT, false, INT64_MAX, 0, true, INT64_MAX },
        { WR_WS_OP_CONTINUATION, false, INT64_MAX, 0, true, UINT64_MAX - 1 },
        { WR_WS_OP_CONTINUATION, false, INT64_MAX, 0, true, UINT64_MAX },
        { WR_WS_OP_CONTINUATION, true, 1, 0, false, 0 },
    };

    run_sequence("no limit", steps, COUNT(steps), 0);
}

/* XORs one byte at a time, as the reference for wr_ws_mask. */
static void mask_reference(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset)
{
    size_t i;

    for (i = 0; i < len; i++) {
        data[i] ^= key[(offset + i) % 4];
    }
}

static void fill_pattern(uint8_t *data, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++) {
        data[i] = (uint8_t)(i * 31 + seed * 7 + 3);
    }
}

Test(ws_frame, masks_like_reference)
{
    static const uint8_t key[4] = { 0x9c, 0x01, 0xe7, 0x42 };
    uint64_t *words_a = malloc(160);
    uint64_t *words_b = malloc(160);
    uint8_t *fast = (uint8_t *)words_a;
    uint8_t *slow = (uint8_t *)words_b;
    size_t misalign;
    size_t len;
    uint64_t offset;

    cr_assert_not_null(words_a);
    cr_assert_not_null(words_b);
    for (misalign = 0; misalign < 8; misalign++) {
        for (len = 0; len <= 100; len++) {
            for (offset = 0; offset < 8; offset++) {
                fill_pattern(fast, 160, (unsigned)len);
                fill_pattern(slow, 160, (unsigned)len);
                wr_ws_mask(fast + 16 + misalign, len, key, offset);
                mask_reference(slow + 16 + misalign, len, key, offset);
                cr_assert(memcmp(fast, slow, 160) == 0,
                          "len %zu, offset %llu, misalign %zu: output differs", len,
                          (unsigned long long)offset, misalign);
            }
        }
    }
    free(words_a);
    free(words_b);
}

Test(ws_frame, masks_with_large_offsets)
{
    static const uint8_t key[4] = { 0x10, 0x20, 0x30, 0x40 };
    static const uint64_t offsets[] = { 1ull << 32, (1ull << 40) + 3, UINT64_MAX - 2, UINT64_MAX };
    uint8_t fast[64];
    uint8_t slow[64];
    size_t i;

    for (i = 0; i < COUNT(offsets); i++) {
        fill_pattern(fast, sizeof(fast), 1);
        fill_pattern(slow, sizeof(slow), 1);
        wr_ws_mask(fast + 1, 50, key, offsets[i]);
        mask_reference(slow + 1, 50, key, offsets[i]);
        cr_assert(memcmp(fast, slow, sizeof(fast)) == 0, "offset %llu",
                  (unsigned long long)offsets[i]);
    }
}

Test(ws_frame, masks_rfc6455_hello)
{
    static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    static const uint8_t masked[5] = { 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    uint8_t data[5] = { 'H', 'e', 'l', 'l', 'o' };

    wr_ws_mask(data, sizeof(data), key, 0);
    cr_assert(memcmp(data, masked, sizeof(data)) == 0);
    wr_ws_mask(data, 2, key, 0);
    wr_ws_mask(data + 2, 3, key, 2);
    cr_assert(memcmp(data, "Hello", 5) == 0);
}

Test(ws_frame, remasks_with_xored_key)
{
    static const uint8_t key_a[4] = { 0x37, 0xfa, 0x21, 0x3d };
    static const uint8_t key_b[4] = { 0xc4, 0x05, 0x99, 0x6e };
    uint8_t key_ab[4];
    uint8_t once[128];
    uint8_t twice[128];
    size_t misalign;
    uint64_t offset;
    size_t i;

    for (i = 0; i < 4; i++) {
        key_ab[i] = key_a[i] ^ key_b[i];
    }
    for (misalign = 0; misalign < 8; misalign++) {
        for (offset = 0; offset < 8; offset++) {
            fill_pattern(once, sizeof(once), 5);
            fill_pattern(twice, sizeof(twice), 5);
            wr_ws_mask(once + misalign, 97, key_a, offset);
            wr_ws_mask(once + misalign, 97, key_ab, offset);

            wr_ws_mask(twice + misalign, 97, key_a, offset);
            wr_ws_mask(twice + misalign, 97, key_a, offset);
            wr_ws_mask(twice + misalign, 97, key_b, offset);
            cr_assert(memcmp(once, twice, sizeof(once)) == 0, "offset %llu, misalign %zu",
                      (unsigned long long)offset, misalign);
        }
    }
}

Test(ws_frame, masks_up_to_guard_page)
{
    static const uint8_t key[4] = { 1, 2, 3, 4 };
    uint8_t expect[101];
    struct feed_guard g;
    size_t len;

    feed_guard_init(&g, sizeof(expect));
    for (len = 0; len <= 101; len++) {
        uint8_t *data;

        fill_pattern(expect, len, 9);
        data = feed_guard_place(&g, expect, len);
        mask_reference(expect, len, key, 1);
        wr_ws_mask(data, len, key, 1);
        cr_assert(memcmp(data, expect, len) == 0, "len %zu", len);
    }
    feed_guard_free(&g);
}

struct code_case {
    unsigned code;
    bool valid;
};

static const struct code_case close_codes[] = {
    { 0, false },    { 999, false },  { 1000, true },  { 1001, true },  { 1002, true },
    { 1003, true },  { 1004, false }, { 1005, false }, { 1006, false }, { 1007, true },
    { 1011, true },  { 1014, true },  { 1015, false }, { 1016, false }, { 2000, false },
    { 2999, false }, { 3000, true },  { 4000, true },  { 4999, true },  { 5000, false },
    { 65535, false },
};

Test(ws_frame, validates_close_codes)
{
    size_t i;

    for (i = 0; i < COUNT(close_codes); i++) {
        cr_assert_eq(wr_ws_close_code_valid(close_codes[i].code), close_codes[i].valid,
                     "code %u", close_codes[i].code);
    }
}

Test(ws_frame, parses_close_codes)
{
    size_t i;

    for (i = 0; i < COUNT(close_codes); i++) {
        uint8_t payload[4] = { (uint8_t)(close_codes[i].code >> 8), (uint8_t)close_codes[i].code,
                               'o', 'k' };
        const uint8_t *reason = NULL;
        size_t reason_len = 99;
        unsigned code = 99;
        int rc = wr_ws_close_parse(payload, sizeof(payload), &code, &reason, &reason_len);

        if (!close_codes[i].valid) {
            cr_assert_eq(rc, WR_EWS_CLOSE_PAYLOAD, "code %u", close_codes[i].code);
            continue;
        }
        cr_assert_eq(rc, 0, "code %u", close_codes[i].code);
        cr_assert_eq(code, close_codes[i].code);
        cr_assert_eq(reason, payload + 2, "code %u: reason start", close_codes[i].code);
        cr_assert_eq(reason_len, 2, "code %u: reason length", close_codes[i].code);
    }
}

Test(ws_frame, parses_empty_close)
{
    static const uint8_t payload[1] = { 0x03 };
    const uint8_t *reason = NULL;
    size_t reason_len = 99;
    unsigned code = 99;

    cr_assert_eq(wr_ws_close_parse(payload, 0, &code, &reason, &reason_len), 0);
    cr_assert_eq(code, 0);
    cr_assert_eq(reason_len, 0);
}

Test(ws_frame, rejects_one_byte_close)
{
    static const uint8_t payload[1] = { 0x03 };
    const uint8_t *reason;
    size_t reason_len;
    unsigned code;

    cr_assert_eq(wr_ws_close_parse(payload, 1, &code, &reason, &reason_len),
                 WR_EWS_CLOSE_PAYLOAD);
}

Test(ws_frame, rejects_invalid_close_reason)
{
    const struct {
        const char *label;
        const uint8_t *bytes;
        size_t len;
    } cases[] = {
        { "truncated 2-byte", BYTES(0x03, 0xe8, 'a', 0xc3) },
        { "surrogate", BYTES(0x03, 0xe8, 0xed, 0xa0, 0x80) },
        { "overlong slash", BYTES(0x03, 0xe8, 0xc0, 0xaf) },
        { "byte 0xff", BYTES(0x03, 0xe8, 0xff) },
        { "lone continuation", BYTES(0x03, 0xe9, 0x80, 'x') },
    };
    size_t i;

    for (i = 0; i < COUNT(cases); i++) {
        const uint8_t *reason;
        size_t reason_len;
        unsigned code;

        cr_assert_eq(wr_ws_close_parse(cases[i].bytes, cases[i].len, &code, &reason,
                                       &reason_len),
                     WR_EWS_CLOSE_PAYLOAD, "%s", cases[i].label);
    }
}

Test(ws_frame, accepts_123_byte_close_reason)
{
    uint8_t payload[126];
    const uint8_t *reason;
    size_t reason_len;
    unsigned code;

    payload[0] = 0x0f;
    payload[1] = 0xa0;
    memset(payload + 2, 'r', sizeof(payload) - 2);
    memcpy(payload + 2, "\xe2\x82\xac", 3);

    cr_assert_eq(wr_ws_close_parse(payload, 125, &code, &reason, &reason_len), 0);
    cr_assert_eq(code, 4000);
    cr_assert_eq(reason, payload + 2);
    cr_assert_eq(reason_len, WR_WS_MAX_CLOSE_REASON);
    cr_assert_eq(wr_ws_close_parse(payload, 126, &code, &reason, &reason_len),
                 WR_EWS_CLOSE_PAYLOAD);
}

Test(ws_frame, builds_close_without_code)
{
    uint8_t out[WR_WS_MAX_CONTROL_PAYLOAD];

    cr_assert_eq(wr_ws_close_build(out, 0, "ignored", 7), 0);
}

Test(ws_frame, builds_close_with_short_reason)
{
    uint8_t out[WR_WS_MAX_CONTROL_PAYLOAD];

    cr_assert_eq(wr_ws_close_build(out, 1000, NULL, 0), 2);
    cr_assert_eq(out[0], 0x03);
    cr_assert_eq(out[1], 0xe8);
    cr_assert_eq(wr_ws_close_build(out, 1011, "upstream error", 14), 16);
    cr_assert_eq(out[0], 0x03);
    cr_assert_eq(out[1], 0xf3);
    cr_assert(memcmp(out + 2, "upstream error", 14) == 0);
}

struct cut_reason_case {
    const char *label;
    const char *prefix;
    const char *character;
    size_t expect_reason_len;
};

/* Builds reasons of 200 bytes from a prefix and a repeated character, then checks the cut. */
Test(ws_frame, cuts_close_reason_on_character)
{
    static const struct cut_reason_case cases[] = {
        { "ASCII", "", "a", 123 },
        { "2-byte", "", "\xc3\xa9", 122 },
        { "2-byte after 1", "a", "\xc3\xa9", 123 },
        { "3-byte", "", "\xe2\x82\xac", 123 },
        { "3-byte after 1", "a", "\xe2\x82\xac", 121 },
        { "3-byte after 2", "ab", "\xe2\x82\xac", 122 },
        { "4-byte", "", "\xf0\x9f\x98\x80", 120 },
        { "4-byte after 1", "a", "\xf0\x9f\x98\x80", 121 },
        { "4-byte after 2", "ab", "\xf0\x9f\x98\x80", 122 },
        { "4-byte after 3", "abc", "\xf0\x9f\x98\x80", 123 },
    };
    size_t i;

    for (i = 0; i < COUNT(cases); i++) {
        const struct cut_reason_case *c = &cases[i];
        uint8_t out[WR_WS_MAX_CONTROL_PAYLOAD + 8];
        char reason[200];
        size_t step = strlen(c->character);
        size_t len = strlen(c->prefix);
        const uint8_t *parsed;
        size_t parsed_len;
        unsigned code;
        size_t n;

        memcpy(reason, c->prefix, len);
        while (len + step <= sizeof(reason)) {
            memcpy(reason + len, c->character, step);
            len += step;
        }

        memset(out, 0xee, sizeof(out));
        n = wr_ws_close_build(out, 1011, reason, len);
        cr_assert_eq(n, 2 + c->expect_reason_len, "%s: payload length %zu", c->label, n);
        cr_assert(memcmp(out + 2, reason, c->expect_reason_len) == 0, "%s: reason bytes",
                  c->label);
        cr_assert_eq(out[WR_WS_MAX_CONTROL_PAYLOAD], 0xee, "%s: wrote past 125 bytes", c->label);
        cr_assert_eq(wr_ws_close_parse(out, n, &code, &parsed, &parsed_len), 0,
                     "%s: built payload does not parse", c->label);
        cr_assert_eq(code, 1011, "%s: code", c->label);
    }
}

struct utf8_case {
    const char *label;
    const uint8_t *bytes;
    size_t len;
    bool valid;
};

Test(ws_frame, validates_utf8_table)
{
    const struct utf8_case cases[] = {
        { "empty", (const uint8_t *)"", 0, true },
        { "ASCII", BYTES('h', 'i', '!'), true },
        { "NUL", BYTES('a', 0x00, 'b'), true },
        { "DEL", BYTES(0x7f), true },
        { "2-byte min U+0080", BYTES(0xc2, 0x80), true },
        { "2-byte max U+07FF", BYTES(0xdf, 0xbf), true },
        { "overlong C0", BYTES(0xc0, 0x80), false },
        { "overlong C1", BYTES(0xc1, 0xbf), false },
        { "3-byte min U+0800", BYTES(0xe0, 0xa0, 0x80), true },
        { "overlong E0 9F", BYTES(0xe0, 0x9f, 0xbf), false },
        { "U+D7FF", BYTES(0xed, 0x9f, 0xbf), true },
        { "surrogate U+D800", BYTES(0xed, 0xa0, 0x80), false },
        { "surrogate U+DFFF", BYTES(0xed, 0xbf, 0xbf), false },
        { "U+E000", BYTES(0xee, 0x80, 0x80), true },
        { "U+FFFF", BYTES(0xef, 0xbf, 0xbf), true },
        { "4-byte min U+10000", BYTES(0xf0, 0x90, 0x80, 0x80), true },
        { "overlong F0 8F", BYTES(0xf0, 0x8f, 0xbf, 0xbf), false },
        { "max U+10FFFF", BYTES(0xf4, 0x8f, 0xbf, 0xbf), true },
        { "U+110000", BYTES(0xf4, 0x90, 0x80, 0x80), false },
        { "F5 lead", BYTES(0xf5, 0x80, 0x80, 0x80), false },
        { "F8 lead", BYTES(0xf8, 0x88, 0x80, 0x80, 0x80), false },
        { "FE", BYTES(0xfe), false },
        { "FF", BYTES(0xff), false },
        { "lone continuation", BYTES(0x80), false },
        { "continuation after ASCII", BYTES('a', 0xbf), false },
        { "extra continuation", BYTES(0xc3, 0xa9, 0xa9), false },
        { "truncated 2-byte", BYTES(0xc3), false },
        { "truncated 3-byte", BYTES(0xe2, 0x82), false },
        { "truncated 4-byte", BYTES(0xf0, 0x9f, 0x98), false },
        { "bad second byte", BYTES(0xc3, 0x28), false },
        { "bad third byte", BYTES(0xe2, 0x82, 0x28), false },
        { "bad fourth byte", BYTES(0xf0, 0x9f, 0x98, 0x28), false },
        { "mixed", BYTES('a', 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 'z'), true },
    };
    size_t i;

    for (i = 0; i < COUNT(cases); i++) {
        cr_assert_eq(wr_utf8_valid(cases[i].bytes, cases[i].len), cases[i].valid, "%s",
                     cases[i].label);
    }
}

Test(ws_frame, validates_utf8_at_guard_page)
{
    static const uint8_t truncated[] = { 'a', 0xf0, 0x9f, 0x98 };
    static const uint8_t whole[] = { 'a', 0xf0, 0x9f, 0x98, 0x80 };
    struct feed_guard g;
    const uint8_t *data;
    size_t n;

    feed_guard_init(&g, sizeof(whole));
    for (n = 1; n <= sizeof(truncated); n++) {
        data = feed_guard_place(&g, truncated, n);
        cr_assert_eq(wr_utf8_valid(data, n), n == 1, "prefix of %zu bytes", n);
    }
    data = feed_guard_place(&g, whole, sizeof(whole));
    cr_assert(wr_utf8_valid(data, sizeof(whole)));
    feed_guard_free(&g);
}

struct cut_case {
    const char *label;
    const uint8_t *bytes;
    size_t len;
    size_t max;
    size_t expect;
};

Test(ws_frame, cuts_utf8_table)
{
    const struct cut_case cases[] = {
        { "empty", (const uint8_t *)"", 0, 10, 0 },
        { "max 0", BYTES('a', 'b'), 0, 0 },
        { "ASCII under max", BYTES('a', 'b', 'c'), 10, 3 },
        { "ASCII at max", BYTES('a', 'b', 'c'), 2, 2 },
        { "2-byte whole", BYTES('a', 0xc3, 0xa9), 3, 3 },
        { "2-byte split", BYTES('a', 0xc3, 0xa9), 2, 1 },
        { "3-byte after first", BYTES(0xe2, 0x82, 0xac, 'x'), 1, 0 },
        { "3-byte after second", BYTES(0xe2, 0x82, 0xac, 'x'), 2, 0 },
        { "3-byte whole", BYTES(0xe2, 0x82, 0xac, 'x'), 3, 3 },
        { "4-byte after first", BYTES('a', 0xf0, 0x9f, 0x98, 0x80), 2, 1 },
        { "4-byte after second", BYTES('a', 0xf0, 0x9f, 0x98, 0x80), 3, 1 },
        { "4-byte after third", BYTES('a', 0xf0, 0x9f, 0x98, 0x80), 4, 1 },
        { "4-byte whole", BYTES('a', 0xf0, 0x9f, 0x98, 0x80), 5, 5 },
        { "truncated tail under max", BYTES('a', 'b', 0xe2, 0x82), 10, 2 },
        { "two characters", BYTES(0xc3, 0xa9, 0xc3, 0xa9), 3, 2 },
        { "stray continuations", BYTES(0x80, 0x80, 0x80, 0x80, 0x80), 4, 4 },
        { "invalid lead", BYTES('a', 0xff, 0x80), 2, 2 },
    };
    size_t i;

    for (i = 0; i < COUNT(cases); i++) {
        const struct cut_case *c = &cases[i];
        size_t n = wr_utf8_cut(c->bytes, c->len, c->max);

        cr_assert_eq(n, c->expect, "%s: cut at %zu, expected %zu", c->label, n, c->expect);
    }
}
