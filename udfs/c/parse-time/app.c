/* Event time from `time` (world `timestamp-assigner-udf`), like udfs/rust/parse-time: seconds since the Unix epoch
 * with a fraction (`1704067200.25`), as a number or a string. */
#include "eddy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A string's number the way Rust's `str::trim().parse::<f64>()` reads it: the whole trimmed text or nothing. */
static bool parse_seconds(eddy_bytes text, double *seconds) {
    while (text.len && (text.ptr[0] == ' ' || (text.ptr[0] >= '\t' && text.ptr[0] <= '\r'))) text.ptr++, text.len--;
    while (text.len && (text.ptr[text.len - 1] == ' ' || (text.ptr[text.len - 1] >= '\t' && text.ptr[text.len - 1] <= '\r')))
        text.len--;
    if (text.len == 0 || text.len > 63) return false;
    char copy[64], *end;
    memcpy(copy, text.ptr, text.len);
    copy[text.len] = 0;
    *seconds = strtod(copy, &end);
    return *end == 0;
}

int eddy_extract_timestamp(const eddy_event *in, int64_t *timestamp) {
    eddy_json record, time;
    if (!eddy_json_parse(in->value, &record)) return eddy_fail("the record is not JSON");
    double seconds;
    bool found = eddy_json_get(&record, "time", &time);
    eddy_bytes text;
    bool ok = found && (eddy_json_number(&time, &seconds) || (eddy_json_string(&time, &text) && parse_seconds(text, &seconds)));
    if (!ok) {
        eddy_bytes shown = found ? time.text : eddy_str("null");
        return eddy_fail("`time` is not a number of seconds: %.*s", (int)shown.len, (const char *)shown.ptr);
    }
    /* Rounding, not truncating: 1704067200.123 is 1704067200122.9999 as a float. */
    *timestamp = (int64_t)round(seconds * 1000.0);
    return 0;
}
