//! Link values: a UUID of a target's `id` becomes its `name`, and a Link to a missing document
//! or one the caller cannot read is the same 422.

use super::{Repo, RepoError, Result};
use crate::checks::FieldIssue;
use crate::db::Tx;
use crate::doc::Doc;
use crate::meta::FieldType;
use crate::perms::{self, Action, Principal};
use crate::query::{self, DocRef};
use crate::value::Value;

impl Repo {
    /// Every Link value must name a document the caller can read (else the same 422 as a missing
    /// one); a UUID matching a target's `id` is replaced by that target's `name`. Values equal to
    /// the stored document's (`previous`) were resolved when it was saved and are not looked up.
    pub(super) async fn resolve_links(
        &self,
        tx: &mut Tx,
        who: &Principal,
        doc: &mut Doc,
        previous: Option<&Doc>,
    ) -> Result<()> {
        let mut issues = Vec::new();
        self.resolve_links_in(tx, who, doc, previous, "", &mut issues).await?;
        let schema = doc.schema.clone();
        for (i, t) in schema.tables.iter().enumerate() {
            for (n, row) in doc.tables[i].iter_mut().enumerate() {
                let old_row =
                    previous.and_then(|p| p.tables[i].iter().find(|o| o.id().is_some() && o.id() == row.id()));
                let prefix = format!("{}[{n}].", t.name);
                Box::pin(self.resolve_links_in(tx, who, row, old_row, &prefix, &mut issues)).await?;
            }
        }
        if issues.is_empty() { Ok(()) } else { Err(RepoError::Validation(issues)) }
    }

    async fn resolve_links_in(
        &self,
        tx: &mut Tx,
        who: &Principal,
        doc: &mut Doc,
        previous: Option<&Doc>,
        prefix: &str,
        issues: &mut Vec<FieldIssue>,
    ) -> Result<()> {
        let schema = doc.schema.clone();
        for (i, c) in schema.columns.iter().enumerate() {
            let (Some(f), FieldType::Link) = (c.field, c.kind) else { continue };
            let Value::Str(value) = &doc.values[i] else { continue };
            if value.is_empty() {
                doc.values[i] = Value::Null;
                continue;
            }
            if previous.is_some_and(|p| p.values[i] == doc.values[i]) {
                continue;
            }
            let target_name = f.to.unwrap_or_default();
            let missing =
                || FieldIssue::new(format!("{prefix}{}", f.name), "link", format!("{target_name} `{value}` not found"));
            let Some(target) = self.inner.app.get(target_name) else {
                issues.push(missing());
                continue;
            };
            let Some(scope) = perms::scope(target.meta, who, Action::Read) else {
                issues.push(missing());
                continue;
            };
            let mut found = None;
            for attempt in DocRef::attempts(value) {
                let sql = query::find_name(target, self.dialect(), &attempt, &scope);
                let rows = tx.fetch(&sql.text, sql.binds, &[FieldType::Data]).await?;
                if let Some(Value::Str(name)) = rows.into_iter().next().and_then(|r| r.into_iter().next()) {
                    found = Some(name);
                    break;
                }
            }
            match found {
                Some(name) => doc.values[i] = Value::Str(name),
                None => issues.push(missing()),
            }
        }
        Ok(())
    }
}

/// Every Link value of a document and its rows, to see whether a hook changed one.
pub(super) fn link_values(doc: &Doc) -> Vec<Value> {
    let own =
        doc.schema.columns.iter().zip(&doc.values).filter(|(c, _)| c.kind == FieldType::Link).map(|(_, v)| v.clone());
    let rows = doc.tables.iter().flatten().flat_map(link_values);
    own.chain(rows).collect()
}
