//! Cost per operation of the RocksDB store against the in-memory store, on `N` keys (default 1,000,000).
//!
//! ```text
//! cargo run --release -p eddy-rocksdb --example bench -- [N]
//! ```
//!
//! Keys are 8 bytes in a scattered order (as hashed record keys arrive), values 8 bytes, one namespace per key
//! unless said otherwise. The last part compares the two ways `remove_key` could delete a key's entries.

use eddy_engine::state::{KeyedStateStore, MemoryStateStore, StateKey};
use eddy_rocksdb::{RocksDbBackend, RocksDbConfig};
use std::time::Instant;

/// The `i`-th key: a bijection of `i` that scatters consecutive indexes.
fn key(i: u64) -> [u8; 8] {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29).to_be_bytes()
}

fn at(key: &[u8; 8]) -> StateKey<'_> {
    StateKey { group: u16::from_be_bytes([key[0], key[1]]) & 0x7f, key }
}

/// Runs `op` for each of `n` indexes; prints and returns nanoseconds per operation.
fn time(label: &str, n: u64, mut op: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        op(i);
    }
    let per_op = start.elapsed().as_nanos() as f64 / n as f64;
    println!("  {label:<34} {per_op:>8.0} ns/op");
    per_op
}

fn workload(name: &str, store: &mut dyn KeyedStateStore, n: u64) {
    println!("{name} ({n} keys)");
    let s = store.register("s");
    let w = store.register("w");
    let mut out = Vec::new();
    let mut sink = 0usize;
    time("put (new keys)", n, |i| store.put(s, at(&key(i)), b"", &i.to_le_bytes()).expect("put"));
    time("put (overwrite)", n, |i| store.put(s, at(&key(i)), b"", &(i + 1).to_le_bytes()).expect("put"));
    time("get (hit)", n, |i| sink += usize::from(store.get_into(s, at(&key(i)), b"", &mut out).expect("get")));
    time("get (miss)", n, |i| sink += usize::from(store.get_into(s, at(&key(i + n)), b"", &mut out).expect("get")));
    time("append (new entries)", n, |i| store.append(w, at(&key(i)), b"window-1", &i.to_le_bytes()).expect("append"));
    time("append (existing entries)", n, |i| {
        store.append(w, at(&key(i)), b"window-1", &i.to_le_bytes()).expect("append")
    });
    time("get (appended twice)", n, |i| {
        sink += usize::from(store.get_into(w, at(&key(i)), b"window-1", &mut out).expect("get"))
    });
    time("scan (a key's windows)", n / 10, |i| {
        store.scan(w, at(&key(i)), b"window-0", b"window-9", &mut |_, v| sink += v.len()).expect("scan")
    });
    time("remove_key", n / 10, |i| store.remove_key(w, at(&key(i))).expect("remove key"));
    let start = Instant::now();
    let entries = store.snapshot(&mut |_, _| true).expect("snapshot").len();
    println!(
        "  snapshot of {entries} entries           {:>8.0} ns/entry",
        start.elapsed().as_nanos() as f64 / entries as f64
    );
    std::hint::black_box(sink);
}

/// Put, read and clear keys in turn, as a window operator does, deleting with a range tombstone or entry by entry.
fn remove_strategies(dir: &std::path::Path, n: u64) -> Result<(), rocksdb::Error> {
    println!("remove_key strategies over raw RocksDB ({n} cycles of put, get, remove; WAL off)");
    for range in [true, false] {
        let path = dir.join(format!("{}-{n}", if range { "range" } else { "iterate" }));
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = rocksdb::DB::open(&opts, &path)?;
        let mut write = rocksdb::WriteOptions::default();
        write.disable_wal(true);
        let label = if range { "delete_range" } else { "iterate + delete" };
        time(label, n, |i| {
            let k = key(i);
            db.put_opt(k, b"v", &write).expect("put");
            let older = key(i / 2);
            std::hint::black_box(db.get(older).expect("get"));
            let mut upper = k.to_vec();
            upper.push(0);
            if range {
                let mut batch = rocksdb::WriteBatch::default();
                batch.delete_range(k.as_slice(), upper.as_slice());
                db.write_opt(batch, &write).expect("delete range");
            } else {
                let mut read = rocksdb::ReadOptions::default();
                read.set_iterate_lower_bound(k.to_vec());
                read.set_iterate_upper_bound(upper);
                let mut iter = db.raw_iterator_opt(read);
                iter.seek(k);
                let mut batch = rocksdb::WriteBatch::default();
                while let Some(found) = iter.key() {
                    batch.delete(found);
                    iter.next();
                }
                db.write_opt(batch, &write).expect("delete");
            }
        });
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    workload("memory", &mut MemoryStateStore::default(), n);
    let dir = tempfile::tempdir()?;
    let backend = RocksDbBackend::new(dir.path().join("state"), RocksDbConfig::default());
    let mut store = backend.open_store("bench", 0, 0..=127)?;
    workload("rocksdb (64 MiB cache + 64 MiB write buffers)", &mut store, n);
    drop(store);
    // Range tombstones in a memtable are re-fragmented on reads after each new one: the cost per cycle grows with
    // the number of cycles, so two sizes show the trend (a million would take hours).
    for cycles in [n / 200, n / 50] {
        remove_strategies(dir.path(), cycles)?;
    }
    Ok(())
}
