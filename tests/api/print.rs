//! Printing: a document's HTML from its template (the example's `print/invoice.html`, the
//! standard one, the tests' Gizmo template) for callers who may read it, and its PDF from a
//! stand-in speaking Gotenberg's Chromium route that renders with headless Chromium. The
//! stand-in failing and hanging drives the `gotenberg` breaker; nothing external reaches
//! Chromium; a submitted invoice's email carries its PDF.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::email::{SmtpSink, TempDir};
use crate::support::{Backend, TestApp, wait_until};

/// How the stand-in answers one conversion.
#[derive(Debug, Clone)]
enum Answer {
    Fail,
    Hang(Duration),
}

/// One conversion the stand-in was asked for: the route, form fields and files.
#[derive(Debug, Clone, Default)]
struct Conversion {
    route: String,
    fields: HashMap<String, String>,
    files: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Gotenberg {
    script: Arc<Mutex<VecDeque<Answer>>>,
    got: Arc<Mutex<Vec<Conversion>>>,
    chromium: Option<PathBuf>,
}

/// Headless Chromium from Debian, when installed (CI installs it).
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// The parts of a `multipart/form-data` body: (name, file name, content).
fn parts(content_type: &str, body: &[u8]) -> Vec<(String, Option<String>, String)> {
    let Some(boundary) = content_type.split("boundary=").nth(1) else { return Vec::new() };
    let text = String::from_utf8_lossy(body).into_owned();
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let attr = |headers: &str, key: &str| {
        headers
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(&format!("{key}=\""))?.strip_suffix('"').map(str::to_string))
    };
    text.split(delimiter.as_str())
        .filter_map(|part| {
            let (headers, content) = part.split_once("\r\n\r\n")?;
            let disposition = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
            let name = attr(disposition, "name")?;
            Some((name, attr(disposition, "filename"), content.trim_end_matches("\r\n").to_string()))
        })
        .collect()
}

