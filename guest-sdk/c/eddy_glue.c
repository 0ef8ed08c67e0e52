/* Eddy's C guest SDK, the part that meets the generated bindings: it implements the exports of one world by
 * calling the author's functions per record, and the imports (log, keyed state, context) behind eddy.h.
 *
 * build.sh generates the bindings with `wit-bindgen c --rename-world eddy_world`, so that every world's types share
 * one prefix, and compiles this file with -DEDDY_<KIND> for the world's kind (EDDY_MAPPER, EDDY_PROCESSOR, ...). */
#include "eddy.h"
#include "eddy_world.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------------------
 * Shared by every world
 * ------------------------------------------------------------------------------------------------------------- */

static eddy_bytes config = {(const uint8_t *)"null", 4};

eddy_bytes eddy_config(void) { return config; }

/* Defaults for the optional functions: an author's own definition replaces them at link time. */
__attribute__((weak)) int eddy_init(eddy_bytes given) {
    (void)given;
    return 0;
}

/* Copies into malloc() memory, which the canonical ABI's post-return frees; an empty list needs no memory. */
__attribute__((unused)) static uint8_t *malloc_copy(eddy_bytes bytes) {
    if (bytes.len == 0) return NULL;
    uint8_t *copy = malloc(bytes.len);
    if (copy == NULL) __builtin_trap();
    memcpy(copy, bytes.ptr, bytes.len);
    return copy;
}

/* Ends a call: a failure becomes its udf-error, and the call's memory is freed. */
static bool finish(int status, eddy_world_string_t *err) {
    if (status != 0) {
        size_t len;
        err->ptr = (uint8_t *)eddy_take_error(&len);
        err->len = len;
    }
    eddy_call_end();
    return status == 0;
}

/* Turns an import's error string into the current call's failure. */
__attribute__((unused)) static int host_error(const char *what, eddy_world_string_t *err) {
    int status = eddy_fail("%s: %.*s", what, (int)err->len, (const char *)err->ptr);
    eddy_world_string_free(err);
    return status;
}

bool exports_eddy_udf_lifecycle_init(eddy_world_string_t *given, exports_eddy_udf_lifecycle_udf_error_t *err) {
    uint8_t *kept = malloc(given->len ? given->len : 1);
    if (kept == NULL) __builtin_trap();
    memcpy(kept, given->ptr, given->len);
    config = (eddy_bytes){kept, given->len};
    eddy_world_string_free(given);
    return finish(eddy_init(config), err);
}

void eddy_log(eddy_level level, const char *format, ...) {
    char small[256];
    va_list args, again;
    va_start(args, format);
    va_copy(again, args);
    int n = vsnprintf(small, sizeof small, format, args);
    char *text = small;
    if (n >= (int)sizeof small) {
        text = malloc((size_t)n + 1);
        if (text == NULL) __builtin_trap();
        vsnprintf(text, (size_t)n + 1, format, again);
    }
    va_end(again);
    va_end(args);
    eddy_world_string_t message = {(uint8_t *)text, n > 0 ? (size_t)n : 0};
    eddy_udf_log_write((eddy_udf_log_level_t)level, &message);
    if (text != small) free(text);
}

static eddy_bytes batch_bytes(const eddy_udf_types_batch_t *batch) { return (eddy_bytes){batch->ptr, batch->len}; }

__attribute__((unused)) static void set_batch(eddy_udf_types_batch_t *to, eddy_batch_writer *writer) {
    eddy_bytes wire = eddy_batch_finish(writer);
    *to = (eddy_udf_types_batch_t){(uint8_t *)wire.ptr, wire.len};
}

#if defined(EDDY_PROCESSOR) || defined(EDDY_WINDOW_PROCESSOR)
static eddy_bytes option_bytes(const eddy_world_option_list_u8_t *option, bool *present) {
    *present = option->is_some;
    return option->is_some ? (eddy_bytes){option->val.ptr, option->val.len} : (eddy_bytes){NULL, 0};
}

