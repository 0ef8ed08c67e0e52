//! The checkpoint coordinator: one thread per job that triggers checkpoints, collects the tasks' snapshots,
//! writes them, completes or aborts each checkpoint, and keeps the newest few.

use super::CheckpointId;
use super::format::{OperatorSnapshot, SourceSnapshot, TaskSnapshot};
use super::store::CheckpointStore;
use crate::control::Control;
use crate::error::TaskError;
use crate::spec::CheckpointSpec;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a job needs to take checkpoints.
#[derive(Clone)]
pub struct Checkpointing {
    /// When and how.
    pub spec: CheckpointSpec,
    /// Where.
    pub store: Arc<dyn CheckpointStore>,
    /// Every path of this job's checkpoints starts with it (such as `acme/j-1/`).
    pub prefix: String,
    /// The newest checkpoint id used before, so that numbers go on across restarts.
    pub last_id: CheckpointId,
    /// The job's number of key groups, recorded with each checkpoint.
    pub max_parallelism: u32,
    /// The tenant's storage budget: no checkpoint is started once it is used up (it counts as failed); none: not
    /// limited.
    pub disk: Option<Arc<dyn crate::disk::DiskBudget>>,
    /// Where the ids the job has used are recorded durably before a checkpoint with a new one starts; none: ids
    /// go on from `last_id` only.
    pub ids: Option<Arc<dyn CheckpointIds>>,
    /// The folders of savepoints in progress, where tasks write their chunks themselves.
    pub savepoints: Arc<SavepointTargets>,
}

/// Where tasks write the chunks of savepoints in progress: the storage, and each savepoint's folder while it is
/// taken.
pub struct SavepointTargets {
    store: Arc<dyn CheckpointStore>,
    folders: Mutex<HashMap<CheckpointId, String>>,
}

impl SavepointTargets {
    /// The storage and folder of savepoint `id`, while it is taken.
    pub fn target(&self, id: CheckpointId) -> Option<(Arc<dyn CheckpointStore>, String)> {
        let folder = self.folders.lock().get(&id).cloned()?;
        Some((Arc::clone(&self.store), folder))
    }

    fn taking(&self, id: CheckpointId, folder: &str) {
        self.folders.lock().insert(id, folder.to_string());
    }

    fn done(&self, id: CheckpointId) {
        self.folders.lock().remove(&id);
    }
}

/// A durable record of the checkpoint ids a job has used, as Flink's `CheckpointIDCounter`: every checkpoint and
/// savepoint id is below what it holds before the checkpoint starts, so that ids only grow across restarts,
/// upgrades and deleted checkpoints (an exactly-once sink's commit marker trusts that they do).
pub trait CheckpointIds: Send + Sync {
    /// Records that ids up to `upto` may be used; fails if that cannot be made durable.
    fn reserve(&self, upto: CheckpointId) -> Result<(), String>;

    /// Checks, just before checkpoint `id` is completed, that this run may still complete checkpoints (in a
    /// cluster: that its node still owns the job, so an old owner paused past its lease completes and commits
    /// nothing once another node took the job over).
    fn confirm(&self, id: CheckpointId) -> Result<(), Unconfirmed> {
        let _ = id;
        Ok(())
    }
}

/// Why a checkpoint may not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unconfirmed {
    /// This run may complete no more checkpoints (another node took the job over): the checkpoint fails.
    Lost(String),
    /// It cannot be told now (the control plane is out of reach): the checkpoint is dropped without counting as a
    /// failure, so the job runs on, its sinks commit nothing meanwhile, and the next checkpoint asks again.
    Unknown(String),
}

/// Ids reserved at a time, so that recording them costs one write per this many checkpoints.
const ID_BLOCK: CheckpointId = 100;

impl Checkpointing {
    /// Checkpoints as `spec` says, into `store` under `prefix`, numbered from 1, without a storage budget.
    pub fn new(
        spec: CheckpointSpec,
        store: Arc<dyn CheckpointStore>,
        prefix: impl Into<String>,
        max_parallelism: u32,
    ) -> Checkpointing {
        let savepoints = Arc::new(SavepointTargets { store: Arc::clone(&store), folders: Mutex::default() });
        Checkpointing {
            spec,
            store,
            prefix: prefix.into(),
            last_id: 0,
            max_parallelism,
            disk: None,
            ids: None,
            savepoints,
        }
    }

    /// Numbers checkpoints on after `last_id`.
    pub fn after(mut self, last_id: CheckpointId) -> Checkpointing {
        self.last_id = last_id;
        self
    }
}

impl std::fmt::Debug for Checkpointing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointing").field("prefix", &self.prefix).field("last_id", &self.last_id).finish()
    }
}

/// The folder of checkpoint `id` under `prefix`; zero-padded so that names sort by number.
fn checkpoint_folder(prefix: &str, id: CheckpointId) -> String {
    format!("{prefix}chk-{id:012}/")
}

const METADATA: &str = "_metadata";
const METADATA_FORMAT: u32 = 1;

/// A completed checkpoint's table of contents, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Metadata {
    format: u32,
    checkpoint: CheckpointId,
    /// Milliseconds since the Unix epoch.
    completed_at_ms: i64,
    /// The job's number of key groups (absent in checkpoints of earlier versions).
    #[serde(default)]
    max_parallelism: Option<u32>,
    /// Task name -> object path (relative to the checkpoint's folder) and size.
    tasks: BTreeMap<String, (String, u64)>,
    /// The state files it refers to, relative to the job's folder (`shared/...`); other checkpoints may refer to
    /// them too. A file is deleted once no retained checkpoint refers to it.
    #[serde(default)]
    shared: Vec<String>,
}

