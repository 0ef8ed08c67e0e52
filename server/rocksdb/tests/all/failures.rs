//! Failures come back as errors, never as panics.

use eddy_engine::state::{KeyedStateStore, StateBackend, StateKey};
use eddy_rocksdb::{RocksDbBackend, RocksDbConfig};

const K: StateKey<'static> = StateKey { group: 0, key: b"k" };

#[test]
fn a_flush_into_a_removed_folder_is_an_error() {
    let (_dir, _backend, mut store) = crate::store();
    let s = store.register("s");
    store.put(s, K, b"", b"value").expect("put");
    std::fs::remove_dir_all(store.folder()).expect("remove the store's folder");
    let error = store.flush().expect_err("a flush has nowhere to write");
    assert!(error.0.contains("RocksDB flush"), "{}", error.0);
    assert!(error.0.contains(&store.folder().display().to_string()), "names the store: {}", error.0);
}

#[test]
fn writes_fail_once_flushes_cannot_write_files() {
    let dir = tempfile::tempdir().expect("temporary folder");
    // A small budget, so that memtables fill and RocksDB flushes them in the background.
    let config = RocksDbConfig { block_cache_bytes: 1 << 20, write_buffer_bytes: 1 << 20, key_cache_bytes: 1 << 20 };
    let backend = RocksDbBackend::new(dir.path(), config);
    let mut store = backend.create_store("op", 0, crate::ALL_GROUPS).expect("open");
    let s = store.register("s");
    std::fs::remove_dir_all(dir.path().join("op-0")).expect("remove the store's folder");
    let value = vec![1u8; 4_096];
    let mut failed = None;
    for i in 0..100_000u32 {
        if let Err(e) = store.put(s, StateKey { group: 0, key: &i.to_be_bytes() }, b"", &value) {
            failed = Some((i, e));
            break;
        }
    }
    let (at, error) = failed.expect("a write fails after a background flush failed");
    assert!(error.0.contains("RocksDB put"), "{}", error.0);
    assert!(at > 0, "the first writes go to the memtable");
    // The store keeps answering with errors rather than panicking.
    assert!(store.put(s, K, b"", b"x").is_err());
    let _ = store.snapshot(&mut |_, _| true);
}

#[test]
fn a_state_whose_column_family_cannot_be_created_fails_on_use() {
    let (_dir, _backend, mut store) = crate::store();
    let bad = store.register("nul\0in name");
    let good = store.register("fine");
    let error = store.put(bad, K, b"", b"x").expect_err("no column family");
    assert!(error.0.contains("column family of state"), "{}", error.0);
    assert!(store.snapshot(&mut |_, _| true).is_err(), "a snapshot cannot leave the state out");
    store.put(good, K, b"", b"x").expect("other states work");
}

#[test]
fn an_unusable_root_is_an_error() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").expect("write");
    let backend = RocksDbBackend::new(&file, RocksDbConfig::default());
    let Err(error) = backend.create_store("op", 0, crate::ALL_GROUPS) else { panic!("the root is a file") };
    assert!(error.0.contains("state folder"), "{}", error.0);
}

#[test]
fn one_store_per_operator_and_subtask_at_a_time() {
    let (_dir, backend) = crate::backend();
    let mut first = backend.open_store("op", 0, crate::ALL_GROUPS).expect("open");
    let s = first.register("s");
    first.put(s, K, b"", b"x").expect("put");
    let error = backend.open_store("op", 0, crate::ALL_GROUPS).expect_err("the folder is in use");
    assert!(error.0.contains("already has an open state store"), "{}", error.0);
    assert_eq!(first.len(s), 1, "the open store was left alone");
    let folder = first.folder().to_path_buf();
    drop(first);
    assert!(!folder.exists(), "a dropped store removes its folder");
    backend.open_store("op", 0, crate::ALL_GROUPS).expect("free again");
    // Uids cannot name folders outside the root.
    assert!(backend.folder("../x", 0).starts_with(backend.root()));
    assert_eq!(backend.folder("a/b.c", 3).file_name().and_then(|n| n.to_str()), Some("a%2Fb%2Ec-3"));
}

#[test]
fn a_store_past_its_disk_quota_refuses_writes_and_gives_back_what_it_held() {
    use eddy_engine::state::StateBudget;
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = StateBudget::new("tenant t", 1 << 20, None);
    let backend = RocksDbBackend::new(dir.path(), RocksDbConfig::default()).within(std::sync::Arc::clone(&budget));
    let mut store = backend.open_store("op", 0, crate::ALL_GROUPS).expect("open");
    let s = store.register("s");
    let mut refused = None;
    for n in 0u32..20_000 {
        let value = crate::noise(u64::from(n), 256);
        if let Err(e) = store.put(s, StateKey { group: 1, key: &n.to_be_bytes() }, b"", &value) {
            refused = Some((n, e));
            break;
        }
    }
    let (n, error) = refused.expect("1 MiB of quota does not hold 5 MB");
    assert!(error.0.contains("tenant t's state quota of 1 MiB is used up"), "{}", error.0);
    assert!((4095..8192).contains(&n), "refused at the first measurement past 1 MiB, not at write {n}");
    assert!(budget.used() >= 1 << 20, "the budget holds the store's bytes: {}", budget.used());
    let again = store.put(s, K, b"", b"small").expect_err("still refused");
    assert_eq!(again, error, "every write is refused until there is room again");
    drop(store);
    assert_eq!(budget.used(), 0, "a store that goes away gives its bytes back");
}
