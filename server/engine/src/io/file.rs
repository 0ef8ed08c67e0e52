//! JSON-lines files: one record per line in, one value per line out, confined to a tenant's file folders.
//!
//! A job never names a path on the server: it names a path *relative* to one of its tenant's folders (its own, or
//! a root the admin gave the tenant). Files are opened through a capability handle on that folder (`cap-std`),
//! which refuses absolute paths, `..` and symbolic links that lead out of it, checked as the path is resolved, so
//! a tenant cannot reach the server's data folder, another tenant's files or anything else on the machine.

use super::{PreCommits, Source, SourcePoll};
use crate::checkpoint::{CheckpointId, ChunkReader, ChunkWriter, OperatorSnapshot, SplitPosition};
use crate::error::TaskError;
use crate::operator::{OpContext, Operator};
use crate::spec::FileLocation;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use eddy_codec::Batch;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::PathBuf;

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

    /// Opens a folder for writing, creating it with its parents.
    pub fn create_folder(&self, location: &FileLocation) -> Result<Dir, TaskError> {
        let (dir, label) = self.dir(location)?;
        let path = location.path.as_str();
        let fail = |e: std::io::Error| TaskError::user(format!("cannot create output folder `{path}` in {label}: {e}"));
        dir.create_dir_all(path).map_err(fail)?;
        dir.open_dir(path).map_err(fail)
    }
}

/// Reads a file line by line; each non-empty line is a record's value.
pub struct FileSource {
    path: String,
    reader: BufReader<File>,
    line: Vec<u8>,
    /// Bytes read so far: the position a checkpoint records.
    offset: u64,
}

impl FileSource {
    /// Opens `location` in `roots`.
    pub fn open(roots: &FileRoots, location: &FileLocation) -> Result<FileSource, TaskError> {
        let file = roots.open(location)?;
        Ok(FileSource {
            path: location.path.to_string(),
            reader: BufReader::with_capacity(1 << 16, file),
            line: Vec::new(),
            offset: 0,
        })
    }

    fn split(&self) -> String {
        format!("file:{}", self.path)
    }
}

impl Source for FileSource {
    fn uses_arrival_time(&self) -> bool {
        true
    }

    fn position(&self) -> Vec<SplitPosition> {
        vec![SplitPosition { split: self.split(), offset: self.offset }]
    }

    fn restore(&mut self, positions: &[SplitPosition]) -> Result<(), TaskError> {
        let split = self.split();
        let Some(position) = positions.iter().find(|p| p.split == split) else { return Ok(()) };
        self.reader
            .seek(std::io::SeekFrom::Start(position.offset))
            .map_err(|e| TaskError::external(format!("cannot seek in {}: {e}", self.path)))?;
        self.offset = position.offset;
        Ok(())
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
            self.offset += read as u64;
            let text = self.line.trim_ascii();
            if !text.is_empty() {
                batch.push(0, None, text);
            }
        }
        Ok(if batch.len() == before { SourcePoll::Finished } else { SourcePoll::Records { split: 0 } })
    }
}

/// Writes each record's value as a line, into part files in an output folder, as Flink's `FileSink` does.
///
/// Without checkpoints, a subtask writes `part-<subtask>-<n>.jsonl` directly. With checkpoints, it writes a hidden
/// `.part-<subtask>-<n>.jsonl.inprogress`, closes it at each checkpoint's barrier, and renames it to its visible
/// name when that checkpoint completes: a reader of the folder sees only output of completed checkpoints, each
/// record once, whatever crashes and restores happen in between ([`PreCommits`]). At the end of the input the final
/// checkpoint covers the last parts.
pub struct FileSink {
    path: String,
    dir: Dir,
    subtask: u32,
    transactional: bool,
    next_part: u64,
    current: Option<(u64, BufWriter<File>)>,
    /// Parts closed at a checkpoint's barrier, waiting for it (or a later one) to complete.
    pending: PreCommits<u64>,
    /// Whether leftovers of an earlier run (in-progress parts no checkpoint covers) were removed.
    settled: bool,
    /// The tenant's storage budget: writing stops (the task fails) once it is used up.
    disk: Option<std::sync::Arc<dyn crate::disk::DiskBudget>>,
}

