//! The control plane: modules and job definitions per tenant, quotas, the servers of a cluster and their leases,
//! module bytes by content hash, and compiled code.
//!
//! ```text
//! <data>/eddy.db                       SQLite (WAL, synchronous=FULL): the records, on one server
//!   or [cluster] database = "postgres://…" PostgreSQL: the same records, shared by the servers of a cluster
//! <data>/blobs/<sha256>.wasm           uploaded bytes (shared by tenants that upload the same module)
//! <data>/cache/<sha256>-<engine>.cwasm compiled code (owned by the Wasm host)
//! <data>/tenants.imported/             the old JSON-file layout, once imported into eddy.db
//! ```
//!
//! Both databases sit behind [`Database`] and pass one test suite (`tests.rs`). Every write is one transaction,
//! committed before the call returns, so an acknowledged write survives a kill, and concurrent writers never tear a
//! record. A module version is created at most once: the primary key `(tenant, name, version)` decides a race
//! ([`Store::create_module`]). Records are kept as JSON beside their key columns, so a field added to a record
//! needs no schema change. Blobs stay files: each is written under a unique temporary name, synced, renamed into
//! place, and its folder synced.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

pub use postgres::Postgres;
pub use sqlite::Sqlite;

use crate::config::QuotaOverrides;
use eddy_engine::checkpoint::CheckpointStore;
use eddy_engine::function::UdfKind;
use eddy_engine::runtime::JobState;
use eddy_engine::state::DeclaredState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// An uploaded module version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModuleRecord {
    /// The module's name.
    pub name: String,
    /// The version.
    pub version: String,
    /// Hex SHA-256 of the component.
    pub hash: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// Function kinds it exports.
    #[schema(value_type = Vec<String>)]
    pub kinds: Vec<UdfKind>,
    /// Upload time, milliseconds since the Unix epoch.
    pub uploaded_at: i64,
    /// Hex SHA-256 of its compiled code in the server's cache, recorded when it was compiled: compiled code is
    /// loaded only if it still has this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled_sha256: Option<String>,
    /// The keyed states it declares (`eddy:udf/state-schema`): what upgrades of a job to or from it are checked
    /// against. Absent when the module does not declare them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub declared_states: Option<Vec<DeclaredState>>,
}

/// Whether a job should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Run it, and start it again when the server restarts.
    Running,
    /// Leave it stopped.
    Stopped,
}

/// A submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id.
    pub id: String,
    /// The spec's name.
    pub name: String,
    /// The spec as submitted.
    pub spec: String,
    /// Modules as written in the spec -> the content hash they resolved to at submission.
    pub modules: BTreeMap<String, String>,
    /// Submission time, milliseconds since the Unix epoch.
    pub submitted_at: i64,
    /// Whether it should run.
    pub desired: Desired,
    /// Its last known state.
    pub state: JobState,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Starts in a row after which the server stopped without a clean shutdown while the job ran: a job that keeps
    /// taking the server down is held instead of being resumed again.
    #[serde(default)]
    pub crash_streak: u32,
    /// The savepoint its first run starts from (later runs start from the job's own checkpoints).
    #[serde(default)]
    pub start_from: Option<StartFrom>,
    /// Upgrades of its modules, oldest first.
    #[serde(default)]
    pub upgrades: Vec<UpgradeRecord>,
    /// Every checkpoint and savepoint id the job has used or reserved is at most this: the next run numbers its
    /// checkpoints after it, whatever checkpoints were deleted (an upgrade's), so ids only grow.
    #[serde(default)]
    pub checkpoint_id_floor: u64,
}

/// One upgrade of a running job's modules.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UpgradeRecord {
    /// 1 for the job's first upgrade, and so on.
    pub number: u32,
    /// When it was asked for, milliseconds since the Unix epoch.
    pub requested_at: i64,
    /// The module versions asked for, `name@version` each.
    pub modules: Vec<String>,
    /// Modules as written in the spec -> content hash, before.
    pub from: BTreeMap<String, String>,
    /// The same, after.
    pub to: BTreeMap<String, String>,
    /// How it went.
    pub outcome: UpgradeOutcome,
    /// Why it was rolled back or failed.
    pub reason: Option<String>,
    /// What was not checked, or is dropped because the upgrade allowed it.
    pub warnings: Vec<String>,
    /// The savepoint the new modules started from (and a rollback too).
    pub savepoint: Option<String>,
    /// Milliseconds from the old run's sources stopping to the new run running.
    pub downtime_ms: Option<u64>,
    /// When the outcome was known.
    pub finished_at: Option<i64>,
}

