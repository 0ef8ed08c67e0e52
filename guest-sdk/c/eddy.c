/* Eddy's C guest SDK, the part that does not depend on a world: memory, errors, text, JSON and the batch codec.
 * It compiles natively too, so that test_eddy.c checks the codec against the shared vectors without Wasm. */
#include "eddy.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------------------
 * Memory: one arena per host call, so that authors never free and a call leaves nothing behind.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct block {
    struct block *next;
    size_t used, size;
    _Alignas(16) uint8_t bytes[];
} block;

static block *arena;
enum { BLOCK_SIZE = 64 * 1024 };

void *eddy_alloc(size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (arena == NULL || arena->size - arena->used < size) {
        size_t capacity = size > BLOCK_SIZE / 4 ? size : BLOCK_SIZE;
        block *fresh = malloc(sizeof(block) + capacity);
        if (fresh == NULL) __builtin_trap(); /* the host reports the instance's memory limit */
        fresh->used = 0;
        fresh->size = capacity;
        if (capacity == size && arena != NULL) {
            /* A large allocation of its own: keep filling the current block. */
            fresh->next = arena->next;
            arena->next = fresh;
            fresh->used = size;
            return fresh->bytes;
        }
        fresh->next = arena;
        arena = fresh;
    }
    void *at = arena->bytes + arena->used;
    arena->used += size;
    return at;
}

/* Pointers to free at the call's end, kept in the arena itself. */
typedef struct adopted {
    struct adopted *next;
    void *ptr;
} adopted;
static adopted *adopted_list;

void eddy_adopt(void *ptr) {
    if (ptr == NULL) return;
    adopted *node = eddy_alloc(sizeof *node);
    node->ptr = ptr;
    node->next = adopted_list;
    adopted_list = node;
}

void eddy_call_end(void) {
    for (adopted *node = adopted_list; node != NULL; node = node->next) free(node->ptr);
    adopted_list = NULL;
    while (arena != NULL) {
        block *next = arena->next;
        free(arena);
        arena = next;
    }
}

eddy_bytes eddy_copy(eddy_bytes bytes) {
    uint8_t *to = eddy_alloc(bytes.len ? bytes.len : 1);
    if (bytes.len) memcpy(to, bytes.ptr, bytes.len);
    return (eddy_bytes){to, bytes.len};
}

eddy_bytes eddy_str(const char *text) { return (eddy_bytes){(const uint8_t *)text, strlen(text)}; }

bool eddy_bytes_eq(eddy_bytes bytes, const char *text) {
    size_t n = strlen(text);
    return bytes.len == n && (n == 0 || memcmp(bytes.ptr, text, n) == 0);
}

void eddy_buf_reserve(eddy_buf *buf, size_t more) {
    if (buf->cap - buf->len >= more) return;
    size_t cap = buf->cap ? buf->cap * 2 : 64;
    while (cap - buf->len < more) cap *= 2;
    uint8_t *grown = eddy_alloc(cap);
    if (buf->len) memcpy(grown, buf->ptr, buf->len);
    buf->ptr = grown;
    buf->cap = cap;
}

void eddy_buf_push(eddy_buf *buf, const void *bytes, size_t len) {
    if (len == 0) return;
    eddy_buf_reserve(buf, len);
    memcpy(buf->ptr + buf->len, bytes, len);
    buf->len += len;
}

void eddy_buf_str(eddy_buf *buf, const char *text) { eddy_buf_push(buf, text, strlen(text)); }

void eddy_buf_byte(eddy_buf *buf, uint8_t byte) { eddy_buf_push(buf, &byte, 1); }

static void buf_vprintf(eddy_buf *buf, const char *format, va_list args) {
    va_list again;
    va_copy(again, args);
    int n = vsnprintf(NULL, 0, format, args);
    if (n > 0) {
        eddy_buf_reserve(buf, (size_t)n + 1);
        vsnprintf((char *)buf->ptr + buf->len, (size_t)n + 1, format, again);
        buf->len += (size_t)n;
    }
    va_end(again);
}

void eddy_buf_printf(eddy_buf *buf, const char *format, ...) {
    va_list args;
    va_start(args, format);
    buf_vprintf(buf, format, args);
    va_end(args);
}

eddy_bytes eddy_buf_bytes(const eddy_buf *buf) { return (eddy_bytes){buf->ptr, buf->len}; }

/* ---------------------------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------------------------- */

