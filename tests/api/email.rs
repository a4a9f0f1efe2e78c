//! Email: submitting an Invoice queues a message to its customer (the example application's
//! hook) in the submit's transaction; the job sends it to a real SMTP server (aiosmtpd, in a
//! child process) with a text and an HTML part, writes it as an `.eml` file in development
//! without SMTP, and leaves it failed with `smtp_not_configured` in production. An SMTP server
//! that is down opens the `smtp` breaker; the email waits and goes once it is back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use m_runtime::config::{Config, Mode, Secret, SmtpUrl};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, wait_until};

/// A folder of this test's own, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("m-test-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Python that runs the test peers: `M_TEST_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("M_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// aiosmtpd in a child process, writing what it receives into its own folder.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl SmtpSink {
    /// None (after saying so) when aiosmtpd is not installed here; under CI that fails.
    pub fn start() -> Option<SmtpSink> {
        SmtpSink::start_on(0)
    }

    /// On `port` (0: any free one).
    pub fn start_on(port: u16) -> Option<SmtpSink> {
        let importable = Command::new(python()).args(["-c", "import aiosmtpd"]).output();
        if !importable.is_ok_and(|o| o.status.success()) {
            crate::support::skip_unless_ci(
                "aiosmtpd",
                "set M_TEST_PYTHON to a Python with aiosmtpd (.ci/run makes one)",
            );
            return None;
        }
        let dir = TempDir::new("smtp");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(&dir.0)
            .args((port != 0).then(|| port.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()).expect("the sink says its port");
        Some(SmtpSink { child, port, dir })
    }

    /// The messages received so far, in order (what Python's email parser read in them).
    pub fn received(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir.0)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A customer with an email address and a draft invoice for it.
async fn invoice_for(app: &TestApp, email: Option<&str>) -> String {
    app.post("/api/v1/Territory", json!({"territory_name": "Mail"})).send().await;
    let c = app
        .post("/api/v1/Customer", json!({"customer_name": "Ada <Lovelace>", "territory": "Mail", "email": email}))
        .send()
        .await
        .expect(201);
    let customer = c.json["name"].as_str().unwrap();
    let body = json!({"customer": customer, "items": [{"item_code": "WIDGET", "qty": 2, "rate": "10.50"}]});
    let i = app.post("/api/v1/Invoice", body).send().await.expect(201);
    i.json["name"].as_str().unwrap().to_string()
}

/// The Email Queue documents about `invoice`.
async fn queued(app: &TestApp, invoice: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/Email Queue?reference_name={invoice}")).send().await.expect(200);
    r.json["items"].as_array().cloned().unwrap_or_default()
}

async fn settled(app: &TestApp, invoice: &str) -> Value {
    wait_until("the email to settle", Duration::from_secs(60), || async {
        let q = queued(app, invoice).await;
        match q.first() {
            Some(e) if e["status"] != "Not Sent" => Ok(e.clone()),
            _ => Err(q),
        }
    })
    .await
}

async fn sent_over_smtp(backend: Backend) {
    let Some(sink) = SmtpSink::start() else { return };
    let Some((app, config)) = TestApp::start_with(backend, |c| {
        c.smtp_url = Some(SmtpUrl::parse(&format!("smtp://127.0.0.1:{}", sink.port)).unwrap());
        c.mail_from = Some("Acme Billing <billing@acme.example>".into());
    })
    .await
    else {
        return;
    };
    // A submit queues the email in its transaction: there before any worker runs.
    let invoice = invoice_for(&app, Some("ada@example.com")).await;
    app.post(&format!("/api/v1/Invoice/{invoice}/submit"), json!({})).send().await.expect(200);
    let q = queued(&app, &invoice).await;
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!((q[0]["status"].as_str(), q[0]["recipients"].as_str()), (Some("Not Sent"), Some("ada@example.com")));
    assert_eq!(q[0]["subject"], format!("Invoice {invoice}"));
    // Only System Managers read the outbox.
    let user = app.token("mail-user@example.com", &["Sales User"]).await;
    app.get("/api/v1/Email Queue").by(user).send().await.expect_error(403, "forbidden");

    let worker = app.fast_worker(&config);
    let sent = settled(&app, &invoice).await;
    assert_eq!(sent["status"], "Sent", "{sent}");
    assert_eq!(sent["attempts"], 1, "{sent}");
    let got = sink.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["rcpt"], json!(["ada@example.com"]));
    assert_eq!(m["from"], "Acme Billing <billing@acme.example>");
    assert_eq!(m["subject"], format!("Invoice {invoice}"));
    assert_eq!(m["content_type"], "multipart/alternative", "both parts: {m}");
    let text = m["text"].as_str().unwrap();
    let html = m["html"].as_str().unwrap();
    assert!(text.contains(&format!("Invoice {invoice} of")) && text.contains("WIDGET: 2.0 x 10.50 = 21.00"), "{text}");
    assert!(text.contains("Dear Ada <Lovelace>"), "the text part is not escaped: {text}");
    assert!(html.contains(&format!("<strong>{invoice}</strong>")), "{html}");
    assert!(html.contains("Dear Ada &lt;Lovelace&gt;"), "the HTML part is escaped: {html}");
    assert!(crate::support::has_metric(&app, "m_emails_total", &[("outcome", "sent")]).await);

    // A customer without an address gets nothing; nothing is queued.
    let silent = invoice_for(&app, None).await;
    app.post(&format!("/api/v1/Invoice/{silent}/submit"), json!({})).send().await.expect(200);
    assert!(queued(&app, &silent).await.is_empty());
    worker.stop().await;
}

