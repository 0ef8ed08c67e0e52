//! Keyed state and timers in a snapshot, as a stream of bounded objects ("chunks") beside the task's snapshot
//! file, indexed by key-group range in the operator's snapshot. A snapshot is written entry by entry, a chunk at a
//! time, so a savepoint of state larger than memory holds one chunk; a restore reads only the chunks of the key
//! groups a subtask owns, and a read of one key reads the chunks of its key group.
//!
//! Entries come in the canonical order of `docs/state-format.md` (key group first), so each chunk covers a short
//! range of key groups.

use super::store::CheckpointStore;
use crate::error::TaskError;
use crate::keys::KeyGroup;
use crate::state::SnapshotEntry;
use crate::timers::TimeDomain;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The first bytes of every chunk.
const MAGIC: &[u8; 8] = b"EDDYCHK\0";
/// The version of the chunk encoding.
const VERSION: u32 = 1;
/// A chunk is closed once it holds this many bytes (a single larger entry makes a chunk of its own size).
pub const CHUNK_BYTES: usize = 4 << 20;

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkKind {
    /// Keyed state entries.
    Entries,
    /// Timers.
    Timers,
}

/// One chunk of an operator's snapshot, as its index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChunk {
    /// What it holds.
    pub kind: ChunkKind,
    /// Its object, relative to the checkpoint's or savepoint's folder.
    pub object: String,
    /// The first and last key group of its records.
    pub key_groups: (KeyGroup, KeyGroup),
    /// How many records it holds.
    pub records: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

impl StateChunk {
    fn overlaps(&self, groups: &RangeInclusive<KeyGroup>) -> bool {
        self.key_groups.0 <= *groups.end() && *groups.start() <= self.key_groups.1
    }
}

/// A keyed state entry, borrowed: what a store hands to a [`ChunkWriter`]. Encodes exactly as a
/// [`SnapshotEntry`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EntryRef<'a> {
    /// The state's name.
    pub state: &'a str,
    /// The key's group.
    pub group: KeyGroup,
    /// The key.
    pub key: &'a [u8],
    /// The namespace.
    pub namespace: &'a [u8],
    /// The stored bytes.
    pub value: &'a [u8],
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> SnapshotEntry {
        SnapshotEntry {
            state: self.state.to_string(),
            group: self.group,
            key: self.key.to_vec(),
            namespace: self.namespace.to_vec(),
            value: self.value.to_vec(),
        }
    }
}

/// A timer, borrowed. Encodes exactly as a [`super::TimerEntry`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TimerRef<'a> {
    /// Its clock.
    pub domain: TimeDomain,
    /// When it fires.
    pub timestamp: i64,
    /// The key's group.
    pub group: KeyGroup,
    /// The key.
    pub key: &'a [u8],
    /// The namespace.
    pub namespace: &'a [u8],
}

/// Where chunks go as they fill.
enum Place {
    /// Kept in memory for the checkpoint coordinator to write while the task goes on (checkpoints).
    Held,
    /// Written to storage at once, so the snapshot never holds more than one chunk (savepoints).
    Direct { store: Arc<dyn CheckpointStore>, folder: String },
}

/// Writes the entries and timers of one task's snapshot into chunks.
pub struct ChunkWriter {
    place: Place,
    /// Object names start with it: `state/<uid>-<subtask>-`.
    base: String,
    next: u32,
    open: Option<OpenChunk>,
    chunks: Vec<StateChunk>,
    held: Vec<(String, Vec<u8>)>,
    limit: usize,
    /// Why a chunk could not be written: the snapshot fails, and nothing more is written.
    failure: Option<String>,
}

struct OpenChunk {
    kind: ChunkKind,
    bytes: Vec<u8>,
    groups: (KeyGroup, KeyGroup),
    records: u64,
}

impl ChunkWriter {
    /// A writer whose chunks are kept until [`ChunkWriter::take_held`].
    pub fn held() -> ChunkWriter {
        ChunkWriter::at(Place::Held)
    }

    /// A writer that writes each chunk into `folder` (ending in `/`) of `store` as soon as it is full.
    pub fn direct(store: Arc<dyn CheckpointStore>, folder: impl Into<String>) -> ChunkWriter {
        ChunkWriter::at(Place::Direct { store, folder: folder.into() })
    }

    fn at(place: Place) -> ChunkWriter {
        ChunkWriter {
            place,
            base: String::new(),
            next: 0,
            open: None,
            chunks: Vec::new(),
            held: Vec::new(),
            limit: CHUNK_BYTES,
            failure: None,
        }
    }