/* malloc() memory: it outlives the call's arena, until the glue hands it to the host. */
static char *error_message;

int eddy_fail(const char *format, ...) {
    va_list args, again;
    va_start(args, format);
    va_copy(again, args);
    int n = vsnprintf(NULL, 0, format, args);
    free(error_message);
    error_message = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (error_message == NULL) __builtin_trap();
    vsnprintf(error_message, n > 0 ? (size_t)n + 1 : 1, format, again);
    va_end(again);
    va_end(args);
    return -1;
}

char *eddy_take_error(size_t *len) {
    char *message = error_message;
    error_message = NULL;
    if (message == NULL) {
        static const char fallback[] = "the function failed without a message";
        message = malloc(sizeof fallback);
        if (message == NULL) __builtin_trap();
        memcpy(message, fallback, sizeof fallback);
    }
    *len = strlen(message);
    return message;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Text
 * ------------------------------------------------------------------------------------------------------------- */

bool eddy_utf8_valid(eddy_bytes text) {
    const uint8_t *s = text.ptr;
    size_t i = 0, n = text.len;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint32_t min;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) more = 1, min = 0x80, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) more = 2, min = 0x800, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) more = 3, min = 0x10000, cp = c & 0x07;
        else return false;
        if (n - i <= more) return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += more + 1;
    }
    return true;
}

/* Latin-1 letters are U+00C0..U+00DE (capitals, but U+00D7 ×) and U+00E0..U+00FE (small, but U+00F7 ÷); in UTF-8
 * both are 0xC3 followed by a byte 0x20 apart. */
static eddy_bytes change_case(eddy_bytes text, bool lower) {
    uint8_t *out = eddy_alloc(text.len ? text.len : 1);
    for (size_t i = 0; i < text.len; i++) {
        uint8_t c = text.ptr[i];
        if (lower && c >= 'A' && c <= 'Z') c += 32;
        else if (!lower && c >= 'a' && c <= 'z') c -= 32;
        else if (c == 0xC3 && i + 1 < text.len) {
            uint8_t next = text.ptr[i + 1];
            if (lower && next >= 0x80 && next <= 0x9E && next != 0x97) next += 0x20;
            else if (!lower && next >= 0xA0 && next <= 0xBE && next != 0xB7) next -= 0x20;
            out[i++] = c;
            c = next;
        }
        out[i] = c;
    }
    return (eddy_bytes){out, text.len};
}

eddy_bytes eddy_lowercase(eddy_bytes text) { return change_case(text, true); }
eddy_bytes eddy_uppercase(eddy_bytes text) { return change_case(text, false); }

