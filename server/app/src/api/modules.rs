//! `/modules`: upload, list, look up, delete.

use super::error::{ApiError, ErrorBody};
use super::{AppState, Tenant};
use crate::store::ModuleRecord;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

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
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 201, description = "Stored and compiled", body = ModuleRecord),
        (status = 200, description = "The same bytes were stored under this version already", body = ModuleRecord),
        (status = 400, description = "Not a component for one of Eddy's worlds", body = ErrorBody),
        (status = 409, description = "The version exists with other contents", body = ErrorBody),
        (status = 413, description = "Larger than the server accepts", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(query): Query<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ModuleRecord>), ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "module_too_large" } else { "bad_body" };
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the module is larger than this server accepts ({} bytes)", state.config.max_module_bytes)
        } else {
            e.body_text()
        };
        ApiError::new(status, code, message)
    })?;
    let modules = state.modules.clone();
    let (record, created) =
        tokio::task::spawn_blocking(move || modules.upload(&tenant, &query.name, query.version.as_deref(), &bytes))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(record)))
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
