/* SPDX-License-Identifier: MIT */
/* Tests for the incremental JSON event scanner. */
#include "proto/scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tests/feed.h"

#define RAW(s) s, sizeof(s) - 1

#define BIT(field) WR_SCAN_BIT(WR_SCAN_##field)
#define TOKEN(s, field) ((s)->tokens[WR_SCAN_##field - WR_SCAN_INPUT_TOKENS])

/* Results of one scan: the return codes and a copy of the scanner after finish. */
struct scan_result {
    int feed_rc; /* first non-zero return code of a feed, or 0 */
    int finish_rc;
    struct wr_scan s;
};

/* A response.completed event shaped like the ones the Responses API sends. */
static const char completed_event[] =
    "{\"type\":\"response.completed\",\"sequence_number\":42,\"response\":{"
    "\"id\":\"resp_68b1c0ffee\",\"object\":\"response\",\"created_at\":1764844800,"
    "\"status\":\"completed\",\"background\":false,\"error\":null,"
    "\"incomplete_details\":null,"
    "\"instructions\":\"You are a coding agent. Quote paths like \\\"C:\\\\work\\\\src\\\" "
    "and keep \\\\n sequences literal.\\nRules:\\n\\t1. Never print \\\"secrets\\\".\\n"
    "\\t2. A backslash at the end of a path: C:\\\\\\\\\\n"
    "\\t3. Unicode: caf\\u00e9 \\ud83d\\ude00 and a slash \\/ too.\\n"
    "Long text follows so that the string crosses many positions of the cut test. "
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.\","
    "\"max_output_tokens\":null,\"model\":\"gpt-5.2-codex\","
    "\"output\":[{\"id\":\"rs_01\",\"type\":\"reasoning\",\"status\":\"completed\","
    "\"summary\":[{\"type\":\"summary_text\",\"text\":\"Reading the file.\"}]},"
    "{\"id\":\"fc_02\",\"type\":\"function_call\",\"status\":\"completed\","
    "\"call_id\":\"call_9\",\"name\":\"shell\","
    "\"arguments\":\"{\\\"command\\\":[\\\"ls\\\",\\\"-la\\\"],\\\"model\\\":\\\"x\\\"}\"},"
    "{\"id\":\"msg_03\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\","
    "\"model\":\"not-this-one\",\"content\":[{\"type\":\"output_text\",\"annotations\":[],"
    "\"text\":\"Done: 3 files, total_tokens \\\"usage\\\" is not a key here.\","
    "\"usage\":{\"input_tokens\":999}}]}],"
    "\"parallel_tool_calls\":true,\"previous_response_id\":null,"
    "\"reasoning\":{\"effort\":\"medium\",\"summary\":\"auto\"},\"store\":false,"
    "\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"},\"verbosity\":\"medium\"},"
    "\"tool_choice\":\"auto\",\"tools\":[{\"type\":\"function\",\"name\":\"shell\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"}}}}],"
    "\"top_p\":1.0,\"truncation\":\"disabled\","
    "\"usage\":{\"input_tokens\":12345,\"input_tokens_details\":{\"cached_tokens\":11008},"
    "\"output_tokens\":678,\"output_tokens_details\":{\"reasoning_tokens\":512},"
    "\"total_tokens\":13023},"
    "\"user\":null,\"metadata\":{}}}";

static void check_completed_event(const struct scan_result *r, const char *label)
{
    const struct wr_scan *s = &r->s;

    cr_assert_eq(r->feed_rc, 0, "%s: feed returned %d", label, r->feed_rc);
    cr_assert_eq(r->finish_rc, 0, "%s: finish returned %d", label, r->finish_rc);
    cr_assert_eq(s->found, WR_SCAN_ALL, "%s: found 0x%x", label, s->found);
    cr_assert_eq(s->malformed, 0, "%s: malformed 0x%x", label, s->malformed);
    cr_assert_eq(s->want, 0, "%s: want 0x%x left", label, s->want);
    cr_assert_str_eq(s->type, "response.completed", "%s", label);
    cr_assert_str_eq(s->response_id, "resp_68b1c0ffee", "%s", label);
    cr_assert_str_eq(s->status, "completed", "%s", label);
    cr_assert_str_eq(s->model, "gpt-5.2-codex", "%s", label);
    cr_assert_eq(TOKEN(s, INPUT_TOKENS), 12345, "%s", label);
    cr_assert_eq(TOKEN(s, CACHED_TOKENS), 11008, "%s", label);
    cr_assert_eq(TOKEN(s, OUTPUT_TOKENS), 678, "%s", label);
    cr_assert_eq(TOKEN(s, REASONING_TOKENS), 512, "%s", label);
    cr_assert_eq(TOKEN(s, TOTAL_TOKENS), 13023, "%s", label);
}