bool eddy_header(const eddy_event *event, const char *name, eddy_bytes *value) {
    const uint8_t *h = event->headers.ptr;
    size_t len = event->headers.len, at = 2, want = strlen(name);
    if (len < 2) return false;
    unsigned count = (unsigned)h[0] | (unsigned)h[1] << 8;
    for (unsigned i = 0; i < count; i++) {
        if (len - at < 2) return false;
        size_t name_len = (size_t)h[at] | (size_t)h[at + 1] << 8;
        at += 2;
        if (len - at < name_len + 4) return false;
        const uint8_t *n = h + at;
        at += name_len;
        size_t value_len = (size_t)h[at] | (size_t)h[at + 1] << 8 | (size_t)h[at + 2] << 16 | (size_t)h[at + 3] << 24;
        at += 4;
        if (len - at < value_len) return false;
        if (name_len == want && memcmp(n, name, want) == 0) {
            *value = (eddy_bytes){h + at, value_len};
            return true;
        }
        at += value_len;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Record batches
 * ------------------------------------------------------------------------------------------------------------- */

enum { HEADER_LEN = 8, ROW_LEN = 32 };
#define NO_KEY 0xFFFFFFFFu

static uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static bool headers_valid(const uint8_t *h, size_t len) {
    if (len == 0) return true;
    if (len < 2) return false;
    unsigned count = (unsigned)h[0] | (unsigned)h[1] << 8;
    size_t at = 2;
    for (unsigned i = 0; i < count; i++) {
        if (len - at < 2) return false;
        size_t name_len = (size_t)h[at] | (size_t)h[at + 1] << 8;
        at += 2;
        if (len - at < name_len + 4) return false;
        if (!eddy_utf8_valid((eddy_bytes){h + at, name_len})) return false;
        at += name_len;
        size_t value_len = u32_at(h + at);
        at += 4;
        if (len - at < value_len) return false;
        at += value_len;
    }
    return true;
}

int eddy_decode_batch(eddy_bytes wire, eddy_event **events, size_t *count) {
    if (wire.len < HEADER_LEN)
        return eddy_fail("invalid record batch: %zu bytes is shorter than the %d-byte header", wire.len, HEADER_LEN);
    uint32_t n = u32_at(wire.ptr), flags = u32_at(wire.ptr + 4);
    if (flags != 0) return eddy_fail("invalid record batch: unknown flags %#x", flags);
    if ((uint64_t)n * ROW_LEN > wire.len - HEADER_LEN)
        return eddy_fail("invalid record batch: %u rows do not fit in %zu bytes", n, wire.len);
    const uint8_t *data = wire.ptr + HEADER_LEN + (size_t)n * ROW_LEN;
    uint64_t data_len = wire.len - HEADER_LEN - (size_t)n * ROW_LEN;
    eddy_event *out = eddy_alloc(sizeof(eddy_event) * (n ? n : 1));
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *row = wire.ptr + HEADER_LEN + (size_t)i * ROW_LEN;
        uint64_t ts = 0;
        for (int b = 7; b >= 0; b--) ts = ts << 8 | row[b];
        uint32_t key_off = u32_at(row + 8), key_len = u32_at(row + 12);
        uint32_t value_off = u32_at(row + 16), value_len = u32_at(row + 20);
        uint32_t headers_off = u32_at(row + 24), headers_len = u32_at(row + 28);
        bool has_key = key_len != NO_KEY;
        if (has_key && (uint64_t)key_off + key_len > data_len)
            return eddy_fail("invalid record batch: a key lies outside the data area");
        if ((uint64_t)value_off + value_len > data_len)
            return eddy_fail("invalid record batch: a value lies outside the data area");
        if ((uint64_t)headers_off + headers_len > data_len)
            return eddy_fail("invalid record batch: headers lie outside the data area");
        if (!headers_valid(data + headers_off, headers_len))
            return eddy_fail("invalid record batch: headers are malformed");
        out[i] = (eddy_event){
            .timestamp = (int64_t)ts,
            .has_key = has_key,
            .key = has_key ? (eddy_bytes){data + key_off, key_len} : (eddy_bytes){NULL, 0},
            .value = {data + value_off, value_len},
            .headers = {headers_len ? data + headers_off : NULL, headers_len},
        };
    }
    *events = out;
    *count = n;
    return 0;
}

void eddy_batch_init(eddy_batch_writer *w) {
    *w = (eddy_batch_writer){0};
    eddy_buf_push(&w->rows, (const uint8_t[HEADER_LEN]){0}, HEADER_LEN);
}

/* Spans are written as the Rust codec writes them: key, value, headers appended in that order, an empty one at the
 * current end, no key as (0, NO_KEY) and no headers as (0, 0). */
void eddy_batch_push(eddy_batch_writer *w, const eddy_event *event) {
    uint8_t row[ROW_LEN];
    put_u64(row, (uint64_t)event->timestamp);
    if (event->has_key) {
        put_u32(row + 8, (uint32_t)w->data.len);
        put_u32(row + 12, (uint32_t)event->key.len);
        eddy_buf_push(&w->data, event->key.ptr, event->key.len);
    } else {
        put_u32(row + 8, 0);
        put_u32(row + 12, NO_KEY);
    }
    put_u32(row + 16, (uint32_t)w->data.len);
    put_u32(row + 20, (uint32_t)event->value.len);
    eddy_buf_push(&w->data, event->value.ptr, event->value.len);
    if (event->headers.len) {
        put_u32(row + 24, (uint32_t)w->data.len);
        put_u32(row + 28, (uint32_t)event->headers.len);
        eddy_buf_push(&w->data, event->headers.ptr, event->headers.len);
    } else {
        put_u32(row + 24, 0);
        put_u32(row + 28, 0);
    }
    eddy_buf_push(&w->rows, row, ROW_LEN);
    w->count++;
}

eddy_bytes eddy_batch_finish(eddy_batch_writer *w) {
    if (w->rows.len == 0) eddy_batch_init(w);
    size_t len = w->rows.len + w->data.len;
    uint8_t *out = malloc(len);
    if (out == NULL) __builtin_trap();
    put_u32(w->rows.ptr, w->count);
    memcpy(out, w->rows.ptr, w->rows.len);
    if (w->data.len) memcpy(out + w->rows.len, w->data.ptr, w->data.len);
    return (eddy_bytes){out, len};
}

eddy_bytes eddy_headers_encode(const eddy_header_pair *pairs, size_t count) {
    eddy_buf buf = {0};
    if (count == 0) return (eddy_bytes){NULL, 0};
    uint8_t two[2] = {(uint8_t)count, (uint8_t)(count >> 8)};
    eddy_buf_push(&buf, two, 2);
    for (size_t i = 0; i < count; i++) {
        size_t name_len = strlen(pairs[i].name);
        uint8_t n[2] = {(uint8_t)name_len, (uint8_t)(name_len >> 8)};
        uint8_t v[4];
        put_u32(v, (uint32_t)pairs[i].value.len);
        eddy_buf_push(&buf, n, 2);
        eddy_buf_push(&buf, pairs[i].name, name_len);
        eddy_buf_push(&buf, v, 4);
        eddy_buf_push(&buf, pairs[i].value.ptr, pairs[i].value.len);
    }
    return eddy_buf_bytes(&buf);
}

/* ---------------------------------------------------------------------------------------------------------------
 * JSON reading: a validating skip over the grammar (RFC 8259), which also finds members without building a tree.
 * ------------------------------------------------------------------------------------------------------------- */

enum { JSON_MAX_DEPTH = 128 };

typedef struct {
    const uint8_t *s;
    size_t n, at;
} json_cursor;

static void skip_ws(json_cursor *c) {
    while (c->at < c->n && (c->s[c->at] == ' ' || c->s[c->at] == '\t' || c->s[c->at] == '\n' || c->s[c->at] == '\r'))
        c->at++;
}

static bool is_hex(uint8_t b) { return (b >= '0' && b <= '9') || ((b | 32) >= 'a' && (b | 32) <= 'f'); }

static bool skip_string(json_cursor *c) {
    if (c->at >= c->n || c->s[c->at] != '"') return false;
    c->at++;
    while (c->at < c->n) {
        uint8_t b = c->s[c->at++];
        if (b == '"') return true;
        if (b < 0x20) return false;
        if (b == '\\') {
            if (c->at >= c->n) return false;
            uint8_t e = c->s[c->at++];
            if (e == 'u') {
                if (c->n - c->at < 4) return false;
                for (int k = 0; k < 4; k++)
                    if (!is_hex(c->s[c->at + k])) return false;
                c->at += 4;
            } else if (!strchr("\"\\/bfnrt", e) || e == 0) {
                return false;
            }
        }
    }
    return false;
}

static bool skip_digits(json_cursor *c) {
    size_t start = c->at;
    while (c->at < c->n && c->s[c->at] >= '0' && c->s[c->at] <= '9') c->at++;
    return c->at > start;
}

static bool skip_number(json_cursor *c) {
    if (c->at < c->n && c->s[c->at] == '-') c->at++;
    if (c->at < c->n && c->s[c->at] == '0') c->at++;
    else if (!skip_digits(c)) return false;
    if (c->at < c->n && c->s[c->at] == '.') {
        c->at++;
        if (!skip_digits(c)) return false;
    }
    if (c->at < c->n && (c->s[c->at] | 32) == 'e') {
        c->at++;
        if (c->at < c->n && (c->s[c->at] == '+' || c->s[c->at] == '-')) c->at++;
        if (!skip_digits(c)) return false;
    }
    return true;
}

static bool skip_literal(json_cursor *c, const char *word) {
    size_t len = strlen(word);
    if (c->n - c->at < len || memcmp(c->s + c->at, word, len) != 0) return false;
    c->at += len;
    return true;
}

static bool skip_value(json_cursor *c, int depth, eddy_json *value) {
    skip_ws(c);
    if (c->at >= c->n || depth > JSON_MAX_DEPTH) return false;
    size_t start = c->at;
    uint8_t b = c->s[c->at];
    bool ok;
    if (b == '{' || b == '[') {
        uint8_t close = b == '{' ? '}' : ']';
        value->type = b == '{' ? EDDY_JSON_OBJECT : EDDY_JSON_ARRAY;
        c->at++;
        skip_ws(c);
        ok = true;
        if (c->at < c->n && c->s[c->at] == close) {
            c->at++;
        } else {
            for (;;) {
                eddy_json ignored;
                if (b == '{') {
                    skip_ws(c);
                    if (!skip_string(c)) return false;
                    skip_ws(c);
                    if (c->at >= c->n || c->s[c->at++] != ':') return false;
                }
                if (!skip_value(c, depth + 1, &ignored)) return false;
                skip_ws(c);
                if (c->at >= c->n) return false;
                uint8_t next = c->s[c->at++];
                if (next == close) break;
                if (next != ',') return false;
            }
        }
    } else if (b == '"') {
        value->type = EDDY_JSON_STRING;
        ok = skip_string(c);
    } else if (b == 't' || b == 'f') {
        value->type = EDDY_JSON_BOOL;
        ok = skip_literal(c, b == 't' ? "true" : "false");
    } else if (b == 'n') {
        value->type = EDDY_JSON_NULL;
        ok = skip_literal(c, "null");
    } else {
        value->type = EDDY_JSON_NUMBER;
        ok = skip_number(c);
    }
    value->text = (eddy_bytes){c->s + start, c->at - start};
    return ok;
}

bool eddy_json_parse(eddy_bytes text, eddy_json *doc) {
    if (!eddy_utf8_valid(text)) return false;
    json_cursor c = {text.ptr, text.len, 0};
    if (!skip_value(&c, 0, doc)) return false;
    skip_ws(&c);
    return c.at == c.n;
}

bool eddy_json_next(const eddy_json *container, size_t *cursor, eddy_json *element) {
    if (container->type != EDDY_JSON_ARRAY && container->type != EDDY_JSON_OBJECT) return false;
    /* Only documents that eddy_json_parse accepted get here, so the skips cannot fail. */
    json_cursor c = {container->text.ptr, container->text.len, *cursor ? *cursor : 1};
    skip_ws(&c);
    if (c.at < c.n && c.s[c.at] == ',') c.at++;
    skip_ws(&c);
    if (c.at >= c.n - 1) return false;
    if (container->type == EDDY_JSON_OBJECT) {
        skip_string(&c);
        skip_ws(&c);
        c.at++; /* the colon */
    }
    if (!skip_value(&c, 0, element)) return false;
    *cursor = c.at;
    return true;
}

bool eddy_json_string(const eddy_json *value, eddy_bytes *text) {
    if (value->type != EDDY_JSON_STRING) return false;
    const uint8_t *s = value->text.ptr + 1;
    size_t n = value->text.len - 2;
    if (memchr(s, '\\', n) == NULL) {
        *text = (eddy_bytes){s, n};
        return true;
    }
    uint8_t *out = eddy_alloc(n);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        uint8_t e = s[++i];
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp = (uint32_t)strtoul((char[5]){(char)s[i + 1], (char)s[i + 2], (char)s[i + 3], (char)s[i + 4], 0},
                                            NULL, 16);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < n + 0 && s[i + 1] == '\\' && s[i + 2] == 'u') {
                uint32_t low = (uint32_t)strtoul(
                    (char[5]){(char)s[i + 3], (char)s[i + 4], (char)s[i + 5], (char)s[i + 6], 0}, NULL, 16);
                if (low >= 0xDC00 && low < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* a lone surrogate */
            if (cp < 0x80) out[o++] = (uint8_t)cp;
            else if (cp < 0x800) out[o++] = (uint8_t)(0xC0 | cp >> 6), out[o++] = (uint8_t)(0x80 | (cp & 0x3F));
            else if (cp < 0x10000)
                out[o++] = (uint8_t)(0xE0 | cp >> 12), out[o++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)),
                out[o++] = (uint8_t)(0x80 | (cp & 0x3F));
            else
                out[o++] = (uint8_t)(0xF0 | cp >> 18), out[o++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F)),
                out[o++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)), out[o++] = (uint8_t)(0x80 | (cp & 0x3F));
            break;
        }
        default: out[o++] = e; break; /* " \ / */
        }
    }
    *text = (eddy_bytes){out, o};
    return true;
}

