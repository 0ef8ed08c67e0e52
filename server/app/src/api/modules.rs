//! `/modules`: upload, list, look up, delete.

use super::body;
use super::error::{ApiError, ErrorBody};
use super::guard::{media, require_content_type};
use super::{AppState, Tenant};
use crate::store::ModuleRecord;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where an upload goes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The module's name.
    name: String,
    /// Its version; the next whole number when omitted.
    version: Option<String>,
}

/// Uploads a module: the body is the component's bytes.
#[utoipa::path(
    post,
    path = "/v1/modules",
    params(UploadQuery),
    request_body(content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 415, description = "The body's `Content-Type` is not one this route takes", body = ErrorBody),
        (status = 201, description = "Stored and compiled", body = ModuleRecord),
        (status = 200, description = "The same bytes were stored under this version already", body = ModuleRecord),
        (status = 400, description = "Not a component for one of Eddy's worlds", body = ErrorBody),
        (status = 409, description = "The version exists with other contents", body = ErrorBody),
        (status = 403, description = "Over the tenant's `module_bytes` quota", body = ErrorBody),
        (status = 413, description = "Larger than the server accepts", body = ErrorBody),
        (status = 503, description = "Too many uploads at once; try again", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ModuleRecord>), ApiError> {
    let max = state.config.max_module_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "module_too_large",
            format!("the module is larger than this server accepts ({max} bytes)"),
        )
    };
    require_content_type(&headers, media::WASM)?;
    // Refuse what announces itself too large before reading a byte of it.
    let announced = body::announced_length(&headers);
    if announced.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    // The body is read first (a slow one is cut off by the server's minimum body rate), then compiled: only the
    // compile takes one of the permits, so a slow client cannot hold them.
    let _reading = state.uploads.reading(&tenant)?;
    let bytes = body::read(body, announced, max, "the upload", too_large).await?;
    let _compiling = state.uploads.compiling(&tenant)?;
    let modules = state.modules.clone();
    let slots = Arc::clone(&state.tenant_slots);
    let (record, created) = slots
        .run(&tenant.clone(), move || modules.upload(&tenant, &query.name, query.version.as_deref(), &bytes))
        .await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(record)))
}

/// Who may read and compile uploads at once. Each tenant reads at most a few bodies at a time (bounding the memory
/// its uploads hold) and holds at most half of the compile permits, so another tenant always finds one.
pub struct UploadPermits {
    compile: usize,
    held: Mutex<HashMap<String, (usize, usize)>>,
    compiling: AtomicUsize,
}

/// Bodies one tenant's uploads read at once.
const READS_PER_TENANT: usize = 4;

/// A tenant's upload in one phase; given back when dropped.
pub struct UploadPermit<'a> {
    permits: &'a UploadPermits,
    tenant: String,
    compile: bool,
}

impl UploadPermits {
    /// `compile` permits in all.
    pub fn new(compile: usize) -> UploadPermits {
        UploadPermits { compile: compile.max(1), held: Mutex::new(HashMap::new()), compiling: AtomicUsize::new(0) }
    }

    fn share(&self) -> usize {
        (self.compile / 2).max(1)
    }

    /// A permit to read an upload's body.
    pub fn reading(&self, tenant: &str) -> Result<UploadPermit<'_>, ApiError> {
        let mut held = self.held.lock();
        let (reading, _) = held.entry(tenant.to_string()).or_default();
        if *reading >= READS_PER_TENANT {
            return Err(ApiError::busy(format!(
                "{READS_PER_TENANT} uploads of this tenant are being read; try again in a moment"
            )));
        }
        *reading += 1;
        Ok(UploadPermit { permits: self, tenant: tenant.to_string(), compile: false })
    }

    /// A permit to compile an upload that was read.
    pub fn compiling(&self, tenant: &str) -> Result<UploadPermit<'_>, ApiError> {
        let mut held = self.held.lock();
        let (_, compiling) = held.entry(tenant.to_string()).or_default();
        let busy = || ApiError::busy("uploads are being compiled; try again in a moment");
        if *compiling >= self.share() {
            return Err(busy());
        }
        if self.compiling.fetch_add(1, Ordering::SeqCst) >= self.compile {
            self.compiling.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        *compiling += 1;
        Ok(UploadPermit { permits: self, tenant: tenant.to_string(), compile: true })
    }
}

impl Drop for UploadPermit<'_> {
    fn drop(&mut self) {
        let mut held = self.permits.held.lock();
        if let Some((reading, compiling)) = held.get_mut(&self.tenant) {
            if self.compile {
                *compiling -= 1;
                self.permits.compiling.fetch_sub(1, Ordering::SeqCst);
            } else {
                *reading -= 1;
            }
            if (*reading, *compiling) == (0, 0) {
                held.remove(&self.tenant);
            }
        }
    }
}

/// Lists the tenant's modules.
#[utoipa::path(get, path = "/v1/modules", responses((status = 200, body = Vec<ModuleRecord>)))]
pub async fn list(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<Vec<ModuleRecord>> {
    Json(state.modules.list(&tenant))
}

/// Names a module.
#[derive(Debug, Deserialize)]
pub struct NamePath {
    name: String,
}

/// Lists a module's versions.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}",
    params(("name" = String, Path, description = "Module name")),
    responses((status = 200, body = Vec<ModuleRecord>), (status = 404, body = ErrorBody))
)]
pub async fn versions(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<NamePath>,
) -> Result<Json<Vec<ModuleRecord>>, ApiError> {
    let versions: Vec<ModuleRecord> = state.modules.list(&tenant).into_iter().filter(|m| m.name == path.name).collect();
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no module `{}`", path.name)));
    }
    Ok(Json(versions))
}

/// Names a module version.
#[derive(Debug, Deserialize)]
pub struct VersionPath {
    name: String,
    version: String,
}

/// One module version.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}/{version}",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModuleRecord), (status = 404, body = ErrorBody))
)]
pub async fn get_one(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<VersionPath>,
) -> Result<Json<ModuleRecord>, ApiError> {
    state
        .modules
        .get(&tenant, &path.name, Some(&path.version))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no module {}@{}", path.name, path.version)))
}

/// Deletes a module version, unless a running job uses it.
#[utoipa::path(
    delete,
    path = "/v1/modules/{name}/{version}",
    params(("name" = String, Path), ("version" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A running job uses it", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(path): Path<VersionPath>,
) -> Result<StatusCode, ApiError> {
    let jobs = state.jobs.clone();
    let owner = tenant.clone();
    state.modules.delete(&tenant, &path.name, &path.version, move |hash| jobs.using_module(&owner, hash))?;
    Ok(StatusCode::NO_CONTENT)
}
