//! Printing a document: its HTML from a template (minijinja, autoescaped) — the application's
//! `print/<table>.html`, embedded at build time, or the standard one listing every field — and
//! its PDF from Gotenberg's Chromium route (`M_GOTENBERG_URL`), behind the breaker `gotenberg`.
//!
//! Templates see `doc` (the document as the API returns it, child rows included, Password
//! fields never), `doctype`, `titles` (the title of each Link the caller may read), `fields` and
//! `tables` (labels, for generic layouts) and `printed_at`. They cannot load files or URLs (the
//! environment has no loader), and the HTML sent to Gotenberg cannot make Chromium fetch
//! anything: a Content-Security-Policy forbids it, and external addresses in resource
//! attributes, `url(…)` and `@import` are taken out first.
//!
//! A template may start with front matter for the page:
//!
//! ```text
//! ---
//! paper: A4            # A3, A4, A5, Letter, Legal
//! orientation: portrait  # or landscape
//! margin: 15mm         # one length, or top right bottom left (mm, cm, in)
//! ---
//! ```

pub mod pdf;
mod render;

use std::collections::HashMap;
use std::sync::Arc;

use crate::app::App;
use crate::breaker::Breakers;
use crate::config::Config;
use crate::repo::error::RepoError;

/// The template of DocTypes without one of their own.
const STANDARD: &str = include_str!("standard.html");

/// Page size and margins, in inches (what Gotenberg takes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Page {
    pub width: f64,
    pub height: f64,
    /// Top, right, bottom, left.
    pub margins: [f64; 4],
    pub landscape: bool,
}

impl Default for Page {
    /// A4 portrait, 1 cm margins.
    fn default() -> Page {
        Page { width: 8.27, height: 11.69, margins: [0.39; 4], landscape: false }
    }
}

/// A length in inches from `15mm`, `1.5cm` or `0.5in`.
fn length(s: &str) -> Option<f64> {
    let s = s.trim();
    let (number, factor) = if let Some(n) = s.strip_suffix("mm") {
        (n, 1.0 / 25.4)
    } else if let Some(n) = s.strip_suffix("cm") {
        (n, 1.0 / 2.54)
    } else if let Some(n) = s.strip_suffix("in") {
        (n, 1.0)
    } else {
        return None;
    };
    number.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * factor)
}

/// Split a template into its page settings and its body.
pub fn front_matter(source: &str) -> Result<(Page, &str), String> {
    let mut page = Page::default();
    let Some(rest) = source.strip_prefix("---\n").or_else(|| source.strip_prefix("---\r\n")) else {
        return Ok((page, source));
    };
    let end = rest.find("\n---").ok_or("front matter: no closing `---` line")?;
    let body = rest[end + 4..].trim_start_matches(['\r', '\n']);
    for line in rest[..end].lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once(':').ok_or_else(|| format!("front matter: `{line}` is not `key: value`"))?;
        let value = value.trim();
        match key.trim() {
            "paper" => {
                (page.width, page.height) = match value.to_ascii_lowercase().as_str() {
                    "a3" => (11.69, 16.54),
                    "a4" => (8.27, 11.69),
                    "a5" => (5.83, 8.27),
                    "letter" => (8.5, 11.0),
                    "legal" => (8.5, 14.0),
                    _ => return Err(format!("front matter: paper `{value}` is not A3, A4, A5, Letter or Legal")),
                }
            }
            "orientation" => {
                page.landscape = match value {
                    "portrait" => false,
                    "landscape" => true,
                    _ => return Err(format!("front matter: orientation `{value}` is not portrait or landscape")),
                }
            }
            "margin" => {
                let parts: Vec<f64> = value
                    .split_whitespace()
                    .map(|v| {
                        length(v).ok_or_else(|| format!("front matter: margin `{v}` is not a length (mm, cm, in)"))
                    })
                    .collect::<Result<_, _>>()?;
                page.margins = match parts.as_slice() {
                    [all] => [*all; 4],
                    [top, right, bottom, left] => [*top, *right, *bottom, *left],
                    _ => return Err("front matter: margin is one length, or four (top right bottom left)".into()),
                };
            }
            other => return Err(format!("front matter: unknown key `{other}` (paper, orientation, margin)")),
        }
    }
    Ok((page, body))
}

