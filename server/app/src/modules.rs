//! Modules: upload (validate, compile, store), list, look up, delete; and resolving the modules a job spec names.

use crate::api::error::ApiError;
use crate::config::{ServerConfig, eddy_name_ok};
use crate::quotas::Quotas;
use crate::store::{ModuleRecord, Store};
use axum::http::StatusCode;
use eddy_engine::function::UdfKind;
use eddy_engine::graph::ModuleCatalog;
use eddy_engine::spec::ModuleRef;
use eddy_wasm_host::{CompiledModule, ModuleError, WasmRuntime};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Uploaded modules of every tenant.
pub struct Modules {
    store: Store,
    runtime: Arc<WasmRuntime>,
    config: Arc<ServerConfig>,
    quotas: Arc<Quotas>,
    by_tenant: RwLock<HashMap<String, Vec<ModuleRecord>>>,
}

fn version_ok(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 64
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Modules {
    /// Loads every tenant's module list from `store`.
    pub fn open(store: Store, runtime: Arc<WasmRuntime>, config: Arc<ServerConfig>, quotas: Arc<Quotas>) -> Modules {
        let by_tenant = store.tenants().into_iter().map(|t| (t.clone(), store.modules(&t))).collect();
        Modules { store, runtime, config, quotas, by_tenant: RwLock::new(by_tenant) }
    }

    /// The quotas in force.
    pub fn quotas(&self) -> &Arc<Quotas> {
        &self.quotas
    }

    /// The Wasm runtime.
    pub fn runtime(&self) -> &Arc<WasmRuntime> {
        &self.runtime
    }

    /// Validates, compiles and stores an upload. Uploading the same bytes again under the same version is a
    /// no-op; other bytes under an existing version are refused (versions are immutable).
    pub fn upload(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
        bytes: &[u8],
    ) -> Result<(ModuleRecord, bool), ApiError> {
        if !eddy_name_ok(name) {
            return Err(ApiError::bad_request(
                "invalid_name",
                "module names are letters, digits, '-' or '_' (at most 100)",
            ));
        }
        if let Some(v) = version
            && !version_ok(v)
        {
            return Err(ApiError::bad_request("invalid_version", "versions are letters, digits, '.', '-' or '_'"));
        }
        let max_bytes = self.config.max_module_bytes;
        if bytes.len() > max_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "module_too_large",
                format!("the module has {} bytes; this server accepts at most {max_bytes}", bytes.len()),
            ));
        }
        let existing = self.list(tenant);
        let quota = self.quotas.of(tenant).module_bytes;
        let stored: u64 = existing.iter().map(|m| m.size).sum();
        if stored + bytes.len() as u64 > quota {
            return Err(ApiError::quota(
                "module_bytes",
                quota,
                stored,
                format!("the tenant's modules would take {} bytes", stored + bytes.len() as u64),
            ));
        }
        let compiled: Arc<CompiledModule> = self.runtime.compile(bytes).map_err(invalid_module)?;
        let version_picked = version.is_none();
        let version = match version {
            Some(v) => v.to_string(),
            None => next_version(&existing, name),
        };
        if let Some(found) = existing.iter().find(|m| m.name == name && m.version == version) {
            if found.hash == compiled.hash {
                return Ok((found.clone(), false));
            }
            return Err(ApiError::conflict(format!(
                "module {name}@{version} exists with other contents; versions are immutable, upload a new version"
            )));
        }
        let mut record = ModuleRecord {
            name: name.to_string(),
            version,
            hash: compiled.hash.clone(),
            size: bytes.len() as u64,
            kinds: compiled.kinds.clone(),
            uploaded_at: now_ms(),
            compiled_sha256: compiled.artifact.clone(),
            declared_states: compiled.declared_states.as_deref().map(<[_]>::to_vec),
        };
        self.store
            .put_blob(&record.hash, bytes)
            .map_err(|e| ApiError::internal(format!("cannot store module: {e}")))?;
        // The store decides races: of concurrent uploads of one version, exactly one creates it; the others are
        // answered as if it had been there before. A version picked here (none given) is picked again.
        for attempt in 1.. {
            let created = self
                .store
                .create_module(tenant, &record)
                .map_err(|e| ApiError::internal(format!("cannot store module: {e}")))?;
            if created {
                break;
            }
            let stored = self.store.modules(tenant);
            match stored.iter().find(|m| m.name == name && m.version == record.version) {
                Some(found) if found.hash == record.hash => return Ok((found.clone(), false)),
                Some(_) if version_picked && attempt < 8 => record.version = next_version(&stored, name),
                Some(_) => {
                    return Err(ApiError::conflict(format!(
                        "module {name}@{} exists with other contents; versions are immutable, upload a new version",
                        record.version
                    )));
                }
                None => {
                    return Err(ApiError::conflict(format!(
                        "module {name}@{} changed during the upload; try again",
                        record.version
                    )));
                }
            }
        }
        self.by_tenant.write().entry(tenant.to_string()).or_default().push(record.clone());
        Ok((record, true))
    }

    /// A tenant's modules, by name then upload order.
    pub fn list(&self, tenant: &str) -> Vec<ModuleRecord> {
        if self.config.cluster.database.is_some() {
            // Other nodes upload too: the shared control plane is the list.
            let stored = self.store.modules(tenant);
            self.by_tenant.write().insert(tenant.to_string(), stored);
        }
        let mut list = self.by_tenant.read().get(tenant).cloned().unwrap_or_default();
        list.sort_by(|a, b| (&a.name, a.uploaded_at, &a.version).cmp(&(&b.name, b.uploaded_at, &b.version)));
        list
    }

    /// A module version; the newest when `version` is none.
    pub fn get(&self, tenant: &str, name: &str, version: Option<&str>) -> Option<ModuleRecord> {
        let list = self.list(tenant);
        match version {
            Some(v) => list.into_iter().find(|m| m.name == name && m.version == v),
            None => list.into_iter().filter(|m| m.name == name).max_by_key(|m| m.uploaded_at),
        }
    }

    /// Deletes a module version unless `in_use` names a job that runs it.
    pub fn delete(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        in_use: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ApiError> {
        let record = self
            .get(tenant, name, Some(version))
            .ok_or_else(|| ApiError::not_found(format!("no module {name}@{version}")))?;
        if let Some(job) = in_use(&record.hash) {
            return Err(ApiError::conflict(format!(
                "module {name}@{version} is used by running job {job}; cancel the job first"
            )));
        }
        self.store.remove_module(tenant, name, version).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut all = self.by_tenant.write();
        if let Some(list) = all.get_mut(tenant) {
            list.retain(|m| !(m.name == name && m.version == version));
        }
        let still_used = all.values().flatten().any(|m| m.hash == record.hash);
        drop(all);
        if !still_used {
            self.runtime.forget(&record.hash);
            let _ = self.store.remove_blob(&record.hash);
        }
        Ok(())
    }

    /// Makes sure a module is compiled and loaded: from the cache if the compiled code there still has the digest
    /// its records hold, else compiled again from its stored bytes (and the new digest recorded).
    pub fn load(&self, hash: &str) -> Result<Arc<CompiledModule>, ModuleError> {
        let recorded =
            self.by_tenant.read().values().flatten().find(|m| m.hash == hash).and_then(|m| m.compiled_sha256.clone());
        let module = self.runtime.load(hash, recorded.as_deref(), || self.store.blob(hash))?;
        if module.artifact != recorded {
            let mut all = self.by_tenant.write();
            for (tenant, records) in all.iter_mut() {
                for record in records.iter_mut().filter(|m| m.hash == hash) {
                    record.compiled_sha256 = module.artifact.clone();
                    if let Err(e) = self.store.put_module(tenant, record) {
                        tracing::warn!("cannot record the compiled code of {}@{}: {e}", record.name, record.version);
                    }
                }
            }
        }
        Ok(module)
    }

    /// A catalog resolving a tenant's module references, honouring `pins` (reference -> hash) when given.
    pub fn catalog<'a>(&'a self, tenant: &'a str, pins: Option<&'a BTreeMap<String, String>>) -> Catalog<'a> {
        Catalog { modules: self, tenant, pins }
    }
}

