/* Keys records by their lower-cased value (world `key-selector-udf`), like udfs/rust/word-key. */
#include "eddy.h"

int eddy_select_key(const eddy_event *in, bool *has_key, eddy_bytes *key) {
    if (!eddy_utf8_valid(in->value)) return eddy_fail("the value is not UTF-8");
    *has_key = true;
    *key = eddy_lowercase(in->value);
    return 0;
}
