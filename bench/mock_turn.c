/* SPDX-License-Identifier: MIT */
/* Formats the Responses API events of a turn, one event per step. */
#include "bench/mock_upstream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct pattern text_pattern = { MOCK_TEXT_UNIT, sizeof(MOCK_TEXT_UNIT) - 1, NULL };
struct pattern result_pattern = { MOCK_RESULT_UNIT, sizeof(MOCK_RESULT_UNIT) - 1, NULL };

/* ---- Turn generation ---- */

static void turn_start(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;
    int n;

    cur->number = ++c->turns_started;
    cur->delta_index = 0;
    cur->sequence = 0;
    cur->created_at = (int64_t)time(NULL);
    cur->mid_pending = false;
    cur->mid_silence_done = false;
    cur->waiting = false;
    n = snprintf(cur->delta_prefix, sizeof(cur->delta_prefix),
                 "{\"type\":\"response.output_text.delta\",\"item_id\":\"msg_mock_%" PRIu64
                 "_%" PRIu64 "\",\"output_index\":0,\"content_index\":0,\"delta\":\"",
                 c->id, cur->number);
    cur->delta_prefix_len = (size_t)n;
    c->worker->turns++;
    mock_log(c->worker->opts, LOG_DEBUG,
             "event=turn_started conn=%" PRIu64 " turn=%" PRIu64 " generate=%d deltas=%" PRIu64
             " bytes=%" PRIu64 " scenario=%s payload_bytes=%" PRIu64,
             c->id, cur->number, t->generate, t->params.deltas, t->params.delta_bytes,
             scenario_names[t->params.scenario], t->payload_bytes);
}

static uint64_t turn_output_tokens(const struct turn *t)
{
    return t->generate ? t->params.deltas : 0;
}

/* response.created and response.in_progress carry the same in-progress response object. */
static void emit_response_state(struct conn *c, const struct turn *t, const char *type)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"%s\",\"sequence_number\":%" PRIu32 ",\"response\":{\"id\":\"resp_mock_%"
               PRIu64 "_%" PRIu64 "\",\"object\":\"response\",\"created_at\":%" PRId64
               ",\"status\":\"in_progress\",\"model\":\"%s\",\"output\":[],\"usage\":null}}",
               type, cur->sequence++, c->id, cur->number, cur->created_at, t->model);
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_item_added(struct conn *c)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.output_item.added\",\"sequence_number\":%" PRIu32
               ",\"output_index\":0,\"item\":{\"id\":\"msg_mock_%" PRIu64 "_%" PRIu64
               "\",\"type\":\"message\",\"status\":\"in_progress\",\"role\":\"assistant\","
               "\"content\":[]}}",
               cur->sequence++, c->id, cur->number);
    frame_end(c, WR_WS_OP_TEXT);
}

