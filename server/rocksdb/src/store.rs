//! The store: one RocksDB instance, a column family per state.

use crate::backend::Folder;
use crate::cache::{CACHE_BYTES, CachePool, KeyCache, MAX_ENTRIES_PER_KEY};
use crate::files::{LocalCheckpoints, RestoredFrom};
use crate::keys;
use eddy_engine::checkpoint::{CheckpointId, EntryRef};
use eddy_engine::keys::KeyGroup;
use eddy_engine::state::{
    BudgetAccount, Expiry, KeyedStateStore, SnapshotEntry, StateBudget, StateError, StateFiles, StateId, StateKey,
};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, FlushOptions, Options, ReadOptions, SingleThreaded,
    WriteBatch, WriteOptions,
};
use std::sync::{Arc, OnceLock};

/// Spelled out rather than `rocksdb::DB`, whose meaning a feature enabled elsewhere in the build would change.
type Db = DBWithThreadMode<SingleThreaded>;

/// The column family RocksDB always has; a state of that name uses it.
const DEFAULT_FAMILY: &str = rocksdb::DEFAULT_COLUMN_FAMILY_NAME;

/// Bytes a restore buffers in one write batch.
const RESTORE_BATCH_BYTES: usize = 8 << 20;

/// A registered state.
struct State {
    name: String,
    /// Why the state's column family could not be created: `register` cannot fail, so its uses do.
    broken: Option<StateError>,
    cleanup: Cleanup,
    /// Set once the state has a time-to-live: its column family's compaction filter drops expired entries (none
    /// for the default column family, which was created without the filter).
    expiry: Option<Arc<OnceLock<Expiry>>>,
    /// Whether its keys may be kept in the store's cache: not once it has a time-to-live.
    cached: bool,
    /// The options its column family was created with. RocksDB keeps only a pointer to their compaction filter,
    /// which these own, so they must outlive the database (`db` is declared before `states` and dropped first).
    _options: Option<Options>,
}

/// Processing time now, in milliseconds since the Unix epoch, as compactions judge expiry.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Column family options whose compaction filter drops the entries `expiry` (once set) says have expired, so
/// that expired state leaves the disk without any walk over the keys.
fn with_expiry_filter(options: &Options, expiry: &Arc<OnceLock<Expiry>>) -> Options {
    let mut options = options.clone();
    let expiry = Arc::clone(expiry);
    options.set_compaction_filter("eddy-ttl", move |_level: u32, _key: &[u8], value: &[u8]| match expiry.get() {
        Some(expiry) if expiry.expired(value, now_ms()) => Decision::Remove,
        _ => Decision::Keep,
    });
    options
}

/// Where incremental cleanup of a state goes on.
#[derive(Default)]
struct Cleanup {
    /// The cursor the last unfinished step returned; a caller passing it back resumes at `resume`.
    generation: usize,
    /// The key prefix of the first key the last step did not visit.
    resume: Option<Vec<u8>>,
}

/// Writes and removals between two measurements of a budgeted store's size.
const MEASURE_EVERY: u32 = 4096;

/// A store's share of its budget, for its disk use (SST files and memtables).
struct DiskAccount {
    share: BudgetAccount,
    /// Changes since the last measurement.
    changes: u32,
}

/// Keyed state of one operator in one subtask, in a RocksDB instance of its own.
pub struct RocksDbStateStore {
    db: Db,
    states: Vec<State>,
    /// Options new column families are created with.
    options: Options,
    /// No write-ahead log and no sync: the state is made durable by checkpoints, and a store starts empty.
    write: WriteOptions,
    read: ReadOptions,
    /// Reused to encode composite keys without allocating.
    scratch: Vec<u8>,
    /// Recently scanned keys' entries (module `cache`), and the buffer their ids are encoded in.
    cache: KeyCache,
    cache_id: Vec<u8>,
    /// The key groups it holds.
    key_groups: (KeyGroup, KeyGroup),
    /// Its checkpoints on local disk.
    checkpoints: LocalCheckpoints,
    restored_from: Option<RestoredFrom>,
    /// Set when the store's disk use counts against a budget.
    account: Option<DiskAccount>,
    /// Declared after `db` so that the database is closed before its folder is removed.
    folder: Folder,
}

