// Eddy's JavaScript guest SDK: write user functions (UDFs) as plain JavaScript and build them with componentize-qjs.
//
// One ES module, no dependencies, no WIT imports of its own (so it loads in any world and under Node for tests).
// It decodes and encodes Eddy's flat record batches (the encoding documented in guest-sdk/codec/src/lib.rs) and
// turns plain functions into the export objects componentize-qjs looks for:
//
//     import * as eddy from "../../../guest-sdk/js/eddy.js";
//     export const { lifecycle, mapper } = eddy.map((event) => event.withValue(event.text().toUpperCase()));
//
// How exports are provided: componentize-qjs evaluates the entry module at build time and binds each exported WIT
// interface to the module export named after it in camelCase (`lifecycle`, `mapper`, `flatMapper`, ...), an object
// whose methods are the interface's functions in camelCase (`mapBatch`, `filterBatch`, ...). ES exports are static,
// so each helper returns those objects and the app re-exports them (`export const { lifecycle, mapper } = ...`).
// A WIT `result` error is thrown as a string; the helpers turn user exceptions into such strings.
//
// Imports (`eddy:udf/keyed-state@0.1.0`, `eddy:udf/context@0.1.0`, `eddy:udf/log@0.1.0`) are ES imports of the
// app, which can only name interfaces of its own world; the app passes them to the helpers
// (`eddy.processor(impl, { keyedState, context, log })`).
//
// Numbers: timestamps are JS numbers (ms since the Unix epoch; exact up to 2^53, i.e. for any realistic time).
// componentize-qjs passes WIT s64 values as numbers, so timers and watermarks are numbers too. decodeBatch gives a
// BigInt only for a timestamp outside the safe-integer range; encodeBatch accepts numbers and BigInts.

const HEADER_LEN = 8;
const ROW_LEN = 32;
const NO_KEY = 0xffffffff;
const TWO_32 = 4294967296;
const EMPTY = new Uint8Array(0);

export const EVENT_TIME = "event-time";
export const PROCESSING_TIME = "processing-time";

// ---------------------------------------------------------------------------------------------------------------
// UTF-8 (TextEncoder/TextDecoder when the runtime has them)
// ---------------------------------------------------------------------------------------------------------------

const textEncoder = typeof TextEncoder === "function" ? new TextEncoder() : null;
const textDecoder = typeof TextDecoder === "function" ? new TextDecoder("utf-8", { fatal: true }) : null;

/** Encodes a string as UTF-8. */
export function utf8(text) {
  if (textEncoder) return textEncoder.encode(text);
  const n = text.length;
  let out = new Uint8Array(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out[at++] = c;
      continue;
    }
    if (out.length < at + (n - i) * 3) {
      // Room for the worst case of the rest (3 bytes per UTF-16 unit), so that no later write needs a check.
      const bigger = new Uint8Array(at + (n - i) * 3);
      bigger.set(out.subarray(0, at));
      out = bigger;
    }
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c < 0xe000) c = 0xfffd; // a lone surrogate
    if (c < 0x800) {
      out[at++] = 0xc0 | (c >> 6);
    } else if (c < 0x10000) {
      out[at++] = 0xe0 | (c >> 12);
      out[at++] = 0x80 | ((c >> 6) & 63);
    } else {
      out[at++] = 0xf0 | (c >> 18);
      out[at++] = 0x80 | ((c >> 12) & 63);
      out[at++] = 0x80 | ((c >> 6) & 63);
    }
    out[at++] = 0x80 | (c & 63);
  }
  return at === out.length ? out : out.subarray(0, at);
}

/** Decodes UTF-8 bytes to a string; throws on invalid UTF-8. */
export function fromUtf8(bytes) {
  if (textDecoder) return textDecoder.decode(bytes);
  const n = bytes.length;
  const units = [];
  let out = "";
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      units.push(b);
      i++;
    } else {
      let c;
      let extra;
      if (b >= 0xc2 && b < 0xe0) {
        c = b & 0x1f;
        extra = 1;
      } else if (b >= 0xe0 && b < 0xf0) {
        c = b & 0x0f;
        extra = 2;
      } else if (b >= 0xf0 && b < 0xf5) {
        c = b & 0x07;
        extra = 3;
      } else {
        throw new TypeError("invalid UTF-8");
      }
      for (let k = 1; k <= extra; k++) {
        const cont = bytes[i + k];
        if (cont === undefined || (cont & 0xc0) !== 0x80) throw new TypeError("invalid UTF-8");
        c = (c << 6) | (cont & 0x3f);
      }
      if ((extra === 2 && (c < 0x800 || (c >= 0xd800 && c < 0xe000))) || (extra === 3 && (c < 0x10000 || c > 0x10ffff))) {
        throw new TypeError("invalid UTF-8");
      }
      if (c >= 0x10000) {
        c -= 0x10000;
        units.push(0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
      } else {
        units.push(c);
      }
      i += extra + 1;
    }
    if (units.length >= 4096) {
      out += String.fromCharCode.apply(null, units);
      units.length = 0;
    }
  }
  return out + String.fromCharCode.apply(null, units);
}

function asBytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return utf8(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (Array.isArray(value)) return Uint8Array.from(value);
  throw new TypeError(`${what} must be a Uint8Array or string, not ${value === null ? "null" : typeof value}`);
}

function isBytesLike(value) {
  return typeof value === "string" || value instanceof Uint8Array || ArrayBuffer.isView(value);
}

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------------------------------------------

/**
 * One record. `value`: Uint8Array; `key`: Uint8Array or null (no key); `timestamp`: number (ms since the Unix epoch;
 * null means "the timestamp of the record being processed", which the helpers fill in); `headers`: array of
 * `[name: string, value: Uint8Array]`. Keys, values and header values may also be given as strings (UTF-8).
 * Decoded keys and values are views into the input batch: copy them (`slice()`) to keep them beyond the call.
 */
export class Event {
  constructor(value = EMPTY, key = null, timestamp = null, headers = []) {
    this.value = value;
    this.key = key;
    this.timestamp = timestamp;
    this.headers = headers;
  }

  /** An event whose value is `obj` as JSON. */
  static fromJson(obj, key = null, timestamp = null, headers = []) {
    return new Event(utf8(JSON.stringify(obj)), key, timestamp, headers);
  }

  /** The value parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }

  /** The value decoded as UTF-8. */
  text() {
    return typeof this.value === "string" ? this.value : fromUtf8(this.value);
  }

  /** The value of the first header called `name`, or undefined. */
  header(name) {
    for (const [n, v] of this.headers) if (n === name) return v;
    return undefined;
  }

  /** A copy with another value (key, timestamp and headers are kept). */
  withValue(value) {
    return new Event(value, this.key, this.timestamp, this.headers.slice());
  }

  /** A copy whose value is `obj` as JSON. */
  withJson(obj) {
    return this.withValue(utf8(JSON.stringify(obj)));
  }

  /** A copy with another key (null for none). */
  withKey(key) {
    return new Event(this.value, key, this.timestamp, this.headers.slice());
  }

  /** A copy with another timestamp. */
  withTimestamp(timestamp) {
    return new Event(this.value, this.key, timestamp, this.headers.slice());
  }

  /** A copy with one more header. */
  withHeader(name, value) {
    return new Event(this.value, this.key, this.timestamp, [...this.headers, [name, value]]);
  }

