//! Reading a spec from text. Every field is checked on its own so that one run reports all problems.

use super::*;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Largest job spec accepted, in bytes.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// YAML parsing within budgets fit for a job spec, so that a small hostile document (deep nesting, alias bombs)
/// costs little to refuse.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_SPEC_BYTES);
    budget.max_depth = 32;
    budget.flow_nesting_limit = 32;
    budget.max_nodes = 100_000;
    budget.max_events = 250_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_SPEC_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options
}

/// Most sliding windows one record may belong to (size / slide).
pub const MAX_WINDOWS_PER_RECORD: u64 = 10_000;
/// Most panes of gcd(size, slide) a sliding window may span.
pub const MAX_PANES_PER_WINDOW: u64 = 100_000;

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

const TOP_FIELDS: &[&str] = &["name", "parallelism", "max_parallelism", "state", "checkpoints", "restart", "operators"];
const KIND_FIELDS: &[&str] = &["source", "map", "filter", "flat_map", "process", "connect", "union", "window", "sink"];
const OTHER_FIELDS: &[&str] =
    &["uid", "input", "parallelism", "key_by", "watermark", "batch_size", "on_error", "aggregate", "reduce"];
const DEFAULT_BATCH_SIZE: usize = 512;
const MAX_BATCH_SIZE: usize = 65_536;

/// A spec's text (YAML, or JSON) as a JSON document, read within the same budget as a spec, unchecked: for tools
/// that rewrite a spec before submitting it (JSON is YAML too).
pub fn document(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| e.to_string())
    }
}

pub(super) fn parse(text: &str) -> Result<JobSpec, SpecErrors> {
    let mut errors = SpecErrors::default();
    if text.len() > MAX_SPEC_BYTES {
        errors.push(
            None,
            "",
            format!("a job spec may have at most {MAX_SPEC_BYTES} bytes; this one has {}", text.len()),
        );
        return Err(errors);
    }
    let document = match document(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            errors.push(None, "", "a job spec must be a map with `name` and `operators`");
            return Err(errors);
        }
        Err(e) => {
            errors.push(None, "", format!("not valid YAML or JSON: {e}"));
            return Err(errors);
        }
    };
    let mut p = Parser { errors, op: None };
    p.unknown_fields(&document, TOP_FIELDS, "");
    let name = match document.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => s.trim().to_string(),
        Some(_) => {
            p.err("name", "must be a non-empty string of at most 200 bytes");
            String::new()
        }
        None => {
            p.err("name", "is required");
            String::new()
        }
    };
    let parallelism = p.typed::<u32>(&document, "parallelism").unwrap_or(1);
    let max_parallelism = p.typed::<u32>(&document, "max_parallelism").unwrap_or(128);
    if parallelism == 0 {
        p.err("parallelism", "must be at least 1");
    }
    if !(1..=32_768).contains(&max_parallelism) {
        p.err("max_parallelism", "must be between 1 and 32768");
    }
    let state = p.typed::<StateSpec>(&document, "state").unwrap_or_default();
    let checkpoints = p.typed::<CheckpointSpec>(&document, "checkpoints");
    if let Some(c) = &checkpoints {
        if c.interval.0 < 10 {
            p.err("checkpoints.interval", "must be at least 10ms");
        }
        if c.timeout.0 < 10 {
            p.err("checkpoints.timeout", "must be at least 10ms");
        }
        if c.min_pause.0 < 0 {
            p.err("checkpoints.min_pause", "must not be negative");
        }
        // Each checkpoint in progress or kept holds a copy of the state somewhere: bounded, so that one spec cannot
        // write without end (the tenant's storage quota bounds the rest).
        if !(1..=10).contains(&c.max_concurrent) {
            p.err("checkpoints.max_concurrent", "must be between 1 and 10");
        }
        if !(1..=100).contains(&c.retained) {
            p.err("checkpoints.retained", "must be between 1 and 100");
        }
    }
    let restart = p.typed::<RestartSpec>(&document, "restart").unwrap_or_default();
    match &restart {
        RestartSpec::None => {}
        RestartSpec::FixedDelay { delay, .. } | RestartSpec::FailureRate { delay, .. } if delay.0 < 0 => {
            p.err("restart.delay", "must not be negative")
        }
        RestartSpec::FixedDelay { .. } | RestartSpec::FailureRate { .. } => {}
        RestartSpec::ExponentialDelay { initial_delay, max_delay, multiplier, jitter, .. } => {
            if initial_delay.0 < 1 || max_delay.0 < initial_delay.0 {
                p.err("restart", "needs 0 < initial_delay <= max_delay");
            }
            if !(1.0..=100.0).contains(multiplier) {
                p.err("restart.multiplier", "must be between 1 and 100");
            }
            if !(0.0..=1.0).contains(jitter) {
                p.err("restart.jitter", "must be between 0 and 1");
            }
        }
    }
    let mut operators = Vec::new();
    match document.get("operators") {
        Some(Value::Array(list)) if !list.is_empty() => {
            for (i, raw) in list.iter().enumerate() {
                if let Some(op) = p.operator(i, raw) {
                    operators.push(op);
                }
            }
        }
        Some(Value::Array(_)) => p.err("operators", "must list at least one operator"),
        Some(_) => p.err("operators", "must be a list of operators"),
        None => p.err("operators", "is required"),
    }
    check_connectors(&mut p, &operators, checkpoints.as_ref());
    if p.errors.is_empty() {
        Ok(JobSpec { name, parallelism, max_parallelism, state, operators, checkpoints, restart })
    } else {
        Err(p.errors)
    }
}

