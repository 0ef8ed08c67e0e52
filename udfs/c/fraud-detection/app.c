/* Flink's fraud-detection walkthrough (world `processor-udf`), like udfs/rust/fraud-detection: per account, a
 * transaction under 1.00 followed within one minute of event time by one over 500.00 raises an alert. The small
 * transaction opens a suspicion window that an event-time timer closes; meanwhile value state holds the small
 * transaction, map state counts merchants and list state keeps the amounts, which the alert reports.
 *
 * The states are encoded as the Rust example encodes them (`small` as JSON {"time","amount"}, merchant counts as
 * u64 and amounts as f64, little-endian), so either module can take over the other's savepoint. */
#include "eddy.h"

#include <string.h>

#define SMALL 1.00
#define LARGE 500.00
#define MINUTE 60000
/* Amounts an alert reports at most. */
#define RECENT 10

static const eddy_state_declaration STATES[] = {
    {"small", EDDY_STATE_VALUE, NULL},
    {"merchants", EDDY_STATE_MAP, NULL},
    {"amounts", EDDY_STATE_LIST, NULL},
};

bool eddy_declared_states(const eddy_state_declaration **states, size_t *count) {
    *states = STATES;
    *count = sizeof STATES / sizeof *STATES;
    return true;
}

typedef struct {
    bool present;
    int64_t time;
    double amount;
} small_tx;

static int read_small(eddy_context *ctx, small_tx *small) {
    eddy_state *state;
    eddy_bytes bytes;
    bool found;
    EDDY_TRY(eddy_value_state(ctx, "small", NULL, &state));
    EDDY_TRY(eddy_value_get(state, &bytes, &found));
    small->present = false;
    if (!found) return 0;
    eddy_json doc;
    double time;
    if (!eddy_json_parse(bytes, &doc) || !eddy_json_get_number(&doc, "time", &time) ||
        !eddy_json_get_number(&doc, "amount", &small->amount))
        return eddy_fail("state `small` is not {\"time\", \"amount\"}");
    small->time = (int64_t)time;
    small->present = true;
    return 0;
}

static int write_small(eddy_context *ctx, int64_t time, double amount) {
    eddy_state *state;
    eddy_json_writer w = {0};
    eddy_json_begin_object(&w);
    eddy_json_key(&w, eddy_str("time"));
    eddy_json_int(&w, time);
    eddy_json_key(&w, eddy_str("amount"));
    eddy_json_double(&w, amount);
    eddy_json_end_object(&w);
    EDDY_TRY(eddy_value_state(ctx, "small", NULL, &state));
    return eddy_value_set(state, eddy_json_bytes(&w));
}

static uint64_t u64_le(eddy_bytes b) {
    uint64_t v = 0;
    if (b.len < 8) return 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b.ptr[i];
    return v;
}

static eddy_bytes le8(const void *value) {
    /* Wasm is little-endian: the bytes of the value are its encoding. */
    return eddy_copy((eddy_bytes){value, 8});
}

/* Forgets the suspicion window of the current account. */
static int clear(eddy_context *ctx) {
    eddy_state *state;
    EDDY_TRY(eddy_value_state(ctx, "small", NULL, &state));
    EDDY_TRY(eddy_value_clear(state));
    EDDY_TRY(eddy_map_state(ctx, "merchants", NULL, &state));
    EDDY_TRY(eddy_map_clear(state));
    EDDY_TRY(eddy_list_state(ctx, "amounts", NULL, &state));
    return eddy_list_clear(state);
}

/* Counts the transaction's merchant and keeps its amount. */
static int remember(eddy_context *ctx, eddy_bytes merchant, double amount) {
    eddy_state *merchants, *amounts;
    eddy_bytes seen;
    bool found;
    EDDY_TRY(eddy_map_state(ctx, "merchants", NULL, &merchants));
    EDDY_TRY(eddy_map_get(merchants, merchant, &seen, &found));
    uint64_t count = (found ? u64_le(seen) : 0) + 1;
    EDDY_TRY(eddy_map_put(merchants, merchant, le8(&count)));
    EDDY_TRY(eddy_list_state(ctx, "amounts", NULL, &amounts));
    EDDY_TRY(eddy_list_add(amounts, le8(&amount)));
    eddy_bytes *all;
    size_t n;
    EDDY_TRY(eddy_list_get(amounts, &all, &n));
    if (n > RECENT) EDDY_TRY(eddy_list_update(amounts, all + (n - RECENT), RECENT));
    return 0;
}

