/* Lower-cases values (world `mapper-udf`), like udfs/rust/lowercase. */
#include "eddy.h"

int eddy_map(const eddy_event *in, eddy_event *out) {
    if (!eddy_utf8_valid(in->value)) return eddy_fail("the value is not UTF-8");
    out->value = eddy_lowercase(in->value);
    return 0;
}
