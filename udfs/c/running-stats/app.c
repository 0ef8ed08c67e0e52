/* Count, sum, min and max of the `amount` field, as `{count, sum, min, max}` (world `aggregator-udf`), like
 * udfs/rust/running-stats. The accumulator is that same JSON, as the Rust module keeps it, so that either module
 * reads the other's window state. */
#include "eddy.h"

#include <math.h>

typedef struct {
    uint64_t count;
    double sum;
    bool has_min, has_max; /* none while empty: JSON has no infinities to start from */
    double min, max;
} stats;

static int decode(eddy_bytes bytes, stats *s) {
    eddy_json doc, field;
    double count;
    *s = (stats){0};
    if (!eddy_json_parse(bytes, &doc) || !eddy_json_get_number(&doc, "count", &count) ||
        !eddy_json_get_number(&doc, "sum", &s->sum))
        return eddy_fail("an accumulator must be {count, sum, min, max}");
    s->count = (uint64_t)count;
    s->has_min = eddy_json_get(&doc, "min", &field) && eddy_json_number(&field, &s->min);
    s->has_max = eddy_json_get(&doc, "max", &field) && eddy_json_number(&field, &s->max);
    return 0;
}

static void encode(const stats *s, eddy_buf *out) {
    eddy_json_writer w = {0};
    eddy_json_begin_object(&w);
    eddy_json_key(&w, eddy_str("count"));
    eddy_json_uint(&w, s->count);
    eddy_json_key(&w, eddy_str("sum"));
    eddy_json_double(&w, s->sum);
    eddy_json_key(&w, eddy_str("min"));
    if (s->has_min) eddy_json_double(&w, s->min);
    else eddy_json_null(&w);
    eddy_json_key(&w, eddy_str("max"));
    if (s->has_max) eddy_json_double(&w, s->max);
    else eddy_json_null(&w);
    eddy_json_end_object(&w);
    *out = w.buf;
}

static void combine(stats *a, const stats *b) {
    a->count += b->count;
    a->sum += b->sum;
    if (b->has_min) a->min = a->has_min ? fmin(a->min, b->min) : b->min, a->has_min = true;
    if (b->has_max) a->max = a->has_max ? fmax(a->max, b->max) : b->max, a->has_max = true;
}

int eddy_create_accumulator(eddy_buf *acc) {
    stats empty = {0};
    encode(&empty, acc);
    return 0;
}

int eddy_add(eddy_buf *acc, const eddy_event *in) {
    eddy_json record;
    double amount;
    if (!eddy_json_parse(in->value, &record) || !eddy_json_get_number(&record, "amount", &amount))
        return eddy_fail("a record needs a numeric `amount`");
    stats s, one = {1, amount, true, true, amount, amount};
    EDDY_TRY(decode(eddy_buf_bytes(acc), &s));
    combine(&s, &one);
    encode(&s, acc);
    return 0;
}

int eddy_merge(eddy_buf *acc, eddy_bytes other) {
    stats a, b;
    EDDY_TRY(decode(eddy_buf_bytes(acc), &a));
    EDDY_TRY(decode(other, &b));
    combine(&a, &b);
    encode(&a, acc);
    return 0;
}

int eddy_get_result(eddy_bytes acc, eddy_buf *result) {
    eddy_buf_push(result, acc.ptr, acc.len);
    return 0;
}
