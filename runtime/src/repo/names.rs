//! Names of new documents: from the naming rule (uuid, hash, a field, a series counter), and
//! `<original>-N` for amendments.

use super::{Repo, RepoError, Result};
use crate::checks::FieldIssue;
use crate::db::{Dialect, Fetch, Tx};
use crate::doc::{Doc, DocSchema};
use crate::meta::{FieldType, Naming};
use crate::naming;
use crate::perms::Scope;
use crate::query::{self, DocRef};
use crate::value::Value;

impl Repo {
    pub(super) async fn next_name(&self, tx: &mut Tx, doc: &Doc) -> Result<String> {
        Ok(match doc.schema.meta.naming {
            Naming::Uuid => doc.id().map(|u| u.to_string()).unwrap_or_default(),
            Naming::Hash => naming::hash_name(),
            Naming::Field(f) => match doc.get(f) {
                Value::Str(s) if !s.is_empty() => s.clone(),
                _ => {
                    return Err(RepoError::Validation(vec![FieldIssue::new(
                        f,
                        "required",
                        format!("{f} is required (it names the document)"),
                    )]));
                }
            },
            Naming::Series(pattern) => {
                let series = naming::parse_series(pattern);
                let sql = query::next_series(self.dialect(), &series.prefix);
                let rows = tx.fetch(&sql.text, sql.binds, &[FieldType::BigInt]).await?;
                let n = match rows.first().and_then(|r| r.first()) {
                    Some(Value::Int(n)) => *n,
                    _ => return Err(RepoError::Internal("naming series returned no value".into())),
                };
                series.name(n)
            }
        })
    }

    /// `<original>-N` with the next free N, read inside the inserting transaction.
    pub(super) async fn next_amendment(&self, tx: &mut Tx, schema: &DocSchema, original: &str) -> Result<String> {
        // Every name counts, whoever can see it.
        tx.bypass(true).await?;
        let taken = self.amendment_names(tx, schema, original).await;
        tx.bypass(false).await?;
        let taken = taken?;
        let prefix = format!("{original}-");
        let last = taken
            .iter()
            .filter_map(|r| r.first().and_then(Value::as_str))
            .filter_map(|n| n.strip_prefix(&prefix).and_then(|s| s.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        let next = last.checked_add(1).ok_or_else(|| RepoError::Conflict("no amendment number left".into()))?;
        Ok(format!("{prefix}{next}"))
    }

    /// The names `<original>-…`, after locking the original on PostgreSQL.
    async fn amendment_names(&self, tx: &mut Tx, schema: &DocSchema, original: &str) -> Result<Vec<Vec<Value>>> {
        if self.dialect() == Dialect::Postgres {
            // Concurrent amendments of one document queue on its row, so each sees the names
            // the others committed (SQLite's single writer already serializes them).
            let mut lock = query::find_name(schema, self.dialect(), &DocRef::Name(original.to_string()), &Scope::all());
            lock.push(" FOR UPDATE");
            tx.fetch(&lock.text, lock.binds, &[FieldType::Data]).await?;
        }
        let sql = query::names_like(schema, self.dialect(), original);
        Ok(tx.fetch(&sql.text, sql.binds, &[FieldType::Data]).await?)
    }
}
