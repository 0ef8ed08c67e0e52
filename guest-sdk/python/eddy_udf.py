"""Eddy's Python guest SDK: write user functions (UDFs) as plain Python and build them with componentize-py.

One module, no dependencies. It decodes and encodes Eddy's flat record batches (the encoding documented in
``guest-sdk/codec/src/lib.rs``) and turns plain functions and classes into the export classes that componentize-py
looks for in the app module (``Lifecycle``, ``Mapper``, ``Filter``, ...)::

    import eddy_udf

    @eddy_udf.map
    def upper(event):
        return event.with_value(event.value.upper())

Build with ``componentize-py -d wit -w mapper-udf componentize app -p . -p guest-sdk/python -o upper.wasm``.

How the export classes are provided: componentize-py imports the app module at build time (the import is
snapshotted) and reads one attribute per exported interface from it, named after the interface in PascalCase
(``lifecycle`` -> ``Lifecycle``, ``flat-mapper`` -> ``FlatMapper``). It calls the methods (snake_case:
``map_batch``, ``filter_batch``, ...) on an instance of that class. The decorators below build those classes and
set them as attributes of the module that defines the decorated function or class, so the app module needs no
boilerplate. A WIT ``result`` error is raised as ``componentize_py_types.Err(message)``; user exceptions are
turned into such errors (with the traceback written to the host log), so a failing UDF fails its task with a
readable message instead of trapping.
"""

from __future__ import annotations

import json as _json
import struct as _struct
import sys as _sys
import traceback as _traceback

__all__ = [
    "Event", "Timer", "Window", "decode_batch", "encode_batch", "decode_headers", "encode_headers",
    "map", "filter", "flat_map", "key_selector", "key_by", "timestamp_assigner", "processor", "aggregator",
    "reducer", "window_processor", "init", "config", "log", "EVENT_TIME", "PROCESSING_TIME",
]

# --------------------------------------------------------------------------------------------------------------
# Record batches
# --------------------------------------------------------------------------------------------------------------

HEADER_LEN = 8
ROW_LEN = 32
NO_KEY = 0xFFFFFFFF

_HEADER = _struct.Struct("<II")
_ROW = _struct.Struct("<qIIIIII")
_U16 = _struct.Struct("<H")
_U32 = _struct.Struct("<I")


def _as_bytes(value, what):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


class Event:
    """One record: ``key`` (bytes or None), ``value`` (bytes), ``timestamp`` (int, ms since the Unix epoch) and
    ``headers`` (list of ``(name: str, value: bytes)``).

    ``key`` and ``value`` may be given as ``str`` (encoded as UTF-8 when the record is written). A ``timestamp`` of
    None means "the timestamp of the record being processed": the helpers fill it in (``map``, ``flat_map``,
    ``ctx.emit``); ``encode_batch`` refuses it.
    """

    __slots__ = ("key", "value", "timestamp", "headers")

    def __init__(self, value=b"", key=None, timestamp=None, headers=None):
        self.value = value
        self.key = key
        self.timestamp = timestamp
        self.headers = [] if headers is None else headers

    # -- convenience -------------------------------------------------------------------------------------------
    def json(self):
        """The value parsed as JSON."""
        return _json.loads(self.value)

    def text(self):
        """The value decoded as UTF-8."""
        value = self.value
        return value if isinstance(value, str) else bytes(value).decode("utf-8")

    def header(self, name, default=None):
        """The value of the first header called ``name``."""
        for n, v in self.headers:
            if n == name:
                return v
        return default

    @classmethod
    def from_json(cls, obj, key=None, timestamp=None, headers=None):
        """An event whose value is ``obj`` as compact JSON."""
        return cls(_json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), key, timestamp, headers)

    def with_value(self, value):
        """A copy with another value (key, timestamp and headers are kept)."""
        return Event(value, self.key, self.timestamp, list(self.headers))

    def with_json(self, obj):
        """A copy whose value is ``obj`` as compact JSON."""
        return self.with_value(_json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))

    def with_key(self, key):
        """A copy with another key (None for no key)."""
        return Event(self.value, key, self.timestamp, list(self.headers))

    def with_timestamp(self, timestamp):
        """A copy with another timestamp."""
        return Event(self.value, self.key, timestamp, list(self.headers))

    def with_header(self, name, value):
        """A copy with one more header."""
        return Event(self.value, self.key, self.timestamp, list(self.headers) + [(name, _as_bytes(value, "header"))])

    def __eq__(self, other):
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.timestamp == other.timestamp
            and _opt_bytes(self.key) == _opt_bytes(other.key)
            and _as_bytes(self.value, "value") == _as_bytes(other.value, "value")
            and [(n, _as_bytes(v, "header")) for n, v in self.headers]
            == [(n, _as_bytes(v, "header")) for n, v in other.headers]
        )

    __hash__ = None

    def __repr__(self):
        return f"Event(value={self.value!r}, key={self.key!r}, timestamp={self.timestamp!r}, headers={self.headers!r})"


