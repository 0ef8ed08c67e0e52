//! The window operator: assigns records to windows, keeps their contents, asks the trigger when to evaluate them,
//! and cleans them up once the watermark passes their end plus the allowed lateness. Follows Flink's
//! `WindowOperator` and `EvictingWindowOperator` step by step, so results match Flink's for the same input.

use super::contents::{PendingAdds, SlotState, decode_element, push_element, read_elements};
use super::merging::{Merge, MergingSet};
use super::trigger::{TriggerContext, TriggerStates};
use super::{Panes, Trigger, TriggerResult, Window, assign};
use crate::checkpoint::{CheckpointId, ChunkReader, ChunkWriter, OperatorSnapshot};
use crate::error::{TaskError, UdfError};
use crate::function::{AggregateFunction, Outputs, ProcessWindowFunction, ReduceFunction, WindowContents};
use crate::keys::key_group;
use crate::operator::{OpContext, Operator, Output};
use crate::spec::{
    AssignerSpec, EvictorKind, EvictorSpec, TimeDomain as WindowTime, TriggerSpec, WindowOperator as WindowSpec,
};
use crate::state::{KeyedStateStore, StateError, StateId, StateKey};
use crate::timers::{TimeDomain, Timer, TimerService};
use eddy_codec::{Batch, Record};

mod results;

/// An incremental window function.
pub enum Incremental {
    /// An aggregate function with accumulators.
    Aggregate(Box<dyn AggregateFunction>),
    /// A reduce function over records.
    Reduce(Box<dyn ReduceFunction>),
}

/// The functions of a window operator: incremental, process-window, or incremental followed by process-window.
pub struct WindowFunctions {
    /// Runs as records arrive.
    pub incremental: Option<Incremental>,
    /// Runs when a window fires.
    pub process: Option<Box<dyn ProcessWindowFunction>>,
}

/// How results of an incremental function become record values (when no process-window function follows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultFormat {
    /// The function's result bytes as they are.
    Raw,
    /// `{"key":..,"window_start":..,"window_end":..,"<name>":<result>}` for built-in aggregates.
    Json {
        /// The result's field name.
        name: String,
    },
    /// Window start and end (i64 little-endian each) followed by the result bytes.
    Windowed,
}

/// A window operator's settings.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Window assigner.
    pub assigner: AssignerSpec,
    /// Event or processing time.
    pub time: WindowTime,
    /// Trigger; the assigner's default when none.
    pub trigger: Option<TriggerSpec>,
    /// Evictor.
    pub evictor: Option<EvictorSpec>,
    /// Allowed lateness in milliseconds.
    pub allowed_lateness: i64,
    /// Side output for late records.
    pub late_output: Option<String>,
    /// Result encoding.
    pub format: ResultFormat,
    /// Whether the input is keyed.
    pub keyed: bool,
    /// Number of key groups.
    pub max_parallelism: u32,
}

impl WindowConfig {
    /// The settings of the window operator `spec` describes, with its results encoded as `format`.
    pub fn new(spec: &WindowSpec, format: ResultFormat, keyed: bool, max_parallelism: u32) -> WindowConfig {
        WindowConfig {
            assigner: spec.assigner,
            time: spec.time,
            trigger: spec.trigger.clone(),
            evictor: spec.evictor,
            allowed_lateness: spec.allowed_lateness.0,
            late_output: spec.late_output.clone(),
            format,
            keyed,
            max_parallelism,
        }
    }
}

/// A window that fired, with its contents captured at that moment.
struct Firing {
    /// Its key: a range of `WindowOperator::fired_keys`.
    key: Option<std::ops::Range<usize>>,
    window: Window,
    /// Its slices' accumulators in accumulate mode: a range of `WindowOperator::fired_parts`.
    parts: std::ops::Range<usize>,
    /// Records in element mode.
    elements: Batch,
}

/// What adding a record to its pane found.
#[derive(Clone, Copy)]
enum PaneAdded {
    /// The pane held records already.
    Existing,
    /// The pane is new; the starts of the key's stored panes nearest to it on either side.
    New { before: Option<i64>, after: Option<i64> },
}