/// The checkpoints under `prefix`, from one listing: every id used (complete or not), and those that completed
/// (have metadata), both oldest first.
fn checkpoint_ids(
    store: &dyn CheckpointStore,
    prefix: &str,
) -> Result<(std::collections::BTreeSet<CheckpointId>, Vec<CheckpointId>), TaskError> {
    let paths = store.list(prefix).map_err(|e| TaskError::external(e.0))?;
    let mut used = std::collections::BTreeSet::new();
    let mut completed = Vec::new();
    for path in &paths {
        let Some((id, rest)) = path.strip_prefix(prefix).and_then(|p| p.strip_prefix("chk-")?.split_once('/')) else {
            continue;
        };
        let Ok(id) = id.parse::<CheckpointId>() else { continue };
        used.insert(id);
        if rest == METADATA {
            completed.push(id);
        }
    }
    completed.sort_unstable();
    Ok((used, completed))
}

/// Ids of the checkpoints under `prefix` that completed (have metadata), oldest first.
pub fn completed_checkpoints(store: &dyn CheckpointStore, prefix: &str) -> Result<Vec<CheckpointId>, TaskError> {
    Ok(checkpoint_ids(store, prefix)?.1)
}

/// The newest checkpoint id used under `prefix`, complete or not (0: none).
pub fn newest_checkpoint_id(store: &dyn CheckpointStore, prefix: &str) -> Result<CheckpointId, TaskError> {
    Ok(checkpoint_ids(store, prefix)?.0.last().copied().unwrap_or(0))
}

/// Finds where a job under `prefix` starts: the newest completed checkpoint that can be read (an older one if the
/// newest is damaged), and the newest id used, so numbering goes on. Checkpoints that never completed are removed.
pub fn prepare_restore(
    store: &Arc<dyn CheckpointStore>,
    prefix: &str,
) -> Result<(Option<Restore>, CheckpointId), TaskError> {
    let (used, completed) = checkpoint_ids(store.as_ref(), prefix)?;
    let newest = used.last().copied().unwrap_or(0);
    for &id in used.iter().filter(|id| !completed.contains(id)) {
        store.delete_prefix(&checkpoint_folder(prefix, id)).map_err(|e| TaskError::external(e.0))?;
    }
    let mut last_error = None;
    for &id in completed.iter().rev() {
        match Restore::load(store, prefix, id) {
            Ok(restore) => return Ok((Some(restore), newest)),
            Err(e) => {
                tracing::warn!("checkpoint {id} cannot be restored, trying an older one: {e}");
                last_error = Some(e);
            }
        }
    }
    match last_error {
        Some(e) => Err(e),
        None => Ok((None, newest)),
    }
}

/// Which completed checkpoints to delete so that the newest `retained` stay.
pub fn to_discard(completed: &[CheckpointId], retained: u32) -> Vec<CheckpointId> {
    let keep = (retained.max(1) as usize).min(completed.len());
    completed[..completed.len() - keep].to_vec()
}

/// A completed checkpoint or savepoint to start a job from.
#[derive(Default)]
pub struct Restore {
    /// Its id.
    pub checkpoint: CheckpointId,
    /// The number of key groups it was taken with, if recorded.
    pub max_parallelism: Option<u32>,
    tasks: HashMap<String, TaskSnapshot>,
    operators: HashMap<(String, u32), OperatorSnapshot>,
    /// Per operator uid, the head of the chain it ran in (its tasks are `<head>-<subtask>`).
    heads: HashMap<String, String>,
    /// Where its state files are: the storage, and the folder their paths are relative to (the one that holds the
    /// checkpoint's folder).
    files: Option<(Arc<dyn CheckpointStore>, String)>,
    /// The checkpoint's or savepoint's own folder, where its chunks are.
    folder: String,
    /// Bytes of state files and chunks read from storage so far.
    fetched: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restore").field("checkpoint", &self.checkpoint).finish_non_exhaustive()
    }
}

/// Splits a task name `<uid>-<subtask>`.
fn task_parts(name: &str) -> Option<(&str, u32)> {
    let (uid, subtask) = name.rsplit_once('-')?;
    Some((uid, subtask.parse().ok()?))
}

impl Restore {
    /// Reads checkpoint `id` under `prefix`.
    pub fn load(store: &Arc<dyn CheckpointStore>, prefix: &str, id: CheckpointId) -> Result<Restore, TaskError> {
        Restore::load_folder(store, &checkpoint_folder(prefix, id), &format!("checkpoint {id}"))
    }

    /// Reads the checkpoint or savepoint in `folder` (ending in `/`); `what` names it in errors.
    pub fn load_folder(store: &Arc<dyn CheckpointStore>, folder: &str, what: &str) -> Result<Restore, TaskError> {
        let unreadable = |why: String| TaskError::external(format!("{what} in {}: {why}", store.describe()));
        let metadata = store
            .get(&format!("{folder}{METADATA}"))
            .map_err(|e| unreadable(e.0))?
            .ok_or_else(|| unreadable("it did not complete (no metadata)".into()))?;
        let metadata: Metadata = serde_json::from_slice(&metadata).map_err(|e| unreadable(e.to_string()))?;
        if metadata.format != METADATA_FORMAT {
            return Err(unreadable(format!("metadata format {} is unknown", metadata.format)));
        }
        let parent = folder.trim_end_matches('/').rsplit_once('/').map_or(String::new(), |(p, _)| format!("{p}/"));
        let mut restore = Restore {
            checkpoint: metadata.checkpoint,
            max_parallelism: metadata.max_parallelism,
            files: Some((Arc::clone(store), parent)),
            folder: folder.to_string(),
            ..Restore::default()
        };
        let mut present: Option<std::collections::HashSet<String>> = None;
        for (task, (path, _)) in metadata.tasks {
            let bytes = store
                .get(&format!("{folder}{path}"))
                .map_err(|e| unreadable(e.0))?
                .ok_or_else(|| unreadable(format!("the snapshot of task {task} is missing")))?;
            let mut snapshot = TaskSnapshot::decode(&bytes)?;
            let chunks: Vec<String> = snapshot
                .operators
                .iter()
                .flat_map(|(_, _, o)| &o.chunks)
                .map(|c| format!("{folder}{}", c.object))
                .collect();
            if !chunks.is_empty() {
                // One listing finds a damaged checkpoint (a chunk missing) before a restore starts from it.
                if present.is_none() {
                    present = Some(store.list(folder).map_err(|e| unreadable(e.0))?.into_iter().collect());
                }
                if let Some(missing) = chunks.iter().find(|c| !present.as_ref().is_some_and(|p| p.contains(*c))) {
                    return Err(unreadable(format!("the state chunk {missing} of task {task} is missing")));
                }
            }
            let head = task_parts(&task).map(|(head, _)| head.to_string());
            for (uid, subtask, operator) in std::mem::take(&mut snapshot.operators) {
                if let Some(head) = &head {
                    restore.heads.insert(uid.clone(), head.clone());
                }
                restore.operators.insert((uid, subtask), operator);
            }
            restore.tasks.insert(task, snapshot);
        }
        Ok(restore)
    }

