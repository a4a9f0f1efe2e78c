//! One delivery (the job `m:webhook`): read its log and its webhook, ask the target's breaker,
//! resolve and check the address (the SSRF guard), POST the body as recorded — signed, with the
//! delivery id of every attempt — and write the outcome to the log.
//!
//! A 2xx answer delivers. Timeouts, connection failures, 5xx, 408 and 429 are retried with the
//! job queue's backoff until its attempts are used up, and count against the target's breaker;
//! other 4xx fail at once. A redirect is not followed: the delivery is refused, as is an address
//! the guard refuses. While the breaker is open nothing is sent: the job is queued again for
//! when it may half-open, without using an attempt.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value as Json, json};
use sha2::Sha256;

use super::{LOG_DOCTYPE, Status, WEBHOOK_DOCTYPE, Webhooks};
use crate::jobs::{JobCtx, JobError};
use crate::outbound::Blocked;
use crate::repo::{Expect, RepoError};
use crate::value::Value;

/// The most of a receiver's answer kept in the log.
const RESPONSE_KEPT: usize = 4096;

/// How one attempt ended.
enum Sent {
    /// The breaker is open: nothing was sent.
    Deferred(Duration),
    /// The guard refused the address, or the receiver redirected.
    Refused { error: String, code: Option<u16> },
    /// The receiver answered.
    Answered { code: u16, response: String },
    /// No answer: timeout, connection refused or reset, the name did not resolve.
    NoAnswer(String),
}

