//! Process functions: per-record logic with keyed state, timers and side outputs.
//!
//! A call covers a whole batch (or a run of fired timers). The function moves through it with
//! [`ProcessContext::enter`], which makes record `i`'s key current; state handles are bound to the key current
//! when they were opened, so a handle kept from one record cannot read or write another key's state.

use super::{OpContext, Operator};
use crate::checkpoint::{CheckpointId, ChunkReader, ChunkWriter, OperatorSnapshot};
use crate::error::TaskError;
use crate::function::{Outputs, ProcessFunction};
use crate::keys::{KeyGroup, key_group};
use crate::state::{KeyedState, StateDescriptor, StateIndex, StateKey, StateKind};
use crate::timers::{TimeDomain, TimerService};
use eddy_codec::{Batch, Record};

/// A timer that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredTimer {
    /// The key it was registered for (none in a non-keyed operator).
    pub key: Option<Vec<u8>>,
    /// Its timestamp.
    pub timestamp: i64,
    /// Its clock.
    pub domain: TimeDomain,
}

/// Fired timers handed to a function in one call, at most.
const TIMERS_PER_CALL: usize = 4096;

/// A state handle, bound to the key that was current when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateHandle {
    index: StateIndex,
    kind: StateKind,
    epoch: u64,
    group: KeyGroup,
    key: Box<[u8]>,
}

/// The keys a call may make current: its records' keys, or its timers' keys.
#[derive(Debug, Default)]
struct Scope {
    keys: Vec<u8>,
    /// Per item: key group, and the key's span in `keys` (none when the item has no key).
    items: Vec<(KeyGroup, Option<(u32, u32)>)>,
    current: Option<usize>,
    /// Changes with every `enter`, so handles can be checked cheaply.
    epoch: u64,
}

/// What a process function reaches during a call: the current key, time, timers, state and output.
#[derive(Debug, Default)]
pub struct ProcessContext {
    state: Option<KeyedState>,
    timers: TimerService,
    /// Records emitted during the call.
    pub out: Outputs,
    scope: Scope,
    watermark: i64,
    now: i64,
    max_parallelism: u32,
}

impl ProcessContext {
    /// A context for a keyed operator (`state` is some) or a non-keyed one.
    pub fn new(state: Option<KeyedState>, max_parallelism: u32) -> ProcessContext {
        ProcessContext { state, max_parallelism, watermark: i64::MIN, ..ProcessContext::default() }
    }

    fn begin(&mut self, watermark: i64, now: i64) {
        self.watermark = watermark;
        self.now = now;
        self.scope.keys.clear();
        self.scope.items.clear();
        self.scope.current = None;
        self.scope.epoch += 1;
    }

    fn push_scope_key(&mut self, key: Option<&[u8]>) {
        let item = match key {
            Some(k) => {
                let off = self.scope.keys.len() as u32;
                self.scope.keys.extend_from_slice(k);
                (key_group(k, self.max_parallelism), Some((off, k.len() as u32)))
            }
            None => (0, None),
        };
        self.scope.items.push(item);
    }

    /// Makes item `index` (record or fired timer) current. Indices may only grow within a call.
    pub fn enter(&mut self, index: usize) -> Result<(), String> {
        if index >= self.scope.items.len() {
            return Err(format!("enter({index}): the call has {} items", self.scope.items.len()));
        }
        match self.scope.current {
            Some(current) if index < current => {
                Err(format!("enter({index}) after enter({current}): records are entered in order"))
            }
            Some(current) if index == current => Ok(()),
            _ => {
                self.scope.current = Some(index);
                self.scope.epoch += 1;
                Ok(())
            }
        }
    }

    /// The current key, if the operator is keyed and an item is current.
    pub fn current_key(&self) -> Option<&[u8]> {
        let (_, span) = self.scope.items.get(self.scope.current?)?;
        let (off, len) = (*span)?;
        Some(&self.scope.keys[off as usize..(off + len) as usize])
    }

