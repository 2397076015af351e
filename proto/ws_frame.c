/* SPDX-License-Identifier: MIT */
/* RFC 6455 frame headers, masking, message sequencing and Close payloads. */
#include "proto/ws_frame.h"

#include <string.h>

static bool opcode_known(uint8_t opcode)
{
    switch (opcode) {
    case WR_WS_OP_CONTINUATION:
    case WR_WS_OP_TEXT:
    case WR_WS_OP_BINARY:
    case WR_WS_OP_CLOSE:
    case WR_WS_OP_PING:
    case WR_WS_OP_PONG:
        return true;
    default:
        return false;
    }
}

/* Checks the bits of the first two header bytes, in the order RFC 6455 section 5.2 lists them. */
static int check_first_bytes(uint8_t b0, uint8_t b1, enum wr_ws_role role)
{
    uint8_t opcode = b0 & 0x0f;
    bool masked = (b1 & 0x80) != 0;

    if ((b0 & 0x70) != 0) {
        return WR_EWS_RESERVED_BITS;
    }
    if (!opcode_known(opcode)) {
        return WR_EWS_OPCODE;
    }
    if (wr_ws_is_control(opcode)) {
        /* RFC 6455 section 5.5: control frames are never fragmented and carry at most 125 bytes. */
        if ((b0 & 0x80) == 0) {
            return WR_EWS_CONTROL_FRAGMENTED;
        }
        if ((b1 & 0x7f) > WR_WS_MAX_CONTROL_PAYLOAD) {
            return WR_EWS_CONTROL_TOO_LONG;
        }
    }
    if (role == WR_WS_FROM_CLIENT && !masked) {
        return WR_EWS_UNMASKED;
    }
    if (role == WR_WS_FROM_SERVER && masked) {
        return WR_EWS_MASKED;
    }
    return 0;
}

int wr_ws_header_decode(const uint8_t *buf, size_t len, enum wr_ws_role role,
                        struct wr_ws_header *hdr)
{
    size_t pos = 2;
    uint64_t payload_len;
    size_t i;
    int rc;

    if (len < 2) {
        return WR_AGAIN;
    }
    rc = check_first_bytes(buf[0], buf[1], role);
    if (rc < 0) {
        return rc;
    }

    payload_len = buf[1] & 0x7f;
    if (payload_len == 126) {
        if (len < 4) {
            return WR_AGAIN;
        }
        payload_len = (uint64_t)buf[2] << 8 | buf[3];
        pos = 4;
        /* RFC 6455 section 5.2 requires the minimal number of bytes for the length. */
        if (payload_len < 126) {
            return WR_EWS_LENGTH;
        }
    } else if (payload_len == 127) {
        if (len < 10) {
            return WR_AGAIN;
        }
        payload_len = 0;
        for (i = 2; i < 10; i++) {
            payload_len = payload_len << 8 | buf[i];
        }
        pos = 10;
        if ((payload_len >> 63) != 0 || payload_len <= 0xffff) {
            return WR_EWS_LENGTH;
        }
    }

    hdr->fin = (buf[0] & 0x80) != 0;
    hdr->opcode = buf[0] & 0x0f;
    hdr->masked = (buf[1] & 0x80) != 0;
    hdr->payload_len = payload_len;
    memset(hdr->mask, 0, sizeof(hdr->mask));
    if (hdr->masked) {
        if (len < pos + 4) {
            return WR_AGAIN;
        }
        memcpy(hdr->mask, buf + pos, 4);
        pos += 4;
    }
    return (int)pos;
}

size_t wr_ws_header_encode(uint8_t out[WR_WS_MAX_HEADER], bool fin, uint8_t opcode,
                           uint64_t payload_len, const uint8_t *mask)
{
    uint8_t mask_bit = mask != NULL ? 0x80 : 0;
    size_t pos;
    int shift;

    assert((payload_len >> 63) == 0);
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (payload_len < 126) {
        out[1] = (uint8_t)(mask_bit | payload_len);
        pos = 2;
    } else if (payload_len <= 0xffff) {
        out[1] = mask_bit | 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        pos = 4;
    } else {
        out[1] = mask_bit | 127;
        pos = 2;
        for (shift = 56; shift >= 0; shift -= 8) {
            out[pos++] = (uint8_t)(payload_len >> shift);
        }
    }

    if (mask != NULL) {
        memcpy(out + pos, mask, 4);
        pos += 4;
    }
    return pos;
}

void wr_ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset)
{
    unsigned k = (unsigned)(offset & 3);
    uint8_t key_bytes[8];
    uint64_t key_word;
    uint64_t word;
    size_t i = 0;
    unsigned j;

    /* Bytes up to an 8-byte boundary, so the word loop below stores aligned. */
    while (i < len && ((uintptr_t)(data + i) & 7) != 0) {
        data[i++] ^= key[k];
        k = (k + 1) & 3;
    }

    /* Eight is a multiple of four, so every word uses the key at the same rotation. */
    for (j = 0; j < 8; j++) {
        key_bytes[j] = key[(k + j) & 3];
    }
    memcpy(&key_word, key_bytes, sizeof(key_word));
    for (; len - i >= 8; i += 8) {
        memcpy(&word, data + i, sizeof(word));
        word ^= key_word;
        memcpy(data + i, &word, sizeof(word));
    }

    for (; i < len; i++) {
        data[i] ^= key[k];
        k = (k + 1) & 3;
    }
}

