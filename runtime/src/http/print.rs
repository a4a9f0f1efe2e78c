//! `GET /api/v1/{DocType}/{ref}/print?format=html|pdf`: a document printed with its template,
//! for a caller who may read it (row scope included: outside it, a 404 like a missing one).
//! The HTML is served with a policy that lets it load nothing; the PDF comes from Gotenberg.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState, Caller, DocPath};
use crate::print::PrintError;

/// What the HTML answer may load: nothing but its own inline styles and `data:` images.
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Pdf,
}

fn format(query: Option<&str>) -> Result<Format, ApiError> {
    let mut format = Format::Html;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("format", "html") => format = Format::Html,
            ("format", "pdf") => format = Format::Pdf,
            ("format", other) => {
                return Err(ApiError::BadRequest(format!("format `{other}` is not html or pdf")));
            }
            (other, _) => return Err(ApiError::BadRequest(format!("unknown parameter `{other}` (format)"))),
        }
    }
    Ok(format)
}

/// A file name for `Content-Disposition`: the document's name with anything unusual replaced.
fn file_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    format!("{safe}.pdf")
}

pub(super) async fn print(
    State(state): State<ApiState>,
    DocPath((doctype, docref)): DocPath<(String, String)>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let format = format(query.as_deref())?;
    let printer = state.repo.printer();
    let started = Instant::now();
    let (doc, html, page) = printer.html(&state.repo, &caller.who, &doctype, &docref).await?;
    if format == Format::Html {
        crate::metrics::print("html", "ok", Some(started.elapsed()));
        let mut res = (StatusCode::OK, html).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(res);
    }
    let pdf = printer.pdf(&html, &page).await?;
    let mut res = (StatusCode::OK, pdf).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let disposition = format!("inline; filename=\"{}\"", file_name(doc.name()));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

impl From<PrintError> for ApiError {
    fn from(e: PrintError) -> ApiError {
        match e {
            PrintError::Repo(e) => ApiError::Repo(e),
            PrintError::Unavailable { message, retry_after } => ApiError::Unavailable {
                code: "print_unavailable",
                message,
                retry_after: retry_after.map(|d| d.as_secs_f64().ceil() as u64),
            },
            PrintError::Failed(message) => {
                ApiError::Edge { status: StatusCode::BAD_GATEWAY, code: "print_failed", message }
            }
            e @ PrintError::Timeout(_) => {
                ApiError::Edge { status: StatusCode::GATEWAY_TIMEOUT, code: "print_timeout", message: e.to_string() }
            }
            PrintError::Template(m) => ApiError::Repo(crate::repo::RepoError::Internal(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_file_names() {
        assert!(format(None).is_ok_and(|f| f == Format::Html));
        assert!(format(Some("format=pdf")).is_ok_and(|f| f == Format::Pdf));
        assert!(format(Some("format=docx")).is_err());
        assert!(format(Some("size=a4")).is_err());
        assert_eq!(file_name("INV-2026-0001"), "INV-2026-0001.pdf");
        assert_eq!(file_name("a\"b\r\n/c"), "a_b___c.pdf");
    }
}
