//! Value rules of the README's DocType reference applied to a document before it is written: required,
//! max_length, Select options, min/max, regex, Email/URL form, decimal precision. Every problem
//! is collected (the client sees them all in one 422).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rust_decimal::Decimal;

use crate::doc::Doc;
use crate::meta::{FieldMeta, FieldType};
use crate::value::Value;

/// One problem with one field (`details` of the error body).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldIssue {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldIssue {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> FieldIssue {
        FieldIssue { field: field.into(), code, message: message.into() }
    }
}

/// Check a document and its child rows; `prefix` names child rows (`items[2].qty`).
pub fn check_doc(doc: &Doc, prefix: &str, issues: &mut Vec<FieldIssue>) {
    for (col, v) in doc.schema.columns.iter().zip(&doc.values) {
        if let Some(f) = col.field {
            check_field(f, v, &format!("{prefix}{}", f.name), issues);
        }
    }
    for (t, rows) in doc.schema.tables.iter().zip(&doc.tables) {
        if t.field.required && rows.is_empty() {
            issues.push(FieldIssue::new(
                format!("{prefix}{}", t.name),
                "required",
                format!("{} needs at least one row", t.name),
            ));
        }
        for (i, row) in rows.iter().enumerate() {
            check_doc(row, &format!("{prefix}{}[{i}].", t.name), issues);
        }
    }
}

fn check_field(f: &FieldMeta, v: &Value, path: &str, issues: &mut Vec<FieldIssue>) {
    let empty = match v {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        _ => false,
    };
    if empty {
        if f.required {
            issues.push(FieldIssue::new(path, "required", format!("{} is required", f.name)));
        }
        return;
    }
    match v {
        Value::Str(s) => {
            if let Some(max) = f.max_length {
                let n = s.chars().count();
                if n > max as usize {
                    issues.push(FieldIssue::new(
                        path,
                        "max_length",
                        format!("{} is longer than {max} characters ({n})", f.name),
                    ));
                }
            }
            if f.kind == FieldType::Select && !f.options.contains(&s.as_str()) {
                issues.push(FieldIssue::new(path, "option", format!("`{s}` is not one of: {}", f.options.join(", "))));
            }
            if f.kind == FieldType::Email && !is_email(s) {
                issues.push(FieldIssue::new(path, "email", format!("`{s}` is not an email address")));
            }
            if f.kind == FieldType::Url && !is_url(s) {
                issues.push(FieldIssue::new(path, "url", format!("`{s}` is not an http(s) URL")));
            }
            if let Some(pattern) = f.regex
                && !regex_matches(pattern, s)
            {
                issues.push(FieldIssue::new(path, "regex", format!("{} does not match {pattern}", f.name)));
            }
        }
        Value::Int(i) => check_range(f, *i as f64, path, issues),
        Value::Float(x) => check_range(f, *x, path, issues),
        Value::Decimal(d) => {
            check_range(f, d.to_string().parse().unwrap_or(0.0), path, issues);
            check_decimal(f, d, path, issues);
        }
        _ => {}
    }
}

fn check_range(f: &FieldMeta, x: f64, path: &str, issues: &mut Vec<FieldIssue>) {
    if let Some(min) = f.min
        && x < min
    {
        issues.push(FieldIssue::new(path, "min", format!("{} must be at least {min}", f.name)));
    }
    if let Some(max) = f.max
        && x > max
    {
        issues.push(FieldIssue::new(path, "max", format!("{} must be at most {max}", f.name)));
    }
}

fn check_decimal(f: &FieldMeta, d: &Decimal, path: &str, issues: &mut Vec<FieldIssue>) {
    let (precision, scale) = (f.precision.unwrap_or(18), f.scale.unwrap_or(6));
    let n = d.normalize();
    if n.scale() > scale {
        issues.push(FieldIssue::new(path, "scale", format!("{} allows at most {scale} decimal places", f.name)));
    }
    let int_digits = n.trunc().abs().to_string().trim_start_matches('0').len() as u32;
    if int_digits > precision.saturating_sub(scale) {
        issues.push(FieldIssue::new(
            path,
            "precision",
            format!("{} allows at most {} digits before the decimal point", f.name, precision - scale),
        ));
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == ',')
        && !domain.contains('@')
}

fn is_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.chars().any(char::is_whitespace))
}

/// Compiled field regexes, shared by every request (patterns are static metadata).
fn regex_matches(pattern: &'static str, s: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, regex_lite::Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = match cache.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    if !map.contains_key(pattern) {
        // The pattern was compiled at build time, so this does not fail; a failure matches nothing.
        match regex_lite::Regex::new(pattern) {
            Ok(re) => {
                map.insert(pattern, re);
            }
            Err(_) => return false,
        }
    }
    map.get(pattern).is_some_and(|re| re.is_match(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_and_url_forms() {
        assert!(is_email("a@example.com"));
        assert!(!is_email("a@b"));
        assert!(!is_email("a b@example.com"));
        assert!(is_url("https://example.com/x"));
        assert!(!is_url("ftp://example.com"));
    }
}
