//! Webhooks: a local receiver checks each delivery's signature and answers 500, slowly, not at
//! all or with a redirect, then recovers — the target's breaker opens, half-opens and closes,
//! deliveries resume, and every attempt of a delivery carries the same id. The SSRF guard
//! refuses internal addresses and logs it; a Webhook's rules refuse what cannot work.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{Backend, TestApp, wait_until};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    /// Answer 200 after this long (past the webhook timeout: the sender gives up first).
    Slow(Duration),
    Redirect(String),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    delivery: String,
    timestamp: String,
    signature: Option<String>,
    body: String,
}

/// Answers scripted per path (then 200), and every request received.
#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Serve on 127.0.0.1; returns the port.
    async fn start(&self) -> u16 {
        let app = axum::Router::new().fallback(receive).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn script(&self, path: &str, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().entry(path.to_string()).or_default().extend(answers);
    }

    fn got(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn receive(State(r): State<Receiver>, uri: axum::http::Uri, headers: HeaderMap, body: String) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    r.got.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        delivery: header("x-m-delivery").unwrap_or_default(),
        timestamp: header("x-m-timestamp").unwrap_or_default(),
        signature: header("x-m-signature"),
        body,
    });
    let next = r.script.lock().unwrap().get_mut(uri.path()).and_then(VecDeque::pop_front);
    match next {
        None => StatusCode::OK.into_response(),
        Some(Answer::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Answer::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            StatusCode::OK.into_response()
        }
        Some(Answer::Redirect(to)) => (StatusCode::FOUND, [("location", to)]).into_response(),
    }
}

/// A listener that accepts connections and never answers.
async fn silent() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// The signature a receiver expects: HMAC-SHA256 of "<timestamp>.<body>" with the secret.
fn expected_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn create_webhook(app: &TestApp, event: &str, url: &str, extra: Value) -> String {
    let mut body = json!({
        "webhook_doctype": "Gadget",
        "webhook_docevent": event,
        "request_url": url,
        "webhook_secret": "s3cret",
    });
    if let (Some(b), Value::Object(more)) = (body.as_object_mut(), extra) {
        b.extend(more);
    }
    let r = app.post("/api/v1/Webhook", body).send().await.expect(201);
    assert!(r.json.get("webhook_secret").is_none(), "the secret is never returned: {}", r.json);
    r.json["name"].as_str().unwrap().to_string()
}

/// The delivery logs of `webhook`.
async fn logs(app: &TestApp, webhook: &str) -> Vec<Value> {
    let path = format!("/api/v1/Webhook Request Log?webhook={webhook}&limit=100");
    let r = app.get(&path).send().await.expect(200);
    r.json["items"].as_array().cloned().unwrap_or_default()
}

/// Wait until `webhook` has a log in a final state, and return it.
async fn settled(app: &TestApp, webhook: &str, what: &str) -> Value {
    wait_until(what, Duration::from_secs(60), || async {
        let logs = logs(app, webhook).await;
        match logs.first() {
            Some(l)
                if ["Delivered", "Failed", "Refused", "Cancelled"].contains(&l["status"].as_str().unwrap_or("")) =>
            {
                Ok(l.clone())
            }
            _ => Err(logs),
        }
    })
    .await
}