crate::both_backends!(a_submitted_invoice_is_emailed_over_smtp, |backend| {
    sent_over_smtp(backend).await;
});

async fn smtp_outage(backend: Backend) {
    // Nothing listens on the port yet: the attempts fail, the breaker opens, the email waits.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let Some((app, config)) = TestApp::start_with(backend, |c| {
        c.smtp_url = Some(SmtpUrl::parse(&format!("smtp://127.0.0.1:{port}")).unwrap());
        c.mail_from = Some("billing@acme.example".into());
        c.smtp_timeout_secs = 2;
        c.job_attempts = 10;
    })
    .await
    else {
        return;
    };
    let invoice = invoice_for(&app, Some("ada@example.com")).await;
    app.post(&format!("/api/v1/Invoice/{invoice}/submit"), json!({})).send().await.expect(200);
    let worker = app.fast_worker(&config);
    wait_until("the smtp breaker opens", Duration::from_secs(30), || async {
        let open = app.rt().breakers().not_closed();
        if open.iter().any(|(n, _)| n == "smtp") { Ok(()) } else { Err(open) }
    })
    .await;
    // The third attempt is recorded just after its failure opened the breaker.
    let waiting = wait_until("three failed attempts", Duration::from_secs(30), || async {
        let q = queued(&app, &invoice).await;
        if q.first().is_some_and(|e| e["attempts"] == 3) { Ok(q) } else { Err(q) }
    })
    .await;
    assert_eq!(waiting[0]["status"], "Not Sent", "{waiting:?}");
    assert!(waiting[0]["error"].as_str().unwrap_or("").contains("SMTP"), "{waiting:?}");
    // The server comes up on that port (a child process binds it): the email goes.
    let Some(sink) = SmtpSink::start_on(port) else { return };
    let sent = settled(&app, &invoice).await;
    assert_eq!(sent["status"], "Sent", "{sent}");
    // Three failures, then the probes once the server is up (a probe made before it listened
    // fails too); waiting for the breaker used no attempt.
    let attempts = sent["attempts"].as_i64().unwrap();
    assert!((4..=6).contains(&attempts), "{sent}");
    assert_eq!(sink.received().len(), 1);
    assert!(app.rt().breakers().not_closed().is_empty());
    worker.stop().await;
}