/// What a file sink keeps in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct FileSinkState {
    next_part: u64,
    pending: Vec<(CheckpointId, u64)>,
}

/// The state layout of a file sink's snapshot.
const FILE_SINK_LAYOUT: &str = "file-sink/1";

impl FileSink {
    /// A sink for subtask `subtask` writing into the folder `location` (created with its parents). `transactional`:
    /// the job takes checkpoints, and parts become visible when the checkpoint covering them completes.
    pub fn create(
        roots: &FileRoots,
        location: &FileLocation,
        subtask: u32,
        transactional: bool,
    ) -> Result<FileSink, TaskError> {
        let dir = roots.create_folder(location)?;
        let mut sink = FileSink {
            path: location.path.to_string(),
            dir,
            subtask,
            transactional,
            next_part: 0,
            current: None,
            pending: PreCommits::default(),
            settled: false,
            disk: None,
        };
        sink.next_part = sink.parts()?.into_iter().map(|(n, _)| n + 1).max().unwrap_or(0);
        Ok(sink)
    }

    /// The sink within the tenant's storage budget `disk` (none: not limited).
    pub fn within(mut self, disk: Option<std::sync::Arc<dyn crate::disk::DiskBudget>>) -> FileSink {
        self.disk = disk;
        self
    }

    fn fail(&self, what: &str, e: std::io::Error) -> TaskError {
        TaskError::external(format!("cannot {what} in output folder `{}`: {e}", self.path))
    }

    fn visible(&self, part: u64) -> String {
        format!("part-{}-{part}.jsonl", self.subtask)
    }

    fn in_progress(&self, part: u64) -> String {
        format!(".part-{}-{part}.jsonl.inprogress", self.subtask)
    }