  /** Whether two events have the same key, value, timestamp and headers. */
  equals(other) {
    if (!(other instanceof Event)) return false;
    if (this.timestamp !== other.timestamp && BigInt(this.timestamp ?? 0) !== BigInt(other.timestamp ?? 0)) return false;
    if ((this.key === null) !== (other.key === null)) return false;
    if (this.key !== null && !bytesEqual(asBytes(this.key, "key"), asBytes(other.key, "key"))) return false;
    if (!bytesEqual(asBytes(this.value, "value"), asBytes(other.value, "value"))) return false;
    if (this.headers.length !== other.headers.length) return false;
    return this.headers.every(
      ([n, v], i) => n === other.headers[i][0] && bytesEqual(asBytes(v, "header"), asBytes(other.headers[i][1], "header")),
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------------------------------

function invalid(message) {
  return new RangeError(`invalid record batch: ${message}`);
}

function viewOf(bytes) {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes a headers block to `[[name, value], ...]`. */
export function decodeHeaders(raw) {
  if (raw.length === 0) return [];
  if (raw.length < 2) throw invalid("headers are truncated");
  const view = viewOf(raw);
  const count = view.getUint16(0, true);
  const out = [];
  let at = 2;
  for (let i = 0; i < count; i++) {
    if (at + 2 > raw.length) throw invalid("headers are malformed");
    const nameLen = view.getUint16(at, true);
    at += 2;
    if (at + nameLen + 4 > raw.length) throw invalid("headers are malformed");
    const name = fromUtf8(raw.subarray(at, at + nameLen));
    at += nameLen;
    const valueLen = view.getUint32(at, true);
    at += 4;
    if (at + valueLen > raw.length) throw invalid("headers are malformed");
    out.push([name, raw.subarray(at, at + valueLen)]);
    at += valueLen;
  }
  if (at !== raw.length) throw invalid("headers are malformed");
  return out;
}

/** Encodes `[[name, value], ...]` as a headers block (empty for no headers). */
export function encodeHeaders(pairs) {
  if (!pairs || pairs.length === 0) return EMPTY;
  if (pairs.length > 0xffff) throw new RangeError("at most 65535 headers per record");
  const parts = pairs.map(([name, value]) => [utf8(name), asBytes(value, "a header value")]);
  let size = 2;
  for (const [n, v] of parts) size += 6 + n.length + v.length;
  const out = new Uint8Array(size);
  const view = viewOf(out);
  view.setUint16(0, parts.length, true);
  let at = 2;
  for (const [n, v] of parts) {
    view.setUint16(at, n.length, true);
    out.set(n, at + 2);
    at += 2 + n.length;
    view.setUint32(at, v.length, true);
    out.set(v, at + 4);
    at += 4 + v.length;
  }
  return out;
}

function readTimestamp(view, at) {
  const lo = view.getUint32(at, true);
  const hi = view.getInt32(at + 4, true);
  if (hi >= -0x200000 && hi < 0x200000) return hi * TWO_32 + lo;
  return view.getBigInt64(at, true);
}

function writeTimestamp(view, at, ts) {
  if (typeof ts === "bigint") {
    view.setBigInt64(at, BigInt.asIntN(64, ts), true);
    if (BigInt.asIntN(64, ts) !== ts) throw new RangeError(`timestamp ${ts} is outside the i64 range`);
    return;
  }
  if (!Number.isInteger(ts)) {
    throw new TypeError(ts == null ? "an event to encode has no timestamp" : `timestamp ${ts} is not an integer`);
  }
  if (ts < -9223372036854775808 || ts >= 9223372036854775808) throw new RangeError(`timestamp ${ts} is outside the i64 range`);
  const hi = Math.floor(ts / TWO_32);
  view.setUint32(at, ts - hi * TWO_32, true);
  view.setInt32(at + 4, hi, true);
}

// ---------------------------------------------------------------------------------------------------------------
// Little-endian integers (values and state are bytes; these are the common encodings). Reads give a number when it
// is a safe integer and a BigInt otherwise; writes take either.
// ---------------------------------------------------------------------------------------------------------------

function checkLength(bytes, at) {
  if (at + 8 > bytes.length) throw new RangeError(`need 8 bytes at offset ${at}, have ${bytes.length}`);
}

/** Reads an i64 (little-endian) at `at`. */
export function readI64(bytes, at = 0) {
  checkLength(bytes, at);
  const hi = (bytes[at + 4] | (bytes[at + 5] << 8) | (bytes[at + 6] << 16) | (bytes[at + 7] << 24));
  if (hi >= -0x200000 && hi < 0x200000) {
    return hi * TWO_32 + (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16)) + bytes[at + 3] * 16777216;
  }
  return viewOf(bytes).getBigInt64(at, true);
}

/** Reads a u64 (little-endian) at `at`. */
export function readU64(bytes, at = 0) {
  checkLength(bytes, at);
  if (bytes[at + 7] === 0 && bytes[at + 6] < 0x20) {
    const hi = bytes[at + 4] | (bytes[at + 5] << 8) | (bytes[at + 6] << 16);
    return hi * TWO_32 + (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16)) + bytes[at + 3] * 16777216;
  }
  return viewOf(bytes).getBigUint64(at, true);
}

/** The 8 bytes of an i64 (little-endian); writes into `into` at `at` when given. */
export function i64(n, into = new Uint8Array(8), at = 0) {
  writeTimestamp(viewOf(into), at, n);
  return into;
}

/** The 8 bytes of a u64 (little-endian); writes into `into` at `at` when given. */
export function u64(n, into = new Uint8Array(8), at = 0) {
  const view = viewOf(into);
  if (typeof n === "bigint") {
    if (n < 0n || n >= 1n << 64n) throw new RangeError(`${n} is outside the u64 range`);
    view.setBigUint64(at, n, true);
  } else {
    if (!Number.isInteger(n) || n < 0 || n >= 18446744073709551616) throw new RangeError(`${n} is not a u64`);
    const hi = Math.floor(n / TWO_32);
    view.setUint32(at, n - hi * TWO_32, true);
    view.setUint32(at + 4, hi, true);
  }
  return into;
}

/** Decodes a batch (Uint8Array) to an array of Event. Keys and values are views into `bytes`. */
export function decodeBatch(bytes) {
  bytes = asBytes(bytes, "a batch");
  const size = bytes.length;
  if (size < HEADER_LEN) throw invalid(`${size} bytes is shorter than the ${HEADER_LEN}-byte header`);
  const view = viewOf(bytes);
  const count = view.getUint32(0, true);
  const flags = view.getUint32(4, true);
  if (flags !== 0) throw invalid(`unknown flags 0x${flags.toString(16)}`);
  const base = HEADER_LEN + ROW_LEN * count;
  if (base > size) throw invalid(`${count} rows do not fit in ${size} bytes`);
  const dataLen = size - base;
  const events = new Array(count);
  // Rows are read as u32 words (WebAssembly and every JS host are little-endian); typed-array indexing is much
  // cheaper than DataView calls in QuickJS. An unaligned input is copied once.
  const rowBytes = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice(0, base);
  const words = new Uint32Array(rowBytes.buffer, rowBytes.byteOffset + HEADER_LEN, count * 8);
  for (let i = 0, w = 0; i < count; i++, w += 8) {
    const hi = words[w + 1] | 0;
    const ts = hi >= -0x200000 && hi < 0x200000 ? hi * TWO_32 + words[w] : view.getBigInt64(HEADER_LEN + i * ROW_LEN, true);
    const koff = words[w + 2];
    const klen = words[w + 3];
    const voff = words[w + 4];
    const vlen = words[w + 5];
    const hlen = words[w + 7];
    let key = null;
    if (klen !== NO_KEY) {
      if (koff + klen > dataLen) throw invalid("a key lies outside the data area");
      key = bytes.subarray(base + koff, base + koff + klen);
    }
    if (voff + vlen > dataLen) throw invalid("a value lies outside the data area");
    let headers = [];
    if (hlen !== 0 || words[w + 6] !== 0) {
      const hoff = words[w + 6];
      if (hoff + hlen > dataLen) throw invalid("headers lie outside the data area");
      if (hlen !== 0) headers = decodeHeaders(bytes.subarray(base + hoff, base + hoff + hlen));
    }
    events[i] = new Event(bytes.subarray(base + voff, base + voff + vlen), key, ts, headers);
  }
  return events;
}

/** Encodes an array (or iterable) of Event as a batch (Uint8Array). */
export function encodeBatch(events) {
  if (!Array.isArray(events)) events = Array.from(events);
  const count = events.length;
  // First pass: resolve byte forms and the data size.
  const parts = new Array(count * 3);
  let dataLen = 0;
  for (let i = 0, p = 0; i < count; i++, p += 3) {
    const e = events[i];
    const k = e.key === null || e.key === undefined ? null : e.key instanceof Uint8Array ? e.key : asBytes(e.key, "a key");
    const v = e.value instanceof Uint8Array ? e.value : asBytes(e.value, "a value");
    const h = e.headers && e.headers.length ? encodeHeaders(e.headers) : null;
    parts[p] = k;
    parts[p + 1] = v;
    parts[p + 2] = h;
    dataLen += (k === null ? 0 : k.length) + v.length + (h === null ? 0 : h.length);
  }
  const base = HEADER_LEN + ROW_LEN * count;
  const out = new Uint8Array(base + dataLen);
  const words = new Uint32Array(out.buffer, 0, base >>> 2);
  words[0] = count;
  let off = 0;
  for (let i = 0, p = 0, w = 2; i < count; i++, p += 3, w += 8) {
    const ts = events[i].timestamp;
    if (typeof ts === "number" && ts >= -9007199254740992 && ts <= 9007199254740992 && Math.floor(ts) === ts) {
      const hi = Math.floor(ts / TWO_32);
      words[w] = ts - hi * TWO_32;
      words[w + 1] = hi;
    } else {
      writeTimestamp(new DataView(out.buffer), (w << 2), ts);
    }
    const k = parts[p];
    if (k === null) {
      words[w + 3] = NO_KEY;
    } else {
      words[w + 2] = off;
      words[w + 3] = k.length;
      out.set(k, base + off);
      off += k.length;
    }
    const v = parts[p + 1];
    words[w + 4] = off;
    words[w + 5] = v.length;
    if (v.length) out.set(v, base + off);
    off += v.length;
    const h = parts[p + 2];
    if (h !== null) {
      words[w + 6] = off;
      words[w + 7] = h.length;
      out.set(h, base + off);
      off += h.length;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors, logging and lifecycle
// ---------------------------------------------------------------------------------------------------------------

const LEVELS = ["trace", "debug", "info", "warn", "error"];
let logBinding = null;

/** Writes to the host log (when the app passed `log` to a helper or to `useLog`); else to console if present. */
export const log = Object.fromEntries(
  LEVELS.map((level) => [
    level,
    (message) => {
      if (logBinding) logBinding.write(level, String(message));
      else if (typeof console !== "undefined" && console.error) console.error(`[${level}] ${message}`);
    },
  ]),
);

/** Routes `log` (and error stack traces) to the imported `eddy:udf/log` interface. */
export function useLog(binding) {
  logBinding = binding || null;
}

/** Turns an exception from user code into the WIT error (a string). */
function fail(err) {
  if (typeof err === "string") return err;
  const message = err instanceof Error ? `${err.name}: ${err.message}` : `error: ${String(err)}`;
  if (logBinding && err && err.stack) {
    try {
      logBinding.write("error", `${message}\n${err.stack}`);
    } catch (_) {
      // logging must never hide the original error
    }
  }
  return message;
}

let currentConfig = null;

/** The parsed JSON config given to `lifecycle.init` (null before init or for `null`). */
export function config() {
  return currentConfig;
}

function lifecycleFor(options, instanceInit) {
  if (options.log) useLog(options.log);
  return {
    init(text) {
      let parsed;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch (err) {
        throw `the config is not JSON: ${err.message}`;
      }
      currentConfig = parsed;
      try {
        if (instanceInit) instanceInit(parsed);
        if (options.init) options.init(parsed);
      } catch (err) {
        throw fail(err);
      }
    },
  };
}

function fillTimestamp(event, source) {
  if (event.timestamp === null || event.timestamp === undefined) event.timestamp = source.timestamp;
  return event;
}

function asEvent(result, source, what) {
  if (result instanceof Event) return fillTimestamp(result, source);
  if (isBytesLike(result)) return source.withValue(result);
  throw new TypeError(`${what} must return an Event, Uint8Array or string, not ${result === null ? "null" : typeof result}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Stateless worlds. Each helper takes the user function and options { init(config), log } and returns the exports.
// ---------------------------------------------------------------------------------------------------------------

/** `mapper-udf`: `fn(event) -> Event | Uint8Array | string` (bytes or a string replace the value). */
export function map(fn, options = {}) {
  return {
    lifecycle: lifecycleFor(options),
    mapper: {
      mapBatch(input) {
        try {
          const events = decodeBatch(input);
          for (let i = 0; i < events.length; i++) events[i] = asEvent(fn(events[i]), events[i], "a map function");
          return encodeBatch(events);
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}

/** `filter-udf`: `fn(event) -> boolean` (true keeps the record). */
export function filter(fn, options = {}) {
  return {
    lifecycle: lifecycleFor(options),
    filter: {
      filterBatch(input) {
        try {
          const events = decodeBatch(input);
          const keep = new Array(events.length);
          for (let i = 0; i < events.length; i++) keep[i] = !!fn(events[i]);
          return keep;
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}

/** `flat-mapper-udf`: `fn(event) -> iterable of Event | Uint8Array | string` (null/undefined emits nothing). */
export function flatMap(fn, options = {}) {
  return {
    lifecycle: lifecycleFor(options),
    flatMapper: {
      flatMapBatch(input) {
        try {
          const out = [];
          for (const event of decodeBatch(input)) {
            const results = fn(event);
            if (results === null || results === undefined) continue;
            if (results instanceof Event || isBytesLike(results) || typeof results[Symbol.iterator] !== "function") {
              throw new TypeError("a flat-map function must return an iterable of events (or null)");
            }
            for (const r of results) out.push(asEvent(r, event, "a flat-map function"));
          }
          return encodeBatch(out);
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}

/** `key-selector-udf`: `fn(event) -> Uint8Array | string | null` (the record's key). */
export function keySelector(fn, options = {}) {
  return {
    lifecycle: lifecycleFor(options),
    keySelector: {
      selectKeys(input) {
        try {
          const out = decodeBatch(input).map((event) => {
            const key = fn(event);
            return new Event(EMPTY, key === null || key === undefined ? null : asBytes(key, "a selected key"), event.timestamp);
          });
          return encodeBatch(out);
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}

export const keyBy = keySelector;

/** `timestamp-assigner-udf`: `fn(event) -> number` (event time, ms since the Unix epoch). */
export function timestampAssigner(fn, options = {}) {
  return {
    lifecycle: lifecycleFor(options),
    timestampAssigner: {
      extractTimestamps(input) {
        try {
          return decodeBatch(input).map((event) => {
            const ts = fn(event);
            if (typeof ts === "bigint") return Number(ts);
            if (!Number.isInteger(ts)) throw new TypeError(`a timestamp assigner must return an integer, not ${ts}`);
            return ts;
          });
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Processor
// ---------------------------------------------------------------------------------------------------------------

class Outputs {
  constructor() {
    this.main = [];
    this.side = new Map();
  }

  build() {
    const side = [];
    for (const [tag, events] of this.side) side.push({ tag, records: encodeBatch(events) });
    return { main: encodeBatch(this.main), side };
  }
}

function release(handle) {
  const dispose = (typeof Symbol.dispose === "symbol" && handle[Symbol.dispose]) || handle.drop;
  if (typeof dispose === "function") dispose.call(handle);
}

/**
 * What a processor sees besides the record: output, keyed state, timers and time. State handles belong to the
 * current key and are valid only while the current record or timer is handled (they are cached per record and
 * released after it).
 */
export class Context {
  constructor(bindings, out, input = 0) {
    this.bindings = bindings;
    this.input = input; // 0, or 1 for the second input of a co-process function
    this.event = null; // the record being processed (null in onTimer)
    this.timer = null; // the timer being handled (null in process)
    this._out = out;
    this._handles = new Map();
  }

  /** The timestamp of the current record, or of the current timer. */
  get timestamp() {
    return this.event ? this.event.timestamp : this.timer.timestamp;
  }

  /** Emits a record to the main output (bytes or a string become the value of a copy of the current record). */
  emit(event) {
    this._out.main.push(this._coerce(event));
  }

  /** Emits a record to the side output `tag`. */
  sideOutput(tag, event) {
    let list = this._out.side.get(tag);
    if (!list) this._out.side.set(tag, (list = []));
    list.push(this._coerce(event));
  }

  _coerce(event) {
    if (event instanceof Event) {
      if (event.timestamp === null || event.timestamp === undefined) event.timestamp = this.timestamp;
      return event;
    }
    if (this.event) return asEvent(event, this.event, "emit");
    return new Event(asBytes(event, "a value"), this.timer.key, this.timer.timestamp);
  }

  _open(kind, name, options) {
    const cacheKey = `${kind}\u0000${name}`;
    let handle = this._handles.get(cacheKey);
    if (!handle) {
      const ks = this.bindings.keyedState;
      if (!ks) throw new Error("keyed state needs the keyed-state import: eddy.processor(impl, { keyedState, context })");
      let ttl = null;
      if (options && options.ttlMs !== undefined && options.ttlMs !== null) {
        ttl = {
          timeToLiveMs: options.ttlMs,
          update: options.update || "on-create-and-write",
          visibility: options.visibility || "never-return-expired",
        };
      }
      handle = ks[kind].open({ name, ttl });
      this._handles.set(cacheKey, handle);
    }
    return handle;
  }

  /** Value state `name` of the current key: `get() -> Uint8Array | null`, `set(bytes)`, `clear()`.
   * `options`: `{ ttlMs, update: "on-create-and-write" | "on-read-and-write",
   * visibility: "never-return-expired" | "return-expired-if-not-cleaned-up" }`. */
  valueState(name, options) {
    return this._open("ValueState", name, options);
  }

  /** List state `name`: `get() -> Uint8Array[]`, `add(bytes)`, `update(list)`, `clear()`. */
  listState(name, options) {
    return this._open("ListState", name, options);
  }

  /** Map state `name`: `get(k)`, `put(k, v)`, `remove(k)`, `contains(k)`, `entries()`, `isEmpty()`, `clear()`. */
  mapState(name, options) {
    return this._open("MapState", name, options);
  }

  _release() {
    if (this._handles.size) {
      for (const handle of this._handles.values()) release(handle);
      this._handles.clear();
    }
  }

  currentKey() {
    return this.bindings.context.currentKey();
  }

  currentWatermark() {
    return this.bindings.context.currentWatermark();
  }

  currentProcessingTime() {
    return this.bindings.context.currentProcessingTime();
  }

  registerEventTimeTimer(timestamp) {
    this.bindings.context.registerEventTimeTimer(Number(timestamp));
  }

  deleteEventTimeTimer(timestamp) {
    this.bindings.context.deleteEventTimeTimer(Number(timestamp));
  }

  registerProcessingTimeTimer(timestamp) {
    this.bindings.context.registerProcessingTimeTimer(Number(timestamp));
  }

  deleteProcessingTimeTimer(timestamp) {
    this.bindings.context.deleteProcessingTimeTimer(Number(timestamp));
  }
}

/**
 * `processor-udf`: per record with keyed state, timers and side outputs. `impl` is a class (instantiated once) or an
 * object with `process(event, ctx)`, optional `onTimer(timer, ctx)` and optional `init(config)`; or a plain function
 * `process(event, ctx)` (then `options.onTimer`). `options` must carry the world's imports:
 * `{ context, keyedState, log }` (`import context from "eddy:udf/context@0.1.0"`, ...). The SDK calls
 * `context.enter(i)` before it hands record (or timer) `i` to the user code. `timer` is
 * `{ key, timestamp, domain: "event-time" | "processing-time" }`.
 */
export function processor(impl, options = {}) {
  const bindings = { context: options.context, keyedState: options.keyedState };
  if (!bindings.context) throw new Error("eddy.processor needs the context import: eddy.processor(impl, { context, keyedState })");
  const isClass = typeof impl === "function" && impl.prototype && typeof impl.prototype.process === "function";
  let instance = null;
  const get = () =>
    (instance ??= isClass ? new impl() : typeof impl === "function" ? { process: impl, onTimer: options.onTimer } : impl);
  const instanceInit = (config) => {
    const instance = get();
    if (typeof instance.init === "function") instance.init(config);
  };
  return {
    lifecycle: lifecycleFor(options, instanceInit),
    processor: {
      process(input, records) {
        try {
          const instance = get();
          const out = new Outputs();
          const ctx = new Context(bindings, out, input);
          const enter = bindings.context.enter;
          const events = decodeBatch(records);
          for (let i = 0; i < events.length; i++) {
            enter(i);
            ctx.event = events[i];
            try {
              instance.process(events[i], ctx);
            } finally {
              ctx._release();
            }
          }
          return out.build();
        } catch (err) {
          throw fail(err);
        }
      },
      onTimers(timers) {
        try {
          const instance = get();
          const out = new Outputs();
          if (typeof instance.onTimer !== "function") return out.build();
          const ctx = new Context(bindings, out);
          const enter = bindings.context.enter;
          for (let i = 0; i < timers.length; i++) {
            enter(i);
            const t = timers[i];
            ctx.timer = { key: t.key, timestamp: t.timestamp, domain: t.domain };
            try {
              instance.onTimer(ctx.timer, ctx);
            } finally {
              ctx._release();
            }
          }
          return out.build();
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Window functions
// ---------------------------------------------------------------------------------------------------------------

function toValue(result) {
  return isBytesLike(result) ? asBytes(result, "a result") : utf8(JSON.stringify(result));
}

/**
 * `aggregator-udf`: `impl` (class or object) with `createAccumulator()`, `add(acc, event) -> acc`,
 * `merge(acc, other) -> acc` and `getResult(acc)`. Accumulators are kept by the host as bytes: as JSON unless `impl`
 * has `encodeAccumulator(acc) -> Uint8Array` and `decodeAccumulator(bytes) -> acc`. `getResult` may return an Event,
 * bytes or a string (the result's value), or any other value (written as JSON). Optional `init(config)`.
 */
export function aggregator(impl, options = {}) {
  const isClass = typeof impl === "function" && impl.prototype && typeof impl.prototype.add === "function";
  let instance = null;
  const get = () => (instance ??= isClass ? new impl() : impl);
  const enc = (a, acc) => (a.encodeAccumulator ? asBytes(a.encodeAccumulator(acc), "an accumulator") : utf8(JSON.stringify(acc)));
  const dec = (a, bytes) => (a.decodeAccumulator ? a.decodeAccumulator(bytes) : JSON.parse(fromUtf8(bytes)));

  function fold(accumulators, others, targets, step) {
    const a = get();
    const accs = decodeBatch(accumulators);
    const items = decodeBatch(others);
    if (items.length !== targets.length) throw new RangeError(`${items.length} records but ${targets.length} targets`);
    const live = new Map();
    for (let i = 0; i < items.length; i++) {
      const t = targets[i];
      if (t >= accs.length) throw new RangeError(`target ${t} of ${accs.length} accumulators`);
      const acc = live.has(t) ? live.get(t) : dec(a, accs[t].value);
      live.set(t, step === "merge" ? a.merge(acc, dec(a, items[i].value)) : a.add(acc, items[i]));
    }
    const out = accs.map((e) => new Event(e.value, null, 0));
    for (const [t, acc] of live) out[t].value = enc(a, acc);
    return encodeBatch(out);
  }

  return {
    lifecycle: lifecycleFor(options, (config) => {
      const a = get();
      if (typeof a.init === "function") a.init(config);
    }),
    aggregator: {
      createAccumulator() {
        try {
          const a = get();
          return enc(a, a.createAccumulator());
        } catch (err) {
          throw fail(err);
        }
      },
      add(accumulators, inputs, targets) {
        try {
          return fold(accumulators, inputs, targets, "add");
        } catch (err) {
          throw fail(err);
        }
      },
      merge(accumulators, others, targets) {
        try {
          return fold(accumulators, others, targets, "merge");
        } catch (err) {
          throw fail(err);
        }
      },
      getResult(accumulators) {
        try {
          const a = get();
          const out = decodeBatch(accumulators).map((acc) => {
            const result = a.getResult(dec(a, acc.value));
            if (result instanceof Event) return new Event(result.value, result.key, result.timestamp ?? 0, result.headers);
            return new Event(toValue(result), null, 0);
          });
          return encodeBatch(out);
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}

/** `reducer-udf`: `fn(acc: Event, event: Event) -> Event | Uint8Array | string` combines two records of a window. */
export function reducer(fn, options = {}) {
  return {
    lifecycle: lifecycleFor(options),
    reducer: {
      reduce(accumulators, inputs, targets) {
        try {
          const accs = decodeBatch(accumulators);
          const items = decodeBatch(inputs);
          if (items.length !== targets.length) throw new RangeError(`${items.length} records but ${targets.length} targets`);
          for (let i = 0; i < items.length; i++) {
            const t = targets[i];
            accs[t] = asEvent(fn(accs[t], items[i]), accs[t], "a reduce function");
          }
          return encodeBatch(accs);
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}

/**
 * `window-processor-udf`: `fn(window, out)` with `window = { key, start, end, global, events }` (start/end null for
 * the global window) and `out.emit(event)` / `out.sideOutput(tag, event)`. Emitted events without a timestamp get
 * `window.end - 1` (0 for the global window).
 */
export function windowProcessor(fn, options = {}) {
  return {
    lifecycle: lifecycleFor(options),
    windowProcessor: {
      processWindows(windows) {
        try {
          const out = new Outputs();
          let window = null;
          const coerce = (event) => {
            if (!(event instanceof Event)) event = new Event(asBytes(event, "a value"), window.key);
            if (event.timestamp === null || event.timestamp === undefined) {
              event.timestamp = window.end === null ? 0 : window.end - 1;
            }
            return event;
          };
          const emitter = {
            emit: (event) => out.main.push(coerce(event)),
            sideOutput: (tag, event) => {
              let list = out.side.get(tag);
              if (!list) out.side.set(tag, (list = []));
              list.push(coerce(event));
            },
          };
          for (const contents of windows) {
            const bounds = contents.window && contents.window.tag === "time" ? contents.window.val : null;
            window = {
              key: contents.key ?? null,
              start: bounds ? bounds.start : null,
              end: bounds ? bounds.end : null,
              global: !bounds,
              events: decodeBatch(contents.elements),
            };
            fn(window, emitter);
          }
          return out.build();
        } catch (err) {
          throw fail(err);
        }
      },
    },
  };
}