def _opt_bytes(value):
    return None if value is None else _as_bytes(value, "key")


def decode_headers(raw):
    """Decodes a headers block (``n:u16 (name_len:u16 name value_len:u32 value){n}``) to ``[(name, value)]``."""
    if not raw:
        return []
    if len(raw) < 2:
        raise ValueError("invalid record batch: headers are truncated")
    (count,) = _U16.unpack_from(raw, 0)
    at, end, out = 2, len(raw), []
    for _ in range(count):
        if at + 2 > end:
            raise ValueError("invalid record batch: headers are malformed")
        (name_len,) = _U16.unpack_from(raw, at)
        at += 2
        if at + name_len + 4 > end:
            raise ValueError("invalid record batch: headers are malformed")
        try:
            name = bytes(raw[at:at + name_len]).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("invalid record batch: a header name is not UTF-8") from None
        at += name_len
        (value_len,) = _U32.unpack_from(raw, at)
        at += 4
        if at + value_len > end:
            raise ValueError("invalid record batch: headers are malformed")
        out.append((name, bytes(raw[at:at + value_len])))
        at += value_len
    if at != end:
        raise ValueError("invalid record batch: headers are malformed")
    return out


def encode_headers(pairs):
    """Encodes ``[(name, value)]`` as a headers block (empty bytes for no headers)."""
    if not pairs:
        return b""
    if len(pairs) > 0xFFFF:
        raise ValueError("at most 65535 headers per record")
    out = bytearray(_U16.pack(len(pairs)))
    for name, value in pairs:
        name_b = name.encode("utf-8")
        value_b = _as_bytes(value, "header value")
        out += _U16.pack(len(name_b))
        out += name_b
        out += _U32.pack(len(value_b))
        out += value_b
    return bytes(out)


def decode_batch(data):
    """Decodes a batch (bytes-like) to a list of ``Event``; raises ``ValueError`` when the bytes are not a batch."""
    data = bytes(data)
    size = len(data)
    if size < HEADER_LEN:
        raise ValueError(f"invalid record batch: {size} bytes is shorter than the {HEADER_LEN}-byte header")
    count, flags = _HEADER.unpack_from(data, 0)
    if flags != 0:
        raise ValueError(f"invalid record batch: unknown flags {flags:#x}")
    base = HEADER_LEN + ROW_LEN * count
    if base > size:
        raise ValueError(f"invalid record batch: {count} rows do not fit in {size} bytes")
    data_len = size - base
    events = []
    append = events.append
    for ts, koff, klen, voff, vlen, hoff, hlen in _ROW.iter_unpack(data[HEADER_LEN:base]):
        if klen == NO_KEY:
            key = None
        elif koff + klen > data_len:
            raise ValueError("invalid record batch: a key lies outside the data area")
        else:
            key = data[base + koff:base + koff + klen]
        if voff + vlen > data_len:
            raise ValueError("invalid record batch: a value lies outside the data area")
        if hoff + hlen > data_len:
            raise ValueError("invalid record batch: headers lie outside the data area")
        headers = decode_headers(data[base + hoff:base + hoff + hlen]) if hlen else []
        append(Event(data[base + voff:base + voff + vlen], key, ts, headers))
    return events


