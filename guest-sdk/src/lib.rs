#![doc = include_str!("../README.md")]

mod aggregate;
mod bindings;
mod event;
pub mod log;
mod process;
mod window;

pub use aggregate::{Accumulator, Aggregate, FixedSize, Json};
pub use eddy_guest_macros::{
    aggregate, filter, flat_map, key_selector, map, process, process_window, reduce, timestamp_assigner,
};
pub use event::{Bytes, Config, Error, Event, Timer, Window};
pub use process::{
    AggregatingState, Context, ListState, MapState, Process, ReducingState, StateDeclaration, StateKind, Ttl,
    ValueState,
};
pub use window::{Output, WindowInfo};

/// What the attributes expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    use crate::event::{Config, Error, Event, Timer, Window};
    use crate::process::{Context, Process};
    use crate::window::{Output, WindowInfo};
    use crate::{Accumulator, Aggregate};
    use eddy_codec::{BatchView, BatchWriter};
    use std::cell::RefCell;
    pub use wit_bindgen;

    /// Converts what a user function returns into a result.
    pub trait IntoUdfResult<T> {
        /// The conversion.
        fn into_udf_result(self) -> Result<T, Error>;
    }

    impl<'a> IntoUdfResult<Event<'a>> for Event<'a> {
        fn into_udf_result(self) -> Result<Event<'a>, Error> {
            Ok(self)
        }
    }

    impl<'a, E: Into<Error>> IntoUdfResult<Event<'a>> for Result<Event<'a>, E> {
        fn into_udf_result(self) -> Result<Event<'a>, Error> {
            self.map_err(Into::into)
        }
    }

    impl IntoUdfResult<bool> for bool {
        fn into_udf_result(self) -> Result<bool, Error> {
            Ok(self)
        }
    }

    impl<E: Into<Error>> IntoUdfResult<bool> for Result<bool, E> {
        fn into_udf_result(self) -> Result<bool, Error> {
            self.map_err(Into::into)
        }
    }

    impl IntoUdfResult<i64> for i64 {
        fn into_udf_result(self) -> Result<i64, Error> {
            Ok(self)
        }
    }

    impl<E: Into<Error>> IntoUdfResult<i64> for Result<i64, E> {
        fn into_udf_result(self) -> Result<i64, Error> {
            self.map_err(Into::into)
        }
    }

    impl IntoUdfResult<()> for () {
        fn into_udf_result(self) -> Result<(), Error> {
            Ok(())
        }
    }

    impl<E: Into<Error>> IntoUdfResult<()> for Result<(), E> {
        fn into_udf_result(self) -> Result<(), Error> {
            self.map_err(Into::into)
        }
    }

    impl<'a> IntoUdfResult<Vec<Event<'a>>> for Many<Vec<Event<'a>>> {
        fn into_udf_result(self) -> Result<Vec<Event<'a>>, Error> {
            Ok(self.0)
        }
    }

    impl<'a> IntoUdfResult<Vec<Event<'a>>> for Many<Option<Event<'a>>> {
        fn into_udf_result(self) -> Result<Vec<Event<'a>>, Error> {
            Ok(self.0.into_iter().collect())
        }
    }

    impl<'a, E: Into<Error>> IntoUdfResult<Vec<Event<'a>>> for Many<Result<Vec<Event<'a>>, E>> {
        fn into_udf_result(self) -> Result<Vec<Event<'a>>, Error> {
            self.0.map_err(Into::into)
        }
    }

    impl<'a, E: Into<Error>> IntoUdfResult<Vec<Event<'a>>> for Many<Result<Option<Event<'a>>, E>> {
        fn into_udf_result(self) -> Result<Vec<Event<'a>>, Error> {
            self.0.map(|o| o.into_iter().collect()).map_err(Into::into)
        }
    }

    /// Wraps a flat-map function's result: a `Vec` or `Option` of events, or a result of one.
    pub struct Many<T>(pub T);

    /// Anything usable as a key.
    pub trait IntoKey {
        /// The key bytes.
        fn into_key(self) -> Vec<u8>;
    }

    impl IntoKey for Vec<u8> {
        fn into_key(self) -> Vec<u8> {
            self
        }
    }
    impl IntoKey for &[u8] {
        fn into_key(self) -> Vec<u8> {
            self.to_vec()
        }
    }
    impl IntoKey for String {
        fn into_key(self) -> Vec<u8> {
            self.into_bytes()
        }
    }
    impl IntoKey for &str {
        fn into_key(self) -> Vec<u8> {
            self.as_bytes().to_vec()
        }
    }
    impl IntoKey for u64 {
        fn into_key(self) -> Vec<u8> {
            self.to_le_bytes().to_vec()
        }
    }
    impl IntoKey for i64 {
        fn into_key(self) -> Vec<u8> {
            self.to_le_bytes().to_vec()
        }
    }

    impl<K: IntoKey> IntoUdfResult<Vec<u8>> for Key<K> {
        fn into_udf_result(self) -> Result<Vec<u8>, Error> {
            Ok(self.0.into_key())
        }
    }

    impl<K: IntoKey, E: Into<Error>> IntoUdfResult<Vec<u8>> for Key<Result<K, E>> {
        fn into_udf_result(self) -> Result<Vec<u8>, Error> {
            self.0.map(IntoKey::into_key).map_err(Into::into)
        }
    }

    /// Wraps a key selector's result.
    pub struct Key<T>(pub T);

    /// Sets up the instance: panic messages go to the log, then the user's init hook runs.
    pub fn run_init(config: &str, hook: Option<fn(&Config) -> Result<(), Error>>) -> Result<(), String> {
        crate::log::install();
        let value = serde_json::from_str(config).unwrap_or(serde_json::Value::Null);
        match hook {
            Some(hook) => hook(&Config(value)).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Opens a batch from the host (trusted: rows are checked as they are read).
    fn parse(input: &[u8]) -> Result<BatchView<'_>, String> {
        BatchView::open(input).map_err(|e| e.to_string())
    }

    fn at(i: usize, e: Error) -> String {
        format!("record {i}: {e}")
    }

    /// Runs a map function over a batch.
    pub fn run_map(
        input: &[u8],
        mut f: impl for<'a> FnMut(Event<'a>) -> Result<Event<'a>, Error>,
    ) -> Result<Vec<u8>, String> {
        let view = parse(input)?;
        let mut out = BatchWriter::with_capacity(view.len(), input.len());
        for (i, record) in view.iter().enumerate() {
            let event = f(Event::from_record(&record)).map_err(|e| at(i, e))?;
            event.push_to(&mut out);
            event.release();
        }
        Ok(out.finish())
    }

    /// Runs a filter over a batch.
    pub fn run_filter(input: &[u8], mut f: impl FnMut(&Event<'_>) -> Result<bool, Error>) -> Result<Vec<bool>, String> {
        let view = parse(input)?;
        let mut keep = Vec::with_capacity(view.len());
        for (i, record) in view.iter().enumerate() {
            keep.push(f(&Event::from_record(&record)).map_err(|e| at(i, e))?);
        }
        Ok(keep)
    }

    /// Runs a flat-map function over a batch.
    pub fn run_flat_map(
        input: &[u8],
        mut f: impl for<'a> FnMut(Event<'a>) -> Result<Vec<Event<'a>>, Error>,
    ) -> Result<Vec<u8>, String> {
        let view = parse(input)?;
        let mut out = BatchWriter::with_capacity(view.len(), input.len());
        for (i, record) in view.iter().enumerate() {
            for event in f(Event::from_record(&record)).map_err(|e| at(i, e))? {
                event.push_to(&mut out);
                event.release();
            }
        }
        Ok(out.finish())
    }

    /// Runs a key selector over a batch.
    pub fn run_select_keys(
        input: &[u8],
        mut f: impl FnMut(&Event<'_>) -> Result<Vec<u8>, Error>,
    ) -> Result<Vec<u8>, String> {
        let view = parse(input)?;
        let mut out = BatchWriter::with_capacity(view.len(), view.len() * 16);
        for (i, record) in view.iter().enumerate() {
            let key = f(&Event::from_record(&record)).map_err(|e| at(i, e))?;
            out.push(record.timestamp, Some(&key), b"");
        }
        Ok(out.finish())
    }

    /// Runs a timestamp assigner over a batch.
    pub fn run_timestamps(
        input: &[u8],
        mut f: impl FnMut(&Event<'_>) -> Result<i64, Error>,
    ) -> Result<Vec<i64>, String> {
        let view = parse(input)?;
        view.iter().enumerate().map(|(i, r)| f(&Event::from_record(&r)).map_err(|e| at(i, e))).collect()
    }

    /// Records a call emitted: the main output and side outputs, each in the batch encoding.
    pub type Emitted = (Vec<u8>, Vec<(String, Vec<u8>)>);

    fn emitted(main: BatchWriter, side: Vec<(String, BatchWriter)>) -> Emitted {
        (main.finish(), side.into_iter().map(|(tag, b)| (tag, b.finish())).collect())
    }

    /// Runs a process function's `init`.
    pub fn run_process_init<P: Process>(cell: &RefCell<P>, config: &str) -> Result<(), String> {
        run_init(config, None)?;
        let value = serde_json::from_str(config).unwrap_or(serde_json::Value::Null);
        cell.borrow_mut().init(&Config(value)).map_err(|e| e.to_string())
    }

    /// A process function's declared states as `(name, kind, ttl)`: kind 0 value, 1 list, 2 map; ttl
    /// `(millis, update on read, return expired)`.
    #[allow(clippy::type_complexity)]
    pub fn declared_states<P: Process>() -> Option<Vec<(String, u8, Option<(u64, bool, bool)>)>> {
        let kind = |k: crate::StateKind| match k {
            crate::StateKind::Value => 0,
            crate::StateKind::List => 1,
            crate::StateKind::Map => 2,
        };
        P::states().map(|states| {
            states
                .into_iter()
                .map(|s| (s.name, kind(s.kind), s.ttl.map(|t| (t.millis, t.update_on_read, t.return_expired))))
                .collect()
        })
    }

    /// Runs a process function over a batch.
    pub fn run_process<P: Process>(cell: &RefCell<P>, input: u32, records: &[u8]) -> Result<Emitted, String> {
        let view = parse(records)?;
        let mut ctx = Context::new(input);
        let mut function = cell.borrow_mut();
        for (i, record) in view.iter().enumerate() {
            ctx.at(i as u32, record.timestamp);
            function.process(Event::from_record(&record), &mut ctx).map_err(|e| at(i, e))?;
        }
        Ok(emitted(ctx.main, ctx.side))
    }

    /// Runs a process function's fired timers: `(key, timestamp, event_time)` each.
    pub fn run_on_timers<P: Process>(
        cell: &RefCell<P>,
        timers: impl IntoIterator<Item = (Option<Vec<u8>>, i64, bool)>,
    ) -> Result<Emitted, String> {
        let mut ctx = Context::new(0);
        let mut function = cell.borrow_mut();
        for (i, (key, timestamp, event_time)) in timers.into_iter().enumerate() {
            ctx.at(i as u32, timestamp);
            function.on_timer(Timer { key, timestamp, event_time }, &mut ctx).map_err(|e| format!("timer {i}: {e}"))?;
        }
        Ok(emitted(ctx.main, ctx.side))
    }

    fn accumulators<A: Aggregate>(bytes: &[u8]) -> Result<Vec<A::Acc>, String> {
        parse(bytes)?.iter().map(|r| A::Acc::decode(r.value).map_err(|e| e.to_string())).collect()
    }

    fn encode_all<A: Aggregate>(accs: &[A::Acc]) -> Vec<u8> {
        let mut out = BatchWriter::with_capacity(accs.len(), accs.len() * 16);
        let mut buf = Vec::new();
        for acc in accs {
            buf.clear();
            acc.encode(&mut buf);
            out.push(0, None, &buf);
        }
        out.finish()
    }

    /// Runs an aggregate's `init`.
    pub fn run_aggregate_init<A: Aggregate>(cell: &RefCell<A>, config: &str) -> Result<(), String> {
        run_init(config, None)?;
        let value = serde_json::from_str(config).unwrap_or(serde_json::Value::Null);
        cell.borrow_mut().init(&Config(value)).map_err(|e| e.to_string())
    }

    /// A fresh accumulator.
    pub fn run_create<A: Aggregate>(cell: &RefCell<A>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        cell.borrow_mut().create().encode(&mut out);
        Ok(out)
    }

    /// Adds inputs to accumulators.
    pub fn run_add<A: Aggregate>(
        cell: &RefCell<A>,
        accs: &[u8],
        inputs: &[u8],
        targets: &[u32],
    ) -> Result<Vec<u8>, String> {
        let mut accs = accumulators::<A>(accs)?;
        let mut function = cell.borrow_mut();
        for (i, (record, &target)) in parse(inputs)?.iter().zip(targets).enumerate() {
            let acc = accs.get_mut(target as usize).ok_or("accumulator index out of range")?;
            function.add(acc, &Event::from_record(&record)).map_err(|e| at(i, e))?;
        }
        Ok(encode_all::<A>(&accs))
    }

    /// Merges accumulators.
    pub fn run_merge<A: Aggregate>(
        cell: &RefCell<A>,
        accs: &[u8],
        others: &[u8],
        targets: &[u32],
    ) -> Result<Vec<u8>, String> {
        let mut accs = accumulators::<A>(accs)?;
        let others = accumulators::<A>(others)?;
        let mut function = cell.borrow_mut();
        for (other, &target) in others.into_iter().zip(targets) {
            let acc = accs.get_mut(target as usize).ok_or("accumulator index out of range")?;
            function.merge(acc, other).map_err(|e| e.to_string())?;
        }
        Ok(encode_all::<A>(&accs))
    }

    /// One result per accumulator.
    pub fn run_get_result<A: Aggregate>(cell: &RefCell<A>, accs: &[u8]) -> Result<Vec<u8>, String> {
        let accs = accumulators::<A>(accs)?;
        let mut function = cell.borrow_mut();
        let mut out = BatchWriter::with_capacity(accs.len(), accs.len() * 16);
        for acc in &accs {
            out.push(0, None, &function.result(acc).map_err(|e| e.to_string())?);
        }
        Ok(out.finish())
    }

    /// Runs a reduce function.
    pub fn run_reduce(
        accs: &[u8],
        inputs: &[u8],
        targets: &[u32],
        mut f: impl FnMut(&mut Event<'static>, &Event<'_>) -> Result<(), Error>,
    ) -> Result<Vec<u8>, String> {
        let mut accs: Vec<Event<'static>> = parse(accs)?.iter().map(|r| Event::from_record(&r).into_owned()).collect();
        for (i, (record, &target)) in parse(inputs)?.iter().zip(targets).enumerate() {
            let acc = accs.get_mut(target as usize).ok_or("accumulator index out of range")?;
            f(acc, &Event::from_record(&record)).map_err(|e| at(i, e))?;
        }
        let mut out = BatchWriter::with_capacity(accs.len(), 0);
        for acc in &accs {
            acc.push_to(&mut out);
        }
        Ok(out.finish())
    }

    /// Runs a process-window function over `(key, window, elements)` of each window that fired.
    pub fn run_process_windows(
        windows: impl IntoIterator<Item = (Option<Vec<u8>>, Window, Vec<u8>)>,
        mut f: impl FnMut(&WindowInfo, &[Event<'_>], &mut Output) -> Result<(), Error>,
    ) -> Result<Emitted, String> {
        let mut out = Output::default();
        for (i, (key, window, elements)) in windows.into_iter().enumerate() {
            let info = WindowInfo { key, window };
            let view = parse(&elements)?;
            let events: Vec<Event<'_>> = view.iter().map(|r| Event::from_record(&r)).collect();
            f(&info, &events, &mut out).map_err(|e| format!("window {i}: {e}"))?;
        }
        Ok(emitted(out.main, out.side))
    }
}