    /// The newest completed checkpoint under `prefix`, if any.
    pub fn latest(store: &Arc<dyn CheckpointStore>, prefix: &str) -> Result<Option<Restore>, TaskError> {
        match completed_checkpoints(store.as_ref(), prefix)?.last() {
            Some(&id) => Restore::load(store, prefix, id).map(Some),
            None => Ok(None),
        }
    }

    /// Reads one of its state files (a [`crate::state::StateFile::object`]).
    pub fn fetch(&self, object: &str) -> Result<Vec<u8>, crate::state::StateError> {
        let Some((store, parent)) = &self.files else {
            return Err(crate::state::StateError("this checkpoint was not read from storage".into()));
        };
        let bytes =
            store.get(&format!("{parent}{object}")).map_err(|e| crate::state::StateError(e.0))?.ok_or_else(|| {
                crate::state::StateError(format!("state file {object} is missing in {}", store.describe()))
            })?;
        self.fetched.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(bytes)
    }

    /// A reader of its chunks, counting what it reads with the state files.
    pub fn chunk_reader(&self) -> super::ChunkReader {
        match &self.files {
            Some((store, _)) => {
                super::ChunkReader::from_store(Arc::clone(store), &self.folder, Arc::clone(&self.fetched))
            }
            None => super::ChunkReader::default(),
        }
    }

