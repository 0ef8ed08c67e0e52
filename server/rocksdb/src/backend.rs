//! The backend: where stores live and the memory they share.

use crate::cache::CachePool;
use crate::files::{RestoredFrom, checkpoints_folder, materialize, remove_folder};
use crate::store::RocksDbStateStore;
use eddy_engine::keys::KeyGroup;
use eddy_engine::state::{FetchObject, KeyedStateStore, StateBackend, StateBudget, StateError, StateFiles};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, LogLevel, Options, WriteBufferManager,
};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The memory a backend's stores share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RocksDbConfig {
    /// Bytes of uncompressed blocks, index and filter blocks cached for reads.
    pub block_cache_bytes: usize,
    /// Bytes of memtables (writes not yet flushed to files), across every store and state. Charged to the block
    /// cache too, so `block_cache_bytes + write_buffer_bytes` bounds what RocksDB holds in memory.
    pub write_buffer_bytes: usize,
    /// Bytes of recently scanned keys' entries kept in memory in front of RocksDB, across every store (each store
    /// keeps at most 8 MiB).
    pub key_cache_bytes: usize,
}

impl Default for RocksDbConfig {
    fn default() -> RocksDbConfig {
        RocksDbConfig { block_cache_bytes: 64 << 20, write_buffer_bytes: 64 << 20, key_cache_bytes: 64 << 20 }
    }
}

impl RocksDbConfig {
    /// `bytes` in all, a third each to the block cache, memtables and key cache.
    pub fn within(bytes: usize) -> RocksDbConfig {
        let third = bytes / 3;
        RocksDbConfig { block_cache_bytes: third, write_buffer_bytes: third, key_cache_bytes: third }
    }

    /// What the stores may hold in memory together.
    pub fn memory_bytes(&self) -> usize {
        self.block_cache_bytes + self.write_buffer_bytes + self.key_cache_bytes
    }

    /// The size of one memtable: an eighth of the budget, so that several states can fill theirs before the shared
    /// limit forces flushes, within 256 KiB to 64 MiB (RocksDB's default).
    fn memtable_bytes(&self) -> usize {
        (self.write_buffer_bytes / 8).clamp(256 << 10, 64 << 20)
    }
}

/// Keeps keyed state in RocksDB instances under one folder, one instance per operator and subtask.
pub struct RocksDbBackend {
    root: PathBuf,
    config: RocksDbConfig,
    cache: Cache,
    write_buffers: WriteBufferManager,
    /// Folders of the stores that are open: a second store for the same operator and subtask would wipe them.
    open: Arc<Mutex<HashSet<PathBuf>>>,
    /// What the stores' disk use counts against, if anything.
    budget: Option<Arc<StateBudget>>,
    /// What the stores' key caches hold together.
    key_cache: Arc<CachePool>,
}

impl std::fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbBackend").field("root", &self.root).field("config", &self.config).finish()
    }
}

impl RocksDbBackend {
    /// A backend whose stores live under `root` (created when the first store is) and share `config`'s memory.
    pub fn new(root: impl Into<PathBuf>, config: RocksDbConfig) -> RocksDbBackend {
        let cache = Cache::new_lru_cache(config.block_cache_bytes.saturating_add(config.write_buffer_bytes));
        // No stall: a write over the limit triggers flushes rather than waiting for them.
        let write_buffers =
            WriteBufferManager::new_write_buffer_manager_with_cache(config.write_buffer_bytes, false, cache.clone());
        let key_cache = CachePool::new(config.key_cache_bytes);
        RocksDbBackend {
            root: root.into(),
            config,
            cache,
            write_buffers,
            open: Arc::default(),
            budget: None,
            key_cache,
        }
    }

    /// The backend whose stores count their disk use (live SST files and memtables) against `budget`: a store
    /// that takes it past its limit refuses writes, as an in-memory store does with its memory.
    pub fn within(mut self, budget: Arc<StateBudget>) -> RocksDbBackend {
        self.budget = Some(budget);
        self
    }

