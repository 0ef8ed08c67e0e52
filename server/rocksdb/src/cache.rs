//! Every entry of recently scanned keys, kept in memory in front of RocksDB.
//!
//! A sliding window reads a key's panes with a scan at each firing, and a key fires about once per slide: with
//! RocksDB each scan opens an iterator and seeks through the memtable and every sorted file, several microseconds
//! where the memory store takes a few hundred nanoseconds. So a scan (or `entries`) reads all of the key's
//! entries once and keeps them here; later scans, reads and writes of that key are served or kept up to date here.
//!
//! Writes go through to RocksDB first, so RocksDB stays the whole truth: checkpoints, savepoints and restores never
//! look at the cache, and dropping any part of it loses nothing. Keys with many entries (a large map state) are not
//! kept, and a store's cache holds at most [`CACHE_BYTES`], within a limit shared by every store of the backend
//! ([`CachePool`]), so that many stores cannot add up to more; past either, it drops keys. Keys are identified by
//! the state's id and the key's composite prefix; only states without a time-to-live are kept, since compactions
//! drop expired entries behind the cache's back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of keys and entries one store keeps at most.
pub(crate) const CACHE_BYTES: usize = 8 << 20;

/// The bytes the caches of a backend's stores hold together, and how many they may.
#[derive(Debug)]
pub(crate) struct CachePool {
    used: AtomicUsize,
    limit: usize,
}

impl CachePool {
    pub(crate) fn new(limit: usize) -> Arc<CachePool> {
        Arc::new(CachePool { used: AtomicUsize::new(0), limit })
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }

    /// Bytes the caches hold now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// A key with more entries than this is not kept: reading all of them for one scan would cost more than it saves.
pub(crate) const MAX_ENTRIES_PER_KEY: usize = 64;

/// What an entry costs beyond its bytes (two vectors' headers and allocations), for the size limit.
const ENTRY_OVERHEAD: usize = 64;

/// The entries of one key, sorted by namespace.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Keys' complete sets of entries, by `state id ‖ key prefix`.
#[derive(Debug)]
pub(crate) struct KeyCache {
    keys: HashMap<Vec<u8>, Entries>,
    bytes: usize,
    pool: Arc<CachePool>,
}

impl Drop for KeyCache {
    fn drop(&mut self) {
        self.set_bytes(0);
    }
}

fn cost(id: &[u8], entries: &Entries) -> usize {
    id.len() + ENTRY_OVERHEAD + entries.iter().map(|(ns, v)| ns.len() + v.len() + ENTRY_OVERHEAD).sum::<usize>()
}

impl KeyCache {
    /// An empty cache whose bytes count against `pool`.
    pub(crate) fn new(pool: Arc<CachePool>) -> KeyCache {
        KeyCache { keys: HashMap::new(), bytes: 0, pool }
    }

    /// Records the cache's size, in the pool too.
    fn set_bytes(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            self.pool.used.fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.pool.used.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }

    /// Whether the store's or the pool's limit is passed.
    fn over(&self) -> bool {
        self.bytes > CACHE_BYTES || self.pool.over()
    }

    /// Whether no key is kept (every operation is then a no-op, checked first to keep uncached work cheap).
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key's entries, when it is kept.
    pub(crate) fn entries(&self, id: &[u8]) -> Option<&Entries> {
        self.keys.get(id)
    }

    /// The value under `ns`: `None` when the key is not kept, `Some(None)` when it is kept and has no such entry.
    pub(crate) fn get(&self, id: &[u8], ns: &[u8]) -> Option<Option<&[u8]>> {
        let entries = self.keys.get(id)?;
        Some(entries.binary_search_by(|(n, _)| n.as_slice().cmp(ns)).ok().map(|i| entries[i].1.as_slice()))
    }

    /// Keeps `entries`, all of the key's, sorted by namespace.
    pub(crate) fn fill(&mut self, id: &[u8], entries: Entries) {
        if entries.len() > MAX_ENTRIES_PER_KEY {
            return;
        }
        let added = cost(id, &entries);
        let mut bytes = self.bytes + added;
        if let Some(old) = self.keys.insert(id.to_vec(), entries) {
            bytes -= cost(id, &old);
        }
        self.set_bytes(bytes);
        if self.over() {
            self.shrink();
        }
    }

    /// Drops keys until the cache is at three quarters of its limit and the pool within its own, or empty.
    fn shrink(&mut self) {
        let target = CACHE_BYTES / 4 * 3;
        let pool = Arc::clone(&self.pool);
        let (before, mut bytes) = (self.bytes, self.bytes);
        self.keys.retain(|id, entries| {
            let pool_over = pool.used.load(Ordering::Relaxed) + bytes > pool.limit + before;
            if bytes <= target && !pool_over {
                return true;
            }
            bytes -= cost(id, entries);
            false
        });
        self.set_bytes(bytes);
    }

