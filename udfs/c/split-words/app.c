/* Splits text into words, one record each (world `flat-mapper-udf`), like udfs/rust/split-words: the `text` field
 * of JSON records, else the whole value. A word is a run of letters, digits and apostrophes; every non-ASCII
 * character counts as a letter. */
#include "eddy.h"

static bool in_word(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'' || c >= 0x80;
}

int eddy_flat_map(const eddy_event *in, eddy_output *out) {
    eddy_bytes text = {0};
    eddy_json doc;
    if (eddy_json_parse(in->value, &doc)) {
        eddy_json_get_string(&doc, "text", &text); /* JSON without a string `text` has no words */
    } else if (eddy_utf8_valid(in->value)) {
        text = in->value;
    } else {
        return eddy_fail("the value is not UTF-8");
    }
    size_t i = 0;
    while (i < text.len) {
        while (i < text.len && !in_word(text.ptr[i])) i++;
        size_t start = i;
        while (i < text.len && in_word(text.ptr[i])) i++;
        if (i > start) {
            eddy_event word = {.timestamp = in->timestamp, .value = {text.ptr + start, i - start}};
            eddy_emit(out, &word);
        }
    }
    return 0;
}