/// The job: deliver the log named in `args.log`.
pub async fn run(ctx: &JobCtx, args: Json) -> Result<(), JobError> {
    let id = args
        .get("log")
        .and_then(Json::as_str)
        .ok_or_else(|| JobError::fatal("args.log must name a Webhook Request Log"))?;
    let repo = ctx.repo();
    let admin = ctx.system();
    let log = match repo.get(&admin, LOG_DOCTYPE, id).await {
        Ok(log) => log,
        // Deleted by a System Manager: nothing left to deliver.
        Err(RepoError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // Delivered (the job ran again after a crash) or cancelled: nothing to send. A failed or
    // refused delivery is sent again when its job is retried (`m job:retry`).
    if matches!(Status::parse(log.text("status")), Some(Status::Delivered | Status::Cancelled)) {
        return Ok(());
    }
    let webhook = match repo.get(&admin, WEBHOOK_DOCTYPE, log.text("webhook")).await {
        Ok(w) if w.get("enabled") == &Value::Bool(true) => w,
        Ok(_) | Err(RepoError::NotFound) => {
            let outcome = json!({ "status": Status::Cancelled.as_str(), "error": "the webhook was disabled or deleted before this delivery was sent" });
            return record(ctx, id, outcome).await;
        }
        Err(e) => return Err(e.into()),
    };
    let url = webhook.text("request_url").to_string();
    let secret = webhook.text("webhook_secret");
    let body = log.text("data");
    let attempts = match log.get("attempts") {
        Value::Int(n) => *n,
        _ => 0,
    };
    let started = Instant::now();
    let sent = repo.webhooks().send(&url, secret, id, body).await;
    let elapsed = started.elapsed();
    let tried = json!({ "url": url, "attempts": attempts + 1 });
    let (status, error, code, response, job) = match sent {
        Sent::Deferred(after) => {
            crate::metrics::webhook_delivery("deferred", None);
            let why = format!("not sent: the circuit breaker for {url} is open");
            return Err(JobError::later(why, after));
        }
        Sent::Refused { error, code } => {
            crate::metrics::webhook_delivery("refused", code.map(|_| elapsed));
            tracing::warn!(target: "m::audit", webhook = webhook.text("name"), delivery = id, %error, "webhook delivery refused");
            (Status::Refused, Some(error.clone()), code, None, Err(JobError::fatal(error)))
        }
        Sent::Answered { code, response } if (200..300).contains(&code) => {
            crate::metrics::webhook_delivery("delivered", Some(elapsed));
            (Status::Delivered, None, Some(code), Some(response), Ok(()))
        }
        Sent::Answered { code, response } if retryable(code) => {
            let error = format!("the receiver answered {code}");
            let (status, job) = failed_attempt(ctx, &error, elapsed);
            (status, Some(error), Some(code), Some(response), job)
        }
        Sent::Answered { code, response } => {
            crate::metrics::webhook_delivery("failed", Some(elapsed));
            let error = format!("the receiver answered {code}: not retried");
            (Status::Failed, Some(error.clone()), Some(code), Some(response), Err(JobError::fatal(error)))
        }
        Sent::NoAnswer(error) => {
            let (status, job) = failed_attempt(ctx, &error, elapsed);
            (status, Some(error), None, None, job)
        }
    };
    let mut outcome = tried;
    if let Json::Object(o) = &mut outcome {
        o.insert("status".into(), json!(status.as_str()));
        o.insert("error".into(), json!(error));
        o.insert("response_code".into(), json!(code));
        o.insert("response".into(), json!(response));
    }
    record(ctx, id, outcome).await?;
    job
}

/// A failure that may pass later: retried while the job has attempts left.
fn failed_attempt(ctx: &JobCtx, error: &str, elapsed: Duration) -> (Status, Result<(), JobError>) {
    if ctx.can_retry() {
        crate::metrics::webhook_delivery("retry", Some(elapsed));
        (Status::Retrying, Err(JobError::retry(error)))
    } else {
        crate::metrics::webhook_delivery("failed", Some(elapsed));
        (Status::Failed, Err(JobError::fatal(error)))
    }
}

/// Write an attempt's outcome to the log.
async fn record(ctx: &JobCtx, id: &str, outcome: Json) -> Result<(), JobError> {
    ctx.repo().update(&ctx.system(), LOG_DOCTYPE, id, &outcome, &Expect::default()).await?;
    Ok(())
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes a key of any length; this branch is never taken.
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Webhooks {
    /// One attempt: breaker, guard, request.
    async fn send(&self, url: &str, secret: &str, delivery: &str, body: &str) -> Sent {
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Sent::Refused { error: format!("`{url}` is not a URL: {e}"), code: None },
        };
        let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
            return Sent::Refused { error: format!("`{url}` has no host"), code: None };
        };
        let breaker = self.inner.breakers.get(&format!("webhook:{host}:{port}"));
        let Some(call) = breaker.call() else { return Sent::Deferred(breaker.retry_after()) };
        let addrs = match self.inner.guard.resolve(host, port).await {
            Ok(addrs) => addrs,
            // Dropped unanswered: a refusal says nothing of the target's health.
            Err(Blocked::Refused(error)) => return Sent::Refused { error, code: None },
            Err(Blocked::Unresolved(error)) => {
                call.failed();
                return Sent::NoAnswer(error);
            }
        };
        match self.post(&parsed, host, &addrs, secret, delivery, body).await {
            Ok(sent) => {
                match &sent {
                    Sent::Answered { code, .. } if retryable(*code) => call.failed(),
                    _ => call.succeeded(),
                }
                sent
            }
            Err(error) => {
                call.failed();
                Sent::NoAnswer(error)
            }
        }
    }

    /// POST to the checked addresses only (no second lookup), following no redirect.
    async fn post(
        &self,
        url: &reqwest::Url,
        host: &str,
        addrs: &[SocketAddr],
        secret: &str,
        delivery: &str,
        body: &str,
    ) -> Result<Sent, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.inner.timeout)
            .resolve_to_addrs(host, addrs)
            .user_agent(concat!("M-Webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut request = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-M-Timestamp", timestamp.to_string())
            .header("X-M-Delivery", delivery)
            .body(body.to_string());
        if !secret.is_empty() {
            request = request.header("X-M-Signature", signature(secret, timestamp, body));
        }
        let mut response = request.send().await.map_err(|e| describe(&e, self.inner.timeout))?;
        let code = response.status().as_u16();
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("(no Location)")
                .to_string();
            let error = format!("the receiver answered {code}, a redirect to {location}: redirects are not followed");
            return Ok(Sent::Refused { error, code: Some(code) });
        }
        let mut kept = Vec::new();
        while kept.len() < RESPONSE_KEPT {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_KEPT - kept.len())]),
                Ok(None) => break,
                Err(e) if retryable(code) => {
                    return Err(describe(&e, self.inner.timeout));
                }
                Err(_) => break,
            }
        }
        // Kept as text (a NUL byte, which no text field holds, as U+FFFD).
        let response = String::from_utf8_lossy(&kept).replace('\0', "\u{FFFD}");
        Ok(Sent::Answered { code, response })
    }
}

/// An answer that may be different later (the receiver is failing or busy): retried, and a
/// failure for the breaker.
fn retryable(code: u16) -> bool {
    code >= 500 || code == 408 || code == 429
}

/// What went wrong with a request, for the log.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} s (M_WEBHOOK_TIMEOUT_SECS)", timeout.as_secs())
    } else if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else {
        format!("the request failed: {}", root_cause(e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
