//! Incremental checkpoints: a store's files at a checkpoint, which of them storage holds already, the local copy
//! kept for recovery, and restoring a store from files.
//!
//! A checkpoint of a store is a RocksDB checkpoint: a folder `<store folder>.checkpoints/<id>/` of hard links to
//! the database's SST files (immutable, so a link is a copy) plus copies of its small MANIFEST, CURRENT and OPTIONS
//! files. The checkpoint records every file with an object name under `shared/`; an SST file that the newest
//! completed checkpoint already uploaded keeps its object and is not uploaded again. The newest completed local
//! checkpoint stays on disk, so that a restart on the same machine restores from it without downloading anything.

use eddy_engine::checkpoint::CheckpointId;
use eddy_engine::keys::KeyGroup;
use eddy_engine::state::{FetchObject, StateError, StateFile, StateFiles};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The format of a RocksDB store's checkpoint files.
pub(crate) const FORMAT: &str = "rocksdb/1";

/// An SST file storage holds: its size and object.
type Uploaded = HashMap<String, (u64, String)>;

/// Where a restored store's state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoredFrom {
    /// The store's own local copy of the checkpoint: nothing was downloaded.
    LocalDisk,
    /// Checkpoint storage: every file was downloaded.
    Storage,
    /// Several stores' files (the parallelism changed): their entries of this store's key groups were copied.
    Rescaled,
}

/// A store's checkpoints on local disk, and which of its files storage holds.
pub(crate) struct LocalCheckpoints {
    /// `<store folder>.checkpoints`.
    folder: PathBuf,
    /// The store folder's name, which names its objects in storage.
    store: String,
    /// The SST files of the newest completed checkpoint, which later ones refer to instead of uploading them.
    uploaded: Uploaded,
    /// The SST files of checkpoints taken and not yet completed or given up.
    pending: BTreeMap<CheckpointId, Uploaded>,
    /// The newest completed checkpoint whose local copy is kept.
    kept: Option<CheckpointId>,
}

/// The folder of a store's local checkpoints.
pub(crate) fn checkpoints_folder(store_folder: &Path) -> PathBuf {
    let mut name = store_folder.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoints");
    store_folder.with_file_name(name)
}

fn io_failed(what: &str, path: &Path, e: std::io::Error) -> StateError {
    StateError(format!("cannot {what} {}: {e}", path.display()))
}

/// Removes a folder and what it holds; absent is fine.
pub(crate) fn remove_folder(path: &Path) -> Result<(), StateError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_failed("remove", path, e)),
    }
}

/// An object name no other file of any store gets: the process, the time and a counter.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{n}", std::process::id())
}

/// A file name of a RocksDB folder, as recorded in a checkpoint: a plain name, nothing that leaves the folder.
fn plain_name(name: &str) -> Result<&str, StateError> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
    plain.then_some(name).ok_or_else(|| StateError(format!("the checkpoint names a state file `{name}`")))
}

impl LocalCheckpoints {
    /// The local checkpoints of the store in `store_folder`; `restored` are the files it was restored from, if
    /// restored from one checkpoint as is (storage holds them, and their local copy is kept if it was there).
    pub(crate) fn new(store_folder: &Path, restored: Option<&StateFiles>) -> LocalCheckpoints {
        let folder = checkpoints_folder(store_folder);
        let store = store_folder.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let mut checkpoints =
            LocalCheckpoints { folder, store, uploaded: HashMap::new(), pending: BTreeMap::new(), kept: None };
        if let Some(files) = restored {
            checkpoints.uploaded = files
                .files
                .iter()
                .filter(|f| f.name.ends_with(".sst"))
                .map(|f| (f.name.clone(), (f.size, f.object.clone())))
                .collect();
            checkpoints.kept = Some(files.checkpoint);
        }
        checkpoints
    }

    /// The folder of checkpoint `id`'s local copy.
    fn copy_of(&self, id: CheckpointId) -> PathBuf {
        self.folder.join(id.to_string())
    }

