/* Drops common words (world `filter-udf`), like udfs/rust/stopwords. `config: {"words": ["a", "the"]}` replaces
 * the built-in list. */
#include "eddy.h"

#include <stdlib.h>
#include <string.h>

static const char *const DEFAULT[] = {"a", "an", "and", "the", "of", "to", "in", "is", "it", "on", "for"};

/* The lower-cased stop words, for the instance's life (malloc() memory: eddy_alloc() ends with the call). */
static eddy_bytes *words;
static size_t count;

static void keep_word(eddy_bytes word) {
    eddy_bytes lower = eddy_lowercase(word);
    uint8_t *copy = malloc(lower.len ? lower.len : 1);
    if (copy == NULL) __builtin_trap();
    memcpy(copy, lower.ptr, lower.len);
    words[count++] = (eddy_bytes){copy, lower.len};
}

int eddy_init(eddy_bytes config) {
    count = 0;
    eddy_json doc, list;
    if (eddy_json_parse(config, &doc) && eddy_json_get(&doc, "words", &list)) {
        if (list.type != EDDY_JSON_ARRAY) return eddy_fail("config.words must be a list of strings");
        size_t n = 0, cursor = 0;
        eddy_json item;
        while (eddy_json_next(&list, &cursor, &item)) n++;
        words = calloc(n ? n : 1, sizeof *words);
        if (words == NULL) __builtin_trap();
        for (cursor = 0; eddy_json_next(&list, &cursor, &item);) {
            eddy_bytes word;
            if (!eddy_json_string(&item, &word)) return eddy_fail("config.words must be a list of strings");
            keep_word(word);
        }
        return 0;
    }
    size_t n = sizeof DEFAULT / sizeof *DEFAULT;
    words = calloc(n, sizeof *words);
    if (words == NULL) __builtin_trap();
    for (size_t i = 0; i < n; i++) keep_word(eddy_str(DEFAULT[i]));
    return 0;
}

int eddy_filter(const eddy_event *in, bool *keep) {
    if (!eddy_utf8_valid(in->value)) return eddy_fail("the value is not UTF-8");
    eddy_bytes word = eddy_lowercase(in->value);
    for (size_t i = 0; i < count; i++) {
        if (words[i].len == word.len && memcmp(words[i].ptr, word.ptr, word.len) == 0) {
            *keep = false;
            return 0;
        }
    }
    return 0;
}
