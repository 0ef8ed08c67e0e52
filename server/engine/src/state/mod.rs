//! Keyed state.
//!
//! A [`KeyedStateStore`] holds the state of one operator in one subtask as bytes, addressed by
//! `(state, key group, key, namespace)` — the namespace is a window for window contents, a user key for map
//! state, and empty otherwise. Keeping everything as bytes with the key group in front is what lets the RocksDB
//! backend and canonical savepoints slot in without reshaping operators. [`KeyedState`] adds user-facing value,
//! list and map state with Flink's time-to-live rules on top of a store.

mod keyed;
mod memory;
mod ttl;

pub use keyed::{
    DeclaredState, Expiry, KeyedState, StateCompatibility, StateDescriptor, StateIndex, StateKind, check_state_upgrade,
};
pub use memory::MemoryStateStore;

use crate::checkpoint::{CheckpointId, EntryRef};
use crate::keys::KeyGroup;
use std::ops::RangeInclusive;

/// Index of a registered state within a store.
pub type StateId = u32;

/// A key with its key group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey<'a> {
    /// The key's group.
    pub group: KeyGroup,
    /// The key bytes.
    pub key: &'a [u8],
}

/// A failure of the state backend (I/O, corruption). Never caused by user data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state backend: {0}")]
pub struct StateError(pub String);

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotEntry {
    /// The state's name.
    pub state: String,
    /// The key's group.
    pub group: KeyGroup,
    /// The key.
    pub key: Vec<u8>,
    /// The namespace.
    pub namespace: Vec<u8>,
    /// The stored bytes.
    pub value: Vec<u8>,
}

