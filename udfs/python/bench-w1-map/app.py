"""Benchmark W1, map step (world `mapper-udf`): the value starts with an 8-byte little-endian u64 amount;
amount := amount * 107 // 100, with the product wrapping at 2^64 like the Rust version (`udfs/rust/bench-w1-map`)."""
import struct

import eddy_udf

_U64 = struct.Struct("<Q")
_MASK = (1 << 64) - 1


@eddy_udf.map
def raise_amount(event):
    if len(event.value) < 8:
        raise ValueError("value is not a u64")
    (amount,) = _U64.unpack_from(event.value)
    return event.with_value(_U64.pack(((amount * 107) & _MASK) // 100))
