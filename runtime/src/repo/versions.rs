//! Version history (Frappe's `Version`): on DocTypes with `track_changes = true`, every create,
//! update, submit, cancel, amend and delete is recorded in the write's transaction — who (the
//! Version's owner), when (its creation) and what (`data`: the action and a field-level diff, the
//! whole document on create and delete; Password fields are never in it, as they are in no
//! document's JSON). Read through [`Repo::versions`] by whoever may read the document.

use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use super::{Repo, Result};
use crate::db::Tx;
use crate::doc::{Doc, DocSchema};
use crate::list_query::{Cond, CondValue, ListQuery, Op, SortDir};
use crate::perms::{Principal, Scope};
use crate::value::Value;

pub const VERSION_DOCTYPE: &str = "Version";

/// Bookkeeping fields a diff leaves out (they change on every write).
const NOT_DIFFED: &[&str] =
    &["modified", "modified_by", "_version", "creation", "owner", "id", "idx", "parent", "parentfield"];

/// One document as JSON (Password fields left out).
fn json_of(doc: &Doc) -> Map<String, Json> {
    match serde_json::to_value(doc.json(None)) {
        Ok(Json::Object(m)) => m,
        _ => Map::new(),
    }
}

/// `[[field, old, new]]` for the plain fields that differ.
fn changed(old: &Map<String, Json>, new: &Map<String, Json>, tables: &[&str]) -> Vec<Json> {
    new.iter()
        .filter(|(k, _)| !NOT_DIFFED.contains(&k.as_str()) && !tables.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let before = old.get(k).cloned().unwrap_or(Json::Null);
            (before != *v).then(|| json!([k, before, v]))
        })
        .collect()
}

/// The diff between two states of a document.
pub fn diff(action: &str, old: &Doc, new: &Doc) -> Json {
    let tables: Vec<&str> = new.schema.tables.iter().map(|t| t.name).collect();
    let (o, n) = (json_of(old), json_of(new));
    let (mut added, mut removed, mut row_changed) = (Vec::new(), Vec::new(), Vec::new());
    for (t, table) in new.schema.tables.iter().enumerate() {
        let id = |d: &Doc| d.id().map(|u| u.to_string()).unwrap_or_default();
        let (before, after) = (&old.tables[t], &new.tables[t]);
        for (i, row) in after.iter().enumerate() {
            match before.iter().find(|b| b.id().is_some() && b.id() == row.id()) {
                None => added.push(json!([table.name, json_of(row)])),
                Some(prev) => {
                    let fields = changed(&json_of(prev), &json_of(row), &[]);
                    if !fields.is_empty() {
                        row_changed.push(json!([table.name, i, id(row), fields]));
                    }
                }
            }
        }
        for row in before.iter().filter(|b| !after.iter().any(|a| a.id().is_some() && a.id() == b.id())) {
            removed.push(json!([table.name, json_of(row)]));
        }
    }
    json!({
        "action": action,
        "changed": changed(&o, &n, &tables),
        "added": added,
        "removed": removed,
        "row_changed": row_changed,
    })
}

/// Rows deleted per statement by [`Repo::sweep_versions`].
const SWEEP_BATCH: i64 = 1000;

impl Repo {
    /// Delete versions created before `before`, a batch per statement, at most `batches`
    /// batches (the job workers' upkeep, with `M_VERSION_KEEP_DAYS`). Returns how many.
    pub(crate) async fn sweep_versions(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        batches: u32,
    ) -> std::result::Result<u64, crate::db::DbError> {
        if self.app().get(VERSION_DOCTYPE).is_none() {
            return Ok(0);
        }
        let mut deleted = 0;
        for _ in 0..batches {
            let mut sql = crate::query::Sql::new(self.dialect());
            sql.push("DELETE FROM version WHERE id IN (SELECT id FROM version WHERE creation < ");
            sql.bind(crate::meta::FieldType::Datetime, Value::Datetime(before)).push(" LIMIT ");
            sql.bind(crate::meta::FieldType::BigInt, Value::Int(SWEEP_BATCH)).push(")");
            let n = self.db().write(&crate::db::DbCtx::System, &sql.text, sql.binds).await?;
            deleted += n;
            if n < SWEEP_BATCH.unsigned_abs() {
                break;
            }
        }
        Ok(deleted)
    }

    fn version_schema(&self, doc: &Doc) -> Option<Arc<DocSchema>> {
        if !doc.schema.meta.track_changes {
            return None;
        }
        self.app().get(VERSION_DOCTYPE).cloned()
    }

    /// Record a change of `doc` (`old`: its state before, None when it was created).
    pub(super) async fn record_version(
        &self,
        tx: &mut Tx,
        who: &Principal,
        action: &str,
        old: Option<&Doc>,
        doc: &Doc,
    ) -> Result<()> {
        let Some(schema) = self.version_schema(doc) else { return Ok(()) };
        let data = match old {
            Some(old) => diff(action, old, doc),
            None => json!({ "action": action, "doc": json_of(doc) }),
        };
        // A save that changed nothing (bookkeeping aside) is no change to record.
        let empty = |k: &str| data.get(k).and_then(Json::as_array).is_some_and(Vec::is_empty);
        if old.is_some() && ["changed", "added", "removed", "row_changed"].into_iter().all(empty) {
            return Ok(());
        }
        self.write_version(tx, who, &schema, doc, data).await
    }

    /// Record the deletion of `doc`, with its last state.
    pub(super) async fn record_deletion(&self, tx: &mut Tx, who: &Principal, doc: &Doc) -> Result<()> {
        let Some(schema) = self.version_schema(doc) else { return Ok(()) };
        let data = json!({ "action": "delete", "doc": json_of(doc) });
        self.write_version(tx, who, &schema, doc, data).await
    }

    async fn write_version(
        &self,
        tx: &mut Tx,
        who: &Principal,
        schema: &Arc<DocSchema>,
        doc: &Doc,
        data: Json,
    ) -> Result<()> {
        let fields = [
            ("ref_doctype", Value::Str(doc.schema.name().to_string())),
            ("docname", Value::Str(doc.name().to_string())),
            ("data", Value::Json(data)),
        ];
        self.insert_system_as(tx, schema, &fields, &who.user).await?;
        Ok(())
    }

    /// The versions of document `r` of `doctype`, newest first, for a caller who may read the
    /// document (its read permission and row scope; otherwise the same errors as a GET).
    pub async fn versions(
        &self,
        who: &Principal,
        doctype: &str,
        r: &str,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Doc>, bool)> {
        let doc = self.get(who, doctype, r).await?;
        let Some(schema) = self.app().get(VERSION_DOCTYPE).cloned() else { return Ok((Vec::new(), false)) };
        let (Some(ref_col), Some(name_col), Some(created)) =
            (schema.column("ref_doctype"), schema.column("docname"), schema.column("creation"))
        else {
            return Ok((Vec::new(), false));
        };
        let text = |s: &str| CondValue::One(Value::Str(s.to_string()));
        let q = ListQuery {
            limit,
            offset,
            order_by: vec![(created, SortDir::Desc)],
            fields: None,
            filters: vec![
                Cond { column: ref_col, op: Op::Eq, value: text(doc.schema.name()) },
                Cond { column: name_col, op: Op::Eq, value: text(doc.name()) },
            ],
            or_filters: Vec::new(),
            total: false,
        };
        // Versions are System Managers' documents: read for the caller, who may read this one.
        let system = Principal::administrator();
        let page = self.list_in_scope(&system, &schema, &q, &Scope::all(), "versions").await?;
        Ok((page.rows, page.has_more))
    }
}