    /// Applies a write of the key's entry under `ns`, if the key is kept: `update` gets the old value (if any)
    /// and returns the new one, or none for a removal.
    fn update(&mut self, id: &[u8], ns: &[u8], update: impl FnOnce(Option<Vec<u8>>) -> Option<Vec<u8>>) {
        let Some(entries) = self.keys.get_mut(id) else { return };
        let before = cost(id, entries);
        match entries.binary_search_by(|(n, _)| n.as_slice().cmp(ns)) {
            Ok(i) => match update(Some(std::mem::take(&mut entries[i].1))) {
                Some(value) => entries[i].1 = value,
                None => {
                    entries.remove(i);
                }
            },
            Err(i) => {
                if let Some(value) = update(None) {
                    entries.insert(i, (ns.to_vec(), value));
                }
            }
        }
        let after = cost(id, entries);
        if entries.len() > MAX_ENTRIES_PER_KEY {
            self.keys.remove(id);
            self.set_bytes(self.bytes - before);
            return;
        }
        self.set_bytes(self.bytes - before + after);
        if self.over() {
            self.shrink();
        }
    }

    pub(crate) fn put(&mut self, id: &[u8], ns: &[u8], value: &[u8]) {
        self.update(id, ns, |_| Some(value.to_vec()));
    }

    /// As RocksDB's merge operator does: the bytes go after the old value (an absent one counts as empty).
    pub(crate) fn append(&mut self, id: &[u8], ns: &[u8], bytes: &[u8]) {
        self.update(id, ns, |old| {
            let mut value = old.unwrap_or_default();
            value.extend_from_slice(bytes);
            Some(value)
        });
    }

    pub(crate) fn remove(&mut self, id: &[u8], ns: &[u8]) {
        self.update(id, ns, |_| None);
    }

    /// The key now has no entries.
    pub(crate) fn remove_key(&mut self, id: &[u8]) {
        if let Some(entries) = self.keys.get_mut(id) {
            let freed = cost(id, entries) - cost(id, &Vec::new());
            entries.clear();
            self.set_bytes(self.bytes - freed);
        }
    }

    /// Forgets every key of the state whose ids start with `state`.
    pub(crate) fn forget_state(&mut self, state: &[u8]) {
        let mut bytes = self.bytes;
        self.keys.retain(|id, entries| {
            let keep = !id.starts_with(state);
            if !keep {
                bytes -= cost(id, entries);
            }
            keep
        });
        self.set_bytes(bytes);
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.set_bytes(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_keep_a_kept_key_complete_and_sorted() {
        let mut cache = KeyCache::new(CachePool::new(CACHE_BYTES));
        cache.put(b"k", b"a", b"1");
        assert_eq!(cache.get(b"k", b"a"), None, "a key not filled is not kept");
        cache.fill(b"k", vec![(b"b".to_vec(), b"2".to_vec())]);
        cache.put(b"k", b"a", b"1");
        cache.append(b"k", b"b", b"3");
        cache.append(b"k", b"c", b"4");
        cache.remove(b"k", b"a");
        assert_eq!(cache.get(b"k", b"a"), Some(None));
        let entries = cache.entries(b"k").cloned();
        assert_eq!(entries, Some(vec![(b"b".to_vec(), b"23".to_vec()), (b"c".to_vec(), b"4".to_vec())]));
        cache.remove_key(b"k");
        assert_eq!(cache.entries(b"k").map(Vec::len), Some(0));
        assert_eq!(cache.bytes, cost(b"k", &Vec::new()));
    }

    #[test]
    fn stays_within_its_limit_and_skips_large_keys() {
        let mut cache = KeyCache::new(CachePool::new(4 * CACHE_BYTES));
        let big = vec![(b"n".to_vec(), vec![0u8; 1 << 20])];
        for i in 0..20u32 {
            cache.fill(&i.to_be_bytes(), big.clone());
            assert!(cache.bytes <= CACHE_BYTES, "{} bytes after {i}", cache.bytes);
        }
        let many: Entries = (0..=MAX_ENTRIES_PER_KEY as u32).map(|i| (i.to_be_bytes().to_vec(), Vec::new())).collect();
        cache.fill(b"many", many);
        assert!(cache.entries(b"many").is_none());
        let total: usize = cache.keys.iter().map(|(id, e)| cost(id, e)).sum();
        assert_eq!(total, cache.bytes, "the running count matches");
        cache.forget_state(&[0, 0]);
        assert!(cache.keys.keys().all(|id| !id.starts_with(&[0, 0])));
    }

    #[test]
    fn stores_sharing_a_pool_stay_within_it_together() {
        let pool = CachePool::new(3 << 20);
        let (mut a, mut b) = (KeyCache::new(Arc::clone(&pool)), KeyCache::new(Arc::clone(&pool)));
        let entries = vec![(b"n".to_vec(), vec![0u8; 1 << 20])];
        for i in 0..4u32 {
            a.fill(&i.to_be_bytes(), entries.clone());
            b.fill(&i.to_be_bytes(), entries.clone());
            assert!(pool.used() <= 3 << 20, "{} bytes", pool.used());
            assert_eq!(pool.used(), a.bytes + b.bytes);
        }
        drop(a);
        assert_eq!(pool.used(), b.bytes, "a dropped cache gives its bytes back");
    }
}