crate::both_backends!(an_smtp_outage_opens_the_breaker_and_the_email_waits, |backend| {
    smtp_outage(backend).await;
});

crate::both_backends!(without_smtp_development_writes_eml_files_and_production_fails_the_job, |backend| {
    let mail = TempDir::new("mail");
    let dir = mail.0.clone();
    let Some((app, config)) = TestApp::start_with(backend, |c| c.mail_dir = dir).await else { return };
    let invoice = invoice_for(&app, Some("ada@example.com")).await;
    app.post(&format!("/api/v1/Invoice/{invoice}/submit"), json!({})).send().await.expect(200);
    let worker = app.fast_worker(&config);
    let written = settled(&app, &invoice).await;
    // A job queues one too (committed at once), and the worker sends it.
    app.repo().enqueue("mail_someone", &json!({"to": "carol@example.com", "who": "Carol"}), None).await.unwrap();
    let from_job = wait_until("the job's email", Duration::from_secs(30), || async {
        let files: Vec<String> = std::fs::read_dir(&mail.0)
            .unwrap()
            .filter_map(|e| e.ok().and_then(|e| std::fs::read_to_string(e.path()).ok()))
            .filter(|t| t.contains("Subject: Hello Carol"))
            .collect();
        files.into_iter().next().ok_or("not yet")
    })
    .await;
    assert!(from_job.contains("To: carol@example.com") && from_job.contains("Hi Carol, from a job."), "{from_job}");
    worker.stop().await;
    assert_eq!(written["status"], "Sent", "{written}");
    let files: Vec<PathBuf> = std::fs::read_dir(&mail.0)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("Subject: Invoice")))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(written["error"].as_str().unwrap_or("").contains(&files[0].display().to_string()), "{written}");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(eml.contains(&format!("Subject: Invoice {invoice}")) && eml.contains("multipart/alternative"), "{eml}");

    // Production without M_SMTP_URL, on the same database: the submit succeeds and queues the
    // email; its job fails, saying why.
    let production = Config {
        env: Mode::Production,
        jwt_secret: Some(Secret::new("a production secret of at least 32 bytes")),
        encryption_key: Some(Secret::new("an encryption key of at least 32 bytes")),
        ..config.clone()
    };
    let setup = m_runtime::services::Setup::new(production, crate::support::application(), crate::support::jobs());
    let rt = setup.unwrap().open(m_runtime::services::Schema::AsIs).await.unwrap();
    let other = invoice_for(&app, Some("bob@example.com")).await;
    let admin = m_runtime::perms::Principal::administrator();
    let expect = m_runtime::repo::Expect::default();
    rt.repo.transition(&admin, "Invoice", &other, m_runtime::perms::Action::Submit, &expect).await.unwrap();
    let mut wc = m_runtime::jobs::WorkerConfig::from_config(&config);
    wc.poll = Duration::from_millis(50);
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = stop.clone();
    let task = tokio::spawn(rt.worker(wc).run_until(async move { signal.notified().await }, Duration::from_secs(5)));
    let failed = settled(&app, &other).await;
    stop.notify_one();
    task.await.unwrap();
    assert_eq!(failed["status"], "Error", "{failed}");
    assert!(failed["error"].as_str().unwrap_or("").starts_with("smtp_not_configured"), "{failed}");
    let jobs = rt.repo.jobs().list(Some(m_runtime::jobs::JobState::Failed), 10).await.unwrap();
    assert!(
        jobs.iter().any(|j| j.job == "m:email" && j.error.as_deref().unwrap_or("").contains("smtp_not_configured"))
    );
    let got = app.get(&format!("/api/v1/Invoice/{other}")).send().await.expect(200);
    assert_eq!(got.json["docstatus"], 1, "the submit stands");
});