    /// Bytes of state files and chunks read from storage so far.
    pub fn fetched_bytes(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Uids of the operators that have state in it.
    pub fn operator_uids(&self) -> std::collections::BTreeSet<&str> {
        self.operators.iter().filter(|(_, s)| !s.is_empty()).map(|((uid, _), _)| uid.as_str()).collect()
    }

    /// Every subtask's snapshot of operator `uid`.
    pub fn snapshots_of(&self, uid: &str) -> Vec<&OperatorSnapshot> {
        let mut found: Vec<(&u32, &OperatorSnapshot)> =
            self.operators.iter().filter(|((u, _), _)| u == uid).map(|((_, s), o)| (s, o)).collect();
        found.sort_by_key(|(s, _)| **s);
        found.into_iter().map(|(_, o)| o).collect()
    }

    /// How many subtasks operator `uid` had: as many as its chain had tasks, finished ones included (a finished
    /// task leaves no operator snapshots, so counting those would make an unchanged parallelism look changed).
    fn parallelism_of(&self, uid: &str) -> u32 {
        let operators = self.operators.keys().filter(|(u, _)| u == uid).count() as u32;
        let Some(head) = self.heads.get(uid) else { return operators };
        let tasks = self.tasks.keys().filter_map(|name| task_parts(name)).filter(|(h, _)| h == head).count() as u32;
        tasks.max(operators)
    }

    /// Operator `uid`'s state for `subtask` of `parallelism` (with `max_parallelism` key groups). At the
    /// parallelism it was taken at, a subtask gets its own snapshot; at another, the entries and timers of the key
    /// groups it now owns, gathered from every subtask of the snapshot (state files: every subtask's, which the
    /// backend filters by key group). Per-subtask bytes (`extra`) do not move between subtasks and are dropped
    /// then. With the snapshot comes the reader of its chunks: unfiltered for a subtask's own snapshot, which is
    /// all of its state, keyed or not (a Kafka sink files its entry under its subtask index); keeping only the
    /// subtask's key groups otherwise. Call it once per operator subtask.
    pub fn operator(
        &mut self,
        uid: &str,
        subtask: u32,
        parallelism: u32,
        max_parallelism: u32,
    ) -> Option<(OperatorSnapshot, super::ChunkReader)> {
        let before = self.parallelism_of(uid);
        if before == 0 {
            return None;
        }
        if before == parallelism {
            // Each subtask's snapshot is restored once: take it, leaving an empty one so the count stays.
            let own = self.operators.get_mut(&(uid.to_string(), subtask)).map(std::mem::take)?;
            return Some((own, self.chunk_reader()));
        }
        let groups = crate::keys::key_groups_of(subtask, parallelism, max_parallelism);
        let mut merged = OperatorSnapshot::default();
        for old in 0..before {
            let Some(snapshot) = self.operators.get(&(uid.to_string(), old)) else { continue };
            if merged.layout.is_empty() {
                merged.layout.clone_from(&snapshot.layout);
            }
            merged.entries.extend(snapshot.entries.iter().filter(|e| groups.contains(&e.group)).cloned());
            merged.timers.extend(snapshot.timers.iter().filter(|t| groups.contains(&t.group)).cloned());
            // Chunks are read later, a chunk at a time, by a reader that keeps only this subtask's key groups.
            let holds_some = |chunk: &&super::StateChunk| {
                let (first, last) = chunk.key_groups;
                first <= *groups.end() && *groups.start() <= last
            };
            merged.chunks.extend(snapshot.chunks.iter().filter(holds_some).cloned());
            // Only the stores that held some of the key groups this subtask takes are read.
            let overlaps = |files: &&crate::state::StateFiles| {
                let (first, last) = files.key_groups;
                first <= *groups.end() && *groups.start() <= last
            };
            merged.files.extend(snapshot.files.iter().filter(overlaps).cloned());
        }
        merged
            .entries
            .sort_by(|a, b| (&a.state, a.group, &a.key, &a.namespace).cmp(&(&b.state, b.group, &b.key, &b.namespace)));
        merged.timers.sort_by(|a, b| {
            (a.domain as u8, a.timestamp, a.group, &a.key, &a.namespace).cmp(&(
                b.domain as u8,
                b.timestamp,
                b.group,
                &b.key,
                &b.namespace,
            ))
        });
        Some((merged, self.chunk_reader().only(groups)))
    }

    /// The task's own part (source position, input watermarks) for subtask `subtask` of `parallelism` of the chain
    /// that starts with `head`. At another parallelism, a source gets every old subtask's split positions (each
    /// source takes the splits it reads) and watermarks start afresh.
    pub fn task(&self, head: &str, subtask: u32, parallelism: u32) -> Option<TaskSnapshot> {
        let old: Vec<(&TaskSnapshot, u32)> = self
            .tasks
            .iter()
            .filter_map(|(name, t)| task_parts(name).filter(|(uid, _)| *uid == head).map(|(_, s)| (t, s)))
            .collect();
        if old.is_empty() {
            return None;
        }
        if old.len() as u32 == parallelism {
            return old.iter().find(|(_, s)| *s == subtask).map(|(t, _)| (*t).clone());
        }
        let sources: Vec<&SourceSnapshot> = old.iter().filter_map(|(t, _)| t.source.as_ref()).collect();
        let source = (!sources.is_empty()).then(|| SourceSnapshot {
            positions: sources.iter().flat_map(|s| s.positions.iter().cloned()).collect(),
            max_timestamps: Vec::new(),
            watermark: sources.iter().map(|s| s.watermark).min().unwrap_or(i64::MIN),
        });
        Some(TaskSnapshot {
            task: format!("{head}-{subtask}"),
            operators: Vec::new(),
            source,
            input_watermarks: Vec::new(),
            watermark: i64::MIN,
            finished: old.iter().all(|(t, _)| t.finished),
        })
    }
}

/// What a task tells the coordinator.
#[derive(Debug)]
pub enum Ack {
    /// Its snapshot for a checkpoint.
    Snapshot {
        /// Which checkpoint.
        checkpoint: CheckpointId,
        /// The task's index.
        task: usize,
        /// What it holds.
        snapshot: TaskSnapshot,
        /// The chunks for the coordinator to write, as (object, bytes); or why the task could not write its own.
        chunks: Result<Vec<(String, Vec<u8>)>, String>,
    },
    /// Its source ended (a source task): it waits for a checkpoint to cover that before it ends its outputs, so
    /// one is taken as soon as it may.
    Ending {
        /// The task's index.
        task: usize,
    },
    /// It finished: this stands in for its snapshot in every later checkpoint.
    Finished {
        /// The task's index.
        task: usize,
        /// What it leaves behind.
        snapshot: TaskSnapshot,
    },
}

/// Checkpoint figures of a job, for its status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CheckpointStats {
    /// Checkpoints completed by this run of the job.
    pub completed: u64,
    /// Checkpoints that failed or timed out.
    pub failed: u64,
    /// The newest completed checkpoint (of any run).
    pub latest: Option<CheckpointId>,
    /// How long it took, from trigger to metadata.
    pub latest_duration_ms: Option<u64>,
    /// Bytes it wrote: with RocksDB, only the state files no earlier checkpoint had.
    pub latest_bytes: Option<u64>,
    /// Bytes a restore from it reads: everything it refers to, including files earlier checkpoints wrote.
    pub latest_full_bytes: Option<u64>,
    /// Why the last failed checkpoint failed.
    pub last_failure: Option<String>,
    /// The checkpoint this run started from.
    pub restored_from: Option<CheckpointId>,
    /// Bytes of state files this run read from storage to restore (none read: files were on this machine).
    pub restored_bytes: u64,
}

/// An on-demand checkpoint or savepoint, answered with the completed checkpoint's id or why it failed.
pub struct TriggerRequest {
    /// Where the answer goes.
    pub reply: Sender<Result<CheckpointId, String>>,
    /// For a savepoint, the folder (ending in `/`) it is written to; it is never deleted by retention.
    pub savepoint: Option<String>,
}

/// A task as the coordinator sees it.
pub struct CoordinatedTask {
    /// `<head uid>-<subtask>`.
    pub name: String,
    /// Whether barriers start at it.
    pub is_source: bool,
    /// Its control channel.
    pub control: Sender<Control>,
}

struct Pending {
    started: Instant,
    /// Where its files go (ending in `/`).
    folder: String,
    savepoint: bool,
    /// Task index -> what was written for it, once acknowledged.
    acked: HashMap<usize, Written>,
    waiters: Vec<Sender<Result<CheckpointId, String>>>,
}

/// What a task's acknowledgement wrote.
#[derive(Debug, Default)]
struct Written {
    /// The snapshot's object, relative to the checkpoint's folder.
    name: String,
    /// The snapshot's size.
    snapshot_bytes: u64,
    /// Bytes of state files uploaded for it.
    uploaded_bytes: u64,
    /// Bytes of every state file it refers to.
    file_bytes: u64,
    /// Bytes of its chunks of entries and timers.
    chunk_bytes: u64,
    /// The state files it refers to, relative to the job's folder.
    objects: Vec<String>,
}