/* Compares every public result of two scans. */
static void check_same_result(const struct scan_result *a, const struct scan_result *b,
                              const char *label)
{
    size_t i;

    cr_assert_eq(a->feed_rc, b->feed_rc, "%s: feed returned %d, whole input %d", label,
                 a->feed_rc, b->feed_rc);
    cr_assert_eq(a->finish_rc, b->finish_rc, "%s: finish returned %d, whole input %d", label,
                 a->finish_rc, b->finish_rc);
    cr_assert_eq(a->s.error, b->s.error, "%s: error", label);
    cr_assert_eq(a->s.want, b->s.want, "%s: want 0x%x, whole input 0x%x", label, a->s.want,
                 b->s.want);
    cr_assert_eq(a->s.found, b->s.found, "%s: found 0x%x, whole input 0x%x", label, a->s.found,
                 b->s.found);
    cr_assert_eq(a->s.malformed, b->s.malformed, "%s: malformed 0x%x, whole input 0x%x", label,
                 a->s.malformed, b->s.malformed);
    cr_assert_str_eq(a->s.type, b->s.type, "%s: type", label);
    cr_assert_str_eq(a->s.response_id, b->s.response_id, "%s: response_id", label);
    cr_assert_str_eq(a->s.status, b->s.status, "%s: status", label);
    cr_assert_str_eq(a->s.model, b->s.model, "%s: model", label);
    for (i = 0; i < 5; i++) {
        cr_assert_eq(a->s.tokens[i], b->s.tokens[i], "%s: tokens[%zu]", label, i);
    }
}

/* Feeds one chunk, keeping the first non-zero return code. */
static void feed_chunk(struct scan_result *r, const uint8_t *buf, size_t len)
{
    int rc = wr_scan_feed(&r->s, buf, len);

    if (r->feed_rc == 0) {
        r->feed_rc = rc;
    }
}

/* Scans data in one feed, placed right before a guard page. */
static void scan_whole(const void *data, size_t len, unsigned want, struct scan_result *r)
{
    struct feed_guard guard;

    feed_guard_init(&guard, len);
    memset(r, 0, sizeof(*r));
    wr_scan_init(&r->s, want);
    feed_chunk(r, feed_guard_place(&guard, data, len), len);
    r->finish_rc = wr_scan_finish(&r->s);
    feed_guard_free(&guard);
}

/* Scans data one byte per feed, each byte right before the guard page. */
static void scan_bytes(const void *data, size_t len, unsigned want, struct scan_result *r)
{
    const uint8_t *bytes = data;
    struct feed_guard guard;
    size_t i;

    feed_guard_init(&guard, 1);
    memset(r, 0, sizeof(*r));
    wr_scan_init(&r->s, want);
    for (i = 0; i < len; i++) {
        feed_chunk(r, feed_guard_place(&guard, bytes + i, 1), 1);
    }
    r->finish_rc = wr_scan_finish(&r->s);
    feed_guard_free(&guard);
}

/* Scans data in two feeds split at cut, each chunk right before its own guard page. */
static void scan_cut(const void *data, size_t len, size_t cut, unsigned want,
                     struct scan_result *r, struct feed_guard *first, struct feed_guard *second)
{
    const uint8_t *bytes = data;

    memset(r, 0, sizeof(*r));
    wr_scan_init(&r->s, want);
    feed_chunk(r, feed_guard_place(first, bytes, cut), cut);
    feed_chunk(r, feed_guard_place(second, bytes + cut, len - cut), len - cut);
    r->finish_rc = wr_scan_finish(&r->s);
}

/*
 * Scans data whole, byte by byte and cut in two at every position, checks
 * that every way gives the same results, and returns the whole-input result.
 */
static void scan_all_ways(const char *label, const void *data, size_t len, unsigned want,
                          struct scan_result *whole)
{
    struct scan_result *other = malloc(sizeof(*other));
    struct feed_guard first;
    struct feed_guard second;
    char mode[96];
    size_t cut;

    cr_assert_not_null(other, "malloc failed");
    scan_whole(data, len, want, whole);

    scan_bytes(data, len, want, other);
    snprintf(mode, sizeof(mode), "%s, byte by byte", label);
    check_same_result(other, whole, mode);

    feed_guard_init(&first, len);
    feed_guard_init(&second, len);
    for (cut = 0; cut <= len; cut++) {
        scan_cut(data, len, cut, want, other, &first, &second);
        snprintf(mode, sizeof(mode), "%s, cut at %zu", label, cut);
        check_same_result(other, whole, mode);
    }
    feed_guard_free(&first);
    feed_guard_free(&second);
    free(other);
}

Test(scan, completed_event_whole)
{
    struct scan_result r;

    scan_whole(RAW(completed_event), WR_SCAN_ALL, &r);
    check_completed_event(&r, "whole input");
}

Test(scan, completed_event_byte_by_byte)
{
    struct scan_result r;

    scan_bytes(RAW(completed_event), WR_SCAN_ALL, &r);
    check_completed_event(&r, "byte by byte");
}

Test(scan, completed_event_every_cut)
{
    struct scan_result r;

    scan_all_ways("completed event", RAW(completed_event), WR_SCAN_ALL, &r);
    check_completed_event(&r, "whole input");
}

