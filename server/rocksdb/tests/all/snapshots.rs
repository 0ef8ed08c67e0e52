//! Snapshots: canonical, identical to the in-memory store's, and restorable.

use eddy_engine::state::{KeyedStateStore, MemoryStateStore, StateKey};

/// Writes the same mixed content into a store: several states, groups, prefix keys, appends, removals.
fn fill(store: &mut dyn KeyedStateStore) {
    let window = store.register("window-contents");
    let value = store.register("value");
    let map = store.register("a-map");
    for group in [7u16, 0, u16::MAX] {
        for key in [&b"ab"[..], b"a", b"", b"b", b"\x00"] {
            let k = StateKey { group, key };
            store.put(value, k, b"", &[group as u8, key.len() as u8]).expect("put");
            for ns in [&b"\x00\x00\x00\x00\x00\x00\x00\x10"[..], b"\x00\x00\x00\x00\x00\x00\x00\x08"] {
                store.append(window, k, ns, b"e1").expect("append");
                store.append(window, k, ns, b"e2").expect("append");
            }
            store.put(map, k, b"user-b", b"2").expect("put");
            store.put(map, k, b"user-a", b"1").expect("put");
            store.put(map, k, b"", b"empty user key").expect("put");
        }
    }
    store.remove(map, StateKey { group: 0, key: b"a" }, b"user-a").expect("remove");
    store.remove_key(window, StateKey { group: 7, key: b"" }).expect("remove key");
    store.put(value, StateKey { group: 1, key: b"k" }, b"", b"").expect("an empty value is a value");
}

#[test]
fn snapshot_matches_memory_and_survives_restore() {
    let (_dir, backend, mut rocks) = crate::store();
    let mut memory = MemoryStateStore::default();
    fill(&mut rocks);
    fill(&mut memory);
    let snapshot = rocks.snapshot(&mut |_, _| true).expect("snapshot");
    assert_eq!(snapshot, memory.snapshot(&mut |_, _| true).expect("snapshot"), "the canonical order and content");
    // Values: 15 keys and one more; windows: 15 keys by 2 less one removed key; maps: 15 keys by 3 less one.
    assert_eq!(snapshot.len(), 16 + 28 + 44);
    assert_eq!(snapshot.first().map(|e| (e.state.as_str(), e.group, e.key.as_slice())), Some(("a-map", 0, &b""[..])));

    // Into a fresh store whose states are registered in another order: restore addresses them by name.
    let mut fresh = backend.open_store("op", 1, crate::ALL_GROUPS).expect("open");
    fresh.register("value");
    fresh.restore(&snapshot).expect("restore");
    assert_eq!(fresh.snapshot(&mut |_, _| true).expect("snapshot"), snapshot);
    let mut out = Vec::new();
    let window = fresh.register("window-contents");
    assert!(
        fresh.get_into(window, StateKey { group: 0, key: b"ab" }, &[0, 0, 0, 0, 0, 0, 0, 8], &mut out).expect("get")
    );
    assert_eq!(out, b"e1e2", "appended values restore as their concatenation");

    // And the snapshot restores into the memory backend identically: the format is backend-independent.
    let mut back = MemoryStateStore::default();
    back.restore(&snapshot).expect("restore");
    assert_eq!(back.snapshot(&mut |_, _| true).expect("snapshot"), snapshot);
}

#[test]
fn a_filtered_snapshot_keeps_what_keep_says() {
    let (_dir, _backend, mut rocks) = crate::store();
    let mut memory = MemoryStateStore::default();
    fill(&mut rocks);
    fill(&mut memory);
    let mut keep = |state: u32, value: &[u8]| state == 2 || value.starts_with(b"e1");
    let filtered = rocks.snapshot(&mut keep).expect("snapshot");
    assert_eq!(filtered, memory.snapshot(&mut keep).expect("snapshot"));
    assert!(filtered.iter().all(|e| e.state != "value"));
}

#[test]
fn a_large_restore_is_batched_and_complete() {
    let (_dir, backend, mut rocks) = crate::store();
    let s = rocks.register("s");
    let payload = vec![5u8; 1_000];
    for i in 0..20_000u32 {
        rocks.put(s, StateKey { group: (i % 128) as u16, key: &i.to_le_bytes() }, b"", &payload).expect("put");
    }
    let snapshot = rocks.snapshot(&mut |_, _| true).expect("snapshot");
    let mut fresh = backend.open_store("other", 0, crate::ALL_GROUPS).expect("open");
    fresh.restore(&snapshot).expect("restore");
    assert_eq!(fresh.len(0), 20_000);
    assert_eq!(fresh.snapshot(&mut |_, _| true).expect("snapshot"), snapshot);
}
