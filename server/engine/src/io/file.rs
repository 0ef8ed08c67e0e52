//! JSON-lines files: one record per line in, one value per line out, confined to a tenant's file folders.
//!
//! A job never names a path on the server: it names a path *relative* to one of its tenant's folders (its own, or
//! a root the admin gave the tenant). Files are opened through a capability handle on that folder (`cap-std`),
//! which refuses absolute paths, `..` and symbolic links that lead out of it, checked as the path is resolved, so
//! a tenant cannot reach the server's data folder, another tenant's files or anything else on the machine.

use super::{Source, SourcePoll};
use crate::error::TaskError;
use crate::operator::{OpContext, Operator};
use crate::spec::FileLocation;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use eddy_codec::Batch;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The folders a tenant's jobs may read and write files in.
#[derive(Debug, Clone, Default)]
pub struct FileRoots {
    /// The tenant's own folder, used when a location names no root; none: file I/O is refused.
    own: Option<PathBuf>,
    /// Further folders by name, given by the server's admin.
    named: BTreeMap<String, PathBuf>,
}

impl FileRoots {
    /// No folder at all: every file source or sink is refused.
    pub fn none() -> FileRoots {
        FileRoots::default()
    }

    /// Files live in `own` (created when first used).
    pub fn new(own: impl Into<PathBuf>) -> FileRoots {
        FileRoots { own: Some(own.into()), named: BTreeMap::new() }
    }

    /// Adds a named root.
    pub fn with_root(mut self, name: &str, folder: impl Into<PathBuf>) -> FileRoots {
        self.named.insert(name.to_string(), folder.into());
        self
    }

    /// The folder a location is resolved in, opened as a capability.
    fn dir(&self, location: &FileLocation) -> Result<(Dir, String), TaskError> {
        let (folder, label) = match &location.root {
            None => {
                let own = self.own.as_ref().ok_or_else(|| {
                    TaskError::user("file sources and sinks are not available on this server (no file folder)")
                })?;
                (own, "the tenant's file folder".to_string())
            }
            Some(name) => {
                let folder = self.named.get(name).ok_or_else(|| {
                    let known: Vec<&str> = self.named.keys().map(String::as_str).collect();
                    TaskError::user(format!(
                        "no file root `{name}` for this tenant (roots: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ))
                })?;
                (folder, format!("file root `{name}`"))
            }
        };
        if location.root.is_none() {
            std::fs::create_dir_all(folder).map_err(|e| TaskError::external(format!("cannot create {label}: {e}")))?;
        }
        let dir = Dir::open_ambient_dir(folder, ambient_authority())
            .map_err(|e| TaskError::external(format!("cannot open {label}: {e}")))?;
        Ok((dir, label))
    }

    /// Opens a file for reading.
    pub fn open(&self, location: &FileLocation) -> Result<File, TaskError> {
        let (dir, label) = self.dir(location)?;
        let path = location.path.as_str();
        let file =
            dir.open(path).map_err(|e| TaskError::user(format!("cannot open input file `{path}` in {label}: {e}")))?;
        Ok(file.into_std())
    }

    /// Creates (or truncates) a file for writing, with its parent folders.
    pub fn create(&self, location: &FileLocation) -> Result<File, TaskError> {
        let (dir, label) = self.dir(location)?;
        let path = location.path.as_str();
        let fail = |e: std::io::Error| TaskError::user(format!("cannot create output file `{path}` in {label}: {e}"));
        if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
            dir.create_dir_all(parent).map_err(fail)?;
        }
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        Ok(dir.open_with(path, &options).map_err(fail)?.into_std())
    }
}

/// Reads a file line by line; each non-empty line is a record's value.
pub struct FileSource {
    path: String,
    reader: BufReader<File>,
    line: Vec<u8>,
}

impl FileSource {
    /// Opens `location` in `roots`.
    pub fn open(roots: &FileRoots, location: &FileLocation) -> Result<FileSource, TaskError> {
        let file = roots.open(location)?;
        Ok(FileSource {
            path: location.path.to_string(),
            reader: BufReader::with_capacity(1 << 16, file),
            line: Vec::new(),
        })
    }
}

impl Source for FileSource {
    fn uses_arrival_time(&self) -> bool {
        true
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<SourcePoll, TaskError> {
        let before = batch.len();
        while batch.len() - before < max {
            self.line.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| TaskError::external(format!("cannot read {}: {e}", self.path)))?;
            if read == 0 {
                break;
            }
            let text = self.line.trim_ascii();
            if !text.is_empty() {
                batch.push(0, None, text);
            }
        }
        Ok(if batch.len() == before { SourcePoll::Finished } else { SourcePoll::Records { split: 0 } })
    }
}

/// Writes each record's value as a line.
pub struct FileSink {
    path: String,
    writer: BufWriter<File>,
}

impl FileSink {
    /// Creates (or truncates) `location` in `roots`, with its parent folders.
    pub fn create(roots: &FileRoots, location: &FileLocation) -> Result<FileSink, TaskError> {
        let file = roots.create(location)?;
        Ok(FileSink { path: location.path.to_string(), writer: BufWriter::with_capacity(1 << 16, file) })
    }
}

impl Operator for FileSink {
    fn process(&mut self, _: usize, batch: Batch, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        let fail = |e: std::io::Error| TaskError::external(format!("cannot write {}: {e}", self.path));
        for record in batch.iter() {
            self.writer.write_all(record.value).map_err(fail)?;
            self.writer.write_all(b"\n").map_err(fail)?;
        }
        self.writer.flush().map_err(fail)
    }