    fn current_state_key(&self) -> Result<StateKey<'_>, String> {
        if self.state.is_none() {
            return Err("keyed state and timers need a keyed stream: add key_by to the operator".into());
        }
        let Some(current) = self.scope.current else {
            return Err("no record is current: call enter(i) before using state or timers".into());
        };
        let (group, span) = self.scope.items[current];
        let (off, len) = span.ok_or("the current record has no key")?;
        Ok(StateKey { group, key: &self.scope.keys[off as usize..(off + len) as usize] })
    }

    /// The operator's current event-time watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The current processing time.
    pub fn processing_time(&self) -> i64 {
        self.now
    }

    /// Registers a timer for the current key.
    pub fn register_timer(&mut self, domain: TimeDomain, timestamp: i64) -> Result<(), String> {
        let key = self.current_state_key()?;
        let (group, key) = (key.group, key.key.to_vec());
        self.timers.register(domain, timestamp, group, &key, b"");
        Ok(())
    }

    /// Deletes a timer of the current key.
    pub fn delete_timer(&mut self, domain: TimeDomain, timestamp: i64) -> Result<(), String> {
        let key = self.current_state_key()?;
        let (group, key) = (key.group, key.key.to_vec());
        self.timers.delete(domain, timestamp, group, &key, b"");
        Ok(())
    }

    /// Opens a state for the current key.
    pub fn open_state(&mut self, descriptor: &StateDescriptor) -> Result<StateHandle, String> {
        let key = self.current_state_key()?;
        let (group, key) = (key.group, Box::<[u8]>::from(key.key));
        let state = self.state.as_mut().ok_or("no keyed state")?;
        let index = state.open(descriptor)?;
        Ok(StateHandle { index, kind: descriptor.kind, epoch: self.scope.epoch, group, key })
    }

    /// Checks that `handle` belongs to the current key; returns the state and the key.
    fn bind<'a>(&'a mut self, handle: &'a StateHandle) -> Result<(&'a mut KeyedState, StateKey<'a>, i64), String> {
        let now = self.now;
        if handle.epoch != self.scope.epoch {
            let current = self.current_state_key()?;
            if current.group != handle.group || current.key != &*handle.key {
                return Err(format!(
                    "this state handle belongs to key {:?}, but key {:?} is current; open state handles for the \
                     record being processed",
                    String::from_utf8_lossy(&handle.key),
                    String::from_utf8_lossy(current.key)
                ));
            }
        }
        let state = self.state.as_mut().ok_or("no keyed state")?;
        Ok((state, StateKey { group: handle.group, key: &handle.key }, now))
    }

    /// A value state's value.
    pub fn value_get(&mut self, handle: &StateHandle) -> Result<Option<Vec<u8>>, String> {
        let (state, key, now) = self.bind(handle)?;
        state.value_get(handle.index, key, now)
    }

    /// Sets a value state.
    pub fn value_set(&mut self, handle: &StateHandle, value: &[u8]) -> Result<(), String> {
        let (state, key, now) = self.bind(handle)?;
        state.value_set(handle.index, key, value, now)
    }

    /// Clears a state of any shape.
    pub fn clear(&mut self, handle: &StateHandle) -> Result<(), String> {
        let (state, key, now) = self.bind(handle)?;
        state.clear(handle.index, key, now)
    }

    /// A list state's elements.
    pub fn list_get(&mut self, handle: &StateHandle) -> Result<Vec<Vec<u8>>, String> {
        let (state, key, now) = self.bind(handle)?;
        state.list_get(handle.index, key, now)
    }

    /// Appends to a list state.
    pub fn list_add(&mut self, handle: &StateHandle, value: &[u8]) -> Result<(), String> {
        let (state, key, now) = self.bind(handle)?;
        state.list_add(handle.index, key, value, now)
    }

    /// Replaces a list state's elements.
    pub fn list_update(&mut self, handle: &StateHandle, values: &[Vec<u8>]) -> Result<(), String> {
        let (state, key, now) = self.bind(handle)?;
        state.list_update(handle.index, key, values, now)
    }

    /// A map state's entry.
    pub fn map_get(&mut self, handle: &StateHandle, user_key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let (state, key, now) = self.bind(handle)?;
        state.map_get(handle.index, key, user_key, now)
    }

    /// Stores a map state entry.
    pub fn map_put(&mut self, handle: &StateHandle, user_key: &[u8], value: &[u8]) -> Result<(), String> {
        let (state, key, now) = self.bind(handle)?;
        state.map_put(handle.index, key, user_key, value, now)
    }

    /// Removes a map state entry.
    pub fn map_remove(&mut self, handle: &StateHandle, user_key: &[u8]) -> Result<(), String> {
        let (state, key, now) = self.bind(handle)?;
        state.map_remove(handle.index, key, user_key, now)
    }

    /// A map state's entries in user-key order.
    pub fn map_entries(&mut self, handle: &StateHandle) -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
        let (state, key, now) = self.bind(handle)?;
        state.map_entries(handle.index, key, now)
    }

    /// Appends a record to the main output.
    pub fn emit(&mut self, record: &Record<'_>) {
        self.out.main.push_record(record);
    }

    /// Appends a record to side output `tag`.
    pub fn emit_side(&mut self, tag: &str, record: &Record<'_>) {
        match self.out.side.iter_mut().find(|(t, _)| t == tag) {
            Some((_, batch)) => batch.push_record(record),
            None => {
                let mut batch = Batch::new();
                batch.push_record(record);
                self.out.side.push((tag.to_string(), batch));
            }
        }
    }

    /// The keyed state (for snapshots and tests).
    pub fn keyed_state(&mut self) -> Option<&mut KeyedState> {
        self.state.as_mut()
    }

    /// The timers (for snapshots and tests).
    pub fn timers(&self) -> &TimerService {
        &self.timers
    }
}

