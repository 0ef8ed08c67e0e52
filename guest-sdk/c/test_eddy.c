/* Native tests of the world-independent half of the C SDK: the batch codec against the shared vectors
 * (guest-sdk/codec/testdata/vectors.json, which the Rust, Python and JavaScript codecs pass too), invalid batches,
 * and JSON written as serde_json writes it.
 *
 *   cc -std=c11 -I guest-sdk/c guest-sdk/c/test_eddy.c guest-sdk/c/eddy.c -lm -o /tmp/test_eddy
 *   /tmp/test_eddy guest-sdk/codec/testdata/vectors.json
 *
 * It ends with "N passed, N failed" and exits non-zero on a failure. */
#include "eddy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void check(bool ok, const char *what, const char *detail) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAILED: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    }
}

static eddy_bytes from_hex(eddy_bytes hex) {
    uint8_t *out = eddy_alloc(hex.len / 2 + 1);
    for (size_t i = 0; i + 1 < hex.len; i += 2) {
        char pair[3] = {(char)hex.ptr[i], (char)hex.ptr[i + 1], 0};
        out[i / 2] = (uint8_t)strtoul(pair, NULL, 16);
    }
    return (eddy_bytes){out, hex.len / 2};
}

static bool same(eddy_bytes a, eddy_bytes b) { return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0); }

/* One vector: its records written must be its wire, and its wire read must be its records. */
static void vector(const eddy_json *v) {
    eddy_bytes name, wire_hex;
    eddy_json records, record;
    eddy_json_get_string(v, "name", &name);
    char label[64];
    snprintf(label, sizeof label, "vector %.*s", (int)name.len, (const char *)name.ptr);
    eddy_json_get_string(v, "wire", &wire_hex);
    eddy_json_get(v, "records", &records);
    eddy_bytes wire = from_hex(wire_hex);

    eddy_batch_writer w;
    eddy_batch_init(&w);
    size_t n = 0, cursor = 0;
    eddy_event expected[16];
    while (eddy_json_next(&records, &cursor, &record) && n < 16) {
        eddy_json field, header, part;
        double ts;
        eddy_bytes hex;
        eddy_event *e = &expected[n++];
        *e = (eddy_event){0};
        eddy_json_get(&record, "timestamp", &field);
        /* Exact for the vectors' timestamps, which a double holds (the largest is 2^63 - 1, read as 2^63). */
        eddy_json_number(&field, &ts);
        e->timestamp = ts >= 9223372036854775807.0 ? INT64_MAX : (int64_t)ts;
        e->has_key = eddy_json_get_string(&record, "key", &hex);
        if (e->has_key) e->key = from_hex(hex);
        eddy_json_get_string(&record, "value", &hex);
        e->value = from_hex(hex);
        eddy_json_get(&record, "headers", &field);
        eddy_header_pair pairs[8];
        size_t pair_count = 0, at = 0;
        while (eddy_json_next(&field, &at, &header) && pair_count < 8) {
            size_t inner = 0;
            eddy_bytes header_name, value_hex;
            eddy_json_next(&header, &inner, &part);
            eddy_json_string(&part, &header_name);
            eddy_json_next(&header, &inner, &part);
            eddy_json_string(&part, &value_hex);
            char *c_name = eddy_alloc(header_name.len + 1);
            memcpy(c_name, header_name.ptr, header_name.len);
            c_name[header_name.len] = 0;
            pairs[pair_count++] = (eddy_header_pair){c_name, from_hex(value_hex)};
        }
        e->headers = eddy_headers_encode(pairs, pair_count);
        eddy_batch_push(&w, e);
    }
    eddy_bytes written = eddy_batch_finish(&w);
    check(same(written, wire), label, "encoding differs from the vector's wire");
    free((void *)written.ptr);

    eddy_event *events;
    size_t count;
    bool decoded = eddy_decode_batch(wire, &events, &count) == 0;
    check(decoded && count == n, label, "decoding fails or counts differ");
    for (size_t i = 0; decoded && i < n && i < count; i++) {
        bool ok = events[i].timestamp == expected[i].timestamp && events[i].has_key == expected[i].has_key &&
                  same(events[i].key, expected[i].key) && same(events[i].value, expected[i].value) &&
                  same(events[i].headers, expected[i].headers);
        check(ok, label, "a decoded record differs");
    }
}

static void invalid(const char *hex, const char *why) {
    eddy_event *events;
    size_t count;
    int status = eddy_decode_batch(from_hex(eddy_str(hex)), &events, &count);
    size_t len;
    char *message = eddy_take_error(&len);
    check(status != 0 && strstr(message, "invalid record batch") != NULL, why, message);
    free(message);
}

static void json_writes(double number, const char *expected) {
    eddy_json_writer w = {0};
    eddy_json_double(&w, number);
    check(eddy_bytes_eq(eddy_json_bytes(&w), expected), "a double written as serde_json writes it", expected);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "guest-sdk/codec/testdata/vectors.json";
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        perror(path);
        return 2;
    }
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text, file);
    fclose(file);
    eddy_json doc, v;
    check(eddy_json_parse((eddy_bytes){(const uint8_t *)text, len}, &doc), "the vectors are JSON", path);
    size_t cursor = 0, vectors = 0;
    while (eddy_json_next(&doc, &cursor, &v)) vector(&v), vectors++;
    check(vectors > 0, "there are vectors", path);

    invalid("0000", "shorter than the header");
    invalid("0000000001000000", "unknown flags");
    invalid("0100000000000000", "a row that does not fit");
    /* One row whose value (offset 0, length 5) runs past a 2-byte data area. */
    invalid("0100000000000000000000000000000000000000ffffffff00000000050000000000000000000000aabb",
            "a value outside the data area");

    json_writes(0.5, "0.5");
    json_writes(750.0, "750.0");
    json_writes(1e16, "1e16");
    json_writes(1e15, "1000000000000000.0");
    json_writes(0.00001, "0.00001");
    json_writes(1.5e-7, "1.5e-7");
    json_writes(-0.0, "-0.0");
    json_writes(0.1 + 0.2, "0.30000000000000004");

    eddy_json_writer w = {0};
    eddy_json_begin_object(&w);
    eddy_json_key(&w, eddy_str("a\"\n\x01"));
    eddy_json_begin_array(&w);
    eddy_json_int(&w, -1);
    eddy_json_string_value(&w, eddy_str("caf\xc3\xa9"));
    eddy_json_end_array(&w);
    eddy_json_key(&w, eddy_str("b"));
    eddy_json_null(&w);
    eddy_json_end_object(&w);
    check(eddy_bytes_eq(eddy_json_bytes(&w), "{\"a\\\"\\n\\u0001\":[-1,\"caf\xc3\xa9\"],\"b\":null}"),
          "JSON escapes as serde_json's", NULL);

    eddy_call_end();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