/// The folder, under a job's prefix, of state files that checkpoints share.
const SHARED: &str = "shared/";

/// Runs the coordinator until every task has ended or the job stops.
pub struct Coordinator {
    pub(crate) checkpointing: Checkpointing,
    pub(crate) tasks: Vec<CoordinatedTask>,
    pub(crate) acks: Receiver<Ack>,
    pub(crate) requests: Receiver<TriggerRequest>,
    pub(crate) stats: Arc<Mutex<CheckpointStats>>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Called when too many checkpoints failed in a row.
    pub(crate) fail: Box<dyn Fn(TaskError) + Send>,
}

impl Coordinator {
    /// The coordinator's loop.
    pub fn run(self) {
        let spec = self.checkpointing.spec.clone();
        let interval = Duration::from_millis(spec.interval.0.max(1) as u64);
        let timeout = Duration::from_millis(spec.timeout.0.max(1) as u64);
        let min_pause = Duration::from_millis(spec.min_pause.0.max(0) as u64);
        let mut next_id = self.checkpointing.last_id + 1;
        // Ids below this are recorded as used, durably.
        let mut reserved = next_id;
        let mut pending: BTreeMap<CheckpointId, Pending> = BTreeMap::new();
        let mut finished: HashMap<usize, TaskSnapshot> = HashMap::new();
        let mut last_trigger = Instant::now();
        let mut last_end: Option<Instant> = None;
        let mut failures_in_a_row = 0u32;
        let mut queued: Vec<TriggerRequest> = Vec::new();
        // State files that completed checkpoints refer to: a later checkpoint may refer to them without uploading.
        let mut known = match self.referenced_files() {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!("cannot read the job's checkpoints; every state file will be uploaded again: {e}");
                std::collections::HashSet::new()
            }
        };
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let paused_until = last_end.map_or(now, |end| end + min_pause);
            let due = (last_trigger + interval).max(paused_until);
            let may_start = pending.len() < spec.max_concurrent as usize;
            if may_start && (now >= due || !queued.is_empty()) {
                let all_finished = self.tasks.iter().enumerate().all(|(i, _)| finished.contains_key(&i));
                let live_source = self.tasks.iter().enumerate().any(|(i, t)| t.is_source && !finished.contains_key(&i));
                last_trigger = now;
                let mut refused = self.checkpointing.disk.as_ref().and_then(|d| d.exhausted());
                if refused.is_none()
                    && next_id >= reserved
                    && let Some(ids) = &self.checkpointing.ids
                {
                    match ids.reserve(next_id + ID_BLOCK - 1) {
                        Ok(()) => reserved = next_id + ID_BLOCK,
                        Err(e) => refused = Some(format!("its id could not be recorded: {e}")),
                    }
                }
                if all_finished || !live_source {
                    // Nothing can carry a barrier; the job is ending.
                    for waiter in queued.drain(..) {
                        let _ = waiter.reply.send(Err("the job's sources have finished".into()));
                    }
                } else if let Some(why) = refused {
                    let id = next_id;
                    next_id += 1;
                    let waiters = queued.drain(..).map(|r| r.reply).collect();
                    let folder = checkpoint_folder(&self.checkpointing.prefix, id);
                    let refused = Pending { started: now, folder, savepoint: false, acked: HashMap::new(), waiters };
                    last_end = Some(now);
                    if !self.abort(id, refused, why, &mut failures_in_a_row) {
                        return;
                    }
                } else {
                    let id = next_id;
                    next_id += 1;
                    // One savepoint per checkpoint; plain requests ride along with it.
                    let savepoint = queued.iter().position(|r| r.savepoint.is_some()).map(|at| queued.remove(at));
                    let (plain, later): (Vec<_>, Vec<_>) = queued.drain(..).partition(|r| r.savepoint.is_none());
                    queued = later;
                    let folder = savepoint
                        .as_ref()
                        .and_then(|r| r.savepoint.clone())
                        .unwrap_or_else(|| checkpoint_folder(&self.checkpointing.prefix, id));
                    let is_savepoint = savepoint.is_some();
                    let waiters = plain.into_iter().chain(savepoint).map(|r| r.reply).collect();
                    let mut checkpoint =
                        Pending { started: now, folder, savepoint: is_savepoint, acked: HashMap::new(), waiters };
                    if is_savepoint {
                        self.checkpointing.savepoints.taking(id, &checkpoint.folder);
                    }
                    for (&task, snapshot) in &finished {
                        match self.write(&checkpoint.folder, snapshot, &[], &known) {
                            Ok(written) => {
                                checkpoint.acked.insert(task, written);
                            }
                            Err(e) => tracing::warn!("checkpoint {id}: {e}"),
                        }
                    }
                    let barrier = super::Barrier { id, savepoint: is_savepoint };
                    for task in self.tasks.iter().filter(|t| t.is_source) {
                        // A source that just ended cannot take it; its `Finished` is on the way.
                        let _ = task.control.send(Control::Checkpoint(barrier));
                    }
                    pending.insert(id, checkpoint);
                }
            }
            let expires = pending.values().map(|p| p.started + timeout).min();
            let wake = [Some(due), expires].into_iter().flatten().min().unwrap_or(now + interval);
            let wait = wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            let mut select = crossbeam_channel::Select::new();
            let acks_index = select.recv(&self.acks);
            let requests_index = select.recv(&self.requests);
            let Ok(operation) = select.select_timeout(wait) else {
                let now = Instant::now();
                let expired: Vec<CheckpointId> =
                    pending.iter().filter(|(_, p)| now >= p.started + timeout).map(|(id, _)| *id).collect();
                for id in expired {
                    if let Some(p) = pending.remove(&id) {
                        let why = format!("it did not complete within {} ms", spec.timeout.0);
                        last_end = Some(now);
                        if !self.abort(id, p, why, &mut failures_in_a_row) {
                            return;
                        }
                    }
                }
                continue;
            };
            if operation.index() == requests_index {
                match operation.recv(&self.requests) {
                    Ok(request) => queued.push(request),
                    Err(_) => continue,
                }
                continue;
            }
            debug_assert_eq!(operation.index(), acks_index);
            let ack = match operation.recv(&self.acks) {
                Ok(ack) => ack,
                Err(_) => break, // every task has ended
            };
            let completed_ids: Vec<CheckpointId> = match ack {
                Ack::Ending { .. } => {
                    // A checkpoint now, with nobody waiting for its answer.
                    let (reply, _) = crossbeam_channel::bounded(1);
                    queued.push(TriggerRequest { reply, savepoint: None });
                    continue;
                }
                Ack::Snapshot { checkpoint, task, snapshot, chunks } => {
                    let Some(p) = pending.get_mut(&checkpoint) else { continue };
                    let written = chunks.and_then(|chunks| self.write(&p.folder, &snapshot, &chunks, &known));
                    match written {
                        Ok(written) => {
                            p.acked.insert(task, written);
                            vec![checkpoint]
                        }
                        Err(why) => {
                            let p = pending.remove(&checkpoint).unwrap_or_else(|| unreachable!());
                            last_end = Some(Instant::now());
                            if !self.abort(checkpoint, p, why, &mut failures_in_a_row) {
                                return;
                            }
                            vec![]
                        }
                    }
                }
                Ack::Finished { task, snapshot } => {
                    let mut touched = Vec::new();
                    for (&id, p) in pending.iter_mut() {
                        if let std::collections::hash_map::Entry::Vacant(slot) = p.acked.entry(task)
                            && let Ok(written) = self.write(&p.folder, &snapshot, &[], &known)
                        {
                            slot.insert(written);
                            touched.push(id);
                        }
                    }
                    finished.insert(task, snapshot);
                    touched
                }
            };
            for id in completed_ids {
                let done = pending.get(&id).is_some_and(|p| p.acked.len() == self.tasks.len());
                if !done {
                    continue;
                }
                let Some(p) = pending.remove(&id) else { continue };
                last_end = Some(Instant::now());
                let in_flight: std::collections::HashSet<&str> = pending
                    .values()
                    .flat_map(|p| p.acked.values())
                    .flat_map(|w| &w.objects)
                    .map(String::as_str)
                    .collect();
                let confirmed = self.checkpointing.ids.as_ref().map_or(Ok(()), |ids| ids.confirm(id));
                let completed = match confirmed {
                    Ok(()) => self.complete(id, &p, &in_flight),
                    Err(Unconfirmed::Lost(why)) => Err(why),
                    Err(Unconfirmed::Unknown(why)) => {
                        tracing::warn!(checkpoint = id, "checkpoint dropped, to be taken again: {why}");
                        self.abort_quietly(id, p, why);
                        continue;
                    }
                };
                match completed {
                    Ok(referenced) => {
                        match referenced {
                            // What the retained checkpoints refer to: files of dropped ones are gone from storage.
                            Some(referenced) => known = referenced,
                            None => known.extend(p.acked.values().flat_map(|w| w.objects.iter().cloned())),
                        }
                        failures_in_a_row = 0;
                        // Older checkpoints still in progress can only be superseded now (savepoints finish).
                        let older: Vec<CheckpointId> =
                            pending.range(..id).filter(|(_, p)| !p.savepoint).map(|(k, _)| *k).collect();
                        for old in older {
                            if let Some(p) = pending.remove(&old) {
                                self.abort_quietly(old, p, format!("checkpoint {id} completed first"));
                            }
                        }
                        for waiter in p.waiters {
                            let _ = waiter.send(Ok(id));
                        }
                    }
                    Err(why) => {
                        if !self.abort(id, p, why, &mut failures_in_a_row) {
                            return;
                        }
                    }
                }
            }
        }
        let abandoned_files = pending.values().any(|p| p.acked.values().any(|w| w.uploaded_bytes > 0));
        for (id, p) in pending {
            self.checkpointing.savepoints.done(id);
            let _ = self.checkpointing.store.delete_prefix(&p.folder);
            for waiter in p.waiters {
                let _ = waiter.send(Err(format!("checkpoint {id} was abandoned: the job stopped")));
            }
        }
        if abandoned_files && let Err(e) = self.delete_unreferenced_files(&std::collections::HashSet::new()) {
            tracing::warn!("cannot delete the state files of abandoned checkpoints: {e}");
        }
        for waiter in queued {
            let _ = waiter.reply.send(Err("the job stopped".into()));
        }
    }

    /// Writes a task's snapshot into `folder`, after its `chunks` (those the task did not write itself) and the
    /// state files it refers to that no completed checkpoint has (`known`: those that do).
    fn write(
        &self,
        folder: &str,
        snapshot: &TaskSnapshot,
        chunks: &[(String, Vec<u8>)],
        known: &std::collections::HashSet<String>,
    ) -> Result<Written, String> {
        let store = &self.checkpointing.store;
        let prefix = &self.checkpointing.prefix;
        let mut written = Written::default();
        for (object, bytes) in chunks {
            store.put(&format!("{folder}{object}"), bytes).map_err(|e| e.0)?;
        }
        let operators = snapshot.operators.iter().map(|(_, _, operator)| operator);
        written.chunk_bytes = operators.flat_map(|o| &o.chunks).map(|c| c.bytes).sum();
        for files in snapshot.operators.iter().flat_map(|(_, _, operator)| &operator.files) {
            for file in &files.files {
                // A file the store thinks uploaded but no completed checkpoint of this job has (its state came from
                // elsewhere) is uploaded too.
                if file.upload || !known.contains(&file.object) {
                    let local = files
                        .local
                        .as_ref()
                        .ok_or_else(|| format!("state file {} is not on this machine", file.name))?;
                    let path = local.join(&file.name);
                    let bytes =
                        std::fs::read(&path).map_err(|e| format!("cannot read state file {}: {e}", path.display()))?;
                    store.put(&format!("{prefix}{}", file.object), &bytes).map_err(|e| e.0)?;
                    written.uploaded_bytes += bytes.len() as u64;
                }
                written.file_bytes += file.size;
                written.objects.push(file.object.clone());
            }
        }
        let bytes = snapshot.encode().map_err(|e| e.message)?;
        written.name = snapshot.task.clone();
        store.put(&format!("{folder}{}", written.name), &bytes).map_err(|e| e.0)?;
        written.snapshot_bytes = bytes.len() as u64;
        Ok(written)
    }

    /// The state files the completed checkpoints under the job's prefix refer to.
    fn referenced_files(&self) -> Result<std::collections::HashSet<String>, String> {
        let store = self.checkpointing.store.as_ref();
        let prefix = &self.checkpointing.prefix;
        let mut referenced = std::collections::HashSet::new();
        for id in completed_checkpoints(store, prefix).map_err(|e| e.message)? {
            let path = format!("{}{METADATA}", checkpoint_folder(prefix, id));
            let Some(bytes) = store.get(&path).map_err(|e| e.0)? else { continue };
            let metadata: Metadata = serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))?;
            referenced.extend(metadata.shared);
        }
        Ok(referenced)
    }

    /// Deletes the shared state files that neither a retained checkpoint nor one in progress (`in_flight`) refers
    /// to: those of checkpoints dropped by retention, given up, or left unfinished by a crash. Returns the files
    /// the retained checkpoints refer to.
    fn delete_unreferenced_files(
        &self,
        in_flight: &std::collections::HashSet<&str>,
    ) -> Result<std::collections::HashSet<String>, String> {
        let store = self.checkpointing.store.as_ref();
        let prefix = &self.checkpointing.prefix;
        let referenced = self.referenced_files()?;
        let unreferenced: Vec<String> = store
            .list(&format!("{prefix}{SHARED}"))
            .map_err(|e| e.0)?
            .into_iter()
            .filter(|path| {
                let object = path.strip_prefix(prefix.as_str()).unwrap_or(path);
                !referenced.contains(object) && !in_flight.contains(object)
            })
            .collect();
        store.delete(&unreferenced).map_err(|e| e.0)?;
        Ok(referenced)
    }

    /// Writes the metadata, tells the tasks, drops checkpoints beyond the retained count and the state files no
    /// checkpoint needs any more. Returns the state files the retained checkpoints refer to, when it read them.
    fn complete(
        &self,
        id: CheckpointId,
        p: &Pending,
        in_flight: &std::collections::HashSet<&str>,
    ) -> Result<Option<std::collections::HashSet<String>>, String> {
        let store = &self.checkpointing.store;
        let prefix = &self.checkpointing.prefix;
        let tasks: BTreeMap<String, (String, u64)> = p
            .acked
            .iter()
            .map(|(&task, w)| (self.tasks[task].name.clone(), (w.name.clone(), w.snapshot_bytes)))
            .collect();
        let bytes: u64 = p.acked.values().map(|w| w.snapshot_bytes + w.chunk_bytes + w.uploaded_bytes).sum();
        let full_bytes: u64 = p.acked.values().map(|w| w.snapshot_bytes + w.chunk_bytes + w.file_bytes).sum();
        let shared: std::collections::BTreeSet<String> =
            p.acked.values().flat_map(|w| w.objects.iter().cloned()).collect();
        let completed_at_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let metadata = Metadata {
            format: METADATA_FORMAT,
            checkpoint: id,
            completed_at_ms,
            max_parallelism: Some(self.checkpointing.max_parallelism),
            tasks,
            shared: shared.into_iter().collect(),
        };
        let json = serde_json::to_vec_pretty(&metadata).map_err(|e| e.to_string())?;
        store.put(&format!("{}{METADATA}", p.folder), &json).map_err(|e| e.0)?;
        if !p.savepoint {
            let mut stats = self.stats.lock();
            stats.completed += 1;
            stats.latest = Some(id);
            stats.latest_duration_ms = Some(p.started.elapsed().as_millis() as u64);
            stats.latest_bytes = Some(bytes);
            stats.latest_full_bytes = Some(full_bytes);
        }
        if p.savepoint {
            self.checkpointing.savepoints.done(id);
            // A savepoint commits nothing by itself: the job's checkpoints stay its restore points (a later one
            // commits what the savepoint covered too), and a job that stops with it commits it through its handle.
            return Ok(None);
        }
        for task in &self.tasks {
            let _ = task.control.send(Control::CheckpointComplete(id));
        }
        // Retention failing does not fail the checkpoint: the next completion tries again.
        match completed_checkpoints(store.as_ref(), prefix) {
            Ok(completed) => {
                for old in to_discard(&completed, self.checkpointing.spec.retained) {
                    if let Err(e) = store.delete_prefix(&checkpoint_folder(prefix, old)) {
                        tracing::warn!("cannot delete checkpoint {old}: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list checkpoints: {e}"),
        }
        tracing::debug!(checkpoint = id, bytes, full_bytes, "checkpoint completed");
        match self.delete_unreferenced_files(in_flight) {
            Ok(referenced) => Ok(Some(referenced)),
            Err(e) => {
                tracing::warn!("cannot delete state files no checkpoint needs: {e}");
                Ok(None)
            }
        }
    }

    fn abort_quietly(&self, id: CheckpointId, p: Pending, why: String) {
        self.checkpointing.savepoints.done(id);
        for task in &self.tasks {
            let _ = task.control.send(Control::CheckpointAborted(id));
        }
        let _ = self.checkpointing.store.delete_prefix(&p.folder);
        for waiter in p.waiters {
            let _ = waiter.send(Err(format!("checkpoint {id} failed: {why}")));
        }
    }

    /// Gives a checkpoint up; returns false once the job must fail (too many failures in a row).
    fn abort(&self, id: CheckpointId, p: Pending, why: String, failures_in_a_row: &mut u32) -> bool {
        tracing::warn!(checkpoint = id, "checkpoint failed: {why}");
        {
            let mut stats = self.stats.lock();
            stats.failed += 1;
            stats.last_failure = Some(format!("checkpoint {id}: {why}"));
        }
        self.abort_quietly(id, p, why.clone());
        *failures_in_a_row += 1;
        if *failures_in_a_row > self.checkpointing.spec.tolerable_failures {
            (self.fail)(TaskError::external(format!(
                "checkpoint {id} failed ({why}), more than the {} failure(s) in a row the job tolerates",
                self.checkpointing.spec.tolerable_failures
            )));
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_checkpoints_are_kept() {
        assert_eq!(to_discard(&[1, 2, 3, 4], 2), [1, 2]);
        assert_eq!(to_discard(&[4], 3), Vec::<CheckpointId>::new());
        assert_eq!(to_discard(&[], 1), Vec::<CheckpointId>::new());
        assert_eq!(to_discard(&[1, 2], 0), [1], "at least one is kept");
    }

    #[test]
    fn only_checkpoints_with_metadata_count_as_completed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::super::LocalStore::new(dir.path());
        store.put(&format!("{}t-0", checkpoint_folder("j/", 1)), b"x").expect("put");
        store.put(&format!("{}{METADATA}", checkpoint_folder("j/", 1)), b"{}").expect("put");
        store.put(&format!("{}t-0", checkpoint_folder("j/", 2)), b"x").expect("put");
        store.put(&format!("{}{METADATA}", checkpoint_folder("other/", 7)), b"{}").expect("put");
        assert_eq!(completed_checkpoints(&store, "j/").expect("list"), [1]);
        assert_eq!(newest_checkpoint_id(&store, "j/").expect("list"), 2);
        let store: Arc<dyn CheckpointStore> = Arc::new(store);
        let error = Restore::load(&store, "j/", 2).expect_err("incomplete");
        assert!(error.message.contains("did not complete"), "{}", error.message);
    }

    #[test]
    fn a_restore_starts_from_the_newest_readable_checkpoint_and_drops_incomplete_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::super::LocalStore::new(dir.path());
        let write = |id: CheckpointId, snapshot: &[u8]| {
            let folder = checkpoint_folder("j/", id);
            store.put(&format!("{folder}t-0"), snapshot).expect("put");
            let tasks = BTreeMap::from([("t-0".to_string(), ("t-0".to_string(), snapshot.len() as u64))]);
            let metadata = Metadata {
                format: METADATA_FORMAT,
                checkpoint: id,
                completed_at_ms: 0,
                max_parallelism: None,
                tasks,
                shared: Vec::new(),
            };
            store.put(&format!("{folder}{METADATA}"), &serde_json::to_vec(&metadata).expect("json")).expect("put");
        };
        let good = TaskSnapshot { task: "t-0".into(), ..TaskSnapshot::default() }.encode().expect("encode");
        write(1, &good);
        write(2, b"damaged");
        store.put(&format!("{}t-0", checkpoint_folder("j/", 3)), &good).expect("an unfinished checkpoint");
        let store: Arc<dyn CheckpointStore> = Arc::new(store);
        let (restore, newest) = prepare_restore(&store, "j/").expect("prepare");
        assert_eq!(restore.map(|r| r.checkpoint), Some(1), "the damaged newest one is passed over");
        assert_eq!(newest, 3, "numbers go on after every id used");
        assert_eq!(newest_checkpoint_id(store.as_ref(), "j/").expect("list"), 2, "the unfinished one is gone");
    }

    #[test]
    fn a_finished_subtask_still_counts_in_the_parallelism_a_checkpoint_was_taken_at() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn CheckpointStore> = Arc::new(super::super::LocalStore::new(dir.path()));
        let folder = checkpoint_folder("j/", 1);
        let state =
            |extra: &[u8]| OperatorSnapshot { layout: "sink".into(), extra: extra.to_vec(), ..Default::default() };
        let tasks = [
            TaskSnapshot { task: "src-0".into(), finished: true, ..Default::default() },
            TaskSnapshot {
                task: "src-1".into(),
                operators: vec![("out".into(), 1, state(b"one"))],
                ..Default::default()
            },
        ];
        let mut names = BTreeMap::new();
        for task in &tasks {
            let bytes = task.encode().expect("encode");
            store.put(&format!("{folder}{}", task.task), &bytes).expect("put");
            names.insert(task.task.clone(), (task.task.clone(), bytes.len() as u64));
        }
        let metadata = Metadata {
            format: METADATA_FORMAT,
            checkpoint: 1,
            completed_at_ms: 0,
            max_parallelism: Some(128),
            tasks: names,
            shared: Vec::new(),
        };
        store.put(&format!("{folder}{METADATA}"), &serde_json::to_vec(&metadata).expect("json")).expect("put");
        let mut restore = Restore::load(&store, "j/", 1).expect("load");
        // At the same parallelism (2), subtask 1 gets its own snapshot, per-subtask bytes included.
        let (own, _) = restore.operator("out", 1, 2, 128).expect("state");
        assert_eq!(own.extra, b"one", "the fast path, as the parallelism did not change");
    }
}