static void set_outputs(eddy_udf_types_outputs_t *ret, eddy_output *out) {
    set_batch(&ret->main, &out->main);
    ret->side.len = out->side_count;
    ret->side.ptr = NULL;
    if (out->side_count) {
        ret->side.ptr = malloc(out->side_count * sizeof *ret->side.ptr);
        if (ret->side.ptr == NULL) __builtin_trap();
    }
    for (size_t i = 0; i < out->side_count; i++) {
        eddy_bytes tag = eddy_str(out->sides[i].tag);
        ret->side.ptr[i].tag = (eddy_world_string_t){malloc_copy(tag), tag.len};
        set_batch(&ret->side.ptr[i].records, &out->sides[i].records);
    }
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * One record in, one out: map, filter, key selector, timestamp assigner
 * ------------------------------------------------------------------------------------------------------------- */

#ifdef EDDY_MAPPER
bool exports_eddy_udf_mapper_map_batch(exports_eddy_udf_mapper_batch_t *input, exports_eddy_udf_mapper_batch_t *ret,
                                       exports_eddy_udf_mapper_udf_error_t *err) {
    eddy_event *events;
    size_t n;
    int status = eddy_decode_batch(batch_bytes(input), &events, &n);
    eddy_batch_writer out;
    eddy_batch_init(&out);
    for (size_t i = 0; status == 0 && i < n; i++) {
        eddy_event mapped = events[i];
        status = eddy_map(&events[i], &mapped);
        if (status == 0) eddy_batch_push(&out, &mapped);
    }
    if (status == 0) set_batch(ret, &out);
    eddy_udf_types_batch_free(input);
    return finish(status, err);
}
#endif

#ifdef EDDY_FILTER
bool exports_eddy_udf_filter_filter_batch(exports_eddy_udf_filter_batch_t *input, eddy_world_list_bool_t *ret,
                                          exports_eddy_udf_filter_udf_error_t *err) {
    eddy_event *events;
    size_t n;
    int status = eddy_decode_batch(batch_bytes(input), &events, &n);
    bool *keep = status == 0 && n ? malloc(n * sizeof *keep) : NULL;
    if (status == 0 && n && keep == NULL) __builtin_trap();
    for (size_t i = 0; status == 0 && i < n; i++) {
        keep[i] = true;
        status = eddy_filter(&events[i], &keep[i]);
    }
    if (status == 0) *ret = (eddy_world_list_bool_t){keep, n};
    else free(keep);
    eddy_udf_types_batch_free(input);
    return finish(status, err);
}
#endif

#ifdef EDDY_KEY_SELECTOR
bool exports_eddy_udf_key_selector_select_keys(exports_eddy_udf_key_selector_batch_t *input,
                                               exports_eddy_udf_key_selector_batch_t *ret,
                                               exports_eddy_udf_key_selector_udf_error_t *err) {
    eddy_event *events;
    size_t n;
    int status = eddy_decode_batch(batch_bytes(input), &events, &n);
    eddy_batch_writer out;
    eddy_batch_init(&out);
    for (size_t i = 0; status == 0 && i < n; i++) {
        /* Only keys are read: the rest of each returned record stays empty. */
        eddy_event keyed = {.timestamp = events[i].timestamp, .has_key = events[i].has_key, .key = events[i].key};
        status = eddy_select_key(&events[i], &keyed.has_key, &keyed.key);
        if (status == 0) eddy_batch_push(&out, &keyed);
    }
    if (status == 0) set_batch(ret, &out);
    eddy_udf_types_batch_free(input);
    return finish(status, err);
}
#endif

#ifdef EDDY_TIMESTAMP_ASSIGNER
bool exports_eddy_udf_timestamp_assigner_extract_timestamps(exports_eddy_udf_timestamp_assigner_batch_t *input,
                                                            eddy_world_list_s64_t *ret,
                                                            exports_eddy_udf_timestamp_assigner_udf_error_t *err) {
    eddy_event *events;
    size_t n;
    int status = eddy_decode_batch(batch_bytes(input), &events, &n);
    int64_t *stamps = status == 0 && n ? malloc(n * sizeof *stamps) : NULL;
    if (status == 0 && n && stamps == NULL) __builtin_trap();
    for (size_t i = 0; status == 0 && i < n; i++) {
        stamps[i] = events[i].timestamp;
        status = eddy_extract_timestamp(&events[i], &stamps[i]);
    }
    if (status == 0) *ret = (eddy_world_list_s64_t){stamps, n};
    else free(stamps);
    eddy_udf_types_batch_free(input);
    return finish(status, err);
}
#endif

#ifdef EDDY_FLAT_MAPPER
bool exports_eddy_udf_flat_mapper_flat_map_batch(exports_eddy_udf_flat_mapper_batch_t *input,
                                                 exports_eddy_udf_flat_mapper_batch_t *ret,
                                                 exports_eddy_udf_flat_mapper_udf_error_t *err) {
    eddy_event *events;
    size_t n;
    int status = eddy_decode_batch(batch_bytes(input), &events, &n);
    eddy_output out;
    eddy_output_init(&out);
    for (size_t i = 0; status == 0 && i < n; i++) status = eddy_flat_map(&events[i], &out);
    if (status == 0 && out.side_count > 0)
        status = eddy_fail("a flat-map function has no side outputs (tag `%s`): use a process function", out.sides[0].tag);
    if (status == 0) set_batch(ret, &out.main);
    eddy_udf_types_batch_free(input);
    return finish(status, err);
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Process functions: keyed state, timers and side outputs
 * ------------------------------------------------------------------------------------------------------------- */

#ifdef EDDY_PROCESSOR
struct eddy_state {
    eddy_state_kind kind;
    const char *name; /* points to `copy` */
    int32_t handle;
    char copy[];
};

/* The handles opened for the current record: released after it, since they belong to its key. Each lives in
 * memory of its own, so that a pointer handed out stays valid while more are opened. */
static eddy_state **handles;
static size_t handle_count, handle_cap;

static void release_handles(void) {
    for (size_t i = 0; i < handle_count; i++) {
        int32_t handle = handles[i]->handle;
        switch (handles[i]->kind) {
        case EDDY_STATE_VALUE:
            eddy_udf_keyed_state_value_state_drop_own((eddy_udf_keyed_state_own_value_state_t){handle});
            break;
        case EDDY_STATE_LIST:
            eddy_udf_keyed_state_list_state_drop_own((eddy_udf_keyed_state_own_list_state_t){handle});
            break;
        case EDDY_STATE_MAP:
            eddy_udf_keyed_state_map_state_drop_own((eddy_udf_keyed_state_own_map_state_t){handle});
            break;
        }
        free(handles[i]);
    }
    handle_count = 0;
}

static int open_state(eddy_context *ctx, eddy_state_kind kind, const char *name, const eddy_ttl *ttl,
                      eddy_state **state) {
    (void)ctx;
    for (size_t i = 0; i < handle_count; i++) {
        if (handles[i]->kind == kind && strcmp(handles[i]->name, name) == 0) {
            *state = handles[i];
            return 0;
        }
    }
    eddy_udf_keyed_state_state_descriptor_t descriptor = {
        .name = {(uint8_t *)name, strlen(name)},
        .ttl = {.is_some = ttl != NULL},
    };
    if (ttl != NULL)
        descriptor.ttl.val = (eddy_udf_keyed_state_ttl_t){ttl->time_to_live_ms, (uint8_t)ttl->update,
                                                           (uint8_t)ttl->visibility};
    eddy_world_string_t err;
    int32_t handle;
    bool ok;
    switch (kind) {
    case EDDY_STATE_VALUE: {
        eddy_udf_keyed_state_own_value_state_t own;
        ok = eddy_udf_keyed_state_static_value_state_open(&descriptor, &own, &err);
        handle = own.__handle;
        break;
    }
    case EDDY_STATE_LIST: {
        eddy_udf_keyed_state_own_list_state_t own;
        ok = eddy_udf_keyed_state_static_list_state_open(&descriptor, &own, &err);
        handle = own.__handle;
        break;
    }
    default: {
        eddy_udf_keyed_state_own_map_state_t own;
        ok = eddy_udf_keyed_state_static_map_state_open(&descriptor, &own, &err);
        handle = own.__handle;
        break;
    }
    }
    if (!ok) return host_error(name, &err);
    if (handle_count == handle_cap) {
        size_t cap = handle_cap ? handle_cap * 2 : 8;
        eddy_state **grown = realloc(handles, cap * sizeof *grown);
        if (grown == NULL) __builtin_trap();
        handles = grown;
        handle_cap = cap;
    }
    size_t name_len = strlen(name);
    eddy_state *opened = malloc(sizeof *opened + name_len + 1);
    if (opened == NULL) __builtin_trap();
    opened->kind = kind;
    opened->handle = handle;
    memcpy(opened->copy, name, name_len + 1);
    opened->name = opened->copy;
    handles[handle_count++] = opened;
    *state = opened;
    return 0;
}

int eddy_value_state(eddy_context *ctx, const char *name, const eddy_ttl *ttl, eddy_state **state) {
    return open_state(ctx, EDDY_STATE_VALUE, name, ttl, state);
}
int eddy_list_state(eddy_context *ctx, const char *name, const eddy_ttl *ttl, eddy_state **state) {
    return open_state(ctx, EDDY_STATE_LIST, name, ttl, state);
}
int eddy_map_state(eddy_context *ctx, const char *name, const eddy_ttl *ttl, eddy_state **state) {
    return open_state(ctx, EDDY_STATE_MAP, name, ttl, state);
}

static int check_kind(const eddy_state *state, eddy_state_kind kind) {
    static const char *const names[] = {"value", "list", "map"};
    if (state->kind != kind)
        return eddy_fail("state `%s` is a %s state, not a %s state", state->name, names[state->kind], names[kind]);
    return 0;
}

#define VALUE(state) ((eddy_udf_keyed_state_borrow_value_state_t){(state)->handle})
#define LIST(state) ((eddy_udf_keyed_state_borrow_list_state_t){(state)->handle})
#define MAP(state) ((eddy_udf_keyed_state_borrow_map_state_t){(state)->handle})
#define LIST_U8(bytes) ((eddy_world_list_u8_t){(uint8_t *)(bytes).ptr, (bytes).len})
/* Calls a keyed-state import and turns its error into the call's failure. */
#define HOST(state, call)                                                                                           \
    do {                                                                                                            \
        eddy_world_string_t err_;                                                                                   \
        if (!(call)) return host_error((state)->name, &err_);                                                       \
    } while (0)
#define ERR (&err_)

static eddy_bytes adopt_list(eddy_world_list_u8_t list) {
    if (list.len) eddy_adopt(list.ptr);
    return (eddy_bytes){list.ptr, list.len};
}

int eddy_value_get(eddy_state *state, eddy_bytes *value, bool *found) {
    EDDY_TRY(check_kind(state, EDDY_STATE_VALUE));
    eddy_world_option_list_u8_t got;
    HOST(state, eddy_udf_keyed_state_method_value_state_get(VALUE(state), &got, ERR));
    *found = got.is_some;
    *value = got.is_some ? adopt_list(got.val) : (eddy_bytes){NULL, 0};
    return 0;
}

int eddy_value_set(eddy_state *state, eddy_bytes value) {
    EDDY_TRY(check_kind(state, EDDY_STATE_VALUE));
    eddy_world_list_u8_t list = LIST_U8(value);
    HOST(state, eddy_udf_keyed_state_method_value_state_set(VALUE(state), &list, ERR));
    return 0;
}

int eddy_value_clear(eddy_state *state) {
    EDDY_TRY(check_kind(state, EDDY_STATE_VALUE));
    HOST(state, eddy_udf_keyed_state_method_value_state_clear(VALUE(state), ERR));
    return 0;
}

int eddy_list_get(eddy_state *state, eddy_bytes **values, size_t *count) {
    EDDY_TRY(check_kind(state, EDDY_STATE_LIST));
    eddy_world_list_list_u8_t got;
    HOST(state, eddy_udf_keyed_state_method_list_state_get(LIST(state), &got, ERR));
    eddy_bytes *out = eddy_alloc((got.len ? got.len : 1) * sizeof *out);
    for (size_t i = 0; i < got.len; i++) out[i] = adopt_list(got.ptr[i]);
    if (got.len) eddy_adopt(got.ptr);
    *values = out;
    *count = got.len;
    return 0;
}

int eddy_list_add(eddy_state *state, eddy_bytes value) {
    EDDY_TRY(check_kind(state, EDDY_STATE_LIST));
    eddy_world_list_u8_t list = LIST_U8(value);
    HOST(state, eddy_udf_keyed_state_method_list_state_add(LIST(state), &list, ERR));
    return 0;
}

int eddy_list_update(eddy_state *state, const eddy_bytes *values, size_t count) {
    EDDY_TRY(check_kind(state, EDDY_STATE_LIST));
    eddy_world_list_u8_t *items = eddy_alloc((count ? count : 1) * sizeof *items);
    for (size_t i = 0; i < count; i++) items[i] = LIST_U8(values[i]);
    eddy_world_list_list_u8_t list = {items, count};
    HOST(state, eddy_udf_keyed_state_method_list_state_update(LIST(state), &list, ERR));
    return 0;
}

int eddy_list_clear(eddy_state *state) {
    EDDY_TRY(check_kind(state, EDDY_STATE_LIST));
    HOST(state, eddy_udf_keyed_state_method_list_state_clear(LIST(state), ERR));
    return 0;
}

int eddy_map_get(eddy_state *state, eddy_bytes key, eddy_bytes *value, bool *found) {
    EDDY_TRY(check_kind(state, EDDY_STATE_MAP));
    eddy_world_list_u8_t k = LIST_U8(key);
    eddy_world_option_list_u8_t got;
    HOST(state, eddy_udf_keyed_state_method_map_state_get(MAP(state), &k, &got, ERR));
    *found = got.is_some;
    *value = got.is_some ? adopt_list(got.val) : (eddy_bytes){NULL, 0};
    return 0;
}

int eddy_map_put(eddy_state *state, eddy_bytes key, eddy_bytes value) {
    EDDY_TRY(check_kind(state, EDDY_STATE_MAP));
    eddy_world_list_u8_t k = LIST_U8(key), v = LIST_U8(value);
    HOST(state, eddy_udf_keyed_state_method_map_state_put(MAP(state), &k, &v, ERR));
    return 0;
}

int eddy_map_remove(eddy_state *state, eddy_bytes key) {
    EDDY_TRY(check_kind(state, EDDY_STATE_MAP));
    eddy_world_list_u8_t k = LIST_U8(key);
    HOST(state, eddy_udf_keyed_state_method_map_state_remove(MAP(state), &k, ERR));
    return 0;
}

int eddy_map_contains(eddy_state *state, eddy_bytes key, bool *found) {
    EDDY_TRY(check_kind(state, EDDY_STATE_MAP));
    eddy_world_list_u8_t k = LIST_U8(key);
    HOST(state, eddy_udf_keyed_state_method_map_state_contains(MAP(state), &k, found, ERR));
    return 0;
}

int eddy_map_entries(eddy_state *state, eddy_entry **entries, size_t *count) {
    EDDY_TRY(check_kind(state, EDDY_STATE_MAP));
    eddy_world_list_tuple2_list_u8_list_u8_t got;
    HOST(state, eddy_udf_keyed_state_method_map_state_entries(MAP(state), &got, ERR));
    eddy_entry *out = eddy_alloc((got.len ? got.len : 1) * sizeof *out);
    for (size_t i = 0; i < got.len; i++) out[i] = (eddy_entry){adopt_list(got.ptr[i].f0), adopt_list(got.ptr[i].f1)};
    if (got.len) eddy_adopt(got.ptr);
    *entries = out;
    *count = got.len;
    return 0;
}

int eddy_map_is_empty(eddy_state *state, bool *empty) {
    EDDY_TRY(check_kind(state, EDDY_STATE_MAP));
    HOST(state, eddy_udf_keyed_state_method_map_state_is_empty(MAP(state), empty, ERR));
    return 0;
}

int eddy_map_clear(eddy_state *state) {
    EDDY_TRY(check_kind(state, EDDY_STATE_MAP));
    HOST(state, eddy_udf_keyed_state_method_map_state_clear(MAP(state), ERR));
    return 0;
}

bool eddy_current_key(eddy_context *ctx, eddy_bytes *key) {
    (void)ctx;
    eddy_world_list_u8_t got;
    if (!eddy_udf_context_current_key(&got)) return false;
    *key = adopt_list(got);
    return true;
}

int64_t eddy_current_watermark(eddy_context *ctx) {
    (void)ctx;
    return eddy_udf_context_current_watermark();
}

int64_t eddy_current_processing_time(eddy_context *ctx) {
    (void)ctx;
    return eddy_udf_context_current_processing_time();
}

static int timer_call(bool (*call)(int64_t, eddy_world_string_t *), const char *what, int64_t timestamp) {
    eddy_world_string_t err;
    if (!call(timestamp, &err)) return host_error(what, &err);
    return 0;
}

int eddy_register_event_time_timer(eddy_context *ctx, int64_t timestamp) {
    (void)ctx;
    return timer_call(eddy_udf_context_register_event_time_timer, "register_event_time_timer", timestamp);
}
int eddy_delete_event_time_timer(eddy_context *ctx, int64_t timestamp) {
    (void)ctx;
    return timer_call(eddy_udf_context_delete_event_time_timer, "delete_event_time_timer", timestamp);
}
int eddy_register_processing_time_timer(eddy_context *ctx, int64_t timestamp) {
    (void)ctx;
    return timer_call(eddy_udf_context_register_processing_time_timer, "register_processing_time_timer", timestamp);
}
int eddy_delete_processing_time_timer(eddy_context *ctx, int64_t timestamp) {
    (void)ctx;
    return timer_call(eddy_udf_context_delete_processing_time_timer, "delete_processing_time_timer", timestamp);
}

__attribute__((weak)) int eddy_on_timer(const eddy_timer *timer, eddy_context *ctx) {
    (void)timer;
    (void)ctx;
    return 0;
}

__attribute__((weak)) bool eddy_declared_states(const eddy_state_declaration **states, size_t *count) {
    (void)states;
    (void)count;
    return false;
}

/* Makes record (or timer) `index` current, as the contract asks before user code sees it. */
static int enter(size_t index) {
    eddy_world_string_t err;
    if (!eddy_udf_context_enter((uint32_t)index, &err)) return host_error("context.enter", &err);
    return 0;
}

bool exports_eddy_udf_processor_process(uint32_t input, exports_eddy_udf_processor_batch_t *records,
                                        exports_eddy_udf_processor_outputs_t *ret,
                                        exports_eddy_udf_processor_udf_error_t *err) {
    eddy_event *events;
    size_t n;
    int status = eddy_decode_batch(batch_bytes(records), &events, &n);
    eddy_output out;
    eddy_output_init(&out);
    eddy_context ctx = {.input = input, .out = &out};
    for (size_t i = 0; status == 0 && i < n; i++) {
        status = enter(i);
        if (status != 0) break;
        ctx.event = &events[i];
        status = eddy_process(&events[i], &ctx);
        release_handles();
    }
    release_handles();
    if (status == 0) set_outputs(ret, &out);
    eddy_udf_types_batch_free(records);
    return finish(status, err);
}

bool exports_eddy_udf_processor_on_timers(exports_eddy_udf_processor_list_fired_timer_t *timers,
                                          exports_eddy_udf_processor_outputs_t *ret,
                                          exports_eddy_udf_processor_udf_error_t *err) {
    eddy_output out;
    eddy_output_init(&out);
    eddy_context ctx = {.out = &out};
    int status = 0;
    for (size_t i = 0; status == 0 && i < timers->len; i++) {
        status = enter(i);
        if (status != 0) break;
        const exports_eddy_udf_processor_fired_timer_t *fired = &timers->ptr[i];
        eddy_timer timer = {.timestamp = fired->timestamp, .domain = (eddy_time_domain)fired->domain};
        timer.key = option_bytes(&fired->key, &timer.has_key);
        ctx.timer = &timer;
        status = eddy_on_timer(&timer, &ctx);
        release_handles();
    }
    release_handles();
    if (status == 0) set_outputs(ret, &out);
    exports_eddy_udf_processor_list_fired_timer_free(timers);
    return finish(status, err);
}

bool exports_eddy_udf_state_schema_declared_states(exports_eddy_udf_state_schema_list_state_declaration_t *ret) {
    const eddy_state_declaration *states = NULL;
    size_t count = 0;
    if (!eddy_declared_states(&states, &count)) return false;
    ret->len = count;
    ret->ptr = count ? malloc(count * sizeof *ret->ptr) : NULL;
    if (count && ret->ptr == NULL) __builtin_trap();
    for (size_t i = 0; i < count; i++) {
        eddy_bytes name = eddy_str(states[i].name);
        ret->ptr[i] = (exports_eddy_udf_state_schema_state_declaration_t){
            .name = {malloc_copy(name), name.len},
            .kind = (exports_eddy_udf_state_schema_state_kind_t)states[i].kind,
            .ttl = {.is_some = states[i].ttl != NULL},
        };
        if (states[i].ttl != NULL)
            ret->ptr[i].ttl.val = (eddy_udf_keyed_state_ttl_t){states[i].ttl->time_to_live_ms,
                                                                (uint8_t)states[i].ttl->update,
                                                                (uint8_t)states[i].ttl->visibility};
    }
    return true;
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Window functions: aggregate, reduce, process-window
 * ------------------------------------------------------------------------------------------------------------- */

#ifdef EDDY_AGGREGATOR
bool exports_eddy_udf_aggregator_create_accumulator(eddy_world_list_u8_t *ret,
                                                    exports_eddy_udf_aggregator_udf_error_t *err) {
    eddy_buf acc = {0};
    int status = eddy_create_accumulator(&acc);
    if (status == 0) *ret = (eddy_world_list_u8_t){malloc_copy(eddy_buf_bytes(&acc)), acc.len};
    return finish(status, err);
}

/* Writes accumulators as the values of a batch (keys and timestamps are unused). */
static void set_accumulators(eddy_udf_types_batch_t *ret, const eddy_buf *accs, size_t n) {
    eddy_batch_writer out;
    eddy_batch_init(&out);
    for (size_t i = 0; i < n; i++) {
        eddy_event acc = {.value = eddy_buf_bytes(&accs[i])};
        eddy_batch_push(&out, &acc);
    }
    set_batch(ret, &out);
}

/* add and merge: folds item i into accumulator targets[i], in order. */
static bool fold(exports_eddy_udf_aggregator_batch_t *accumulators, exports_eddy_udf_aggregator_batch_t *items,
                 eddy_world_list_u32_t *targets, exports_eddy_udf_aggregator_batch_t *ret,
                 exports_eddy_udf_aggregator_udf_error_t *err, bool merge) {
    eddy_event *accs, *inputs;
    size_t n_accs = 0, n_inputs = 0;
    int status = eddy_decode_batch(batch_bytes(accumulators), &accs, &n_accs);
    if (status == 0) status = eddy_decode_batch(batch_bytes(items), &inputs, &n_inputs);
    if (status == 0 && n_inputs != targets->len)
        status = eddy_fail("%zu records but %zu targets", n_inputs, targets->len);
    eddy_buf *bufs = eddy_alloc((n_accs ? n_accs : 1) * sizeof *bufs);
    for (size_t i = 0; status == 0 && i < n_accs; i++) {
        /* A copy the author may change in place. */
        eddy_bytes copy = eddy_copy(accs[i].value);
        bufs[i] = (eddy_buf){(uint8_t *)copy.ptr, copy.len, copy.len};
    }
    for (size_t i = 0; status == 0 && i < n_inputs; i++) {
        uint32_t t = targets->ptr[i];
        if (t >= n_accs) {
            status = eddy_fail("target %u of %zu accumulators", t, n_accs);
            break;
        }
        status = merge ? eddy_merge(&bufs[t], inputs[i].value) : eddy_add(&bufs[t], &inputs[i]);
    }
    if (status == 0) set_accumulators(ret, bufs, n_accs);
    eddy_udf_types_batch_free(accumulators);
    eddy_udf_types_batch_free(items);
    eddy_world_list_u32_free(targets);
    return finish(status, err);
}

bool exports_eddy_udf_aggregator_add(exports_eddy_udf_aggregator_batch_t *accumulators,
                                     exports_eddy_udf_aggregator_batch_t *inputs, eddy_world_list_u32_t *targets,
                                     exports_eddy_udf_aggregator_batch_t *ret,
                                     exports_eddy_udf_aggregator_udf_error_t *err) {
    return fold(accumulators, inputs, targets, ret, err, false);
}

bool exports_eddy_udf_aggregator_merge(exports_eddy_udf_aggregator_batch_t *accumulators,
                                       exports_eddy_udf_aggregator_batch_t *others, eddy_world_list_u32_t *targets,
                                       exports_eddy_udf_aggregator_batch_t *ret,
                                       exports_eddy_udf_aggregator_udf_error_t *err) {
    return fold(accumulators, others, targets, ret, err, true);
}

bool exports_eddy_udf_aggregator_get_result(exports_eddy_udf_aggregator_batch_t *accumulators,
                                            exports_eddy_udf_aggregator_batch_t *ret,
                                            exports_eddy_udf_aggregator_udf_error_t *err) {
    eddy_event *accs;
    size_t n;
    int status = eddy_decode_batch(batch_bytes(accumulators), &accs, &n);
    eddy_buf *results = eddy_alloc((n ? n : 1) * sizeof *results);
    for (size_t i = 0; status == 0 && i < n; i++) {
        results[i] = (eddy_buf){0};
        status = eddy_get_result(accs[i].value, &results[i]);
    }
    if (status == 0) set_accumulators(ret, results, n);
    eddy_udf_types_batch_free(accumulators);
    return finish(status, err);
}
#endif

#ifdef EDDY_REDUCER
bool exports_eddy_udf_reducer_reduce(exports_eddy_udf_reducer_batch_t *accumulators,
                                     exports_eddy_udf_reducer_batch_t *inputs, eddy_world_list_u32_t *targets,
                                     exports_eddy_udf_reducer_batch_t *ret, exports_eddy_udf_reducer_udf_error_t *err) {
    eddy_event *accs, *items;
    size_t n_accs = 0, n_items = 0;
    int status = eddy_decode_batch(batch_bytes(accumulators), &accs, &n_accs);
    if (status == 0) status = eddy_decode_batch(batch_bytes(inputs), &items, &n_items);
    if (status == 0 && n_items != targets->len)
        status = eddy_fail("%zu records but %zu targets", n_items, targets->len);
    for (size_t i = 0; status == 0 && i < n_items; i++) {
        uint32_t t = targets->ptr[i];
        if (t >= n_accs) {
            status = eddy_fail("target %u of %zu accumulators", t, n_accs);
            break;
        }
        status = eddy_reduce(&accs[t], &items[i]);
    }
    if (status == 0) {
        eddy_batch_writer out;
        eddy_batch_init(&out);
        for (size_t i = 0; i < n_accs; i++) eddy_batch_push(&out, &accs[i]);
        set_batch(ret, &out);
    }
    eddy_udf_types_batch_free(accumulators);
    eddy_udf_types_batch_free(inputs);
    eddy_world_list_u32_free(targets);
    return finish(status, err);
}
#endif

#ifdef EDDY_WINDOW_PROCESSOR
bool exports_eddy_udf_window_processor_process_windows(
    exports_eddy_udf_window_processor_list_window_contents_t *windows, exports_eddy_udf_window_processor_outputs_t *ret,
    exports_eddy_udf_window_processor_udf_error_t *err) {
    eddy_output out;
    eddy_output_init(&out);
    int status = 0;
    for (size_t i = 0; status == 0 && i < windows->len; i++) {
        const exports_eddy_udf_window_processor_window_contents_t *contents = &windows->ptr[i];
        eddy_window window = {0};
        window.key = option_bytes(&contents->key, &window.has_key);
        window.is_global = contents->window.tag == EDDY_UDF_TYPES_WINDOW_GLOBAL;
        if (!window.is_global) {
            window.start = contents->window.val.time.start;
            window.end = contents->window.val.time.end;
        }
        eddy_event *events;
        status = eddy_decode_batch(batch_bytes(&contents->elements), &events, &window.count);
        window.events = events;
        if (status == 0) status = eddy_process_window(&window, &out);
    }
    if (status == 0) set_outputs(ret, &out);
    exports_eddy_udf_window_processor_list_window_contents_free(windows);
    return finish(status, err);
}
#endif
