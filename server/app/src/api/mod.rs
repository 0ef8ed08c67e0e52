//! The HTTP API. Every module and job belongs to a tenant: routes under `/v1/tenants/{tenant}/...` name it, and the
//! same routes under `/v1/...` act for the tenant the bearer token belongs to. In open mode (no tenants
//! configured, loopback only) everything belongs to the tenant `default` and no token is needed.

pub mod admission;
mod body;
pub mod error;
mod guard;
mod jobs;
mod metrics;
mod modules;

pub use modules::UploadPermits;
pub mod serve;
mod usage;

use crate::config::{DEFAULT_TENANT, ServerConfig, token_hash};
use crate::jobs::Jobs;
use crate::modules::Modules;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use error::{ApiError, ErrorBody};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use utoipa::OpenApi;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Server configuration.
    pub config: Arc<ServerConfig>,
    /// Uploaded modules.
    pub modules: Arc<Modules>,
    /// Jobs.
    pub jobs: Jobs,
    /// Permits for uploads read and compiled at once.
    pub uploads: Arc<modules::UploadPermits>,
    /// Bounds each tenant's requests that wait on the engine.
    pub tenant_slots: Arc<serve::TenantSlots>,
    /// This server as a node of the cluster.
    pub node: Arc<crate::cluster::Node>,
}

/// The tenant a request acts for, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn same_hash(hex_a: &str, hex_b: &str) -> bool {
    hex_a.len() == hex_b.len() && bool::from(hex_a.as_bytes().ct_eq(hex_b.as_bytes()))
}

/// Whether `token` is the admin's.
pub(crate) fn is_admin(config: &ServerConfig, token: Option<&str>) -> bool {
    match (&config.admin_token_sha256, token) {
        (Some(admin), Some(token)) => same_hash(admin, &token_hash(token)),
        _ => false,
    }
}

/// Decides which tenant a request may act for.
pub fn authorize(config: &ServerConfig, token: Option<&str>, path_tenant: Option<&str>) -> Result<String, ApiError> {
    if config.open_mode() {
        return match path_tenant {
            None | Some(DEFAULT_TENANT) => Ok(DEFAULT_TENANT.to_string()),
            Some(other) => Err(ApiError::not_found(format!("no tenant `{other}` (this server runs in open mode)"))),
        };
    }
    let Some(token) = token else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send `Authorization: Bearer <token>`"));
    };
    if is_admin(config, Some(token)) {
        let Some(tenant) = path_tenant else {
            return Err(ApiError::bad_request(
                "tenant_required",
                "the admin token acts on a named tenant: use /v1/tenants/{tenant}/...",
            ));
        };
        if !config.tenants.iter().any(|t| t.name == tenant) {
            return Err(ApiError::not_found(format!("no tenant `{tenant}`")));
        }
        return Ok(tenant.to_string());
    }
    let hash = token_hash(token);
    let Some(owner) = config.tenants.iter().find(|t| same_hash(&t.token_sha256, &hash)) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the token is not valid"));
    };
    match path_tenant {
        Some(tenant) if tenant != owner.name => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token belongs to another tenant than `{tenant}`"),
        )),
        _ => Ok(owner.name.clone()),
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Tenant, ApiError> {
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state).await.ok();
        let path_tenant = params.as_ref().and_then(|p| p.get("tenant")).map(String::as_str);
        let tenant = authorize(&state.config, bearer(&parts.headers), path_tenant)?;
        // The connection now counts against the tenant's own cap of connections.
        if let Some(slot) = parts.extensions.get::<Arc<admission::ConnectionSlot>>()
            && let Err(admission::TenantFull(cap)) = slot.authenticate(&tenant)
        {
            return Err(ApiError::busy(format!(
                "this tenant has {cap} connections open, as many as it may; close some and try again"
            )));
        }
        Ok(Tenant(tenant))
    }
}

/// Routes that act for one tenant.
fn tenant_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/modules", post(modules::upload).get(modules::list))
        .route("/modules/{name}", get(modules::versions))
        .route("/modules/{name}/{version}", get(modules::get_one).delete(modules::delete))
        .route(
            "/jobs",
            post(jobs::submit)
                .layer(axum::extract::DefaultBodyLimit::max(eddy_engine::spec::MAX_SPEC_BYTES))
                .get(jobs::list),
        )
        .route("/jobs/{id}", get(jobs::status).delete(jobs::delete))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/inputs/{uid}", post(jobs::ingest))
        .route("/jobs/{id}/inputs/{uid}/close", post(jobs::close_input))
        .route("/jobs/{id}/outputs/{uid}", get(jobs::output))
        .route("/jobs/{id}/logs", get(jobs::logs))
        .route("/jobs/{id}/savepoints", post(jobs::trigger_savepoint))
        .route("/jobs/{id}/upgrade", post(jobs::upgrade))
        .route("/savepoints/{savepoint}/archive", get(jobs::download_savepoint))
        .route("/savepoints", get(jobs::list_savepoints))
        .route("/savepoints/{savepoint}", get(jobs::get_savepoint).delete(jobs::delete_savepoint))
        .route("/savepoints/{savepoint}/state/{operator}", get(jobs::savepoint_state))
        .route("/usage", get(usage::usage))
        .route("/quota", axum::routing::put(usage::set_quota))
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_request_bytes()))
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let tenant = tenant_routes(&state);
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/nodes/{node}/drain", post(crate::cluster::drain))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
        .nest("/v1/tenants/{tenant}", tenant.clone())
        .nest("/v1", tenant)
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::cluster::forward))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::same_site_only))
        .with_state(state)
}

