//! Process functions: per-record logic with keyed state, timers and side outputs.

use crate::aggregate::{Accumulator, Aggregate};
use crate::bindings::eddy::udf::{context as host, keyed_state};
use crate::event::{Config, Error, Event, Timer};
use eddy_codec::BatchWriter;

/// A process function (or, over two inputs, a co-process function). One instance serves a subtask.
pub trait Process: Default + 'static {
    /// Called once with the operator's config.
    fn init(&mut self, _config: &Config) -> Result<(), Error> {
        Ok(())
    }

    /// Processes one record; state, timers and outputs go through `ctx`.
    fn process(&mut self, event: Event<'_>, ctx: &mut Context) -> Result<(), Error>;

    /// A timer of the current key fired.
    fn on_timer(&mut self, _timer: Timer, _ctx: &mut Context) -> Result<(), Error> {
        Ok(())
    }

    /// Every state this function opens. Declared states let Eddy check an upgrade to another version of the
    /// module before the running job stops: a state the new version drops, or opens as another kind or with a
    /// time-to-live switched on or off, is refused. A module that declares its states can open only those, as
    /// declared. `None` (the default): not declared, and upgrades are not checked.
    fn states() -> Option<Vec<StateDeclaration>> {
        None
    }
}

/// The shape of a declared state. Reducing and aggregating states are value states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// [`Context::value_state`], [`Context::reducing_state`], [`Context::aggregating_state`].
    Value,
    /// [`Context::list_state`].
    List,
    /// [`Context::map_state`].
    Map,
}

/// A state a process function opens, for [`Process::states`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDeclaration {
    /// The name it is opened under.
    pub name: String,
    /// Its shape.
    pub kind: StateKind,
    /// Its time-to-live, as passed when it is opened.
    pub ttl: Option<Ttl>,
}

impl StateDeclaration {
    /// A value state (also a reducing or aggregating state).
    pub fn value(name: &str) -> StateDeclaration {
        StateDeclaration { name: name.to_string(), kind: StateKind::Value, ttl: None }
    }

    /// A list state.
    pub fn list(name: &str) -> StateDeclaration {
        StateDeclaration { name: name.to_string(), kind: StateKind::List, ttl: None }
    }

    /// A map state.
    pub fn map(name: &str) -> StateDeclaration {
        StateDeclaration { name: name.to_string(), kind: StateKind::Map, ttl: None }
    }

    /// The same state with a time-to-live.
    pub fn with_ttl(self, ttl: Ttl) -> StateDeclaration {
        StateDeclaration { ttl: Some(ttl), ..self }
    }
}

/// Time-to-live of a state, as Flink's `StateTtlConfig` (processing time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// Milliseconds an entry lives after its last update.
    pub millis: u64,
    /// Reads also restart the time-to-live.
    pub update_on_read: bool,
    /// Expired entries not yet cleaned up may still be returned.
    pub return_expired: bool,
}

impl Ttl {
    /// Entries live `millis` after they were written.
    pub fn after_write(millis: u64) -> Ttl {
        Ttl { millis, update_on_read: false, return_expired: false }
    }
}

fn descriptor(name: &str, ttl: Option<Ttl>) -> keyed_state::StateDescriptor {
    keyed_state::StateDescriptor {
        name: name.to_string(),
        ttl: ttl.map(|t| keyed_state::Ttl {
            time_to_live_ms: t.millis,
            update: if t.update_on_read {
                keyed_state::TtlUpdate::OnReadAndWrite
            } else {
                keyed_state::TtlUpdate::OnCreateAndWrite
            },
            visibility: if t.return_expired {
                keyed_state::TtlVisibility::ReturnExpiredIfNotCleanedUp
            } else {
                keyed_state::TtlVisibility::NeverReturnExpired
            },
        }),
    }
}

/// The context of one call: the current record's key, time, state, timers and outputs.
pub struct Context {
    input: u32,
    index: u32,
    entered: Option<u32>,
    timestamp: i64,
    pub(crate) main: BatchWriter,
    pub(crate) side: Vec<(String, BatchWriter)>,
}

impl Context {
    pub(crate) fn new(input: u32) -> Context {
        Context { input, index: 0, entered: None, timestamp: 0, main: BatchWriter::default(), side: Vec::new() }
    }

    pub(crate) fn at(&mut self, index: u32, timestamp: i64) {
        self.index = index;
        self.timestamp = timestamp;
    }

    /// Tells the host which record is current, once per record and only when needed.
    fn enter(&mut self) -> Result<(), Error> {
        if self.entered != Some(self.index) {
            host::enter(self.index).map_err(Error::msg)?;
            self.entered = Some(self.index);
        }
        Ok(())
    }

