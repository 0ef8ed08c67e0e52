//! The HTTP API. Every module and job belongs to a tenant: routes under `/v1/tenants/{tenant}/...` name it, and the
//! same routes under `/v1/...` act for the tenant the bearer token belongs to. In open mode (no tenants
//! configured, loopback only) everything belongs to the tenant `default` and no token is needed.

pub mod error;
mod jobs;
mod modules;

use crate::config::{DEFAULT_TENANT, ServerConfig, token_hash};
use crate::jobs::Jobs;
use crate::modules::Modules;
use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use error::ApiError;
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
}

/// The tenant a request acts for, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn same_hash(hex_a: &str, hex_b: &str) -> bool {
    hex_a.len() == hex_b.len() && bool::from(hex_a.as_bytes().ct_eq(hex_b.as_bytes()))
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
    let hash = token_hash(token);
    if config.admin_token_sha256.as_deref().is_some_and(|admin| same_hash(admin, &hash)) {
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
        authorize(&state.config, bearer(&parts.headers), path_tenant).map(Tenant)
    }
}

/// Routes that act for one tenant.
fn tenant_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/modules", post(modules::upload).get(modules::list))
        .route("/modules/{name}", get(modules::versions))
        .route("/modules/{name}/{version}", get(modules::get_one).delete(modules::delete))
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/{id}", get(jobs::status))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/inputs/{uid}", post(jobs::ingest))
        .route("/jobs/{id}/inputs/{uid}/close", post(jobs::close_input))
        .route("/jobs/{id}/outputs/{uid}", get(jobs::output))
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_module_bytes.max(16 << 20)))
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let tenant = tenant_routes(&state);
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .nest("/v1/tenants/{tenant}", tenant.clone())
        .nest("/v1", tenant)
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .with_state(state)
}

/// Health check.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "The server is up")))]
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
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
        modules::upload,
        modules::list,
        modules::versions,
        modules::get_one,
        modules::delete,
        jobs::submit,
        jobs::list,
        jobs::status,
        jobs::cancel,
        jobs::ingest,
        jobs::close_input,
        jobs::output,
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
    )),
    modifiers(&BearerAuth),
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
