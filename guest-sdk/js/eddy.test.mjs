// Tests of eddy.js: the shared codec vectors, and the helpers' batch loops with stand-ins for the WIT imports.
// Run with `node --test guest-sdk/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as eddy from "./eddy.js";
import { Event, decodeBatch, encodeBatch } from "./eddy.js";

const here = fileURLToPath(new URL(".", import.meta.url));
// Timestamps may exceed 2^53: read them as strings, then as exact numbers or BigInts.
const VECTORS = JSON.parse(
  readFileSync(`${here}/../codec/testdata/vectors.json`, "utf8").replace(/"timestamp": (-?\d+)/g, '"timestamp": "$1"'),
);

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const unhex = (text) => new Uint8Array(Buffer.from(text, "hex"));
const exactTs = (text) => {
  const big = BigInt(text);
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
};
const record = (e) => ({
  timestamp: e.timestamp,
  key: e.key === null ? null : hex(e.key),
  value: hex(e.value),
  headers: e.headers.map(([n, v]) => [n, hex(v)]),
});
const expected = (r) => ({ ...r, timestamp: exactTs(r.timestamp) });
const eventOf = (r) =>
  new Event(unhex(r.value), r.key === null ? null : unhex(r.key), exactTs(r.timestamp), r.headers.map(([n, v]) => [n, unhex(v)]));
const u64 = (n) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
};
const summary = (bytes) => decodeBatch(bytes).map((e) => [e.key === null ? null : Buffer.from(e.key).toString(), Buffer.from(e.value).toString(), e.timestamp]);

// ---------------------------------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------------------------------

for (const vector of VECTORS) {
  test(`decodes vector ${vector.name}`, () => {
    assert.deepEqual(decodeBatch(unhex(vector.wire)).map(record), vector.records.map(expected));
  });
  test(`encodes vector ${vector.name}`, () => {
    assert.equal(hex(encodeBatch(vector.records.map(eventOf))), vector.wire);
  });
}

test("vectors cover the interesting cases", () => {
  const events = VECTORS.flatMap((v) => decodeBatch(unhex(v.wire)));
  assert.ok(events.some((e) => e.key === null));
  assert.ok(events.some((e) => e.key !== null && e.key.length === 0));
  assert.ok(events.some((e) => e.headers.length > 0));
  assert.ok(events.some((e) => typeof e.timestamp === "bigint"));
  assert.ok(events.some((e) => e.timestamp === -1));
});

test("round-trips strings, headers and large timestamps", () => {
  const events = [
    new Event("h\u00e9\u{1f600}", "k", 3, [["a", "b"], ["n", new Uint8Array(0)]]),
    new Event(new Uint8Array(0), null, -7),
    new Event("x", null, -(2 ** 53)),
    new Event("y", null, -9223372036854775808n),
    new Event("z", null, 2 ** 60),
  ];
  const decoded = decodeBatch(encodeBatch(events));
  assert.ok(decoded.every((e, i) => e.equals(events[i])), "decoded events equal the originals");
  assert.equal(decoded[0].text(), "h\u00e9\u{1f600}");
  assert.equal(Buffer.from(decoded[0].header("a")).toString(), "b");
  assert.equal(decoded[0].header("zz"), undefined);
  assert.equal(decoded[2].timestamp, -(2 ** 53));
  assert.equal(decoded[3].timestamp, -9223372036854775808n);
  assert.equal(decoded[4].timestamp, 2n ** 60n);
});

