"""Benchmark W5 (world `processor-udf`): flags two big transactions of one key less than 5 s apart.

Records: key = 8-byte LE u64 account, value = 8-byte LE u64 amount, timestamp = event time. For an amount >= 9000:
if value state `last` (8-byte LE i64 time of the key's last big transaction) is set and |ts - last| < 5000, emit
(same key, timestamp ts) the 32 bytes prev ts (i64 LE), ts (i64 LE), 1 (u64 LE), amount (u64 LE); then set `last`
to ts and register an event-time timer at ts + 5000. A timer clears `last` once it is at least 5000 ms old.
"""
import struct

import eddy_udf
from eddy_udf import Event

WINDOW_MS = 5000
BIG = 9000
STATE = "last-large"
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_ALERT = struct.Struct("<qqQQ")


@eddy_udf.processor
class BigPairs:
    def process(self, event, ctx):
        amount = _U64.unpack_from(event.value)[0] if len(event.value) >= 8 else 0  # like udfs/rust/bench-w5
        if amount < BIG:
            return
        ts = event.timestamp
        last = ctx.value_state(STATE)
        previous = last.get()
        if previous is not None:
            (prev_ts,) = _I64.unpack(previous)
            if abs(ts - prev_ts) < WINDOW_MS:
                ctx.emit(Event(_ALERT.pack(prev_ts, ts, 1, amount), key=event.key, timestamp=ts))
        last.set(_I64.pack(ts))
        ctx.register_event_time_timer(ts + WINDOW_MS)

    def on_timer(self, timer, ctx):
        last = ctx.value_state(STATE)
        previous = last.get()
        if previous is not None and _I64.unpack(previous)[0] + WINDOW_MS <= timer.timestamp:
            last.clear()
