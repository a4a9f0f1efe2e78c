//! HTML to PDF through Gotenberg's Chromium route (`POST /forms/chromium/convert/html`, the
//! page as the multipart file `index.html`, paper and margins as form fields), behind the
//! breaker `gotenberg` and within `M_PRINT_TIMEOUT_SECS`; and the isolation of the HTML sent
//! there, so Chromium fetches nothing.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Page, PrintError};
use crate::breaker::Breakers;
use crate::config::Config;

/// The breaker in front of Gotenberg.
pub const BREAKER: &str = "gotenberg";

/// A configured Gotenberg.
pub struct Gotenberg {
    route: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl Gotenberg {
    pub fn new(config: &Config) -> Result<Option<Gotenberg>, String> {
        let Some(base) = &config.gotenberg_url else { return Ok(None) };
        crate::auth::install_crypto_provider();
        let timeout = Duration::from_secs(config.print_timeout_secs);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|e| format!("M_GOTENBERG_URL: cannot make an HTTP client: {e}"))?;
        let route = format!("{}/forms/chromium/convert/html", base.trim_end_matches('/'));
        Ok(Some(Gotenberg { route, client, timeout }))
    }

    /// The PDF of `html` on `page`. An error answer, a timeout or a failed connection counts
    /// against the breaker; while it is open nothing is sent.
    pub async fn convert(&self, breakers: &Breakers, html: &str, page: &Page) -> Result<Vec<u8>, PrintError> {
        let breaker = breakers.get(BREAKER);
        let Some(call) = breaker.call() else {
            crate::metrics::print("pdf", "unavailable", None);
            return Err(PrintError::Unavailable {
                message: "PDF printing is paused: Gotenberg failed several times in a row".into(),
                retry_after: Some(breaker.retry_after()),
            });
        };
        let started = Instant::now();
        let inches = |v: f64| format!("{v:.3}");
        let file = reqwest::multipart::Part::bytes(html.as_bytes().to_vec())
            .file_name("index.html")
            .mime_str("text/html; charset=utf-8")
            .map_err(|e| PrintError::Failed(e.to_string()))?;
        let [top, right, bottom, left] = page.margins;
        let form = reqwest::multipart::Form::new()
            .part("files", file)
            .text("paperWidth", inches(page.width))
            .text("paperHeight", inches(page.height))
            .text("marginTop", inches(top))
            .text("marginRight", inches(right))
            .text("marginBottom", inches(bottom))
            .text("marginLeft", inches(left))
            .text("landscape", page.landscape.to_string())
            .text("printBackground", "true");
        let sent = self.client.post(&self.route).multipart(form).send().await;
        let outcome = match sent {
            Err(e) if e.is_timeout() => Err(PrintError::Timeout(self.timeout.as_secs())),
            Err(e) => {
                // The URL (which may carry credentials) stays in the log, out of the answer.
                tracing::warn!(error = %e, "cannot reach Gotenberg");
                Err(PrintError::Failed(format!("cannot reach Gotenberg: {}", e.without_url())))
            }
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Err(e) if e.is_timeout() => Err(PrintError::Timeout(self.timeout.as_secs())),
                    Err(e) => Err(PrintError::Failed(format!("Gotenberg's answer was cut: {}", e.without_url()))),
                    Ok(body) if status.is_success() && body.starts_with(b"%PDF-") => Ok(body.to_vec()),
                    Ok(body) => {
                        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                        tracing::warn!(%status, answer = %text, "Gotenberg refused a conversion");
                        Err(PrintError::Failed(format!("Gotenberg answered {status} (its answer is in the log)")))
                    }
                }
            }
        };
        let elapsed = started.elapsed();
        match &outcome {
            Ok(_) => {
                call.succeeded();
                crate::metrics::print("pdf", "ok", Some(elapsed));
            }
            Err(e) => {
                call.failed();
                let label = if matches!(e, PrintError::Timeout(_)) { "timeout" } else { "failed" };
                crate::metrics::print("pdf", label, Some(elapsed));
                tracing::warn!(error = %e, "printing a PDF failed");
            }
        }
        outcome
    }
}

