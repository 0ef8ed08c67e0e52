//! The control plane on disk: modules and job definitions per tenant, module bytes by content hash, and compiled
//! code. Plain files written atomically, so the folder can be inspected and backed up with ordinary tools.
//!
//! ```text
//! <data>/blobs/<sha256>.wasm                       uploaded bytes (shared by tenants that upload the same module)
//! <data>/cache/<sha256>-<engine>.cwasm             compiled code
//! <data>/tenants/<t>/modules/<name>@<version>.json module metadata
//! <data>/tenants/<t>/jobs/<id>.json                job definitions and last known state
//! ```

use eddy_engine::function::UdfKind;
use eddy_engine::runtime::JobState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

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
}

/// The data folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

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
            Err(e) => tracing::warn!("ignoring unreadable {}: {e}", path.display()),
        }
    }
    records
}

impl Store {
    /// Opens (creating) the data folder.
    pub fn open(root: &Path) -> io::Result<Store> {
        for sub in ["blobs", "cache", "tenants"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(Store { root: root.to_path_buf() })
    }

    /// Where compiled code is cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{hash}.wasm"))
    }

    /// Stores module bytes under their hash.
    pub fn put_blob(&self, hash: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.blob_path(hash);
        if path.exists() { Ok(()) } else { write_atomically(&path, bytes) }
    }

    /// Module bytes by hash.
    pub fn blob(&self, hash: &str) -> Option<Vec<u8>> {
        std::fs::read(self.blob_path(hash)).ok()
    }

    /// Removes module bytes.
    pub fn remove_blob(&self, hash: &str) -> io::Result<()> {
        match std::fs::remove_file(self.blob_path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn tenant_dir(&self, tenant: &str, kind: &str) -> PathBuf {
        self.root.join("tenants").join(tenant).join(kind)
    }

    /// Every tenant that has stored something.
    pub fn tenants(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join("tenants")) else { return Vec::new() };
        entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect()
    }

    /// Saves module metadata.
    pub fn put_module(&self, tenant: &str, record: &ModuleRecord) -> io::Result<()> {
        let path = self.tenant_dir(tenant, "modules").join(format!("{}@{}.json", record.name, record.version));
        write_atomically(&path, &serde_json::to_vec_pretty(record).map_err(io::Error::other)?)
    }

    /// A tenant's modules.
    pub fn modules(&self, tenant: &str) -> Vec<ModuleRecord> {
        read_all(&self.tenant_dir(tenant, "modules"))
    }

    /// Deletes module metadata.
    pub fn remove_module(&self, tenant: &str, name: &str, version: &str) -> io::Result<()> {
        std::fs::remove_file(self.tenant_dir(tenant, "modules").join(format!("{name}@{version}.json")))
    }

    /// Saves a job.
    pub fn put_job(&self, tenant: &str, record: &JobRecord) -> io::Result<()> {
        let path = self.tenant_dir(tenant, "jobs").join(format!("{}.json", record.id));
        write_atomically(&path, &serde_json::to_vec_pretty(record).map_err(io::Error::other)?)
    }

    /// A tenant's jobs.
    pub fn jobs(&self, tenant: &str) -> Vec<JobRecord> {
        read_all(&self.tenant_dir(tenant, "jobs"))
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
}
