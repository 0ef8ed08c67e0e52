// Benchmark W1, map step (world `mapper-udf`): the value starts with an 8-byte little-endian u64 amount;
// amount := amount * 107 / 100 (integer division; the product wraps at 2^64 like udfs/rust/bench-w1-map).
import * as eddy from "../../../guest-sdk/js/eddy.js";

const EXACT = 2 ** 46; // below this, amount * 107 < 2^53 is exact in a double

function raiseAmount(event) {
  if (event.value.length < 8) throw new RangeError("value is not a u64");
  const amount = eddy.readU64(event.value);
  if (typeof amount === "number" && amount < EXACT) {
    const x = amount * 107;
    return event.withValue(eddy.u64((x - (x % 100)) / 100));
  }
  return event.withValue(eddy.u64(BigInt.asUintN(64, BigInt(amount) * 107n) / 100n));
}

export const { lifecycle, mapper } = eddy.map(raiseAmount);