impl std::fmt::Debug for RocksDbStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStateStore")
            .field("folder", &self.folder.path)
            .field("states", &self.states.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// The column family of `state`.
fn family<'a>(db: &'a Db, states: &'a [State], state: StateId) -> Result<&'a ColumnFamily, StateError> {
    let entry = states.get(state as usize).ok_or_else(|| StateError(format!("unknown state id {state}")))?;
    if let Some(broken) = &entry.broken {
        return Err(broken.clone());
    }
    db.cf_handle(&entry.name)
        .ok_or_else(|| StateError(format!("the RocksDB column family of state `{}` is missing", entry.name)))
}

/// Read options for an iterator over `[lower, upper)`; a scan of everything leaves the cache to the hot entries.
fn bounded(lower: Option<Vec<u8>>, upper: Option<Vec<u8>>, fill_cache: bool) -> ReadOptions {
    let mut read = ReadOptions::default();
    if let Some(lower) = lower {
        read.set_iterate_lower_bound(lower);
    }
    if let Some(upper) = upper {
        read.set_iterate_upper_bound(upper);
    }
    read.fill_cache(fill_cache);
    read
}

impl RocksDbStateStore {
    /// Opens the database in `folder`, empty or with the column families it has (a restored checkpoint's).
    pub(crate) fn open(
        folder: Folder,
        options: Options,
        key_groups: (KeyGroup, KeyGroup),
        restored: Option<(&StateFiles, RestoredFrom)>,
    ) -> Result<RocksDbStateStore, StateError> {
        let failed = |e: rocksdb::Error| StateError(format!("cannot open RocksDB in {}: {e}", folder.path.display()));
        let existing = match restored {
            Some((_, RestoredFrom::LocalDisk | RestoredFrom::Storage)) => {
                Db::list_cf(&options, &folder.path).map_err(failed)?
            }
            _ => Vec::new(),
        };
        // Each state's column family with its time-to-live filter, as `register` creates them.
        let mut states = Vec::new();
        for name in existing.iter().filter(|name| name.as_str() != DEFAULT_FAMILY) {
            let expiry = Arc::new(OnceLock::new());
            let options = with_expiry_filter(&options, &expiry);
            let cleanup = Cleanup::default();
            states.push(State {
                name: name.clone(),
                broken: None,
                cleanup,
                expiry: Some(expiry),
                cached: true,
                _options: Some(options),
            });
        }
        // The default column family is opened with the state options too, in case a state is called `default`.
        let descriptors = std::iter::once(ColumnFamilyDescriptor::new(DEFAULT_FAMILY, options.clone())).chain(
            states.iter().map(|s| {
                let options = s._options.clone().unwrap_or_else(|| options.clone());
                ColumnFamilyDescriptor::new(&s.name, options)
            }),
        );
        let db = Db::open_cf_descriptors(&options, &folder.path, descriptors).map_err(failed)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        write.set_sync(false);
        let restored_checkpoint = restored.filter(|(_, from)| *from != RestoredFrom::Rescaled).map(|(files, _)| files);
        Ok(RocksDbStateStore {
            db,
            states,
            options,
            write,
            read: ReadOptions::default(),
            scratch: Vec::new(),
            cache: KeyCache::new(CachePool::new(CACHE_BYTES)),
            cache_id: Vec::new(),
            key_groups,
            checkpoints: LocalCheckpoints::new(&folder.path, restored_checkpoint),
            restored_from: restored.map(|(_, from)| from),
            account: None,
            folder,
        })
    }

    /// Counts the store's key cache against `pool` (of the backend's stores) from now on.
    pub(crate) fn share_key_cache(&mut self, pool: Arc<CachePool>) {
        self.cache = KeyCache::new(pool);
    }

    /// Counts the store's disk use against `budget` from now on.
    pub(crate) fn charge_to(&mut self, budget: Arc<StateBudget>) -> Result<(), StateError> {
        self.account = Some(DiskAccount { share: BudgetAccount::new(budget), changes: 0 });
        self.measure()
    }

    /// Bytes the store holds: its live SST files and its memtables, over every state.
    pub fn disk_bytes(&self) -> u64 {
        let mut bytes = 0;
        let families = std::iter::once(DEFAULT_FAMILY).chain(self.states.iter().map(|s| s.name.as_str()));
        for name in families {
            let Some(cf) = self.db.cf_handle(name) else { continue };
            for property in ["rocksdb.live-sst-files-size", "rocksdb.cur-size-all-mem-tables"] {
                bytes += self.db.property_int_value_cf(cf, property).ok().flatten().unwrap_or(0);
            }
        }
        bytes
    }

    /// Reports the store's size to its budget; an error (and writes refused) once the budget is used up.
    fn measure(&mut self) -> Result<(), StateError> {
        let size = self.disk_bytes();
        let Some(account) = &mut self.account else { return Ok(()) };
        account.changes = 0;
        account.share.report(size)
    }

    /// Refuses a write while the budget is used up, before anything is written.
    #[inline]
    fn check_room(&self) -> Result<(), StateError> {
        self.account.as_ref().map_or(Ok(()), |a| a.share.check_room())
    }

    /// Counts a change; measures the size every [`MEASURE_EVERY`] changes.
    #[inline]
    fn changed(&mut self) -> Result<(), StateError> {
        let Some(account) = &mut self.account else { return Ok(()) };
        account.changes += 1;
        if account.changes < MEASURE_EVERY {
            return Ok(());
        }
        self.measure()
    }

    /// Removes the local copies of checkpoints other than `id`.
    pub(crate) fn keep_only_local_copy_of(&self, id: CheckpointId) {
        self.checkpoints.keep_only(id);
    }

    /// Where its state came from, if it was restored from a checkpoint's files.
    pub fn restored_from(&self) -> Option<RestoredFrom> {
        self.restored_from
    }

    /// Copies the entries of `key_groups` from the database in `folder` (another store's checkpoint) into this one.
    pub(crate) fn copy_groups_from(
        &mut self,
        folder: &std::path::Path,
        options: &Options,
        key_groups: (KeyGroup, KeyGroup),
    ) -> Result<(), StateError> {
        let failed = |e: rocksdb::Error| StateError(format!("cannot read RocksDB in {}: {e}", folder.display()));
        let names = Db::list_cf(options, folder).map_err(failed)?;
        let descriptors = names.iter().map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
        let source = Db::open_cf_descriptors_read_only(options, folder, descriptors, false).map_err(failed)?;
        let lower = key_groups.0.to_be_bytes().to_vec();
        let upper = key_groups.1.checked_add(1).map(|next| next.to_be_bytes().to_vec());
        for name in &names {
            let Some(cf) = source.cf_handle(name) else { continue };
            let state = self.register(name);
            let target = family(&self.db, &self.states, state)?;
            let mut iter = source.raw_iterator_cf_opt(cf, bounded(Some(lower.clone()), upper.clone(), false));
            iter.seek_to_first();
            let mut batch = WriteBatch::default();
            while let Some((key, value)) = iter.item() {
                batch.put_cf(target, key, value);
                if batch.size_in_bytes() >= RESTORE_BATCH_BYTES {
                    self.db.write_opt(std::mem::take(&mut batch), &self.write).map_err(|e| self.failed("write", e))?;
                }
                iter.next();
            }
            iter.status().map_err(failed)?;
            if !batch.is_empty() {
                self.db.write_opt(batch, &self.write).map_err(|e| self.failed("write", e))?;
            }
        }
        Ok(())
    }

    /// The folder the store's files are in.
    pub fn folder(&self) -> &std::path::Path {
        &self.folder.path
    }

    /// Writes every state's memtable to files (a checkpoint of the files needs this first).
    pub fn flush(&mut self) -> Result<(), StateError> {
        let mut families = Vec::with_capacity(self.states.len());
        for id in 0..self.states.len() {
            families.push(family(&self.db, &self.states, id as StateId)?);
        }
        let mut flush = FlushOptions::default();
        flush.set_wait(true);
        self.db.flush_cfs_opt(&families, &flush).map_err(|e| self.failed("flush", e))
    }

    /// Flushes and compacts every state's column family now, so that compaction filters run over all of it
    /// (RocksDB otherwise compacts when its levels fill up).
    pub fn compact(&mut self) -> Result<(), StateError> {
        self.flush()?;
        for id in 0..self.states.len() {
            let cf = family(&self.db, &self.states, id as StateId)?;
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// A RocksDB error as a state error that says which store and what failed.
    fn failed(&self, what: &str, e: rocksdb::Error) -> StateError {
        StateError(format!("RocksDB {what} in {}: {e}", self.folder.path.display()))
    }

    /// Visits the entries of `cf` within `read`'s bounds, from `from` (or the first) in byte order, until `visit`
    /// returns false.
    fn each(
        &self,
        cf: &ColumnFamily,
        read: ReadOptions,
        from: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        let mut iter = self.db.raw_iterator_cf_opt(cf, read);
        match from {
            Some(from) => iter.seek(from),
            None => iter.seek_to_first(),
        }
        while let Some((key, value)) = iter.item() {
            if !visit(key, value)? {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(|e| self.failed("read", e))
    }

    /// Visits every `(stored key, value)` of `key` in namespace order.
    fn each_of_key(
        &self,
        state: StateId,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        let cf = family(&self.db, &self.states, state)?;
        let read = bounded(Some(prefix.to_vec()), keys::successor(prefix), true);
        // The bounds keep RocksDB from reading past the key; the prefix check covers a key without an upper bound.
        self.each(cf, read, Some(prefix), &mut |stored, value| {
            if !stored.starts_with(prefix) {
                return Ok(false);
            }
            visit(stored, value)
        })
    }

    /// Encodes the cache's id of `key` in `state` into `cache_id`; false when the state's keys are not cached.
    fn cache_key(&mut self, state: StateId, key: StateKey<'_>) -> Result<bool, StateError> {
        if !self.states.get(state as usize).is_some_and(|s| s.cached) {
            return Ok(false);
        }
        keys::prefix(&mut self.cache_id, key)?;
        self.cache_id.splice(0..0, state.to_be_bytes());
        Ok(true)
    }

    /// Like `cache_key`, only when some key is cached (a write to a key not kept has nothing to update).
    fn cached_key(&mut self, state: StateId, key: StateKey<'_>) -> Result<bool, StateError> {
        Ok(!self.cache.is_empty() && self.cache_key(state, key)?)
    }

    /// Stops caching the state's keys (it has a time-to-live now, which compactions act on unseen).
    fn stop_caching(&mut self, state: StateId) {
        if let Some(slot) = self.states.get_mut(state as usize)
            && slot.cached
        {
            slot.cached = false;
            self.cache.forget_state(&state.to_be_bytes());
        }
    }

    /// All of the key's entries, read into the cache when there are few enough; false when there were too many.
    fn fill_cache(&mut self, state: StateId) -> Result<bool, StateError> {
        let skip = self.cache_id.len() - std::mem::size_of::<StateId>();
        let prefix = self.cache_id[std::mem::size_of::<StateId>()..].to_vec();
        let mut entries = Vec::new();
        let mut complete = true;
        self.each_of_key(state, &prefix, &mut |stored, value| {
            if entries.len() == MAX_ENTRIES_PER_KEY {
                complete = false;
                return Ok(false);
            }
            entries.push((stored[skip..].to_vec(), value.to_vec()));
            Ok(true)
        })?;
        if complete {
            self.cache.fill(&self.cache_id, entries);
        }
        Ok(complete)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        self.db.write_opt(batch, &self.write).map_err(|e| self.failed("write", e))
    }
}

impl KeyedStateStore for RocksDbStateStore {
    fn register(&mut self, name: &str) -> StateId {
        if let Some(i) = self.states.iter().position(|s| s.name == name) {
            return i as StateId;
        }
        let (broken, expiry, options) = if name == DEFAULT_FAMILY {
            (None, None, None)
        } else {
            let expiry = Arc::new(OnceLock::new());
            let options = with_expiry_filter(&self.options, &expiry);
            let broken = self.db.create_cf(name, &options).err().map(|e| {
                StateError(format!(
                    "cannot create the RocksDB column family of state `{name}` in {}: {e}",
                    self.folder.path.display()
                ))
            });
            (broken, Some(expiry), Some(options))
        };
        let cleanup = Cleanup::default();
        self.states.push(State { name: name.to_string(), broken, cleanup, expiry, cached: true, _options: options });
        (self.states.len() - 1) as StateId
    }

    fn get_into(
        &mut self,
        state: StateId,
        key: StateKey<'_>,
        ns: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, StateError> {
        out.clear();
        if self.cached_key(state, key)?
            && let Some(found) = self.cache.get(&self.cache_id, ns)
        {
            out.extend_from_slice(found.unwrap_or_default());
            return Ok(found.is_some());
        }
        keys::composite(&mut self.scratch, key, ns)?;
        let cf = family(&self.db, &self.states, state)?;
        match self.db.get_pinned_cf_opt(cf, &self.scratch, &self.read).map_err(|e| self.failed("read", e))? {
            Some(value) => {
                out.extend_from_slice(&value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn contains(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8]) -> Result<bool, StateError> {
        if self.cached_key(state, key)?
            && let Some(found) = self.cache.get(&self.cache_id, ns)
        {
            return Ok(found.is_some());
        }
        keys::composite(&mut self.scratch, key, ns)?;
        let cf = family(&self.db, &self.states, state)?;
        let found = self.db.get_pinned_cf_opt(cf, &self.scratch, &self.read).map_err(|e| self.failed("read", e))?;
        Ok(found.is_some())
    }

    fn put(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.check_room()?;
        keys::composite(&mut self.scratch, key, ns)?;
        let cf = family(&self.db, &self.states, state)?;
        self.db.put_cf_opt(cf, &self.scratch, value, &self.write).map_err(|e| self.failed("put", e))?;
        if self.cached_key(state, key)? {
            self.cache.put(&self.cache_id, ns, value);
        }
        self.changed()
    }

    fn append(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8], bytes: &[u8]) -> Result<(), StateError> {
        self.check_room()?;
        keys::composite(&mut self.scratch, key, ns)?;
        let cf = family(&self.db, &self.states, state)?;
        self.db.merge_cf_opt(cf, &self.scratch, bytes, &self.write).map_err(|e| self.failed("append", e))?;
        if self.cached_key(state, key)? {
            self.cache.append(&self.cache_id, ns, bytes);
        }
        self.changed()
    }

    fn remove(&mut self, state: StateId, key: StateKey<'_>, ns: &[u8]) -> Result<(), StateError> {
        keys::composite(&mut self.scratch, key, ns)?;
        let cf = family(&self.db, &self.states, state)?;
        self.db.delete_cf_opt(cf, &self.scratch, &self.write).map_err(|e| self.failed("remove", e))?;
        if self.cached_key(state, key)? {
            self.cache.remove(&self.cache_id, ns);
        }
        self.changed()
    }

    fn entries(&mut self, state: StateId, key: StateKey<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let cached = self.cache_key(state, key)?;
        if cached && let Some(entries) = self.cache.entries(&self.cache_id) {
            return Ok(entries.clone());
        }
        keys::prefix(&mut self.scratch, key)?;
        let skip = self.scratch.len();
        let mut entries = Vec::new();
        self.each_of_key(state, &self.scratch, &mut |stored, value| {
            entries.push((stored[skip..].to_vec(), value.to_vec()));
            Ok(true)
        })?;
        // All of the key's entries were read anyway: keep them, if few enough.
        if cached && entries.len() <= MAX_ENTRIES_PER_KEY {
            self.cache.fill(&self.cache_id, entries.clone());
        }
        Ok(entries)
    }

    fn scan(
        &mut self,
        state: StateId,
        key: StateKey<'_>,
        from: &[u8],
        to: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StateError> {
        family(&self.db, &self.states, state)?;
        if from >= to {
            return Ok(());
        }
        if self.cache_key(state, key)? && (self.cache.entries(&self.cache_id).is_some() || self.fill_cache(state)?) {
            let entries = self.cache.entries(&self.cache_id).map_or(&[][..], Vec::as_slice);
            let first = entries.partition_point(|(ns, _)| ns.as_slice() < from);
            for (ns, value) in entries[first..].iter().take_while(|(ns, _)| ns.as_slice() < to) {
                visit(ns, value);
            }
            return Ok(());
        }
        let cf = family(&self.db, &self.states, state)?;
        let mut lower = Vec::new();
        keys::prefix(&mut lower, key)?;
        let skip = lower.len();
        let mut upper = lower.clone();
        lower.extend_from_slice(from);
        upper.extend_from_slice(to);
        // Both bounds share the key prefix, so every entry between them is one of this key's.
        let read = bounded(Some(lower.clone()), Some(upper), true);
        self.each(cf, read, Some(&lower), &mut |stored, value| {
            visit(&stored[skip..], value);
            Ok(true)
        })
    }

    /// Deletes the key's entries one by one in a batch rather than with a range delete: keys hold a few namespaces,
    /// and a range tombstone per removed key would slow every later read until compaction drops them.
    fn remove_key(&mut self, state: StateId, key: StateKey<'_>) -> Result<(), StateError> {
        keys::prefix(&mut self.scratch, key)?;
        let cf = family(&self.db, &self.states, state)?;
        let mut batch = WriteBatch::default();
        self.each_of_key(state, &self.scratch, &mut |stored, _| {
            batch.delete_cf(cf, stored);
            Ok(true)
        })?;
        if !batch.is_empty() {
            self.write(batch)?;
        }
        if self.cached_key(state, key)? {
            self.cache.remove_key(&self.cache_id);
        }
        Ok(())
    }

    /// Walks keys in byte order from where the last step stopped. The cursor is a generation number: the store keeps
    /// the position (the first key not visited yet), so a step seeks straight to it; a cursor other than the one the
    /// last step returned starts over, as 0 does. Only states without a compaction filter (the default column
    /// family) need it.
    fn cleanup_step(
        &mut self,
        state: StateId,
        cursor: usize,
        limit: usize,
        expired: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, StateError> {
        let unknown = || StateError(format!("unknown state id {state}"));
        self.stop_caching(state);
        let slot = self.states.get_mut(state as usize).ok_or_else(unknown)?;
        let resume = match cursor {
            0 => None,
            c if c == slot.cleanup.generation => slot.cleanup.resume.take(),
            _ => None,
        };
        let cf = family(&self.db, &self.states, state)?;
        let mut batch = WriteBatch::default();
        let mut visited = 0;
        let mut current = Vec::new();
        let mut stopped_at = None;
        self.each(cf, bounded(None, None, false), resume.as_deref(), &mut |stored, value| {
            let key = &stored[..keys::prefix_len(stored)?];
            if visited == 0 || key != current.as_slice() {
                if visited == limit {
                    stopped_at = Some(key.to_vec());
                    return Ok(false);
                }
                visited += 1;
                current.clear();
                current.extend_from_slice(key);
            }
            if expired(value) {
                batch.delete_cf(cf, stored);
            }
            Ok(true)
        })?;
        if !batch.is_empty() {
            self.write(batch)?;
        }
        let slot = self.states.get_mut(state as usize).ok_or_else(unknown)?;
        let Some(resume) = stopped_at else {
            slot.cleanup = Cleanup::default();
            return Ok(0);
        };
        let generation = slot.cleanup.generation.wrapping_add(1).max(1);
        slot.cleanup = Cleanup { generation, resume: Some(resume) };
        Ok(generation)
    }

    fn expire_in_background(&mut self, state: StateId, expiry: Expiry) -> bool {
        self.stop_caching(state);
        match self.states.get(state as usize).and_then(|s| s.expiry.as_ref()) {
            Some(slot) => slot.get_or_init(|| expiry) == &expiry,
            None => false,
        }
    }

    fn snapshot_each(
        &mut self,
        keep: &mut dyn FnMut(StateId, &[u8]) -> bool,
        out: &mut dyn FnMut(EntryRef<'_>),
    ) -> Result<(), StateError> {
        // One iterator per state, in name order, advanced a key group at a time: within a group the stored order
        // (key length, key, namespace) is the canonical one, so nothing is sorted or held.
        let mut order: Vec<usize> = (0..self.states.len()).collect();
        order.sort_by(|a, b| self.states[*a].name.cmp(&self.states[*b].name));
        let mut cursors = Vec::with_capacity(order.len());
        for id in order {
            let cf = family(&self.db, &self.states, id as StateId)?;
            let mut iter = self.db.raw_iterator_cf_opt(cf, bounded(None, None, false));
            iter.seek_to_first();
            cursors.push((id as StateId, self.states[id].name.as_str(), iter));
        }
        loop {
            let mut next_group = None;
            for (_, _, iter) in &cursors {
                if let Some(stored) = iter.key() {
                    let group = keys::split(stored)?.0;
                    next_group = Some(next_group.map_or(group, |g: u16| g.min(group)));
                }
            }
            let Some(group) = next_group else { break };
            for (id, state, iter) in &mut cursors {
                while let Some((stored, value)) = iter.item() {
                    let (at, key, namespace) = keys::split(stored)?;
                    if at != group {
                        break;
                    }
                    if keep(*id, value) {
                        out(EntryRef { state, group, key, namespace, value });
                    }
                    iter.next();
                }
                iter.status().map_err(|e| StateError(format!("cannot read RocksDB state `{state}`: {e}")))?;
            }
        }
        Ok(())
    }

    fn checkpoint_files(&mut self, checkpoint: CheckpointId) -> Result<Option<StateFiles>, StateError> {
        let files = self.checkpoints.take(&self.db, checkpoint, self.key_groups)?;
        // The flush may have moved bytes from memtables to files; the budget hears of it here too.
        if self.account.is_some() {
            self.measure()?;
        }
        Ok(Some(files))
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) {
        self.checkpoints.complete(checkpoint);
    }

    fn checkpoint_aborted(&mut self, checkpoint: CheckpointId) {
        self.checkpoints.abort(checkpoint);
    }

    /// Counts by walking the state: for tests and metrics, not for a hot path. A read error ends the count early.
    fn len(&mut self, state: StateId) -> usize {
        let Ok(cf) = family(&self.db, &self.states, state) else { return 0 };
        let mut count = 0;
        let _ = self.each(cf, bounded(None, None, false), None, &mut |_, _| {
            count += 1;
            Ok(true)
        });
        count
    }

    /// Loads the entries in large write batches.
    fn restore(&mut self, entries: &[SnapshotEntry]) -> Result<(), StateError> {
        self.cache.clear();
        let mut batch = WriteBatch::default();
        let mut last: Option<(&str, StateId)> = None;
        for entry in entries {
            let state = match last {
                Some((name, id)) if name == entry.state => id,
                _ => self.register(&entry.state),
            };
            last = Some((&entry.state, state));
            keys::composite(&mut self.scratch, StateKey { group: entry.group, key: &entry.key }, &entry.namespace)?;
            batch.put_cf(family(&self.db, &self.states, state)?, &self.scratch, &entry.value);
            if batch.size_in_bytes() >= RESTORE_BATCH_BYTES {
                self.write(std::mem::take(&mut batch))?;
            }
        }
        if batch.is_empty() { Ok(()) } else { self.write(batch) }
    }
}