    /// Starts counting a new store against the budget, if there is one.
    /// Also counts its key cache against the backend's.
    fn budgeted(&self, mut store: RocksDbStateStore) -> Result<RocksDbStateStore, StateError> {
        store.share_key_cache(Arc::clone(&self.key_cache));
        if let Some(budget) = &self.budget {
            store.charge_to(Arc::clone(budget))?;
        }
        Ok(store)
    }

    /// The folder the stores live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes the stores hold in memory now: cached blocks and memtables (these are charged to the cache), and
    /// their key caches.
    pub fn memory_used(&self) -> usize {
        self.cache.get_usage() + self.key_cache.used()
    }

    /// The folder of operator `uid`'s store in `subtask`: `<root>/<uid>-<subtask>`, with any byte of the uid other
    /// than an ASCII letter, digit, `_` or `-` written as `%XX`, so that no uid can name a folder elsewhere.
    pub fn folder(&self, uid: &str, subtask: u32) -> PathBuf {
        let mut name = String::with_capacity(uid.len() + 8);
        for byte in uid.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                name.push(byte as char);
            } else {
                let _ = write!(name, "%{byte:02X}");
            }
        }
        let _ = write!(name, "-{subtask}");
        self.root.join(name)
    }

    /// Opens the store of operator `uid` in subtask `subtask`, owner of `key_groups`, empty: whatever its folder
    /// and local checkpoints held is wiped (a restore from entries loads them through
    /// [`KeyedStateStore::restore`]).
    pub fn open_store(
        &self,
        uid: &str,
        subtask: u32,
        key_groups: RangeInclusive<KeyGroup>,
    ) -> Result<RocksDbStateStore, StateError> {
        let folder = self.claim(uid, subtask)?;
        remove_folder(&checkpoints_folder(&folder.path))?;
        let groups = (*key_groups.start(), *key_groups.end());
        self.budgeted(RocksDbStateStore::open(folder, self.options()?, groups, None)?)
    }

    /// Opens the store of operator `uid` in subtask `subtask`, owner of `key_groups`, with the state of those key
    /// groups in `parts`. One part taken by a store of the same key groups is used as it is: from the store's own
    /// local copy when it is on disk, else downloaded with `fetch`. Otherwise (the parallelism changed) each part
    /// is downloaded and its entries of `key_groups` copied.
    pub fn restore(
        &self,
        uid: &str,
        subtask: u32,
        key_groups: RangeInclusive<KeyGroup>,
        parts: &[StateFiles],
        fetch: FetchObject<'_>,
    ) -> Result<RocksDbStateStore, StateError> {
        let groups = (*key_groups.start(), *key_groups.end());
        let folder = self.claim(uid, subtask)?;
        let local = checkpoints_folder(&folder.path);
        if let [part] = parts
            && part.key_groups == groups
        {
            let copy = local.join(part.checkpoint.to_string());
            let from = match materialize(part, &copy, &folder.path, fetch)? {
                true => RestoredFrom::LocalDisk,
                false => RestoredFrom::Storage,
            };
            let store = RocksDbStateStore::open(folder, self.options()?, groups, Some((part, from)))?;
            store.keep_only_local_copy_of(part.checkpoint);
            return self.budgeted(store);
        }
        remove_folder(&local)?;
        let options = self.options()?;
        let mut store = RocksDbStateStore::open(
            folder,
            options.clone(),
            groups,
            parts.first().map(|p| (p, RestoredFrom::Rescaled)),
        )?;
        // Measured once the entries are in, below: the copy itself is not refused part way.
        for (i, part) in parts.iter().enumerate() {
            let scratch = local.with_file_name(format!("{}.restore-{i}", store_name(&local)));
            remove_folder(&scratch)?;
            // Nothing is local for another store's files: everything is downloaded.
            let copied = materialize(part, &scratch.join("none"), &scratch, fetch)
                .and_then(|_| store.copy_groups_from(&scratch, &options, groups));
            remove_folder(&scratch)?;
            copied?;
        }
        self.budgeted(store)
    }

    /// Claims the folder of operator `uid`'s store in `subtask`, and empties it.
    fn claim(&self, uid: &str, subtask: u32) -> Result<Folder, StateError> {
        let path = self.folder(uid, subtask);
        let folder = Folder::claim(path, Arc::clone(&self.open))
            .ok_or_else(|| StateError(format!("operator `{uid}` subtask {subtask} already has an open state store")))?;
        let failed = |what: &str, e: std::io::Error| {
            StateError(format!("cannot {what} the state folder {}: {e}", folder.path.display()))
        };
        match std::fs::remove_dir_all(&folder.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed("wipe", e)),
        }
        std::fs::create_dir_all(&folder.path).map_err(|e| failed("create", e))?;
        Ok(folder)
    }

    /// Options of a store's database and of each of its column families.
    fn options(&self) -> Result<Options, StateError> {
        // The one way to reach this DB option through the crate. The store's folder is wiped when it is opened and
        // removed when it is dropped, so a flush at close would be wasted work.
        let mut opts = Options::default()
            .get_options_from_string("avoid_flush_during_shutdown=true")
            .map_err(|e| StateError(format!("RocksDB options: {e}")))?;
        opts.create_if_missing(true);
        opts.set_write_buffer_manager(&self.write_buffers);
        opts.set_write_buffer_size(self.config.memtable_bytes());
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_merge_operator_associative("eddy-concat", concat);
        // A filter over each memtable's keys: most point reads find their entry in a file, or nowhere, and would
        // otherwise walk every memtable's skip list first.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.05);
        // RocksDB's info log goes into the store's folder; warnings are enough there.
        opts.set_log_level(LogLevel::Warn);
        opts.set_keep_log_file_num(1);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // Index and filter blocks in the cache count against the budget instead of growing outside it.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Window and trigger reads often miss (a new window, a key seen for the first time): a filter answers those
        // without reading a block.
        table.set_bloom_filter(10.0, false);
        // Index and filter in partitions of 4 KiB, read into the cache as needed, with only their small top level
        // pinned: a whole file's filter is megabytes, and once state outgrows the cache, reading it back (and
        // checksumming it) for every lookup takes nearly all the time.
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        opts.set_block_based_table_factory(&table);
        Ok(opts)
    }
}