/* A number is complete only when the byte after it arrives, which may be in the next feed. */
Test(scan, number_waits_for_delimiter)
{
    const char *total = strstr(completed_event, "13023}");
    size_t head;
    struct wr_scan s;
    int rc;

    cr_assert_not_null(total);
    head = (size_t)(total - completed_event) + 5;
    wr_scan_init(&s, WR_SCAN_ALL);
    rc = wr_scan_feed(&s, (const uint8_t *)completed_event, head);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s.want, BIT(TOTAL_TOKENS), "want 0x%x", s.want);
    cr_assert_eq(TOKEN(&s, TOTAL_TOKENS), 0);

    rc = wr_scan_feed(&s, (const uint8_t *)completed_event + head, 1);
    cr_assert_eq(rc, 0);
    cr_assert_eq(s.want, 0);
    cr_assert_eq(TOKEN(&s, TOTAL_TOKENS), 13023);
}

Test(scan, created_event)
{
    static const char event[] =
        "{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{"
        "\"id\":\"resp_abc123\",\"object\":\"response\",\"created_at\":1764844800,"
        "\"status\":\"in_progress\",\"error\":null,\"instructions\":\"Be brief.\","
        "\"model\":\"gpt-5.2-codex\",\"output\":[],\"usage\":null,\"user\":null}}";
    struct scan_result r;

    scan_all_ways("created event", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.feed_rc, 0);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "response.created");
    cr_assert_str_eq(r.s.response_id, "resp_abc123");
    cr_assert_str_eq(r.s.status, "in_progress");
    cr_assert_str_eq(r.s.model, "gpt-5.2-codex");
    cr_assert_eq(r.s.found, BIT(TYPE) | BIT(RESPONSE_ID) | BIT(RESPONSE_STATUS) |
                                BIT(RESPONSE_MODEL));
    cr_assert_eq(r.s.malformed, 0, "a null usage object is not a malformed field");
    cr_assert_eq(TOKEN(&r.s, INPUT_TOKENS), 0);
}

Test(scan, delta_events)
{
    static const char text_delta[] =
        "{\"type\":\"response.output_text.delta\",\"sequence_number\":7,\"item_id\":\"msg_1\","
        "\"output_index\":0,\"content_index\":0,\"delta\":\"He said \\\"hi\\\" \\\\o/\"}";
    static const char args_delta[] =
        "{\"type\":\"response.function_call_arguments.delta\",\"item_id\":\"fc_1\","
        "\"output_index\":1,\"delta\":\"{\\\"command\\\":\"}";
    struct scan_result r;

    scan_all_ways("text delta", RAW(text_delta), WR_SCAN_ALL, &r);
    cr_assert_eq(r.feed_rc, 0);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "response.output_text.delta");
    cr_assert_eq(r.s.found, BIT(TYPE));
    cr_assert_eq(r.s.want, WR_SCAN_ALL & ~BIT(TYPE));

    scan_all_ways("arguments delta", RAW(args_delta), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "response.function_call_arguments.delta");
    cr_assert_eq(r.s.found, BIT(TYPE));
}

Test(scan, error_event)
{
    static const char event[] =
        "{\"type\":\"error\",\"sequence_number\":1,\"error\":{\"type\":\"invalid_request_error\","
        "\"code\":\"previous_response_not_found\",\"message\":\"Previous response with id "
        "'resp_x' not found.\",\"param\":\"previous_response_id\"},\"status\":400}";
    struct scan_result r;

    scan_all_ways("error event", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "error");
    cr_assert_eq(r.s.found, BIT(TYPE));
    cr_assert_str_eq(r.s.status, "", "a top-level status is not response.status");
    cr_assert(wr_scan_is_terminal(r.s.type));
}