    /// Closes chunks at `limit` bytes instead (tests).
    pub fn with_chunk_limit(mut self, limit: usize) -> ChunkWriter {
        self.limit = limit.max(1);
        self
    }

    /// Starts the snapshot of operator `uid` in subtask `subtask`.
    pub fn begin(&mut self, uid: &str, subtask: u32) {
        self.base = format!("state/{uid}-{subtask}-");
        self.next = 0;
    }

    /// Adds a state entry; entries come in canonical order.
    pub fn entry(&mut self, entry: EntryRef<'_>) {
        self.push(ChunkKind::Entries, entry.group, &entry);
    }

    /// Adds a timer.
    pub fn timer(&mut self, timer: TimerRef<'_>) {
        self.push(ChunkKind::Timers, timer.group, &timer);
    }

    fn push(&mut self, kind: ChunkKind, group: KeyGroup, record: &impl Serialize) {
        if self.failure.is_some() {
            return;
        }
        if self.open.as_ref().is_some_and(|o| o.kind != kind) {
            self.close();
        }
        let open = self.open.get_or_insert_with(|| {
            let mut bytes = Vec::with_capacity(64 << 10);
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&VERSION.to_le_bytes());
            OpenChunk { kind, bytes, groups: (group, group), records: 0 }
        });
        if let Err(e) = postcard::to_io(record, &mut open.bytes) {
            self.failure = Some(format!("cannot encode a state chunk: {e}"));
            return;
        }
        open.groups = (open.groups.0.min(group), open.groups.1.max(group));
        open.records += 1;
        if open.bytes.len() >= self.limit {
            self.close();
        }
    }

    fn close(&mut self) {
        let Some(open) = self.open.take() else { return };
        if self.failure.is_some() {
            return;
        }
        let object = format!("{}{:06}", self.base, self.next);
        self.next += 1;
        let chunk = StateChunk {
            kind: open.kind,
            object: object.clone(),
            key_groups: open.groups,
            records: open.records,
            bytes: open.bytes.len() as u64,
        };
        match &self.place {
            Place::Held => self.held.push((object, open.bytes)),
            Place::Direct { store, folder } => {
                if let Err(e) = store.put(&format!("{folder}{object}"), &open.bytes) {
                    self.failure = Some(e.to_string());
                    return;
                }
            }
        }
        self.chunks.push(chunk);
    }

    /// Ends the operator's snapshot: its chunks.
    pub fn end(&mut self) -> Vec<StateChunk> {
        self.close();
        std::mem::take(&mut self.chunks)
    }

    /// Why the snapshot cannot be used, if a chunk could not be written.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The chunks kept so far (a held writer's), as (object, bytes).
    pub fn take_held(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.held)
    }

    /// A reader of the chunks held so far (tests restore from it).
    pub fn reader(&self) -> ChunkReader {
        ChunkReader {
            source: Source::Held(Arc::new(self.held.iter().cloned().collect())),
            groups: None,
            fetched: Arc::default(),
        }
    }
}

/// Where a reader finds chunks.
#[derive(Clone)]
enum Source {
    None,
    Store { store: Arc<dyn CheckpointStore>, folder: String },
    Held(Arc<HashMap<String, Vec<u8>>>),
}

/// Reads the chunks of a restored snapshot, keeping only the records of some key groups.
#[derive(Clone)]
pub struct ChunkReader {
    source: Source,
    groups: Option<RangeInclusive<KeyGroup>>,
    fetched: Arc<AtomicU64>,
}

impl Default for ChunkReader {
    fn default() -> ChunkReader {
        ChunkReader { source: Source::None, groups: None, fetched: Arc::default() }
    }
}

impl ChunkReader {
    /// Reads chunks from `folder` (ending in `/`) of `store`, counting the bytes read into `fetched`.
    pub fn from_store(store: Arc<dyn CheckpointStore>, folder: impl Into<String>, fetched: Arc<AtomicU64>) -> Self {
        ChunkReader { source: Source::Store { store, folder: folder.into() }, groups: None, fetched }
    }

    /// Keeps only records of `groups`, and reads only the chunks that hold some.
    pub fn only(mut self, groups: RangeInclusive<KeyGroup>) -> ChunkReader {
        self.groups = Some(groups);
        self
    }

