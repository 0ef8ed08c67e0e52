//! Incremental cleanup: a walk that resumes where it stopped, whatever is written in between.

use eddy_engine::spec::{Millis, TtlCleanup, TtlSpec, TtlUpdate, TtlVisibility};
use eddy_engine::state::{Expiry, KeyedStateStore, StateKey, StateKind};

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

#[test]
fn steps_resume_where_they_stopped_and_wrap_to_zero() {
    let (_dir, _backend, mut store) = crate::store();
    let s = store.register("s");
    for i in 0..100u32 {
        let value: &[u8] = if i % 2 == 0 { b"old" } else { b"new" };
        store.put(s, StateKey { group: 0, key: &key(i) }, b"", value).expect("put");
        store.put(s, StateKey { group: 0, key: &key(i) }, b"ns", value).expect("put");
    }
    let mut visited = 0;
    let mut cursor = 0;
    let mut steps = 0;
    loop {
        cursor = store
            .cleanup_step(s, cursor, 7, &mut |v| {
                visited += 1;
                v == b"old"
            })
            .expect("step");
        steps += 1;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(steps, 15, "100 keys, 7 per step: the 15th step reaches the end");
    assert_eq!(visited, 200, "each entry was looked at once");
    assert_eq!(store.len(s), 100, "only the expired entries are gone");
}

#[test]
fn writes_between_steps_neither_stop_nor_repeat_the_walk() {
    let (_dir, _backend, mut store) = crate::store();
    let s = store.register("s");
    for i in (0..60u32).step_by(2) {
        store.put(s, StateKey { group: 0, key: &key(i) }, b"", b"old").expect("put");
    }
    let mut cursor = store.cleanup_step(s, 0, 5, &mut |v| v == b"old").expect("step");
    let mut steps = 1;
    while cursor != 0 {
        // Remove keys ahead of the walk and add some behind and ahead of it.
        let i = steps * 2 + 1;
        store.put(s, StateKey { group: 0, key: &key(i) }, b"", b"old").expect("put");
        store.remove_key(s, StateKey { group: 0, key: &key(58 - i.min(58)) }).expect("remove");
        cursor = store.cleanup_step(s, cursor, 5, &mut |v| v == b"old").expect("step");
        steps += 1;
        assert!(steps < 100, "the walk reaches the end");
    }
    // A second full pass finds what was added behind the walk.
    cursor = store.cleanup_step(s, 0, 1_000, &mut |v| v == b"old").expect("step");
    assert_eq!(cursor, 0);
    assert_eq!(store.len(s), 0);
}

#[test]
fn a_stale_cursor_starts_over() {
    let (_dir, _backend, mut store) = crate::store();
    let s = store.register("s");
    for i in 0..10u32 {
        store.put(s, StateKey { group: 0, key: &key(i) }, b"", b"x").expect("put");
    }
    let first = store.cleanup_step(s, 0, 3, &mut |_| false).expect("step");
    let second = store.cleanup_step(s, first, 3, &mut |_| false).expect("step");
    assert_ne!(first, second, "each unfinished step returns a new cursor");
    // Passing the first cursor again (stale): the walk starts over and sees key 0 again.
    let mut seen = Vec::new();
    store
        .cleanup_step(s, first, 1, &mut |v| {
            seen.push(v.to_vec());
            false
        })
        .expect("step");
    assert_eq!(seen.len(), 1);
    let mut first_key = Vec::new();
    store
        .cleanup_step(s, 0, 1, &mut |v| {
            first_key.push(v.to_vec());
            false
        })
        .expect("step");
    assert_eq!(seen, first_key);
}

fn stamped(time: i64, payload: &[u8]) -> Vec<u8> {
    [&time.to_le_bytes()[..], payload].concat()
}

fn frame(time: i64, payload: &[u8]) -> Vec<u8> {
    let element = stamped(time, payload);
    [&(element.len() as u32).to_le_bytes()[..], &element].concat()
}

#[test]
fn compactions_drop_expired_entries_of_states_with_a_time_to_live() {
    let (_dir, _backend, mut store) = crate::store();
    let ttl = TtlSpec {
        time_to_live: Millis(60_000),
        update: TtlUpdate::OnCreateAndWrite,
        visibility: TtlVisibility::NeverReturnExpired,
        cleanup: TtlCleanup::default(),
    };
    let (value, list, plain) = (store.register("value"), store.register("list"), store.register("plain"));
    assert!(store.expire_in_background(value, Expiry::new(StateKind::Value, ttl)));
    assert!(store.expire_in_background(list, Expiry::new(StateKind::List, ttl)));
    let default = store.register("default");
    assert!(!store.expire_in_background(default, Expiry::new(StateKind::Value, ttl)), "no filter on that family");
    // Compactions judge by the wall clock: stamps from 1970 have expired, stamps from now have not.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let at = |key: &'static [u8]| StateKey { group: 0, key };
    store.put(value, at(b"old"), b"", &stamped(1, b"x")).expect("put");
    store.put(value, at(b"new"), b"", &stamped(now, b"x")).expect("put");
    store.put(list, at(b"half"), b"", &[frame(1, b"a"), frame(now, b"b")].concat()).expect("put");
    store.put(list, at(b"gone"), b"", &[frame(1, b"a"), frame(2, b"b")].concat()).expect("put");
    store.put(plain, at(b"old"), b"", &stamped(1, b"x")).expect("put");
    store.compact().expect("compact");

    let mut found = |state, key| store.contains(state, at(key), b"").expect("contains");
    assert!(!found(value, b"old"), "expired: removed");
    assert!(found(value, b"new"));
    assert!(found(list, b"half"), "a list goes once every element has expired");
    assert!(!found(list, b"gone"));
    assert!(found(plain, b"old"), "a state without a time-to-live keeps everything");
}
