/* Eddy's C guest SDK: write an Eddy user function as plain C functions over records.
 *
 * The SDK decodes and encodes Eddy's flat record batches (wit/README.md), calls the function the component's world
 * asks for once per record (or window, or timer) and turns a failure into the call's error. Define the functions of
 * one kind (see README.md beside this file) and build with build.sh.
 *
 * Memory: bytes the SDK hands you (an event's key, value and headers, state values) are valid until the call from
 * the host returns. Bytes you put into an output event must live at least until you return from your function:
 * eddy_alloc() gives memory that the SDK frees after the host's call, so you never free anything yourself.
 *
 * Errors: every function you define and every SDK call returns an int, 0 for success. Return eddy_fail(...) to fail
 * the call with a message; return an SDK call's non-zero result as is (EDDY_TRY does), its message is kept. */
#ifndef EDDY_H
#define EDDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------------------------------------------- */

/* A run of bytes that the SDK or your function owns (see "Memory" above). */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} eddy_bytes;

/* One record. `has_key` false means no key (an empty key is a key). `headers` is the encoded headers block, empty
 * when there are none: read it with eddy_header(), build one with eddy_headers_*. */
typedef struct {
    int64_t timestamp; /* event time, milliseconds since the Unix epoch */
    bool has_key;
    eddy_bytes key;
    eddy_bytes value;
    eddy_bytes headers;
} eddy_event;

/* A fired timer: the key it was registered for, its timestamp and clock. */
typedef enum { EDDY_EVENT_TIME = 0, EDDY_PROCESSING_TIME = 1 } eddy_time_domain;
typedef struct {
    bool has_key;
    eddy_bytes key;
    int64_t timestamp;
    eddy_time_domain domain;
} eddy_timer;

/* A window that fired: its key, its bounds (start <= ts < end; none for the global window) and its records, or the
 * one result of the aggregate or reduce function that ran before it. */
typedef struct {
    bool has_key;
    eddy_bytes key;
    bool is_global;
    int64_t start, end;
    const eddy_event *events;
    size_t count;
} eddy_window;

/* The bytes of a C string (without its NUL). */
eddy_bytes eddy_str(const char *text);
/* Whether `bytes` equal the C string `text`. */
bool eddy_bytes_eq(eddy_bytes bytes, const char *text);
/* The value of the first header called `name`; false when there is none (or the block is malformed). */
bool eddy_header(const eddy_event *event, const char *name, eddy_bytes *value);

/* ---------------------------------------------------------------------------------------------------------------
 * Memory, buffers and errors
 * ------------------------------------------------------------------------------------------------------------- */

/* `size` bytes that live until the host's call returns (never NULL: running out of memory traps). */
void *eddy_alloc(size_t size);
/* A copy of `bytes` in eddy_alloc() memory. */
eddy_bytes eddy_copy(eddy_bytes bytes);

/* A growable byte buffer in eddy_alloc() memory, for building values. */
typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} eddy_buf;
void eddy_buf_reserve(eddy_buf *buf, size_t more);
void eddy_buf_push(eddy_buf *buf, const void *bytes, size_t len);
void eddy_buf_str(eddy_buf *buf, const char *text);
void eddy_buf_byte(eddy_buf *buf, uint8_t byte);
/* printf into the buffer (no NUL is kept). */
void eddy_buf_printf(eddy_buf *buf, const char *format, ...) __attribute__((format(printf, 2, 3)));
eddy_bytes eddy_buf_bytes(const eddy_buf *buf);