    /// Calls `each` with the state entries of `snapshot`, a chunk at a time (first those held inline by snapshots
    /// of older versions).
    pub fn entries(
        &self,
        snapshot: &super::OperatorSnapshot,
        each: &mut dyn FnMut(Vec<SnapshotEntry>) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        if !snapshot.entries.is_empty() {
            each(snapshot.entries.clone())?;
        }
        self.read(snapshot, ChunkKind::Entries, |e: &SnapshotEntry| e.group, each)
    }

    /// Calls `each` with the timers of `snapshot`, a chunk at a time (first those held inline by snapshots of
    /// older versions).
    pub fn timers(
        &self,
        snapshot: &super::OperatorSnapshot,
        each: &mut dyn FnMut(Vec<super::TimerEntry>) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        if !snapshot.timers.is_empty() {
            each(snapshot.timers.clone())?;
        }
        self.read(snapshot, ChunkKind::Timers, |t: &super::TimerEntry| t.group, each)
    }

    /// Every state entry of `snapshot` this reader keeps, collected (tests and tools).
    pub fn all_entries(&self, snapshot: &super::OperatorSnapshot) -> Result<Vec<SnapshotEntry>, TaskError> {
        let mut all = Vec::new();
        self.entries(snapshot, &mut |batch| {
            all.extend(batch);
            Ok(())
        })?;
        Ok(all)
    }

    /// Every timer of `snapshot` this reader keeps, collected (tests and tools).
    pub fn all_timers(&self, snapshot: &super::OperatorSnapshot) -> Result<Vec<super::TimerEntry>, TaskError> {
        let mut all = Vec::new();
        self.timers(snapshot, &mut |batch| {
            all.extend(batch);
            Ok(())
        })?;
        Ok(all)
    }

    fn read<T: for<'de> Deserialize<'de>>(
        &self,
        snapshot: &super::OperatorSnapshot,
        kind: ChunkKind,
        group_of: fn(&T) -> KeyGroup,
        each: &mut dyn FnMut(Vec<T>) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        let wanted = |chunk: &&StateChunk| chunk.kind == kind && self.groups.as_ref().is_none_or(|g| chunk.overlaps(g));
        for chunk in snapshot.chunks.iter().filter(wanted) {
            let bytes = self.fetch(&chunk.object)?;
            let corrupt =
                |why: String| TaskError::external(format!("the state chunk {} is unreadable: {why}", chunk.object));
            let mut body = records_of(&bytes).map_err(corrupt)?;
            // Decoded a batch at a time: a chunk's records take several times its bytes once decoded.
            let mut batch = Vec::with_capacity(DECODED_BATCH);
            while !body.is_empty() {
                let (record, rest) = postcard::take_from_bytes::<T>(body).map_err(|e| corrupt(e.to_string()))?;
                body = rest;
                if self.groups.as_ref().is_none_or(|g| g.contains(&group_of(&record))) {
                    batch.push(record);
                }
                if batch.len() == DECODED_BATCH {
                    each(std::mem::replace(&mut batch, Vec::with_capacity(DECODED_BATCH)))?;
                }
            }
            if !batch.is_empty() {
                each(batch)?;
            }
        }
        Ok(())
    }