struct Parser {
    errors: SpecErrors,
    /// The uid of the operator being read, for error messages.
    op: Option<String>,
}

impl Parser {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        let op = self.op.clone();
        self.errors.push(op.as_deref(), field, message);
    }

    fn unknown_fields(&mut self, map: &Map<String, Value>, known: &[&str], prefix: &str) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.err(&format!("{prefix}{key}"), format!("unknown field; expected one of: {}", known.join(", ")));
            }
        }
    }

    /// Deserializes an optional field, recording an error if it is malformed.
    fn typed<T: DeserializeOwned>(&mut self, map: &Map<String, Value>, field: &str) -> Option<T> {
        self.typed_in(map, field, "")
    }

    /// Like `typed`, for a field of a nested map whose path starts with `prefix` (e.g. `window.`).
    fn typed_in<T: DeserializeOwned>(&mut self, map: &Map<String, Value>, field: &str, prefix: &str) -> Option<T> {
        let value = map.get(field)?;
        self.value_as(value, &format!("{prefix}{field}"))
    }

    fn value_as<T: DeserializeOwned>(&mut self, value: &Value, field: &str) -> Option<T> {
        match T::deserialize(normalize_tags(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(field, e.to_string());
                None
            }
        }
    }

    fn operator(&mut self, index: usize, raw: &Value) -> Option<OperatorSpec> {
        self.op = Some(format!("#{}", index + 1));
        let Value::Object(map) = raw else {
            self.err("", "an operator must be a map with `uid` and one kind");
            return None;
        };
        let uid = match map.get("uid") {
            Some(Value::String(s)) if valid_uid(s) => {
                self.op = Some(s.clone());
                Some(s.clone())
            }
            Some(_) => {
                self.err("uid", "must be letters, digits, '-' or '_' (at most 100)");
                None
            }
            None => {
                self.err("uid", "is required: checkpoints and savepoints address state by uid");
                None
            }
        };
        let known: Vec<&str> = KIND_FIELDS.iter().chain(OTHER_FIELDS).copied().collect();
        self.unknown_fields(map, &known, "");

        let inputs = self.inputs(map.get("input"));
        let parallelism = self.typed::<u32>(map, "parallelism");
        if parallelism == Some(0) {
            self.err("parallelism", "must be at least 1");
        }
        let key_by = match map.get("key_by") {
            None => Vec::new(),
            Some(Value::Array(list)) => {
                list.iter().enumerate().filter_map(|(i, v)| self.key_spec(v, &format!("key_by[{i}]"))).collect()
            }
            Some(v) => self.key_spec(v, "key_by").into_iter().collect(),
        };

        // With a window, `process` names its process-window function rather than a kind of its own.
        let windowed = map.contains_key("window");
        let kinds: Vec<&str> =
            KIND_FIELDS.iter().copied().filter(|k| map.contains_key(*k) && !(windowed && *k == "process")).collect();
        let kind = match kinds.as_slice() {
            [] => {
                self.err("", format!("has no kind; give one of: {}", KIND_FIELDS.join(", ")));
                None
            }
            [one] => self.kind(one, map),
            many => {
                self.err("", format!("has several kinds ({}); give exactly one", many.join(", ")));
                None
            }
        };
        if !matches!(kind, Some(OperatorKind::Source(_))) {
            for field in ["watermark", "batch_size"] {
                if map.contains_key(field) {
                    self.err(field, "belongs to source operators only");
                }
            }
        }
        if !matches!(kind, Some(OperatorKind::Window(_))) {
            for field in ["aggregate", "reduce"] {
                if map.contains_key(field) {
                    self.err(field, "belongs to window operators only");
                }
            }
        }
        let on_error = match map.get("on_error") {
            None => OnError::Fail,
            Some(Value::String(s)) if s == "fail" => OnError::Fail,
            Some(Value::String(s)) if s == "skip" => OnError::Skip,
            Some(Value::String(tag)) if valid_uid(tag) && matches!(kind, Some(OperatorKind::Source(_))) => {
                OnError::SideOutput(tag.clone())
            }
            Some(Value::String(_)) if !matches!(kind, Some(OperatorKind::Source(_))) => {
                self.err("on_error", "must be fail or skip (a side output for unreadable records is a source's)");
                OnError::Fail
            }
            Some(_) => {
                self.err("on_error", "must be fail, skip, or the name of a side output for unreadable records");
                OnError::Fail
            }
        };
        if on_error != OnError::Fail && key_by.is_empty() && !matches!(kind, Some(OperatorKind::Source(_))) {
            self.err("on_error", "applies to sources and to operators with key_by");
        }
        Some(OperatorSpec { uid: uid?, inputs, parallelism, key_by, kind: kind?, on_error })
    }

    fn inputs(&mut self, raw: Option<&Value>) -> Vec<InputRef> {
        let items: Vec<&Value> = match raw {
            None => return Vec::new(),
            Some(Value::Array(list)) => list.iter().collect(),
            Some(other) => vec![other],
        };
        let mut inputs = Vec::new();
        for item in items {
            match item.as_str().map(str::trim) {
                Some(text) if !text.is_empty() => {
                    let (operator, output) = match text.split_once('.') {
                        Some((op, tag)) => (op.to_string(), Some(tag.to_string())),
                        None => (text.to_string(), None),
                    };
                    inputs.push(InputRef { operator, output });
                }
                _ => self.err("input", "must be an operator uid, `uid.side-output`, or a list of them"),
            }
        }
        inputs
    }

    fn udf(&mut self, raw: &Value, field: &str) -> Option<UdfSpec> {
        let (module, config) = match raw {
            Value::String(s) => (s.as_str(), Value::Null),
            Value::Object(map) => {
                self.unknown_fields(map, &["module", "config"], &format!("{field}."));
                match map.get("module").and_then(Value::as_str) {
                    Some(m) => (m, map.get("config").cloned().unwrap_or(Value::Null)),
                    None => {
                        self.err(&format!("{field}.module"), "is required (name, name@version or sha256:<hex>)");
                        return None;
                    }
                }
            }
            _ => {
                self.err(field, "must name a module: `name@version` or { module: ..., config: ... }");
                return None;
            }
        };
        match ModuleRef::parse(module) {
            Ok(module) => Some(UdfSpec { module, config }),
            Err(e) => {
                self.err(&format!("{field}.module"), e);
                None
            }
        }
    }

    fn json_path(&mut self, raw: &Value, field: &str) -> Option<JsonPath> {
        match raw.as_str().map(JsonPath::parse) {
            Some(Ok(path)) => Some(path),
            Some(Err(e)) => {
                self.err(field, e);
                None
            }
            None => {
                self.err(field, "must be a JSON path such as $.user.id");
                None
            }
        }
    }

    fn key_spec(&mut self, raw: &Value, field: &str) -> Option<KeySpec> {
        match raw {
            Value::String(s) if s == "record" => Some(KeySpec::Record),
            Value::Object(map) if map.contains_key("json") => {
                self.unknown_fields(map, &["json"], &format!("{field}."));
                self.json_path(&map["json"], &format!("{field}.json")).map(KeySpec::Json)
            }
            Value::Object(map) if map.contains_key("module") => self.udf(raw, field).map(KeySpec::Module),
            _ => {
                self.err(field, "must be { json: \"$.path\" }, { module: name@version } or \"record\"");
                None
            }
        }
    }

    fn kind(&mut self, kind: &str, map: &Map<String, Value>) -> Option<OperatorKind> {
        let raw = &map[kind];
        match kind {
            "source" => self.source(map).map(OperatorKind::Source),
            "map" => self.udf(raw, kind).map(OperatorKind::Map),
            "filter" => self.udf(raw, kind).map(OperatorKind::Filter),
            "flat_map" => self.udf(raw, kind).map(OperatorKind::FlatMap),
            "process" => self.udf(raw, kind).map(OperatorKind::Process),
            "connect" => self.udf(raw, kind).map(OperatorKind::Connect),
            "union" => Some(OperatorKind::Union),
            "window" => self.window(map).map(|w| OperatorKind::Window(Box::new(w))),
            "sink" => self.value_as::<SinkSpec>(raw, "sink").map(OperatorKind::Sink),
            _ => None,
        }
    }

    fn source(&mut self, map: &Map<String, Value>) -> Option<SourceOperator> {
        let source = self.value_as::<SourceSpec>(&map["source"], "source");
        let watermark = match map.get("watermark") {
            Some(raw) => self.watermark(raw),
            None => Some(WatermarkSpec::default()),
        };
        let batch_size = self.typed::<usize>(map, "batch_size").unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            self.err("batch_size", format!("must be between 1 and {MAX_BATCH_SIZE}"));
        }
        if let Some(SourceSpec::Generator(g)) = &source
            && g.keys == 0
        {
            self.err("source.generator.keys", "must be at least 1");
        }
        Some(SourceOperator { source: source?, watermark: watermark?, batch_size })
    }

    fn watermark(&mut self, raw: &Value) -> Option<WatermarkSpec> {
        let Value::Object(map) = raw else {
            self.err("watermark", "must be a map such as { out_of_orderness: 5s, timestamp: { json: $.ts } }");
            return None;
        };
        self.unknown_fields(map, &["strategy", "out_of_orderness", "idleness", "timestamp"], "watermark.");
        let bound = self.typed_in::<Millis>(map, "out_of_orderness", "watermark.");
        let strategy = match (map.get("strategy").map(|v| v.as_str()), bound) {
            (None, Some(b)) | (Some(Some("bounded")), Some(b)) => WatermarkStrategy::BoundedOutOfOrderness(b),
            (Some(Some("bounded")), None) => {
                self.err("watermark.out_of_orderness", "is required for the bounded strategy");
                WatermarkStrategy::None
            }
            (Some(Some("monotonous")), None) => WatermarkStrategy::Monotonous,
            (None | Some(Some("none")), None) => WatermarkStrategy::None,
            (Some(Some("monotonous" | "none")), Some(_)) => {
                self.err("watermark.out_of_orderness", "only applies to the bounded strategy");
                WatermarkStrategy::None
            }
            _ => {
                self.err("watermark.strategy", "must be bounded, monotonous or none");
                WatermarkStrategy::None
            }
        };
        let idleness = self.typed_in::<Millis>(map, "idleness", "watermark.");
        let timestamp = match map.get("timestamp") {
            None => TimestampSpec::Source,
            Some(Value::String(s)) if s == "source" => TimestampSpec::Source,
            Some(Value::Object(t)) if t.contains_key("json") => {
                self.unknown_fields(t, &["json"], "watermark.timestamp.");
                self.json_path(&t["json"], "watermark.timestamp.json").map(TimestampSpec::Json)?
            }
            Some(v @ Value::Object(t)) if t.contains_key("module") => {
                self.udf(v, "watermark.timestamp").map(TimestampSpec::Module)?
            }
            Some(_) => {
                self.err("watermark.timestamp", "must be \"source\", { json: \"$.ts\" } or { module: name@version }");
                return None;
            }
        };
        Some(WatermarkSpec { strategy, idleness, timestamp })
    }

    fn window(&mut self, map: &Map<String, Value>) -> Option<WindowOperator> {
        let Value::Object(w) = &map["window"] else {
            self.err("window", "must be a map such as { tumbling: 1m }");
            return None;
        };
        const ASSIGNERS: [&str; 4] = ["tumbling", "sliding", "session", "global"];
        let known = [&ASSIGNERS[..], &["offset", "time", "trigger", "evictor", "allowed_lateness", "late"]].concat();
        self.unknown_fields(w, &known, "window.");
        let offset = self.typed_in::<Millis>(w, "offset", "window.").unwrap_or_default();
        let present: Vec<&str> = ASSIGNERS.iter().copied().filter(|a| w.contains_key(*a)).collect();
        let assigner = match present.as_slice() {
            ["tumbling"] => self.value_as::<Millis>(&w["tumbling"], "window.tumbling").and_then(|size| {
                if size.0 <= 0 {
                    self.err("window.tumbling", "size must be positive");
                    return None;
                }
                Some(AssignerSpec::Tumbling { size, offset })
            }),
            ["sliding"] => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Sliding {
                    size: Millis,
                    slide: Millis,
                }
                self.value_as::<Sliding>(&w["sliding"], "window.sliding").and_then(|s| {
                    if s.size.0 <= 0 || s.slide.0 <= 0 {
                        self.err("window.sliding", "size and slide must be positive");
                        return None;
                    }
                    // Each record belongs to size/slide windows, and a window spans size/gcd(size, slide) panes:
                    // bound both, so that one record cannot allocate millions of them.
                    let per_record = (s.size.0 as u64).div_ceil(s.slide.0 as u64);
                    if per_record > MAX_WINDOWS_PER_RECORD {
                        self.err(
                            "window.sliding",
                            format!(
                                "size / slide = {per_record} windows per record; at most {MAX_WINDOWS_PER_RECORD} are \
                                 allowed (make the slide longer)"
                            ),
                        );
                        return None;
                    }
                    let panes = s.size.0 / gcd(s.size.0, s.slide.0);
                    if panes as u64 > MAX_PANES_PER_WINDOW {
                        self.err(
                            "window.sliding",
                            format!(
                                "a window of this size and slide spans {panes} panes of gcd(size, slide); at most \
                                 {MAX_PANES_PER_WINDOW} are allowed (make size a multiple of a longer slide)"
                            ),
                        );
                        return None;
                    }
                    Some(AssignerSpec::Sliding { size: s.size, slide: s.slide, offset })
                })
            }
            ["session"] => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Session {
                    gap: Millis,
                }
                let gap = match &w["session"] {
                    Value::Object(_) => self.value_as::<Session>(&w["session"], "window.session").map(|s| s.gap),
                    other => self.value_as::<Millis>(other, "window.session"),
                };
                gap.and_then(|gap| {
                    if gap.0 <= 0 {
                        self.err("window.session", "gap must be positive");
                        return None;
                    }
                    Some(AssignerSpec::Session { gap })
                })
            }
            ["global"] => Some(AssignerSpec::Global),
            [] => {
                self.err("window", "needs an assigner: tumbling, sliding, session or global");
                None
            }
            _ => {
                self.err("window", format!("has several assigners ({}); give one", present.join(", ")));
                None
            }
        };
        if matches!(assigner, Some(AssignerSpec::Session { .. } | AssignerSpec::Global)) && w.contains_key("offset") {
            self.err("window.offset", "applies to tumbling and sliding windows only");
        }
        let time = self.typed_in::<TimeDomain>(w, "time", "window.").unwrap_or_default();
        let trigger = self.typed_in::<TriggerSpec>(w, "trigger", "window.");
        if let Some(t) = &trigger {
            self.check_trigger(t);
        }
        if assigner == Some(AssignerSpec::Global) && trigger.is_none() {
            self.err("window.trigger", "is required for a global window, which never fires on its own");
        }
        let evictor = w.get("evictor").and_then(|raw| self.evictor(raw));
        let allowed_lateness = self.typed_in::<Millis>(w, "allowed_lateness", "window.").unwrap_or_default();
        if time == TimeDomain::Processing && allowed_lateness.0 > 0 {
            self.err("window.allowed_lateness", "applies to event-time windows only");
        }
        let late_output = match w.get("late") {
            None => None,
            Some(Value::String(tag)) if valid_uid(tag) => Some(tag.clone()),
            Some(_) => {
                self.err("window.late", "must be a side-output tag (letters, digits, '-' or '_')");
                None
            }
        };
        let function = self.window_function(map);
        Some(WindowOperator {
            assigner: assigner?,
            time,
            trigger,
            evictor,
            allowed_lateness,
            late_output,
            function: function?,
        })
    }

    fn check_trigger(&mut self, trigger: &TriggerSpec) {
        match trigger {
            TriggerSpec::Count(0) => self.err("window.trigger.count", "must be at least 1"),
            TriggerSpec::ContinuousEventTime(Millis(ms)) if *ms <= 0 => {
                self.err("window.trigger.continuous_event_time", "interval must be positive")
            }
            TriggerSpec::Purging(inner) if inner.purges() => {
                self.err("window.trigger.purging", "wraps another trigger that is not purging already")
            }
            TriggerSpec::Purging(inner) => self.check_trigger(inner),
            _ => {}
        }
    }

    fn evictor(&mut self, raw: &Value) -> Option<EvictorSpec> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Evictor {
            count: Option<u64>,
            time: Option<Millis>,
            #[serde(default)]
            after: bool,
        }
        let e = self.value_as::<Evictor>(raw, "window.evictor")?;
        let kind = match (e.count, e.time) {
            (Some(0), None) => {
                self.err("window.evictor.count", "must be at least 1");
                return None;
            }
            (Some(n), None) => EvictorKind::Count(n),
            (None, Some(t)) => EvictorKind::Time(t),
            _ => {
                self.err("window.evictor", "give exactly one of count or time");
                return None;
            }
        };
        Some(EvictorSpec { kind, after: e.after })
    }

    fn aggregate(&mut self, raw: &Value) -> Option<AggregateSpec> {
        let Value::Object(map) = raw else {
            self.err("aggregate", "must be { builtin: count } or { module: name@version }");
            return None;
        };
        if map.contains_key("module") {
            return self.udf(raw, "aggregate").map(AggregateSpec::Module);
        }
        self.unknown_fields(map, &["builtin", "field"], "aggregate.");
        let kind = match map.get("builtin") {
            Some(v) => self.value_as::<BuiltinAggregate>(v, "aggregate.builtin")?,
            None => {
                self.err("aggregate", "give builtin (count, sum, min, max, avg) or module");
                return None;
            }
        };
        let field = match map.get("field") {
            Some(v) => Some(self.json_path(v, "aggregate.field")?),
            None => None,
        };
        match (kind, &field) {
            (BuiltinAggregate::Count, Some(_)) => self.err("aggregate.field", "count takes no field"),
            (BuiltinAggregate::Count, None) | (_, Some(_)) => {}
            (other, None) => self.err("aggregate.field", format!("{} needs a field such as $.amount", other.name())),
        }
        Some(AggregateSpec::Builtin { kind, field })
    }

    fn window_function(&mut self, map: &Map<String, Value>) -> Option<WindowFunctionSpec> {
        let aggregate = map.get("aggregate").map(|raw| self.aggregate(raw));
        let reduce = map.get("reduce").map(|raw| self.udf(raw, "reduce"));
        let process = map.get("process").map(|raw| self.udf(raw, "process"));
        let pre = match (aggregate, reduce) {
            (Some(_), Some(_)) => {
                self.err("reduce", "a window takes aggregate or reduce, not both");
                return None;
            }
            (Some(a), None) => Some(PreAggregate::Aggregate(a?)),
            (None, Some(r)) => Some(PreAggregate::Reduce(r?)),
            (None, None) => None,
        };
        match (pre, process) {
            (None, None) => {
                self.err("window", "needs a window function: aggregate, reduce or process");
                None
            }
            (Some(PreAggregate::Aggregate(a)), None) => Some(WindowFunctionSpec::Aggregate(a)),
            (Some(PreAggregate::Reduce(r)), None) => Some(WindowFunctionSpec::Reduce(r)),
            (pre, Some(function)) => Some(WindowFunctionSpec::Process { pre, function: function? }),
        }
    }
}