/// Byte-level keyed state of one operator in one subtask.
///
/// Invariants: namespaces of a key are returned in byte order; `append` concatenates to the stored bytes (an
/// absent entry counts as empty); a state id is only valid for the store that issued it.
pub trait KeyedStateStore: Send {
    /// Registers the state `name`, or returns its id if registered already.
    fn register(&mut self, name: &str) -> StateId;
    /// Copies the entry into `out` (cleared first); returns whether it exists.
    fn get_into(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8], out: &mut Vec<u8>)
    -> Result<bool, StateError>;
    /// Whether the entry exists.
    fn contains(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8]) -> Result<bool, StateError>;
    /// Stores `value`.
    fn put(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8], value: &[u8]) -> Result<(), StateError>;
    /// Appends `bytes` to the entry.
    fn append(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8], bytes: &[u8]) -> Result<(), StateError>;
    /// Removes the entry.
    fn remove(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8]) -> Result<(), StateError>;
    /// Every `(namespace, value)` of `key`, in namespace byte order.
    fn entries(&mut self, state: StateId, key: StateKey<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError>;
    /// Visits `(namespace, value)` of `key` for namespaces in `from..to` (byte order), in order.
    fn scan(
        &mut self,
        state: StateId,
        key: StateKey<'_>,
        from: &[u8],
        to: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError>;
    /// Removes every namespace of `key`.
    fn remove_key(&mut self, state: StateId, key: StateKey<'_>) -> Result<(), StateError>;
    /// Visits up to `limit` keys starting at `cursor`, removing entries for which `expired` holds; returns where the
    /// next step starts (wrapping to 0 at the end).
    fn cleanup_step(
        &mut self,
        state: StateId,
        cursor: usize,
        limit: usize,
        expired: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError>;
    /// Offers to drop `state`'s expired entries itself, without the per-access cleanup steps (RocksDB does it in
    /// its compactions); true if the store takes it on. Expired entries are hidden on read either way.
    fn expire_in_background(&mut self, _state: StateId, _expiry: Expiry) -> bool {
        false
    }
    /// Hands every entry of every state for which `keep(state, value)` holds to `out`, in the canonical order:
    /// key group, state name, key length, key, namespace (so a snapshot streams into chunks by key-group range).
    fn snapshot_each(
        &mut self,
        keep: &mut dyn FnMut(StateId, &[u8]) -> bool,
        out: &mut dyn FnMut(EntryRef<'_>),
    ) -> Result<(), StateError>;
    /// [`KeyedStateStore::snapshot_each`]'s entries, collected (tests and tools).
    fn snapshot(&mut self, keep: &mut dyn FnMut(StateId, &[u8]) -> bool) -> Result<Vec<SnapshotEntry>, StateError> {
        let mut entries = Vec::new();
        self.snapshot_each(keep, &mut |e| entries.push(e.to_owned()))?;
        Ok(entries)
    }
    /// Number of entries of `state` (for tests and metrics).
    fn len(&mut self, state: StateId) -> usize;
    /// The store's own files for checkpoint `checkpoint`, if the backend keeps state in files (RocksDB): a
    /// checkpoint then records these instead of entries, and uploads only the files no earlier checkpoint did.
    /// None: the checkpoint takes [`KeyedStateStore::snapshot`]'s entries.
    fn checkpoint_files(&mut self, _checkpoint: CheckpointId) -> Result<Option<StateFiles>, StateError> {
        Ok(None)
    }
    /// Checkpoint `checkpoint` completed: its files may be referred to by the next ones.
    fn checkpoint_complete(&mut self, _checkpoint: CheckpointId) {}
    /// Checkpoint `checkpoint` was given up: its files are not to be referred to.
    fn checkpoint_aborted(&mut self, _checkpoint: CheckpointId) {}
    /// Loads the entries of a snapshot, registering their states by name.
    fn restore(&mut self, entries: &[SnapshotEntry]) -> Result<(), StateError> {
        for entry in entries {
            let state = self.register(&entry.state);
            self.put(state, StateKey { group: entry.group, key: &entry.key }, &entry.namespace, &entry.value)?;
        }
        Ok(())
    }
}

/// A store's own files at a checkpoint: what a checkpoint records of a store that keeps state in files
/// ([`KeyedStateStore::checkpoint_files`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateFiles {
    /// Which backend and file layout wrote them, such as `rocksdb/1`.
    pub format: String,
    /// The checkpoint they were taken for (a store finds its local copy by it).
    pub checkpoint: CheckpointId,
    /// The key groups the store held.
    pub key_groups: (KeyGroup, KeyGroup),
    /// The files.
    pub files: Vec<StateFile>,
    /// Where the files are on this machine until the checkpoint has uploaded them.
    #[serde(skip)]
    pub local: Option<std::path::PathBuf>,
}

/// One file of a store's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateFile {
    /// Its name in the store's folder.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The object that holds it, relative to the folder that holds the job's checkpoints (`shared/...`): every
    /// checkpoint that has the file refers to the same object.
    pub object: String,
    /// This checkpoint uploads it (false: an earlier checkpoint did).
    #[serde(skip)]
    pub upload: bool,
}

/// Reads an object of checkpoint storage.
pub type FetchObject<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, StateError>;

/// Creates the state stores of a job's operators.
pub trait StateBackend: Send + Sync {
    /// The store of operator `uid` in subtask `subtask`, which owns the key groups `key_groups`; empty.
    fn create_store(
        &self,
        uid: &str,
        subtask: u32,
        key_groups: RangeInclusive<KeyGroup>,
    ) -> Result<Box<dyn KeyedStateStore>, StateError>;

    /// The store of operator `uid` in subtask `subtask`, holding the state of `key_groups` found in `parts`: the
    /// files of one or more stores (of the subtasks before a change of parallelism) at a checkpoint.
    fn restore_store(
        &self,
        uid: &str,
        subtask: u32,
        key_groups: RangeInclusive<KeyGroup>,
        parts: &[StateFiles],
        _fetch: FetchObject<'_>,
    ) -> Result<Box<dyn KeyedStateStore>, StateError> {
        let _ = (subtask, key_groups);
        let format = parts.first().map_or("", |p| p.format.as_str());
        Err(StateError(format!(
            "the checkpoint holds operator `{uid}`'s state as `{format}` files, which this state backend cannot read; \
             a savepoint restores into any backend"
        )))
    }
}

/// Keeps all state in memory, optionally within a budget.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    budget: Option<std::sync::Arc<StateBudget>>,
}

impl MemoryBackend {
    /// A backend whose stores charge what they hold to `budget`.
    pub fn within(budget: std::sync::Arc<StateBudget>) -> MemoryBackend {
        MemoryBackend { budget: Some(budget) }
    }
}

impl StateBackend for MemoryBackend {
    fn create_store(
        &self,
        _: &str,
        _: u32,
        _: RangeInclusive<KeyGroup>,
    ) -> Result<Box<dyn KeyedStateStore>, StateError> {
        Ok(Box::new(match &self.budget {
            Some(budget) => MemoryStateStore::within(std::sync::Arc::clone(budget)),
            None => MemoryStateStore::default(),
        }))
    }
}

/// A store's share of a [`StateBudget`]: the size it reported last, and why writes are refused once the budget is
/// used up (until the store shrinks again). What it reported is given back when it is dropped.
#[derive(Debug)]
pub struct BudgetAccount {
    budget: std::sync::Arc<StateBudget>,
    reported: u64,
    exhausted: Option<String>,
}

impl BudgetAccount {
    /// An account in `budget`, with nothing reported yet.
    pub fn new(budget: std::sync::Arc<StateBudget>) -> BudgetAccount {
        BudgetAccount { budget, reported: 0, exhausted: None }
    }

    /// The size reported last.
    pub fn reported(&self) -> u64 {
        self.reported
    }

    /// Refuses a write while the budget is used up, before anything is written: a function that ignores the
    /// error cannot keep growing its state.
    #[inline]
    pub fn check_room(&self) -> Result<(), StateError> {
        match &self.exhausted {
            Some(why) => Err(StateError(why.clone())),
            None => Ok(()),
        }
    }

    /// Reports that the store holds `size` bytes now; an error, and writes refused, while that takes the budget
    /// past its limit.
    pub fn report(&mut self, size: u64) -> Result<(), StateError> {
        let change = size as i64 - self.reported as i64;
        self.reported = size;
        let charged = self.budget.charge(change);
        self.exhausted = charged.as_ref().err().map(|e| e.0.clone());
        charged
    }
}

impl Drop for BudgetAccount {
    fn drop(&mut self) {
        let _ = self.budget.charge(-(self.reported as i64));
    }
}

/// Bytes of state that many stores share: a job's, inside its tenant's. Stores report their size in steps of
/// [`StateBudget::STEP`] bytes, so the hot path touches no shared counter.
#[derive(Debug)]
pub struct StateBudget {
    name: String,
    limit: std::sync::atomic::AtomicU64,
    used: std::sync::atomic::AtomicI64,
    parent: Option<std::sync::Arc<StateBudget>>,
}

impl StateBudget {
    /// How far a store's size may drift before it reports.
    pub const STEP: usize = 64 << 10;

    /// A budget of `limit` bytes, called `name` in errors, inside `parent` if given.
    pub fn new(
        name: impl Into<String>,
        limit: u64,
        parent: Option<std::sync::Arc<StateBudget>>,
    ) -> std::sync::Arc<StateBudget> {
        std::sync::Arc::new(StateBudget {
            name: name.into(),
            limit: std::sync::atomic::AtomicU64::new(limit),
            used: std::sync::atomic::AtomicI64::new(0),
            parent,
        })
    }

    /// Changes the limit (a quota changed); what is held beyond it stays, but no more is granted.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed).max(0) as u64
    }

    /// Adds `delta` bytes (negative: released); an error once a growth takes this budget or a parent past its limit.
    pub fn charge(&self, delta: i64) -> Result<(), StateError> {
        let used = self.used.fetch_add(delta, std::sync::atomic::Ordering::Relaxed) + delta;
        let parent = match &self.parent {
            Some(parent) => parent.charge(delta),
            None => Ok(()),
        };
        let limit = self.limit.load(std::sync::atomic::Ordering::Relaxed);
        if delta > 0 && used.max(0) as u64 > limit {
            return Err(StateError(format!(
                "{}'s state quota of {} MiB is used up ({} MiB held)",
                self.name,
                limit >> 20,
                used.max(0) >> 20
            )));
        }
        parent
    }
}