impl PaneAdded {
    /// Whether `window` gets its first record: none of its other panes holds any. Panes added earlier in the
    /// same batch are not stored yet; missing them only calls the trigger once more, which it allows.
    fn makes_new(self, window: &Window) -> bool {
        let (start, end) = window.bounds();
        match self {
            PaneAdded::Existing => false,
            PaneAdded::New { before, after } => before.is_none_or(|s| s < start) && after.is_none_or(|s| s >= end),
        }
    }
}

/// How many captured windows are evaluated together, and the bytes they may hold together before they are (a
/// watermark closing many windows of large elements must not hold them all at once).
const FLUSH_FIRINGS_AT: usize = 1024;
const FLUSH_FIRINGS_BYTES: usize = 8 << 20;

impl Firing {
    fn key<'a>(&self, keys: &'a [u8]) -> Option<&'a [u8]> {
        self.key.clone().map(|range| &keys[range])
    }
}

/// The window operator.
pub struct WindowOperator {
    cfg: WindowConfig,
    trigger: Trigger,
    panes: Option<Panes>,
    /// Accumulators per slice, or element lists.
    accumulate: bool,
    functions: WindowFunctions,
    store: Box<dyn KeyedStateStore>,
    contents: StateId,
    merging: StateId,
    trigger_states: TriggerStates,
    timers: TimerService,
    initial: Option<Vec<u8>>,
    pending: PendingAdds,
    firings: Vec<Firing>,
    /// The bytes the captured windows hold.
    fired_bytes: usize,
    /// Stored accumulators of the slices of windows that fired, as values.
    fired_parts: Batch,
    /// Keys of the windows that fired, end to end: one buffer instead of an allocation per firing.
    fired_keys: Vec<u8>,
    late_dropped: u64,
    windows: Vec<Window>,
    buf: Vec<u8>,
}

/// The state backend failed (I/O, a quota): the task fails; nothing of it reaches a user function.
fn state_err(e: StateError) -> TaskError {
    TaskError::external(e.to_string())
}

fn user_err(e: UdfError) -> TaskError {
    TaskError::from(e)
}

/// Visits the key's stored slices that start in `[start, end)`, and with `cut_at_end` also the one starting at
/// `i64::MAX` (a window cut short at the end of the time line holds it, though its clamped end excludes it).
fn scan_slices(
    store: &mut dyn KeyedStateStore,
    state: StateId,
    key: StateKey<'_>,
    (start, end): (i64, i64),
    cut_at_end: bool,
    visit: &mut dyn FnMut(&[u8], &[u8]),
) -> Result<(), TaskError> {
    let (from, to) = (Window::time(start, i64::MIN).namespace(), Window::time(end, i64::MIN).namespace());
    // Past every 16-byte namespace.
    let to: &[u8] = if cut_at_end { &[0xff; 17] } else { &to };
    store.scan(state, key, &from, to, visit).map_err(state_err)
}

/// A window function must return one result per window it was given: a guest that does not is at fault, and
/// indexing its results unchecked would panic the task thread.
fn check_count(function: &str, got: usize, expected: usize) -> Result<(), TaskError> {
    if got == expected {
        return Ok(());
    }
    let windows = if expected == 1 { "window" } else { "windows" };
    Err(TaskError::user(format!("the {function} function returned {got} results for {expected} {windows}")))
}

impl WindowOperator {
    /// A window operator over `store`.
    pub fn new(
        cfg: WindowConfig,
        functions: WindowFunctions,
        mut store: Box<dyn KeyedStateStore>,
    ) -> Result<WindowOperator, TaskError> {
        if functions.incremental.is_none() && functions.process.is_none() {
            return Err(TaskError::internal("a window operator needs a window function"));
        }
        let default_trigger = match cfg.time {
            WindowTime::Event => TriggerSpec::EventTime,
            WindowTime::Processing => TriggerSpec::ProcessingTime,
        };
        let trigger = Trigger::new(cfg.trigger.clone().unwrap_or(default_trigger));
        let accumulate = functions.incremental.is_some() && cfg.evictor.is_none();
        // Panes combine partial results with the aggregate's `merge`. A reduce function has no merge: Flink reduces
        // each sliding window's records in arrival order, which pane order would change for an order-sensitive
        // function, so reduce windows keep one accumulator per window.
        let aggregates = matches!(functions.incremental, Some(Incremental::Aggregate(_)));
        let panes =
            if accumulate && aggregates && !trigger.purges() { Panes::for_assigner(&cfg.assigner) } else { None };
        let trigger_states = TriggerStates {
            count: store.register("window-trigger-count"),
            next_fire: store.register("window-trigger-next"),
        };
        Ok(WindowOperator {
            contents: store.register("window-contents"),
            merging: store.register("window-sessions"),
            trigger_states,
            cfg,
            trigger,
            panes,
            accumulate,
            functions,
            store,
            timers: TimerService::default(),
            initial: None,
            pending: PendingAdds::default(),
            firings: Vec::new(),
            fired_bytes: 0,
            fired_parts: Batch::new(),
            fired_keys: Vec::new(),
            late_dropped: 0,
            windows: Vec::new(),
            buf: Vec::new(),
        })
    }

