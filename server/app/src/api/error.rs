//! Errors as JSON with a proper status code: `{"error": {"code": "...", "message": "...", "details": [...]}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Structured details (for example every problem of a job spec).
    pub details: Vec<serde_json::Value>,
}

/// The JSON body of an error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What an error body holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `invalid_spec`, `not_found`.
    pub code: String,
    /// Description.
    pub message: String,
    /// Details, e.g. `{"operator": .., "field": .., "message": ..}` per spec problem.
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<serde_json::Value>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Vec::new() }
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 403 `quota_exceeded`: a request that would take a tenant past `quota`, whose limit and current use are named
    /// in the message and in `details`.
    pub fn quota(quota: &'static str, limit: u64, in_use: u64, asked: impl Into<String>) -> ApiError {
        let asked = asked.into();
        ApiError::new(
            StatusCode::FORBIDDEN,
            "quota_exceeded",
            format!("over the tenant's `{quota}` quota of {limit} ({in_use} in use): {asked}"),
        )
        .with_details(vec![serde_json::json!({ "quota": quota, "limit": limit, "in_use": in_use })])
    }

    /// 503 `busy`: the server is at a limit of concurrent work; try again shortly.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }

    /// 503 `memory_budget`: what the request needs to hold does not fit the tenant's (or the server's) memory
    /// budget now; it frees up as other requests and jobs give memory back.
    pub fn memory(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "memory_budget", message)
    }

    /// The same error with details.
    pub fn with_details(mut self, details: Vec<serde_json::Value>) -> ApiError {
        self.details = details;
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail { code: self.code.to_string(), message: self.message, details: self.details },
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