fn next_version(existing: &[ModuleRecord], name: &str) -> String {
    let highest = existing.iter().filter(|m| m.name == name).filter_map(|m| m.version.parse::<u64>().ok()).max();
    (highest.unwrap_or(0) + 1).to_string()
}

fn invalid_module(e: ModuleError) -> ApiError {
    let code = match e {
        ModuleError::NotWasm | ModuleError::CoreModule | ModuleError::Invalid(_) => "invalid_module",
        ModuleError::UnknownWorld(_) | ModuleError::MissingLifecycle | ModuleError::Mismatch { .. } => "wrong_world",
        ModuleError::Imports { .. } => "unsupported_imports",
        ModuleError::Start(_) => "module_fails_to_start",
        ModuleError::Declarations(_) => "invalid_state_declarations",
        ModuleError::Missing(_) | ModuleError::Corrupt(_) => "internal",
    };
    ApiError::bad_request(code, e.to_string())
}

/// Resolves module references of one tenant's job spec.
pub struct Catalog<'a> {
    modules: &'a Modules,
    tenant: &'a str,
    pins: Option<&'a BTreeMap<String, String>>,
}

impl ModuleCatalog for Catalog<'_> {
    fn resolve(&self, module: &ModuleRef, kind: UdfKind) -> Result<String, String> {
        let written = module.to_string();
        let record = match (self.pins.and_then(|p| p.get(&written)), module) {
            (Some(hash), _) | (None, ModuleRef::Hash(hash)) => {
                self.modules.list(self.tenant).into_iter().find(|m| &m.hash == hash)
            }
            (None, ModuleRef::Named { name, version }) => self.modules.get(self.tenant, name, version.as_deref()),
        };
        let Some(record) = record else {
            return Err(format!("unknown module `{written}`: upload it first (eddy module push)"));
        };
        if !record.kinds.contains(&kind) {
            let has: Vec<&str> = record.kinds.iter().map(|k| k.name()).collect();
            return Err(format!("module `{written}` exports {}, not a {} function", has.join(", "), kind.name()));
        }
        Ok(record.hash)
    }
}