impl StateBackend for RocksDbBackend {
    fn create_store(
        &self,
        uid: &str,
        subtask: u32,
        key_groups: RangeInclusive<KeyGroup>,
    ) -> Result<Box<dyn KeyedStateStore>, StateError> {
        Ok(Box::new(self.open_store(uid, subtask, key_groups)?))
    }

    fn restore_store(
        &self,
        uid: &str,
        subtask: u32,
        key_groups: RangeInclusive<KeyGroup>,
        parts: &[StateFiles],
        fetch: FetchObject<'_>,
    ) -> Result<Box<dyn KeyedStateStore>, StateError> {
        Ok(Box::new(self.restore(uid, subtask, key_groups, parts, fetch)?))
    }
}

/// The name of a store's folder from its checkpoints folder (`<name>.checkpoints`).
fn store_name(checkpoints: &Path) -> String {
    let name = checkpoints.file_name().unwrap_or_default().to_string_lossy();
    name.strip_suffix(".checkpoints").unwrap_or(&name).to_string()
}

/// `append`: the stored bytes (none counts as empty) followed by each operand. Concatenation is associative, so
/// RocksDB may also combine operands before it sees the stored bytes.
fn concat(_key: &[u8], existing: Option<&[u8]>, operands: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    let len = existing.map_or(0, <[u8]>::len) + operands.iter().map(<[u8]>::len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(existing.unwrap_or_default());
    for operand in operands {
        out.extend_from_slice(operand);
    }
    Some(out)
}

/// A store's folder, claimed while the store is open and removed when it is dropped (after the database: the store
/// declares it last). State outlives a store only in checkpoints.
pub(crate) struct Folder {
    pub(crate) path: PathBuf,
    open: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Folder {
    /// Claims `path`; none if a store holds it already.
    fn claim(path: PathBuf, open: Arc<Mutex<HashSet<PathBuf>>>) -> Option<Folder> {
        // A panic elsewhere while holding the lock leaves the set intact: insert and remove are single steps.
        let claimed = open.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone());
        claimed.then_some(Folder { path, open })
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        // Best effort: a folder that cannot be removed is wiped by the next store that claims it.
        let _ = std::fs::remove_dir_all(&self.path);
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.path);
    }
}
