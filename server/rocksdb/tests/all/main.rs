//! The RocksDB backend's integration tests, one module per topic, in one binary (one link of RocksDB).

mod cleanup;
mod differential;
mod failures;
mod golden;
mod incremental;
mod jobs;
mod keyed;
mod layout;
mod snapshots;

use eddy_rocksdb::{RocksDbBackend, RocksDbConfig, RocksDbStateStore};

/// `len` bytes that do not compress (xorshift from `seed`), so that files grow as the data does.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The key groups of a store that owns them all (of a job with 128).
pub const ALL_GROUPS: std::ops::RangeInclusive<u16> = 0..=127;

/// A backend in a fresh temporary folder (removed when the guard drops) with a small memory budget.
pub fn backend() -> (tempfile::TempDir, RocksDbBackend) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = RocksDbConfig { block_cache_bytes: 4 << 20, write_buffer_bytes: 4 << 20, key_cache_bytes: 4 << 20 };
    let backend = RocksDbBackend::new(dir.path().join("state"), config);
    (dir, backend)
}

/// A store of its own backend; keep the guards alive as long as the store.
pub fn store() -> (tempfile::TempDir, RocksDbBackend, RocksDbStateStore) {
    let (dir, backend) = backend();
    let store = backend.open_store("op", 0, crate::ALL_GROUPS).expect("open store");
    (dir, backend, store)
}
