/* Keeps the reading with the largest `value` of each window (world `reducer-udf`), like udfs/rust/max-reading. */
#include "eddy.h"

static int value(const eddy_event *event, double *number) {
    eddy_json reading;
    if (!eddy_json_parse(event->value, &reading) || !eddy_json_get_number(&reading, "value", number))
        return eddy_fail("a reading needs a numeric `value`");
    return 0;
}

int eddy_reduce(eddy_event *max, const eddy_event *next) {
    double a, b;
    EDDY_TRY(value(next, &b));
    EDDY_TRY(value(max, &a));
    if (b > a) *max = *next; /* the whole record: key, timestamp and headers too */
    return 0;
}