/// Runs a [`ProcessFunction`] over one or two inputs.
pub struct ProcessOperator {
    function: Box<dyn ProcessFunction>,
    ctx: ProcessContext,
    keyed: bool,
}

impl ProcessOperator {
    /// A process operator; `ctx` holds keyed state when the input is keyed.
    pub fn new(function: Box<dyn ProcessFunction>, ctx: ProcessContext) -> ProcessOperator {
        let keyed = ctx.state.is_some();
        ProcessOperator { function, ctx, keyed }
    }

    /// Fails the task if the state backend failed during the call, whatever the function made of the error it
    /// was given: only the function's own misuse of state is its to handle.
    fn check_backend(&mut self) -> Result<(), TaskError> {
        match self.ctx.state.as_mut().and_then(KeyedState::take_failure) {
            Some(failure) => Err(TaskError::external(failure.to_string())),
            None => Ok(()),
        }
    }

    fn drain(&mut self, out: &mut super::Output) {
        out.emit(std::mem::take(&mut self.ctx.out.main));
        for (tag, batch) in self.ctx.out.side.drain(..) {
            out.emit_side(&tag, batch);
        }
    }

    fn fire(&mut self, domain: TimeDomain, time: i64, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        loop {
            let mut fired = Vec::new();
            self.ctx.begin(ctx.watermark, ctx.now);
            while fired.len() < TIMERS_PER_CALL {
                let Some(timer) = self.ctx.timers.pop_due(domain, time) else { break };
                self.ctx.push_scope_key(Some(timer.key()));
                fired.push(FiredTimer { key: Some(timer.key().to_vec()), timestamp: timer.timestamp, domain });
            }
            if fired.is_empty() {
                return Ok(());
            }
            let result = self.function.on_timers(&fired, &mut self.ctx);
            self.check_backend()?;
            result?;
            self.drain(ctx.out);
        }
    }
}

impl Operator for ProcessOperator {
    fn process(&mut self, input: usize, batch: Batch, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.ctx.begin(ctx.watermark, ctx.now);
        for record in batch.iter() {
            if self.keyed && record.key.is_none() {
                return Err(TaskError::internal("a keyed process operator received a record without a key"));
            }
            self.ctx.push_scope_key(record.key.filter(|_| self.keyed));
        }
        let result = self.function.process(input, &batch, &mut self.ctx);
        self.check_backend()?;
        result?;
        self.drain(ctx.out);
        Ok(())
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.fire(TimeDomain::EventTime, ctx.watermark, ctx)
    }

    fn on_processing_time(&mut self, ctx: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.fire(TimeDomain::ProcessingTime, ctx.now, ctx)
    }

    fn next_processing_timer(&self) -> Option<i64> {
        self.ctx.timers.next_processing_time()
    }

    fn snapshot(&mut self, checkpoint: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        let files = match &mut self.ctx.state {
            Some(state) => state.checkpoint_files(checkpoint).map_err(TaskError::internal)?,
            None => None,
        };
        match files {
            Some(files) => {
                self.ctx.timers.snapshot_each(&mut |t| chunks.timer(t));
                Ok(OperatorSnapshot {
                    layout: PROCESS_LAYOUT.into(),
                    files: vec![files],
                    ..OperatorSnapshot::default()
                })
            }
            None => self.savepoint(checkpoint, chunks),
        }
    }