    /// Takes checkpoint `id` of `db`: links its files into a local folder and says which to upload.
    pub(crate) fn take(
        &mut self,
        db: &rocksdb::DBWithThreadMode<rocksdb::SingleThreaded>,
        id: CheckpointId,
        key_groups: (KeyGroup, KeyGroup),
    ) -> Result<StateFiles, StateError> {
        let dir = self.copy_of(id);
        remove_folder(&dir)?;
        std::fs::create_dir_all(&self.folder).map_err(|e| io_failed("create", &self.folder, e))?;
        // RocksDB flushes the memtables first (writes skip its log), then links the files.
        rocksdb::checkpoint::Checkpoint::new(db)
            .and_then(|checkpoint| checkpoint.create_checkpoint(&dir))
            .map_err(|e| StateError(format!("cannot take a RocksDB checkpoint into {}: {e}", dir.display())))?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io_failed("list", &dir, e))? {
            let entry = entry.map_err(|e| io_failed("list", &dir, e))?;
            let size = entry.metadata().map_err(|e| io_failed("read", &entry.path(), e))?.len();
            names.push((entry.file_name().to_string_lossy().into_owned(), size));
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        let mut ssts = Uploaded::new();
        for (name, size) in names {
            let is_sst = name.ends_with(".sst");
            let (object, upload) = match self.uploaded.get(&name) {
                Some((uploaded_size, object)) if is_sst && *uploaded_size == size => (object.clone(), false),
                _ => (format!("shared/{}/{}-{name}", self.store, unique()), true),
            };
            if is_sst {
                ssts.insert(name.clone(), (size, object.clone()));
            }
            files.push(StateFile { name, size, object, upload });
        }
        self.pending.insert(id, ssts);
        Ok(StateFiles { format: FORMAT.into(), checkpoint: id, key_groups, files, local: Some(dir) })
    }

    /// Checkpoint `id` completed: its files are what later checkpoints refer to, and its local copy replaces the
    /// older ones.
    pub(crate) fn complete(&mut self, id: CheckpointId) {
        let Some(ssts) = self.pending.remove(&id) else { return }; // a savepoint, or not this store's
        self.uploaded = ssts;
        // Older checkpoints still pending were given up when this one completed.
        self.pending = self.pending.split_off(&id);
        self.kept = Some(id);
        self.remove_copies_except(|other| other == id || self.pending.contains_key(&other));
    }

    /// Checkpoint `id` was given up.
    pub(crate) fn abort(&mut self, id: CheckpointId) {
        if self.pending.remove(&id).is_some() {
            let _ = remove_folder(&self.copy_of(id));
        }
    }

    /// Removes the local copies for which `keep` is false. Best effort: a copy left behind is removed when the
    /// store is next opened empty.
    fn remove_copies_except(&self, keep: impl Fn(CheckpointId) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.folder) else { return };
        for entry in entries.flatten() {
            let id = entry.file_name().to_str().and_then(|n| n.parse::<CheckpointId>().ok());
            if id.is_none_or(|id| !keep(id)) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl LocalCheckpoints {
    /// Removes the copies of checkpoints other than `id` (after a restore from it).
    pub(crate) fn keep_only(&self, id: CheckpointId) {
        self.remove_copies_except(|other| other == id);
    }
}

impl Drop for LocalCheckpoints {
    /// Keeps the newest completed checkpoint's copy, for a restart on this machine, and those of newer checkpoints
    /// still in progress, whose files the checkpoint may be uploading yet (the next open of the store removes
    /// them).
    fn drop(&mut self) {
        let kept = self.kept;
        self.remove_copies_except(|id| kept.is_none_or(|kept| id >= kept));
        let _ = std::fs::remove_dir(&self.folder); // only if empty
    }
}

/// Whether `dir` holds every file of `files` at its recorded size: a local copy a restore may use.
pub(crate) fn local_copy_matches(dir: &Path, files: &StateFiles) -> bool {
    files.files.iter().all(|file| {
        plain_name(&file.name).is_ok()
            && std::fs::metadata(dir.join(&file.name)).is_ok_and(|m| m.is_file() && m.len() == file.size)
    })
}

/// Puts the files of `files` into the empty folder `target`: linked from the local copy in `local` when it
/// matches, downloaded otherwise. Returns whether the local copy was used.
pub(crate) fn materialize(
    files: &StateFiles,
    local: &Path,
    target: &Path,
    fetch: FetchObject<'_>,
) -> Result<bool, StateError> {
    if files.format != FORMAT {
        return Err(StateError(format!(
            "the checkpoint holds state files of format `{}`; the RocksDB backend reads `{FORMAT}`",
            files.format
        )));
    }
    std::fs::create_dir_all(target).map_err(|e| io_failed("create", target, e))?;
    let from_local = local_copy_matches(local, files);
    for file in &files.files {
        let name = plain_name(&file.name)?;
        let to = target.join(name);
        if from_local {
            let from = local.join(name);
            // SST files never change: a link will do. The others RocksDB may rewrite, so they are copied.
            let linked = name.ends_with(".sst") && std::fs::hard_link(&from, &to).is_ok();
            if !linked {
                std::fs::copy(&from, &to).map_err(|e| io_failed("copy", &from, e))?;
            }
        } else {
            let bytes = fetch(&file.object)?;
            if bytes.len() as u64 != file.size {
                return Err(StateError(format!(
                    "state file {} has {} bytes in storage; the checkpoint recorded {}",
                    file.object,
                    bytes.len(),
                    file.size
                )));
            }
            std::fs::write(&to, &bytes).map_err(|e| io_failed("write", &to, e))?;
        }
    }
    Ok(from_local)
}