int wr_ws_sequence_check(struct wr_ws_sequence *seq, const struct wr_ws_header *hdr,
                         uint64_t limit)
{
    uint64_t message_len;

    if (wr_ws_is_control(hdr->opcode)) {
        return 0;
    }

    switch (hdr->opcode) {
    case WR_WS_OP_CONTINUATION:
        if (!seq->in_message) {
            return WR_EWS_CONTINUATION;
        }
        message_len = seq->message_len + hdr->payload_len;
        if (message_len < seq->message_len) {
            message_len = UINT64_MAX;
        }
        break;
    case WR_WS_OP_TEXT:
    case WR_WS_OP_BINARY:
        if (seq->in_message) {
            return WR_EWS_CONTINUATION;
        }
        message_len = hdr->payload_len;
        break;
    default:
        assert(!"reserved opcode reached the sequence check");
        return WR_EWS_OPCODE;
    }

    if (limit != 0 && message_len > limit) {
        return WR_EWS_TOO_BIG;
    }
    if (hdr->fin) {
        seq->in_message = false;
        seq->opcode = 0;
        seq->message_len = 0;
    } else {
        if (!seq->in_message) {
            seq->opcode = hdr->opcode;
        }
        seq->in_message = true;
        seq->message_len = message_len;
    }
    return 0;
}

bool wr_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int wr_ws_close_parse(const uint8_t *payload, size_t len, unsigned *code,
                      const uint8_t **reason, size_t *reason_len)
{
    unsigned value;

    if (len == 0) {
        *code = 0;
        *reason = payload;
        *reason_len = 0;
        return 0;
    }
    if (len == 1 || len > WR_WS_MAX_CONTROL_PAYLOAD) {
        return WR_EWS_CLOSE_PAYLOAD;
    }
    value = (unsigned)payload[0] << 8 | payload[1];
    if (!wr_ws_close_code_valid(value) || !wr_utf8_valid(payload + 2, len - 2)) {
        return WR_EWS_CLOSE_PAYLOAD;
    }
    *code = value;
    *reason = payload + 2;
    *reason_len = len - 2;
    return 0;
}

size_t wr_ws_close_build(uint8_t out[WR_WS_MAX_CONTROL_PAYLOAD], unsigned code,
                         const char *reason, size_t reason_len)
{
    size_t n;

    if (code == 0) {
        return 0;
    }
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    n = reason_len > 0 ? wr_utf8_cut((const uint8_t *)reason, reason_len,
                                     WR_WS_MAX_CLOSE_REASON) : 0;
    if (n > 0) {
        memcpy(out + 2, reason, n);
    }
    return 2 + n;
}

/* Returns the length of a sequence that starts with byte c, or 0 if c cannot start one. */
static size_t utf8_sequence_len(uint8_t c)
{
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return 2;
    }
    if (c >= 0xe0 && c <= 0xef) {
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        return 4;
    }
    return 0;
}

static bool is_continuation(uint8_t c)
{
    return (c & 0xc0) == 0x80;
}

bool wr_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = s[i];
        uint8_t lo = 0x80;
        uint8_t hi = 0xbf;
        size_t n;
        size_t k;

        if (c < 0x80) {
            i++;
            continue;
        }
        n = utf8_sequence_len(c);
        if (n == 0 || len - i < n) {
            return false;
        }

        /* RFC 3629 section 4: narrower second-byte ranges exclude overlongs,
         * surrogates and code points past U+10FFFF. */
        if (c == 0xe0) {
            lo = 0xa0;
        } else if (c == 0xed) {
            hi = 0x9f;
        } else if (c == 0xf0) {
            lo = 0x90;
        } else if (c == 0xf4) {
            hi = 0x8f;
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return false;
        }
        for (k = 2; k < n; k++) {
            if (!is_continuation(s[i + k])) {
                return false;
            }
        }
        i += n;
    }
    return true;
}

size_t wr_utf8_cut(const uint8_t *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;
    size_t lead;
    size_t seq_len;

    if (n == 0) {
        return 0;
    }

    /* The last sequence starts at most three bytes before s[n - 1]. */
    lead = n - 1;
    while (lead > 0 && n - 1 - lead < 3 && is_continuation(s[lead])) {
        lead--;
    }
    seq_len = utf8_sequence_len(s[lead]);
    /* A complete last sequence, or bytes that start none, need no cut. */
    if (seq_len == 0 || lead + seq_len <= n) {
        return n;
    }
    return lead;
}