test("matches the documented layout", () => {
  const wire = encodeBatch([new Event("vv", "k", 1)]);
  const expectedWire = Buffer.concat([
    Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from([0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from("kvv"),
  ]);
  assert.equal(hex(wire), hex(expectedWire));
});

test("rejects invalid batches", () => {
  const row = (...parts) => {
    const b = Buffer.alloc(8 + 32);
    b.writeUInt32LE(1, 0);
    parts.forEach((p, i) => b.writeUInt32LE(p, 16 + 4 * i));
    return b;
  };
  assert.throws(() => decodeBatch(new Uint8Array([1, 0, 0])), /shorter than/);
  assert.throws(() => decodeBatch(new Uint8Array([0, 0, 0, 0, 1, 0, 0, 0])), /unknown flags/);
  assert.throws(() => decodeBatch(new Uint8Array([5, 0, 0, 0, 0, 0, 0, 0])), /do not fit/);
  assert.throws(() => decodeBatch(row(0, 5)), /key lies outside/);
  assert.throws(() => decodeBatch(row(0, 0xffffffff, 0, 9)), /value lies outside/);
  assert.throws(() => decodeBatch(Buffer.concat([row(0, 0xffffffff, 0, 0, 0, 3), Buffer.from([5, 0, 0])])), /headers/);
  assert.throws(() => encodeBatch([new Event("x")]), /no timestamp/);
  assert.throws(() => encodeBatch([new Event("x", null, 1.5)]), /not an integer/);
});

test("event JSON helpers", () => {
  const e = Event.fromJson({ a: 1, t: "é" }, "k", 9);
  assert.equal(e.text(), '{"a":1,"t":"é"}');
  assert.deepEqual(e.json(), { a: 1, t: "é" });
  const f = e.withValue("x");
  assert.deepEqual([f.key, f.timestamp, f.value], ["k", 9, "x"]);
  assert.equal(e.withJson([1]).text(), "[1]");
  assert.equal(e.withKey(null).key, null);
  assert.equal(e.withTimestamp(1).timestamp, 1);
  assert.equal(e.withHeader("h", "v").headers.length, 1);
  assert.equal(e.headers.length, 0);
});

test("UTF-8 fallback when the runtime has no TextEncoder", async () => {
  const saved = [globalThis.TextEncoder, globalThis.TextDecoder];
  delete globalThis.TextEncoder;
  delete globalThis.TextDecoder;
  let fallback;
  try {
    fallback = await import("./eddy.js?no-text-encoder");
  } finally {
    [globalThis.TextEncoder, globalThis.TextDecoder] = saved;
  }
  for (const text of ["", "abc", "h\u00e9llo", "\u20ac", "\u{1f600}x", "\u0800\uffff", "\u00e9".repeat(3000) + "a".repeat(5000) + "\u{1f600}"]) {
    assert.equal(hex(fallback.utf8(text)), Buffer.from(text).toString("hex"), text);
    assert.equal(fallback.fromUtf8(Buffer.from(text)), text);
  }
  assert.equal(hex(fallback.utf8("\ud800")), "efbfbd", "a lone surrogate becomes U+FFFD");
  for (const bad of [[0xff], [0xc3], [0xe2, 0x82], [0xc0, 0x80], [0xed, 0xa0, 0x80]]) {
    assert.throws(() => fallback.fromUtf8(new Uint8Array(bad)), /UTF-8/);
  }
  for (const vector of VECTORS) {
    assert.equal(hex(fallback.encodeBatch(vector.records.map(eventOf))), vector.wire);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Stand-ins for the WIT imports
// ---------------------------------------------------------------------------------------------------------------

class FakeHost {
  constructor() {
    this.keys = [];
    this.current = null;
    this.entered = [];
    this.state = new Map();
    this.timers = new Set();
    this.openHandles = 0;
    this.logs = [];
    const host = this;
    this.context = {
      enter(index) {
        if (host.entered.length && index < host.entered.at(-1)) throw "indices may only grow";
        host.entered.push(index);
        host.current = host.keys[index];
      },
      currentKey: () => host.current,
      currentWatermark: () => -(2 ** 53),
      currentProcessingTime: () => 1000,
      registerEventTimeTimer: (ts) => host.timers.add(`event-time/${host.keyText()}/${ts}`),
      deleteEventTimeTimer: (ts) => host.timers.delete(`event-time/${host.keyText()}/${ts}`),
      registerProcessingTimeTimer: (ts) => host.timers.add(`processing-time/${host.keyText()}/${ts}`),
      deleteProcessingTimeTimer: (ts) => host.timers.delete(`processing-time/${host.keyText()}/${ts}`),
    };
    class ValueState {
      constructor(name) {
        this.slot = `${host.keyText()}/${name}`;
        this.key = host.current;
        host.openHandles++;
      }
      static open(descriptor) {
        host.lastDescriptor = descriptor;
        return new ValueState(descriptor.name);
      }
      check() {
        if (this.closed || this.key !== host.current) throw "handle used for another key";
      }
      get() {
        this.check();
        return host.state.has(this.slot) ? host.state.get(this.slot) : null;
      }
      set(value) {
        this.check();
        host.state.set(this.slot, value);
      }
      clear() {
        this.check();
        host.state.delete(this.slot);
      }
      [Symbol.dispose]() {
        this.closed = true;
        host.openHandles--;
      }
    }
    this.keyedState = { ValueState };
    this.log = { write: (level, message) => host.logs.push([level, message]) };
  }

  keyText() {
    return this.current === null ? "-" : Buffer.from(this.current).toString();
  }
}

const batch = (...events) => encodeBatch(events);

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

test("map returns the export objects and maps every record", () => {
  const exports = eddy.map((e) => e.withValue(e.text().toUpperCase()));
  assert.deepEqual(Object.keys(exports).sort(), ["lifecycle", "mapper"]);
  const out = exports.mapper.mapBatch(batch(new Event("ab", "k", 1, [["h", "1"]]), new Event("c", null, 2)));
  assert.deepEqual(summary(out), [["k", "AB", 1], [null, "C", 2]]);
  assert.equal(Buffer.from(decodeBatch(out)[0].header("h")).toString(), "1");
});

test("map accepts bytes and strings and fills timestamps", () => {
  const { mapper } = eddy.map((e) => (e.timestamp === 1 ? "x" : new Event("y", "n")));
  assert.deepEqual(summary(mapper.mapBatch(batch(new Event("a", "k", 1), new Event("b", null, 2)))), [["k", "x", 1], ["n", "y", 2]]);
});

test("user errors become WIT errors (strings) and stacks go to the log", () => {
  const host = new FakeHost();
  const { mapper } = eddy.map(
    () => {
      throw new RangeError("no good");
    },
    { log: host.log },
  );
  assert.throws(() => mapper.mapBatch(batch(new Event("a", null, 0))), (err) => err === "RangeError: no good");
  assert.ok(host.logs.some(([level, message]) => level === "error" && message.includes("no good")));
  eddy.useLog(null);
});

test("filter returns one flag per record", () => {
  const { filter } = eddy.filter((e) => e.text() !== "drop");
  assert.deepEqual(filter.filterBatch(batch(new Event("keep", null, 0), new Event("drop", null, 0), new Event("", null, 0))), [true, false, true]);
});

test("flatMap emits any number of records", () => {
  const { flatMapper } = eddy.flatMap((e) => (e.value.length ? [...e.text()].map((c) => e.withValue(c)) : null));
  const out = flatMapper.flatMapBatch(batch(new Event("ab", "k", 4), new Event("", null, 5), new Event("c", null, 6)));
  assert.deepEqual(summary(out), [["k", "a", 4], ["k", "b", 4], [null, "c", 6]]);
  const { flatMapper: bad } = eddy.flatMap((e) => e);
  assert.throws(() => bad.flatMapBatch(batch(new Event("x", null, 0))), /iterable/);
});

test("keySelector sets keys", () => {
  const { keySelector } = eddy.keySelector((e) => (e.value.length ? e.json().user : null));
  const out = keySelector.selectKeys(batch(new Event('{"user":"u1"}', null, 3), new Event("", "old", 4)));
  assert.deepEqual(decodeBatch(out).map((e) => [e.key && Buffer.from(e.key).toString(), e.timestamp]), [["u1", 3], [null, 4]]);
});

test("timestampAssigner", () => {
  const { timestampAssigner } = eddy.timestampAssigner((e) => e.json().ts);
  assert.deepEqual(timestampAssigner.extractTimestamps(batch(new Event('{"ts":5}', null, 0), new Event('{"ts":-2}', null, 0))), [5, -2]);
  const { timestampAssigner: bad } = eddy.timestampAssigner(() => "5");
  assert.throws(() => bad.extractTimestamps(batch(new Event("x", null, 0))), /integer/);
});

test("lifecycle init parses the config and calls the hook", () => {
  const seen = [];
  const { lifecycle } = eddy.map((e) => e, { init: (config) => seen.push(config) });
  lifecycle.init('{"factor":2}');
  lifecycle.init("null");
  assert.deepEqual(seen, [{ factor: 2 }, null]);
  assert.equal(eddy.config(), null);
  assert.throws(() => lifecycle.init("{"), /not JSON/);
});

test("processor enters each record, uses keyed state and collects outputs", () => {
  const host = new FakeHost();
  class Counter {
    init(config) {
      this.limit = config.limit;
    }
    process(event, ctx) {
      const state = ctx.valueState("count");
      assert.equal(ctx.valueState("count"), state, "handles are cached per record");
      assert.equal(ctx.currentKey(), host.current);
      const n = (state.get()?.[0] ?? 0) + 1;
      state.set(new Uint8Array([n]));
      ctx.emit(event.withValue(String(n)));
      if (n > this.limit) ctx.sideOutput("over", "!");
      ctx.registerEventTimeTimer(event.timestamp + 10);
    }
    onTimer(timer, ctx) {
      ctx.valueState("count").clear();
      ctx.emit(new Event("timer", timer.key));
      assert.equal(timer.domain, eddy.EVENT_TIME);
    }
  }
  const { lifecycle, processor } = eddy.processor(Counter, { context: host.context, keyedState: host.keyedState });
  lifecycle.init('{"limit":1}');
  const records = [new Event("a", "k1", 1), new Event("b", "k2", 2), new Event("c", "k1", 3)];
  const wire = encodeBatch(records);
  host.keys = decodeBatch(wire).map((e) => e.key);
  const outputs = processor.process(0, wire);
  assert.deepEqual(host.entered, [0, 1, 2]);
  assert.deepEqual(summary(outputs.main), [["k1", "1", 1], ["k2", "1", 2], ["k1", "2", 3]]);
  assert.deepEqual(outputs.side.map((s) => [s.tag, summary(s.records)]), [["over", [["k1", "!", 3]]]]);
  assert.deepEqual([...host.state.keys()].sort(), ["k1/count", "k2/count"]);
  assert.deepEqual([...host.timers].sort(), ["event-time/k1/11", "event-time/k1/13", "event-time/k2/12"]);
  assert.equal(host.openHandles, 0, "handles are released after each record");

  host.entered = [];
  host.keys = [unhex(hex(Buffer.from("k1")))];
  const fired = processor.onTimers([{ key: host.keys[0], timestamp: 11, domain: "event-time" }]);
  assert.deepEqual(host.entered, [0]);
  assert.deepEqual(summary(fired.main), [["k1", "timer", 11]]);
  assert.ok(!host.state.has("k1/count"));
});

test("function processor with onTimer and TTL", () => {
  const host = new FakeHost();
  const fired = [];
  const { processor } = eddy.processor(
    (event, ctx) => {
      ctx.valueState("seen", { ttlMs: 1000, update: "on-read-and-write" }).set(new Uint8Array([1]));
      ctx.registerProcessingTimeTimer(ctx.currentProcessingTime() + 5);
    },
    { context: host.context, keyedState: host.keyedState, onTimer: (timer) => fired.push([timer.timestamp, timer.domain]) },
  );
  const wire = batch(new Event("", "a", 0));
  host.keys = decodeBatch(wire).map((e) => e.key);
  const out = processor.process(0, wire);
  assert.equal(decodeBatch(out.main).length, 0);
  assert.deepEqual(out.side, []);
  assert.deepEqual(host.lastDescriptor, {
    name: "seen",
    ttl: { timeToLiveMs: 1000, update: "on-read-and-write", visibility: "never-return-expired" },
  });
  assert.deepEqual([...host.timers], ["processing-time/a/1005"]);
  host.entered = [];
  processor.onTimers([{ key: host.keys[0], timestamp: 1005, domain: "processing-time" }]);
  assert.deepEqual(fired, [[1005, "processing-time"]]);
});

test("processor errors release handles", () => {
  const host = new FakeHost();
  const { processor } = eddy.processor(
    (event, ctx) => {
      ctx.valueState("x");
      throw new Error("missing");
    },
    { context: host.context, keyedState: host.keyedState },
  );
  const wire = batch(new Event("", "a", 0));
  host.keys = decodeBatch(wire).map((e) => e.key);
  assert.throws(() => processor.process(0, wire), (err) => err === "Error: missing");
  assert.equal(host.openHandles, 0);
  assert.throws(() => eddy.processor(() => {}), /context import/);
});

test("aggregator folds into targets (JSON accumulators)", () => {
  class Average {
    createAccumulator() {
      return [0, 0];
    }
    add(acc, event) {
      return [acc[0] + event.json(), acc[1] + 1];
    }
    merge(acc, other) {
      return [acc[0] + other[0], acc[1] + other[1]];
    }
    getResult(acc) {
      return acc[1] ? { avg: acc[0] / acc[1] } : "";
    }
  }
  const { aggregator } = eddy.aggregator(Average);
  const fresh = aggregator.createAccumulator();
  assert.equal(Buffer.from(fresh).toString(), "[0,0]");
  let accs = batch(new Event(fresh, null, 0), new Event(fresh, null, 0));
  accs = aggregator.add(accs, batch(new Event("4", null, 0), new Event("6", null, 0), new Event("1", null, 0)), [0, 0, 1]);
  assert.deepEqual(summary(accs).map((r) => r[1]), ["[10,2]", "[1,1]"]);
  const merged = aggregator.merge(accs, batch(new Event("[2,2]", null, 0)), [1]);
  assert.deepEqual(summary(merged).map((r) => r[1]), ["[10,2]", "[3,3]"]);
  const results = aggregator.getResult(encodeBatch([...decodeBatch(merged), new Event(fresh, null, 0)]));
  assert.deepEqual(summary(results).map((r) => r[1]), ['{"avg":5}', '{"avg":1}', ""]);
});

test("aggregator with a custom accumulator codec", () => {
  const sum = {
    createAccumulator: () => 0n,
    add: (acc, event) => acc + new DataView(event.value.buffer, event.value.byteOffset).getBigUint64(0, true),
    merge: (a, b) => a + b,
    getResult: (acc) => u64(acc),
    encodeAccumulator: (acc) => u64(acc),
    decodeAccumulator: (bytes) => new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true),
  };
  const { aggregator } = eddy.aggregator(sum);
  let accs = batch(new Event(aggregator.createAccumulator(), null, 0));
  accs = aggregator.add(accs, batch(new Event(u64(5), null, 0), new Event(u64(7), null, 0)), [0, 0]);
  assert.equal(hex(decodeBatch(aggregator.getResult(accs))[0].value), hex(u64(12)));
});

test("reducer", () => {
  const { reducer } = eddy.reducer((a, b) => a.withValue(a.text() + b.text()));
  const out = reducer.reduce(batch(new Event("a", "k", 1), new Event("x", null, 2)), batch(new Event("b", null, 0), new Event("c", null, 0)), [0, 0]);
  assert.deepEqual(summary(out), [["k", "abc", 1], [null, "x", 2]]);
});

test("windowProcessor", () => {
  const { windowProcessor } = eddy.windowProcessor((window, out) => {
    out.emit(Event.fromJson({ n: window.events.length, global: window.global }, window.key));
    if (window.global) out.sideOutput("late", "x");
  });
  const out = windowProcessor.processWindows([
    { key: unhex("6b31"), window: { tag: "time", val: { start: 0, end: 10 } }, elements: batch(new Event("", null, 1), new Event("", null, 2)) },
    { key: null, window: { tag: "global" }, elements: batch() },
  ]);
  assert.deepEqual(summary(out.main), [["k1", '{"n":2,"global":false}', 9], [null, '{"n":0,"global":true}', 0]]);
  assert.equal(out.side[0].tag, "late");
});

test("little-endian integer helpers", () => {
  assert.equal(hex(eddy.u64(5350)), "e614000000000000");
  assert.equal(hex(eddy.u64(2n ** 64n - 1n)), "ffffffffffffffff");
  assert.equal(eddy.readU64(eddy.u64(2 ** 53 - 1)), 2 ** 53 - 1);
  assert.equal(eddy.readU64(eddy.u64(2n ** 64n - 1n)), 2n ** 64n - 1n);
  assert.equal(hex(eddy.i64(-1)), "ffffffffffffffff");
  assert.equal(eddy.readI64(eddy.i64(-5000)), -5000);
  assert.equal(eddy.readI64(eddy.i64(-(2n ** 63n))), -(2n ** 63n));
  const out = new Uint8Array(16);
  eddy.i64(1700000000000, out, 8);
  assert.equal(eddy.readI64(out, 8), 1700000000000);
  assert.throws(() => eddy.readU64(new Uint8Array(7)), /8 bytes/);
  assert.throws(() => eddy.u64(-1), /u64/);
});

test("decodes batches that do not start on a 4-byte boundary", () => {
  for (const vector of VECTORS) {
    const wire = unhex(vector.wire);
    const shifted = new Uint8Array(wire.length + 3);
    shifted.set(wire, 3);
    assert.deepEqual(decodeBatch(shifted.subarray(3)).map(record), vector.records.map(expected));
  }
});