    fn finish(&mut self, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.writer.flush().map_err(|e| TaskError::external(format!("cannot write {}: {e}", self.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RelativePath;

    fn at(path: &str) -> FileLocation {
        FileLocation { path: RelativePath(path.to_string()), root: None }
    }

    #[test]
    fn files_stay_inside_the_tenants_folder() {
        let base = tempfile::tempdir().expect("tempdir");
        let own = base.path().join("tenant");
        let outside = base.path().join("secret.txt");
        std::fs::write(&outside, "token hashes").expect("write");
        let roots = FileRoots::new(&own);
        roots.create(&at("out/a.jsonl")).expect("a file inside may be created");
        assert!(own.join("out/a.jsonl").exists());
        // Paths that the spec parser refuses are refused again here, whatever built them.
        for escape in ["../secret.txt", "/etc/passwd", "out/../../secret.txt"] {
            assert!(roots.open(&at(escape)).is_err(), "{escape} must not be read");
            assert!(roots.create(&at(escape)).is_err(), "{escape} must not be written");
        }
        // A symbolic link inside the folder that leads out of it is refused when resolved.
        std::os::unix::fs::symlink(&outside, own.join("link")).expect("symlink");
        std::os::unix::fs::symlink(base.path(), own.join("up")).expect("symlink");
        assert!(roots.open(&at("link")).is_err(), "a link out of the folder must not be followed");
        assert!(roots.create(&at("link")).is_err(), "a link out of the folder must not be written through");
        assert!(roots.create(&at("up/planted.json")).is_err(), "a folder link out must not be written through");
        assert_eq!(std::fs::read_to_string(&outside).expect("read"), "token hashes", "untouched");
        assert!(!base.path().join("planted.json").exists());
    }

    #[test]
    fn named_roots_must_be_given() {
        let base = tempfile::tempdir().expect("tempdir");
        std::fs::write(base.path().join("in.jsonl"), "{}\n").expect("write");
        let roots = FileRoots::new(base.path().join("own")).with_root("shared", base.path());
        let shared = FileLocation { path: RelativePath("in.jsonl".into()), root: Some("shared".into()) };
        assert!(roots.open(&shared).is_ok());
        let unknown = FileLocation { path: RelativePath("in.jsonl".into()), root: Some("etc".into()) };
        let error = roots.open(&unknown).expect_err("unknown root").message;
        assert!(error.contains("no file root `etc`") && error.contains("shared"), "{error}");
        assert!(FileRoots::none().open(&at("in.jsonl")).is_err(), "no folder, no files");
    }
}