/// How an upgrade went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeOutcome {
    /// Still going: the savepoint, the switch, or the new run's probation until its first checkpoint.
    InProgress,
    /// The new modules run.
    Upgraded,
    /// The new modules failed; the old ones run again from the same savepoint.
    RolledBack,
    /// The savepoint failed (the old modules run on), or the rollback failed too (the job failed).
    Failed,
    /// The job was cancelled during the upgrade.
    Canceled,
    /// The server stopped during the upgrade; the job resumed with the modules it had then.
    Interrupted,
}

/// A savepoint a job starts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartFrom {
    /// The savepoint's id.
    pub savepoint: String,
    /// Start even if the savepoint holds state of operators the job does not have (that state is dropped).
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// The savepoint's checkpoint id, when it is the job's own (a stop or an upgrade took it): a run goes on from it
    /// rather than from an older checkpoint of the job.
    #[serde(default)]
    pub checkpoint: Option<u64>,
}

/// Where the control plane's records live. Records are JSON text beside their key columns; [`Store`] turns them
/// into types, so a backend only stores and finds them.
pub trait Database: Send + Sync {
    /// Every tenant with a module or a job, sorted.
    fn tenants(&self) -> io::Result<Vec<String>>;
    /// Saves a module version's record, replacing it if it exists.
    fn put_module(&self, tenant: &str, name: &str, version: &str, record: &str) -> io::Result<()>;
    /// Saves a module version's record unless the version exists: whether it was saved.
    fn create_module(&self, tenant: &str, name: &str, version: &str, record: &str) -> io::Result<bool>;
    /// A tenant's module records, in the order they were created.
    fn modules(&self, tenant: &str) -> io::Result<Vec<String>>;
    /// Deletes a module version's record: whether there was one.
    fn remove_module(&self, tenant: &str, name: &str, version: &str) -> io::Result<bool>;
    /// Saves a job's record, replacing it if it exists (it keeps its place in the order). With a fence, a new
    /// job is saved as the fence's node's at its epoch, and an existing one only if that node still owns it at
    /// that epoch: whether it was saved.
    fn put_job(&self, tenant: &str, id: &str, record: &str, fence: Option<&Fence>) -> io::Result<bool>;
    /// Saves a job's record and gives up `fence`'s ownership of it (no owner, the epoch bumped), if that node
    /// still owns it at that epoch: whether it did.
    fn release_job(&self, tenant: &str, id: &str, record: &str, fence: &Fence) -> io::Result<bool>;
    /// Whether `fence`'s node still owns the job at the fence's epoch.
    fn holds_job(&self, tenant: &str, id: &str, fence: &Fence) -> io::Result<bool>;
    /// The node that owns the job with this id (ids are unique across tenants), if the job exists and has one.
    fn job_owner(&self, id: &str) -> io::Result<Option<String>>;
    /// Makes `node` the owner of a job whose epoch is still `seen`, bumping the epoch: whether it did.
    fn claim_job(&self, tenant: &str, id: &str, node: &str, seen: u64) -> io::Result<bool>;
    /// Deletes a job's record, if there is one.
    fn remove_job(&self, tenant: &str, id: &str) -> io::Result<()>;
    /// A tenant's job records with their owners, in the order they were first saved.
    fn jobs(&self, tenant: &str) -> io::Result<Vec<StoredJob>>;
    /// Saves a tenant's quota overrides, replacing earlier ones.
    fn put_quota(&self, tenant: &str, overrides: &str) -> io::Result<()>;
    /// Every tenant's quota overrides, by tenant.
    fn quotas(&self) -> io::Result<Vec<(String, String)>>;
    /// Saves a value under a key, replacing it.
    fn put_meta(&self, key: &str, value: &str) -> io::Result<()>;
    /// The value under a key.
    fn meta(&self, key: &str) -> io::Result<Option<String>>;
    /// Saves a server's record and extends its lease to `lease` from now, by the database's clock.
    fn renew_node(&self, node_id: &str, record: &str, lease: Duration) -> io::Result<()>;
    /// Every server's record and how long its lease has left, by node id.
    fn nodes(&self) -> io::Result<Vec<NodeLease>>;
    /// Deletes a server's record (it left the cluster cleanly).
    fn remove_node(&self, node_id: &str) -> io::Result<()>;
}

