//! The control plane on disk: modules and job definitions per tenant, module bytes by content hash, and compiled
//! code.
//!
//! ```text
//! <data>/eddy.db                       SQLite (WAL, synchronous=FULL): module versions and jobs of every tenant
//! <data>/blobs/<sha256>.wasm           uploaded bytes (shared by tenants that upload the same module)
//! <data>/cache/<sha256>-<engine>.cwasm compiled code (owned by the Wasm host)
//! <data>/tenants.imported/             the old JSON-file layout, once imported into eddy.db
//! ```
//!
//! Every write to the database is one transaction, committed (and synced) before the call returns, so an
//! acknowledged write survives a kill or a power loss, and concurrent writers never tear a record. A module
//! version is created at most once: the primary key `(tenant, name, version)` decides a race
//! ([`Store::create_module`]). Records are kept as JSON in a `record` column beside their key columns, so a field
//! added to a record needs no schema change. Blobs stay files: each is written under a unique temporary name,
//! synced, renamed into place, and its folder synced.

use crate::config::QuotaOverrides;
use eddy_engine::function::UdfKind;
use eddy_engine::runtime::JobState;
use eddy_engine::state::DeclaredState;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
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

/// The data folder: the control-plane database and the module bytes. Cheap to clone; every clone shares one
/// connection, so writes are serialized.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    db: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.inner.root).finish_non_exhaustive()
    }
}