async fn deliveries(backend: Backend) {
    let Some((app, config)) = TestApp::start_with(backend, |c| {
        c.webhook_allow_hosts = vec!["127.0.0.1".into()];
        c.webhook_timeout_secs = 1;
        c.job_attempts = 10;
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::default();
    let port = receiver.start().await;
    let base = format!("http://127.0.0.1:{port}");
    let hook = create_webhook(&app, "on_update", &format!("{base}/flaky"), json!({})).await;
    let r = app.get(&format!("/api/v1/Webhook/{hook}")).send().await.expect(200);
    assert!(r.json.get("webhook_secret").is_none(), "{}", r.json);
    assert_eq!(r.json["enabled"], true);

    // Three 500s open the breaker of 127.0.0.1:<port>; the delivery waits (no attempt used)
    // until the breaker half-opens, and the probe, answered 200, closes it.
    receiver.script("/flaky", [Answer::Status(500), Answer::Status(500), Answer::Status(500)]);
    let worker = app.fast_worker(&config);
    app.post("/api/v1/Gadget", json!({"code": "WH-1", "label": "first", "api_key": "k-123"})).send().await.expect(201);
    let breaker = format!("webhook:127.0.0.1:{port}");
    wait_until("the breaker opens", Duration::from_secs(30), || async {
        let open = app.rt().breakers().not_closed();
        if open.iter().any(|(n, s)| *n == breaker && *s == m_runtime::breaker::BreakerState::Open) {
            Ok(())
        } else {
            Err((open, logs(&app, &hook).await, receiver.got("/flaky").len()))
        }
    })
    .await;
    // Seen while it is open (it half-opens a second later): the gauge, and /ready warning with
    // the kind of target only (webhook hosts are not public).
    wait_until("the open breaker in the metrics and /ready", Duration::from_secs(30), || async {
        let open_gauge = [("breaker", breaker.as_str()), ("state", "open")];
        let gauge = crate::support::has_metric(&app, "m_circuit_breaker_state", &open_gauge).await;
        let ready = app.get("/ready").anonymous().send().await;
        let warned = ready.status == 200
            && ready.json["status"] == "warn"
            && ready.json["checks"]["circuitBreakers:state"][0]["componentId"] == "webhook"
            && !ready.json.to_string().contains("127.0.0.1");
        if gauge && warned { Ok(()) } else { Err(ready.json) }
    })
    .await;
    let log = settled(&app, &hook, "the delivery after the breaker closes").await;
    assert_eq!(log["status"], "Delivered", "{log}");
    assert_eq!(log["attempts"], 4, "three failures and the probe; waiting used none: {log}");
    assert_eq!(log["response_code"], 200, "{log}");
    assert!(log["error"].is_null(), "{log}");
    assert!(app.rt().breakers().not_closed().is_empty(), "the probe's success closed it");
    let got = receiver.got("/flaky");
    assert_eq!(got.len(), 4, "{got:?}");
    for r in &got {
        assert_eq!(r.delivery, log["name"].as_str().unwrap(), "the same delivery id on every attempt");
        assert_eq!(r.signature.as_deref(), Some(expected_signature("s3cret", &r.timestamp, &r.body).as_str()));
        assert_eq!(r.body, got[0].body, "the body is the same on every attempt");
    }
    let sent: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(sent["doctype"], "Gadget");
    assert_eq!(sent["name"], "WH-1");
    assert_eq!(sent["event"], "on_update");
    assert_eq!(sent["data"]["label"], "first", "the document as committed: {sent}");
    assert!(sent["data"].get("api_key").is_none() && !got[0].body.contains("k-123"), "never a Password: {sent}");
    assert_eq!(log["data"].as_str().unwrap(), got[0].body, "the log keeps the body as sent");
    for outcome in ["retry", "delivered", "deferred"] {
        let labels = [("outcome", outcome)];
        assert!(crate::support::has_metric(&app, "m_webhook_deliveries_total", &labels).await, "{outcome}");
    }

    // Slow, then no answer at all: each attempt times out, the same delivery is sent again
    // (at least once: the receiver saw the slow one), and the next answer delivers it.
    receiver.script("/flaky", [Answer::Slow(Duration::from_secs(3))]);
    app.patch("/api/v1/Gadget/WH-1", json!({"label": "second"})).send().await.expect(200);
    let second = wait_until("the second delivery", Duration::from_secs(60), || async {
        let logs = logs(&app, &hook).await;
        match logs.iter().find(|l| l["status"] == "Delivered" && l["data"].as_str().unwrap_or("").contains("second")) {
            Some(l) => Ok(l.clone()),
            None => Err(logs),
        }
    })
    .await;
    assert_eq!(second["attempts"], 2, "{second}");
    let tries: Vec<Received> =
        receiver.got("/flaky").into_iter().filter(|r| r.delivery == second["name"].as_str().unwrap()).collect();
    assert_eq!(tries.len(), 2, "the timed-out attempt reached the receiver, and was sent again: {tries:?}");

    // A receiver that never answers: each attempt times out and says so, and the delivery
    // is tried again.
    let quiet = silent().await;
    let mute = create_webhook(&app, "on_trash", &format!("http://127.0.0.1:{quiet}/"), json!({})).await;
    app.post("/api/v1/Gadget", json!({"code": "WH-2"})).send().await.expect(201);
    app.delete("/api/v1/Gadget/WH-2").send().await.expect(204);
    let retried = wait_until("two timed-out attempts", Duration::from_secs(60), || async {
        let logs = logs(&app, &mute).await;
        match logs.first() {
            Some(l) if l["attempts"].as_i64().unwrap_or(0) >= 2 => Ok(l.clone()),
            _ => Err(logs),
        }
    })
    .await;
    assert_eq!(retried["status"], "Retrying", "{retried}");
    assert!(retried["error"].as_str().unwrap_or("").contains("no answer within 1 s"), "{retried}");
    assert_eq!(retried["reference_document"], "WH-2");
    assert_eq!(retried["event"], "on_trash");

    // A redirect is not followed: refused and logged, and its target is never called. A 4xx
    // other than 408 / 429 fails at once.
    let redirecting = create_webhook(&app, "after_insert", &format!("{base}/moved"), json!({})).await;
    let gone = create_webhook(&app, "after_insert", &format!("{base}/gone"), json!({})).await;
    receiver.script("/moved", [Answer::Redirect(format!("http://localhost:{port}/inside"))]);
    receiver.script("/gone", [Answer::Status(410)]);
    app.post("/api/v1/Gadget", json!({"code": "WH-3"})).send().await.expect(201);
    let refused = settled(&app, &redirecting, "the redirected delivery").await;
    assert_eq!(refused["status"], "Refused", "{refused}");
    assert_eq!(refused["response_code"], 302, "{refused}");
    assert!(refused["error"].as_str().unwrap_or("").contains("redirects are not followed"), "{refused}");
    assert!(receiver.got("/inside").is_empty());
    let failed = settled(&app, &gone, "the delivery answered 410").await;
    assert_eq!(failed["status"], "Failed", "{failed}");
    assert_eq!((failed["attempts"].as_i64(), failed["response_code"].as_i64()), (Some(1), Some(410)), "{failed}");
    worker.stop().await;
}

crate::both_backends!(deliveries_are_signed_retried_and_wait_for_the_breaker, |backend| {
    deliveries(backend).await;
});

async fn guarded(backend: Backend) {
    let Some((app, config)) = TestApp::start_with(backend, |c| c.webhook_timeout_secs = 2).await else { return };
    let receiver = Receiver::default();
    let port = receiver.start().await;
    let targets = [
        (format!("http://127.0.0.1:{port}/a"), "loopback"),
        (format!("http://localhost:{port}/b"), "loopback"),
        (format!("http://[::1]:{port}/c"), "loopback"),
        ("http://10.1.2.3/d".to_string(), "private"),
        ("http://169.254.169.254/latest/meta-data/".to_string(), "metadata"),
    ];
    let mut hooks = Vec::new();
    for (url, _) in &targets {
        hooks.push(create_webhook(&app, "after_insert", url, json!({})).await);
    }
    let worker = app.fast_worker(&config);
    app.post("/api/v1/Gadget", json!({"code": "SSRF-1"})).send().await.expect(201);
    for (hook, (url, kind)) in hooks.iter().zip(&targets) {
        let log = settled(&app, hook, url).await;
        assert_eq!(log["status"], "Refused", "{url}: {log}");
        assert_eq!(log["attempts"], 1, "{log}");
        let error = log["error"].as_str().unwrap_or("");
        assert!(error.contains(kind) && error.contains("M_WEBHOOK_ALLOW_HOSTS"), "{url}: {error}");
    }
    assert!(receiver.got.lock().unwrap().is_empty(), "nothing reached the receiver");
    assert!(crate::support::has_metric(&app, "m_webhook_deliveries_total", &[("outcome", "refused")]).await);
    // Refusals are not the target's failures: no breaker opened.
    assert!(app.rt().breakers().not_closed().is_empty());
    worker.stop().await;
    // The failed jobs say why.
    let jobs = app.repo().jobs().list(Some(m_runtime::jobs::JobState::Failed), 100).await.unwrap();
    assert_eq!(jobs.iter().filter(|j| j.job == "m:webhook").count(), targets.len(), "{jobs:?}");
}

crate::both_backends!(internal_addresses_are_refused_and_logged, |backend| {
    guarded(backend).await;
});

crate::both!(webhook_rules, |app| {
    let post = |body: Value| app.post("/api/v1/Webhook", body);
    let ok =
        json!({"webhook_doctype": "Gadget", "webhook_docevent": "on_update", "request_url": "https://example.com/in"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, field, code) in [
        (with("webhook_doctype", json!("Nope")), "webhook_doctype", "unknown_doctype"),
        (with("webhook_doctype", json!("Webhook Request Log")), "webhook_doctype", "unknown_doctype"),
        (with("webhook_doctype", json!("Invoice Item")), "webhook_doctype", "unknown_doctype"),
        (with("webhook_docevent", json!("before_save")), "webhook_docevent", "option"),
        (with("request_url", json!("ftp://example.com/x")), "request_url", "url"),
        (with("request_url", json!("https://user:pw@example.com/x")), "request_url", "credentials"),
        (with("webhook_data", json!([{"fieldname": "api_key"}])), "webhook_data[0].fieldname", "password"),
        (with("webhook_data", json!([{"fieldname": "nope"}])), "webhook_data[0].fieldname", "unknown_field"),
    ] {
        let r = post(body.clone()).send().await.expect_error(422, "validation_failed");
        let details = r.json["error"]["details"].as_array().cloned().unwrap_or_default();
        assert!(details.iter().any(|d| d["field"] == field && d["code"] == code), "{body}: {}", r.json);
    }
    // Only System Managers see webhooks and their logs.
    let user = app.token("wh-user@example.com", &["Gadget User"]).await;
    app.get("/api/v1/Webhook").by(user.clone()).send().await.expect_error(403, "forbidden");
    app.get("/api/v1/Webhook Request Log").by(user).send().await.expect_error(403, "forbidden");
    // The secret is never listed or filtered on.
    let name = create_webhook(&app, "on_update", "https://example.com/in", json!({})).await;
    let list = app.get("/api/v1/Webhook").send().await.expect(200);
    let items = list.json["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.iter().all(|w| w.get("webhook_secret").is_none()), "{}", list.json);
    app.get("/api/v1/Webhook?webhook_secret=s3cret").send().await.expect_error(400, "bad_request");
    app.delete(&format!("/api/v1/Webhook/{name}")).send().await.expect(204);
});

crate::both!(webhook_fields_and_cancellation, |app| {
    // The fields listed are sent under their keys; the copy of the webhooks is read again at
    // once after a webhook is saved here, so the very next change matches it.
    let hook = create_webhook(
        &app,
        "after_insert",
        "https://example.com/in",
        json!({"webhook_data": [{"fieldname": "label", "key": "title"}, {"fieldname": "code"}]}),
    )
    .await;
    app.post("/api/v1/Gadget", json!({"code": "F-1", "label": "picked", "api_key": "zzz"})).send().await.expect(201);
    let log = logs(&app, &hook).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "Queued");
    assert_eq!(log[0]["user"], "Administrator");
    let body: Value = serde_json::from_str(log[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"], json!({"title": "picked", "code": "F-1"}), "{body}");
    // Disabled before its worker ran: the queued delivery is cancelled, and new changes send
    // nothing.
    app.patch(&format!("/api/v1/Webhook/{hook}"), json!({"enabled": false})).send().await.expect(200);
    app.post("/api/v1/Gadget", json!({"code": "F-2"})).send().await.expect(201);
    let config = m_runtime::config::Config::default();
    let worker = app.fast_worker(&config);
    let log = settled(&app, &hook, "the cancelled delivery").await;
    assert_eq!(log["status"], "Cancelled", "{log}");
    assert_eq!(log["attempts"], 0, "{log}");
    worker.stop().await;
    assert_eq!(logs(&app, &hook).await.len(), 1, "a disabled webhook records nothing");
});