/// Checks connector settings that depend on more than their own field (a Kafka sink's transaction timeout
/// against the checkpoint interval).
fn check_connectors(p: &mut Parser, operators: &[OperatorSpec], checkpoints: Option<&CheckpointSpec>) {
    for op in operators {
        let (field, problems) = match &op.kind {
            OperatorKind::Source(SourceOperator { source: SourceSpec::Kafka(kafka), .. }) => {
                ("source.kafka.", kafka.problems())
            }
            OperatorKind::Sink(SinkSpec::Kafka(kafka)) => ("sink.kafka.", kafka.problems(checkpoints)),
            _ => continue,
        };
        for (name, message) in problems {
            p.errors.push(Some(&op.uid), format!("{field}{name}"), message);
        }
    }
}

/// `uid`s and tags appear in URLs and file names.
pub(crate) fn valid_uid(text: &str) -> bool {
    !text.is_empty() && text.len() <= 100 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Lets `sink: { http: {} }` mean the same as `sink: http` for unit variants.
fn normalize_tags(value: &Value) -> Value {
    if let Value::Object(map) = value
        && map.len() == 1
        && let Some((tag, inner)) = map.iter().next()
    {
        let empty = matches!(inner, Value::Null) || matches!(inner, Value::Object(m) if m.is_empty());
        if empty && matches!(tag.as_str(), "stdout" | "http" | "discard" | "event_time" | "processing_time") {
            return Value::String(tag.clone());
        }
    }
    value.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        JobSpec::parse(text).expect_err("must fail").0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn parses_a_full_spec() {
        let spec = JobSpec::parse(
            r#"
name: pages
parallelism: 2
operators:
  - uid: src
    source: { file: { path: in.jsonl } }
    watermark: { out_of_orderness: 5s, idleness: 1m, timestamp: { json: "$.ts" } }
  - { uid: parse, map: parse@1, input: src }
  - uid: counts
    input: parse
    key_by: { json: "$.page" }
    window: { tumbling: 5m, allowed_lateness: 2m, late: dead-letter }
    aggregate: { builtin: count }
  - { uid: out, sink: stdout, input: counts }
  - { uid: late, sink: { file: { path: late.jsonl } }, input: counts.dead-letter }
"#,
        )
        .expect("valid");
        assert_eq!(spec.parallelism, 2);
        assert_eq!(spec.operators.len(), 5);
        let OperatorKind::Window(w) = &spec.operators[2].kind else { panic!("window expected") };
        assert_eq!(w.assigner, AssignerSpec::Tumbling { size: Millis(300_000), offset: Millis(0) });
        assert_eq!(w.allowed_lateness, Millis(120_000));
        assert_eq!(w.late_output.as_deref(), Some("dead-letter"));
        assert_eq!(spec.operators[4].inputs[0].output.as_deref(), Some("dead-letter"));
        let OperatorKind::Source(s) = &spec.operators[0].kind else { panic!("source expected") };
        assert_eq!(s.watermark.strategy, WatermarkStrategy::BoundedOutOfOrderness(Millis(5_000)));
    }

    #[test]
    fn reports_every_problem_with_uid_and_field() {
        let found = errors(
            r#"
operators:
  - { uid: src, source: { kafka: {} } }
  - { uid: m, map: { modul: x }, input: src, parallelism: 0 }
  - { uid: w, input: m, window: { tumbing: 5m }, aggregate: { builtin: sum } }
  - { input: w, sink: stdout }
"#,
        );
        let joined = found.join("\n");
        for expected in [
            "field `name`: is required",
            "operator `src`, field `source`",
            "operator `m`, field `map.modul`: unknown field",
            "operator `m`, field `map.module`: is required",
            "operator `m`, field `parallelism`: must be at least 1",
            "operator `w`, field `window.tumbing`: unknown field",
            "operator `w`, field `aggregate.field`: sum needs a field",
            "operator `#4`, field `uid`: is required",
        ] {
            assert!(joined.contains(expected), "missing `{expected}` in:\n{joined}");
        }
    }

    #[test]
    fn reads_json_too() {
        let spec = JobSpec::parse(
            r#"{"name":"j","operators":[{"uid":"s","source":{"http":{}}},{"uid":"o","sink":"http","input":"s"}]}"#,
        )
        .expect("valid");
        assert!(matches!(spec.operators[1].kind, OperatorKind::Sink(SinkSpec::Http)));
    }

    #[test]
    fn rejects_non_maps_and_bad_yaml() {
        assert!(errors("- a\n- b")[0].contains("must be a map"));
        assert!(errors("name: [unclosed")[0].contains("not valid YAML"));
    }

    #[test]
    fn parses_triggers_and_evictors() {
        let spec = JobSpec::parse(
            r#"
name: g
operators:
  - { uid: s, source: { http: {} } }
  - uid: w
    input: s
    key_by: record
    window: { global: {}, trigger: { purging: { count: 1000 } }, evictor: { time: 10s, after: true } }
    process: { module: pw, config: { x: 1 } }
"#,
        )
        .expect("valid");
        let OperatorKind::Window(w) = &spec.operators[1].kind else { panic!() };
        assert_eq!(w.trigger, Some(TriggerSpec::Purging(Box::new(TriggerSpec::Count(1000)))));
        assert_eq!(w.evictor, Some(EvictorSpec { kind: EvictorKind::Time(Millis(10_000)), after: true }));
        assert!(
            matches!(&w.function, WindowFunctionSpec::Process { pre: None, function } if function.config["x"] == 1)
        );
        assert_eq!(spec.operators[1].key_by, vec![KeySpec::Record]);
    }

    #[test]
    fn global_windows_need_a_trigger() {
        let joined = errors(
            "name: g\noperators:\n  - { uid: s, source: { http: {} } }\n  - { uid: w, input: s, window: { global: {} }, aggregate: { builtin: count } }",
        )
        .join("\n");
        assert!(joined.contains("window.trigger"), "{joined}");
    }

    #[test]
    fn bounds_sliding_windows_per_record_and_panes_per_window() {
        let window = |w: &str| {
            format!(
                "name: s\noperators:\n  - {{ uid: s, source: {{ http: {{}} }} }}\n  - {{ uid: w, input: s, key_by: record, \
                 window: {{ sliding: {w} }}, aggregate: {{ builtin: count }} }}"
            )
        };
        let joined = errors(&window("{ size: 3000000d, slide: 1ms }")).join("\n");
        assert!(joined.contains("windows per record"), "{joined}");
        let joined = errors(&window("{ size: 1d, slide: 1ms }")).join("\n");
        assert!(joined.contains("windows per record"), "{joined}");
        let joined = errors(&window("{ size: 1d, slide: 86399999ms }")).join("\n");
        assert!(joined.contains("panes"), "{joined}");
        assert!(JobSpec::parse(&window("{ size: 1h, slide: 1s }")).is_ok(), "3600 windows per record are fine");
    }

    #[test]
    fn file_paths_stay_relative() {
        for bad in ["/etc/passwd", "../other/jobs/x.json", "a/../../b", "./a", "a//b", ""] {
            let spec = format!(
                "name: f\noperators:\n  - {{ uid: s, source: {{ file: {{ path: \"{bad}\" }} }} }}\n  - {{ uid: o, sink: stdout, input: s }}"
            );
            let joined = errors(&spec).join("\n");
            assert!(joined.contains("operator `s`, field `source`"), "{bad}: {joined}");
        }
        let spec = "name: f\noperators:\n  - { uid: s, source: { file: { path: in/a.jsonl, root: shared } } }\n  - { uid: o, sink: { file: { path: out.jsonl } }, input: s }";
        let parsed = JobSpec::parse(spec).expect("relative paths are fine");
        let OperatorKind::Source(source) = &parsed.operators[0].kind else { panic!("source expected") };
        let SourceSpec::File(location) = &source.source else { panic!("file expected") };
        assert_eq!((location.path.as_str(), location.root.as_deref()), ("in/a.jsonl", Some("shared")));
    }

    #[test]
    fn hostile_documents_are_refused_cheaply() {
        let deep = format!("name: d\noperators: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let joined = errors(&deep).join("\n");
        assert!(joined.contains("not valid YAML"), "{joined}");
        let deep_maps = format!("name: d\nx: {}1{}", "{a: ".repeat(50_000), "}".repeat(50_000));
        assert!(errors(&deep_maps).join("\n").contains("not valid YAML"));
        let laughs = "name: l\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        assert!(errors(laughs).join("\n").contains("not valid YAML"), "an alias bomb is refused");
        let long_name = format!("name: {}\noperators: []", "x".repeat(201));
        assert!(errors(&long_name).join("\n").contains("at most 200 bytes"));
        let huge = format!("name: {}\noperators: []", "x".repeat(MAX_SPEC_BYTES));
        assert!(errors(&huge).join("\n").contains("at most 1048576 bytes"));
    }

    #[test]
    fn on_error_belongs_to_sources_and_keyed_operators() {
        let joined = errors(
            "name: e\noperators:\n  - { uid: s, source: { http: {} }, on_error: [x] }\n  - { uid: m, map: x, input: s, on_error: skip }\n  - { uid: k, map: x, input: m, key_by: record, on_error: bad }",
        )
        .join("\n");
        assert!(joined.contains("operator `s`, field `on_error`: must be fail, skip"), "{joined}");
        assert!(
            joined.contains("operator `m`, field `on_error`: applies to sources and to operators with key_by"),
            "{joined}"
        );
        assert!(joined.contains("operator `k`, field `on_error`: must be fail or skip"), "{joined}");
        let spec = JobSpec::parse(
            "name: e\noperators:\n  - { uid: s, source: { http: {} }, on_error: bad }\n  - { uid: k, map: x, input: s, key_by: record, on_error: skip }",
        )
        .expect("valid");
        assert_eq!(spec.operators[0].on_error, OnError::SideOutput("bad".into()));
        assert_eq!(spec.operators[1].on_error, OnError::Skip);
    }
}
