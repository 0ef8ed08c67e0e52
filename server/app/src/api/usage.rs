//! `/usage` and `/quota`: a tenant's quotas beside what it uses; the admin sets quotas.

use super::error::{ApiError, ErrorBody};
use super::guard::{media, require_content_type};
use super::{AppState, Tenant, bearer, is_admin};
use crate::config::{Quota, QuotaOverrides};
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
    pub quota: Quota,
    /// What it uses now (and its records and CPU time since the server started).
    pub used: TenantUse,
    /// Bytes of its uploaded modules.
    pub module_bytes: u64,
}

/// The tenant's quotas and its use of them.
#[utoipa::path(get, path = "/v1/usage", responses((status = 200, body = UsageView)))]
pub async fn usage(State(state): State<AppState>, Tenant(tenant): Tenant) -> Json<UsageView> {
    let quota = state.modules.quotas().of(&tenant);
    let module_bytes = state.modules.list(&tenant).iter().map(|m| m.size).sum();
    Json(UsageView { used: state.jobs.tenant_use(&tenant), quota, module_bytes, tenant })
}

/// Sets a tenant's quotas (admin token only): the fields given replace what the config says; fields left out
/// fall back to it. Running jobs keep running; the new quotas apply to what comes next.
#[utoipa::path(
    put,
    path = "/v1/quota",
    request_body = QuotaOverrides,
    responses(
        (status = 415, description = "The body's `Content-Type` is not one this route takes", body = ErrorBody),
        (status = 200, description = "The quotas now in force", body = Quota),
        (status = 403, description = "Not the admin token", body = ErrorBody),
    )
)]
pub async fn set_quota(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: Result<Json<QuotaOverrides>, JsonRejection>,
) -> Result<Json<Quota>, ApiError> {
    if !state.config.open_mode() && !is_admin(&state.config, bearer(&headers)) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only the admin token sets quotas"));
    }
    require_content_type(&headers, media::JSON)?;
    let Json(overrides) = body.map_err(|e| ApiError::bad_request("invalid_quota", e.body_text()))?;
    let quotas = state.modules.quotas().clone();
    let quota = state
        .tenant_slots
        .run(&tenant.clone(), move || {
            quotas.set(&tenant, overrides).map_err(|e| ApiError::internal(format!("cannot store the quotas: {e}")))
        })
        .await?;
    Ok(Json(quota))
}