Test(scan, usage_aliases)
{
    static const char event[] =
        "{\"type\":\"response.done\",\"response\":{\"usage\":{\"prompt_tokens\":70,"
        "\"completion_tokens\":30,\"total_tokens\":100,"
        "\"prompt_tokens_details\":{\"cached_tokens\":64,\"audio_tokens\":0},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":12,\"audio_tokens\":0}}}}";
    struct scan_result r;

    scan_all_ways("aliases", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_eq(r.s.malformed, 0);
    cr_assert_eq(TOKEN(&r.s, INPUT_TOKENS), 70);
    cr_assert_eq(TOKEN(&r.s, OUTPUT_TOKENS), 30);
    cr_assert_eq(TOKEN(&r.s, TOTAL_TOKENS), 100);
    cr_assert_eq(TOKEN(&r.s, CACHED_TOKENS), 64);
    cr_assert_eq(TOKEN(&r.s, REASONING_TOKENS), 12);
    cr_assert_eq(r.s.found & BIT(INPUT_TOKENS), BIT(INPUT_TOKENS));
    cr_assert_eq(r.s.found & BIT(REASONING_TOKENS), BIT(REASONING_TOKENS));
}

Test(scan, alias_after_name_ignored)
{
    static const char event[] =
        "{\"response\":{\"usage\":{\"input_tokens\":5,\"prompt_tokens\":7,"
        "\"input_tokens_details\":{\"cached_tokens\":1},"
        "\"prompt_tokens_details\":{\"cached_tokens\":2}}}}";
    struct scan_result r;

    scan_all_ways("alias after name", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_eq(TOKEN(&r.s, INPUT_TOKENS), 5);
    cr_assert_eq(TOKEN(&r.s, CACHED_TOKENS), 1);
}

Test(scan, duplicate_keys_first_wins)
{
    static const char event[] =
        "{\"type\":\"response.completed\",\"type\":\"response.created\","
        "\"response\":{\"id\":\"resp_1\",\"id\":\"resp_2\",\"usage\":{\"total_tokens\":3,"
        "\"total_tokens\":4}},\"response\":{\"status\":\"failed\"}}";
    struct scan_result r;

    scan_all_ways("duplicate keys", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "response.completed");
    cr_assert_str_eq(r.s.response_id, "resp_1");
    cr_assert_eq(TOKEN(&r.s, TOTAL_TOKENS), 3);
    cr_assert_str_eq(r.s.status, "", "a second response object must be ignored");
    cr_assert_eq(r.s.found & BIT(RESPONSE_STATUS), 0);
}

/* Each row puts one bad value into input_tokens. */
static const struct {
    const char *label;
    const char *value;
} malformed_tokens[] = {
    { "string", "\"12\"" },
    { "float", "1.5" },
    { "integral float", "2.0" },
    { "exponent", "1e3" },
    { "negative", "-3" },
    { "negative zero", "-0" },
    { "null", "null" },
    { "true", "true" },
    { "false", "false" },
    { "object", "{\"value\":1}" },
    { "array", "[1]" },
    { "2^63", "9223372036854775808" },
    { "2^64", "18446744073709551616" },
    { "30 digits", "123456789012345678901234567890" },
};

Test(scan, malformed_usage_values)
{
    char event[256];
    struct scan_result r;
    size_t i;
    int len;

    for (i = 0; i < sizeof(malformed_tokens) / sizeof(malformed_tokens[0]); i++) {
        len = snprintf(event, sizeof(event),
                       "{\"type\":\"response.completed\",\"response\":{\"usage\":{"
                       "\"input_tokens\":%s,\"output_tokens\":9,\"input_tokens\":5}}}",
                       malformed_tokens[i].value);
        scan_all_ways(malformed_tokens[i].label, event, (size_t)len, WR_SCAN_ALL, &r);
        cr_assert_eq(r.feed_rc, 0, "%s: feed returned %d", malformed_tokens[i].label, r.feed_rc);
        cr_assert_eq(r.finish_rc, 0, "%s: finish returned %d", malformed_tokens[i].label,
                     r.finish_rc);
        cr_assert_eq(r.s.malformed, BIT(INPUT_TOKENS), "%s: malformed 0x%x",
                     malformed_tokens[i].label, r.s.malformed);
        cr_assert_eq(r.s.found & BIT(INPUT_TOKENS), 0, "%s", malformed_tokens[i].label);
        cr_assert_eq(TOKEN(&r.s, INPUT_TOKENS), 0, "%s: the later duplicate must not count",
                     malformed_tokens[i].label);
        cr_assert_eq(TOKEN(&r.s, OUTPUT_TOKENS), 9, "%s", malformed_tokens[i].label);
    }
}

Test(scan, largest_token_value)
{
    static const char event[] =
        "{\"response\":{\"usage\":{\"input_tokens\":9223372036854775807,\"output_tokens\":0}}}";
    struct scan_result r;

    scan_all_ways("largest value", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.s.malformed, 0);
    cr_assert_eq(TOKEN(&r.s, INPUT_TOKENS), INT64_MAX);
    cr_assert_eq(r.s.found & BIT(OUTPUT_TOKENS), BIT(OUTPUT_TOKENS));
    cr_assert_eq(TOKEN(&r.s, OUTPUT_TOKENS), 0);
}

Test(scan, malformed_string_fields)
{
    static const char event[] =
        "{\"type\":7,\"response\":{\"id\":null,\"status\":[\"completed\"],\"model\":{}}}";
    struct scan_result r;

    scan_all_ways("string fields", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_eq(r.s.malformed & BIT(TYPE), BIT(TYPE));
    cr_assert_eq(r.s.malformed & BIT(RESPONSE_ID), BIT(RESPONSE_ID));
    cr_assert_eq(r.s.malformed & BIT(RESPONSE_STATUS), BIT(RESPONSE_STATUS));
    cr_assert_eq(r.s.malformed & BIT(RESPONSE_MODEL), BIT(RESPONSE_MODEL));
    cr_assert_eq(r.s.found, 0);
    cr_assert_str_eq(r.s.type, "");
}

Test(scan, escaped_strings_decoded)
{
    static const char event[] =
        "{\"type\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\",\"response\":{"
        "\"id\":\"resp_caf\\u00e9_\\u00E9\",\"status\":\"\\ud83d\\ude00 ok\","
        "\"model\":\"x\\u20acy\"}}";
    struct scan_result r;

    scan_all_ways("escapes", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "a\"b\\c/d\b\f\n\r\te");
    cr_assert_str_eq(r.s.response_id, "resp_caf\xc3\xa9_\xc3\xa9");
    cr_assert_str_eq(r.s.status, "\xf0\x9f\x98\x80 ok");
    cr_assert_str_eq(r.s.model, "x\xe2\x82\xacy");
}

Test(scan, lone_surrogates_replaced)
{
    static const char event[] =
        "{\"type\":\"a\\ud83db\",\"response\":{\"id\":\"\\ude00\",\"status\":\"\\ud83d\","
        "\"model\":\"n\\u0000\\ud83d\\n\"}}";
    struct scan_result r;

    scan_all_ways("lone surrogates", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "a\xef\xbf\xbd" "b");
    cr_assert_str_eq(r.s.response_id, "\xef\xbf\xbd");
    cr_assert_str_eq(r.s.status, "\xef\xbf\xbd");
    cr_assert_str_eq(r.s.model, "n\xef\xbf\xbd\xef\xbf\xbd\n");
}

Test(scan, escaped_keys_match)
{
    static const char event[] = "{\"\\u0074ype\":\"x\",\"respons\\u0065\":{\"\\u0069d\":\"r\"}}";
    struct scan_result r;

    scan_all_ways("escaped keys", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "x");
    cr_assert_str_eq(r.s.response_id, "r");
}

/*
 * Builds {"response":{"id":"..."}} with count letters 'a' and then tail in
 * the id, and returns its length.
 */
static size_t build_id_event(char *out, size_t size, size_t count, const char *tail)
{
    size_t len = 0;
    size_t i;

    len += (size_t)snprintf(out, size, "{\"response\":{\"id\":\"");
    for (i = 0; i < count && len + 1 < size; i++) {
        out[len++] = 'a';
    }
    len += (size_t)snprintf(out + len, size - len, "%s\"}}", tail);
    cr_assert_lt(len, size, "event buffer too small");
    return len;
}

Test(scan, long_strings_cut_on_boundary)
{
    static const struct {
        const char *label;
        size_t count;
        const char *tail;
        size_t expect_len;
    } cases[] = {
        { "exactly 128", 128, "", 128 },
        { "ascii 200", 200, "", 128 },
        { "raw 2-byte at 127", 127, "\xc3\xa9zz", 127 },
        { "raw 2-byte at 126", 126, "\xc3\xa9zz", 128 },
        { "raw 3-byte at 126", 126, "\xe2\x82\xac", 126 },
        { "raw 4-byte at 125", 125, "\xf0\x9f\x98\x80", 125 },
        { "raw 4-byte at 124", 124, "\xf0\x9f\x98\x80", 128 },
        { "escaped 2-byte at 127", 127, "\\u00e9", 127 },
        { "escaped pair at 125", 125, "\\ud83d\\ude00", 125 },
        { "escaped pair at 124", 124, "\\ud83d\\ude00 and more", 128 },
        { "escapes after the cut", 130, "\\\"\\\\\\u00e9", 128 },
    };
    char event[512];
    struct scan_result r;
    size_t len;
    size_t i;
    size_t j;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = build_id_event(event, sizeof(event), cases[i].count, cases[i].tail);
        scan_all_ways(cases[i].label, event, len, WR_SCAN_ALL, &r);
        cr_assert_eq(r.finish_rc, 0, "%s", cases[i].label);
        cr_assert_eq(r.s.found, BIT(RESPONSE_ID), "%s", cases[i].label);
        cr_assert_eq(strlen(r.s.response_id), cases[i].expect_len, "%s: length %zu",
                     cases[i].label, strlen(r.s.response_id));
        for (j = 0; j < cases[i].count && j < cases[i].expect_len; j++) {
            cr_assert_eq(r.s.response_id[j], 'a', "%s: byte %zu", cases[i].label, j);
        }
    }
}

Test(scan, long_string_keeps_whole_char)
{
    char event[512];
    struct scan_result r;
    size_t len;

    len = build_id_event(event, sizeof(event), 124, "\\ud83d\\ude00 and more");
    scan_whole(event, len, WR_SCAN_ALL, &r);
    cr_assert_str_eq(r.s.response_id + 124, "\xf0\x9f\x98\x80");
}

Test(scan, nested_fields_not_captured)
{
    static const char event[] =
        "{\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"in_progress\"},"
        "\"usage\":{\"input_tokens\":1},\"id\":\"top_id\",\"status\":\"top_status\","
        "\"response\":{\"output\":[{\"type\":\"message\",\"id\":\"msg_2\",\"model\":\"m\"}],"
        "\"response\":{\"id\":\"inner\"},\"item\":{\"usage\":{\"total_tokens\":2}},"
        "\"usage\":{\"input_tokens_details\":{\"input_tokens\":3,\"reasoning_tokens\":4},"
        "\"output_tokens_details\":{\"cached_tokens\":5},\"details\":{\"total_tokens\":6}},"
        "\"list\":[{\"id\":\"in_array\"}]},"
        "\"type\":\"response.output_item.added\",\"output_index\":0}";
    struct scan_result r;

    scan_all_ways("nested", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_str_eq(r.s.type, "response.output_item.added");
    cr_assert_eq(r.s.found, BIT(TYPE), "found 0x%x", r.s.found);
    cr_assert_eq(r.s.malformed, 0);
    cr_assert_str_eq(r.s.response_id, "");
    cr_assert_str_eq(r.s.status, "");
    cr_assert_str_eq(r.s.model, "");
}

Test(scan, top_level_array_ignored)
{
    static const char event[] = "[{\"type\":\"response.completed\"}]";
    struct scan_result r;

    scan_all_ways("array", RAW(event), WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_eq(r.s.found, 0);
}

Test(scan, whitespace_and_scalars_accepted)
{
    static const char *const inputs[] = {
        " \r\n\t{ \"type\" : \"x\" , \"response\" : { } } \n",
        "\"just a string\"",
        "0",
        "-12.5e+3",
        "1E-2 ",
        "true",
        "null",
        "[]",
        "[ ]",
        "{}",
        "[[],{},[{}],\"\",0,-0.0,false]",
    };
    struct scan_result r;
    size_t i;

    for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        scan_all_ways(inputs[i], inputs[i], strlen(inputs[i]), WR_SCAN_ALL, &r);
        cr_assert_eq(r.feed_rc, 0, "%s: feed returned %d", inputs[i], r.feed_rc);
        cr_assert_eq(r.finish_rc, 0, "%s: finish returned %d", inputs[i], r.finish_rc);
    }
}

Test(scan, syntax_errors_rejected)
{
    static const char *const inputs[] = {
        /* mismatched or unbalanced brackets */
        "{\"type\":\"x\"]",
        "[1,2}",
        "{\"a\":[1}",
        "{\"a\":1}}",
        "]",
        /* garbage between values */
        "{\"a\":1 \"b\":2}",
        "{\"a\":1,,\"b\":2}",
        "{\"a\" 1}",
        "{\"a\"::1}",
        "{1:2}",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "{\"a\":x}",
        "{\"a\":1} x",
        "{\"a\":1}{}",
        "{\"a\":\"b\"\"c\"}",
        /* bad literals */
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":falsy}",
        "{\"a\":trueish}",
        "{\"a\":nulll}",
        "{\"a\":True}",
        /* bad numbers */
        "{\"a\":-}",
        "{\"a\":1.}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":01}",
        "{\"a\":.5}",
        "{\"a\":+1}",
        "{\"a\":1.2.3}",
        "{\"a\":--1}",
        /* bad escapes, in skipped and in captured strings */
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12G4\"}",
        "{\"a\":\"\\u12\"}",
        "{\"type\":\"\\q\"}",
        "{\"type\":\"\\u00\"}",
        "{\"\\k\":1}",
        /* incomplete messages, found by finish */
        "",
        "   ",
        "{",
        "{\"a\":1",
        "{\"a\":\"abc",
        "{\"type\":\"abc",
        "{\"a\":tr",
        "{\"a\"",
        "{\"a\":",
        "[1,",
        "-",
        "1.",
        "\"\\",
        "\"\\u00",
    };
    struct scan_result r;
    size_t i;

    for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        scan_all_ways(inputs[i], inputs[i], strlen(inputs[i]), WR_SCAN_ALL, &r);
        cr_assert_eq(r.s.error, WR_ESCAN_SYNTAX, "%s: error %d", inputs[i], r.s.error);
        cr_assert_eq(r.finish_rc, WR_ESCAN_SYNTAX, "%s: finish returned %d", inputs[i],
                     r.finish_rc);
    }
}

Test(scan, syntax_error_keeps_fields)
{
    static const char event[] = "{\"type\":\"response.completed\",\"response\":{\"id\":\"r\",]}";
    struct wr_scan s;
    int rc;

    wr_scan_init(&s, WR_SCAN_ALL);
    rc = wr_scan_feed(&s, (const uint8_t *)event, sizeof(event) - 1);
    cr_assert_eq(rc, WR_ESCAN_SYNTAX);
    cr_assert_str_eq(s.type, "response.completed");
    cr_assert_str_eq(s.response_id, "r");
    rc = wr_scan_feed(&s, (const uint8_t *)"}", 1);
    cr_assert_eq(rc, WR_ESCAN_SYNTAX, "feeds after an error keep failing");
    cr_assert_eq(wr_scan_finish(&s), WR_ESCAN_SYNTAX);
}

/* Builds depth nested arrays, or objects with the key "k", around the number 1. */
static size_t build_nested(char *out, size_t depth, char open, char close)
{
    size_t len = 0;
    size_t i;

    for (i = 0; i < depth; i++) {
        out[len++] = open;
        if (open == '{') {
            memcpy(out + len, "\"k\":", 4);
            len += 4;
        }
    }
    out[len++] = '1';
    for (i = 0; i < depth; i++) {
        out[len++] = close;
    }
    return len;
}

Test(scan, nesting_limit)
{
    char input[WR_SCAN_MAX_DEPTH * 6 + 16];
    struct scan_result r;
    size_t len;

    len = build_nested(input, WR_SCAN_MAX_DEPTH, '[', ']');
    scan_all_ways("64 arrays", input, len, WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0, "nesting of exactly 64 is valid");

    len = build_nested(input, WR_SCAN_MAX_DEPTH + 1, '[', ']');
    scan_all_ways("65 arrays", input, len, WR_SCAN_ALL, &r);
    cr_assert_eq(r.feed_rc, WR_ESCAN_SYNTAX);

    len = build_nested(input, WR_SCAN_MAX_DEPTH, '{', '}');
    scan_all_ways("64 objects", input, len, WR_SCAN_ALL, &r);
    cr_assert_eq(r.finish_rc, 0);

    len = build_nested(input, WR_SCAN_MAX_DEPTH + 1, '{', '}');
    scan_all_ways("65 objects", input, len, WR_SCAN_ALL, &r);
    cr_assert_eq(r.feed_rc, WR_ESCAN_SYNTAX);
}

Test(scan, stops_when_fields_found)
{
    static const char event[] =
        "{\"type\":\"response.output_text.delta\",\"delta\":\"x\"} this is not JSON ]]]";
    struct scan_result r;

    scan_all_ways("type only", RAW(event), BIT(TYPE), &r);
    cr_assert_eq(r.feed_rc, 0, "the scan stops before the bad bytes");
    cr_assert_eq(r.finish_rc, 0);
    cr_assert_eq(r.s.want, 0);
    cr_assert_str_eq(r.s.type, "response.output_text.delta");
}

Test(scan, empty_want_reads_nothing)
{
    struct feed_guard guard;
    struct wr_scan s;
    int rc;

    /* The bytes passed are inside the guard page, so any read would fault. */
    feed_guard_init(&guard, 1);
    wr_scan_init(&s, 0);
    rc = wr_scan_feed(&s, guard.limit, 4096);
    cr_assert_eq(rc, 0);
    cr_assert_eq(wr_scan_finish(&s), 0);

    wr_scan_init(&s, WR_SCAN_ALL);
    rc = wr_scan_feed(&s, (const uint8_t *)RAW("{\"type\":"));
    cr_assert_eq(rc, 0);
    s.want = 0;
    rc = wr_scan_feed(&s, guard.limit, 4096);
    cr_assert_eq(rc, 0, "a caller that clears want stops the scan");
    cr_assert_eq(s.found, 0);
    feed_guard_free(&guard);
}

Test(scan, cleared_want_not_stored)
{
    struct wr_scan s;
    int rc;

    wr_scan_init(&s, BIT(TYPE) | BIT(RESPONSE_ID));
    rc = wr_scan_feed(&s, (const uint8_t *)RAW("{\"type\":\"resp"));
    cr_assert_eq(rc, 0);
    s.want &= ~BIT(TYPE);
    rc = wr_scan_feed(&s, (const uint8_t *)RAW("onse.created\",\"response\":{\"id\":\"r\"}}"));
    cr_assert_eq(rc, 0);
    cr_assert_eq(wr_scan_finish(&s), 0);
    cr_assert_eq(s.found, BIT(RESPONSE_ID));
    cr_assert_str_eq(s.type, "");
}

Test(scan, terminal_types)
{
    static const char *const terminal[] = {
        "response.completed",  "response.done",      "response.failed", "response.incomplete",
        "response.cancelled", "response.canceled", "error",
    };
    static const char *const other[] = {
        "response.created", "response.in_progress", "response.output_text.delta",
        "response.completed.extra", "response", "Error", "errors", "",
    };
    size_t i;

    for (i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++) {
        cr_assert(wr_scan_is_terminal(terminal[i]), "%s", terminal[i]);
    }
    for (i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        cr_assert_not(wr_scan_is_terminal(other[i]), "%s", other[i]);
    }
    cr_assert_not(wr_scan_is_terminal(NULL));
}

/* xorshift64: a fixed seed gives the same garbage on every run. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/* Checks what must hold after any input, valid or not. */
static void check_invariants(const struct scan_result *r, const char *label)
{
    const struct wr_scan *s = &r->s;
    size_t i;

    cr_assert(r->feed_rc == 0 || r->feed_rc == WR_ESCAN_SYNTAX, "%s: feed %d", label, r->feed_rc);
    cr_assert(r->finish_rc == 0 || r->finish_rc == WR_ESCAN_SYNTAX, "%s: finish %d", label,
              r->finish_rc);
    cr_assert_eq(s->found & s->malformed, 0, "%s: field both found and malformed", label);
    cr_assert_eq(s->want & (s->found | s->malformed), 0, "%s: settled field still wanted", label);
    cr_assert_leq(strnlen(s->type, sizeof(s->type)), WR_SCAN_MAX_STRING, "%s", label);
    cr_assert_leq(strnlen(s->response_id, sizeof(s->response_id)), WR_SCAN_MAX_STRING, "%s",
                  label);
    cr_assert_leq(strnlen(s->status, sizeof(s->status)), WR_SCAN_MAX_STRING, "%s", label);
    cr_assert_leq(strnlen(s->model, sizeof(s->model)), WR_SCAN_MAX_STRING, "%s", label);
    for (i = 0; i < 5; i++) {
        cr_assert_leq(s->tokens[i], (uint64_t)INT64_MAX, "%s: tokens[%zu]", label, i);
    }
}

/* Feeds data in chunks of random sizes, each right before the guard page. */
static void scan_random_chunks(const uint8_t *data, size_t len, uint64_t *seed,
                               struct feed_guard *guard, struct scan_result *r)
{
    size_t pos = 0;
    size_t n;

    memset(r, 0, sizeof(*r));
    wr_scan_init(&r->s, WR_SCAN_ALL);
    while (pos < len) {
        n = 1 + (size_t)(next_random(seed) % 17);
        if (n > len - pos) {
            n = len - pos;
        }
        feed_chunk(r, feed_guard_place(guard, data + pos, n), n);
        pos += n;
    }
    r->finish_rc = wr_scan_finish(&r->s);
}

Test(scan, random_garbage_survives)
{
    static const char alphabet[] = "{}[]{}[]\"\"\"::,,,\\\\u0123456789abcdefABCDEF-+.eE "
                                   "truefalsenull\n\t\r";
    uint8_t input[512];
    struct scan_result whole;
    struct scan_result chunked;
    struct feed_guard guard;
    uint64_t seed = 0x9e3779b97f4a7c15u;
    char label[64];
    size_t len;
    size_t i;
    size_t round;

    feed_guard_init(&guard, sizeof(input));
    for (round = 0; round < 3000; round++) {
        len = (size_t)(next_random(&seed) % sizeof(input));
        for (i = 0; i < len; i++) {
            uint64_t x = next_random(&seed);

            /* Mostly JSON bytes, so that the scanner gets deep, and some arbitrary bytes. */
            if (x % 8 == 0) {
                input[i] = (uint8_t)(x >> 8);
            } else {
                input[i] = (uint8_t)alphabet[(x >> 8) % (sizeof(alphabet) - 1)];
            }
        }
        snprintf(label, sizeof(label), "garbage round %zu", round);
        scan_whole(input, len, WR_SCAN_ALL, &whole);
        check_invariants(&whole, label);
        scan_random_chunks(input, len, &seed, &guard, &chunked);
        check_invariants(&chunked, label);
        check_same_result(&chunked, &whole, label);
    }
    feed_guard_free(&guard);
}

Test(scan, mutated_events_survive)
{
    const size_t len = sizeof(completed_event) - 1;
    uint8_t *input = malloc(len);
    struct scan_result whole;
    struct scan_result chunked;
    struct feed_guard guard;
    uint64_t seed = 0x2545f4914f6cdd1du;
    char label[64];
    size_t round;
    size_t k;
    size_t flips;

    cr_assert_not_null(input, "malloc failed");
    feed_guard_init(&guard, len);
    for (round = 0; round < 2000; round++) {
        memcpy(input, completed_event, len);
        flips = 1 + (size_t)(next_random(&seed) % 4);
        for (k = 0; k < flips; k++) {
            uint64_t x = next_random(&seed);

            input[(x >> 16) % len] = (uint8_t)x;
        }
        snprintf(label, sizeof(label), "mutation round %zu", round);
        scan_whole(input, len, WR_SCAN_ALL, &whole);
        check_invariants(&whole, label);
        scan_random_chunks(input, len, &seed, &guard, &chunked);
        check_invariants(&chunked, label);
        check_same_result(&chunked, &whole, label);
    }
    feed_guard_free(&guard);
    free(input);
}

/* Appends text to a growing message and returns the new length. */
static size_t append(uint8_t *buf, size_t len, size_t cap, const char *text)
{
    size_t n = strlen(text);

    cr_assert_leq(len + n, cap, "message buffer too small");
    memcpy(buf + len, text, n);
    return len + n;
}

Test(scan, large_image_event)
{
    static const char base64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const size_t result_len = 12u * 1024 * 1024;
    const size_t cap = result_len + 1024;
    const size_t chunk = 64 * 1024;
    uint8_t *msg = malloc(cap);
    uint64_t seed = 12345;
    struct wr_scan s;
    size_t len = 0;
    size_t pos;
    size_t n;
    size_t i;
    int rc = 0;

    cr_assert_not_null(msg, "malloc failed");
    len = append(msg, len, cap,
                 "{\"type\":\"response.completed\",\"sequence_number\":31,\"response\":{"
                 "\"id\":\"resp_img_7\",\"object\":\"response\",\"status\":\"completed\","
                 "\"output\":[{\"id\":\"ig_1\",\"type\":\"image_generation_call\","
                 "\"status\":\"completed\",\"output_format\":\"png\",\"result\":\"");
    for (i = 0; i < result_len - 2; i++) {
        msg[len++] = (uint8_t)base64[next_random(&seed) % 64];
    }
    msg[len++] = '=';
    msg[len++] = '=';
    len = append(msg, len, cap,
                 "\"}],\"model\":\"gpt-image-1\",\"usage\":{\"input_tokens\":2048,"
                 "\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":4160,"
                 "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":6208}}}");

    wr_scan_init(&s, WR_SCAN_ALL);
    for (pos = 0; pos < len && rc == 0; pos += n) {
        n = len - pos < chunk ? len - pos : chunk;
        rc = wr_scan_feed(&s, msg + pos, n);
    }
    cr_assert_eq(rc, 0, "feed returned %d at offset %zu", rc, pos);
    cr_assert_eq(wr_scan_finish(&s), 0);
    cr_assert_eq(s.found, WR_SCAN_ALL, "found 0x%x", s.found);
    cr_assert_str_eq(s.type, "response.completed");
    cr_assert_str_eq(s.response_id, "resp_img_7");
    cr_assert_str_eq(s.status, "completed");
    cr_assert_str_eq(s.model, "gpt-image-1");
    cr_assert_eq(TOKEN(&s, INPUT_TOKENS), 2048);
    cr_assert_eq(TOKEN(&s, CACHED_TOKENS), 0);
    cr_assert_eq(TOKEN(&s, OUTPUT_TOKENS), 4160);
    cr_assert_eq(TOKEN(&s, REASONING_TOKENS), 0);
    cr_assert_eq(TOKEN(&s, TOTAL_TOKENS), 6208);
    free(msg);
}
