//! `/usage` and `/quota`: a tenant's quotas beside what it uses; the admin sets quotas.

use super::error::{ApiError, ErrorBody};
use super::{AppState, Tenant, bearer, same_hash};
use crate::config::{Quota, QuotaOverrides, token_hash};
use crate::jobs::TenantUse;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

/// A tenant's quotas and its use of each.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// The tenant.
    pub tenant: String,
    /// What it may use at once.
    pub quota: QuotaView,
    /// What it uses now (and its records and CPU time since the server started).
    pub used: TenantUse,
    /// Bytes of its uploaded modules.
    pub module_bytes: u64,
}

/// A tenant's quotas.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    /// Running jobs.
    pub jobs: u32,
    /// Subtasks over all running jobs.
    pub parallelism: u32,
    /// Guest memory over all function instances, in MiB.
    pub memory_mb: usize,
    /// Guest memory over one job's function instances, in MiB.
    pub job_memory_mb: usize,
    /// Bytes of all uploaded modules.
    pub module_bytes: u64,
    /// Share of the CPU relative to other tenants' when they compete.
    pub cpu_weight: u32,
    /// Records per second its sinks may write together (0: no limit).
    pub output_rate: u64,
    /// Keyed state its jobs may hold together, in MiB.
    pub state_mb: u64,
    /// Memory and tables of one function instance, in MiB (none: the server's).
    pub instance_memory_mb: Option<usize>,
}

impl From<Quota> for QuotaView {
    fn from(quota: Quota) -> QuotaView {
        QuotaView {
            jobs: quota.jobs,
            parallelism: quota.parallelism,
            memory_mb: quota.memory_mb,
            job_memory_mb: quota.job_memory_mb,
            module_bytes: quota.module_bytes,
            cpu_weight: quota.cpu_weight,
            output_rate: quota.output_rate,
            state_mb: quota.state_mb,
            instance_memory_mb: quota.instance_memory_mb,
        }
    }
}

/// The tenant's quotas and its use of them.
#[utoipa::path(get, path = "/v1/usage", responses((status = 200, body = UsageView)))]
pub async fn usage(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<UsageView> {
    let quota = state.modules.quotas().of(&tenant);
    let module_bytes = state.modules.list(&tenant).iter().map(|m| m.size).sum();
    Json(UsageView { used: state.jobs.tenant_use(&tenant), quota: quota.into(), module_bytes, tenant })
}

/// Sets a tenant's quotas (admin token only): the fields given replace what the config says; fields left out
/// fall back to it. Running jobs keep running; the new quotas apply to what comes next.
#[utoipa::path(
    put,
    path = "/v1/quota",
    request_body = QuotaOverrides,
    responses(
        (status = 200, description = "The quotas now in force", body = QuotaView),
        (status = 403, description = "Not the admin token", body = ErrorBody),
    )
)]
pub async fn set_quota(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: Result<Json<QuotaOverrides>, JsonRejection>,
) -> Result<Json<QuotaView>, ApiError> {
    let config = &state.config;
    let is_admin = match (&config.admin_token_sha256, bearer(&headers)) {
        (Some(admin), Some(token)) => same_hash(admin, &token_hash(token)),
        _ => false,
    };
    if !config.open_mode() && !is_admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only the admin token sets quotas"));
    }
    let Json(overrides) = body.map_err(|e| ApiError::bad_request("invalid_quota", e.body_text()))?;
    let quotas = state.modules.quotas().clone();
    let quota = state
        .tenant_slots
        .run(&tenant.clone(), move || {
            quotas.set(&tenant, overrides).map_err(|e| ApiError::internal(format!("cannot store the quotas: {e}")))
        })
        .await?;
    Ok(Json(quota.into()))
}