    /// Which input the record arrived on (0, or 1 for a co-process function's second input).
    pub fn input(&self) -> u32 {
        self.input
    }

    /// The current key.
    pub fn key(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.enter()?;
        Ok(host::current_key())
    }

    /// The operator's event-time watermark.
    pub fn watermark(&self) -> i64 {
        host::current_watermark()
    }

    /// The host's processing time.
    pub fn processing_time(&self) -> i64 {
        host::current_processing_time()
    }

    /// The value state `name` of the current key.
    pub fn value_state(&mut self, name: &str) -> Result<ValueState, Error> {
        self.value_state_with_ttl(name, None)
    }

    /// The value state `name` with a time-to-live.
    pub fn value_state_with_ttl(&mut self, name: &str, ttl: Option<Ttl>) -> Result<ValueState, Error> {
        self.enter()?;
        let inner = keyed_state::ValueState::open(&descriptor(name, ttl)).map_err(Error::msg)?;
        Ok(ValueState { inner })
    }

    /// The list state `name` of the current key.
    pub fn list_state(&mut self, name: &str) -> Result<ListState, Error> {
        self.enter()?;
        let inner = keyed_state::ListState::open(&descriptor(name, None)).map_err(Error::msg)?;
        Ok(ListState { inner })
    }

    /// The map state `name` of the current key.
    pub fn map_state(&mut self, name: &str) -> Result<MapState, Error> {
        self.enter()?;
        let inner = keyed_state::MapState::open(&descriptor(name, None)).map_err(Error::msg)?;
        Ok(MapState { inner })
    }

    /// The reducing state `name` of the current key: each added value is folded into the stored one by `reduce`.
    pub fn reducing_state<A: Accumulator>(
        &mut self,
        name: &str,
        reduce: fn(&mut A, A),
    ) -> Result<ReducingState<A>, Error> {
        Ok(ReducingState::new(self.value_state(name)?, reduce))
    }

    /// The aggregating state `name` of the current key: records are added through `aggregator`.
    pub fn aggregating_state<'a, G: Aggregate>(
        &mut self,
        name: &str,
        aggregator: &'a mut G,
    ) -> Result<AggregatingState<'a, G>, Error> {
        Ok(AggregatingState::new(self.value_state(name)?, aggregator))
    }

    /// Registers an event-time timer for the current key.
    pub fn register_event_time_timer(&mut self, timestamp: i64) -> Result<(), Error> {
        self.enter()?;
        host::register_event_time_timer(timestamp).map_err(Error::msg)
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, timestamp: i64) -> Result<(), Error> {
        self.enter()?;
        host::delete_event_time_timer(timestamp).map_err(Error::msg)
    }

    /// Registers a processing-time timer for the current key.
    pub fn register_processing_time_timer(&mut self, timestamp: i64) -> Result<(), Error> {
        self.enter()?;
        host::register_processing_time_timer(timestamp).map_err(Error::msg)
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) -> Result<(), Error> {
        self.enter()?;
        host::delete_processing_time_timer(timestamp).map_err(Error::msg)
    }

    /// Emits an event to the main output.
    pub fn emit(&mut self, event: Event<'_>) {
        event.push_to(&mut self.main);
    }

    /// Emits an event to side output `tag`.
    pub fn emit_side(&mut self, tag: &str, event: Event<'_>) {
        let index = match self.side.iter().position(|(t, _)| t == tag) {
            Some(i) => i,
            None => {
                self.side.push((tag.to_string(), BatchWriter::default()));
                self.side.len() - 1
            }
        };
        event.push_to(&mut self.side[index].1);
    }

    /// The current record's (or timer's) timestamp, which emitted events carry unless they set their own.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

/// A value per key.
pub struct ValueState {
    inner: keyed_state::ValueState,
}

impl ValueState {
    /// The value, if set.
    pub fn get(&self) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get().map_err(Error::msg)
    }

    /// Sets the value.
    pub fn set(&self, value: &[u8]) -> Result<(), Error> {
        self.inner.set(value).map_err(Error::msg)
    }

    /// Removes the value.
    pub fn clear(&self) -> Result<(), Error> {
        self.inner.clear().map_err(Error::msg)
    }

    /// The value as a little-endian i64.
    pub fn get_i64(&self) -> Result<Option<i64>, Error> {
        Ok(self.get()?.and_then(|v| v.first_chunk::<8>().map(|b| i64::from_le_bytes(*b))))
    }

    /// Sets the value to a little-endian i64.
    pub fn set_i64(&self, value: i64) -> Result<(), Error> {
        self.set(&value.to_le_bytes())
    }

    /// The value as JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.get()?.map(|v| serde_json::from_slice(&v).map_err(Error::from)).transpose()
    }

    /// Sets the value as JSON.
    pub fn set_json<T: serde::Serialize>(&self, value: &T) -> Result<(), Error> {
        self.set(&serde_json::to_vec(value)?)
    }
}