    fn event_time(&self) -> bool {
        self.cfg.time == WindowTime::Event
    }

    fn session(&self) -> bool {
        matches!(self.cfg.assigner, AssignerSpec::Session { .. })
    }

    fn reduces(&self) -> bool {
        matches!(self.functions.incremental, Some(Incremental::Reduce(_)))
    }

    /// The incremental function's kind, for error messages.
    fn incremental_name(&self) -> &'static str {
        match self.functions.incremental {
            Some(Incremental::Aggregate(_)) => "aggregate",
            Some(Incremental::Reduce(_)) => "reduce",
            None => "window",
        }
    }

    fn cleanup_time(&self, window: &Window) -> i64 {
        if self.event_time() {
            window.max_timestamp().saturating_add(self.cfg.allowed_lateness)
        } else {
            window.max_timestamp()
        }
    }

    fn is_window_late(&self, window: &Window, watermark: i64) -> bool {
        self.event_time() && self.cleanup_time(window) <= watermark
    }

    fn time_domain(&self) -> TimeDomain {
        if self.event_time() { TimeDomain::EventTime } else { TimeDomain::ProcessingTime }
    }

    fn register_cleanup(&mut self, key: StateKey<'_>, window: &Window) {
        let time = self.cleanup_time(window);
        // Without lateness the event-time trigger has just registered this very timer (the window's end).
        let covered = self.event_time() && self.cfg.allowed_lateness == 0 && self.trigger.is_event_time();
        if time != i64::MAX && !covered {
            self.timers.register(self.time_domain(), time, key.group, key.key, &window.namespace());
        }
    }

    fn delete_cleanup(&mut self, key: StateKey<'_>, window: &Window) {
        let time = self.cleanup_time(window);
        if time != i64::MAX {
            self.timers.delete(self.time_domain(), time, key.group, key.key, &window.namespace());
        }
    }

    fn trigger_cx<'a>(&'a mut self, key: StateKey<'a>, watermark: i64, now: i64) -> (&'a Trigger, TriggerContext<'a>) {
        let cx = TriggerContext {
            store: self.store.as_mut(),
            timers: &mut self.timers,
            states: self.trigger_states,
            key,
            watermark,
            now,
            firing: None,
        };
        (&self.trigger, cx)
    }

    fn initial_accumulator(&mut self) -> Result<Vec<u8>, TaskError> {
        if let Some(acc) = &self.initial {
            return Ok(acc.clone());
        }
        let acc = match &mut self.functions.incremental {
            Some(Incremental::Aggregate(f)) => f.create_accumulator().map_err(user_err)?,
            _ => Vec::new(),
        };
        self.initial = Some(acc.clone());
        Ok(acc)
    }

    /// Adds a record to a slice; returns whether the slice had no contents before.
    fn add(&mut self, key: StateKey<'_>, ns: &[u8], record: &Record<'_>) -> Result<bool, TaskError> {
        if !self.accumulate {
            self.buf.clear();
            push_element(&mut self.buf, record);
            self.store.append(self.contents, key, ns, &self.buf).map_err(state_err)?;
            return Ok(true);
        }
        let reduce = self.reduces();
        match self.pending.slot(self.store.as_mut(), self.contents, key, ns, reduce)? {
            SlotState::Existing(i) => {
                self.pending.add_input(i, record);
                Ok(false)
            }
            SlotState::New => {
                let i = self.pending.register(key, ns);
                if reduce {
                    self.pending.accumulators.push_record(record);
                } else {
                    let initial = self.initial_accumulator()?;
                    self.pending.accumulators.push(0, None, &initial);
                    self.pending.add_input(i, record);
                }
                Ok(true)
            }
        }
    }

    /// Hands queued additions to the incremental function and stores the accumulators.
    fn flush_adds(&mut self) -> Result<(), TaskError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !self.pending.inputs.is_empty() {
            let (accs, inputs, targets) = (&self.pending.accumulators, &self.pending.inputs, &self.pending.targets);
            let updated = match &mut self.functions.incremental {
                Some(Incremental::Aggregate(f)) => f.add(accs, inputs, targets),
                Some(Incremental::Reduce(f)) => f.reduce(accs, inputs, targets),
                None => return Err(TaskError::internal("accumulating without an incremental function")),
            }
            .map_err(user_err)?;
            check_count(self.incremental_name(), updated.len(), accs.len())?;
            self.pending.accumulators = updated;
        }
        let reduce = self.reduces();
        self.pending.write_back(self.store.as_mut(), self.contents, reduce)
    }

    /// Captures the contents of a window that fires.
    fn fire(&mut self, key: StateKey<'_>, window: &Window, state_window: &Window) -> Result<(), TaskError> {
        self.flush_adds()?;
        let key_out = self.cfg.keyed.then(|| {
            let start = self.fired_keys.len();
            self.fired_keys.extend_from_slice(key.key);
            start..self.fired_keys.len()
        });
        if self.accumulate {
            let first = self.fired_parts.len();
            let parts = &mut self.fired_parts;
            if let Some(panes) = self.panes {
                // The window's panes are the slices that start inside it: one ordered scan of the key's state.
                let mut collect = |_: &[u8], value: &[u8]| parts.push(0, None, value);
                let cut = panes.is_cut_at_end(window);
                scan_slices(self.store.as_mut(), self.contents, key, window.bounds(), cut, &mut collect)?;
            } else if self
                .store
                .get_into(self.contents, key, &state_window.namespace(), &mut self.buf)
                .map_err(state_err)?
            {
                parts.push(0, None, &self.buf);
            }
            let found = first..self.fired_parts.len();
            if !found.is_empty() {
                self.fired_bytes = self.fired_parts.data_len();
                self.firings.push(Firing { key: key_out, window: *window, parts: found, elements: Batch::new() });
            }
            return Ok(());
        }
        let ns = state_window.namespace();
        if !self.store.get_into(self.contents, key, &ns, &mut self.buf).map_err(state_err)? {
            return Ok(());
        }
        let mut elements = Batch::new();
        read_elements(&self.buf, self.cfg.keyed.then_some(key.key), &mut elements);
        let stored = elements.len();
        let mut for_function = elements.clone();
        if let Some(evictor) = self.cfg.evictor {
            if !evictor.after {
                elements = evict(evictor.kind, &elements);
                for_function = elements.clone();
            } else {
                elements = evict(evictor.kind, &elements);
            }
            if elements.len() != stored {
                self.buf.clear();
                for record in elements.iter() {
                    push_element(&mut self.buf, &record);
                }
                let result = if elements.is_empty() {
                    self.store.remove(self.contents, key, &ns)
                } else {
                    self.store.put(self.contents, key, &ns, &self.buf)
                };
                result.map_err(state_err)?;
            }
        }
        self.fired_bytes += for_function.data_len();
        self.firings.push(Firing { key: key_out, window: *window, parts: 0..0, elements: for_function });
        Ok(())
    }

    fn purge(&mut self, key: StateKey<'_>, state_window: &Window) -> Result<(), TaskError> {
        self.flush_adds()?;
        self.store.remove(self.contents, key, &state_window.namespace()).map_err(state_err)
    }

    fn apply(
        &mut self,
        result: TriggerResult,
        key: StateKey<'_>,
        window: &Window,
        state_window: &Window,
    ) -> Result<(), TaskError> {
        if result.fires() {
            self.fire(key, window, state_window)?;
        }
        if result.purges() {
            self.purge(key, state_window)?;
        }
        Ok(())
    }

    /// Non-merging assigners; returns whether every window was late.
    fn process_plain(
        &mut self,
        key: StateKey<'_>,
        ts: i64,
        record: &Record<'_>,
        wm: i64,
        now: i64,
    ) -> Result<bool, TaskError> {
        let windows = std::mem::take(&mut self.windows);
        let outcome = self.add_to_windows(&windows, key, ts, record, wm, now);
        self.windows = windows;
        outcome
    }

    fn add_to_windows(
        &mut self,
        windows: &[Window],
        key: StateKey<'_>,
        ts: i64,
        record: &Record<'_>,
        wm: i64,
        now: i64,
    ) -> Result<bool, TaskError> {
        let mut skipped = true;
        // With panes, the record goes into one pane, added on the first window that is not late.
        let mut pane: Option<PaneAdded> = None;
        for window in windows {
            if self.is_window_late(window, wm) {
                continue;
            }
            skipped = false;
            let window_is_new = match self.panes {
                Some(panes) => {
                    let added = match pane {
                        Some(added) => added,
                        None => *pane.insert(self.add_to_pane(panes, windows, key, ts, record)?),
                    };
                    added.makes_new(window)
                }
                None => self.add(key, &window.namespace(), record)?,
            };
            let late_firing = self.event_time() && window.max_timestamp() <= wm;
            if !(window_is_new || late_firing || self.trigger.needs_every_element()) {
                continue;
            }
            let (trigger, mut cx) = self.trigger_cx(key, wm, now);
            let result = trigger.on_element(record.timestamp, window, &mut cx).map_err(state_err)?;
            self.apply(result, key, window, window)?;
            self.register_cleanup(key, window);
        }
        Ok(skipped)
    }

    /// Adds the record to its pane and, if the pane is new, finds the key's stored panes nearest to it within
    /// `windows`: a window holding one of those has seen its trigger's first element already.
    fn add_to_pane(
        &mut self,
        panes: Panes,
        windows: &[Window],
        key: StateKey<'_>,
        ts: i64,
        record: &Record<'_>,
    ) -> Result<PaneAdded, TaskError> {
        let pane = panes.pane_of(ts);
        if !self.add(key, &pane.namespace(), record)? {
            return Ok(PaneAdded::Existing);
        }
        let (first, last) = match (windows.first(), windows.last()) {
            (Some(a), Some(b)) => (a.bounds().0.min(b.bounds().0), a.bounds().1.max(b.bounds().1)),
            _ => return Ok(PaneAdded::New { before: None, after: None }),
        };
        let pane_start = pane.bounds().0;
        let (mut before, mut after) = (None, None);
        let mut visit = |ns: &[u8], _: &[u8]| {
            if let Some(Window::Time { start, .. }) = Window::from_namespace(ns) {
                if start < pane_start {
                    before = Some(start);
                } else if start > pane_start && after.is_none() {
                    after = Some(start);
                }
            }
        };
        let cut = windows.iter().any(|w| panes.is_cut_at_end(w));
        scan_slices(self.store.as_mut(), self.contents, key, (first, last), cut, &mut visit)?;
        Ok(PaneAdded::New { before, after })
    }

    fn load_sessions(&mut self, key: StateKey<'_>) -> Result<MergingSet, TaskError> {
        if self.store.get_into(self.merging, key, b"", &mut self.buf).map_err(state_err)? {
            Ok(MergingSet::decode(&self.buf))
        } else {
            Ok(MergingSet::default())
        }
    }

    fn save_sessions(&mut self, key: StateKey<'_>, set: &MergingSet) -> Result<(), TaskError> {
        if set.is_empty() {
            self.store.remove(self.merging, key, b"")
        } else {
            self.store.put(self.merging, key, b"", &set.encode())
        }
        .map_err(state_err)
    }

    /// Session windows; returns whether the record's session was late.
    fn process_merging(
        &mut self,
        key: StateKey<'_>,
        record: &Record<'_>,
        wm: i64,
        now: i64,
    ) -> Result<bool, TaskError> {
        let Some(&new_window) = self.windows.first() else { return Ok(true) };
        let mut set = self.load_sessions(key)?;
        let (actual, merges) = set.add(new_window);
        for merge in &merges {
            self.merge(key, merge, wm, now)?;
        }
        if self.is_window_late(&actual, wm) {
            set.retire(&actual);
            self.save_sessions(key, &set)?;
            return Ok(true);
        }
        let state_window = set.state_window(&actual).unwrap_or(actual);
        self.add(key, &state_window.namespace(), record)?;
        let (trigger, mut cx) = self.trigger_cx(key, wm, now);
        let result = trigger.on_element(record.timestamp, &actual, &mut cx).map_err(state_err)?;
        self.apply(result, key, &actual, &state_window)?;
        self.register_cleanup(key, &actual);
        self.save_sessions(key, &set)?;
        Ok(false)
    }

    /// Combines trigger state, timers and contents of merged sessions.
    fn merge(&mut self, key: StateKey<'_>, merge: &Merge, wm: i64, now: i64) -> Result<(), TaskError> {
        self.flush_adds()?;
        let (trigger, mut cx) = self.trigger_cx(key, wm, now);
        trigger.on_merge(&merge.result, &merge.merged, &mut cx).map_err(state_err)?;
        for window in merge.merged.iter().filter(|w| **w != merge.result) {
            let (trigger, mut cx) = self.trigger_cx(key, wm, now);
            trigger.clear(window, &mut cx).map_err(state_err)?;
            self.delete_cleanup(key, window);
        }
        if merge.merged_state_windows.is_empty() {
            return Ok(());
        }
        let target_ns = merge.state_window.namespace();
        let mut others = Batch::new();
        let key_out = self.cfg.keyed.then(|| key.key.to_vec());
        for source in &merge.merged_state_windows {
            let ns = source.namespace();
            if !self.store.get_into(self.contents, key, &ns, &mut self.buf).map_err(state_err)? {
                continue;
            }
            self.store.remove(self.contents, key, &ns).map_err(state_err)?;
            if !self.accumulate {
                self.store.append(self.contents, key, &target_ns, &self.buf).map_err(state_err)?;
            } else if self.reduces() {
                if let Some(record) = decode_element(&self.buf, key_out.as_deref()) {
                    others.push_record(&record);
                }
            } else {
                others.push(0, None, &self.buf);
            }
        }
        if others.is_empty() {
            return Ok(());
        }
        let reduce = self.reduces();
        let found = self.store.get_into(self.contents, key, &target_ns, &mut self.buf).map_err(state_err)?;
        let mut target = Batch::new();
        let mut others_from = 0;
        match (found, reduce) {
            (true, true) => match decode_element(&self.buf, key_out.as_deref()) {
                Some(record) => target.push_record(&record),
                None => return Err(TaskError::internal("a stored window element is corrupt")),
            },
            (true, false) => target.push(0, None, &self.buf),
            (false, true) => {
                target.push_record(&others.get(0));
                others_from = 1;
            }
            (false, false) => target.push(0, None, &self.initial_accumulator()?),
        }
        let rest: Batch = others.iter().skip(others_from).collect();
        let merged = if rest.is_empty() {
            target
        } else {
            let targets = vec![0u32; rest.len()];
            match &mut self.functions.incremental {
                Some(Incremental::Aggregate(f)) => f.merge(&target, &rest, &targets),
                Some(Incremental::Reduce(f)) => f.reduce(&target, &rest, &targets),
                None => return Err(TaskError::internal("merging accumulators without a function")),
            }
            .map_err(user_err)?
        };
        check_count(self.incremental_name(), merged.len(), 1)?;
        self.buf.clear();
        if reduce {
            push_element(&mut self.buf, &merged.get(0));
            let value = self.buf[4..].to_vec();
            self.store.put(self.contents, key, &target_ns, &value).map_err(state_err)?;
        } else {
            self.store.put(self.contents, key, &target_ns, merged.get(0).value).map_err(state_err)?;
        }
        Ok(())
    }

    fn clear_all(
        &mut self,
        key: StateKey<'_>,
        window: &Window,
        state_window: &Window,
        wm: i64,
        now: i64,
        firing: (TimeDomain, i64),
    ) -> Result<(), TaskError> {
        self.flush_adds()?;
        match self.panes {
            Some(panes) => {
                // Only the panes stored: a window may span millions of possible panes (`gcd(size, slide)` apart).
                let mut done: Vec<Window> = Vec::new();
                let mut visit = |ns: &[u8], _: &[u8]| {
                    if let Some(pane) = Window::from_namespace(ns)
                        && panes.is_last_window_of(&pane, window)
                    {
                        done.push(pane);
                    }
                };
                let cut = panes.is_cut_at_end(window);
                scan_slices(self.store.as_mut(), self.contents, key, window.bounds(), cut, &mut visit)?;
                for pane in done {
                    self.store.remove(self.contents, key, &pane.namespace()).map_err(state_err)?;
                }
            }
            None => self.store.remove(self.contents, key, &state_window.namespace()).map_err(state_err)?,
        }
        let (trigger, mut cx) = self.trigger_cx(key, wm, now);
        cx.firing = Some(firing);
        trigger.clear(window, &mut cx).map_err(state_err)?;
        if self.session() {
            let mut set = self.load_sessions(key)?;
            set.retire(window);
            self.save_sessions(key, &set)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, domain: TimeDomain, timer: Timer, wm: i64, now: i64) -> Result<(), TaskError> {
        let Some(window) = Window::from_namespace(timer.namespace()) else {
            return Err(TaskError::internal("a window timer has a corrupt namespace"));
        };
        let key = StateKey { group: timer.group, key: timer.key() };
        let state_window = if self.session() {
            match self.load_sessions(key)?.state_window(&window) {
                Some(s) => s,
                None => return Ok(()), // merged into another session since the timer was set
            }
        } else {
            window
        };
        // As in Flink, the trigger sees every timer, also of a window whose contents were purged: a continuous
        // trigger schedules its next firing from here. Firing a window without contents emits nothing.
        let (trigger, mut cx) = self.trigger_cx(key, wm, now);
        let result = trigger.on_time(domain, timer.timestamp, &window, &mut cx).map_err(state_err)?;
        self.apply(result, key, &window, &state_window)?;
        if domain == self.time_domain() && timer.timestamp == self.cleanup_time(&window) {
            self.clear_all(key, &window, &state_window, wm, now, (domain, timer.timestamp))?;
        }
        Ok(())
    }

    /// Fires the timers of `domain` due at `until`, in the timer service's order (time, key, window).
    /// Evaluates the captured windows every `FLUSH_FIRINGS_AT` firings, so that a watermark closing the windows of
    /// many keys works through them in cache-sized chunks.
    fn fire_due(
        &mut self,
        domain: TimeDomain,
        until: i64,
        wm: i64,
        now: i64,
        out: &mut Output,
    ) -> Result<(), TaskError> {
        while let Some(timer) = self.timers.pop_due(domain, until) {
            self.on_timer(domain, timer, wm, now)?;
            if self.firings.len() >= FLUSH_FIRINGS_AT || self.fired_bytes >= FLUSH_FIRINGS_BYTES {
                self.flush_adds()?;
                self.flush_firings(out)?;
            }
        }
        self.flush_adds()?;
        self.flush_firings(out)
    }
}

