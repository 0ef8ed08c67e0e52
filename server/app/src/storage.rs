//! Each tenant's use of disk and storage, against its `storage_mb` quota: its checkpoints and savepoints in the
//! checkpoint store, its HTTP input logs, its RocksDB state and the files in its folder (file-sink output). A
//! thread measures every tenant now and then (files hard-linked twice, as RocksDB checkpoints do, count once);
//! jobs' checkpoints and file sinks, savepoints, HTTP input and submissions ask before they write.

use crate::api::error::ApiError;
use crate::config::ServerConfig;
use crate::quotas::Quotas;
use eddy_engine::checkpoint::CheckpointStore;
use eddy_engine::disk::DiskBudget;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often every tenant is measured again.
const MEASURE_EVERY: Duration = Duration::from_secs(2);

/// Tenants' storage use, measured.
pub struct StorageMeter {
    config: Arc<ServerConfig>,
    checkpoints: Arc<dyn CheckpointStore>,
    quotas: Arc<Quotas>,
    used: Mutex<HashMap<String, u64>>,
    stop: AtomicBool,
}

impl StorageMeter {
    /// A meter over the server's folders and checkpoint store, with a thread that measures every tenant that has
    /// something stored, until the meter is stopped.
    pub fn start(
        config: Arc<ServerConfig>,
        checkpoints: Arc<dyn CheckpointStore>,
        quotas: Arc<Quotas>,
    ) -> Arc<StorageMeter> {
        let meter = Arc::new(StorageMeter {
            config,
            checkpoints,
            quotas,
            used: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&meter);
        let spawned = std::thread::Builder::new().name("eddy-storage".into()).spawn(move || {
            while let Some(meter) = weak.upgrade() {
                if meter.stop.load(Ordering::Relaxed) {
                    break;
                }
                meter.measure_all();
                drop(meter);
                std::thread::sleep(MEASURE_EVERY);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start measuring storage: {e}");
        }
        meter
    }

    /// Stops the measuring thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn tenants(&self) -> HashSet<String> {
        let mut tenants: HashSet<String> = self.config.tenants.iter().map(|t| t.name.clone()).collect();
        tenants.insert(crate::config::DEFAULT_TENANT.to_string());
        tenants.extend(self.used.lock().keys().cloned());
        tenants
    }

    fn measure_all(&self) {
        for tenant in self.tenants() {
            self.measure(&tenant);
        }
    }

    /// Measures `tenant` now; returns its use in bytes.
    pub fn measure(&self, tenant: &str) -> u64 {
        let config = &self.config;
        let mut seen = HashSet::new();
        let mut total = 0;
        for folder in [config.inputs_dir(), config.state_dir(), config.files_dir()] {
            total += folder_bytes(&folder.join(tenant), &mut seen);
        }
        match self.checkpoints.bytes_under(&format!("{tenant}/")) {
            Ok(bytes) => total += bytes,
            Err(e) => tracing::warn!(tenant, "cannot measure the checkpoint store: {e}"),
        }
        self.used.lock().insert(tenant.to_string(), total);
        total
    }

    /// `tenant`'s use as last measured.
    pub fn used(&self, tenant: &str) -> u64 {
        self.used.lock().get(tenant).copied().unwrap_or(0)
    }

    /// Why `tenant` may write nothing more, if its quota is used up.
    pub fn exhausted(&self, tenant: &str) -> Option<String> {
        let limit = self.quotas.of(tenant).storage_mb << 20;
        let used = self.used(tenant);
        (used >= limit).then(|| {
            format!(
                "tenant {tenant}'s storage quota of {} MiB is used up ({} MiB of checkpoints, savepoints, input logs, \
                 files and state): delete savepoints or jobs, or ask the admin for more",
                limit >> 20,
                used >> 20
            )
        })
    }

    /// Refuses a request that would write for `tenant` once its quota is used up (403 `quota_exceeded`).
    pub fn check(&self, tenant: &str) -> Result<(), ApiError> {
        match self.exhausted(tenant) {
            None => Ok(()),
            Some(why) => {
                let limit = self.quotas.of(tenant).storage_mb;
                Err(ApiError::quota("storage_mb", limit, self.used(tenant) >> 20, why))
            }
        }
    }

    /// `tenant`'s budget as its jobs' writers see it.
    pub fn budget(self: &Arc<Self>, tenant: &str) -> Arc<dyn DiskBudget> {
        Arc::new(TenantStorage { meter: Arc::clone(self), tenant: tenant.to_string() })
    }
}

struct TenantStorage {
    meter: Arc<StorageMeter>,
    tenant: String,
}

impl DiskBudget for TenantStorage {
    fn exhausted(&self) -> Option<String> {
        self.meter.exhausted(&self.tenant)
    }
}

/// Bytes of the files under `folder`, counting a file with several names (hard links) once.
fn folder_bytes(folder: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut folders = vec![folder.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                folders.push(entry.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/one"), vec![0u8; 1000]).expect("write");
        std::fs::write(dir.path().join("a/b/two"), vec![0u8; 24]).expect("write");
        std::fs::hard_link(dir.path().join("a/one"), dir.path().join("a/b/linked")).expect("link");
        assert_eq!(folder_bytes(&dir.path().join("a"), &mut HashSet::new()), 1024);
        assert_eq!(folder_bytes(&dir.path().join("missing"), &mut HashSet::new()), 0);
    }
}
