//! Where checkpoints are kept: a flat namespace of objects named by `/`-separated paths that Eddy chooses (never
//! a user), as in an S3 bucket. A local folder implements it here; S3 lives with the server.

use std::path::{Path, PathBuf};

/// A failure of checkpoint storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint storage: {0}")]
pub struct StoreError(pub String);

/// Object storage for checkpoints.
pub trait CheckpointStore: Send + Sync {
    /// Stores `bytes` at `path`, replacing what was there; durable once it returns.
    fn put(&self, path: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// The bytes at `path`, if any.
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every path that starts with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Removes every path that starts with `prefix`.
    fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError>;
    /// Removes each of `paths` (those that exist).
    fn delete(&self, paths: &[String]) -> Result<(), StoreError>;
    /// Bytes of every object whose path starts with `prefix`.
    fn bytes_under(&self, prefix: &str) -> Result<u64, StoreError>;
    /// Where it keeps things, for messages.
    fn describe(&self) -> String;
}

/// Checkpoints in a local folder: one file per object.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store under `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    fn file(&self, path: &str) -> Result<PathBuf, StoreError> {
        let valid = !path.is_empty()
            && path.split('/').all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
        if !valid {
            return Err(StoreError(format!("invalid object path `{path}`")));
        }
        Ok(self.root.join(path))
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError(format!("cannot {what} {}: {e}", path.display()))
}

impl CheckpointStore for LocalStore {
    fn put(&self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        use std::io::Write;
        let file = self.file(path)?;
        let parent = file.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        // Written aside and renamed: a crash leaves the old object or the new one, never half of one.
        let temp = parent.join(format!(".{}.tmp", crate::io::unique_name()));
        let mut out = std::fs::File::create(&temp).map_err(|e| io_error("create", &temp, e))?;
        out.write_all(bytes).map_err(|e| io_error("write", &temp, e))?;
        out.sync_all().map_err(|e| io_error("sync", &temp, e))?;
        std::fs::rename(&temp, &file).map_err(|e| io_error("rename", &file, e))?;
        if let Ok(dir) = std::fs::File::open(parent) {
            dir.sync_all().map_err(|e| io_error("sync", parent, e))?;
        }
        Ok(())
    }

    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let file = self.file(path)?;
        match std::fs::read(&file) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &file, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        let mut folders = vec![(self.root.clone(), String::new())];
        while let Some((folder, name)) = folders.pop() {
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("list", &folder, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error("list", &folder, e))?;
                let Some(file_name) = entry.file_name().to_str().map(str::to_string) else { continue };
                if file_name.starts_with('.') {
                    continue; // a put in progress
                }
                let path = if name.is_empty() { file_name } else { format!("{name}/{file_name}") };
                // Only descend where the prefix may still match.
                let relevant = path.starts_with(prefix) || prefix.starts_with(&format!("{path}/"));
                if !relevant {
                    continue;
                }
                if entry.file_type().map_err(|e| io_error("list", &folder, e))?.is_dir() {
                    folders.push((entry.path(), path));
                } else if path.starts_with(prefix) {
                    found.push(path);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn bytes_under(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut total = 0;
        for path in self.list(prefix)? {
            let file = self.file(&path)?;
            match std::fs::metadata(&file) {
                Ok(meta) => total += meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("measure", &file, e)),
            }
        }
        Ok(total)
    }

    fn delete(&self, paths: &[String]) -> Result<(), StoreError> {
        for path in paths {
            let file = self.file(path)?;
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("delete", &file, e)),
            }
        }
        Ok(())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        self.delete(&self.list(prefix)?)?;
        // Folders the prefix names whole are removed too, once empty.
        let folder = prefix.trim_end_matches('/');
        if !folder.is_empty()
            && let Ok(dir) = self.file(folder)
        {
            let _ = remove_empty_folders(&dir);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }
}

fn remove_empty_folders(dir: &Path) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_folders(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_lists_and_deletes_by_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("cp"));
        assert_eq!(store.list("").expect("list"), Vec::<String>::new(), "nothing yet, and no folder");
        store.put("job/chk-1/a-0", b"one").expect("put");
        store.put("job/chk-1/_metadata", b"{}").expect("put");
        store.put("job/chk-2/a-0", b"two").expect("put");
        store.put("job2/chk-1/a-0", b"other").expect("put");
        assert_eq!(store.get("job/chk-2/a-0").expect("get").as_deref(), Some(&b"two"[..]));
        assert_eq!(store.get("job/chk-3/a-0").expect("get"), None);
        assert_eq!(store.list("job/").expect("list"), ["job/chk-1/_metadata", "job/chk-1/a-0", "job/chk-2/a-0"]);
        store.delete_prefix("job/chk-1/").expect("delete");
        assert_eq!(store.list("job/").expect("list"), ["job/chk-2/a-0"]);
        store.put("job/chk-2/a-00", b"longer name").expect("put");
        store.delete(&["job/chk-2/a-0".into(), "job/chk-9/gone".into()]).expect("delete");
        assert_eq!(store.list("job/").expect("list"), ["job/chk-2/a-00"], "exactly the paths named are deleted");
        assert!(!dir.path().join("cp/job/chk-1").exists(), "the emptied folder is gone");
        for bad in ["../x", "/x", "a//b", "a/./b", ""] {
            assert!(store.put(bad, b"x").is_err(), "{bad} must be refused");
        }
    }
}