/// Which node may write a job's record: the owner at its epoch. A node that lost the job (its lease lapsed and
/// another node claimed it, bumping the epoch) is fenced out: its writes change nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The owner's node id.
    pub node: String,
    /// The epoch it owns the job at.
    pub epoch: u64,
}

/// A job's stored record and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJob {
    /// The [`JobRecord`] as JSON.
    pub record: String,
    /// The node that runs it; none for a job saved by a single server.
    pub owner: Option<String>,
    /// Bumped by every claim.
    pub epoch: u64,
}

/// A job as stored, with its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedJob {
    /// The job.
    pub record: JobRecord,
    /// The node that runs it; none for a job saved by a single server.
    pub owner: Option<String>,
    /// Bumped by every claim.
    pub epoch: u64,
}

/// A server's stored record and its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLease {
    /// The [`NodeRecord`] as JSON.
    pub record: String,
    /// Milliseconds until the lease lapses; negative once it has.
    pub expires_in_ms: i64,
}

/// A server of the cluster, as it last described itself when it renewed its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    /// Its id, unique in the cluster.
    pub node_id: String,
    /// The URL other servers and clients reach its API at.
    pub url: String,
    /// The Eddy version it runs.
    pub version: String,
    /// When it started, milliseconds since the Unix epoch.
    pub started_at: i64,
    /// Ids of the jobs it runs.
    pub jobs: Vec<String>,
    /// Subtasks of the jobs it runs.
    pub subtasks: u64,
    /// Guest memory its jobs hold, in MiB, against `memory_mb`.
    pub memory_used_mb: u64,
    /// Its capacity: guest memory of all jobs, in MiB.
    pub memory_mb: u64,
    /// Its capacity: cores.
    pub cores: u32,
    /// How long its lease lasts from each renewal, in milliseconds.
    pub lease_ms: u64,
    /// Whether it is shutting down or drained: it takes no new jobs.
    #[serde(default)]
    pub draining: bool,
}

/// Records of the old JSON-file layout, to import: modules `(tenant, name, version, json)`, jobs
/// `(tenant, id, json)`.
#[derive(Debug, Default)]
pub struct LegacyRecords {
    modules: Vec<(String, String, String, String)>,
    jobs: Vec<(String, String, String)>,
}

/// The control plane: records in a [`Database`], module bytes in the data folder. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    db: Box<dyn Database>,
    /// In a cluster, where module bytes are shared (the checkpoint storage, under `modules/`): a node that takes
    /// over a job fetches its modules from there.
    shared_blobs: Option<Arc<dyn CheckpointStore>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.inner.root).finish_non_exhaustive()
    }
}

/// Where module bytes are shared in a cluster, in the checkpoint storage.
fn shared_blob_path(hash: &str) -> String {
    format!("modules/{hash}.wasm")
}

/// Prefix of blobs being written; left over only by a crash.
const TMP_PREFIX: &str = ".incoming-";

fn to_json<T: Serialize>(record: &T) -> io::Result<String> {
    serde_json::to_string(record).map_err(io::Error::other)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Parses stored records; unreadable ones are logged and skipped.
fn parse_records<T: for<'de> Deserialize<'de>>(what: &str, tenant: &str, rows: io::Result<Vec<String>>) -> Vec<T> {
    let rows = rows.unwrap_or_else(|e| {
        tracing::error!(tenant, "cannot read {what}: {e}");
        Vec::new()
    });
    let mut records = Vec::with_capacity(rows.len());
    for json in rows {
        match serde_json::from_str(&json) {
            Ok(record) => records.push(record),
            Err(e) => tracing::warn!(tenant, "ignoring an unreadable stored record of {what}: {e}"),
        }
    }
    records
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to `dir/name` so that a reader (or a restart after a crash) sees either the whole new file or
/// none: a unique temporary file, synced, renamed into place, and the folder synced.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(TMP_PREFIX).tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Removes temporary blobs a crash left behind (older than an hour, so no write in progress is touched).
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_str().is_some_and(|n| n.starts_with(TMP_PREFIX))
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(3600)));
        if stale && let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!("cannot remove {}: {e}", entry.path().display());
        }
    }
}

