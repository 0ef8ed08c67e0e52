// Benchmark W5 (world `processor-udf`): flags two big transactions of one key less than 5 s apart.
//
// Records: key = 8-byte LE u64 account, value = 8-byte LE u64 amount, timestamp = event time. For an amount >= 9000:
// if value state `last` (8-byte LE i64 time of the key's last big transaction) is set and |ts - last| < 5000, emit
// (same key, timestamp ts) the 32 bytes prev ts (i64 LE), ts (i64 LE), 1 (u64 LE), amount (u64 LE); then set `last`
// to ts and register an event-time timer at ts + 5000. A timer clears `last` once it is at least 5000 ms old.
import * as eddy from "../../../guest-sdk/js/eddy.js";
import context from "eddy:udf/context@0.1.0";
import keyedState from "eddy:udf/keyed-state@0.1.0";
import log from "eddy:udf/log@0.1.0";

const WINDOW_MS = 5000;
const BIG = 9000;
const STATE = "last-large";

class BigPairs {
  process(event, ctx) {
    if (event.value.length < 8 || eddy.readU64(event.value) < BIG) return; // a short value counts as 0, as in Rust
    const ts = event.timestamp;
    const last = ctx.valueState(STATE);
    const previous = last.get();
    if (previous !== null) {
      const prevTs = eddy.readI64(previous);
      if (Math.abs(ts - prevTs) < WINDOW_MS) {
        const alert = new Uint8Array(32);
        eddy.i64(prevTs, alert, 0);
        eddy.i64(ts, alert, 8);
        eddy.u64(1, alert, 16);
        alert.set(event.value.subarray(0, 8), 24); // the amount, already a u64 LE
        ctx.emit(new eddy.Event(alert, event.key, ts));
      }
    }
    last.set(eddy.i64(ts));
    ctx.registerEventTimeTimer(ts + WINDOW_MS);
  }

  onTimer(timer, ctx) {
    const last = ctx.valueState(STATE);
    const previous = last.get();
    if (previous !== null && eddy.readI64(previous) + WINDOW_MS <= timer.timestamp) last.clear();
  }
}

export const { lifecycle, processor } = eddy.processor(BigPairs, { context, keyedState, log });
