//! The on-disk layout the crate documents: a folder per operator and subtask, a column family per state, composite
//! keys, concatenated appends.

use eddy_engine::state::{KeyedStateStore, StateKey};

#[test]
fn folders_column_families_and_keys_are_as_documented() {
    let (_dir, backend) = crate::backend();
    let mut store = backend.open_store("window/1", 2, crate::ALL_GROUPS).expect("open");
    assert_eq!(store.folder(), backend.root().join("window%2F1-2"));
    let contents = store.register("window-contents");
    let value = store.register("default");
    store.append(contents, StateKey { group: 0x0102, key: b"ab" }, b"ns", b"x").expect("append");
    store.append(contents, StateKey { group: 0x0102, key: b"ab" }, b"ns", b"y").expect("append");
    store.put(value, StateKey { group: 0, key: b"" }, b"", b"v").expect("put");
    store.flush().expect("flush");

    // The files are a RocksDB database another reader can open (read-only: no lock), with what was flushed.
    let folder = store.folder().to_path_buf();
    let mut families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &folder).expect("list column families");
    families.sort();
    assert_eq!(families, ["default", "window-contents"]);
    let mut options = rocksdb::Options::default();
    options.set_merge_operator_associative("eddy-concat", |_, existing, operands| {
        let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
        operands.iter().for_each(|o| out.extend_from_slice(o));
        Some(out)
    });
    // The appends were flushed as merge operands: reading them takes the same operator.
    let families =
        ["default", "window-contents"].map(|name| rocksdb::ColumnFamilyDescriptor::new(name, options.clone()));
    let reader =
        rocksdb::DB::open_cf_descriptors_read_only(&options, &folder, families, false).expect("open read-only");
    let cf = reader.cf_handle("window-contents").expect("column family");
    let entries: Vec<(Vec<u8>, Vec<u8>)> = reader
        .iterator_cf(cf, rocksdb::IteratorMode::Start)
        .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("read"))
        .collect();
    assert_eq!(entries, [(b"\x01\x02\x00\x00\x00\x02abns".to_vec(), b"xy".to_vec())]);
    let default = reader.get(b"\x00\x00\x00\x00\x00\x00").expect("read");
    assert_eq!(default.as_deref(), Some(&b"v"[..]), "state `default` lives in the default column family");

    // What RocksDB was told: no flush at shutdown, LZ4, the concatenating merge operator.
    let options_file = std::fs::read_dir(&folder)
        .expect("list the folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("OPTIONS-")))
        .max()
        .expect("an OPTIONS file");
    let written = std::fs::read_to_string(options_file).expect("read OPTIONS");
    for setting in ["avoid_flush_during_shutdown=true", "compression=kLZ4Compression", "merge_operator=eddy-concat"] {
        assert!(written.contains(setting), "{setting} in:\n{written}");
    }
}