    fn savepoint(&mut self, _: CheckpointId, chunks: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        let now = self.ctx.now;
        if let Some(state) = &mut self.ctx.state {
            state.snapshot_each(now, &mut |e| chunks.entry(e)).map_err(TaskError::internal)?;
        }
        self.ctx.timers.snapshot_each(&mut |t| chunks.timer(t));
        Ok(OperatorSnapshot { layout: PROCESS_LAYOUT.into(), ..OperatorSnapshot::default() })
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        if let Some(state) = &mut self.ctx.state {
            state.checkpoint_complete(checkpoint);
        }
        Ok(())
    }

    fn checkpoint_aborted(&mut self, checkpoint: CheckpointId) {
        if let Some(state) = &mut self.ctx.state {
            state.checkpoint_aborted(checkpoint);
        }
    }

    fn restore(&mut self, snapshot: OperatorSnapshot, chunks: &ChunkReader) -> Result<(), TaskError> {
        snapshot.expect_layout("process", PROCESS_LAYOUT)?;
        if let Some(state) = &mut self.ctx.state {
            chunks.entries(&snapshot, &mut |batch| state.restore(&batch).map_err(TaskError::internal))?;
        } else if snapshot.has_entries() || !snapshot.files.is_empty() {
            return Err(TaskError::user("the checkpoint holds keyed state for an operator that is no longer keyed"));
        }
        let timers = &mut self.ctx.timers;
        chunks.timers(&snapshot, &mut |batch| {
            timers.restore(&batch);
            Ok(())
        })
    }
}