bool eddy_json_number(const eddy_json *value, double *number) {
    if (value->type != EDDY_JSON_NUMBER) return false;
    char small[64];
    char *text = value->text.len < sizeof small ? small : eddy_alloc(value->text.len + 1);
    memcpy(text, value->text.ptr, value->text.len);
    text[value->text.len] = 0;
    *number = strtod(text, NULL);
    return true;
}

bool eddy_json_get(const eddy_json *object, const char *name, eddy_json *member) {
    if (object->type != EDDY_JSON_OBJECT) return false;
    json_cursor c = {object->text.ptr, object->text.len, 1};
    bool found = false;
    for (;;) {
        skip_ws(&c);
        if (c.at >= c.n - 1) return found;
        eddy_json key = {EDDY_JSON_STRING, {c.s + c.at, 0}};
        size_t key_start = c.at;
        skip_string(&c);
        key.text.len = c.at - key_start;
        skip_ws(&c);
        c.at++; /* the colon */
        eddy_json value;
        skip_value(&c, 0, &value);
        eddy_bytes unescaped;
        /* A repeated name: the last one wins, as in serde_json's maps. */
        if (eddy_json_string(&key, &unescaped) && eddy_bytes_eq(unescaped, name)) {
            *member = value;
            found = true;
        }
        skip_ws(&c);
        if (c.at < c.n && c.s[c.at] == ',') c.at++;
    }
}