/// The schema version this code writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE modules (
    tenant  TEXT NOT NULL,
    name    TEXT NOT NULL,
    version TEXT NOT NULL,
    record  TEXT NOT NULL, -- ModuleRecord as JSON
    PRIMARY KEY (tenant, name, version)
);
CREATE TABLE jobs (
    tenant TEXT NOT NULL,
    id     TEXT NOT NULL,
    record TEXT NOT NULL, -- JobRecord as JSON
    PRIMARY KEY (tenant, id)
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// What version 2 adds: quotas an admin set over the API.
const SCHEMA_2: &str = "
CREATE TABLE quotas (
    tenant     TEXT PRIMARY KEY,
    overrides  TEXT NOT NULL -- QuotaOverrides as JSON
);
";

/// Set in `meta` in the transaction that imported the old JSON layout.
const LEGACY_IMPORTED: &str = "legacy_imported";

/// Prefix of blobs being written; left over only by a crash.
const TMP_PREFIX: &str = ".incoming-";

fn db(e: rusqlite::Error) -> io::Error {
    io::Error::other(e)
}

fn to_json<T: Serialize>(record: &T) -> io::Result<String> {
    serde_json::to_string(record).map_err(io::Error::other)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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

/// Opens the database, sets it up for durability and brings its schema up to date.
fn open_db(path: &Path) -> io::Result<Connection> {
    let mut conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(io::Error::other(format!("{} cannot use write-ahead logging (mode {mode})", path.display())));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
    // Read and set up under the write lock, so two servers opening one new folder cannot both create the schema.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
    match version {
        0 => tx.execute_batch(&format!("{SCHEMA} {SCHEMA_2} PRAGMA user_version = {SCHEMA_VERSION};")).map_err(db)?,
        1 => tx.execute_batch(&format!("{SCHEMA_2} PRAGMA user_version = {SCHEMA_VERSION};")).map_err(db)?,
        SCHEMA_VERSION => {}
        newer => {
            return Err(io::Error::other(format!(
                "{} has schema version {newer}, written by a newer Eddy (this one knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
    }
    tx.commit().map_err(db)?;
    Ok(conn)
}

/// Imports the old layout (`<root>/tenants/<t>/{modules,jobs}/*.json`) in one transaction, then moves it aside to
/// `tenants.imported`. The import is marked in the same transaction, so a crash before the move does not import
/// it twice.
fn import_legacy(conn: &mut Connection, root: &Path) -> io::Result<()> {
    let legacy = root.join("tenants");
    if !legacy.is_dir() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
    let done = tx
        .query_row("SELECT 1 FROM meta WHERE key = ?1", [LEGACY_IMPORTED], |_| Ok(()))
        .optional()
        .map_err(db)?
        .is_some();
    if done {
        tracing::warn!("{} was imported before; moving it aside without importing it again", legacy.display());
    } else {
        let (mut modules, mut jobs) = (0, 0);
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
                modules += insert_module(&tx, &tenant, &record)?;
            }
            for record in read_all::<JobRecord>(&entry.path().join("jobs")) {
                jobs += tx
                    .execute(
                        "INSERT INTO jobs (tenant, id, record) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        params![tenant, record.id, to_json(&record)?],
                    )
                    .map_err(db)?;
            }
        }
        tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![LEGACY_IMPORTED, now_ms().to_string()])
            .map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!("imported {modules} module versions and {jobs} jobs from {}", legacy.display());
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

/// Inserts a module version unless it exists; returns how many rows were inserted (0 or 1).
fn insert_module(conn: &Connection, tenant: &str, record: &ModuleRecord) -> io::Result<usize> {
    conn.execute(
        "INSERT INTO modules (tenant, name, version, record) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![tenant, record.name, record.version, to_json(record)?],
    )
    .map_err(db)
}

/// The records `sql` selects (one JSON column, bound to `tenant`); unreadable ones are logged and skipped.
fn select_records<T: for<'de> Deserialize<'de>>(conn: &Connection, sql: &str, tenant: &str) -> io::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows = stmt.query_map([tenant], |r| r.get::<_, String>(0)).map_err(db)?;
    let mut records = Vec::new();
    for json in rows {
        match serde_json::from_str(&json.map_err(db)?) {
            Ok(record) => records.push(record),
            Err(e) => tracing::warn!(tenant, "ignoring an unreadable stored record: {e}"),
        }
    }
    Ok(records)
}

impl Store {
    /// Opens (creating) the data folder and its database, importing the old JSON-file layout if it is there.
    pub fn open(root: &Path) -> io::Result<Store> {
        for sub in ["blobs", "cache"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let mut conn = open_db(&root.join("eddy.db"))?;
        import_legacy(&mut conn, root)?;
        sync_dir(root)?;
        remove_stale_temporaries(&root.join("blobs"));
        Ok(Store { inner: Arc::new(Inner { root: root.to_path_buf(), db: Mutex::new(conn) }) })
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

    /// Module bytes by hash.
    pub fn blob(&self, hash: &str) -> Option<Vec<u8>> {
        std::fs::read(self.blobs_dir().join(Self::blob_name(hash).ok()?)).ok()
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
        let conn = self.inner.db.lock();
        let tenants = (|| {
            let mut stmt = conn
                .prepare_cached("SELECT tenant FROM modules UNION SELECT tenant FROM jobs ORDER BY tenant")
                .map_err(db)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })();
        tenants.unwrap_or_else(|e: io::Error| {
            tracing::error!("cannot list tenants: {e}");
            Vec::new()
        })
    }

    /// Saves module metadata, replacing the version's record if it exists.
    pub fn put_module(&self, tenant: &str, record: &ModuleRecord) -> io::Result<()> {
        let json = to_json(record)?;
        self.inner
            .db
            .lock()
            .execute(
                "INSERT INTO modules (tenant, name, version, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, name, version) DO UPDATE SET record = excluded.record",
                params![tenant, record.name, record.version, json],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Saves a new module version: true if it was created, false if `tenant` already has this name and version
    /// (then nothing is written). Of concurrent calls for one version, exactly one creates it.
    pub fn create_module(&self, tenant: &str, record: &ModuleRecord) -> io::Result<bool> {
        Ok(insert_module(&self.inner.db.lock(), tenant, record)? == 1)
    }

    /// A tenant's modules, in the order they were created.
    pub fn modules(&self, tenant: &str) -> Vec<ModuleRecord> {
        let conn = self.inner.db.lock();
        select_records(&conn, "SELECT record FROM modules WHERE tenant = ?1 ORDER BY rowid", tenant).unwrap_or_else(
            |e| {
                tracing::error!(tenant, "cannot read modules: {e}");
                Vec::new()
            },
        )
    }

    /// Deletes module metadata; an error of kind `NotFound` if there is none.
    pub fn remove_module(&self, tenant: &str, name: &str, version: &str) -> io::Result<()> {
        let removed = self
            .inner
            .db
            .lock()
            .execute(
                "DELETE FROM modules WHERE tenant = ?1 AND name = ?2 AND version = ?3",
                params![tenant, name, version],
            )
            .map_err(db)?;
        if removed == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no module {name}@{version}")));
        }
        Ok(())
    }

    /// Saves a job, replacing its record if it exists.
    pub fn put_job(&self, tenant: &str, record: &JobRecord) -> io::Result<()> {
        let json = to_json(record)?;
        self.inner
            .db
            .lock()
            .execute(
                "INSERT INTO jobs (tenant, id, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, id) DO UPDATE SET record = excluded.record",
                params![tenant, record.id, json],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Deletes a job's definition (nothing to do if there is none).
    pub fn remove_job(&self, tenant: &str, id: &str) -> io::Result<()> {
        self.inner
            .db
            .lock()
            .execute("DELETE FROM jobs WHERE tenant = ?1 AND id = ?2", params![tenant, id])
            .map_err(db)?;
        Ok(())
    }

    /// Saves the quotas an admin set for `tenant`, replacing earlier ones.
    pub fn put_quota(&self, tenant: &str, overrides: &QuotaOverrides) -> io::Result<()> {
        let json = to_json(overrides)?;
        self.inner
            .db
            .lock()
            .execute(
                "INSERT INTO quotas (tenant, overrides) VALUES (?1, ?2)
                 ON CONFLICT (tenant) DO UPDATE SET overrides = excluded.overrides",
                params![tenant, json],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Every tenant's quotas an admin set.
    pub fn quotas(&self) -> Vec<(String, QuotaOverrides)> {
        let conn = self.inner.db.lock();
        let read = || -> io::Result<Vec<(String, QuotaOverrides)>> {
            let mut statement = conn.prepare("SELECT tenant, overrides FROM quotas").map_err(db)?;
            let rows =
                statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))).map_err(db)?;
            let mut all = Vec::new();
            for row in rows {
                let (tenant, json) = row.map_err(db)?;
                match serde_json::from_str(&json) {
                    Ok(overrides) => all.push((tenant, overrides)),
                    Err(e) => tracing::error!(tenant, "ignoring unreadable quotas: {e}"),
                }
            }
            Ok(all)
        };
        read().unwrap_or_else(|e| {
            tracing::error!("cannot read quotas: {e}");
            Vec::new()
        })
    }

    /// Saves a tenant's cumulative usage (as JSON), replacing what was saved.
    pub fn put_usage(&self, tenant: &str, usage: &str) -> io::Result<()> {
        self.inner
            .db
            .lock()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![format!("usage/{tenant}"), usage],
            )
            .map_err(db)?;
        Ok(())
    }

    /// A tenant's cumulative usage as saved, if any.
    pub fn usage(&self, tenant: &str) -> Option<String> {
        let conn = self.inner.db.lock();
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [format!("usage/{tenant}")], |row| row.get(0)).ok()
    }

    /// A tenant's jobs, in the order they were first saved.
    pub fn jobs(&self, tenant: &str) -> Vec<JobRecord> {
        let conn = self.inner.db.lock();
        select_records(&conn, "SELECT record FROM jobs WHERE tenant = ?1 ORDER BY rowid", tenant).unwrap_or_else(|e| {
            tracing::error!(tenant, "cannot read jobs: {e}");
            Vec::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_records_and_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let module = ModuleRecord {
            name: "upper".into(),
            version: "1".into(),
            hash: "ab".repeat(32),
            size: 3,
            kinds: vec![UdfKind::Map],
            uploaded_at: 1,
            compiled_sha256: None,
            declared_states: Some(vec![eddy_engine::state::DeclaredState {
                name: "count".into(),
                kind: eddy_engine::state::StateKind::Value,
                ttl_ms: Some(1000),
            }]),
        };
        store.put_blob(&module.hash, b"abc").expect("blob");
        store.put_module("acme", &module).expect("module");
        let job = JobRecord {
            id: "j1".into(),
            name: "n".into(),
            spec: "name: n".into(),
            modules: BTreeMap::new(),
            submitted_at: 2,
            desired: Desired::Running,
            state: JobState::Running,
            error: None,
            crash_streak: 0,
            start_from: None,
            upgrades: Vec::new(),
            checkpoint_id_floor: 0,
        };
        store.put_job("acme", &job).expect("job");
        let reopened = Store::open(dir.path()).expect("reopen");
        assert_eq!(reopened.modules("acme"), vec![module.clone()]);
        assert_eq!(reopened.jobs("acme"), vec![job]);
        assert_eq!(reopened.blob(&module.hash).as_deref(), Some(&b"abc"[..]));
        assert!(reopened.modules("other").is_empty(), "tenants are separate");
        assert_eq!(reopened.tenants(), vec!["acme".to_string()]);
        reopened.remove_module("acme", "upper", "1").expect("remove");
        assert!(reopened.modules("acme").is_empty());
    }

    fn module(name: &str, version: &str, hash: &str) -> ModuleRecord {
        ModuleRecord {
            name: name.into(),
            version: version.into(),
            hash: hash.into(),
            size: 3,
            kinds: vec![UdfKind::Map],
            uploaded_at: 1,
            compiled_sha256: None,
            declared_states: None,
        }
    }

    /// A record as the old layout stored it.
    fn pretty<T: Serialize>(record: &T) -> Vec<u8> {
        serde_json::to_vec_pretty(record).expect("json")
    }

    fn job(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            name: format!("job {id}"),
            spec: format!("name: {id}"),
            modules: BTreeMap::from([("upper@1".to_string(), "ab".repeat(32))]),
            submitted_at: 2,
            desired: Desired::Running,
            state: JobState::Running,
            error: None,
            crash_streak: 0,
            start_from: None,
            upgrades: Vec::new(),
            checkpoint_id_floor: 0,
        }
    }

    #[test]
    fn uses_wal_and_full_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let conn = store.inner.db.lock();
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("journal_mode");
        let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0)).expect("synchronous");
        assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
        assert!(dir.path().join("eddy.db").is_file());
        assert!(!dir.path().join("tenants").exists(), "the old layout is not created");
    }

    #[test]
    fn lists_tenants_and_removes_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert!(store.tenants().is_empty());
        store.put_module("globex", &module("upper", "1", "ab")).expect("module");
        store.put_module("globex", &module("upper", "2", "cd")).expect("module");
        store.put_job("acme", &job("j1")).expect("job");
        store.put_job("acme", &job("j2")).expect("job");
        assert_eq!(store.tenants(), vec!["acme".to_string(), "globex".to_string()], "sorted, from modules and jobs");

        let mut stopped = job("j1");
        stopped.desired = Desired::Stopped;
        stopped.state = JobState::Canceled;
        store.put_job("acme", &stopped).expect("job");
        store.remove_job("acme", "j2").expect("remove job");
        store.remove_job("acme", "j2").expect("removing a missing job is fine");
        store.remove_job("globex", "j1").expect("another tenant's job is not touched");
        store.remove_module("globex", "upper", "1").expect("remove module");
        let missing = store.remove_module("globex", "upper", "1").expect_err("already removed");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);

        let reopened = Store::open(dir.path()).expect("reopen");
        assert_eq!(reopened.jobs("acme"), vec![stopped], "replaced in place, the removed one gone");
        assert_eq!(reopened.modules("globex"), vec![module("upper", "2", "cd")]);
        reopened.remove_job("acme", "j1").expect("remove job");
        assert_eq!(reopened.tenants(), vec!["globex".to_string()], "a tenant with nothing stored is gone");
    }

    #[test]
    fn creates_a_module_version_exactly_once_under_a_race() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let barrier = std::sync::Barrier::new(16);
        let created: Vec<(String, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let (store, barrier) = (store.clone(), &barrier);
                    s.spawn(move || {
                        let hash = format!("{i:02x}").repeat(32);
                        barrier.wait();
                        let created = store.create_module("acme", &module("race1", "1", &hash)).expect("create");
                        (hash, created)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let winners: Vec<&String> = created.iter().filter(|(_, c)| *c).map(|(h, _)| h).collect();
        assert_eq!(winners.len(), 1, "{created:?}");
        let stored = Store::open(dir.path()).expect("reopen").modules("acme");
        assert_eq!(stored.len(), 1);
        assert_eq!(&stored[0].hash, winners[0], "the stored record is the winner's");
        assert!(store.create_module("other", &module("race1", "1", "ff")).expect("create"), "tenants are separate");
        assert!(store.create_module("acme", &module("race1", "2", "ff")).expect("create"), "a new version");
    }

    #[test]
    fn concurrent_job_writes_all_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let barrier = std::sync::Barrier::new(16);
        let expected: Vec<JobRecord> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let (store, barrier) = (store.clone(), &barrier);
                    s.spawn(move || {
                        let mut record = job(&format!("job{i:02}"));
                        record.spec = "x".repeat(10_000 + i);
                        barrier.wait();
                        // Each job's own bookkeeping races the others': saved, then its state changes twice.
                        let states = [JobState::Running, JobState::Failed, JobState::Canceled];
                        for (n, state) in states.into_iter().enumerate() {
                            record.state = state;
                            record.crash_streak = n as u32;
                            store.put_job("acme", &record).expect("put job");
                        }
                        record
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        drop(store);
        let reopened = Store::open(dir.path()).expect("reopen");
        let mut jobs = reopened.jobs("acme");
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(jobs, expected, "all 16, each whole and at its last write");
        let conn = reopened.inner.db.lock();
        let rows: i64 = conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).expect("count");
        assert_eq!(rows, 16, "no row was skipped as unreadable");
    }

    #[test]
    fn imports_the_old_json_layout_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write = |path: &str, bytes: &[u8]| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write");
        };
        let upper = module("upper", "1", &"ab".repeat(32));
        write("tenants/acme/modules/upper@1.json", &pretty(&upper));
        write("tenants/acme/jobs/j1.json", &pretty(&job("j1")));
        write("tenants/acme/jobs/j2.json", &pretty(&job("j2")));
        write("tenants/acme/jobs/torn.json", br#"{"id": "j3", "na"#);
        write("tenants/acme/jobs/j4.tmp1234", b"left over by a crash");
        write("tenants/globex/jobs/g1.json", &pretty(&job("g1")));
        std::fs::create_dir_all(root.join("tenants/empty/modules")).expect("mkdir");

        let store = Store::open(root).expect("open imports");
        assert_eq!(store.tenants(), vec!["acme".to_string(), "globex".to_string()]);
        assert_eq!(store.modules("acme"), vec![upper]);
        let mut acme = store.jobs("acme");
        acme.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(acme, vec![job("j1"), job("j2")], "the torn file and the temporary one are skipped");
        assert_eq!(store.jobs("globex"), vec![job("g1")]);
        assert!(!root.join("tenants").exists(), "moved aside");
        assert!(root.join("tenants.imported/acme/jobs/j1.json").is_file(), "kept for inspection");

        // Not imported again: a removed job stays removed, even if the old folder is there again (as after a
        // crash between the import's commit and the move).
        store.remove_job("acme", "j2").expect("remove");
        drop(store);
        write("tenants/acme/jobs/j2.json", &pretty(&job("j2")));
        let reopened = Store::open(root).expect("reopen");
        assert_eq!(reopened.jobs("acme"), vec![job("j1")]);
        assert!(!root.join("tenants").exists());
        assert!(root.join("tenants.imported.2/acme/jobs/j2.json").is_file(), "moved aside beside the first");
    }

    #[test]
    fn blobs_are_written_whole_under_concurrent_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let hash = "cd".repeat(32);
        let bytes = vec![7u8; 1 << 20];
        let barrier = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for _ in 0..16 {
                let (store, barrier, hash, bytes) = (store.clone(), &barrier, &hash, &bytes);
                s.spawn(move || {
                    barrier.wait();
                    store.put_blob(hash, bytes).expect("put blob");
                });
            }
        });
        assert_eq!(store.blob(&hash).as_ref(), Some(&bytes));
        let names: Vec<String> = std::fs::read_dir(dir.path().join("blobs"))
            .expect("read blobs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![format!("{hash}.wasm")], "no temporary file is left");

        // A torn blob (an older Eddy did not sync) is replaced by the next upload of the same bytes.
        std::fs::write(dir.path().join("blobs").join(format!("{hash}.wasm")), &bytes[..100]).expect("tear");
        store.put_blob(&hash, &bytes).expect("put blob");
        assert_eq!(store.blob(&hash).as_ref(), Some(&bytes));
        store.remove_blob(&hash).expect("remove");
        store.remove_blob(&hash).expect("removing a missing blob is fine");
        assert_eq!(store.blob(&hash), None);
        assert!(store.put_blob("../../etc/x", b"x").is_err(), "a hash names nothing outside the blobs folder");
    }

    #[test]
    fn a_first_version_database_gains_the_quotas_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        let conn = Connection::open(dir.path().join("eddy.db")).expect("db");
        conn.execute_batch("DROP TABLE quotas; PRAGMA user_version = 1;").expect("back to version 1");
        drop(conn);
        let store = Store::open(dir.path()).expect("upgraded on open");
        let overrides = QuotaOverrides { jobs: Some(3), ..QuotaOverrides::default() };
        store.put_quota("acme", &overrides).expect("put");
        drop(store);
        assert_eq!(Store::open(dir.path()).expect("reopen").quotas(), vec![("acme".to_string(), overrides)]);
    }

    #[test]
    fn refuses_a_database_from_a_newer_eddy() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        let conn = Connection::open(dir.path().join("eddy.db")).expect("db");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).expect("bump");
        drop(conn);
        let e = Store::open(dir.path()).expect_err("newer schema");
        assert!(e.to_string().contains("newer Eddy"), "{e}");
    }
}
