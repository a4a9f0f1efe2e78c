//! Prometheus metrics. One process-wide recorder; series are labelled by route template,
//! method, status, DocType name and operation — never by raw paths, ids or users.
//!
//! - `m_http_requests_total{method,route,status}`, `m_http_request_duration_seconds{method,route}`
//! - `m_http_requests_shed_total` (load shedding), `m_permission_denials_total{doctype,action}`
//! - `m_db_query_duration_seconds{doctype,operation}` (every statement, labelled by the document
//!   operation it serves, or `internal`), `m_db_pool_connections{state="in_use"|"idle"}`
//! - `m_cache_requests_total{cache,result}` (the verified-token cache)
//! - `m_rate_limit_rejections_total{policy}`
//! - `m_circuit_breaker_state{breaker,state}` (1 for the breaker's current state, 0 for the others)
//! - `m_jobs_queued{state}` (background jobs queued, running or failed, counted at each scrape),
//!   `m_jobs_total{job,outcome}`, `m_job_duration_seconds{job}`
//! - `m_webhook_deliveries_total{outcome="delivered"|"failed"|"retry"|"refused"|"deferred"}`,
//!   `m_webhook_delivery_duration_seconds` (each request made)
//! - `m_emails_total{outcome="sent"|"written"|"failed"|"retry"|"deferred"}`,
//!   `m_email_duration_seconds` (each message handed to SMTP or written to a file)
//! - `m_print_requests_total{format="html"|"pdf",outcome}`, `m_print_duration_seconds{format}`

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's recorder, installed on first use (inside a Tokio runtime: a task drains the
/// histograms every few seconds, so memory stays flat when nobody scrapes).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
                .ok()?
                .install_recorder()
                .map_err(|e| tracing::warn!("metrics are off: {e}"))
                .ok()?;
            let upkeep = handle.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(5));
                    loop {
                        tick.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            Some(handle)
        })
        .as_ref()
}

/// A label value that lives for the process: route templates and status codes are a small,
/// fixed set, so each is allocated once (no allocation per request).
fn interned(s: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::RwLock;
    static SEEN: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = seen.read().ok().and_then(|set| set.get(s).copied()) {
        return v;
    }
    let Ok(mut set) = seen.write() else { return "?" };
    if let Some(v) = set.get(s) {
        return v;
    }
    // Bounded: beyond this many distinct values (never reached by templates), one bucket.
    if set.len() >= 1024 {
        return "other";
    }
    let v: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(v);
    v
}

/// `"200"` … as static strings, made once.
fn status_label(code: u16) -> &'static str {
    static CODES: OnceLock<Vec<String>> = OnceLock::new();
    let codes = CODES.get_or_init(|| (0..600).map(|c: u16| c.to_string()).collect());
    codes.get(usize::from(code)).map_or("other", String::as_str)
}

/// Standard methods keep their name; anything else a client invents is `OTHER`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// The identity of a `&'static str` label value (statics: address and length).
fn id(s: &'static str) -> LabelId {
    (s.as_ptr() as usize, s.len())
}

/// A label value's identity (see [`id`]).
type LabelId = (usize, usize);
type DbHandles = HashMap<(LabelId, LabelId), metrics::Histogram>;
type HttpHandles = HashMap<[LabelId; 3], (metrics::Counter, metrics::Histogram)>;

thread_local! {
    /// Metric handles by label values, so the hot path neither allocates a key nor searches the
    /// registry (the label sets are small and fixed: DocTypes × operations, routes × statuses).
    static DB_HISTOGRAMS: RefCell<DbHandles> = RefCell::new(HashMap::new());
    static HTTP_HANDLES: RefCell<HttpHandles> = RefCell::new(HashMap::new());
}

/// One database statement serving `operation` on `doctype` took `elapsed`.
pub fn db_statement(doctype: &'static str, operation: &'static str, elapsed: Duration) {
    DB_HISTOGRAMS.with(|cell| {
        let mut map = cell.borrow_mut();
        map.entry((id(doctype), id(operation)))
            .or_insert_with(
                || metrics::histogram!("m_db_query_duration_seconds", "doctype" => doctype, "operation" => operation),
            )
            .record(elapsed.as_secs_f64());
    });
}