/// Records of the old layout: every `*.json` in `dir` (none if it is missing); unreadable ones are skipped.
fn read_all<T: for<'de> Deserialize<'de>>(dir: &Path) -> Vec<T> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<T>(&b).map_err(|e| e.to_string()))
        {
            Ok(record) => records.push(record),
            Err(e) => tracing::warn!("not importing unreadable {}: {e}", path.display()),
        }
    }
    records
}

/// The old layout (`<root>/tenants/<t>/{modules,jobs}/*.json`), imported into SQLite once and then moved aside to
/// `tenants.imported`.
fn import_legacy(db: &Sqlite, root: &Path) -> io::Result<()> {
    let legacy = root.join("tenants");
    if !legacy.is_dir() {
        return Ok(());
    }
    let imported = db.import_legacy(|| {
        let mut records = LegacyRecords::default();
        for entry in std::fs::read_dir(&legacy)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let Some(tenant) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!("not importing tenant folder {}: its name is not UTF-8", entry.path().display());
                continue;
            };
            for record in read_all::<ModuleRecord>(&entry.path().join("modules")) {
                let json = to_json(&record)?;
                records.modules.push((tenant.clone(), record.name, record.version, json));
            }
            for record in read_all::<JobRecord>(&entry.path().join("jobs")) {
                records.jobs.push((tenant.clone(), record.id.clone(), to_json(&record)?));
            }
        }
        Ok(records)
    })?;
    if !imported {
        tracing::warn!("{} was imported before; moving it aside without importing it again", legacy.display());
    }
    let mut target = root.join("tenants.imported");
    for n in 2.. {
        if !target.exists() {
            break;
        }
        target = root.join(format!("tenants.imported.{n}"));
    }
    std::fs::rename(&legacy, &target)?;
    sync_dir(root)
}

impl Store {
    /// Opens (creating) the data folder and its SQLite database, importing the old JSON-file layout if it is there.
    pub fn open(root: &Path) -> io::Result<Store> {
        Store::open_with(root, None, None)
    }

    /// Opens (creating) the data folder, with the records in PostgreSQL at `database` (a `postgres://` URL) or, when
    /// none is given, in SQLite in the folder; module bytes are also kept in `shared_blobs` when given.
    pub fn open_with(
        root: &Path,
        database: Option<&str>,
        shared_blobs: Option<Arc<dyn CheckpointStore>>,
    ) -> io::Result<Store> {
        for sub in ["blobs", "cache"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let db: Box<dyn Database> = match database {
            Some(url) => Box::new(Postgres::open(url)?),
            None => {
                let sqlite = Sqlite::open(&root.join("eddy.db"))?;
                import_legacy(&sqlite, root)?;
                Box::new(sqlite)
            }
        };
        sync_dir(root)?;
        remove_stale_temporaries(&root.join("blobs"));
        Ok(Store { inner: Arc::new(Inner { root: root.to_path_buf(), db, shared_blobs }) })
    }

    /// Where compiled code is cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.inner.root.join("cache")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.inner.root.join("blobs")
    }