async fn convert(State(g): State<Gotenberg>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut conversion = Conversion { route: uri.path().to_string(), ..Conversion::default() };
    for (name, file, content) in parts(content_type, &body) {
        match file {
            Some(file) if name == "files" => conversion.files.insert(file, content),
            _ => conversion.fields.insert(name, content),
        };
    }
    g.got.lock().unwrap().push(conversion.clone());
    let next = g.script.lock().unwrap().pop_front();
    match next {
        Some(Answer::Fail) => return (StatusCode::INTERNAL_SERVER_ERROR, "Chromium crashed").into_response(),
        Some(Answer::Hang(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    if conversion.route != "/forms/chromium/convert/html" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (Some(html), Some(chromium)) = (conversion.files.get("index.html"), &g.chromium) else {
        return (StatusCode::BAD_REQUEST, "no index.html, or no Chromium here").into_response();
    };
    // Chromium renders the page as sent, with the network off as the real Gotenberg has it.
    let dir = TempDir::new("print");
    std::fs::write(dir.0.join("index.html"), html).unwrap();
    let pdf = dir.0.join("out.pdf");
    let out = tokio::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--no-pdf-header-footer"])
        .arg(format!("--user-data-dir={}", dir.0.join("profile").display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", dir.0.join("index.html").display()))
        .output()
        .await
        .unwrap();
    match std::fs::read(&pdf) {
        Ok(bytes) => ([("content-type", "application/pdf")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
            .into_response(),
    }
}

impl Gotenberg {
    /// None (after saying so) without Chromium; under CI that fails.
    async fn start() -> Option<(Gotenberg, String)> {
        let Some(chromium) = chromium() else {
            crate::support::skip_unless_ci("chromium", "install Debian's chromium for the PDF tests (.ci/run does)");
            return None;
        };
        let g = Gotenberg { chromium: Some(chromium), ..Gotenberg::default() };
        let app = axum::Router::new().fallback(convert).with_state(g.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Some((g, url))
    }

    fn calls(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn last(&self) -> Conversion {
        self.got.lock().unwrap().last().cloned().unwrap()
    }
}

/// The text of a PDF (`pdftotext`), when poppler is installed (CI installs it).
fn pdf_text(pdf: &[u8]) -> Option<String> {
    let dir = TempDir::new("pdf");
    let file = dir.0.join("doc.pdf");
    std::fs::write(&file, pdf).unwrap();
    match std::process::Command::new("pdftotext").arg(&file).arg("-").output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => {
            crate::support::skip_unless_ci("pdftotext", "install Debian's poppler-utils to read PDFs (.ci/run does)");
            None
        }
    }
}

/// A customer and a submitted-or-draft invoice for it.
async fn invoice(app: &TestApp) -> (String, String) {
    app.post("/api/v1/Territory", json!({"territory_name": "Print"})).send().await;
    let c = app
        .post("/api/v1/Customer", json!({"customer_name": "Ada <Lovelace>", "territory": "Print"}))
        .send()
        .await
        .expect(201);
    let customer = c.json["name"].as_str().unwrap().to_string();
    let items =
        json!([{"item_code": "WIDGET", "qty": 2, "rate": "10.50"}, {"item_code": "GADGET", "qty": 1, "rate": 4}]);
    let i = app.post("/api/v1/Invoice", json!({"customer": customer, "items": items})).send().await.expect(201);
    (customer, i.json["name"].as_str().unwrap().to_string())
}

async fn printing(backend: Backend) {
    let Some((gotenberg, url)) = Gotenberg::start().await else { return };
    let Some((app, _)) = TestApp::start_with(backend, |c| {
        c.gotenberg_url = Some(url.clone());
        c.print_timeout_secs = 8;
    })
    .await
    else {
        return;
    };
    let (customer, invoice) = invoice(&app).await;

    // HTML from the example's template, autoescaped, with the customer's title.
    let r = app.get(&format!("/api/v1/Invoice/{invoice}/print")).send().await.expect(200);
    assert_eq!(r.header("content-type").as_deref(), Some("text/html; charset=utf-8"));
    assert!(r.header("content-security-policy").is_some_and(|p| p.contains("default-src 'none'")));
    let html = r.json.as_str().unwrap();
    assert!(html.contains(&invoice) && html.contains("WIDGET") && html.contains("21.00"), "{html}");
    assert!(html.contains("Ada &lt;Lovelace&gt;") && !html.contains("Ada <Lovelace>"), "{html}");
    // The standard template for a DocType without one: every field, labelled.
    let r = app.get(&format!("/api/v1/Customer/{customer}/print?format=html")).send().await.expect(200);
    let html = r.json.as_str().unwrap();
    assert!(html.contains("<th>Customer Name</th>") && html.contains("Ada &lt;Lovelace&gt;"), "{html}");
    // Read permission and row scope, as for a GET.
    let stranger = app.token("print-stranger@example.com", &["Gadget Reader"]).await;
    let path = format!("/api/v1/Invoice/{invoice}/print");
    app.get(&path).by(stranger).send().await.expect_error(403, "forbidden");
    let sales = app.token("print-sales@example.com", &["Sales User"]).await;
    app.get(&path).by(sales).send().await.expect_error(404, "not_found");
    app.get(&format!("{path}?format=docx")).send().await.expect_error(400, "bad_request");
    app.get("/api/v1/Invoice/NOPE/print").send().await.expect_error(404, "not_found");

    // The PDF: Gotenberg's route and fields, the page from the template's front matter.
    let r = app.get(&format!("{path}?format=pdf")).send().await.expect(200);
    assert_eq!(r.header("content-type").as_deref(), Some("application/pdf"));
    assert_eq!(r.header("content-disposition"), Some(format!("inline; filename=\"{invoice}.pdf\"")));
    let pdf = r.bytes.clone();
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    if let Some(text) = pdf_text(&pdf) {
        assert!(text.contains(&invoice) && text.contains("WIDGET"), "{text}");
    }
    let sent = gotenberg.last();
    assert_eq!(sent.route, "/forms/chromium/convert/html");
    assert!(sent.files.contains_key("index.html"), "{sent:?}");
    assert_eq!(sent.fields.get("paperWidth").map(String::as_str), Some("8.270"));
    assert_eq!(sent.fields.get("marginTop").map(String::as_str), Some("0.591"), "15mm");
    assert_eq!(sent.fields.get("landscape").map(String::as_str), Some("false"));

    // A template reaching outside: the HTML sent holds no external URL, and a policy forbids
    // loading anything; the page settings are the template's.
    app.post("/api/v1/Gizmo", json!({"code": "PRINT-1", "label": "<b>bold</b>"})).send().await.expect(201);
    let r = app.get("/api/v1/Gizmo/PRINT-1/print?format=pdf").send().await.expect(200);
    assert!(r.bytes.starts_with(b"%PDF-"));
    let sent = gotenberg.last();
    let html = &sent.files["index.html"];
    assert!(!html.contains("127.0.0.1:9") && !html.contains("http://"), "{html}");
    assert!(html.contains("Content-Security-Policy") && html.contains("&lt;b&gt;bold"), "{html}");
    assert_eq!(sent.fields.get("paperWidth").map(String::as_str), Some("8.500"));
    assert_eq!(sent.fields.get("landscape").map(String::as_str), Some("true"));

    // Gotenberg fails three times: the breaker opens, a PDF is refused at once (503 with
    // Retry-After, nothing sent), and after the wait one probe closes it again.
    gotenberg.script.lock().unwrap().extend([Answer::Fail, Answer::Fail, Answer::Fail]);
    for _ in 0..3 {
        app.get(&format!("{path}?format=pdf")).send().await.expect_error(502, "print_failed");
    }
    let calls = gotenberg.calls();
    let r = app.get(&format!("{path}?format=pdf")).send().await.expect_error(503, "print_unavailable");
    let wait: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=15).contains(&wait), "{wait}");
    assert_eq!(gotenberg.calls(), calls, "an open breaker sends nothing");
    for outcome in ["ok", "failed", "unavailable"] {
        let labels = [("format", "pdf"), ("outcome", outcome)];
        assert!(crate::support::has_metric(&app, "m_print_requests_total", &labels).await, "{outcome}");
    }
    let ready = app.get("/ready").anonymous().send().await;
    assert_eq!(ready.json["checks"]["circuitBreakers:state"][0]["componentId"], "gotenberg", "{}", ready.json);
    let r = wait_until("the breaker lets a probe through", Duration::from_secs(30), || async {
        let r = app.get(&format!("{path}?format=pdf")).send().await;
        if r.status == 200 { Ok(r) } else { Err(r.json) }
    })
    .await;
    assert!(r.bytes.starts_with(b"%PDF-"));
    assert!(app.rt().breakers().not_closed().is_empty());
    // Gotenberg hanging: a 504 within the print timeout.
    gotenberg.script.lock().unwrap().push_back(Answer::Hang(Duration::from_secs(12)));
    app.get(&format!("{path}?format=pdf")).send().await.expect_error(504, "print_timeout");
}

crate::both_backends!(documents_print_as_html_and_pdf, |backend| {
    printing(backend).await;
});

crate::both!(without_gotenberg_a_pdf_is_unavailable, |app| {
    let (_, invoice) = invoice(&app).await;
    let r = app.get(&format!("/api/v1/Invoice/{invoice}/print?format=pdf")).send().await;
    let r = r.expect_error(503, "print_unavailable");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("M_GOTENBERG_URL"), "{}", r.json);
    assert!(r.header("retry-after").is_none());
    app.get(&format!("/api/v1/Invoice/{invoice}/print")).send().await.expect(200);
});

async fn emailed_with_pdf(backend: Backend) {
    let Some((_gotenberg, url)) = Gotenberg::start().await else { return };
    let Some(sink) = SmtpSink::start() else { return };
    let Some((app, config)) = TestApp::start_with(backend, |c| {
        c.gotenberg_url = Some(url.clone());
        c.smtp_url = Some(m_runtime::config::SmtpUrl::parse(&format!("smtp://127.0.0.1:{}", sink.port)).unwrap());
        c.mail_from = Some("billing@acme.example".into());
    })
    .await
    else {
        return;
    };
    let (customer, invoice) = invoice(&app).await;
    app.patch(&format!("/api/v1/Customer/{customer}"), json!({"email": "ada@example.com"})).send().await.expect(200);
    app.post(&format!("/api/v1/Invoice/{invoice}/submit"), json!({})).send().await.expect(200);
    let worker = app.worker(&config);
    let got = wait_until("the email with its PDF", Duration::from_secs(60), || async {
        let got = sink.received();
        if got.is_empty() { Err(got) } else { Ok(got) }
    })
    .await;
    worker.stop().await;
    let attachments = got[0]["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{got:?}");
    assert_eq!(attachments[0]["filename"], format!("{invoice}.pdf"));
    assert_eq!(attachments[0]["content_type"], "application/pdf");
    let pdf = std::fs::read(sink.dir.0.join(format!("0001-{invoice}.pdf"))).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    if let Some(text) = pdf_text(&pdf) {
        assert!(text.contains(&invoice), "{text}");
    }
    assert!(got[0]["text"].as_str().unwrap().contains(&invoice), "the parts are still there: {got:?}");
}

crate::both_backends!(a_submitted_invoice_is_emailed_with_its_pdf, |backend| {
    emailed_with_pdf(backend).await;
});
