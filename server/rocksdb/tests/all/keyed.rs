//! User-facing value, list and map state over the RocksDB store, as the engine's own tests use the memory store:
//! each scenario runs over both stores and must observe the same.

use eddy_engine::spec::{Millis, TtlCleanup, TtlSpec, TtlUpdate, TtlVisibility};
use eddy_engine::state::{KeyedState, KeyedStateStore, MemoryStateStore, StateDescriptor, StateKey, StateKind};

const K: StateKey<'static> = StateKey { group: 0, key: b"k" };

fn ttl(update: TtlUpdate, visibility: TtlVisibility, cleanup: TtlCleanup) -> TtlSpec {
    TtlSpec { time_to_live: Millis(100), update, visibility, cleanup }
}

fn open(state: &mut KeyedState, name: &str, kind: StateKind, ttl: Option<TtlSpec>) -> usize {
    state.open(&StateDescriptor { name: name.into(), kind, ttl }).expect("open")
}

/// Runs `scenario` over a memory store and a RocksDB store; returns the transcript both produced.
fn both(scenario: impl Fn(&mut KeyedState) -> Vec<String>) -> Vec<String> {
    let (_dir, _backend, rocks) = crate::store();
    let expected = scenario(&mut KeyedState::new(Box::new(MemoryStateStore::default()), None));
    let actual = scenario(&mut KeyedState::new(Box::new(rocks), None));
    assert_eq!(actual, expected);
    actual
}

#[test]
fn value_list_and_map_state_without_ttl() {
    let transcript = both(|s| {
        let mut log = Vec::new();
        let v = open(s, "v", StateKind::Value, None);
        let l = open(s, "l", StateKind::List, None);
        let m = open(s, "m", StateKind::Map, None);
        log.push(format!("{:?}", s.value_get(v, K, 0)));
        s.value_set(v, K, b"x", 0).expect("set");
        log.push(format!("{:?}", s.value_get(v, K, i64::MAX)));
        for element in [&b"a"[..], b"", b"bc"] {
            s.list_add(l, K, element, 0).expect("add");
        }
        log.push(format!("{:?}", s.list_get(l, K, 0)));
        s.list_update(l, K, &[b"z".to_vec()], 0).expect("update");
        log.push(format!("{:?}", s.list_get(l, K, 0)));
        for (user_key, value) in [(&b"b"[..], &b"2"[..]), (b"a", b"1"), (b"", b"0"), (b"ab", b"3")] {
            s.map_put(m, K, user_key, value, 0).expect("put");
        }
        s.map_remove(m, K, b"a", 0).expect("remove");
        log.push(format!("{:?}", s.map_entries(m, K, 0)));
        log.push(format!("{:?}", s.map_get(m, K, b"ab", 0)));
        s.clear(m, K, 0).expect("clear");
        log.push(format!("{:?}", s.map_entries(m, K, 0)));
        log.push(format!("{:?}", s.snapshot(0).map(|e| e.len())));
        // Clearing a value or a list state leaves the other states of the key alone.
        s.clear(v, K, 0).expect("clear");
        log.push(format!("{:?} {:?}", s.value_get(v, K, 0), s.list_get(l, K, 0)));
        s.clear(l, K, 0).expect("clear");
        log.push(format!("{:?} {:?}", s.list_get(l, K, 0), s.snapshot(0).map(|e| e.len())));
        log
    });
    assert_eq!(transcript[1], r#"Ok(Some([120]))"#);
    assert_eq!(transcript[2], r#"Ok([[97], [], [98, 99]])"#);
    assert_eq!(transcript[4], r#"Ok([([], [48]), ([97, 98], [51]), ([98], [50])])"#, "map entries in user-key order");
    assert_eq!(transcript[6], "Ok([])");
    assert_eq!(transcript[8], "Ok(None) Ok([[122]])");
    assert_eq!(transcript[9], "Ok([]) Ok(0)");
}

#[test]
fn ttl_visibility_update_and_expiry() {
    both(|s| {
        let mut log = Vec::new();
        let never = ttl(TtlUpdate::OnReadAndWrite, TtlVisibility::NeverReturnExpired, TtlCleanup::FullSnapshot);
        let lax =
            ttl(TtlUpdate::OnCreateAndWrite, TtlVisibility::ReturnExpiredIfNotCleanedUp, TtlCleanup::FullSnapshot);
        let v = open(s, "v", StateKind::Value, Some(never));
        let w = open(s, "w", StateKind::Value, Some(lax));
        let l = open(s, "l", StateKind::List, Some(never));
        let m = open(s, "m", StateKind::Map, Some(lax));
        s.value_set(v, K, b"x", 1_000).expect("set");
        s.value_set(w, K, b"y", 1_000).expect("set");
        for now in [1_060, 1_150, 1_260] {
            log.push(format!("{now}: v {:?} w {:?}", s.value_get(v, K, now), s.value_get(w, K, now)));
        }
        s.list_add(l, K, b"old", 0).expect("add");
        s.list_add(l, K, b"new", 50).expect("add");
        log.push(format!("{:?} {:?}", s.list_get(l, K, 120), s.list_get(l, K, 300)));
        s.map_put(m, K, b"a", b"1", 0).expect("put");
        s.map_put(m, K, b"b", b"2", 60).expect("put");
        log.push(format!("{:?}", s.map_entries(m, K, 120)));
        log.push(format!("{:?}", s.snapshot(120).map(|e| e.into_iter().map(|e| e.state).collect::<Vec<_>>())));
        log.push(format!("{}", s.store().len(2)));
        log
    });
}

#[test]
fn expired_entries_wait_for_compactions_not_for_accesses() {
    let (_dir, _backend, rocks) = crate::store();
    let mut s = KeyedState::new(Box::new(rocks), None);
    let config =
        ttl(TtlUpdate::OnCreateAndWrite, TtlVisibility::NeverReturnExpired, TtlCleanup::Incremental { entries: 3 });
    let v = open(&mut s, "v", StateKind::Value, Some(config));
    for i in 0..30u32 {
        s.value_set(v, StateKey { group: (i % 4) as u16, key: &i.to_be_bytes() }, b"x", 0).expect("set");
    }
    // The memory store would walk a few keys per access; RocksDB leaves that to its compaction filter.
    for _ in 0..12 {
        s.value_set(v, StateKey { group: 0, key: b"live" }, b"y", 1_000).expect("set");
    }
    assert_eq!(s.store().len(0), 31);
    let expired = StateKey { group: 1, key: &1u32.to_be_bytes() };
    assert_eq!(s.value_get(v, expired, 1_000).expect("get"), None, "hidden on read all the same");
}

#[test]
fn the_store_behind_keyed_state_is_the_rocksdb_one() {
    let (_dir, _backend, rocks) = crate::store();
    let folder = rocks.folder().to_path_buf();
    let mut state = KeyedState::new(Box::new(rocks), None);
    let v = open(&mut state, "v", StateKind::Value, None);
    state.value_set(v, K, b"x", 0).expect("set");
    assert!(folder.join("CURRENT").exists(), "a RocksDB folder");
    let store: &mut dyn KeyedStateStore = state.store();
    assert_eq!(store.len(0), 1);
}