/// One HTTP request finished. `route` is a route template (or `<unmatched>`).
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let (method, route, status) = (method_label(method), interned(route), status_label(status));
    HTTP_HANDLES.with(|cell| {
        let mut map = cell.borrow_mut();
        let (count, duration) = map.entry([id(method), id(route), id(status)]).or_insert_with(|| {
            (
                metrics::counter!("m_http_requests_total", "method" => method, "route" => route, "status" => status),
                metrics::histogram!("m_http_request_duration_seconds", "method" => method, "route" => route),
            )
        });
        count.increment(1);
        duration.record(elapsed.as_secs_f64());
    });
}

pub fn rate_limited(policy: &'static str) {
    metrics::counter!("m_rate_limit_rejections_total", "policy" => policy).increment(1);
}

pub fn request_shed() {
    metrics::counter!("m_http_requests_shed_total").increment(1);
}

pub fn permission_denied(doctype: &'static str, action: &'static str) {
    metrics::counter!("m_permission_denials_total", "doctype" => doctype, "action" => action).increment(1);
}

pub fn cache_lookup(cache: &'static str, hit: bool) {
    thread_local! {
        /// Handles by cache and result (a lookup happens on every request).
        static HANDLES: RefCell<HashMap<(LabelId, bool), metrics::Counter>> = RefCell::new(HashMap::new());
    }
    HANDLES.with(|cell| {
        cell.borrow_mut()
            .entry((id(cache), hit))
            .or_insert_with(|| {
                let result = if hit { "hit" } else { "miss" };
                metrics::counter!("m_cache_requests_total", "cache" => cache, "result" => result)
            })
            .increment(1);
    });
}

pub fn pool_connections(in_use: usize, idle: usize) {
    metrics::gauge!("m_db_pool_connections", "state" => "in_use").set(in_use as f64);
    metrics::gauge!("m_db_pool_connections", "state" => "idle").set(idle as f64);
}

/// A circuit breaker is now in `state`, one of `states` (each gets 1 for the current one, 0 else).
pub fn breaker_state(breaker: &str, state: &'static str, states: &[&'static str]) {
    for &s in states {
        metrics::gauge!("m_circuit_breaker_state", "breaker" => breaker.to_string(), "state" => s).set(if s == state {
            1.0
        } else {
            0.0
        });
    }
}

/// A job run ended: `outcome` is `done`, `retry`, `failed` or `deferred` (not tried: a
/// dependency's breaker is open).
pub fn job_finished(job: &'static str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!("m_jobs_total", "job" => job, "outcome" => outcome).increment(1);
    metrics::histogram!("m_job_duration_seconds", "job" => job).record(elapsed.as_secs_f64());
}

/// Jobs in the queue per state.
pub fn jobs_queued(counts: &[(&'static str, i64)]) {
    for &(state, n) in counts {
        metrics::gauge!("m_jobs_queued", "state" => state).set(n as f64);
    }
}

/// A webhook delivery attempt ended: `delivered`, `failed` (for good), `retry` (it will be tried
/// again), `refused` (the address or a redirect: the SSRF guard) or `deferred` (not tried: the
/// host's breaker is open). `elapsed` is the request's duration, when one was made.
pub fn webhook_delivery(outcome: &'static str, elapsed: Option<Duration>) {
    metrics::counter!("m_webhook_deliveries_total", "outcome" => outcome).increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!("m_webhook_delivery_duration_seconds").record(elapsed.as_secs_f64());
    }
}

/// An email's attempt ended: `sent`, `written` (development: an `.eml` file), `failed` (for
/// good), `retry` or `deferred` (not tried: the SMTP breaker is open).
pub fn email(outcome: &'static str, elapsed: Option<Duration>) {
    metrics::counter!("m_emails_total", "outcome" => outcome).increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!("m_email_duration_seconds").record(elapsed.as_secs_f64());
    }
}

/// A print ended: `format` is `html` or `pdf`; `outcome` is `ok`, `failed`, `timeout` or
/// `unavailable` (not configured, or the Gotenberg breaker is open).
pub fn print(format: &'static str, outcome: &'static str, elapsed: Option<Duration>) {
    metrics::counter!("m_print_requests_total", "format" => format, "outcome" => outcome).increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!("m_print_duration_seconds", "format" => format).record(elapsed.as_secs_f64());
    }
}
