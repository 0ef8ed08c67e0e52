//! Incremental checkpoints: a checkpoint uploads only SST files no completed checkpoint has, and a store restores
//! from its local copy, from storage alone, or from several stores' files after a change of parallelism.

use eddy_engine::checkpoint::CheckpointId;
use eddy_engine::state::{KeyedStateStore, StateError, StateFiles, StateKey};
use eddy_rocksdb::{RestoredFrom, RocksDbBackend, RocksDbStateStore};
use std::cell::RefCell;
use std::collections::HashMap;

/// Checkpoint storage for these tests: objects by name, and how many times each was read.
#[derive(Default)]
struct Storage {
    objects: RefCell<HashMap<String, Vec<u8>>>,
    reads: RefCell<usize>,
}

impl Storage {
    /// Uploads what a checkpoint says to, as the coordinator does; returns the bytes uploaded.
    fn upload(&self, files: &StateFiles) -> u64 {
        let local = files.local.as_ref().expect("a new checkpoint's files are on disk");
        let mut uploaded = 0;
        for file in files.files.iter().filter(|f| f.upload) {
            let bytes = std::fs::read(local.join(&file.name)).expect("read a state file");
            uploaded += bytes.len() as u64;
            self.objects.borrow_mut().insert(file.object.clone(), bytes);
        }
        uploaded
    }

    fn fetch(&self, object: &str) -> Result<Vec<u8>, StateError> {
        *self.reads.borrow_mut() += 1;
        self.objects.borrow().get(object).cloned().ok_or_else(|| StateError(format!("no object {object}")))
    }
}

/// Puts `count` keys from `first` in every group of `groups`, with values of 1 KiB that do not compress.
fn write(store: &mut RocksDbStateStore, groups: std::ops::RangeInclusive<u16>, first: u32, count: u32) {
    let state = store.register("values");
    for group in groups {
        for n in first..first + count {
            let key = n.to_be_bytes();
            let value = crate::noise(u64::from(n) << 16 | u64::from(group), 1024);
            store.put(state, StateKey { group, key: &key }, b"", &value).expect("put");
        }
    }
}

/// Every entry, canonical.
fn contents(store: &mut RocksDbStateStore) -> Vec<(String, u16, Vec<u8>, Vec<u8>)> {
    let entries = store.snapshot(&mut |_, _| true).expect("snapshot");
    entries.into_iter().map(|e| (e.state, e.group, e.key, e.value)).collect()
}

/// Takes checkpoint `id`, uploads it and completes it; returns its files and the bytes uploaded.
fn checkpoint(store: &mut RocksDbStateStore, storage: &Storage, id: CheckpointId) -> (StateFiles, u64) {
    let files = store.checkpoint_files(id).expect("checkpoint").expect("RocksDB checkpoints its files");
    let uploaded = storage.upload(&files);
    store.checkpoint_complete(id);
    (files, uploaded)
}

#[test]
fn a_checkpoint_uploads_only_files_no_completed_checkpoint_has() {
    let (_dir, _backend, mut store) = crate::store();
    let storage = Storage::default();
    write(&mut store, 0..=3, 0, 500);
    let (first, first_bytes) = checkpoint(&mut store, &storage, 1);
    assert!(first.files.iter().all(|f| f.upload), "the first checkpoint uploads everything");
    assert!(first.files.iter().any(|f| f.name.ends_with(".sst")), "{:?}", first.files);
    assert_eq!(first.format, "rocksdb/1");
    assert_eq!(first.key_groups, (0, 127));

    // A little more state: the old SST files are referred to, only the new ones go up.
    write(&mut store, 0..=0, 10_000, 10);
    let (second, second_bytes) = checkpoint(&mut store, &storage, 2);
    let reused: Vec<_> = second.files.iter().filter(|f| !f.upload).collect();
    assert!(!reused.is_empty(), "unchanged SST files are not uploaded again");
    for file in &reused {
        let before = first.files.iter().find(|f| f.name == file.name).expect("a file of the first checkpoint");
        assert_eq!(before.object, file.object, "the same object");
        assert!(file.name.ends_with(".sst"), "only SST files are shared: {}", file.name);
    }
    assert!(second_bytes * 10 < first_bytes, "incremental: {second_bytes} bytes after {first_bytes}");

    // A checkpoint that is given up is not referred to: the next one uploads its new files again.
    write(&mut store, 1..=1, 20_000, 10);
    let given_up = store.checkpoint_files(3).expect("checkpoint").expect("files");
    let given_up_dir = given_up.local.clone().expect("local copy");
    store.checkpoint_aborted(3);
    assert!(!given_up_dir.exists(), "the given-up checkpoint's local copy is removed");
    let fourth = store.checkpoint_files(4).expect("checkpoint").expect("files");
    let new_in_third: Vec<&str> =
        given_up.files.iter().filter(|f| f.upload && f.name.ends_with(".sst")).map(|f| f.name.as_str()).collect();
    assert!(!new_in_third.is_empty());
    for name in new_in_third {
        let file = fourth.files.iter().find(|f| f.name == name).expect("still in the database");
        assert!(file.upload, "{name} was only in a given-up checkpoint, so it is uploaded again");
    }
}

