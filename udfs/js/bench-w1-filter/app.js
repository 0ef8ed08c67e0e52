// Benchmark W1, filter step (world `filter-udf`): keeps records whose value starts with an 8-byte little-endian u64
// amount >= 5350 (a shorter value is dropped, like udfs/rust/bench-w1-filter).
import * as eddy from "../../../guest-sdk/js/eddy.js";

// readU64 gives a BigInt for amounts >= 2^53; it compares with a number correctly.
export const { lifecycle, filter } = eddy.filter((event) => event.value.length >= 8 && eddy.readU64(event.value) >= 5350);