bool eddy_json_get_string(const eddy_json *object, const char *name, eddy_bytes *text) {
    eddy_json member;
    return eddy_json_get(object, name, &member) && eddy_json_string(&member, text);
}

bool eddy_json_get_number(const eddy_json *object, const char *name, double *number) {
    eddy_json member;
    return eddy_json_get(object, name, &member) && eddy_json_number(&member, number);
}

/* ---------------------------------------------------------------------------------------------------------------
 * JSON writing, byte for byte as serde_json writes compact JSON.
 * ------------------------------------------------------------------------------------------------------------- */

static void before_value(eddy_json_writer *w) {
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth > 0 && w->depth <= 64) {
        uint64_t bit = 1ull << (w->depth - 1);
        if (w->need_comma & bit) eddy_buf_byte(&w->buf, ',');
        w->need_comma |= bit;
    }
}

static void open(eddy_json_writer *w, uint8_t bracket) {
    before_value(w);
    eddy_buf_byte(&w->buf, bracket);
    w->depth++;
    if (w->depth <= 64) w->need_comma &= ~(1ull << (w->depth - 1));
}

static void close_(eddy_json_writer *w, uint8_t bracket) {
    eddy_buf_byte(&w->buf, bracket);
    if (w->depth > 0) w->depth--;
}

