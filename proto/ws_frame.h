/* SPDX-License-Identifier: MIT */
/* RFC 6455 frame headers, masking, message sequencing and Close payloads. */
#ifndef WR_PROTO_WS_FRAME_H
#define WR_PROTO_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/wr.h"

enum {
    WR_WS_OP_CONTINUATION = 0x0,
    WR_WS_OP_TEXT = 0x1,
    WR_WS_OP_BINARY = 0x2,
    WR_WS_OP_CLOSE = 0x8,
    WR_WS_OP_PING = 0x9,
    WR_WS_OP_PONG = 0xA,
};

#define WR_WS_MAX_HEADER 14
#define WR_WS_MAX_CONTROL_PAYLOAD 125
#define WR_WS_MAX_CLOSE_REASON 123

/* The peer that sent a frame: clients must mask, servers must not. */
enum wr_ws_role {
    WR_WS_FROM_CLIENT,
    WR_WS_FROM_SERVER,
};

struct wr_ws_header {
    bool fin;
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];      /* valid when masked */
    uint64_t payload_len; /* at most 2^63 - 1 */
};

static inline bool wr_ws_is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

/*
 * Decodes the frame header at buf, sent by a peer of the given role.
 * Stateless. Returns the header length (2 to 14); WR_AGAIN if len is shorter
 * than the header; or, for headers that break RFC 6455 section 5.2:
 * WR_EWS_RESERVED_BITS, WR_EWS_OPCODE, WR_EWS_CONTROL_FRAGMENTED,
 * WR_EWS_CONTROL_TOO_LONG, WR_EWS_LENGTH, WR_EWS_UNMASKED (client frame) or
 * WR_EWS_MASKED (server frame). Never reads past buf + len.
 */
int wr_ws_header_decode(const uint8_t *buf, size_t len, enum wr_ws_role role,
                        struct wr_ws_header *hdr);

/*
 * Encodes a header with the minimal length form into out. mask is NULL for
 * an unmasked frame. Returns the header length (2 to 14).
 */
size_t wr_ws_header_encode(uint8_t out[WR_WS_MAX_HEADER], bool fin, uint8_t opcode,
                           uint64_t payload_len, const uint8_t *mask);

/*
 * XORs len bytes at data with key, starting at byte offset (the position of
 * data[0] within the frame payload, so the key is rotated by offset % 4).
 * Masking and unmasking are the same operation, and re-masking from key a to
 * key b is one call with the key a XOR b. Works a word at a time.
 */
void wr_ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset);

/* Per-direction message state for wr_ws_sequence_check; zero-fill to start. */
struct wr_ws_sequence {
    bool in_message;     /* a fragmented data message is open */
    uint8_t opcode;      /* opcode of the open message (text or binary) */
    uint64_t message_len; /* payload bytes of the open message so far */
};

/*
 * Checks a data or control frame header against the message sequence and a
 * message size limit (0 = none) and, if it passes, records it. Returns 0;
 * WR_EWS_CONTINUATION for a continuation with no open message or a new text
 * or binary frame inside one; WR_EWS_TOO_BIG if the message would pass limit.
 * Control frames always pass and change nothing.
 */
int wr_ws_sequence_check(struct wr_ws_sequence *seq, const struct wr_ws_header *hdr,
                         uint64_t limit);

/* Returns true if code may appear in a Close frame: 1000-1003, 1007-1014, 3000-4999. */
bool wr_ws_close_code_valid(unsigned code);

/*
 * Validates an unmasked Close payload. On success returns 0 and sets *code (0
 * when the payload is empty) and the reason span (UTF-8, at most 123 bytes).
 * Returns WR_EWS_CLOSE_PAYLOAD for a 1-byte payload, an invalid code or a
 * reason that is not valid UTF-8.
 */
int wr_ws_close_parse(const uint8_t *payload, size_t len, unsigned *code,
                      const uint8_t **reason, size_t *reason_len);

/*
 * Writes a Close payload into out: nothing when code is 0, else the code and
 * reason cut to at most 123 bytes on a UTF-8 character boundary. Returns the
 * payload length (0 to 125).
 */
size_t wr_ws_close_build(uint8_t out[WR_WS_MAX_CONTROL_PAYLOAD], unsigned code,
                         const char *reason, size_t reason_len);

/* Returns true if s[0..len) is valid UTF-8 (RFC 3629: no overlongs, no surrogates). */
bool wr_utf8_valid(const uint8_t *s, size_t len);

/*
 * Returns the largest n <= max and <= len such that s[0..n) does not end in
 * the middle of a UTF-8 sequence.
 */
size_t wr_utf8_cut(const uint8_t *s, size_t len, size_t max);

#endif
