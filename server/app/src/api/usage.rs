//! `/usage`: a tenant's quotas beside what it uses.

use super::{AppState, Tenant};
use crate::jobs::TenantUse;
use axum::Json;
use axum::extract::State;
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
}

/// The tenant's quotas and its use of them.
#[utoipa::path(get, path = "/v1/usage", responses((status = 200, body = UsageView)))]
pub async fn usage(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<UsageView> {
    let quota = state.config.quota_of(&tenant);
    let module_bytes = state.modules.list(&tenant).iter().map(|m| m.size).sum();
    Json(UsageView {
        used: state.jobs.tenant_use(&tenant),
        quota: QuotaView {
            jobs: quota.jobs,
            parallelism: quota.parallelism,
            memory_mb: quota.memory_mb,
            job_memory_mb: quota.job_memory_mb,
            module_bytes: quota.module_bytes,
            cpu_weight: quota.cpu_weight,
        },
        module_bytes,
        tenant,
    })
}