#[test]
fn a_restart_on_the_same_machine_restores_from_the_local_copy() {
    let (_dir, backend, mut store) = crate::store();
    let storage = Storage::default();
    write(&mut store, 0..=3, 0, 200);
    checkpoint(&mut store, &storage, 1);
    write(&mut store, 2..=2, 1_000, 5);
    let (files, _) = checkpoint(&mut store, &storage, 2);
    let expected = contents(&mut store);
    // Written after the checkpoint: not in the restored state.
    write(&mut store, 3..=3, 5_000, 5);
    let local = files.local.clone().expect("local copy");
    drop(store);
    assert!(local.is_dir(), "the newest completed checkpoint's copy outlives the store");

    let mut restored = backend
        .restore("op", 0, crate::ALL_GROUPS, std::slice::from_ref(&files), &|o| storage.fetch(o))
        .expect("restore");
    assert_eq!(restored.restored_from(), Some(RestoredFrom::LocalDisk));
    assert_eq!(*storage.reads.borrow(), 0, "nothing was downloaded");
    assert_eq!(contents(&mut restored), expected);

    // The restored store goes on checkpointing incrementally from what storage holds.
    write(&mut restored, 0..=0, 9_000, 3);
    let next = restored.checkpoint_files(3).expect("checkpoint").expect("files");
    let reused = next.files.iter().filter(|f| !f.upload).count();
    assert!(reused > 0, "the restored checkpoint's SST files are not uploaded again");
}

#[test]
fn a_store_restores_from_storage_alone_when_its_disk_was_wiped() {
    let (dir, backend, mut store) = crate::store();
    let storage = Storage::default();
    write(&mut store, 0..=7, 0, 100);
    let (files, _) = checkpoint(&mut store, &storage, 1);
    let expected = contents(&mut store);
    drop(store);
    std::fs::remove_dir_all(backend.root()).expect("wipe the local disk");

    let mut restored = backend
        .restore("op", 0, crate::ALL_GROUPS, std::slice::from_ref(&files), &|o| storage.fetch(o))
        .expect("restore");
    assert_eq!(restored.restored_from(), Some(RestoredFrom::Storage));
    assert_eq!(*storage.reads.borrow(), files.files.len(), "every file was downloaded once");
    assert_eq!(contents(&mut restored), expected);
    drop(restored);

    // A file that storage lost, or holds at another size, is an error that names it, not a silent loss.
    let broken = RocksDbBackend::new(dir.path().join("other"), Default::default());
    let sst = files.files.iter().find(|f| f.name.ends_with(".sst")).expect("an SST file");
    storage.objects.borrow_mut().insert(sst.object.clone(), b"short".to_vec());
    let Err(error) = broken.restore("op", 0, crate::ALL_GROUPS, std::slice::from_ref(&files), &|o| storage.fetch(o))
    else {
        panic!("a damaged file must fail the restore");
    };
    assert!(error.0.contains(&sst.object) && error.0.contains("5 bytes"), "{}", error.0);
    storage.objects.borrow_mut().remove(&sst.object);
    let Err(error) = broken.restore("op", 0, crate::ALL_GROUPS, std::slice::from_ref(&files), &|o| storage.fetch(o))
    else {
        panic!("a missing file must fail the restore");
    };
    assert!(error.0.contains(&sst.object), "{}", error.0);
}

#[test]
fn a_change_of_parallelism_splits_and_merges_stores_by_key_group() {
    let (_dir, backend) = crate::backend();
    let storage = Storage::default();
    // Two subtasks of 8 key groups each.
    let mut parts = Vec::new();
    let mut expected = Vec::new();
    for (subtask, groups) in [(0u32, 0u16..=3u16), (1, 4..=7)] {
        let mut store = backend.open_store("op", subtask, groups.clone()).expect("open");
        write(&mut store, groups, subtask * 1_000, 50);
        let (files, _) = checkpoint(&mut store, &storage, 1);
        expected.extend(contents(&mut store));
        parts.push(files);
    }
    expected.sort();

    // Into one subtask: everything.
    let mut merged = backend.restore("merged", 0, 0..=7, &parts, &|o| storage.fetch(o)).expect("restore");
    assert_eq!(merged.restored_from(), Some(RestoredFrom::Rescaled));
    let mut all = contents(&mut merged);
    all.sort();
    assert_eq!(all, expected);

    // Into three: each gets exactly its own key groups.
    let mut seen = Vec::new();
    for (subtask, groups) in [(0u32, 0u16..=2u16), (1, 3..=5), (2, 6..=7)] {
        let mut store =
            backend.restore("split", subtask, groups.clone(), &parts, &|o| storage.fetch(o)).expect("restore");
        let mine = contents(&mut store);
        assert!(mine.iter().all(|(_, group, _, _)| groups.contains(group)), "subtask {subtask} has foreign groups");
        seen.extend(mine);
    }
    seen.sort();
    assert_eq!(seen, expected, "nothing lost or doubled");

    // Files of another format are refused by name.
    let mut foreign = parts[0].clone();
    foreign.format = "other/9".into();
    let Err(error) = backend.restore("foreign", 0, 0..=3, &[foreign], &|o| storage.fetch(o)) else {
        panic!("another format must be refused");
    };
    assert!(error.0.contains("other/9"), "{}", error.0);
}
