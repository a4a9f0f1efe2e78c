//! The one error shape of the API (the README's HTTP API section):
//! `{"error": {"code", "message", "request_id", "details"}}`. Building the response has no side
//! effects; 5xx are logged by the request middleware, which sees the status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::request_id::{self, InternalDetail};
use crate::auth::AuthError;
use crate::checks::FieldIssue;
use crate::list_query::ParamError;
use crate::repo::RepoError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request ran past the request timeout.
    #[error("the request took longer than {0} s")]
    RequestTimeout(u64),
    /// Refused at the edge (CORS, HTTPS, size limits).
    #[error("{message}")]
    Edge { status: StatusCode, code: &'static str, message: String },
    /// Over a rate limit; retry after this many seconds.
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    /// A login with an unknown user, a wrong password or a disabled account (one answer).
    #[error("wrong username or password")]
    InvalidCredentials,
    /// Too many requests in flight: shed instead of queueing.
    #[error("the server is overloaded; retry shortly")]
    Overloaded,
    /// A dependency is not configured or its breaker is open (503, `Retry-After` when known).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String, retry_after: Option<u64> },
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    request_id: String,
    #[serde(skip_serializing_if = "<[FieldIssue]>::is_empty")]
    details: &'a [FieldIssue],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let single;
        let (status, code, message, details): (StatusCode, &str, String, &[FieldIssue]) = match &self {
            ApiError::Repo(e) => match e {
                RepoError::NotFound => (StatusCode::NOT_FOUND, "not_found", "not found".into(), &[]),
                RepoError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", e.to_string(), &[]),
                RepoError::NotPermitted(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone(), &[]),
                RepoError::BadRequest { code, message, field } => {
                    single =
                        field.iter().map(|f| FieldIssue::new(f.clone(), code, message.clone())).collect::<Vec<_>>();
                    (StatusCode::BAD_REQUEST, *code, message.clone(), &single)
                }
                RepoError::Validation(issues) => {
                    let message = issues.first().map_or_else(|| "validation failed".to_string(), |i| i.message.clone());
                    (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message, issues.as_slice())
                }
                RepoError::Duplicate { message, field } => {
                    single = field
                        .iter()
                        .map(|f| FieldIssue::new(f.clone(), "duplicate", message.clone()))
                        .collect::<Vec<_>>();
                    (StatusCode::CONFLICT, "duplicate", message.clone(), &single)
                }
                RepoError::LinkExists(m) => (StatusCode::CONFLICT, "link_exists", m.clone(), &[]),
                RepoError::InvalidState(m) => (StatusCode::CONFLICT, "invalid_state", m.clone(), &[]),
                RepoError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone(), &[]),
                RepoError::PreconditionFailed => {
                    (StatusCode::PRECONDITION_FAILED, "precondition_failed", e.to_string(), &[])
                }
                RepoError::Unavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is unavailable".into(), &[])
                }
                RepoError::Saturated => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string(), &[]),
                RepoError::Transient(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy", "a conflicting change made this fail; retry".into(), &[])
                }
                RepoError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string(), &[]),
                RepoError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into(), &[]),
            },
            ApiError::Param(p) => {
                single =
                    p.field.iter().map(|f| FieldIssue::new(f.clone(), p.code, p.message.clone())).collect::<Vec<_>>();
                (StatusCode::BAD_REQUEST, p.code, p.message.clone(), &single)
            }
            ApiError::Auth(a) => (StatusCode::UNAUTHORIZED, "unauthenticated", a.to_string(), &[]),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone(), &[]),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", self.to_string(), &[]),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "not found".into(), &[]),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", self.to_string(), &[]),
            ApiError::RequestTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout", self.to_string(), &[]),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", self.to_string(), &[]),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", self.to_string(), &[]),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", self.to_string(), &[]),
            ApiError::Edge { status, code, message } => (*status, *code, message.clone(), &[]),
            ApiError::Unavailable { code, message, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, *code, message.clone(), &[])
            }
        };
        let body = Body { error: ErrorBody { code, message, request_id: request_id::current(), details } };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut res =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response();
        if let ApiError::Auth(a) = &self {
            let value = match a {
                AuthError::Missing => "Bearer",
                AuthError::Invalid => "Bearer error=\"invalid_token\"",
            };
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        match &self {
            ApiError::Overloaded => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited(secs) => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            ApiError::Unavailable { retry_after: Some(secs), .. } => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from((*secs).max(1)));
            }
            _ => {}
        }
        match &self {
            ApiError::Repo(RepoError::Internal(m) | RepoError::Unavailable(m) | RepoError::Transient(m)) => {
                res.extensions_mut().insert(InternalDetail(m.clone()));
            }
            ApiError::Repo(RepoError::Timeout | RepoError::Saturated) | ApiError::RequestTimeout(_) => {
                res.extensions_mut().insert(InternalDetail(self.to_string()));
            }
            _ => {}
        }
        res
    }
}
