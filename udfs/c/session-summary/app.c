/* Summarises a session window of clicks: `{user, start, end, clicks, pages}`, pages distinct in the order first
 * visited (world `window-processor-udf`), like udfs/rust/session-summary. */
#include "eddy.h"

int eddy_process_window(const eddy_window *window, eddy_output *out) {
    if (window->is_global) return eddy_fail("sessions are time windows");
    size_t n = window->count;
    /* Clicks in time order; a stable insertion sort keeps arrival order among equal timestamps. */
    const eddy_event **ordered = eddy_alloc((n ? n : 1) * sizeof *ordered);
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j > 0 && ordered[j - 1]->timestamp > window->events[i].timestamp) {
            ordered[j] = ordered[j - 1];
            j--;
        }
        ordered[j] = &window->events[i];
    }
    eddy_bytes *pages = eddy_alloc((n ? n : 1) * sizeof *pages);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        eddy_json click;
        eddy_bytes page;
        if (!eddy_json_parse(ordered[i]->value, &click) || !eddy_json_get_string(&click, "page", &page))
            return eddy_fail("a click needs a string `page`");
        bool seen = false;
        for (size_t k = 0; k < distinct && !seen; k++)
            seen = pages[k].len == page.len && (page.len == 0 || __builtin_memcmp(pages[k].ptr, page.ptr, page.len) == 0);
        if (!seen) pages[distinct++] = page;
    }
    /* Keys in sorted order, as serde_json writes a map. */
    eddy_json_writer w = {0};
    eddy_json_begin_object(&w);
    eddy_json_key(&w, eddy_str("clicks"));
    eddy_json_uint(&w, n);
    eddy_json_key(&w, eddy_str("end"));
    eddy_json_int(&w, window->end);
    eddy_json_key(&w, eddy_str("pages"));
    eddy_json_begin_array(&w);
    for (size_t k = 0; k < distinct; k++) eddy_json_string_value(&w, pages[k]);
    eddy_json_end_array(&w);
    eddy_json_key(&w, eddy_str("start"));
    eddy_json_int(&w, window->start);
    eddy_json_key(&w, eddy_str("user"));
    eddy_json_string_value(&w, window->has_key ? window->key : (eddy_bytes){0});
    eddy_json_end_object(&w);
    /* Flink's convention: a window's result carries its last timestamp. */
    eddy_event summary = {.timestamp = window->end - 1, .has_key = window->has_key, .key = window->key,
                          .value = eddy_json_bytes(&w)};
    eddy_emit(out, &summary);
    return 0;
}
