//! Authentication, as its own step in front of the rate limiter: the request's bearer token is
//! verified once and the outcome (the user it names, or why it is refused) is recorded in the
//! request's extensions. Nothing is refused here: the rate limiter counts a request with a valid
//! token against its user and any other against its client address (so a 429 comes before a 401),
//! and the handler's [`Caller`](super::Caller) turns a refused token into the 401.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

use super::ApiState;
use crate::auth::{AuthError, Subject};

/// The outcome of authenticating a request.
#[derive(Clone)]
pub(super) struct Authenticated(pub(super) Result<Arc<Subject>, AuthError>);

/// Paths that neither authenticate nor count against a limit.
pub(super) fn is_unmetered(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

pub(super) async fn middleware(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    if !is_unmetered(req.uri().path()) {
        let outcome = verify(req.headers(), &state).await;
        req.extensions_mut().insert(Authenticated(outcome));
    }
    next.run(req).await
}

/// The user a request's token names. Without a key (development) a request without a token is
/// the Administrator.
pub(super) async fn verify(headers: &HeaderMap, state: &ApiState) -> Result<Arc<Subject>, AuthError> {
    let authorization = match headers.get(header::AUTHORIZATION) {
        Some(v) => Some(v.to_str().map_err(|_| AuthError::Invalid)?),
        None => None,
    };
    state.auth.authenticate(authorization).await
}
