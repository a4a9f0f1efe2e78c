//! Reads: lists (a page, or every matching document for jobs and commands), one document by
//! `{ref}` in the caller's scope with its child rows in one snapshot, and the audit of a 404 that
//! hides a document outside the scope.

use std::sync::Arc;

use super::{Page, Repo, RepoError, Result, Target, ctx, record_denial};
use crate::db::{Dialect, Fetch, Tx};
use crate::doc::{Doc, DocSchema};
use crate::list_query::ListQuery;
use crate::meta::FieldType;
use crate::perms::{Action, Principal, Scope};
use crate::query::{self, DocRef};
use crate::value::Value;

impl Repo {
    /// Every document matching list parameters (`filters`, `customer=…`, `order_by` … as in the
    /// API; `limit`/`offset` are set here), read page by page, for jobs and commands.
    pub async fn list_all(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        params: &[(String, String)],
    ) -> Result<Vec<Doc>> {
        let schema = doctype.resolve(&self.inner.app)?;
        let page_size = self.limits().max_page_size;
        let mut out = Vec::new();
        loop {
            let mut pairs: Vec<(String, String)> =
                params.iter().filter(|(k, _)| k != "limit" && k != "offset").cloned().collect();
            pairs.push(("limit".into(), page_size.to_string()));
            pairs.push(("offset".into(), out.len().to_string()));
            let q = crate::list_query::parse(&schema, &pairs, self.limits()).map_err(|e| RepoError::BadRequest {
                code: e.code,
                message: e.message,
                field: e.field,
            })?;
            let page = self.list(who, doctype, &q).await?;
            out.extend(page.rows);
            if !page.has_more {
                return Ok(out);
            }
        }
    }

    pub async fn list(&self, who: &Principal, doctype: &(impl Target + ?Sized), q: &ListQuery) -> Result<Page> {
        let schema = doctype.resolve(&self.inner.app)?;
        let scope = self.scope(&schema, who, Action::Read)?;
        self.list_in_scope(who, &schema, q, &scope, "list").await
    }

    /// A list in a scope already found, its statements counted under `operation`.
    pub(super) async fn list_in_scope(
        &self,
        who: &Principal,
        schema: &Arc<DocSchema>,
        q: &ListQuery,
        scope: &Scope,
        operation: &'static str,
    ) -> Result<Page> {
        let schema = schema.clone();
        let cols: &[usize] = q.fields.as_deref().unwrap_or(&schema.all_columns);
        let sql = query::select_list(&schema, self.dialect(), q, cols, scope);
        let mut conn = self.inner.db.reader(&ctx(who, Action::Read, &schema, operation)).await?;
        let mut rows = conn.fetch(&sql.text, sql.binds, &query::kinds(&schema, cols)).await?;
        let has_more = rows.len() > q.limit as usize;
        rows.truncate(q.limit as usize);
        let total = if q.total {
            let sql = query::count(&schema, self.dialect(), q, scope);
            let counted = conn.fetch(&sql.text, sql.binds, &[FieldType::BigInt]).await?;
            match counted.first().and_then(|r| r.first()) {
                Some(Value::Int(n)) => Some(*n),
                _ => Some(0),
            }
        } else {
            None
        };
        let rows = rows.into_iter().map(|r| self.row_to_doc(&schema, cols, r)).collect();
        Ok(Page { rows, projection: q.fields.clone(), total, has_more, limit: q.limit, offset: q.offset })
    }

    pub async fn get(&self, who: &Principal, doctype: &(impl Target + ?Sized), r: &str) -> Result<Doc> {
        self.read_one(who, doctype, r, "get").await
    }

    /// One document in the caller's read scope, its statements counted under `operation`.
    pub(super) async fn read_one(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        operation: &'static str,
    ) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        let scope = self.scope(&schema, who, Action::Read)?;
        let mut conn = self.inner.db.reader(&ctx(who, Action::Read, &schema, operation)).await?;
        // A document with child rows is read in one snapshot, so the rows match the ETag.
        let snapshot = !schema.tables.is_empty();
        if snapshot {
            conn.begin_read().await?;
        }
        let doc = self.load(&mut conn, &schema, r, &scope, false, (who, Action::Read)).await?;
        if snapshot {
            conn.end_read().await?;
        }
        Ok(doc)
    }

    /// Load a document with its child rows inside a write transaction, locking it on PostgreSQL.
    pub(super) async fn load_for_write(
        &self,
        tx: &mut Tx,
        schema: &Arc<DocSchema>,
        r: &str,
        scope: &Scope,
        caller: (&Principal, Action),
    ) -> Result<Doc> {
        self.load(tx, schema, r, scope, self.dialect() == Dialect::Postgres, caller).await
    }

    /// One document in scope by `{ref}` (an `id` first when it looks like one, then a `name`), with
    /// its child rows. A document that exists outside the caller's row scope is the same 404 as a
    /// missing one, and is recorded as a denial for `caller`.
    async fn load<C: Fetch>(
        &self,
        c: &mut C,
        schema: &Arc<DocSchema>,
        r: &str,
        scope: &Scope,
        for_update: bool,
        caller: (&Principal, Action),
    ) -> Result<Doc> {
        let mut doc = None;
        for attempt in DocRef::attempts(r) {
            let mut sql = query::select_one(schema, self.dialect(), &attempt, scope);
            if for_update {
                sql.push(" FOR UPDATE");
            }
            if let Some(row) = c.fetch(&sql.text, sql.binds, &schema.all_kinds).await?.into_iter().next() {
                doc = Some(self.row_to_doc(schema, &schema.all_columns, row));
                break;
            }
        }
        let Some(mut doc) = doc else {
            if scope.is_restricted() {
                self.audit_out_of_scope(c, schema, r, caller).await;
            }
            return Err(RepoError::NotFound);
        };
        for (i, t) in schema.tables.iter().enumerate() {
            let sql = query::select_children(&t.child, schema, self.dialect(), doc.name(), t.name, scope);
            let rows = c.fetch(&sql.text, sql.binds, &t.child.all_kinds).await?;
            let cols = &t.child.all_columns;
            doc.tables[i] = rows.into_iter().map(|r| self.row_to_doc(&t.child, cols, r)).collect();
        }
        Ok(doc)
    }

    /// Whether `{ref}` exists outside the caller's scope: an audit probe only (its row is never
    /// returned), so that such a 404 is logged and counted as the denial it is.
    async fn audit_out_of_scope<C: Fetch>(
        &self,
        c: &mut C,
        schema: &Arc<DocSchema>,
        r: &str,
        caller: (&Principal, Action),
    ) {
        // Row security would hide the row from the probe too: it runs as the runtime.
        if c.bypass(true).await.is_err() {
            return;
        }
        let mut found = false;
        for attempt in DocRef::attempts(r) {
            let sql = query::exists(schema, self.dialect(), &attempt);
            if let Ok(rows) = c.fetch(&sql.text, sql.binds, &[crate::meta::FieldType::Int]).await
                && !rows.is_empty()
            {
                found = true;
                break;
            }
        }
        // The request ends with this 404 whatever happens here; a connection whose switch back
        // failed has its settings sent again at its next checkout.
        let _ = c.bypass(false).await;
        if found {
            let (who, action) = caller;
            record_denial(
                who,
                schema,
                action,
                "the document is outside the user's row scope (if_owner or User Permissions)",
            );
        }
    }
}