/// What went wrong printing.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// PDFs cannot be made now: not configured, or the breaker is open (retry after).
    #[error("{message}")]
    Unavailable { message: String, retry_after: Option<std::time::Duration> },
    /// Gotenberg answered with an error.
    #[error("{0}")]
    Failed(String),
    /// Gotenberg did not answer in time.
    #[error("Gotenberg did not answer within {0} s (M_PRINT_TIMEOUT_SECS)")]
    Timeout(u64),
    /// A template failed to render (the application's mistake).
    #[error("print template: {0}")]
    Template(String),
}

struct Template {
    page: Page,
}

/// The printer of one runtime.
#[derive(Clone)]
pub struct Printer {
    inner: Arc<Inner>,
}

struct Inner {
    env: minijinja::Environment<'static>,
    /// Page settings by template name (`<table>.html`, or `standard.html`).
    templates: HashMap<String, Template>,
    gotenberg: Option<pdf::Gotenberg>,
    breakers: Breakers,
}

impl Printer {
    /// Compile the application's print templates (a template that does not compile, or whose
    /// file names no DocType, stops the start).
    pub fn new(config: &Config, app: &App, breakers: Breakers) -> Result<Printer, String> {
        let mut env = crate::templates::environment();
        let mut templates = HashMap::new();
        let sources = app.prints.iter().map(|(table, source)| (format!("{table}.html"), *source));
        for (name, source) in sources.chain([("standard.html".to_string(), STANDARD)]) {
            let table = name.trim_end_matches(".html");
            if name != "standard.html" && !app.schemas().iter().any(|s| s.meta.table == table && !s.meta.child) {
                return Err(format!("print/{name}: no DocType has the table `{table}`"));
            }
            let (page, body) = front_matter(source).map_err(|e| format!("print/{name}: {e}"))?;
            env.add_template_owned(name.clone(), body.to_string()).map_err(|e| format!("print/{name}: {e}"))?;
            templates.insert(name, Template { page });
        }
        let gotenberg = pdf::Gotenberg::new(config)?;
        Ok(Printer { inner: Arc::new(Inner { env, templates, gotenberg, breakers }) })
    }

    /// Whether PDFs can be made (Gotenberg is configured).
    pub fn prints_pdf(&self) -> bool {
        self.inner.gotenberg.is_some()
    }

    /// The PDF of printed HTML, from Gotenberg.
    pub async fn pdf(&self, html: &str, page: &Page) -> Result<Vec<u8>, PrintError> {
        let Some(gotenberg) = &self.inner.gotenberg else {
            crate::metrics::print("pdf", "unavailable", None);
            return Err(PrintError::Unavailable {
                message: "PDF printing is not configured: set M_GOTENBERG_URL (Gotenberg's address)".into(),
                retry_after: None,
            });
        };
        gotenberg.convert(&self.inner.breakers, &pdf::isolate(html), page).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_sets_the_page() {
        let (page, body) = front_matter(
            "---\npaper: Letter\norientation: landscape # wide\nmargin: 10mm 1cm 0.5in 0in\n---\n<p>x</p>",
        )
        .unwrap();
        assert_eq!((page.width, page.height, page.landscape), (8.5, 11.0, true));
        assert!((page.margins[0] - 10.0 / 25.4).abs() < 1e-9 && page.margins[2] == 0.5 && page.margins[3] == 0.0);
        assert_eq!(body, "<p>x</p>");
        assert_eq!(front_matter("<p>x</p>").unwrap().0, Page::default());
        assert!(front_matter("---\npaper: B5\n---\n").unwrap_err().contains("B5"));
        assert!(front_matter("---\nmargin: 10px\n---\n").unwrap_err().contains("10px"));
        assert!(front_matter("---\nfont: x\n---\n").unwrap_err().contains("font"));
        assert!(front_matter("---\npaper: A4\n").is_err());
    }
}