/* Fails the current call with a printf-formatted message; returns -1 to return in turn. */
int eddy_fail(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* Returns from the enclosing function when `call` fails (its message is kept). */
#define EDDY_TRY(call)                                                                                              \
    do {                                                                                                            \
        int eddy_try_status_ = (call);                                                                              \
        if (eddy_try_status_ != 0) return eddy_try_status_;                                                         \
    } while (0)

/* Writes a line to the server's log (it also shows in a failure's last log lines). */
typedef enum { EDDY_TRACE, EDDY_DEBUG, EDDY_INFO, EDDY_WARN, EDDY_ERROR } eddy_level;
void eddy_log(eddy_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* The operator's config from the job spec as JSON text ("null" when none); valid for the instance's life. */
eddy_bytes eddy_config(void);

/* Text helpers (UTF-8). */
bool eddy_utf8_valid(eddy_bytes text);
/* A lower-cased copy: ASCII and Latin-1 letters (other characters are kept as they are). */
eddy_bytes eddy_lowercase(eddy_bytes text);
/* An upper-cased copy: ASCII and Latin-1 letters. */
eddy_bytes eddy_uppercase(eddy_bytes text);

/* ---------------------------------------------------------------------------------------------------------------
 * JSON: reading fields of a document and writing one, as serde_json writes it (compact, keys in the order written,
 * numbers in their shortest form that reads back the same, "1.0" for whole floats).
 * ------------------------------------------------------------------------------------------------------------- */

typedef enum { EDDY_JSON_NULL, EDDY_JSON_BOOL, EDDY_JSON_NUMBER, EDDY_JSON_STRING, EDDY_JSON_ARRAY, EDDY_JSON_OBJECT } eddy_json_type;

/* A value inside a JSON document: its type and its text (for strings: with the quotes and escapes). */
typedef struct {
    eddy_json_type type;
    eddy_bytes text;
} eddy_json;

/* Parses a whole document (surrounding whitespace allowed); false (no error set) when it is not JSON. */
bool eddy_json_parse(eddy_bytes text, eddy_json *doc);
/* The member `name` of an object; false when `object` is not an object or has no such member. */
bool eddy_json_get(const eddy_json *object, const char *name, eddy_json *member);
/* Walks the elements of an array (or the values of an object): start with *cursor = 0; false at the end. */
bool eddy_json_next(const eddy_json *container, size_t *cursor, eddy_json *element);
/* The string's text, unescaped (in eddy_alloc() memory); false when `value` is not a string. */
bool eddy_json_string(const eddy_json *value, eddy_bytes *text);
/* The number; false when `value` is not a number. */
bool eddy_json_number(const eddy_json *value, double *number);
/* Shortcuts for a member of an object: false when it is missing or of another type. */
bool eddy_json_get_string(const eddy_json *object, const char *name, eddy_bytes *text);
bool eddy_json_get_number(const eddy_json *object, const char *name, double *number);

/* A JSON writer over a buffer: call the functions in document order; commas and colons are written for you. */
typedef struct {
    eddy_buf buf;
    uint32_t depth;
    uint64_t need_comma; /* one bit per open level, up to 64 levels */
    bool after_key;
} eddy_json_writer;
void eddy_json_begin_object(eddy_json_writer *w);
void eddy_json_end_object(eddy_json_writer *w);
void eddy_json_begin_array(eddy_json_writer *w);
void eddy_json_end_array(eddy_json_writer *w);
void eddy_json_key(eddy_json_writer *w, eddy_bytes key);
void eddy_json_string_value(eddy_json_writer *w, eddy_bytes text);
void eddy_json_double(eddy_json_writer *w, double number); /* NaN and infinities are written as null */
void eddy_json_int(eddy_json_writer *w, int64_t number);
void eddy_json_uint(eddy_json_writer *w, uint64_t number);
void eddy_json_bool(eddy_json_writer *w, bool value);
void eddy_json_null(eddy_json_writer *w);
/* Copies a value read with eddy_json_parse as it is (its text). */
void eddy_json_raw(eddy_json_writer *w, const eddy_json *value);
eddy_bytes eddy_json_bytes(const eddy_json_writer *w);

/* ---------------------------------------------------------------------------------------------------------------
 * Record batches (wit/README.md). The SDK uses these itself; they are here for tests and unusual functions.
 * ------------------------------------------------------------------------------------------------------------- */

/* Decodes `wire` into eddy_alloc() memory; the events borrow from `wire`. Checks every span. */
int eddy_decode_batch(eddy_bytes wire, eddy_event **events, size_t *count);

/* A batch being written: rows and data grow in eddy_alloc() memory. */
typedef struct {
    eddy_buf rows; /* header and rows */
    eddy_buf data;
    uint32_t count;
} eddy_batch_writer;
void eddy_batch_init(eddy_batch_writer *w);
void eddy_batch_push(eddy_batch_writer *w, const eddy_event *event);
/* The encoded batch, in malloc() memory that the caller owns (the host's canonical ABI frees it). */
eddy_bytes eddy_batch_finish(eddy_batch_writer *w);

/* Headers: a block for `count` pairs, written as `eddy_header_pair`s. */
typedef struct {
    const char *name;
    eddy_bytes value;
} eddy_header_pair;
eddy_bytes eddy_headers_encode(const eddy_header_pair *pairs, size_t count);

/* ---------------------------------------------------------------------------------------------------------------
 * Output of flat-map, process and window functions
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct eddy_output eddy_output;
/* Sends a record to the main output (its bytes are copied). */
void eddy_emit(eddy_output *out, const eddy_event *event);
/* Sends a record to side output `tag` (1 to 100 ASCII letters, digits, '-' or '_'), which the job spec routes with
 * `input: <operator uid>.<tag>`. */
void eddy_emit_side(eddy_output *out, const char *tag, const eddy_event *event);

/* ---------------------------------------------------------------------------------------------------------------
 * Process functions: the context, keyed state and timers
 * ------------------------------------------------------------------------------------------------------------- */

/* What a process function's call sees: which input (0, or 1 for a co-process function's second input), the record
 * or timer being handled, and the output. */
typedef struct {
    uint32_t input;
    const eddy_event *event; /* NULL in eddy_on_timer */
    const eddy_timer *timer; /* NULL in eddy_process */
    eddy_output *out;
} eddy_context;

/* A state's time-to-live (measured in processing time). */
typedef enum { EDDY_TTL_ON_CREATE_AND_WRITE = 0, EDDY_TTL_ON_READ_AND_WRITE = 1 } eddy_ttl_update;
typedef enum { EDDY_TTL_NEVER_RETURN_EXPIRED = 0, EDDY_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP = 1 } eddy_ttl_visibility;
typedef struct {
    uint64_t time_to_live_ms;
    eddy_ttl_update update;
    eddy_ttl_visibility visibility;
} eddy_ttl;

/* A state handle, opened for the current key and released by the SDK after the current record or timer: open it
 * again for the next one (opening twice within one record is cheap, the handle is cached). */
typedef struct eddy_state eddy_state;

/* Opens state `name` (ttl may be NULL). The name is how checkpoints and savepoints find the state: keep it stable. */
int eddy_value_state(eddy_context *ctx, const char *name, const eddy_ttl *ttl, eddy_state **state);
int eddy_list_state(eddy_context *ctx, const char *name, const eddy_ttl *ttl, eddy_state **state);
int eddy_map_state(eddy_context *ctx, const char *name, const eddy_ttl *ttl, eddy_state **state);

int eddy_value_get(eddy_state *state, eddy_bytes *value, bool *found);
int eddy_value_set(eddy_state *state, eddy_bytes value);
int eddy_value_clear(eddy_state *state);

int eddy_list_get(eddy_state *state, eddy_bytes **values, size_t *count);
int eddy_list_add(eddy_state *state, eddy_bytes value);
int eddy_list_update(eddy_state *state, const eddy_bytes *values, size_t count);
int eddy_list_clear(eddy_state *state);

typedef struct {
    eddy_bytes key, value;
} eddy_entry;
int eddy_map_get(eddy_state *state, eddy_bytes key, eddy_bytes *value, bool *found);
int eddy_map_put(eddy_state *state, eddy_bytes key, eddy_bytes value);
int eddy_map_remove(eddy_state *state, eddy_bytes key);
int eddy_map_contains(eddy_state *state, eddy_bytes key, bool *found);
/* All entries, ordered by key bytes. */
int eddy_map_entries(eddy_state *state, eddy_entry **entries, size_t *count);
int eddy_map_is_empty(eddy_state *state, bool *empty);
int eddy_map_clear(eddy_state *state);

/* The current key (false when the operator is not keyed), watermark and processing time. */
bool eddy_current_key(eddy_context *ctx, eddy_bytes *key);
int64_t eddy_current_watermark(eddy_context *ctx);
int64_t eddy_current_processing_time(eddy_context *ctx);
/* Timers belong to the current key; one exists per key, timestamp and clock. */
int eddy_register_event_time_timer(eddy_context *ctx, int64_t timestamp);
int eddy_delete_event_time_timer(eddy_context *ctx, int64_t timestamp);
int eddy_register_processing_time_timer(eddy_context *ctx, int64_t timestamp);
int eddy_delete_processing_time_timer(eddy_context *ctx, int64_t timestamp);

/* A state a process function opens, for eddy_declared_states. */
typedef enum { EDDY_STATE_VALUE = 0, EDDY_STATE_LIST = 1, EDDY_STATE_MAP = 2 } eddy_state_kind;
typedef struct {
    const char *name;
    eddy_state_kind kind;
    const eddy_ttl *ttl; /* NULL: none */
} eddy_state_declaration;

/* ---------------------------------------------------------------------------------------------------------------
 * What you define: the functions of one kind (build.sh picks the kind from the world your source names).
 * Functions marked optional have defaults.
 * ------------------------------------------------------------------------------------------------------------- */

/* Every kind, optional: runs once per instance with the job's config (JSON text, "null" when none). */
int eddy_init(eddy_bytes config);

/* mapper-udf: `out` starts as a copy of `in`; change what you need. */
int eddy_map(const eddy_event *in, eddy_event *out);
/* filter-udf: set *keep (it starts true). */
int eddy_filter(const eddy_event *in, bool *keep);
/* flat-mapper-udf: emit any number of records. */
int eddy_flat_map(const eddy_event *in, eddy_output *out);
/* key-selector-udf: set the key (it starts as the record's own). Set has_key false for no key. */
int eddy_select_key(const eddy_event *in, bool *has_key, eddy_bytes *key);
/* timestamp-assigner-udf: set *timestamp (it starts as the record's own). */
int eddy_extract_timestamp(const eddy_event *in, int64_t *timestamp);

/* processor-udf: per record; eddy_on_timer (optional) per fired timer; eddy_declared_states (optional) lists
 * every state the function opens (set *count and return true), or returns false (the default) to declare none. */
int eddy_process(const eddy_event *in, eddy_context *ctx);
int eddy_on_timer(const eddy_timer *timer, eddy_context *ctx);
bool eddy_declared_states(const eddy_state_declaration **states, size_t *count);

/* aggregator-udf: accumulators are bytes the host keeps. Build a fresh one into `acc`; add a record to one and
 * merge one into another by replacing `acc` (its bytes are valid during the call; set acc->len to resize within
 * acc->cap, or point acc elsewhere with eddy_buf_*); write a result value. */
int eddy_create_accumulator(eddy_buf *acc);
int eddy_add(eddy_buf *acc, const eddy_event *in);
int eddy_merge(eddy_buf *acc, eddy_bytes other);
int eddy_get_result(eddy_bytes acc, eddy_buf *result);

/* reducer-udf: fold `in` into `acc` (a record of the window; its fields may point to eddy_alloc() memory). */
int eddy_reduce(eddy_event *acc, const eddy_event *in);

/* window-processor-udf: emitted records carry the timestamp you give them (Flink's convention: window.end - 1). */
int eddy_process_window(const eddy_window *window, eddy_output *out);

/* ---------------------------------------------------------------------------------------------------------------
 * Inside the SDK: shared by eddy.c and the per-kind glue.
 * ------------------------------------------------------------------------------------------------------------- */

/* Frees what eddy_alloc() handed out during the call, and what eddy_adopt() was given. */
void eddy_call_end(void);
/* Frees `ptr` (malloc() memory) when the call ends. */
void eddy_adopt(void *ptr);

/* An output: the main batch and one batch per side-output tag, in the order tags were first used. */
typedef struct {
    const char *tag;
    eddy_batch_writer records;
} eddy_side_writer;
struct eddy_output {
    eddy_batch_writer main;
    eddy_side_writer *sides;
    size_t side_count, side_cap;
};
void eddy_output_init(eddy_output *out);
/* The message of the last failure (a NUL-terminated string in malloc() memory that the caller then owns), or a
 * fallback when the function returned non-zero without eddy_fail. */
char *eddy_take_error(size_t *len);

#ifdef __cplusplus
}
#endif

#endif