void eddy_json_begin_object(eddy_json_writer *w) { open(w, '{'); }
void eddy_json_end_object(eddy_json_writer *w) { close_(w, '}'); }
void eddy_json_begin_array(eddy_json_writer *w) { open(w, '['); }
void eddy_json_end_array(eddy_json_writer *w) { close_(w, ']'); }

/* serde_json escapes quote, backslash and control characters, with the short forms where JSON has them. */
static void write_string(eddy_buf *buf, eddy_bytes text) {
    static const char hex[] = "0123456789abcdef";
    eddy_buf_reserve(buf, text.len + 2);
    eddy_buf_byte(buf, '"');
    for (size_t i = 0; i < text.len; i++) {
        uint8_t b = text.ptr[i];
        switch (b) {
        case '"': eddy_buf_str(buf, "\\\""); break;
        case '\\': eddy_buf_str(buf, "\\\\"); break;
        case '\b': eddy_buf_str(buf, "\\b"); break;
        case '\f': eddy_buf_str(buf, "\\f"); break;
        case '\n': eddy_buf_str(buf, "\\n"); break;
        case '\r': eddy_buf_str(buf, "\\r"); break;
        case '\t': eddy_buf_str(buf, "\\t"); break;
        default:
            if (b < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[b >> 4], hex[b & 15]};
                eddy_buf_push(buf, u, 6);
            } else {
                eddy_buf_byte(buf, b);
            }
        }
    }
    eddy_buf_byte(buf, '"');
}

void eddy_json_key(eddy_json_writer *w, eddy_bytes key) {
    before_value(w);
    write_string(&w->buf, key);
    eddy_buf_byte(&w->buf, ':');
    w->after_key = true;
}

void eddy_json_string_value(eddy_json_writer *w, eddy_bytes text) {
    before_value(w);
    write_string(&w->buf, text);
}

