//! The runtime's rules for a `Webhook` being saved (pure: no I/O): it names one of the
//! application's DocTypes, an http(s) URL without credentials in it, and fields of that DocType
//! that may be sent (never a Password field).

use super::WEBHOOK_DOCTYPE;
use crate::app::App;
use crate::checks::FieldIssue;
use crate::doc::{Doc, DocSchema};
use crate::repo::error::RepoError;
use crate::value::Value;

/// DocTypes no webhook may watch: the webhooks' own (a delivery updates its log).
fn watchable(schema: &DocSchema) -> bool {
    !super::is_built_in(schema.name())
}

pub fn check(app: &App, doc: &Doc) -> Result<(), RepoError> {
    if doc.schema.name() != WEBHOOK_DOCTYPE {
        return Ok(());
    }
    let mut issues = Vec::new();
    if let Value::Str(url) = doc.get("request_url") {
        check_url(url, &mut issues);
    }
    if let Value::Str(doctype) = doc.get("webhook_doctype") {
        match app.routable(doctype).filter(|s| watchable(s)) {
            Some(target) => check_fields(doc, target, &mut issues),
            None => {
                let names: Vec<&str> =
                    app.schemas().iter().filter(|s| !s.meta.child && watchable(s)).map(|s| s.name()).collect();
                issues.push(FieldIssue::new(
                    "webhook_doctype",
                    "unknown_doctype",
                    format!("`{doctype}` is not a DocType a webhook can watch; use one of: {}", names.join(", ")),
                ));
            }
        }
    }
    if issues.is_empty() { Ok(()) } else { Err(RepoError::Validation(issues)) }
}

fn check_url(url: &str, issues: &mut Vec<FieldIssue>) {
    match reqwest::Url::parse(url) {
        Err(e) => issues.push(FieldIssue::new("request_url", "url", format!("`{url}` is not a URL: {e}"))),
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() => {
            issues.push(FieldIssue::new("request_url", "url", "use an http:// or https:// URL with a host"));
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => issues.push(FieldIssue::new(
            "request_url",
            "credentials",
            "the URL carries credentials, which would be stored and shown in the clear: receivers check X-M-Signature (webhook_secret) instead",
        )),
        Ok(_) => {}
    }
}

/// Each `webhook_data` row names a field of the watched DocType (a standard column, a field or
/// a Table), not a Password field.
fn check_fields(doc: &Doc, target: &DocSchema, issues: &mut Vec<FieldIssue>) {
    let Some(at) = doc.schema.tables.iter().position(|t| t.name == "webhook_data") else { return };
    for (i, row) in doc.tables[at].iter().enumerate() {
        let Value::Str(field) = row.get("fieldname") else { continue };
        let path = format!("webhook_data[{i}].fieldname");
        let column = target.columns.iter().find(|c| c.name == field);
        if column.is_some_and(|c| c.kind.is_secret()) {
            issues.push(FieldIssue::new(path, "password", format!("{field} is a Password field: it is never sent")));
        } else if column.is_none() && !target.tables.iter().any(|t| t.name == field) {
            issues.push(FieldIssue::new(path, "unknown_field", format!("{} has no field `{field}`", target.name())));
        }
    }
}
