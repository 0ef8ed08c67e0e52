"""Benchmark W1, filter step (world `filter-udf`): keeps records whose value starts with an 8-byte little-endian u64
amount >= 5350 (a shorter value is dropped, like the Rust version)."""
import struct

import eddy_udf

_U64 = struct.Struct("<Q")


@eddy_udf.filter
def large(event):
    return len(event.value) >= 8 and _U64.unpack_from(event.value)[0] >= 5350