/// Gives axum's own rejections (a bad query string, a wrong method, a body over the limit, ...) the JSON error
/// body of every other error, with a code derived from the status.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 16 << 10).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    ApiError::new(status, code, message).into_response()
}

/// Health check.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "The server is up")))]
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: whether the server takes new work (a load balancer sends it requests, Kubernetes counts it
/// available). 503 once it began to shut down; it does not answer at all until its jobs were resumed.
#[utoipa::path(get, path = "/ready", responses(
    (status = 200, description = "The server takes new work"),
    (status = 503, description = "The server is shutting down", body = ErrorBody),
))]
async fn ready(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if !state.node.ready() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", "this server is shutting down"));
    }
    Ok(axum::Json(serde_json::json!({ "status": "ready", "node": state.node.id() })))
}

/// The servers of the cluster, what each runs and how fresh its lease is (admin token only).
#[utoipa::path(get, path = "/v1/cluster", responses(
    (status = 200, body = crate::cluster::ClusterView),
    (status = 403, description = "Not the admin token", body = ErrorBody),
))]
async fn cluster(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<crate::cluster::ClusterView>, ApiError> {
    if !state.config.open_mode() && !is_admin(&state.config, bearer(&headers)) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only the admin token sees the cluster"));
    }
    let node = Arc::clone(&state.node);
    match tokio::task::spawn_blocking(move || node.view()).await {
        Ok(Ok(view)) => Ok(axum::Json(view)),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "control_plane",
            format!("cannot read the control plane: {e}"),
        )),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eddy",
        description = "Stream processing with user functions in WebAssembly. Every route under /v1 also exists under \
                       /v1/tenants/{tenant} for the admin token; tenant tokens act on their own tenant.",
    ),
    paths(
        health,
        ready,
        cluster,
        crate::cluster::drain,
        metrics::metrics,
        modules::upload,
        modules::list,
        modules::versions,
        modules::get_one,
        modules::delete,
        jobs::submit,
        jobs::list,
        jobs::status,
        jobs::cancel,
        jobs::delete,
        jobs::ingest,
        jobs::close_input,
        jobs::output,
        jobs::logs,
        jobs::trigger_savepoint,
        jobs::list_savepoints,
        jobs::get_savepoint,
        jobs::delete_savepoint,
        jobs::savepoint_state,
        jobs::upgrade,
        jobs::download_savepoint,
        usage::usage,
        usage::set_quota,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        crate::store::ModuleRecord,
        crate::jobs::JobView,
        crate::jobs::JobSummary,
        crate::jobs::OperatorView,
        crate::jobs::EdgeView,
        crate::jobs::FailureView,
        crate::jobs::TenantUse,
        crate::jobs::SavepointView,
        crate::jobs::RestartView,
        crate::jobs::CheckpointView,
        jobs::SavepointRequest,
        crate::jobs::UpgradeRequest,
        crate::store::UpgradeRecord,
        crate::store::UpgradeOutcome,
        usage::UsageView,
        crate::config::Quota,
        crate::config::QuotaOverrides,
    )),
    modifiers(&BearerAuth, &TenantRoutes),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every `/v1/...` route also exists as `/v1/tenants/{tenant}/...`, and every one of them answers 401 without a
/// valid token and 400 to a request whose parts cannot be read: these are stated once here rather than on each
/// handler.
struct TenantRoutes;

impl utoipa::Modify for TenantRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        let unauthorized = error("No token, or a token that is not valid (tenants configured)");
        let forbidden = error("The token belongs to another tenant");
        let no_tenant = error("No such tenant");
        let malformed = error("The request is malformed (its path, query or body cannot be read)");
        let tenant = ParameterBuilder::new()
            .name("tenant")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The tenant acted for (the admin token may name any)"))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        let mut named = Vec::new();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(rest) = path.strip_prefix("/v1/") else { continue };
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                operation.responses.responses.insert("401".into(), unauthorized.clone().into());
                operation.responses.responses.entry("400".into()).or_insert_with(|| malformed.clone().into());
            }
            let mut copy = item.clone();
            for operation in
                [&mut copy.get, &mut copy.post, &mut copy.put, &mut copy.delete, &mut copy.patch].into_iter().flatten()
            {
                operation.parameters.get_or_insert_with(Vec::new).insert(0, tenant.clone());
                operation.responses.responses.insert("403".into(), forbidden.clone().into());
                operation.responses.responses.entry("404".into()).or_insert_with(|| no_tenant.clone().into());
                operation.operation_id = operation.operation_id.as_ref().map(|id| format!("{id}_for_tenant"));
            }
            named.push((format!("/v1/tenants/{{tenant}}/{rest}"), copy));
        }
        openapi.paths.paths.extend(named);
    }
}
