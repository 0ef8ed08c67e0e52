//! Eddy's RocksDB state backend: keyed state on local disk, for state larger than memory.
//!
//! [`RocksDbBackend`] implements the engine's [`StateBackend`](eddy_engine::state::StateBackend) and
//! [`RocksDbStateStore`] its [`KeyedStateStore`](eddy_engine::state::KeyedStateStore), with the same observable
//! behaviour as the in-memory store (a differential property test holds them to it).
//!
//! # Layout
//!
//! - **One RocksDB instance per store**, that is per operator and subtask, in the folder `<root>/<uid>-<subtask>/`
//!   under the backend's root (bytes of the uid other than `[A-Za-z0-9_-]` written as `%XX`). The folder is wiped
//!   when the store is opened and removed when it is dropped: a store starts empty, or from a checkpoint's files
//!   ([`RocksDbBackend::restore`]), or loads a savepoint's entries through `restore`. Beside it,
//!   `<root>/<uid>-<subtask>.checkpoints/<id>/` holds the local copies of its checkpoints (module `files`). A
//!   backend refuses to open a second store for an operator and subtask while the first is open (it would wipe the
//!   first one's files).
//! - **One column family per state**, named after the state (a state called `default` uses RocksDB's default column
//!   family).
//! - **Keys** are the canonical composite key
//!
//!   ```text
//!   group: u16 big-endian ‖ len(key): u32 big-endian ‖ key ‖ namespace
//!   ```
//!
//!   The key group first keeps a group's keys together (rescaling moves whole groups). The key's length makes
//!   `group ‖ key ‖ namespace` unambiguous (key `a` with namespace `b` differs from key `ab` with the empty
//!   namespace) and keeps one key's namespaces contiguous and in namespace byte order, which is what `entries`,
//!   `scan` and `remove_key` read. Within a group, keys sort by length before bytes; snapshots re-sort to the
//!   canonical order (state name, group, key, namespace), so they are identical to the in-memory store's.
//! - **Values** are the stored bytes as the engine wrote them. `append` is a RocksDB merge whose operator
//!   concatenates (an absent entry counts as empty).
//!
//! # Writes, memory and durability
//!
//! Writes skip the write-ahead log and are not synced: state is made durable by checkpoints, never by RocksDB's
//! log, and a store that goes away is rebuilt from a checkpoint. The stores of one backend share one block cache
//! and one write-buffer manager whose memtables are charged to that cache, so their memory stays within
//! [`RocksDbConfig`]'s budget however many operators, subtasks and states there are. Data is compressed with LZ4.
//! Each store also keeps every entry of its recently scanned keys in memory (module `cache`, up to 8 MiB), written
//! through: RocksDB always holds everything.
//!
//! # Time-to-live cleanup
//!
//! Each state's column family has a compaction filter. Once the state has a time-to-live (`expire_in_background`),
//! the filter drops entries that have expired by the wall clock as RocksDB compacts them (a list once every
//! element has expired), so expired state leaves the disk without any walk over the keys, and the engine skips its
//! per-access cleanup steps. Reads hide expired entries either way. A state named `default` lives in RocksDB's
//! default column family, which has no filter: it keeps the per-access `cleanup_step`, a walk in byte order that
//! resumes where the last step stopped (the store keeps that position; the cursor it returns is only a generation
//! number, 0 starts over). [`RocksDbStateStore::compact`] compacts everything now.
//!
//! # Checkpoints
//!
//! A checkpoint takes a RocksDB checkpoint of the store (hard links to its SST files) and hands the engine the
//! list of files, with the SST files the newest completed checkpoint uploaded marked as already in storage: only
//! new files are uploaded. The newest completed checkpoint's local copy is kept for a restore on the same machine;
//! otherwise a restore downloads the files, or, at another parallelism, copies the entries of the store's key
//! groups out of every old store's files. Savepoints take entries (`snapshot`), never files.
//!
//! # Errors
//!
//! Every RocksDB failure (I/O, a column family that cannot be created, corruption) comes back as a
//! [`StateError`](eddy_engine::state::StateError) naming the store's folder; nothing panics.

mod backend;
mod cache;
mod files;
mod keys;
mod store;

pub use backend::{RocksDbBackend, RocksDbConfig};
pub use files::RestoredFrom;
pub use store::RocksDbStateStore;
