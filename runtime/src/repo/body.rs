//! Request bodies into documents: each key becomes a typed value of its field's kind (unknown
//! keys and wrong types are errors, server-set fields are ignored), and defaults for what a new
//! document leaves out.

use chrono::Utc;
use serde_json::Value as Json;
use uuid::Uuid;

use super::{RepoError, Result, bad_field, now};
use crate::checks::FieldIssue;
use crate::doc::{Doc, FieldRef, StandardColumn};
use crate::meta::{DefaultValue, FieldType};
use crate::value::{InputError, Value};

/// Apply a JSON body to a document: declared, writable fields only (standard and read-only
/// fields are server-set and ignored); Table arrays replace the set of rows. Returns `_version`
/// when the body carries one.
pub(super) fn apply_body(doc: &mut Doc, body: &Json) -> Result<Option<i64>> {
    let Json::Object(map) = body else {
        return Err(RepoError::BadRequest {
            code: "bad_request",
            message: "the body must be a JSON object".into(),
            field: None,
        });
    };
    let schema = doc.schema.clone();
    let mut version = None;
    let mut issues = Vec::new();
    for (key, value) in map {
        match schema.lookup(key) {
            None => {
                return Err(RepoError::BadRequest {
                    code: "unknown_field",
                    message: format!("`{key}` is not a field of {}", schema.name()),
                    field: Some(key.clone()),
                });
            }
            Some(FieldRef::Column(i)) => {
                let col = schema.columns[i];
                match (col.standard, col.field) {
                    (Some(StandardColumn::Version), _) => {
                        version =
                            Some(value.as_i64().ok_or_else(|| bad_field(key, "`_version` must be an integer".into()))?);
                    }
                    (Some(_), _) => {}
                    (None, Some(f)) if f.read_only => {}
                    (None, _) => match Value::from_json(col.kind, value) {
                        Ok(Value::Str(s)) if col.kind.is_secret() && crate::db::Sealer::is_stored_form(&s) => {
                            issues.push(FieldIssue::new(
                                key.clone(),
                                "reserved",
                                format!("`{key}` may not start with `m0:` or `m1:` (how stored values are marked)"),
                            ));
                        }
                        Ok(v) => doc.values[i] = v,
                        Err(InputError::WrongType(t)) => return Err(bad_field(key, format!("`{key}` must be {t}"))),
                        Err(InputError::Invalid(m)) => issues.push(FieldIssue::new(key.clone(), "invalid", m)),
                        Err(InputError::Nul) => issues.push(FieldIssue::new(
                            key.clone(),
                            "nul_byte",
                            format!("`{key}` holds a NUL character (\\u0000), which no text may contain"),
                        )),
                    },
                }
            }
            Some(FieldRef::Table(t)) => {
                let field = &schema.tables[t];
                let Json::Array(items) = value else {
                    return Err(bad_field(key, format!("`{key}` must be an array of rows")));
                };
                let old = std::mem::take(&mut doc.tables[t]);
                let mut rows = Vec::with_capacity(items.len());
                let mut seen_ids = Vec::new();
                for (n, item) in items.iter().enumerate() {
                    let Json::Object(obj) = item else {
                        return Err(bad_field(key, format!("`{key}[{n}]` must be an object")));
                    };
                    let mut row = match obj.get("id") {
                        Some(Json::String(s)) => {
                            let found = Uuid::parse_str(s).ok().and_then(|id| old.iter().find(|r| r.id() == Some(id)));
                            match found {
                                Some(existing) if seen_ids.contains(&existing.id()) => {
                                    issues.push(FieldIssue::new(
                                        format!("{key}[{n}].id"),
                                        "duplicate_row",
                                        format!("row `{s}` appears twice in {key}"),
                                    ));
                                    continue;
                                }
                                Some(existing) => {
                                    seen_ids.push(existing.id());
                                    existing.clone()
                                }
                                None => {
                                    issues.push(FieldIssue::new(
                                        format!("{key}[{n}].id"),
                                        "unknown_row",
                                        format!("no row `{s}` in {key} of this document"),
                                    ));
                                    continue;
                                }
                            }
                        }
                        Some(Json::Null) | None => Doc::empty(field.child.clone()),
                        Some(_) => return Err(bad_field(key, format!("`{key}[{n}].id` must be a string"))),
                    };
                    let patch: serde_json::Map<String, Json> =
                        obj.iter().filter(|(k, _)| *k != "id").map(|(k, v)| (k.clone(), v.clone())).collect();
                    match apply_body(&mut row, &Json::Object(patch)) {
                        Ok(_) => {}
                        Err(RepoError::BadRequest { code, message, field }) => {
                            return Err(RepoError::BadRequest {
                                code,
                                message: format!("{key}[{n}]: {message}"),
                                field: field.map(|f| format!("{key}[{n}].{f}")),
                            });
                        }
                        Err(RepoError::Validation(mut v)) => {
                            for i in &mut v {
                                i.field = format!("{key}[{n}].{}", i.field);
                            }
                            issues.append(&mut v);
                        }
                        Err(e) => return Err(e),
                    }
                    rows.push(row);
                }
                doc.tables[t] = rows;
            }
        }
    }
    if issues.is_empty() { Ok(version) } else { Err(RepoError::Validation(issues)) }
}

