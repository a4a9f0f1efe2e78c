//! Request ids: taken from `X-Request-Id` when it is well-formed, else generated; echoed in the
//! response header and in error bodies (through a task-local the error response reads). The same
//! middleware writes the one log line per request: id, method, route template, DocType, status,
//! duration and the authenticated user (never the credentials).

use std::sync::{Arc, OnceLock};

use opentelemetry::propagation::{Extractor, Injector};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The message and code a 5xx carries, kept in the response so this middleware can log it.
#[derive(Clone, Debug)]
pub struct InternalDetail(pub String);

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id ("" outside a request).
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A new request id: a random per-process prefix and a counter, unique without a system call per
/// request (UUID generation reads the OS random source every time).
fn generate() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    format!("{prefix}-{:010x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn well_formed(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Where the authentication extractor leaves the caller's name for the request log.
#[derive(Clone, Default)]
pub struct UserSlot(pub Arc<OnceLock<String>>);

/// The DocType segment of an API path (`/api/v1/{doctype}…`, `/api/meta/{doctype}`), decoded and
/// bounded.
fn doctype_of(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    let rest = path.strip_prefix("/api/v1/").or_else(|| path.strip_prefix("/api/meta/"))?;
    let seg = rest.split('/').next().filter(|s| !s.is_empty())?;
    if seg.len() <= 64 && !seg.contains('%') {
        return Some(std::borrow::Cow::Borrowed(seg));
    }
    Some(std::borrow::Cow::Owned(seg.replace("%20", " ").chars().take(64).collect()))
}

/// Middleware: assign the id, run the request inside its scope, log one line per request.
pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map_or_else(generate, str::to_string);
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("<unmatched>", MatchedPath::as_str);
    let uri = req.uri().clone();
    let doctype_cow = doctype_of(uri.path()).unwrap_or_default();
    let doctype: &str = &doctype_cow;
    let user = UserSlot::default();
    req.extensions_mut().insert(user.clone());
    // A trace span (exported only when tracing is configured), continuing the caller's trace.
    let span = tracing::trace_span!(
        target: crate::telemetry::TARGET,
        "HTTP request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        request_id = %id,
    );
    if !span.is_disabled() {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(req.headers())));
        let _ = span.set_parent(parent);
    }
    let started = std::time::Instant::now();
    let mut res = REQUEST_ID.scope(id.clone(), next.run(req)).instrument(span.clone()).await;
    let status = res.status().as_u16();
    if !span.is_disabled() {
        span.record("http.response.status_code", status);
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&span.context(), &mut HeaderInjector(res.headers_mut()));
        });
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    crate::metrics::http_request(method.as_str(), route, status, started.elapsed());
    let user = user.0.get().map_or("", String::as_str);
    if let Some(InternalDetail(detail)) = res.extensions().get::<InternalDetail>() {
        tracing::error!(request_id = %id, %method, route, doctype, status, duration_ms = ms, user, error = %detail, "request failed");
    } else if status == 403 {
        tracing::info!(request_id = %id, %method, route, doctype, status, duration_ms = ms, user, "permission denied");
    } else {
        tracing::info!(request_id = %id, %method, route, doctype, status, duration_ms = ms, user, "request");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    res
}

/// Read propagation headers from an HTTP request.
struct HeaderExtractor<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// Write propagation headers into an HTTP response.
struct HeaderInjector<'a>(pub &'a mut axum::http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) =
            (axum::http::HeaderName::from_bytes(key.as_bytes()), axum::http::HeaderValue::from_str(&value))
        {
            self.0.insert(k, v);
        }
    }
}