def encode_batch(events):
    """Encodes an iterable of ``Event`` as a batch (bytes). Keys and values may be bytes-like or str."""
    events = events if isinstance(events, list) else list(events)
    count = len(events)
    rows = bytearray(HEADER_LEN + ROW_LEN * count)
    _HEADER.pack_into(rows, 0, count, 0)
    data = bytearray()
    pack_into = _ROW.pack_into
    at = HEADER_LEN
    for event in events:
        ts = event.timestamp
        if ts is None:
            raise ValueError("an event to encode has no timestamp")
        key = event.key
        if key is None:
            koff, klen = 0, NO_KEY
        else:
            if type(key) is not bytes:
                key = _as_bytes(key, "key")
            koff, klen = len(data), len(key)
            data += key
        value = event.value
        if type(value) is not bytes:
            value = _as_bytes(value, "value")
        voff, vlen = len(data), len(value)
        data += value
        if event.headers:
            block = encode_headers(event.headers)
            hoff, hlen = len(data), len(block)
            data += block
        else:
            hoff = hlen = 0
        pack_into(rows, at, ts, koff, klen, voff, vlen, hoff, hlen)
        at += ROW_LEN
    rows += data
    return bytes(rows)


# --------------------------------------------------------------------------------------------------------------
# Generated bindings (present only inside a componentize-py build)
# --------------------------------------------------------------------------------------------------------------

try:  # componentize-py's runtime types; absent when the module is used in plain CPython (tests)
    from componentize_py_types import Err as _Err
except ImportError:  # pragma: no cover - depends on the environment
    class _Err(Exception):
        """Stand-in for ``componentize_py_types.Err`` outside a component."""

        def __init__(self, value):
            super().__init__(value)
            self.value = value


class _Bindings:
    """Lazily imported generated modules (``wit_world.imports.*``). Tests replace them with ``use_bindings``."""

    def __init__(self):
        self._mods = {}

    def __getattr__(self, name):
        mods = self.__dict__["_mods"]
        if name not in mods:
            import importlib

            mods[name] = importlib.import_module(f"wit_world.imports.{name}")
        return mods[name]


    def preload(self, *names):
        """Imports generated modules now. componentize-py snapshots the app at build time, and modules that were
        not imported then cannot be imported at run time, so each helper preloads what it uses."""
        for name in names:
            try:
                getattr(self, name)
            except ImportError:  # plain CPython (tests): no generated bindings
                pass


bindings = _Bindings()


def use_bindings(**modules):
    """Replaces generated modules (``types``, ``context``, ``keyed_state``, ``log``) with stand-ins; for tests."""
    bindings._mods.update(modules)


# --------------------------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------------------------

class _Log:
    """Writes to the host's log (``eddy:udf/log``); prints to stderr outside a component."""

    _LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")

    def write(self, level, message):
        try:
            mod = bindings.log
        except ImportError:
            print(f"[{level}] {message}", file=_sys.stderr)
            return
        mod.write(getattr(mod.Level, level), str(message))

    def trace(self, message):
        self.write("TRACE", message)

    def debug(self, message):
        self.write("DEBUG", message)

    def info(self, message):
        self.write("INFO", message)

    def warn(self, message):
        self.write("WARN", message)

    def error(self, message):
        self.write("ERROR", message)


log = _Log()


