/* SPDX-License-Identifier: MIT */
/* Incremental scanner that pulls a few fields out of one JSON event message. */
#ifndef WR_PROTO_SCAN_H
#define WR_PROTO_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/wr.h"

/*
 * Fields the scanner can capture. Paths are JSON object keys from the top
 * level of the message; the token fields accept the prompt_/completion_
 * aliases that older usage objects carry.
 */
enum wr_scan_field {
    WR_SCAN_TYPE,              /* "type" (string) */
    WR_SCAN_RESPONSE_ID,       /* "response"."id" (string) */
    WR_SCAN_RESPONSE_STATUS,   /* "response"."status" (string) */
    WR_SCAN_RESPONSE_MODEL,    /* "response"."model" (string) */
    WR_SCAN_INPUT_TOKENS,      /* response.usage.input_tokens | prompt_tokens */
    WR_SCAN_CACHED_TOKENS,     /* response.usage.input_tokens_details.cached_tokens | prompt_tokens_details.cached_tokens */
    WR_SCAN_OUTPUT_TOKENS,     /* response.usage.output_tokens | completion_tokens */
    WR_SCAN_REASONING_TOKENS,  /* response.usage.output_tokens_details.reasoning_tokens | completion_tokens_details.reasoning_tokens */
    WR_SCAN_TOTAL_TOKENS,      /* response.usage.total_tokens */
    WR_SCAN_FIELD_COUNT,
};

#define WR_SCAN_BIT(field) (1u << (field))
#define WR_SCAN_ALL ((1u << WR_SCAN_FIELD_COUNT) - 1)

#define WR_SCAN_MAX_STRING 128 /* captured string values longer than this are cut */
#define WR_SCAN_MAX_DEPTH 64   /* deeper nesting is a syntax error */

/*
 * Scanner state for one message; call wr_scan_init before the first byte.
 * Memory is fixed: no allocation, whatever the message size.
 */
struct wr_scan {
    /* Results. */
    unsigned want;   /* fields still wanted; the caller may clear bits between feeds */
    unsigned found;  /* fields captured, WR_SCAN_BIT(field) */
    unsigned malformed; /* fields present with the wrong JSON type or a bad number */
    char type[WR_SCAN_MAX_STRING + 1];
    char response_id[WR_SCAN_MAX_STRING + 1];
    char status[WR_SCAN_MAX_STRING + 1];
    char model[WR_SCAN_MAX_STRING + 1];
    uint64_t tokens[5]; /* indexed by field - WR_SCAN_INPUT_TOKENS */
    int error;          /* 0, or WR_ESCAN_SYNTAX once the input was not JSON */

    /*
     * Called as soon as "type" is captured, in the middle of a feed, so the
     * caller can narrow want before the rest of the message is scanned. It may
     * record its verdict in tag. Set both after wr_scan_init; NULL for none.
     */
    void (*on_type)(struct wr_scan *s);
    int tag;

    /* Private parser state, saved between feeds. */
    uint8_t _state;     /* parser state */
    uint8_t _flags;     /* flags of the string or number being read */
    uint8_t _depth;     /* open objects and arrays, 0 to WR_SCAN_MAX_DEPTH */
    uint8_t _on_path;   /* open objects, counted from the top, that lead to wanted fields */
    uint8_t _path[4];   /* kind of each of those objects */
    uint8_t _entered;   /* kinds of object already entered, so that a duplicate key is ignored */
    uint8_t _key;       /* what the value of the current key fills: a field, an object, or nothing */
    uint8_t _target;    /* what the open string is: a key or a value, decoded or skipped */
    uint8_t _escape;    /* 1 after a backslash, 2 to 5 inside the hex digits of \uXXXX */
    uint8_t _sub;       /* position inside a number or a literal */
    uint16_t _len;      /* bytes in _text */
    uint16_t _code;     /* code unit of the \uXXXX escape being read */
    uint16_t _high;     /* high surrogate waiting for its low half, or 0 */
    uint64_t _number;   /* integer part of the number being read */
    uint64_t _nest_bits; /* bit d - 1 is set when the container at depth d is an array */
    char _text[WR_SCAN_MAX_STRING]; /* decoded bytes of the key or value being captured */
};

/* Resets s to scan a new message for the fields in want (WR_SCAN_BIT mask). */
void wr_scan_init(struct wr_scan *s, unsigned want);

/*
 * Feeds the next len bytes of the message. The message may be cut anywhere.
 * Returns 0, or WR_ESCAN_SYNTAX if the bytes so far are not JSON (further
 * feeds then do nothing). Returns at once when s->want is 0.
 */
int wr_scan_feed(struct wr_scan *s, const uint8_t *buf, size_t len);

/*
 * Ends the message. Returns 0, or WR_ESCAN_SYNTAX if the message was not one
 * complete JSON value (fields captured before the error stay set).
 */
int wr_scan_finish(struct wr_scan *s);

/* Returns true if type is a terminal event: response.completed, .done, .failed,
 * .incomplete, .cancelled, .canceled, or error. */
bool wr_scan_is_terminal(const char *type);

#endif