/* Queues content_part.added, with an empty text, or content_part.done, with the whole text. */
static void emit_part(struct conn *c, const struct turn *t, bool done)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.content_part.%s\",\"sequence_number\":%" PRIu32
               ",\"item_id\":\"msg_mock_%" PRIu64 "_%" PRIu64
               "\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\","
               "\"text\":\"",
               done ? "done" : "added", cur->sequence++, c->id, cur->number);
    if (done) {
        out_run(c, &text_pattern, 0, t->params.deltas * t->params.delta_bytes);
    }
    out_printf(c, "\",\"annotations\":[]}}");
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_delta(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;
    struct timespec now;

    frame_begin(c);
    out_bytes(c, cur->delta_prefix, cur->delta_prefix_len);
    out_run(c, &text_pattern, cur->delta_index * t->params.delta_bytes, t->params.delta_bytes);
    clock_gettime(CLOCK_MONOTONIC, &now);
    out_printf(c, "\",\"logprobs\":[],\"sequence_number\":%" PRIu32 ",\"ts_ns\":%" PRIu64 "}",
               cur->sequence++, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_text_done(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.output_text.done\",\"sequence_number\":%" PRIu32
               ",\"item_id\":\"msg_mock_%" PRIu64 "_%" PRIu64
               "\",\"output_index\":0,\"content_index\":0,\"text\":\"",
               cur->sequence++, c->id, cur->number);
    out_run(c, &text_pattern, 0, t->params.deltas * t->params.delta_bytes);
    out_printf(c, "\",\"logprobs\":[]}");
    frame_end(c, WR_WS_OP_TEXT);
}

/* The finished assistant message item, shared by output_item.done and response.completed. */
static void out_message_item(struct conn *c, const struct turn *t)
{
    out_printf(c,
               "{\"id\":\"msg_mock_%" PRIu64 "_%" PRIu64
               "\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\","
               "\"content\":[{\"type\":\"output_text\",\"text\":\"",
               c->id, c->cursor.number);
    out_run(c, &text_pattern, 0, t->params.deltas * t->params.delta_bytes);
    out_printf(c, "\",\"annotations\":[]}]}");
}

static void emit_item_done(struct conn *c, const struct turn *t)
{
    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.output_item.done\",\"sequence_number\":%" PRIu32
               ",\"output_index\":0,\"item\":",
               c->cursor.sequence++);
    out_message_item(c, t);
    out_printf(c, "}");
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_large(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.output_item.done\",\"sequence_number\":%" PRIu32
               ",\"output_index\":1,\"item\":{\"id\":\"ig_mock_%" PRIu64 "_%" PRIu64
               "\",\"type\":\"image_generation_call\",\"status\":\"completed\",\"result\":\"",
               cur->sequence++, c->id, cur->number);
    out_run(c, &result_pattern, 0, t->params.large_bytes);
    out_printf(c, "\"}}");
    frame_end(c, WR_WS_OP_TEXT);
}

static void emit_completed(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;
    uint64_t input = t->payload_bytes / 4;
    uint64_t output = turn_output_tokens(t);
    const char *in_name = t->params.usage_alias ? "prompt" : "input";
    const char *out_name = t->params.usage_alias ? "completion" : "output";

    frame_begin(c);
    out_printf(c,
               "{\"type\":\"response.completed\",\"sequence_number\":%" PRIu32
               ",\"response\":{\"id\":\"resp_mock_%" PRIu64 "_%" PRIu64
               "\",\"object\":\"response\",\"created_at\":%" PRId64
               ",\"status\":\"completed\",\"model\":\"%s\",\"output\":[",
               cur->sequence++, c->id, cur->number, cur->created_at, t->model);
    if (t->generate) {
        out_message_item(c, t);
    }
    out_printf(c,
               "],\"usage\":{\"%s_tokens\":%" PRIu64 ",\"%s_tokens_details\":{\"cached_tokens\":0},"
               "\"%s_tokens\":%" PRIu64 ",\"%s_tokens_details\":{\"reasoning_tokens\":0},"
               "\"total_tokens\":%" PRIu64 "}}}",
               in_name, input, in_name, out_name, output, out_name, input + output);
    frame_end(c, WR_WS_OP_TEXT);
}

/* Codex 0.169.0 treats an error event with a status and an error object as a failed HTTP
 * request: it retries, then falls back to HTTP POST. */
static void emit_error(struct conn *c, const struct turn *t)
{
    frame_begin(c);
    out_printf(c,
               "{\"type\":\"error\",\"sequence_number\":%" PRIu32
               ",\"status\":500,\"error\":{\"type\":\"server_error\",\"code\":\"%s\","
               "\"message\":\"mock_upstream failed this response as requested.\","
               "\"param\":null}}",
               c->cursor.sequence++, t->params.error_code);
    frame_end(c, WR_WS_OP_TEXT);
}

/* Runs the midpoint: the silence there, then a reset or Close for those scenarios. */
static enum step turn_midpoint(struct conn *c, const struct turn *t)
{
    struct turn_cursor *cur = &c->cursor;