/// Flink's `CountEvictor` (keep the last n) and `TimeEvictor` (keep records within span of the newest).
fn evict(kind: EvictorKind, elements: &Batch) -> Batch {
    match kind {
        EvictorKind::Count(max) => {
            let skip = elements.len().saturating_sub(max as usize);
            elements.iter().skip(skip).collect()
        }
        EvictorKind::Time(span) => {
            let Some(newest) = elements.iter().map(|r| r.timestamp).max() else { return Batch::new() };
            // Near `i64::MIN` the span reaches past the time line: every record is within it.
            match newest.checked_sub(span.0) {
                Some(cutoff) => elements.iter().filter(|r| r.timestamp > cutoff).collect(),
                None => elements.clone(),
            }
        }
    }
}

impl Operator for WindowOperator {
    fn process(&mut self, _: usize, batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        let (wm, now) = (ctx.watermark, ctx.now);
        for record in batch.iter() {
            let key_bytes: &[u8] = match (self.cfg.keyed, record.key) {
                (true, Some(k)) => k,
                (true, None) => {
                    return Err(TaskError::internal("a keyed window operator received a record without a key"));
                }
                (false, _) => b"",
            };
            let group = if self.cfg.keyed { key_group(key_bytes, self.cfg.max_parallelism) } else { 0 };
            let key = StateKey { group, key: key_bytes };
            let ts = if self.event_time() { record.timestamp } else { now };
            let mut windows = std::mem::take(&mut self.windows);
            assign(&self.cfg.assigner, ts, &mut windows);
            self.windows = windows;
            let skipped = if self.session() {
                self.process_merging(key, &record, wm, now)?
            } else {
                self.process_plain(key, ts, &record, wm, now)?
            };
            let element_late = self.event_time() && record.timestamp.saturating_add(self.cfg.allowed_lateness) <= wm;
            if skipped && element_late {
                match &self.cfg.late_output {
                    Some(tag) => ctx.out.side_records(tag).push_record(&record),
                    None => self.late_dropped += 1,
                }
            }
        }
        self.flush_adds()?;
        self.flush_firings(ctx.out)
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.fire_due(TimeDomain::EventTime, ctx.watermark, ctx.watermark, ctx.now, ctx.out)
    }