/// A list of values per key.
pub struct ListState {
    inner: keyed_state::ListState,
}

impl ListState {
    /// All elements, oldest first.
    pub fn get(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.inner.get().map_err(Error::msg)
    }

    /// Appends an element.
    pub fn add(&self, value: &[u8]) -> Result<(), Error> {
        self.inner.add(value).map_err(Error::msg)
    }

    /// Replaces all elements.
    pub fn update(&self, values: &[Vec<u8>]) -> Result<(), Error> {
        self.inner.update(values).map_err(Error::msg)
    }

    /// Removes all elements.
    pub fn clear(&self) -> Result<(), Error> {
        self.inner.clear().map_err(Error::msg)
    }
}

/// A map of user keys to values per key.
pub struct MapState {
    inner: keyed_state::MapState,
}

impl MapState {
    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get(key).map_err(Error::msg)
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.inner.put(key, value).map_err(Error::msg)
    }

    /// Removes the entry under `key`.
    pub fn remove(&self, key: &[u8]) -> Result<(), Error> {
        self.inner.remove(key).map_err(Error::msg)
    }

    /// Whether `key` has an entry.
    pub fn contains(&self, key: &[u8]) -> Result<bool, Error> {
        self.inner.contains(key).map_err(Error::msg)
    }

    /// All entries, by key.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        self.inner.entries().map_err(Error::msg)
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> Result<bool, Error> {
        self.inner.is_empty().map_err(Error::msg)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), Error> {
        self.inner.clear().map_err(Error::msg)
    }
}

/// Flink's `ReducingState`: one value per key into which every added value is folded. Build it over
/// [`Context::value_state_with_ttl`] with [`ReducingState::new`] to give it a time-to-live.
pub struct ReducingState<A> {
    value: ValueState,
    reduce: fn(&mut A, A),
}

impl<A: Accumulator> ReducingState<A> {
    /// Reduces into `value`'s entry.
    pub fn new(value: ValueState, reduce: fn(&mut A, A)) -> ReducingState<A> {
        ReducingState { value, reduce }
    }

    /// The reduced value, if anything was added.
    pub fn get(&self) -> Result<Option<A>, Error> {
        self.value.get()?.map(|bytes| A::decode(&bytes)).transpose()
    }

    /// Folds `value` into the stored one (or stores it, if there is none).
    pub fn add(&self, value: A) -> Result<(), Error> {
        let reduced = match self.get()? {
            Some(mut stored) => {
                (self.reduce)(&mut stored, value);
                stored
            }
            None => value,
        };
        let mut bytes = Vec::new();
        reduced.encode(&mut bytes);
        self.value.set(&bytes)
    }

    /// Removes the value.
    pub fn clear(&self) -> Result<(), Error> {
        self.value.clear()
    }
}

/// Flink's `AggregatingState`: records are added to an accumulator per key through an [`Aggregate`]; reading
/// gives the aggregate's result. Build it over [`Context::value_state_with_ttl`] with [`AggregatingState::new`] to
/// give it a time-to-live.
pub struct AggregatingState<'a, G: Aggregate> {
    value: ValueState,
    aggregator: &'a mut G,
}

impl<'a, G: Aggregate> AggregatingState<'a, G> {
    /// Keeps `aggregator`'s accumulator in `value`'s entry.
    pub fn new(value: ValueState, aggregator: &'a mut G) -> AggregatingState<'a, G> {
        AggregatingState { value, aggregator }
    }

    /// The aggregate's result, if anything was added.
    pub fn get(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match self.value.get()? {
            Some(bytes) => Ok(Some(self.aggregator.result(&G::Acc::decode(&bytes)?)?)),
            None => Ok(None),
        }
    }

    /// Adds a record to the accumulator.
    pub fn add(&mut self, event: &Event<'_>) -> Result<(), Error> {
        let mut acc = match self.value.get()? {
            Some(bytes) => G::Acc::decode(&bytes)?,
            None => self.aggregator.create(),
        };
        self.aggregator.add(&mut acc, event)?;
        let mut bytes = Vec::new();
        acc.encode(&mut bytes);
        self.value.set(&bytes)
    }

    /// Removes the accumulator.
    pub fn clear(&self) -> Result<(), Error> {
        self.value.clear()
    }
}