/// The state layout of a process operator's snapshot: user states by name (value, list and map encodings of
/// `state/keyed.rs`) and timers. Documented in `docs/state-format.md`.
const PROCESS_LAYOUT: &str = "process/1";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UdfError;
    use crate::operator::Output;
    use crate::state::MemoryStateStore;

    fn keyed_ctx() -> ProcessContext {
        ProcessContext::new(Some(KeyedState::new(Box::new(MemoryStateStore::default()), None)), 128)
    }

    fn value(name: &str) -> StateDescriptor {
        StateDescriptor { name: name.into(), kind: StateKind::Value, ttl: None }
    }

    #[test]
    fn a_handle_cannot_reach_another_keys_state() {
        let mut ctx = keyed_ctx();
        ctx.begin(0, 0);
        ctx.push_scope_key(Some(b"alice"));
        ctx.push_scope_key(Some(b"bob"));
        ctx.push_scope_key(Some(b"alice"));
        ctx.enter(0).expect("enter");
        let alice = ctx.open_state(&value("balance")).expect("open");
        ctx.value_set(&alice, b"100").expect("set");
        ctx.enter(1).expect("enter");
        let err = ctx.value_get(&alice).expect_err("alice's handle while bob is current");
        assert!(err.contains("belongs to key \"alice\""), "{err}");
        assert!(ctx.value_set(&alice, b"0").is_err());
        let bob = ctx.open_state(&value("balance")).expect("open");
        assert_eq!(ctx.value_get(&bob).expect("get"), None, "bob sees his own, empty state");
        ctx.enter(2).expect("enter");
        assert_eq!(ctx.value_get(&alice).expect("get"), Some(b"100".to_vec()), "same key again: allowed");
        assert!(ctx.enter(1).is_err(), "cannot go back");
        assert!(ctx.enter(3).is_err(), "cannot go past the end");
    }

    #[test]
    fn non_keyed_contexts_have_no_state_or_timers() {
        let mut ctx = ProcessContext::new(None, 128);
        ctx.begin(0, 0);
        ctx.push_scope_key(None);
        ctx.enter(0).expect("enter");
        assert!(ctx.open_state(&value("x")).expect_err("no state").contains("key_by"));
        assert!(ctx.register_timer(TimeDomain::EventTime, 5).is_err());
    }

    /// Counts records per key and emits the count when an event-time timer fires.
    struct CountThenReport;

    impl ProcessFunction for CountThenReport {
        fn process(&mut self, _: usize, records: &Batch, ctx: &mut ProcessContext) -> Result<(), UdfError> {
            for (i, record) in records.iter().enumerate() {
                ctx.enter(i).map_err(UdfError::new)?;
                let count = ctx.open_state(&value("count")).map_err(UdfError::new)?;
                let n = ctx.value_get(&count).map_err(UdfError::new)?.map_or(0, |v| v[0]) + 1;
                ctx.value_set(&count, &[n]).map_err(UdfError::new)?;
                ctx.register_timer(TimeDomain::EventTime, record.timestamp + 10).map_err(UdfError::new)?;
            }
            Ok(())
        }

        fn on_timers(&mut self, timers: &[FiredTimer], ctx: &mut ProcessContext) -> Result<(), UdfError> {
            for (i, timer) in timers.iter().enumerate() {
                ctx.enter(i).map_err(UdfError::new)?;
                let count = ctx.open_state(&value("count")).map_err(UdfError::new)?;
                let n = ctx.value_get(&count).map_err(UdfError::new)?.map_or(0, |v| v[0]);
                ctx.emit(&Record {
                    timestamp: timer.timestamp,
                    key: timer.key.as_deref(),
                    value: &[n],
                    headers: Default::default(),
                });
                if n > 1 {
                    ctx.emit_side(
                        "repeat",
                        &Record { timestamp: timer.timestamp, key: None, value: b"", headers: Default::default() },
                    );
                }
            }
            Ok(())
        }
    }

    #[test]
    fn timers_fire_on_watermarks_with_their_key() {
        let mut op = ProcessOperator::new(Box::new(CountThenReport), keyed_ctx());
        let mut out = Output::default();
        let mut batch = Batch::new();
        batch.push(1, Some(b"a"), b"");
        batch.push(2, Some(b"b"), b"");
        batch.push(1, Some(b"a"), b"");
        op.process(0, batch, &mut OpContext { out: &mut out, watermark: 0, now: 0 }).expect("process");
        assert!(out.is_empty());
        op.on_watermark(&mut OpContext { out: &mut out, watermark: 11, now: 0 }).expect("watermark");
        let main: Vec<Batch> = out.take_main().collect();
        let fired: Vec<(Option<&[u8]>, i64, u8)> =
            main.iter().flat_map(|b| b.iter()).map(|r| (r.key, r.timestamp, r.value[0])).collect();
        assert_eq!(fired, vec![(Some(&b"a"[..]), 11, 2)], "one timer per key and timestamp; b's is not due");
        assert_eq!(out.take_side().count(), 1);
        op.on_watermark(&mut OpContext { out: &mut out, watermark: 12, now: 0 }).expect("watermark");
        let b: Vec<i64> = out.take_main().flat_map(|b| b.iter().map(|r| r.timestamp).collect::<Vec<_>>()).collect();
        assert_eq!(b, vec![12]);
    }

    fn batch_of(records: &[(i64, &[u8])]) -> Batch {
        let mut batch = Batch::new();
        for (ts, key) in records {
            batch.push(*ts, Some(key), b"");
        }
        batch
    }

    fn fired(op: &mut ProcessOperator, watermark: i64) -> Vec<(Vec<u8>, i64, u8)> {
        let mut out = Output::default();
        op.on_watermark(&mut OpContext { out: &mut out, watermark, now: 0 }).expect("watermark");
        let main: Vec<Batch> = out.take_main().collect();
        main.iter()
            .flat_map(|b| b.iter())
            .map(|r| (r.key.unwrap_or_default().to_vec(), r.timestamp, r.value[0]))
            .collect()
    }

    #[test]
    fn a_restored_operator_has_the_state_and_timers_of_its_snapshot() {
        let mut op = ProcessOperator::new(Box::new(CountThenReport), keyed_ctx());
        let mut out = Output::default();
        let first = batch_of(&[(1, b"a"), (2, b"b"), (1, b"a")]);
        op.process(0, first, &mut OpContext { out: &mut out, watermark: 0, now: 0 }).expect("process");
        let mut chunks = ChunkWriter::held();
        let mut snapshot = op.snapshot(1, &mut chunks).expect("snapshot");
        snapshot.chunks = chunks.end();
        assert_eq!(snapshot.layout, PROCESS_LAYOUT);
        assert!(snapshot.has_entries(), "the state went into chunks");
        let mut restored = ProcessOperator::new(Box::new(CountThenReport), keyed_ctx());
        restored.restore(snapshot, &chunks.reader()).expect("restore");
        for op in [&mut op, &mut restored] {
            let more = batch_of(&[(3, b"b")]);
            op.process(0, more, &mut OpContext { out: &mut out, watermark: 0, now: 0 }).expect("process");
        }
        assert_eq!(fired(&mut restored, 20), fired(&mut op, 20));
        assert_eq!(fired(&mut op, i64::MAX), vec![], "every timer fired once");
    }

    /// A store whose writes fail, as a full disk would make them.
    struct FailingWrites(MemoryStateStore);

    impl crate::state::KeyedStateStore for FailingWrites {
        fn register(&mut self, name: &str) -> crate::state::StateId {
            self.0.register(name)
        }
        fn get_into(
            &mut self,
            state: crate::state::StateId,
            key: StateKey<'_>,
            ns: &[u8],
            out: &mut Vec<u8>,
        ) -> Result<bool, crate::state::StateError> {
            self.0.get_into(state, key, ns, out)
        }
        fn contains(
            &mut self,
            s: crate::state::StateId,
            k: StateKey<'_>,
            ns: &[u8],
        ) -> Result<bool, crate::state::StateError> {
            self.0.contains(s, k, ns)
        }
        fn put(
            &mut self,
            _: crate::state::StateId,
            _: StateKey<'_>,
            _: &[u8],
            _: &[u8],
        ) -> Result<(), crate::state::StateError> {
            Err(crate::state::StateError("No space left on device".into()))
        }
        fn append(
            &mut self,
            _: crate::state::StateId,
            _: StateKey<'_>,
            _: &[u8],
            _: &[u8],
        ) -> Result<(), crate::state::StateError> {
            Err(crate::state::StateError("No space left on device".into()))
        }
        fn remove(
            &mut self,
            s: crate::state::StateId,
            k: StateKey<'_>,
            ns: &[u8],
        ) -> Result<(), crate::state::StateError> {
            self.0.remove(s, k, ns)
        }
        fn entries(
            &mut self,
            s: crate::state::StateId,
            k: StateKey<'_>,
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, crate::state::StateError> {
            self.0.entries(s, k)
        }
        fn scan(
            &mut self,
            s: crate::state::StateId,
            k: StateKey<'_>,
            from: &[u8],
            to: &[u8],
            visit: &mut dyn FnMut(&[u8], &[u8]),
        ) -> Result<(), crate::state::StateError> {
            self.0.scan(s, k, from, to, visit)
        }
        fn remove_key(&mut self, s: crate::state::StateId, k: StateKey<'_>) -> Result<(), crate::state::StateError> {
            self.0.remove_key(s, k)
        }
        fn cleanup_step(
            &mut self,
            s: crate::state::StateId,
            cursor: usize,
            limit: usize,
            expired: &mut dyn FnMut(&[u8]) -> bool,
        ) -> Result<usize, crate::state::StateError> {
            self.0.cleanup_step(s, cursor, limit, expired)
        }
        fn snapshot_each(
            &mut self,
            keep: &mut dyn FnMut(crate::state::StateId, &[u8]) -> bool,
            out: &mut dyn FnMut(crate::checkpoint::EntryRef<'_>),
        ) -> Result<(), crate::state::StateError> {
            self.0.snapshot_each(keep, out)
        }
        fn len(&mut self, s: crate::state::StateId) -> usize {
            self.0.len(s)
        }
    }

    /// Writes state and carries on whatever the write returned.
    struct IgnoresErrors;

    impl ProcessFunction for IgnoresErrors {
        fn process(&mut self, _: usize, records: &Batch, ctx: &mut ProcessContext) -> Result<(), UdfError> {
            for (i, record) in records.iter().enumerate() {
                ctx.enter(i).map_err(UdfError::new)?;
                let seen = ctx.open_state(&value("seen")).map_err(UdfError::new)?;
                let _ = ctx.value_set(&seen, b"1");
                ctx.emit(&record);
            }
            Ok(())
        }

        fn on_timers(&mut self, _: &[FiredTimer], _: &mut ProcessContext) -> Result<(), UdfError> {
            Ok(())
        }
    }

    #[test]
    fn a_backend_failure_fails_the_task_even_when_the_function_ignores_it() {
        let state = KeyedState::new(Box::new(FailingWrites(MemoryStateStore::default())), None);
        let mut op = ProcessOperator::new(Box::new(IgnoresErrors), ProcessContext::new(Some(state), 128));
        let mut out = Output::default();
        let error = op
            .process(0, batch_of(&[(1, b"a")]), &mut OpContext { out: &mut out, watermark: 0, now: 0 })
            .expect_err("a lost write must not pass");
        assert_eq!(error.domain, crate::error::ErrorDomain::External);
        assert!(error.message.contains("No space left on device"), "{}", error.message);
        assert!(out.is_empty(), "nothing the call emitted goes downstream");
    }
}