    fn on_processing_time(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.fire_due(TimeDomain::ProcessingTime, ctx.now, ctx.watermark, ctx.now, ctx.out)
    }

    fn next_processing_timer(&self) -> Option<i64> {
        self.timers.next_processing_time()
    }

    fn late_records_dropped(&self) -> u64 {
        self.late_dropped
    }

    fn snapshot(&mut self, checkpoint: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        match self.store.checkpoint_files(checkpoint).map_err(state_err)? {
            Some(files) => {
                self.timers.snapshot_each(&mut |t| chunks.timer(t));
                Ok(OperatorSnapshot { layout: self.layout(), files: vec![files], ..OperatorSnapshot::default() })
            }
            None => self.savepoint(checkpoint, chunks),
        }
    }

    fn savepoint(&mut self, _: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        self.store.snapshot_each(&mut |_, _| true, &mut |e| chunks.entry(e)).map_err(state_err)?;
        self.timers.snapshot_each(&mut |t| chunks.timer(t));
        Ok(OperatorSnapshot { layout: self.layout(), ..OperatorSnapshot::default() })
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.store.checkpoint_complete(checkpoint);
        Ok(())
    }

    fn checkpoint_aborted(&mut self, checkpoint: CheckpointId) {
        self.store.checkpoint_aborted(checkpoint);
    }