    /// This subtask's parts in the folder: number and whether it is visible.
    fn parts(&self) -> Result<Vec<(u64, bool)>, TaskError> {
        let (visible, hidden) = (format!("part-{}-", self.subtask), format!(".part-{}-", self.subtask));
        let mut parts = Vec::new();
        for entry in self.dir.entries().map_err(|e| self.fail("list", e))? {
            let entry = entry.map_err(|e| self.fail("list", e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let number = |rest: &str, suffix: &str| rest.strip_suffix(suffix).and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = name.strip_prefix(&visible).and_then(|r| number(r, ".jsonl")) {
                parts.push((n, true));
            } else if let Some(n) = name.strip_prefix(&hidden).and_then(|r| number(r, ".jsonl.inprogress")) {
                parts.push((n, false));
            }
        }
        Ok(parts)
    }

    /// Removes in-progress parts that no pending checkpoint covers: output of an earlier run past its last
    /// checkpoint, which the restored job writes again.
    fn settle(&mut self) -> Result<(), TaskError> {
        if self.settled {
            return Ok(());
        }
        for (part, visible) in self.parts()? {
            if !visible && !self.pending.iter().any(|(_, p)| *p == part) {
                let name = self.in_progress(part);
                self.dir.remove_file(&name).map_err(|e| self.fail("remove a stale part", e))?;
            }
            self.next_part = self.next_part.max(part + 1);
        }
        self.settled = true;
        Ok(())
    }

    /// Closes the open part, durably; returns its number.
    fn close_current(&mut self) -> Result<Option<u64>, TaskError> {
        let Some((part, writer)) = self.current.take() else { return Ok(None) };
        let file = writer.into_inner().map_err(|e| self.fail("write", e.into_error()))?;
        file.sync_all().map_err(|e| self.fail("sync", e))?;
        Ok(Some(part))
    }

    /// Makes part `part` visible (it may be already: a commit repeated after a restore).
    fn commit(&self, part: u64) -> Result<(), TaskError> {
        match self.dir.rename(self.in_progress(part), &self.dir, self.visible(part)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.dir.exists(self.visible(part)) => Ok(()),
            Err(e) => Err(self.fail("commit a part", e)),
        }
    }

    fn commit_pending_up_to(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        while let Some((_, part)) = self.pending.take_due(checkpoint) {
            self.commit(part)?;
        }
        Ok(())
    }
}

impl Operator for FileSink {
    fn process(&mut self, _: usize, batch: Batch, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        if let Some(why) = self.disk.as_ref().and_then(|d| d.exhausted()) {
            return Err(TaskError::user(format!("file sink `{}`: {why}", self.path)));
        }
        self.settle()?;
        if self.current.is_none() {
            let part = self.next_part;
            self.next_part += 1;
            let name = if self.transactional { self.in_progress(part) } else { self.visible(part) };
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true);
            let file = self.dir.open_with(&name, &options).map_err(|e| self.fail("create a part", e))?;
            self.current = Some((part, BufWriter::with_capacity(1 << 16, file.into_std())));
        }
        let Some((_, writer)) = &mut self.current else { return Ok(()) };
        let written: std::io::Result<()> = (|| {
            for record in batch.iter() {
                writer.write_all(record.value)?;
                writer.write_all(b"\n")?;
            }
            // Without checkpoints, readers see records as they are written.
            if !self.transactional { writer.flush() } else { Ok(()) }
        })();
        written.map_err(|e| self.fail("write", e))
    }

    fn finish(&mut self, _: &mut OpContext<'_>) -> Result<(), TaskError> {
        self.settle()?;
        if let Some(part) = self.close_current()?
            && self.transactional
        {
            self.commit(part)?;
        }
        self.commit_pending_up_to(CheckpointId::MAX)
    }

    fn snapshot(&mut self, checkpoint: CheckpointId, _: &mut ChunkWriter) -> Result<OperatorSnapshot, TaskError> {
        self.settle()?;
        if self.transactional
            && let Some(part) = self.close_current()?
        {
            self.pending.pre_commit(checkpoint, part);
        }
        let state = FileSinkState { next_part: self.next_part, pending: self.pending.iter().copied().collect() };
        let extra = postcard::to_stdvec(&state).map_err(|e| TaskError::internal(e.to_string()))?;
        Ok(OperatorSnapshot { layout: FILE_SINK_LAYOUT.into(), extra, ..OperatorSnapshot::default() })
    }

    fn restore(&mut self, snapshot: OperatorSnapshot, _: &ChunkReader) -> Result<(), TaskError> {
        snapshot.expect_layout("file sink", FILE_SINK_LAYOUT)?;
        if snapshot.extra.is_empty() {
            return Ok(());
        }
        let state: FileSinkState = postcard::from_bytes(&snapshot.extra)
            .map_err(|e| TaskError::external(format!("a file sink's checkpoint state is unreadable: {e}")))?;
        self.next_part = self.next_part.max(state.next_part);
        // The checkpoint restored from completed, so every part it names is committed, even if the crash came
        // before the rename.
        self.pending = PreCommits::restored(state.pending);
        self.commit_pending_up_to(CheckpointId::MAX)?;
        self.settle()
    }

    fn checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<(), TaskError> {
        self.commit_pending_up_to(checkpoint)
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
        roots.create_folder(&at("out/a")).expect("a folder inside may be created");
        assert!(own.join("out/a").is_dir());
        // Paths that the spec parser refuses are refused again here, whatever built them.
        for escape in ["../secret.txt", "/etc/passwd", "out/../../secret.txt"] {
            assert!(roots.open(&at(escape)).is_err(), "{escape} must not be read");
            assert!(roots.create_folder(&at(escape)).is_err(), "{escape} must not be written");
        }
        // A symbolic link inside the folder that leads out of it is refused when resolved.
        std::os::unix::fs::symlink(&outside, own.join("link")).expect("symlink");
        std::os::unix::fs::symlink(base.path(), own.join("up")).expect("symlink");
        assert!(roots.open(&at("link")).is_err(), "a link out of the folder must not be followed");
        assert!(roots.create_folder(&at("link")).is_err(), "a link out of the folder must not be written through");
        assert!(roots.create_folder(&at("up/planted")).is_err(), "a folder link out must not be written through");
        assert_eq!(std::fs::read_to_string(&outside).expect("read"), "token hashes", "untouched");
        assert!(!base.path().join("planted").exists());
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