/// The HTML as sent to Chromium: a Content-Security-Policy that lets the page load nothing
/// from anywhere (inline styles and `data:` images only), and every external address in a
/// resource attribute or `url(…)` replaced by `about:blank`, `@import` rules and `<link>` tags
/// removed, so the page holds no external address to load.
pub fn isolate(html: &str) -> String {
    struct Rules {
        attribute: regex_lite::Regex,
        css_url: regex_lite::Regex,
        import: regex_lite::Regex,
        link: regex_lite::Regex,
        /// `<meta http-equiv>` (a refresh navigates, which no policy stops) and `<base>`.
        meta_base: regex_lite::Regex,
        head: regex_lite::Regex,
    }
    static RULES: OnceLock<Option<Rules>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        // Addresses a page could load from (not `data:`, which is inline).
        let external = r#"(?:https?:|ftps?:|file:|wss?:|blob:|filesystem:|//|\\\\)"#;
        Some(Rules {
            attribute: regex_lite::Regex::new(&format!(
                r#"(?i)(\s(?:src|srcset|href|xlink:href|poster|data|background|action|formaction|manifest|ping|lowsrc|dynsrc|longdesc|codebase|archive|cite|icon)\s*=\s*["']?)\s*{external}[^"'\s>]*"#
            ))
            .ok()?,
            css_url: regex_lite::Regex::new(&format!(r#"(?i)(url\(\s*["']?)\s*{external}[^"'\s)]*"#)).ok()?,
            import: regex_lite::Regex::new(r"(?i)@import[^;<]*;?").ok()?,
            link: regex_lite::Regex::new(r"(?i)<link\b[^>]*>").ok()?,
            meta_base: regex_lite::Regex::new(r"(?i)<(?:meta\b[^>]*http-equiv|base\b)[^>]*>").ok()?,
            head: regex_lite::Regex::new(r"(?i)<head\b[^>]*>").ok()?,
        })
    });
    const CSP: &str = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:\">";
    let Some(r) = rules else {
        // The patterns are constants; were they ever refused, send nothing rather than risk it.
        return format!("<!doctype html><html><head>{CSP}</head><body></body></html>");
    };
    let html = r.link.replace_all(html, "");
    let html = r.meta_base.replace_all(&html, "");
    let html = r.attribute.replace_all(&html, "${1}about:blank");
    let html = r.css_url.replace_all(&html, "${1}about:blank");
    let html = r.import.replace_all(&html, "");
    match r.head.find(&html) {
        Some(m) => format!("{}{CSP}{}", &html[..m.end()], &html[m.end()..]),
        None => format!("<head>{CSP}</head>{html}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolated_html_loads_nothing_from_outside() {
        let html = r#"<!doctype html><html><head><link rel="stylesheet" href="https://cdn.example/x.css"><style>@import "http://x/y.css"; body { background: url( 'https://t.example/p.png' ) }</style></head>
<body><img src="http://127.0.0.1:9/pixel.png"><img SRC=//evil.example/a.png><iframe src="file:///etc/passwd"></iframe>
<a href="https://example.com">site</a> <img src="data:image/png;base64,AAAA"> <p>see https://example.com/terms</p>
<meta http-equiv="refresh" content="0;url=http://169.254.169.254/latest"><base href="http://base.example/"></body></html>"#;
        let out = isolate(html);
        for external in [
            "169.254",
            "base.example",
            "cdn.example",
            "http://x",
            "t.example",
            "127.0.0.1",
            "evil.example",
            "/etc/passwd",
            "href=\"https://example.com\"",
        ] {
            assert!(!out.contains(external), "{external} left in {out}");
        }
        assert!(out.contains("Content-Security-Policy") && out.find("Content-Security-Policy") < out.find("<style>"));
        assert!(out.contains("src=\"data:image/png"), "inline images stay: {out}");
        assert!(out.contains("see https://example.com/terms"), "text is left as it is");
        assert!(isolate("<p>x</p>").starts_with("<head><meta http-equiv"));
    }
}