def _fail(exc):
    """Turns an exception from user code into the WIT error (``Err(message)``)."""
    if isinstance(exc, _Err):
        return exc
    cls = type(exc)
    name = cls.__name__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__qualname__}"
    message = f"{name}: {exc}"
    try:
        log.error("".join(_traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
    except Exception:  # logging must never hide the original error
        pass
    return _Err(message)


# --------------------------------------------------------------------------------------------------------------
# Lifecycle and registration
# --------------------------------------------------------------------------------------------------------------

_init_hooks = {}  # module name -> hook(config)
_instance_inits = {}  # module name -> [init of a processor or aggregator instance]
_configs = {}  # module name -> parsed config
_last_config = [None]


def config():
    """The parsed JSON config given to ``lifecycle.init`` (None before init or for ``null``)."""
    return _last_config[0]


def init(hook):
    """Decorator: ``hook(config)`` runs once per instance with the operator's parsed JSON config (None for null)."""
    _init_hooks[hook.__module__] = hook
    return hook


def _lifecycle_class(module_name):
    class Lifecycle:
        __slots__ = ()

        def init(self, config: str) -> None:
            try:
                parsed = _json.loads(config) if config else None
            except ValueError as exc:
                raise _Err(f"the config is not JSON: {exc}") from None
            _configs[module_name] = parsed
            _last_config[0] = parsed
            try:
                for on_init in _instance_inits.get(module_name, ()):
                    on_init(parsed)
                hook = _init_hooks.get(module_name)
                if hook is not None:
                    hook(parsed)
            except Exception as exc:
                raise _fail(exc) from None

    return Lifecycle


def _register(module_name, on_init=None, preload=(), **exports):
    """Sets ``Lifecycle`` and the given export classes on the module ``module_name`` and returns them."""
    if on_init is not None:
        _instance_inits.setdefault(module_name, []).append(on_init)
    bindings.preload("log", "types", *preload)
    exports = dict(exports, Lifecycle=_lifecycle_class(module_name))
    module = _sys.modules.get(module_name)
    if module is not None:
        for name, cls in exports.items():
            setattr(module, name, cls)
    return exports


def _attach(target, exports):
    try:
        target.eddy_exports = exports
    except (AttributeError, TypeError):
        pass
    return target


def _fill(event, source):
    """Gives ``event`` the timestamp of ``source`` when it has none."""
    if event.timestamp is None:
        event.timestamp = source.timestamp
    return event


def _as_event(result, source, what):
    if isinstance(result, Event):
        return _fill(result, source)
    if isinstance(result, (bytes, bytearray, memoryview, str)):
        return source.with_value(result)
    raise TypeError(f"{what} must return an Event, bytes or str, not {type(result).__name__}")


# --------------------------------------------------------------------------------------------------------------
# Stateless worlds
# --------------------------------------------------------------------------------------------------------------

def map(fn):
    """``mapper-udf``: ``fn(event) -> Event | bytes | str`` (bytes or str replace the value)."""

    class Mapper:
        __slots__ = ()

        def map_batch(self, input: bytes) -> bytes:
            try:
                return encode_batch([_as_event(fn(e), e, "a map function") for e in decode_batch(input)])
            except Exception as exc:
                raise _fail(exc) from None

    return _attach(fn, _register(fn.__module__, Mapper=Mapper))


def filter(fn):
    """``filter-udf``: ``fn(event) -> bool`` (true keeps the record)."""

    class Filter:
        __slots__ = ()

        def filter_batch(self, input: bytes) -> list:
            try:
                return [bool(fn(e)) for e in decode_batch(input)]
            except Exception as exc:
                raise _fail(exc) from None

    return _attach(fn, _register(fn.__module__, Filter=Filter))


def flat_map(fn):
    """``flat-mapper-udf``: ``fn(event) -> iterable of Event | bytes | str`` (None emits nothing)."""

    class FlatMapper:
        __slots__ = ()

        def flat_map_batch(self, input: bytes) -> bytes:
            try:
                out = []
                for e in decode_batch(input):
                    results = fn(e)
                    if results is None:
                        continue
                    if isinstance(results, (Event, bytes, bytearray, str)):
                        raise TypeError("a flat-map function must return an iterable of events (or None)")
                    out.extend(_as_event(r, e, "a flat-map function") for r in results)
                return encode_batch(out)
            except Exception as exc:
                raise _fail(exc) from None

    return _attach(fn, _register(fn.__module__, FlatMapper=FlatMapper))


def key_selector(fn):
    """``key-selector-udf``: ``fn(event) -> bytes | str | None`` (the record's key)."""

    class KeySelector:
        __slots__ = ()

        def select_keys(self, input: bytes) -> bytes:
            try:
                out = []
                for e in decode_batch(input):
                    key = fn(e)
                    out.append(Event(b"", None if key is None else _as_bytes(key, "a selected key"), e.timestamp))
                return encode_batch(out)
            except Exception as exc:
                raise _fail(exc) from None

    return _attach(fn, _register(fn.__module__, KeySelector=KeySelector))


key_by = key_selector


def timestamp_assigner(fn):
    """``timestamp-assigner-udf``: ``fn(event) -> int`` (event time in ms since the Unix epoch)."""

    class TimestampAssigner:
        __slots__ = ()

        def extract_timestamps(self, input: bytes) -> list:
            try:
                out = []
                for e in decode_batch(input):
                    ts = fn(e)
                    if not isinstance(ts, int) or isinstance(ts, bool):
                        raise TypeError(f"a timestamp assigner must return an int, not {type(ts).__name__}")
                    out.append(ts)
                return out
            except Exception as exc:
                raise _fail(exc) from None

    return _attach(fn, _register(fn.__module__, TimestampAssigner=TimestampAssigner))


# --------------------------------------------------------------------------------------------------------------
# Processor
# --------------------------------------------------------------------------------------------------------------

EVENT_TIME = "event-time"
PROCESSING_TIME = "processing-time"


class Timer:
    """A timer that fired: ``key`` (bytes or None), ``timestamp`` (int ms), ``domain`` (``EVENT_TIME`` or
    ``PROCESSING_TIME``)."""

    __slots__ = ("key", "timestamp", "domain")

    def __init__(self, key, timestamp, domain):
        self.key = key
        self.timestamp = timestamp
        self.domain = domain

    def __repr__(self):
        return f"Timer(key={self.key!r}, timestamp={self.timestamp!r}, domain={self.domain!r})"


def _domain_name(domain):
    if isinstance(domain, str):
        return domain
    name = getattr(domain, "name", str(domain))
    return name.lower().replace("_", "-")


class _Outputs:
    __slots__ = ("main", "side")

    def __init__(self):
        self.main = []
        self.side = {}

    def build(self):
        types = bindings.types
        side = [types.SideOutput(tag, encode_batch(events)) for tag, events in self.side.items()]
        return types.Outputs(encode_batch(self.main), side)


class Context:
    """What a processor sees besides the record: output, keyed state, timers and time.

    State handles (``value_state``, ``list_state``, ``map_state``) belong to the current key and are valid only
    while the current record or timer is being handled; ask the context again for the next one (handles are cached
    per record, so asking twice is cheap).
    """

    __slots__ = ("input", "event", "timer", "_out", "_handles")

    def __init__(self, out, input=0):
        self.input = input  # 0, or 1 for the second input of a co-process function
        self.event = None  # the record being processed (None in on_timer)
        self.timer = None  # the timer being handled (None in process)
        self._out = out
        self._handles = {}

    # -- output ------------------------------------------------------------------------------------------------
    @property
    def timestamp(self):
        """The timestamp of the current record, or of the current timer."""
        return self.event.timestamp if self.event is not None else self.timer.timestamp

    def emit(self, event):
        """Emits a record to the main output (bytes or str become the value of a copy of the current record)."""
        self._out.main.append(self._coerce(event))

    collect = emit

    def side_output(self, tag, event):
        """Emits a record to the side output ``tag``."""
        self._out.side.setdefault(tag, []).append(self._coerce(event))

    def _coerce(self, event):
        if isinstance(event, Event):
            if event.timestamp is None:
                event.timestamp = self.timestamp
            return event
        if self.event is not None:
            return _as_event(event, self.event, "emit")
        return Event(_as_bytes(event, "value"), self.timer.key, self.timer.timestamp)

    # -- state -------------------------------------------------------------------------------------------------
    def _open(self, kind, name, ttl_ms, update, visibility):
        cache_key = (kind, name)
        handle = self._handles.get(cache_key)
        if handle is None:
            ks = bindings.keyed_state
            ttl = None
            if ttl_ms is not None:
                ttl = ks.Ttl(
                    int(ttl_ms),
                    getattr(ks.TtlUpdate, update.upper().replace("-", "_")),
                    getattr(ks.TtlVisibility, visibility.upper().replace("-", "_")),
                )
            handle = getattr(ks, kind).open(ks.StateDescriptor(name, ttl))
            self._handles[cache_key] = handle
        return handle

    def value_state(self, name, ttl_ms=None, update="on-create-and-write", visibility="never-return-expired"):
        """The value state ``name`` of the current key: ``get() -> bytes | None``, ``set(bytes)``, ``clear()``."""
        return self._open("ValueState", name, ttl_ms, update, visibility)

    def list_state(self, name, ttl_ms=None, update="on-create-and-write", visibility="never-return-expired"):
        """The list state ``name``: ``get() -> [bytes]``, ``add(bytes)``, ``update([bytes])``, ``clear()``."""
        return self._open("ListState", name, ttl_ms, update, visibility)

    def map_state(self, name, ttl_ms=None, update="on-create-and-write", visibility="never-return-expired"):
        """The map state ``name``: ``get(k)``, ``put(k, v)``, ``remove(k)``, ``contains(k)``, ``entries()``,
        ``is_empty()``, ``clear()``."""
        return self._open("MapState", name, ttl_ms, update, visibility)

    def _release(self):
        if self._handles:
            for handle in self._handles.values():
                exit_ = getattr(handle, "__exit__", None)
                if exit_ is not None:
                    exit_(None, None, None)
            self._handles.clear()

    # -- key, time and timers ----------------------------------------------------------------------------------
    def current_key(self):
        return bindings.context.current_key()

    def current_watermark(self):
        return bindings.context.current_watermark()

    def current_processing_time(self):
        return bindings.context.current_processing_time()

    def register_event_time_timer(self, timestamp):
        bindings.context.register_event_time_timer(int(timestamp))

    def delete_event_time_timer(self, timestamp):
        bindings.context.delete_event_time_timer(int(timestamp))

    def register_processing_time_timer(self, timestamp):
        bindings.context.register_processing_time_timer(int(timestamp))

    def delete_processing_time_timer(self, timestamp):
        bindings.context.delete_processing_time_timer(int(timestamp))


def _processor_exports(module_name, get_impl, on_init):
    class Processor:
        __slots__ = ()

        def process(self, input: int, records: bytes):
            try:
                impl = get_impl()
                handle = impl.process
                out = _Outputs()
                ctx = Context(out, input)
                enter = bindings.context.enter
                for i, event in enumerate(decode_batch(records)):
                    enter(i)
                    ctx.event = event
                    try:
                        handle(event, ctx)
                    finally:
                        ctx._release()
                return out.build()
            except Exception as exc:
                raise _fail(exc) from None

        def on_timers(self, timers: list):
            try:
                impl = get_impl()
                handle = getattr(impl, "on_timer", None)
                out = _Outputs()
                if handle is None:
                    return out.build()
                ctx = Context(out)
                enter = bindings.context.enter
                for i, fired in enumerate(timers):
                    enter(i)
                    ctx.timer = Timer(fired.key, fired.timestamp, _domain_name(fired.domain))
                    try:
                        handle(ctx.timer, ctx)
                    finally:
                        ctx._release()
                return out.build()
            except Exception as exc:
                raise _fail(exc) from None

    return _register(module_name, on_init, ("context", "keyed_state"), Processor=Processor)


class _FunctionProcessor:
    __slots__ = ("process", "on_timer")

    def __init__(self, process, on_timer):
        self.process = process
        self.on_timer = on_timer


def _instance_holder(target):
    """For a class: creates one instance on first use. For an instance or function: uses it as is."""
    holder = []

    def get():
        if not holder:
            holder.append(target() if isinstance(target, type) else target)
        return holder[0]

    def on_init(config):
        hook = getattr(get(), "init", None)
        if callable(hook):
            hook(config)

    return get, on_init


def processor(target=None, *, on_timer=None):
    """``processor-udf``: per record with keyed state, timers and side outputs.

    Either a class (instantiated once per instance) with ``process(self, event, ctx)``, optional
    ``on_timer(self, timer, ctx)`` and optional ``init(self, config)``; or a function ``process(event, ctx)``, with
    ``on_timer=handler(timer, ctx)`` given as ``@eddy_udf.processor(on_timer=handler)``. ``ctx`` is a ``Context``.
    The SDK calls ``context.enter(i)`` before it hands record (or timer) ``i`` to the user code.
    """
    if target is None:
        return lambda t: processor(t, on_timer=on_timer)
    if isinstance(target, type) or not callable(target):
        get, on_init = _instance_holder(target)
        module_name = getattr(target, "__module__", None) or type(target).__module__
    else:
        impl = _FunctionProcessor(target, on_timer)
        get, on_init = (lambda: impl), None
        module_name = target.__module__
    return _attach(target, _processor_exports(module_name, get, on_init))


# --------------------------------------------------------------------------------------------------------------
# Window functions
# --------------------------------------------------------------------------------------------------------------

def _to_value(result, what):
    if isinstance(result, (bytes, bytearray, memoryview, str)):
        return _as_bytes(result, what)
    return _json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def aggregator(target):
    """``aggregator-udf``: an incremental window aggregation, given as a class (or instance) with
    ``create_accumulator()``, ``add(acc, event) -> acc``, ``merge(acc, other) -> acc`` and ``get_result(acc)``.

    Accumulators are Python values kept by the host as bytes: as compact JSON unless the class defines
    ``encode_accumulator(acc) -> bytes`` and ``decode_accumulator(bytes) -> acc``. ``get_result`` may return an
    ``Event``, bytes or str (the result's value), or any other value (written as JSON). An optional
    ``init(self, config)`` receives the config.
    """
    get, on_init = _instance_holder(target)

    def codec(impl):
        enc = getattr(impl, "encode_accumulator", None) or (
            lambda acc: _json.dumps(acc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        dec = getattr(impl, "decode_accumulator", None) or _json.loads
        return enc, dec

    def fold(accumulators, others, targets, step_name):
        impl = get()
        enc, dec = codec(impl)
        step = getattr(impl, step_name)
        accs = decode_batch(accumulators)
        items = decode_batch(others)
        if len(items) != len(targets):
            raise ValueError(f"{len(items)} records but {len(targets)} targets")
        live = {}
        for item, t in zip(items, targets):
            if t >= len(accs):
                raise ValueError(f"target {t} of {len(accs)} accumulators")
            acc = live[t] if t in live else dec(accs[t].value)
            if step_name == "merge":
                item = dec(item.value)
            live[t] = step(acc, item)
        for t, acc in live.items():
            accs[t] = Event(enc(acc), None, 0)
        return encode_batch([Event(a.value, None, 0) for a in accs])

    class Aggregator:
        __slots__ = ()

        def create_accumulator(self) -> bytes:
            try:
                impl = get()
                return _as_bytes(codec(impl)[0](impl.create_accumulator()), "an accumulator")
            except Exception as exc:
                raise _fail(exc) from None

        def add(self, accumulators: bytes, inputs: bytes, targets: list) -> bytes:
            try:
                return fold(accumulators, inputs, targets, "add")
            except Exception as exc:
                raise _fail(exc) from None

        def merge(self, accumulators: bytes, others: bytes, targets: list) -> bytes:
            try:
                return fold(accumulators, others, targets, "merge")
            except Exception as exc:
                raise _fail(exc) from None

        def get_result(self, accumulators: bytes) -> bytes:
            try:
                impl = get()
                dec = codec(impl)[1]
                out = []
                for acc in decode_batch(accumulators):
                    result = impl.get_result(dec(acc.value))
                    if isinstance(result, Event):
                        out.append(Event(result.value, result.key, 0 if result.timestamp is None else result.timestamp,
                                         result.headers))
                    else:
                        out.append(Event(_to_value(result, "a result"), None, 0))
                return encode_batch(out)
            except Exception as exc:
                raise _fail(exc) from None

    module_name = getattr(target, "__module__", None) or type(target).__module__
    return _attach(target, _register(module_name, on_init, Aggregator=Aggregator))


def reducer(fn):
    """``reducer-udf``: ``fn(acc: Event, event: Event) -> Event | bytes | str`` combines two records of a window."""

    class Reducer:
        __slots__ = ()

        def reduce(self, accumulators: bytes, inputs: bytes, targets: list) -> bytes:
            try:
                accs = decode_batch(accumulators)
                items = decode_batch(inputs)
                if len(items) != len(targets):
                    raise ValueError(f"{len(items)} records but {len(targets)} targets")
                for item, t in zip(items, targets):
                    accs[t] = _as_event(fn(accs[t], item), accs[t], "a reduce function")
                return encode_batch(accs)
            except Exception as exc:
                raise _fail(exc) from None

    return _attach(fn, _register(fn.__module__, Reducer=Reducer))


class Window:
    """A window that fired: ``key`` (bytes or None), ``start``/``end`` (ms, end exclusive; None for the global
    window) and ``events`` (its records, or the one pre-aggregated result)."""

    __slots__ = ("key", "start", "end", "events")

    def __init__(self, key, start, end, events):
        self.key = key
        self.start = start
        self.end = end
        self.events = events

    @property
    def is_global(self):
        return self.start is None

    def __repr__(self):
        return f"Window(key={self.key!r}, start={self.start!r}, end={self.end!r}, events={self.events!r})"


class _WindowOut:
    """The emitter handed to a window function: ``emit(event)`` and ``side_output(tag, event)``."""

    __slots__ = ("_out", "window")

    def __init__(self, out):
        self._out = out
        self.window = None

    def _coerce(self, event):
        w = self.window
        if not isinstance(event, Event):
            event = Event(_as_bytes(event, "value"), w.key)
        if event.timestamp is None:  # Flink's convention: a window's results carry its max timestamp
            event.timestamp = (w.end - 1) if w.end is not None else 0
        return event

    def emit(self, event):
        self._out.main.append(self._coerce(event))

    collect = emit

    def side_output(self, tag, event):
        self._out.side.setdefault(tag, []).append(self._coerce(event))


def window_processor(fn):
    """``window-processor-udf``: ``fn(window: Window, out)`` with ``out.emit(event)`` / ``out.side_output(tag,
    event)``. Emitted events without a timestamp get ``window.end - 1``."""

    class WindowProcessor:
        __slots__ = ()

        def process_windows(self, windows: list):
            try:
                out = _Outputs()
                emitter = _WindowOut(out)
                for contents in windows:
                    bounds = getattr(contents.window, "value", None)
                    start, end = (bounds.start, bounds.end) if bounds is not None else (None, None)
                    emitter.window = Window(contents.key, start, end, decode_batch(contents.elements))
                    fn(emitter.window, emitter)
                return out.build()
            except Exception as exc:
                raise _fail(exc) from None

    return _attach(fn, _register(fn.__module__, WindowProcessor=WindowProcessor))