/// Defaults of the README's DocType reference for fields left out (and `false` for Check), on a new document and
/// its rows.
pub(super) fn apply_defaults(doc: &mut Doc) {
    let schema = doc.schema.clone();
    for (i, c) in schema.columns.iter().enumerate() {
        let Some(f) = c.field else { continue };
        if !doc.values[i].is_null() {
            continue;
        }
        doc.values[i] = match f.default {
            Some(d) => default_value(c.kind, d),
            None if c.kind == FieldType::Check => Value::Bool(false),
            None => Value::Null,
        };
    }
    apply_defaults_to_children(doc);
}

/// Defaults for child rows that are new (no `id` yet).
pub(super) fn apply_defaults_to_children(doc: &mut Doc) {
    for rows in &mut doc.tables {
        for row in rows.iter_mut().filter(|r| r.id().is_none()) {
            apply_defaults(row);
        }
    }
}

fn default_value(kind: FieldType, d: DefaultValue) -> Value {
    match d {
        DefaultValue::Today => Value::Date(Utc::now().date_naive()),
        DefaultValue::Now => Value::Datetime(now()),
        DefaultValue::Str(s) => Value::parse_text(kind, s).unwrap_or(Value::Null),
        DefaultValue::Bool(b) => Value::Bool(b),
        DefaultValue::Int(i) => match kind {
            FieldType::Float => Value::Float(i as f64),
            FieldType::Currency | FieldType::Decimal => Value::Decimal(i.into()),
            _ => Value::Int(i),
        },
        DefaultValue::Float(x) => match kind {
            FieldType::Currency | FieldType::Decimal => Value::parse_text(kind, &x.to_string()).unwrap_or(Value::Null),
            _ => Value::Float(x),
        },
    }
}

/// A document from its stored API form (an after-commit event's snapshot): every column from its
/// JSON value, child rows included; what is absent (Password fields) is Null.
pub(super) fn doc_from_stored(schema: &std::sync::Arc<crate::doc::DocSchema>, json: &Json) -> Result<Doc> {
    let broken = |what: String| RepoError::Internal(format!("a stored {} document: {what}", schema.name()));
    let mut doc = Doc::empty(schema.clone());
    for (i, c) in schema.columns.iter().enumerate() {
        let v = json.get(c.name).unwrap_or(&Json::Null);
        doc.values[i] =
            Value::from_json(c.kind, v).map_err(|_| broken(format!("`{}` does not fit its type", c.name)))?;
    }
    for (i, t) in schema.tables.iter().enumerate() {
        let rows = json.get(t.name).and_then(Json::as_array).map(Vec::as_slice).unwrap_or_default();
        doc.tables[i] = rows.iter().map(|row| doc_from_stored(&t.child, row)).collect::<Result<_>>()?;
    }
    Ok(doc)
}