    if (!cur->mid_silence_done) {
        cur->mid_silence_done = true;
        if (!t->params.silence_at_start && t->params.silence_ms > 0) {
            cur->waiting = true;
            return conn_arm_timer(c, TIMER_SILENCE, t->params.silence_ms) ? STEP_WAIT : STEP_DONE;
        }
    }
    cur->mid_pending = false;
    if (t->params.scenario == SCENARIO_RESET) {
        return STEP_RESET;
    }
    if (t->params.scenario == SCENARIO_CLOSE) {
        c->close_payload_len = wr_ws_close_build(c->close_payload, t->params.close_code,
                                                 t->params.close_reason,
                                                 t->params.close_reason_len);
        queue_control(c, WR_WS_OP_CLOSE, c->close_payload, c->close_payload_len);
        return STEP_CLOSE;
    }
    return STEP_EMITTED;
}

/* The stage after the content part opens or the deltas end. */
static enum stage stage_after_deltas(const struct turn *t)
{
    return t->params.scenario == SCENARIO_ERROR ? STAGE_ERROR : STAGE_TEXT_DONE;
}

/*
 * Queues the next event of the turn at the head of the queue. The midpoint
 * comes after the first delta, or after response.created in a turn without
 * deltas. The caller has checked out_has_room(MOCK_EVENT_ROOM).
 */
enum step turn_step(struct conn *c)
{
    const struct turn *t = &c->turns[c->turn_head];
    struct turn_cursor *cur = &c->cursor;
    bool no_deltas = !t->generate || t->params.deltas == 0;

    if (cur->mid_pending) {
        return turn_midpoint(c, t);
    }

    switch (cur->stage) {
    case STAGE_START:
        turn_start(c, t);
        cur->stage = STAGE_CREATED;
        if (t->params.silence_at_start && t->params.silence_ms > 0) {
            cur->waiting = true;
            return conn_arm_timer(c, TIMER_SILENCE, t->params.silence_ms) ? STEP_WAIT : STEP_DONE;
        }
        return STEP_EMITTED;
    case STAGE_CREATED:
        emit_response_state(c, t, "response.created");
        cur->mid_pending = no_deltas;
        if (t->generate) {
            cur->stage = STAGE_IN_PROGRESS;
        } else {
            cur->stage = t->params.scenario == SCENARIO_ERROR ? STAGE_ERROR : STAGE_COMPLETED;
        }
        return STEP_EMITTED;
    case STAGE_IN_PROGRESS:
        emit_response_state(c, t, "response.in_progress");
        cur->stage = STAGE_ITEM_ADDED;
        return STEP_EMITTED;
    case STAGE_ITEM_ADDED:
        emit_item_added(c);
        cur->stage = STAGE_PART_ADDED;
        return STEP_EMITTED;
    case STAGE_PART_ADDED:
        emit_part(c, t, false);
        cur->stage = t->params.deltas > 0 ? STAGE_DELTAS : stage_after_deltas(t);
        return STEP_EMITTED;
    case STAGE_DELTAS:
        emit_delta(c, t);
        cur->delta_index++;
        cur->mid_pending = cur->delta_index == 1;
        if (cur->delta_index == t->params.deltas) {
            cur->stage = stage_after_deltas(t);
        }
        return STEP_EMITTED;
    case STAGE_TEXT_DONE:
        emit_text_done(c, t);
        cur->stage = STAGE_PART_DONE;
        return STEP_EMITTED;
    case STAGE_PART_DONE:
        emit_part(c, t, true);
        cur->stage = STAGE_ITEM_DONE;
        return STEP_EMITTED;
    case STAGE_ITEM_DONE:
        emit_item_done(c, t);
        cur->stage = t->params.large_bytes > 0 ? STAGE_LARGE : STAGE_COMPLETED;
        return STEP_EMITTED;
    case STAGE_LARGE:
        emit_large(c, t);
        cur->stage = STAGE_COMPLETED;
        return STEP_EMITTED;
    case STAGE_COMPLETED:
        emit_completed(c, t);
        cur->stage = STAGE_DONE;
        return STEP_EMITTED;
    case STAGE_ERROR:
        emit_error(c, t);
        cur->stage = STAGE_DONE;
        return STEP_EMITTED;
    case STAGE_DONE:
        return STEP_DONE;
    }
    abort();
}