    fn restore(&mut self, snapshot: OperatorSnapshot, chunks: &ChunkReader) -> Result<(), TaskError> {
        let layout = self.layout();
        // Layouts of version 1 named only the contents: those restore into a window with the same contents.
        let legacy = snapshot.layout.strip_prefix("window/1/").is_some_and(|c| layout.contains(&format!("/{c}/")));
        if !legacy {
            snapshot.expect_layout("window", &layout)?;
        }
        let store = &mut self.store;
        chunks.entries(&snapshot, &mut |batch| store.restore(&batch).map_err(state_err))?;
        let timers = &mut self.timers;
        chunks.timers(&snapshot, &mut |batch| {
            timers.restore(&batch);
            Ok(())
        })
    }
}

impl WindowOperator {
    /// The state layout of this operator's snapshots: what its stored window contents mean. The kind of window
    /// (their keys), slices of a window (panes), one accumulator per window or the window's elements, and what
    /// an accumulator holds; see `docs/state-format.md`.
    fn layout(&self) -> String {
        let contents = match (&self.panes, self.accumulate) {
            (Some(_), _) => "panes",
            (None, true) => "accumulators",
            (None, false) => "elements",
        };
        let window = match self.cfg.assigner {
            AssignerSpec::Tumbling { .. } => "tumbling",
            AssignerSpec::Sliding { .. } => "sliding",
            AssignerSpec::Session { .. } => "session",
            AssignerSpec::Global => "global",
        };
        let accumulator = match &self.functions.incremental {
            Some(Incremental::Aggregate(f)) => f.accumulator_layout(),
            Some(Incremental::Reduce(_)) => "reduce".into(),
            None => "records".into(),
        };
        format!("window/2/{window}/{contents}/{accumulator}")
    }
}
