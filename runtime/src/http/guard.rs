//! Load shedding and the request timeout. One semaphore for the whole server (tower's limit
//! layers count per router clone, which under axum limits nothing): when every permit is taken a
//! request gets a fast 503 with `Retry-After` instead of waiting in a queue that grows without
//! bound. A request that runs past the timeout is dropped (its transaction rolls back) and
//! answered 504. Health endpoints are exempt, so probes keep answering under load.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;

/// Server-wide request limits.
pub struct Limits {
    pub in_flight: Arc<Semaphore>,
    pub request_timeout: Duration,
}

impl Limits {
    pub fn new(max_in_flight: usize, request_timeout: Duration) -> Arc<Limits> {
        Arc::new(Limits { in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))), request_timeout })
    }
}

pub async fn middleware(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/health" | "/ready" | "/metrics") {
        return next.run(req).await;
    }
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        crate::metrics::request_shed();
        return ApiError::Overloaded.into_response();
    };
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::RequestTimeout(limits.request_timeout.as_secs()).into_response(),
    }
}
