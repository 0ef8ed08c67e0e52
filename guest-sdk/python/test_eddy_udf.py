"""Tests of eddy_udf: the shared codec vectors, and the helpers' batch loops with stand-ins for the bindings."""

import enum
import json
import pathlib
import struct
import sys
import types as pytypes
from dataclasses import dataclass
from typing import List, Optional

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import eddy_udf  # noqa: E402
from eddy_udf import Event, decode_batch, encode_batch  # noqa: E402

VECTORS = json.loads(
    (pathlib.Path(__file__).resolve().parents[1] / "codec" / "testdata" / "vectors.json").read_text()
)


def _record(event):
    return {
        "timestamp": event.timestamp,
        "key": None if event.key is None else event.key.hex(),
        "value": event.value.hex(),
        "headers": [[name, value.hex()] for name, value in event.headers],
    }


def _event(record):
    return Event(
        value=bytes.fromhex(record["value"]),
        key=None if record["key"] is None else bytes.fromhex(record["key"]),
        timestamp=record["timestamp"],
        headers=[(name, bytes.fromhex(value)) for name, value in record["headers"]],
    )


# ---------------------------------------------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_decodes_vector(vector):
    events = decode_batch(bytes.fromhex(vector["wire"]))
    assert [_record(e) for e in events] == vector["records"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_encodes_vector(vector):
    assert encode_batch([_event(r) for r in vector["records"]]).hex() == vector["wire"]


def test_vectors_cover_the_interesting_cases():
    events = [e for v in VECTORS for e in decode_batch(bytes.fromhex(v["wire"]))]
    assert any(e.key is None for e in events)
    assert any(e.key == b"" for e in events)
    assert any(e.headers for e in events)
    assert any(e.timestamp < 0 for e in events)


def test_round_trips_str_keys_values_and_headers():
    events = [Event("h\u00e9", key="k", timestamp=3, headers=[("a", "b"), ("n", b"")]), Event(b"", None, -7)]
    decoded = decode_batch(encode_batch(events))
    assert decoded == events
    assert decoded[0].value == "h\u00e9".encode()
    assert decoded[0].header("a") == b"b"
    assert decoded[0].header("zz") is None


def test_matches_the_documented_layout():
    wire = encode_batch([Event(b"vv", key=b"k", timestamp=1)])
    expected = struct.pack("<IIqIIIIII", 1, 0, 1, 0, 1, 1, 2, 0, 0) + b"kvv"
    assert wire == expected


@pytest.mark.parametrize(
    "wire, message",
    [
        (b"\x01\x00\x00", "shorter than"),
        (struct.pack("<II", 0, 1), "unknown flags"),
        (struct.pack("<II", 5, 0), "do not fit"),
        (struct.pack("<IIqIIIIII", 1, 0, 0, 0, 5, 0, 0, 0, 0), "key lies outside"),
        (struct.pack("<IIqIIIIII", 1, 0, 0, 0, eddy_udf.NO_KEY, 0, 9, 0, 0), "value lies outside"),
        (struct.pack("<IIqIIIIII", 1, 0, 0, 0, eddy_udf.NO_KEY, 0, 0, 0, 3) + b"\x05\x00\x00", "headers"),
    ],
)
def test_rejects_invalid_batches(wire, message):
    with pytest.raises(ValueError, match=message):
        decode_batch(wire)


def test_refuses_events_without_timestamp():
    with pytest.raises(ValueError, match="timestamp"):
        encode_batch([Event(b"x")])


def test_event_json_helpers():
    e = Event.from_json({"a": 1, "b": [True]}, key=b"k", timestamp=9)
    assert e.value == b'{"a":1,"b":[true]}'
    assert e.json() == {"a": 1, "b": [True]}
    f = e.with_value(b"x")
    assert (f.key, f.timestamp, f.value) == (b"k", 9, b"x")
    assert e.with_json([1]).value == b"[1]"
    assert e.with_key(None).key is None and e.with_timestamp(1).timestamp == 1
    assert e.with_header("h", "v").headers == [("h", b"v")] and e.headers == []


# ---------------------------------------------------------------------------------------------------------------
# Stand-ins for the generated bindings
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class SideOutput:
    tag: str
    records: bytes


@dataclass
class Outputs:
    main: bytes
    side: List[SideOutput]


class TimeDomain(enum.Enum):
    EVENT_TIME = 0
    PROCESSING_TIME = 1


@dataclass
class FiredTimer:
    key: Optional[bytes]
    timestamp: int
    domain: TimeDomain


class FakeHost:
    """The host side of ``context`` and ``keyed-state``: keys of the records, current key, state and timers."""

    def __init__(self):
        self.keys = []
        self.current = None
        self.entered = []
        self.state = {}
        self.timers = set()
        self.open_handles = 0
        self.opened = 0

    def context(self):
        host = self

        def enter(index):
            if host.entered and index < host.entered[-1]:
                raise eddy_udf._Err("indices may only grow")
            host.entered.append(index)
            host.current = host.keys[index]

        return pytypes.SimpleNamespace(
            enter=enter,
            current_key=lambda: host.current,
            current_watermark=lambda: -(2**63),
            current_processing_time=lambda: 1000,
            register_event_time_timer=lambda ts: host.timers.add(("event-time", host.current, ts)),
            delete_event_time_timer=lambda ts: host.timers.discard(("event-time", host.current, ts)),
            register_processing_time_timer=lambda ts: host.timers.add(("processing-time", host.current, ts)),
            delete_processing_time_timer=lambda ts: host.timers.discard(("processing-time", host.current, ts)),
        )

    def keyed_state(self):
        host = self

        class ValueState:
            def __init__(self, name):
                self.slot = (host.current, name)
                self.closed = False
                host.open_handles += 1
                host.opened += 1

            @classmethod
            def open(cls, descriptor):
                return cls(descriptor.name)

            def _check(self):
                if self.closed or self.slot[0] != host.current:
                    raise eddy_udf._Err("handle used for another key")

            def get(self):
                self._check()
                return host.state.get(self.slot)

            def set(self, value):
                self._check()
                host.state[self.slot] = value

            def clear(self):
                self._check()
                host.state.pop(self.slot, None)

            def __exit__(self, *args):
                self.closed = True
                host.open_handles -= 1

        class TtlUpdate(enum.Enum):
            ON_CREATE_AND_WRITE = 0
            ON_READ_AND_WRITE = 1

        class TtlVisibility(enum.Enum):
            NEVER_RETURN_EXPIRED = 0
            RETURN_EXPIRED_IF_NOT_CLEANED_UP = 1

        return pytypes.SimpleNamespace(
            ValueState=ValueState,
            StateDescriptor=lambda name, ttl: pytypes.SimpleNamespace(name=name, ttl=ttl),
            Ttl=lambda ms, update, visibility: (ms, update, visibility),
            TtlUpdate=TtlUpdate,
            TtlVisibility=TtlVisibility,
        )


@pytest.fixture
def host():
    h = FakeHost()
    eddy_udf.use_bindings(
        types=pytypes.SimpleNamespace(Outputs=Outputs, SideOutput=SideOutput),
        context=h.context(),
        keyed_state=h.keyed_state(),
        log=pytypes.SimpleNamespace(
            Level=pytypes.SimpleNamespace(TRACE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4),
            write=lambda level, message: h.__dict__.setdefault("logs", []).append((level, message)),
        ),
    )
    yield h
    eddy_udf.bindings._mods.clear()


def _module(name):
    """A fresh module standing in for a UDF's app module (the decorators set its export classes)."""
    mod = pytypes.ModuleType(name)
    sys.modules[name] = mod
    return mod


def _define(module_name, decorator, fn):
    fn.__module__ = module_name
    return decorator(fn)


def _u64(n):
    return struct.pack("<Q", n)


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------

def test_map_sets_export_classes_on_the_app_module(host):
    mod = _module("app_map")
    _define("app_map", eddy_udf.map, lambda e: e.with_value(e.value.upper()))
    assert set(vars(mod)) >= {"Lifecycle", "Mapper"}
    wire = encode_batch([Event(b"ab", b"k", 1, [("h", b"1")]), Event(b"c", None, 2)])
    out = decode_batch(mod.Mapper().map_batch(wire))
    assert out == [Event(b"AB", b"k", 1, [("h", b"1")]), Event(b"C", None, 2)]


def test_map_accepts_bytes_and_str_results_and_fills_timestamps(host):
    mod = _module("app_map2")
    _define("app_map2", eddy_udf.map, lambda e: "x" if e.timestamp == 1 else Event(b"y", key=b"n"))
    out = decode_batch(mod.Mapper().map_batch(encode_batch([Event(b"a", b"k", 1), Event(b"b", None, 2)])))
    assert out == [Event(b"x", b"k", 1), Event(b"y", b"n", 2)]


def test_user_errors_become_wit_errors(host):
    mod = _module("app_err")

    def boom(event):
        raise RuntimeError("no good")

    _define("app_err", eddy_udf.map, boom)
    with pytest.raises(eddy_udf._Err) as info:
        mod.Mapper().map_batch(encode_batch([Event(b"a", None, 0)]))
    assert info.value.value == "RuntimeError: no good"
    assert any("Traceback" in message for _, message in host.logs)


def test_filter_returns_one_flag_per_record(host):
    mod = _module("app_filter")
    _define("app_filter", eddy_udf.filter, lambda e: e.value != b"drop")
    wire = encode_batch([Event(b"keep", None, 0), Event(b"drop", None, 0), Event(b"", None, 0)])
    assert mod.Filter().filter_batch(wire) == [True, False, True]


def test_flat_map_emits_any_number(host):
    mod = _module("app_flat")
    _define("app_flat", eddy_udf.flat_map, lambda e: None if not e.value else [e.with_value(c) for c in e.text()])
    wire = encode_batch([Event(b"ab", b"k", 4), Event(b"", None, 5), Event(b"c", None, 6)])
    out = decode_batch(mod.FlatMapper().flat_map_batch(wire))
    assert [(e.key, e.value, e.timestamp) for e in out] == [(b"k", b"a", 4), (b"k", b"b", 4), (None, b"c", 6)]


def test_key_selector_sets_keys(host):
    mod = _module("app_keys")
    _define("app_keys", eddy_udf.key_selector, lambda e: e.json()["user"] if e.value else None)
    wire = encode_batch([Event(b'{"user":"u1"}', None, 3), Event(b"", b"old", 4)])
    out = decode_batch(mod.KeySelector().select_keys(wire))
    assert [(e.key, e.timestamp) for e in out] == [(b"u1", 3), (None, 4)]


def test_timestamp_assigner(host):
    mod = _module("app_ts")
    _define("app_ts", eddy_udf.timestamp_assigner, lambda e: e.json()["ts"])
    wire = encode_batch([Event(b'{"ts":5}', None, 0), Event(b'{"ts":-2}', None, 0)])
    assert mod.TimestampAssigner().extract_timestamps(wire) == [5, -2]
    _define("app_ts", eddy_udf.timestamp_assigner, lambda e: "5")
    with pytest.raises(eddy_udf._Err, match="int"):
        mod.TimestampAssigner().extract_timestamps(wire)


def test_lifecycle_init_parses_config_and_calls_hooks(host):
    mod = _module("app_init")
    seen = []
    _define("app_init", eddy_udf.map, lambda e: e)
    _define("app_init", eddy_udf.init, lambda config: seen.append(config))
    mod.Lifecycle().init('{"factor": 2}')
    mod.Lifecycle().init("null")
    assert seen == [{"factor": 2}, None]
    assert eddy_udf.config() is None
    with pytest.raises(eddy_udf._Err, match="not JSON"):
        mod.Lifecycle().init("{")


def test_processor_enters_each_record_and_collects_outputs(host):
    mod = _module("app_proc")

    class Counter:
        def init(self, config):
            self.limit = config["limit"]

        def process(self, event, ctx):
            state = ctx.value_state("count")
            assert ctx.value_state("count") is state, "handles are cached per record"
            assert ctx.current_key() == event.key
            n = int.from_bytes(state.get() or b"\0", "little") + 1
            state.set(n.to_bytes(1, "little"))
            ctx.emit(event.with_value(bytes([n])))
            if n > self.limit:
                ctx.side_output("over", b"!")
            ctx.register_event_time_timer(event.timestamp + 10)

        def on_timer(self, timer, ctx):
            ctx.value_state("count").clear()
            ctx.emit(Event(b"timer", timer.key))
            assert timer.domain == eddy_udf.EVENT_TIME

    Counter.__module__ = "app_proc"
    eddy_udf.processor(Counter)
    mod.Lifecycle().init('{"limit": 1}')
    records = [Event(b"a", b"k1", 1), Event(b"b", b"k2", 2), Event(b"c", b"k1", 3)]
    host.keys = [e.key for e in records]
    outputs = mod.Processor().process(0, encode_batch(records))
    assert host.entered == [0, 1, 2]
    assert [(e.key, e.value, e.timestamp) for e in decode_batch(outputs.main)] == [
        (b"k1", b"\x01", 1), (b"k2", b"\x01", 2), (b"k1", b"\x02", 3)]
    assert [(s.tag, [(e.key, e.value, e.timestamp) for e in decode_batch(s.records)]) for s in outputs.side] == [
        ("over", [(b"k1", b"!", 3)])]
    assert host.state == {(b"k1", "count"): b"\x02", (b"k2", "count"): b"\x01"}
    assert host.timers == {("event-time", b"k1", 11), ("event-time", b"k2", 12), ("event-time", b"k1", 13)}
    assert host.open_handles == 0, "handles are released after each record"

    host.entered, host.keys = [], [b"k1"]
    outputs = mod.Processor().on_timers([FiredTimer(b"k1", 11, TimeDomain.EVENT_TIME)])
    assert host.entered == [0]
    assert [(e.key, e.value, e.timestamp) for e in decode_batch(outputs.main)] == [(b"k1", b"timer", 11)]
    assert (b"k1", "count") not in host.state


def test_function_processor_with_on_timer_and_ttl(host):
    mod = _module("app_fproc")
    fired = []

    def on_timer(timer, ctx):
        fired.append((timer.key, timer.timestamp, timer.domain))

    def process(event, ctx):
        ctx.value_state("seen", ttl_ms=1000, update="on-read-and-write").set(b"1")
        ctx.register_processing_time_timer(ctx.current_processing_time() + 5)

    process.__module__ = "app_fproc"
    eddy_udf.processor(on_timer=on_timer)(process)
    host.keys = [b"a"]
    out = mod.Processor().process(0, encode_batch([Event(b"", b"a", 0)]))
    assert decode_batch(out.main) == [] and out.side == []
    assert host.timers == {("processing-time", b"a", 1005)}
    host.entered, host.keys = [], [b"a"]
    mod.Processor().on_timers([FiredTimer(b"a", 1005, TimeDomain.PROCESSING_TIME)])
    assert fired == [(b"a", 1005, "processing-time")]


def test_processor_errors_release_handles(host):
    mod = _module("app_perr")

    def process(event, ctx):
        ctx.value_state("x")
        raise KeyError("missing")

    process.__module__ = "app_perr"
    eddy_udf.processor(process)
    host.keys = [b"a"]
    with pytest.raises(eddy_udf._Err, match="KeyError"):
        mod.Processor().process(0, encode_batch([Event(b"", b"a", 0)]))
    assert host.open_handles == 0


def test_aggregator_folds_into_targets(host):
    mod = _module("app_agg")

    class Average:
        def create_accumulator(self):
            return [0, 0]

        def add(self, acc, event):
            return [acc[0] + event.json(), acc[1] + 1]

        def merge(self, acc, other):
            return [acc[0] + other[0], acc[1] + other[1]]

        def get_result(self, acc):
            return {"avg": acc[0] / acc[1]} if acc[1] else b""

    Average.__module__ = "app_agg"
    eddy_udf.aggregator(Average)
    agg = mod.Aggregator()
    fresh = agg.create_accumulator()
    assert fresh == b"[0,0]"
    accs = encode_batch([Event(fresh, None, 0), Event(fresh, None, 0)])
    inputs = encode_batch([Event(b"4", None, 0), Event(b"6", None, 0), Event(b"1", None, 0)])
    accs = agg.add(accs, inputs, [0, 0, 1])
    assert [e.value for e in decode_batch(accs)] == [b"[10,2]", b"[1,1]"]
    merged = agg.merge(accs, encode_batch([Event(b"[2,2]", None, 0)]), [1])
    assert [e.value for e in decode_batch(merged)] == [b"[10,2]", b"[3,3]"]
    results = agg.get_result(encode_batch(decode_batch(merged) + [Event(fresh, None, 0)]))
    assert [e.value for e in decode_batch(results)] == [b'{"avg":5.0}', b'{"avg":1.0}', b""]


def test_aggregator_with_custom_codec(host):
    mod = _module("app_agg2")

    class Sum:
        def create_accumulator(self):
            return 0

        def add(self, acc, event):
            return acc + int.from_bytes(event.value, "little")

        def merge(self, a, b):
            return a + b

        def get_result(self, acc):
            return acc.to_bytes(8, "little")

        def encode_accumulator(self, acc):
            return acc.to_bytes(8, "little")

        def decode_accumulator(self, data):
            return int.from_bytes(data, "little")

    Sum.__module__ = "app_agg2"
    eddy_udf.aggregator(Sum())
    agg = mod.Aggregator()
    accs = encode_batch([Event(agg.create_accumulator(), None, 0)])
    accs = agg.add(accs, encode_batch([Event(_u64(5), None, 0), Event(_u64(7), None, 0)]), [0, 0])
    assert decode_batch(agg.get_result(accs))[0].value == _u64(12)


def test_reducer(host):
    mod = _module("app_reduce")
    _define("app_reduce", eddy_udf.reducer, lambda a, b: a.with_value(a.value + b.value))
    accs = encode_batch([Event(b"a", b"k", 1), Event(b"x", None, 2)])
    out = mod.Reducer().reduce(accs, encode_batch([Event(b"b", None, 0), Event(b"c", None, 0)]), [0, 0])
    assert [(e.key, e.value, e.timestamp) for e in decode_batch(out)] == [(b"k", b"abc", 1), (None, b"x", 2)]


def test_window_processor(host):
    mod = _module("app_window")

    def count(window, out):
        out.emit(Event.from_json({"n": len(window.events), "global": window.is_global}, key=window.key))
        if window.key == b"k2":
            out.side_output("late", b"x")

    _define("app_window", eddy_udf.window_processor, count)
    time_window = pytypes.SimpleNamespace(value=pytypes.SimpleNamespace(start=0, end=10))
    windows = [
        pytypes.SimpleNamespace(key=b"k1", window=time_window, elements=encode_batch([Event(b"", None, 1)] * 2)),
        pytypes.SimpleNamespace(key=b"k2", window=pytypes.SimpleNamespace(), elements=encode_batch([])),
    ]
    out = mod.WindowProcessor().process_windows(windows)
    assert [(e.key, e.json(), e.timestamp) for e in decode_batch(out.main)] == [
        (b"k1", {"n": 2, "global": False}, 9), (b"k2", {"n": 0, "global": True}, 0)]
    assert out.side[0].tag == "late"
