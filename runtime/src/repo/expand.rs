//! Expanded Links: each named Link of the documents (or of their child rows) replaced by the
//! linked document as the caller may read it — through the same scope as a list of that DocType,
//! one query per linked DocType for the whole page (never one per row). A Link the caller may
//! not read (no read permission on its DocType, or a document outside their row scope or User
//! Permissions) becomes `{"name"}` only: nothing tells it apart from a deleted document.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::{Repo, Result};
use crate::doc::{Doc, DocSchema};
use crate::expand::ExpandSpec;
use crate::list_query::{Cond, CondValue, ListQuery, Op};
use crate::perms::{self, Action, Principal};
use crate::value::Value;

/// What one linked DocType is read for: the names, and the columns (None: all).
struct Wanted {
    schema: Arc<DocSchema>,
    names: BTreeSet<String>,
    columns: Option<BTreeSet<usize>>,
}

/// The Link values `spec` names in `docs`.
fn values<'d>(docs: &'d [Doc], spec: &ExpandSpec) -> Vec<&'d str> {
    let mut out = Vec::new();
    for doc in docs {
        match spec.table {
            None => out.extend(doc.get(spec.field).as_str()),
            Some(table) => {
                let Some(t) = doc.schema.tables.iter().position(|t| t.name == table) else { continue };
                out.extend(doc.tables[t].iter().filter_map(|row| row.get(spec.field).as_str()));
            }
        }
    }
    out
}

impl Repo {
    /// `docs` as JSON (projected by `projection`), with the Links of `specs` expanded for `who`.
    pub async fn expand(
        &self,
        who: &Principal,
        docs: &[Doc],
        projection: Option<&[usize]>,
        specs: &[ExpandSpec],
    ) -> Result<Vec<Json>> {
        // One lookup per linked DocType: the names all specs need, the columns any wants.
        let mut wanted: HashMap<&str, Wanted> = HashMap::new();
        for spec in specs {
            let entry = wanted.entry(spec.target.name()).or_insert_with(|| Wanted {
                schema: spec.target.clone(),
                names: BTreeSet::new(),
                columns: Some(BTreeSet::new()),
            });
            entry.names.extend(values(docs, spec).into_iter().map(str::to_string));
            entry.columns = match (entry.columns.take(), &spec.columns) {
                (Some(mut cols), Some(more)) => {
                    cols.extend(more);
                    Some(cols)
                }
                _ => None,
            };
        }
        let mut found: HashMap<&str, HashMap<String, Doc>> = HashMap::new();
        for (doctype, w) in wanted {
            found.insert(doctype, self.linked(who, &w.schema, w.names, w.columns).await?);
        }
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let mut json = serde_json::to_value(doc.json(projection)).unwrap_or(Json::Null);
            for spec in specs {
                let linked = found.get(spec.target.name());
                let expanded = |value: &Json| -> Json {
                    let Some(name) = value.as_str() else { return value.clone() };
                    let mut object = Map::new();
                    object.insert("name".into(), Json::String(name.to_string()));
                    if let Some(target) = linked.and_then(|l| l.get(name)) {
                        let all;
                        let cols = match &spec.columns {
                            Some(cols) => cols.as_slice(),
                            None => {
                                all = (0..target.schema.columns.len()).collect::<Vec<_>>();
                                all.as_slice()
                            }
                        };
                        if let Ok(Json::Object(fields)) = serde_json::to_value(target.json(Some(cols))) {
                            object.extend(fields);
                        }
                    }
                    Json::Object(object)
                };
                match spec.table {
                    None => {
                        if let Some(v) = json.get_mut(spec.field) {
                            *v = expanded(v);
                        }
                    }
                    Some(table) => {
                        if let Some(Json::Array(rows)) = json.get_mut(table) {
                            for row in rows {
                                if let Some(v) = row.get_mut(spec.field) {
                                    *v = expanded(v);
                                }
                            }
                        }
                    }
                }
            }
            out.push(json);
        }
        Ok(out)
    }

    /// The documents of `schema` named `names` that `who` may read, by name: one query per
    /// `M_MAX_IN_VALUES` names; none when `who` may not read the DocType at all.
    async fn linked(
        &self,
        who: &Principal,
        schema: &Arc<DocSchema>,
        names: BTreeSet<String>,
        columns: Option<BTreeSet<usize>>,
    ) -> Result<HashMap<String, Doc>> {
        let mut out = HashMap::new();
        let Some(scope) = perms::scope(schema.meta, who, Action::Read) else { return Ok(out) };
        let (Some(name_col), Some(id_col)) = (schema.column("name"), schema.column("id")) else { return Ok(out) };
        let fields = columns.map(|mut cols| {
            cols.extend([id_col, name_col]);
            cols.into_iter().collect::<Vec<_>>()
        });
        let names: Vec<String> = names.into_iter().filter(|n| !n.contains('\0')).collect();
        for chunk in names.chunks(self.limits().max_in_values.max(1)) {
            let q = ListQuery {
                limit: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
                offset: 0,
                order_by: Vec::new(),
                fields: fields.clone(),
                filters: vec![Cond {
                    column: name_col,
                    op: Op::In,
                    value: CondValue::Many(chunk.iter().map(|n| Value::Str(n.clone())).collect()),
                }],
                or_filters: Vec::new(),
                total: false,
            };
            let page = self.list_in_scope(who, schema, &q, &scope, "expand").await?;
            out.extend(page.rows.into_iter().map(|d| (d.name().to_string(), d)));
        }
        Ok(out)
    }
}