/* The shortest digits that read back as `number` (as Ryu finds them), laid out as Ryu lays them out. */
static void write_double(eddy_buf *buf, double number) {
    if (number == 0) {
        eddy_buf_str(buf, signbit(number) ? "-0.0" : "0.0");
        return;
    }
    char sci[40];
    for (int precision = 0; precision < 17; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision, number);
        if (strtod(sci, NULL) == number) break;
    }
    /* sci is [-]d[.ddd]e[+-]xx */
    const char *p = sci;
    bool negative = *p == '-';
    if (negative) p++;
    char digits[24];
    int length = 0;
    for (; *p != 'e'; p++)
        if (*p != '.') digits[length++] = *p;
    while (length > 1 && digits[length - 1] == '0') length--;
    int exponent = atoi(p + 1);
    int kk = exponent + 1; /* the decimal point's place, counted from the first digit */
    int k = kk - length;   /* the value is digits * 10^k */
    if (negative) eddy_buf_byte(buf, '-');
    if (k >= 0 && kk <= 16) {
        eddy_buf_push(buf, digits, (size_t)length);
        for (int i = 0; i < k; i++) eddy_buf_byte(buf, '0');
        eddy_buf_str(buf, ".0");
    } else if (kk > 0 && kk <= 16) {
        eddy_buf_push(buf, digits, (size_t)kk);
        eddy_buf_byte(buf, '.');
        eddy_buf_push(buf, digits + kk, (size_t)(length - kk));
    } else if (kk > -5 && kk <= 0) {
        eddy_buf_str(buf, "0.");
        for (int i = 0; i < -kk; i++) eddy_buf_byte(buf, '0');
        eddy_buf_push(buf, digits, (size_t)length);
    } else {
        eddy_buf_byte(buf, (uint8_t)digits[0]);
        if (length > 1) {
            eddy_buf_byte(buf, '.');
            eddy_buf_push(buf, digits + 1, (size_t)(length - 1));
        }
        eddy_buf_printf(buf, "e%d", kk - 1);
    }
}

void eddy_json_double(eddy_json_writer *w, double number) {
    before_value(w);
    if (isnan(number) || isinf(number)) eddy_buf_str(&w->buf, "null");
    else write_double(&w->buf, number);
}

void eddy_json_int(eddy_json_writer *w, int64_t number) {
    before_value(w);
    eddy_buf_printf(&w->buf, "%lld", (long long)number);
}

void eddy_json_uint(eddy_json_writer *w, uint64_t number) {
    before_value(w);
    eddy_buf_printf(&w->buf, "%llu", (unsigned long long)number);
}

void eddy_json_bool(eddy_json_writer *w, bool value) {
    before_value(w);
    eddy_buf_str(&w->buf, value ? "true" : "false");
}

void eddy_json_null(eddy_json_writer *w) {
    before_value(w);
    eddy_buf_str(&w->buf, "null");
}

void eddy_json_raw(eddy_json_writer *w, const eddy_json *value) {
    before_value(w);
    eddy_buf_push(&w->buf, value->text.ptr, value->text.len);
}

eddy_bytes eddy_json_bytes(const eddy_json_writer *w) { return eddy_buf_bytes(&w->buf); }

/* ---------------------------------------------------------------------------------------------------------------
 * Outputs
 * ------------------------------------------------------------------------------------------------------------- */

void eddy_output_init(eddy_output *out) {
    *out = (eddy_output){0};
    eddy_batch_init(&out->main);
}

void eddy_emit(eddy_output *out, const eddy_event *event) { eddy_batch_push(&out->main, event); }

void eddy_emit_side(eddy_output *out, const char *tag, const eddy_event *event) {
    for (size_t i = 0; i < out->side_count; i++) {
        if (strcmp(out->sides[i].tag, tag) == 0) {
            eddy_batch_push(&out->sides[i].records, event);
            return;
        }
    }
    if (out->side_count == out->side_cap) {
        size_t cap = out->side_cap ? out->side_cap * 2 : 4;
        eddy_side_writer *grown = eddy_alloc(cap * sizeof *grown);
        if (out->side_count) memcpy(grown, out->sides, out->side_count * sizeof *grown);
        out->sides = grown;
        out->side_cap = cap;
    }
    eddy_side_writer *side = &out->sides[out->side_count++];
    eddy_bytes copy = eddy_copy((eddy_bytes){(const uint8_t *)tag, strlen(tag) + 1});
    side->tag = (const char *)copy.ptr;
    eddy_batch_init(&side->records);
    eddy_batch_push(&side->records, event);
}