    fn fetch(&self, object: &str) -> Result<Vec<u8>, TaskError> {
        let missing = || TaskError::external(format!("the state chunk {object} is missing"));
        let bytes = match &self.source {
            Source::None => return Err(missing()),
            Source::Held(held) => held.get(object).cloned().ok_or_else(missing)?,
            Source::Store { store, folder } => {
                store.get(&format!("{folder}{object}")).map_err(|e| TaskError::external(e.0))?.ok_or_else(|| {
                    TaskError::external(format!("the state chunk {object} is missing in {}", store.describe()))
                })?
            }
        };
        self.fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
}

/// Records handed over at a time when a chunk is read.
const DECODED_BATCH: usize = 4096;

/// The encoded records of a chunk, after its header.
fn records_of(bytes: &[u8]) -> Result<&[u8], String> {
    let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or("not a state chunk")?;
    let (version, body) = body.split_first_chunk::<4>().ok_or("truncated")?;
    let version = u32::from_le_bytes(*version);
    if version != VERSION {
        return Err(format!("chunk format version {version}; this Eddy reads version {VERSION}"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{LocalStore, OperatorSnapshot, TimerEntry};

    fn entry(group: KeyGroup, key: &[u8]) -> SnapshotEntry {
        SnapshotEntry { state: "s".into(), group, key: key.to_vec(), namespace: vec![1], value: vec![7; 40] }
    }

    fn write(writer: &mut ChunkWriter, entries: &[SnapshotEntry], timers: &[TimerEntry]) -> OperatorSnapshot {
        writer.begin("w", 0);
        for e in entries {
            let e = EntryRef { state: &e.state, group: e.group, key: &e.key, namespace: &e.namespace, value: &e.value };
            writer.entry(e);
        }
        for t in timers {
            let t = TimerRef {
                domain: t.domain,
                timestamp: t.timestamp,
                group: t.group,
                key: &t.key,
                namespace: &t.namespace,
            };
            writer.timer(t);
        }
        OperatorSnapshot { chunks: writer.end(), ..OperatorSnapshot::default() }
    }

    #[test]
    fn chunks_are_bounded_indexed_by_key_group_and_read_back_by_range() {
        let entries: Vec<SnapshotEntry> = (0..64u16).flat_map(|g| [entry(g, b"a"), entry(g, b"b")]).collect();
        let timers = vec![TimerEntry {
            domain: TimeDomain::EventTime,
            timestamp: 5,
            group: 9,
            key: b"a".to_vec(),
            namespace: vec![],
        }];
        let mut writer = ChunkWriter::held().with_chunk_limit(500);
        let snapshot = write(&mut writer, &entries, &timers);
        let entry_chunks: Vec<&StateChunk> = snapshot.chunks.iter().filter(|c| c.kind == ChunkKind::Entries).collect();
        assert!(entry_chunks.len() > 10, "{} chunks", entry_chunks.len());
        assert!(entry_chunks.iter().all(|c| c.bytes < 600), "a chunk closes at its limit");
        assert!(entry_chunks.windows(2).all(|w| w[0].key_groups.1 <= w[1].key_groups.0), "ranges follow each other");
        assert_eq!(entry_chunks.iter().map(|c| c.records).sum::<u64>(), 128);

        let all = writer.reader().all_entries(&snapshot).expect("read");
        assert_eq!(all, entries);
        let read_timers = writer.reader().all_timers(&snapshot).expect("timers");
        assert_eq!(read_timers, timers);

        // A range reads only the chunks that hold it, and keeps only its records.
        let held = writer.take_held();
        let counting = Arc::new(AtomicU64::new(0));
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path()));
        for (object, bytes) in &held {
            store.put(&format!("sp/{object}"), bytes).expect("put");
        }
        let reader = ChunkReader::from_store(Arc::clone(&store), "sp/", Arc::clone(&counting)).only(10..=11);
        let some = reader.all_entries(&snapshot).expect("read");
        assert_eq!(some, entries[20..24].to_vec());
        let total: u64 = held.iter().map(|(_, b)| b.len() as u64).sum();
        assert!(counting.load(Ordering::Relaxed) * 4 < total, "a range reads a few chunks, not all");
    }

    #[test]
    fn direct_writes_go_to_storage_as_chunks_fill_and_damage_is_reported() {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn CheckpointStore> = Arc::new(LocalStore::new(dir.path()));
        let mut writer = ChunkWriter::direct(Arc::clone(&store), "sp/").with_chunk_limit(200);
        let entries: Vec<SnapshotEntry> = (0..8u16).map(|g| entry(g, b"k")).collect();
        let snapshot = write(&mut writer, &entries, &[]);
        assert!(writer.take_held().is_empty());
        let listed = store.list("sp/state/").expect("list");
        assert_eq!(listed.len(), snapshot.chunks.len());
        let reader = ChunkReader::from_store(Arc::clone(&store), "sp/", Arc::default());
        let all = reader.all_entries(&snapshot).expect("read");
        assert_eq!(all, entries);

        store.put(&format!("sp/{}", snapshot.chunks[0].object), b"EDDYCHK\0\x01\0\0\0\xff").expect("damage");
        let damaged = reader.entries(&snapshot, &mut |_| Ok(())).expect_err("damaged");
        assert!(damaged.message.contains("unreadable"), "{}", damaged.message);
        store.delete(&[format!("sp/{}", snapshot.chunks[1].object)]).expect("delete");
        let group = snapshot.chunks[1].key_groups.0;
        let missing = reader.only(group..=group).entries(&snapshot, &mut |_| Ok(())).expect_err("missing");
        assert!(missing.message.contains("missing"), "{}", missing.message);
    }
}