static int alert(eddy_context *ctx, const eddy_event *in, eddy_bytes account, double amount, const small_tx *small) {
    eddy_state *state;
    eddy_bytes *amounts;
    eddy_entry *merchants;
    size_t n_amounts, n_merchants;
    EDDY_TRY(eddy_list_state(ctx, "amounts", NULL, &state));
    EDDY_TRY(eddy_list_get(state, &amounts, &n_amounts));
    EDDY_TRY(eddy_map_state(ctx, "merchants", NULL, &state));
    EDDY_TRY(eddy_map_entries(state, &merchants, &n_merchants));
    /* Keys in sorted order, as serde_json writes a map. */
    eddy_json_writer w = {0};
    eddy_json_begin_object(&w);
    eddy_json_key(&w, eddy_str("account"));
    eddy_json_string_value(&w, account);
    eddy_json_key(&w, eddy_str("large_amount"));
    eddy_json_double(&w, amount);
    eddy_json_key(&w, eddy_str("large_time"));
    eddy_json_int(&w, in->timestamp);
    eddy_json_key(&w, eddy_str("merchants"));
    eddy_json_begin_object(&w); /* entries come ordered by key bytes */
    for (size_t i = 0; i < n_merchants; i++) {
        eddy_json_key(&w, merchants[i].key);
        eddy_json_uint(&w, u64_le(merchants[i].value));
    }
    eddy_json_end_object(&w);
    eddy_json_key(&w, eddy_str("recent_amounts"));
    eddy_json_begin_array(&w);
    for (size_t i = 0; i < n_amounts; i++) {
        if (amounts[i].len < 8) continue;
        double value;
        memcpy(&value, amounts[i].ptr, 8);
        eddy_json_double(&w, value);
    }
    eddy_json_end_array(&w);
    eddy_json_key(&w, eddy_str("small_amount"));
    eddy_json_double(&w, small->amount);
    eddy_json_key(&w, eddy_str("small_time"));
    eddy_json_int(&w, small->time);
    eddy_json_end_object(&w);
    eddy_event out = *in;
    out.value = eddy_json_bytes(&w);
    eddy_emit(ctx->out, &out);
    return 0;
}

int eddy_process(const eddy_event *in, eddy_context *ctx) {
    eddy_json tx;
    eddy_bytes account, merchant;
    double amount;
    if (!eddy_json_parse(in->value, &tx) || !eddy_json_get_string(&tx, "account", &account) ||
        !eddy_json_get_string(&tx, "merchant", &merchant) || !eddy_json_get_number(&tx, "amount", &amount))
        return eddy_fail("a transaction must be {\"account\", \"merchant\", \"amount\"}");
    small_tx small;
    EDDY_TRY(read_small(ctx, &small));
    if (small.present && in->timestamp >= small.time + MINUTE) {
        /* The window is over in event time, but the watermark has not reached its timer yet. */
        EDDY_TRY(eddy_delete_event_time_timer(ctx, small.time + MINUTE));
        EDDY_TRY(clear(ctx));
        small.present = false;
    }
    if (amount < SMALL) {
        if (small.present) EDDY_TRY(eddy_delete_event_time_timer(ctx, small.time + MINUTE));
        EDDY_TRY(write_small(ctx, in->timestamp, amount));
        EDDY_TRY(eddy_register_event_time_timer(ctx, in->timestamp + MINUTE));
        return remember(ctx, merchant, amount);
    }
    /* Only what follows a small transaction is suspicious. */
    if (!small.present || in->timestamp < small.time) return 0;
    EDDY_TRY(remember(ctx, merchant, amount));
    if (amount > LARGE) {
        EDDY_TRY(alert(ctx, in, account, amount, &small));
        EDDY_TRY(eddy_delete_event_time_timer(ctx, small.time + MINUTE));
        EDDY_TRY(clear(ctx));
    }
    return 0;
}

int eddy_on_timer(const eddy_timer *timer, eddy_context *ctx) {
    (void)timer;
    /* A minute passed since the small transaction: a large one no longer alerts. */
    return clear(ctx);
}