    /// The file name of a blob; a hash is hex digits, so it cannot name anything outside the blobs folder.
    fn blob_name(hash: &str) -> io::Result<String> {
        if hash.is_empty() || hash.len() > 128 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a content hash: {hash:?}")));
        }
        Ok(format!("{hash}.wasm"))
    }

    /// Stores module bytes under their hash, durably. A file already there with the same bytes is kept (and
    /// synced); one with other bytes (say, torn by a crash under an older Eddy) is replaced.
    pub fn put_blob(&self, hash: &str, bytes: &[u8]) -> io::Result<()> {
        self.put_local_blob(hash, bytes)?;
        if let Some(shared) = &self.inner.shared_blobs {
            shared.put(&shared_blob_path(hash), bytes).map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    fn put_local_blob(&self, hash: &str, bytes: &[u8]) -> io::Result<()> {
        let name = Self::blob_name(hash)?;
        let dir = self.blobs_dir();
        match std::fs::File::open(dir.join(&name)) {
            Ok(mut file) => {
                if file.metadata()?.len() == bytes.len() as u64 {
                    let mut existing = Vec::with_capacity(bytes.len());
                    file.read_to_end(&mut existing)?;
                    if existing == bytes {
                        return file.sync_all();
                    }
                }
                tracing::warn!("stored bytes of {hash} differ from an upload of them; writing them again");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        write_durably(&dir, &name, bytes)
    }

    /// Module bytes by hash: from the data folder, or else (in a cluster) from the shared copy, kept locally from
    /// then on.
    pub fn blob(&self, hash: &str) -> Option<Vec<u8>> {
        let name = Self::blob_name(hash).ok()?;
        if let Ok(bytes) = std::fs::read(self.blobs_dir().join(name)) {
            return Some(bytes);
        }
        let bytes = match self.inner.shared_blobs.as_ref()?.get(&shared_blob_path(hash)) {
            Ok(bytes) => bytes?,
            Err(e) => {
                tracing::warn!("cannot fetch module bytes {hash}: {e}");
                return None;
            }
        };
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if !digest.eq_ignore_ascii_case(hash) {
            tracing::error!("the shared copy of module bytes {hash} has digest {digest}; not using it");
            return None;
        }
        if let Err(e) = self.put_local_blob(hash, &bytes) {
            tracing::warn!("cannot keep module bytes {hash} locally: {e}");
        }
        Some(bytes)
    }

    /// Removes module bytes.
    pub fn remove_blob(&self, hash: &str) -> io::Result<()> {
        let dir = self.blobs_dir();
        match std::fs::remove_file(dir.join(Self::blob_name(hash)?)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(()) => sync_dir(&dir),
        }
    }

    /// Every tenant that has stored something, sorted.
    pub fn tenants(&self) -> Vec<String> {
        self.inner.db.tenants().unwrap_or_else(|e| {
            tracing::error!("cannot list tenants: {e}");
            Vec::new()
        })
    }

    /// Saves module metadata, replacing the version's record if it exists.
    pub fn put_module(&self, tenant: &str, record: &ModuleRecord) -> io::Result<()> {
        self.inner.db.put_module(tenant, &record.name, &record.version, &to_json(record)?)
    }

    /// Saves a new module version: true if it was created, false if `tenant` already has this name and version
    /// (then nothing is written). Of concurrent calls for one version, exactly one creates it.
    pub fn create_module(&self, tenant: &str, record: &ModuleRecord) -> io::Result<bool> {
        self.inner.db.create_module(tenant, &record.name, &record.version, &to_json(record)?)
    }

    /// A tenant's modules, in the order they were created.
    pub fn modules(&self, tenant: &str) -> Vec<ModuleRecord> {
        parse_records("modules", tenant, self.inner.db.modules(tenant))
    }

    /// Deletes module metadata; an error of kind `NotFound` if there is none.
    pub fn remove_module(&self, tenant: &str, name: &str, version: &str) -> io::Result<()> {
        if !self.inner.db.remove_module(tenant, name, version)? {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no module {name}@{version}")));
        }
        Ok(())
    }

    /// Saves a job, replacing its record if it exists.
    pub fn put_job(&self, tenant: &str, record: &JobRecord) -> io::Result<()> {
        self.inner.db.put_job(tenant, &record.id, &to_json(record)?, None).map(drop)
    }

    /// Saves a job as `fence`'s node's: a new one becomes its at its epoch; an existing one is saved only while
    /// that node owns it at that epoch. False: another node claimed it, and nothing was written.
    pub fn put_owned_job(&self, tenant: &str, record: &JobRecord, fence: &Fence) -> io::Result<bool> {
        self.inner.db.put_job(tenant, &record.id, &to_json(record)?, Some(fence))
    }

    /// Makes `node` the owner of a job whose epoch is still `seen`: the fence it now writes with, or none if
    /// another node claimed it first.
    pub fn claim_job(&self, tenant: &str, id: &str, node: &str, seen: u64) -> io::Result<Option<Fence>> {
        let claimed = self.inner.db.claim_job(tenant, id, node, seen)?;
        Ok(claimed.then(|| Fence { node: node.to_string(), epoch: seen + 1 }))
    }

    /// Saves a job and gives up `fence`'s ownership of it, for another node to claim; false if that node no longer
    /// owned it.
    pub fn release_job(&self, tenant: &str, record: &JobRecord, fence: &Fence) -> io::Result<bool> {
        self.inner.db.release_job(tenant, &record.id, &to_json(record)?, fence)
    }

    /// Whether `fence`'s node still owns the job at the fence's epoch: a checkpoint is completed only if it does.
    pub fn holds_job(&self, tenant: &str, id: &str, fence: &Fence) -> io::Result<bool> {
        self.inner.db.holds_job(tenant, id, fence)
    }

    /// The node that owns the job with this id, if the job exists and has one.
    pub fn job_owner(&self, id: &str) -> io::Result<Option<String>> {
        self.inner.db.job_owner(id)
    }

    /// A tenant's jobs with their owners, in the order they were first saved; unreadable ones are skipped.
    pub fn owned_jobs(&self, tenant: &str) -> io::Result<Vec<OwnedJob>> {
        let mut jobs = Vec::new();
        for stored in self.inner.db.jobs(tenant)? {
            match serde_json::from_str(&stored.record) {
                Ok(record) => jobs.push(OwnedJob { record, owner: stored.owner, epoch: stored.epoch }),
                Err(e) => tracing::warn!(tenant, "ignoring an unreadable stored job: {e}"),
            }
        }
        Ok(jobs)
    }

    /// Deletes a job's definition (nothing to do if there is none).
    pub fn remove_job(&self, tenant: &str, id: &str) -> io::Result<()> {
        self.inner.db.remove_job(tenant, id)
    }

    /// A tenant's jobs, in the order they were first saved.
    pub fn jobs(&self, tenant: &str) -> Vec<JobRecord> {
        let rows = self.inner.db.jobs(tenant).map(|jobs| jobs.into_iter().map(|j| j.record).collect());
        parse_records("jobs", tenant, rows)
    }

    /// Saves the quotas an admin set for `tenant`, replacing earlier ones.
    pub fn put_quota(&self, tenant: &str, overrides: &QuotaOverrides) -> io::Result<()> {
        self.inner.db.put_quota(tenant, &to_json(overrides)?)
    }

    /// Every tenant's quotas an admin set.
    pub fn quotas(&self) -> Vec<(String, QuotaOverrides)> {
        let rows = self.inner.db.quotas().unwrap_or_else(|e| {
            tracing::error!("cannot read quotas: {e}");
            Vec::new()
        });
        let mut all = Vec::with_capacity(rows.len());
        for (tenant, json) in rows {
            match serde_json::from_str(&json) {
                Ok(overrides) => all.push((tenant, overrides)),
                Err(e) => tracing::error!(tenant, "ignoring unreadable quotas: {e}"),
            }
        }
        all
    }

    /// Saves a tenant's cumulative usage (as JSON), replacing what was saved.
    pub fn put_usage(&self, tenant: &str, usage: &str) -> io::Result<()> {
        self.inner.db.put_meta(&format!("usage/{tenant}"), usage)
    }

    /// A tenant's cumulative usage as saved, if any.
    pub fn usage(&self, tenant: &str) -> Option<String> {
        self.inner.db.meta(&format!("usage/{tenant}")).unwrap_or_else(|e| {
            tracing::error!(tenant, "cannot read usage: {e}");
            None
        })
    }

    /// Saves this server's record and extends its lease to `lease` from now.
    pub fn renew_node(&self, record: &NodeRecord, lease: Duration) -> io::Result<()> {
        self.inner.db.renew_node(&record.node_id, &to_json(record)?, lease)
    }

    /// Every server of the cluster with how long its lease has left (negative: lapsed), by node id.
    pub fn nodes(&self) -> io::Result<Vec<(NodeRecord, i64)>> {
        let mut nodes = Vec::new();
        for lease in self.inner.db.nodes()? {
            match serde_json::from_str(&lease.record) {
                Ok(record) => nodes.push((record, lease.expires_in_ms)),
                Err(e) => tracing::warn!("ignoring an unreadable node record: {e}"),
            }
        }
        Ok(nodes)
    }

    /// Deletes a server's record: it left the cluster.
    pub fn remove_node(&self, node_id: &str) -> io::Result<()> {
        self.inner.db.remove_node(node_id)
    }
}
