//! Document operations: list, get, create, update, delete, submit, cancel, amend. Used by the
//! HTTP handlers, the CLI and (later) jobs; it knows nothing of HTTP. Every statement comes from
//! [`crate::query`] with the caller's scope.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::app::App;
use crate::checks::{FieldIssue, check_doc};
use crate::db::{Db, DbCtx, DbError, Dialect, Fetch, Labels, Tx};
use crate::doc::{Doc, DocSchema, StandardColumn};
use crate::hooks::{BoxFuture, HookCtx, HookError, HookEvent, HookHost};
use crate::jobs::queue::{EnqueueError, JobQueue};
use crate::list_query::{ListLimits, ListQuery};
use crate::meta::{FieldType, Naming};
use crate::naming;
use crate::perms::{self, Action, Principal, Scope};
use crate::query::{self, DocRef, Sql};
use crate::value::Value;

mod body;
pub mod error;

use body::{apply_body, apply_defaults, apply_defaults_to_children};
pub use error::RepoError;

pub(crate) type Result<T, E = RepoError> = std::result::Result<T, E>;

/// A permission denial: an audit event (target `m::audit`) and the denial metric.
fn record_denial(who: &Principal, schema: &DocSchema, action: Action, reason: &str) {
    crate::metrics::permission_denied(schema.meta.name, action.as_str());
    tracing::info!(
        target: "m::audit",
        user = %who.user,
        doctype = schema.meta.name,
        action = action.as_str(),
        reason,
        "permission denied"
    );
}

/// Whom a repository call's connection acts for (PostgreSQL row security).
fn ctx(who: &Principal, action: Action, schema: &DocSchema, operation: &'static str) -> DbCtx {
    let labels = Labels { doctype: schema.meta.name, operation };
    DbCtx::Caller { user: who.user.clone(), roles: who.roles.clone(), action: action.as_str(), labels }
}

/// A page of a list.
pub struct Page {
    pub rows: Vec<Doc>,
    /// The projected columns, when `fields` was given.
    pub projection: Option<Vec<usize>>,
    pub total: Option<i64>,
    pub has_more: bool,
    pub limit: u32,
    pub offset: u32,
}

/// The DocType a document operation is on: its name (looked up: a 404 for an unknown DocType or
/// a child, the same as a missing document), or its schema, already resolved (the HTTP layer
/// resolves the DocType in the path once per request).
pub trait Target {
    fn resolve(&self, app: &App) -> Result<Arc<DocSchema>>;
}

impl Target for str {
    fn resolve(&self, app: &App) -> Result<Arc<DocSchema>> {
        app.routable(self).cloned().ok_or(RepoError::NotFound)
    }
}

impl Target for String {
    fn resolve(&self, app: &App) -> Result<Arc<DocSchema>> {
        self.as_str().resolve(app)
    }
}

impl Target for Arc<DocSchema> {
    fn resolve(&self, _: &App) -> Result<Arc<DocSchema>> {
        Ok(self.clone())
    }
}

/// Preconditions a client sends with a change.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The `If-Match` header.
    pub if_match: Option<String>,
}

/// Document operations over one application and one database.
#[derive(Clone)]
pub struct Repo {
    inner: Arc<Inner>,
}

struct Inner {
    app: App,
    db: Db,
    limits: ListLimits,
    /// Where hooks queue jobs.
    queue: JobQueue,
    /// Told about every committed write (the user directory forgets changed users).
    observers: Vec<WriteObserver>,
}

/// Called with each document a committed write changed or deleted.
pub type WriteObserver = Box<dyn Fn(&Doc) + Send + Sync>;

/// The current time at the database's precision (microseconds), so a document returned by a
/// write equals the one read back, ETag included.
pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The ETag of a document: from `_version` on optimistic DocTypes, else from `modified`.
pub fn etag(doc: &Doc) -> String {
    match (doc.get_std(StandardColumn::Version), doc.get_std(StandardColumn::Modified)) {
        (Value::Int(v), _) => format!("\"v{v}\""),
        (_, Value::Datetime(t)) => format!("\"m{}\"", t.timestamp_micros()),
        _ => "\"0\"".to_string(),
    }
}

fn if_match_ok(header: &str, tag: &str) -> bool {
    header.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == "*" || t == tag)
}

pub(super) fn bad_field(field: &str, message: String) -> RepoError {
    RepoError::BadRequest { code: "bad_request", message, field: Some(field.to_string()) }
}

fn docstatus(doc: &Doc) -> i64 {
    match doc.get_std(StandardColumn::Docstatus) {
        Value::Int(i) => *i,
        _ => 0,
    }
}

impl Repo {
    /// The document service over `app` and `db`; `queue` takes the jobs hooks queue, and every
    /// committed write is shown to `observers`.
    pub fn new(app: App, db: Db, limits: ListLimits, queue: JobQueue, observers: Vec<WriteObserver>) -> Repo {
        Repo { inner: Arc::new(Inner { app, db, limits, queue, observers }) }
    }

    pub fn app(&self) -> &App {
        &self.inner.app
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The job queue (shared with the workers).
    pub fn jobs(&self) -> &JobQueue {
        &self.inner.queue
    }

    /// Queue `job` with `args`, committed at once (outside any write). Returns the job's id.
    pub async fn enqueue(
        &self,
        job: &str,
        args: &serde_json::Value,
        enqueued_by: Option<&str>,
    ) -> std::result::Result<String, EnqueueError> {
        self.inner.queue.enqueue(job, args, enqueued_by).await
    }

    /// After a committed write.
    fn written(&self, doc: &Doc) {
        for observe in &self.inner.observers {
            observe(doc);
        }
    }

    pub fn limits(&self) -> &ListLimits {
        &self.inner.limits
    }

    /// Connections (in use, idle), for the metrics.
    pub fn pool_status(&self) -> (usize, usize) {
        self.inner.db.pool_status()
    }

    /// `SELECT 1` on a reader connection (readiness).
    pub async fn ping(&self) -> Result<()> {
        self.inner.db.fetch(&DbCtx::System, "SELECT 1", Vec::new(), &[FieldType::Int]).await?;
        Ok(())
    }

    /// Ids of the revisions the database has applied (readiness).
    pub async fn applied_revisions(&self) -> Result<Vec<String>> {
        let rows = self
            .inner
            .db
            .fetch(
                &DbCtx::System,
                "SELECT id FROM m_migrations WHERE state = 'applied'",
                Vec::new(),
                &[FieldType::Data],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    fn dialect(&self) -> Dialect {
        self.inner.db.dialect()
    }

    /// A routable DocType, or a 404 (the same as a missing document).
    pub fn schema(&self, doctype: &str) -> Result<Arc<DocSchema>> {
        Target::resolve(doctype, &self.inner.app)
    }

    /// A routable DocType on which the caller may perform `action` (404, then 403), checked
    /// before a request's body or parameters are parsed.
    pub fn authorize(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        action: Action,
    ) -> Result<Arc<DocSchema>> {
        let schema = doctype.resolve(&self.inner.app)?;
        self.scope(&schema, who, action)?;
        Ok(schema)
    }

    fn scope(&self, schema: &DocSchema, who: &Principal, action: Action) -> Result<Scope> {
        perms::scope(schema.meta, who, action).ok_or_else(|| {
            record_denial(who, schema, action, "no role of the user grants it");
            RepoError::Forbidden { doctype: schema.name().to_string(), action: action.as_str() }
        })
    }

    fn row_to_doc(schema: &Arc<DocSchema>, cols: &[usize], row: Vec<Value>) -> Doc {
        if cols.len() == schema.columns.len() && cols.iter().enumerate().all(|(n, &i)| n == i) {
            // A full row is already in column order.
            return Doc { schema: schema.clone(), values: row, tables: vec![Vec::new(); schema.tables.len()] };
        }
        let mut doc = Doc::empty(schema.clone());
        for (&i, v) in cols.iter().zip(row) {
            doc.values[i] = v;
        }
        doc
    }

    // ----- reads -------------------------------------------------------------------------

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
        let cols: &[usize] = q.fields.as_deref().unwrap_or(&schema.all_columns);
        let sql = query::select_list(&schema, self.dialect(), q, cols, &scope);
        let mut conn = self.inner.db.reader(&ctx(who, Action::Read, &schema, "list")).await?;
        let mut rows = conn.fetch(&sql.text, sql.binds, &query::kinds(&schema, cols)).await?;
        let has_more = rows.len() > q.limit as usize;
        rows.truncate(q.limit as usize);
        let total = if q.total {
            let sql = query::count(&schema, self.dialect(), q, &scope);
            let counted = conn.fetch(&sql.text, sql.binds, &[FieldType::BigInt]).await?;
            match counted.first().and_then(|r| r.first()) {
                Some(Value::Int(n)) => Some(*n),
                _ => Some(0),
            }
        } else {
            None
        };
        let rows = rows.into_iter().map(|r| Self::row_to_doc(&schema, cols, r)).collect();
        Ok(Page { rows, projection: q.fields.clone(), total, has_more, limit: q.limit, offset: q.offset })
    }

    pub async fn get(&self, who: &Principal, doctype: &(impl Target + ?Sized), r: &str) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        let scope = self.scope(&schema, who, Action::Read)?;
        let mut conn = self.inner.db.reader(&ctx(who, Action::Read, &schema, "get")).await?;
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
    /// The start of every change to a stored document: the caller's scope for the action, a write
    /// transaction acting for them, the document read in scope and locked, `If-Match`, and the
    /// docstatus the change needs.
    async fn begin_change(
        &self,
        who: &Principal,
        schema: &Arc<DocSchema>,
        r: &str,
        expect: &Expect,
        change: Change,
    ) -> Result<(Tx, Scope, Doc)> {
        let scope = self.scope(schema, who, change.action)?;
        let mut tx = self.inner.db.begin(&ctx(who, change.action, schema, change.operation)).await?;
        let doc = self.load_for_write(&mut tx, schema, r, &scope, (who, change.action)).await?;
        check_if_match(&doc, expect)?;
        check_state(&doc, change.from, change.rule)?;
        Ok((tx, scope, doc))
    }

    async fn load_for_write(
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
                doc = Some(Self::row_to_doc(schema, &schema.all_columns, row));
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
            doc.tables[i] = rows.into_iter().map(|r| Self::row_to_doc(&t.child, cols, r)).collect();
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

    // ----- writes ------------------------------------------------------------------------

    pub async fn create(&self, who: &Principal, doctype: &(impl Target + ?Sized), body: &Json) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        let scope = self.scope(&schema, who, Action::Create)?;
        let mut doc = Doc::empty(schema.clone());
        apply_body(&mut doc, body)?;
        apply_defaults(&mut doc);
        self.insert_new(who, &scope, doc, NewName::FromRule).await
    }

    /// In one transaction: stamp, resolve Links, run hooks, validate, name and insert a new
    /// document with its child rows.
    async fn insert_new(&self, who: &Principal, scope: &Scope, mut doc: Doc, name: NewName) -> Result<Doc> {
        let schema = doc.schema.clone();
        let t = now();
        doc.set_std(StandardColumn::Id, Value::Uuid(Uuid::now_v7()));
        doc.set_std(StandardColumn::Owner, Value::Str(who.user.clone()));
        doc.set_std(StandardColumn::ModifiedBy, Value::Str(who.user.clone()));
        doc.set_std(StandardColumn::Creation, Value::Datetime(t));
        doc.set_std(StandardColumn::Modified, Value::Datetime(t));
        doc.set_std(StandardColumn::Docstatus, Value::Int(0));
        doc.set_std(StandardColumn::Version, Value::Int(1));

        let operation = match name {
            NewName::FromRule => "create",
            NewName::AmendmentOf(_) => "amend",
        };
        let mut tx = self.inner.db.begin(&ctx(who, Action::Create, &schema, operation)).await?;
        self.prepare(&mut tx, who, &mut doc, None).await?;
        let name = match name {
            NewName::FromRule => self.next_name(&mut tx, &doc).await?,
            NewName::AmendmentOf(original) => self.next_amendment(&mut tx, &schema, &original).await?,
        };
        doc.set_std(StandardColumn::Name, Value::Str(name));
        let sql = query::insert(&schema, self.dialect(), &doc.values);
        self.write(&mut tx, &schema, sql, WriteKind::Insert).await?;
        self.write_children(&mut tx, &mut doc, &[]).await?;
        self.run_hook(HookEvent::AfterSave, &mut doc, &mut tx, who, true).await?;
        self.check_within(&mut tx, who, &doc, scope, Action::Create).await?;
        tx.commit().await?;
        self.written(&doc);
        Ok(doc)
    }

    /// A document written under User Permissions must stay visible to its writer: a Link moved
    /// outside them is refused (403) rather than leaving a document the writer cannot see.
    async fn check_within(&self, tx: &mut Tx, who: &Principal, doc: &Doc, scope: &Scope, action: Action) -> Result<()> {
        if scope.user_permissions.is_none() {
            return Ok(());
        }
        let id = doc.id().ok_or(RepoError::NotFound)?;
        let sql = query::find_name(&doc.schema, self.dialect(), &DocRef::Id(id), scope);
        if !tx.fetch(&sql.text, sql.binds, &[FieldType::Data]).await?.is_empty() {
            return Ok(());
        }
        let reason = "a Link value is outside the user's User Permissions";
        record_denial(who, &doc.schema, action, reason);
        Err(RepoError::NotPermitted(format!(
            "not permitted to {} {} {}: {reason}",
            action.as_str(),
            doc.schema.name(),
            doc.name()
        )))
    }

    /// Resolve Links, run `validate` and `before_save`, resolve Links a hook changed, and check
    /// the value rules. `previous` is the stored document on an update (its Links are resolved).
    async fn prepare(&self, tx: &mut Tx, who: &Principal, doc: &mut Doc, previous: Option<&Doc>) -> Result<()> {
        let is_new = previous.is_none();
        self.resolve_links(tx, who, doc, previous).await?;
        if self.app().hooks(doc.schema.meta.name).is_some() {
            let before = link_values(doc);
            self.run_hook(HookEvent::Validate, doc, tx, who, is_new).await?;
            self.run_hook(HookEvent::BeforeSave, doc, tx, who, is_new).await?;
            if link_values(doc) != before {
                self.resolve_links(tx, who, doc, previous).await?;
            }
        }
        crate::users::rules::check(self.app(), doc, previous)?;
        validate(doc)
    }

    pub async fn update(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        body: &Json,
        expect: &Expect,
    ) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        let change = Change { action: Action::Write, operation: "update", from: 0, rule: "only drafts can be changed" };
        let (mut tx, scope, mut doc) = self.begin_change(who, &schema, r, expect, change).await?;
        let old = doc.clone();
        let body_version = apply_body(&mut doc, body)?;
        let current_version = version(&doc);
        if let (Some(expected), Some(current)) = (body_version, current_version)
            && expected != current
        {
            return Err(RepoError::Conflict(format!(
                "stale _version {expected}: the document is at version {current}"
            )));
        }
        apply_defaults_to_children(&mut doc);
        self.stamp_modified(&mut doc, who);
        self.prepare(&mut tx, who, &mut doc, Some(&old)).await?;
        self.save_existing(&mut tx, &mut doc, &scope, current_version, &old).await?;
        self.run_hook(HookEvent::AfterSave, &mut doc, &mut tx, who, false).await?;
        self.check_within(&mut tx, who, &doc, &scope, Action::Write).await?;
        tx.commit().await?;
        self.written(&doc);
        Ok(doc)
    }

    pub async fn delete(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        expect: &Expect,
    ) -> Result<()> {
        let schema = doctype.resolve(&self.inner.app)?;
        let change =
            Change { action: Action::Delete, operation: "delete", from: 0, rule: "only drafts can be deleted" };
        let (mut tx, scope, mut doc) = self.begin_change(who, &schema, r, expect, change).await?;
        self.run_hook(HookEvent::BeforeDelete, &mut doc, &mut tx, who, false).await?;
        crate::users::rules::before_delete(&doc)?;
        let id = doc.id().ok_or(RepoError::NotFound)?;
        let sql = query::delete(&schema, self.dialect(), id, &scope);
        if self.write(&mut tx, &schema, sql, WriteKind::Delete).await? == 0 {
            return Err(RepoError::NotFound);
        }
        if schema.meta.table == crate::users::rules::USER_TABLE {
            let sql = query::delete_password_hash(self.dialect(), doc.name());
            tx.execute(&sql.text, sql.binds).await?;
        }
        tx.commit().await?;
        self.written(&doc);
        Ok(())
    }

    /// Submit (docstatus 0 -> 1) or cancel (1 -> 2).
    pub async fn transition(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        action: Action,
        expect: &Expect,
    ) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        if !schema.meta.submittable {
            return Err(RepoError::NotFound);
        }
        let (from, to, event, rule) = match action {
            Action::Submit => (0, 1, HookEvent::OnSubmit, "only drafts can be submitted"),
            _ => (1, 2, HookEvent::OnCancel, "only submitted documents can be cancelled"),
        };
        let change = Change { action, operation: action.as_str(), from, rule };
        let (mut tx, scope, mut doc) = self.begin_change(who, &schema, r, expect, change).await?;
        let old = doc.clone();
        let current_version = version(&doc);
        if action == Action::Submit {
            self.prepare(&mut tx, who, &mut doc, Some(&old)).await?;
        }
        doc.set_std(StandardColumn::Docstatus, Value::Int(to));
        self.stamp_modified(&mut doc, who);
        self.save_existing(&mut tx, &mut doc, &scope, current_version, &old).await?;
        self.run_hook(event, &mut doc, &mut tx, who, false).await?;
        // Hooks may have changed Links on the way.
        self.check_within(&mut tx, who, &doc, &scope, action).await?;
        tx.commit().await?;
        Ok(doc)
    }

    /// A new draft copying a cancelled document, named `<name>-N`, with `amended_from`.
    pub async fn amend(
        &self,
        who: &Principal,
        doctype: &(impl Target + ?Sized),
        r: &str,
        expect: &Expect,
    ) -> Result<Doc> {
        let schema = doctype.resolve(&self.inner.app)?;
        if !schema.meta.submittable {
            return Err(RepoError::NotFound);
        }
        let scope = self.scope(&schema, who, Action::Create)?;
        let source = self.get(who, doctype, r).await?;
        check_if_match(&source, expect)?;
        check_state(&source, 2, "only cancelled documents can be amended")?;
        // `INV-0001-1` amends to `INV-0001-2`, not `INV-0001-1-1`.
        let original = match (source.get_std(StandardColumn::AmendedFrom), source.name().rsplit_once('-')) {
            (Value::Str(_), Some((base, n))) if n.chars().all(|c| c.is_ascii_digit()) => base.to_string(),
            _ => source.name().to_string(),
        };
        let mut doc = Doc::empty(schema.clone());
        for (i, c) in schema.columns.iter().enumerate() {
            if c.standard.is_none() {
                doc.values[i] = source.values[i].clone();
            }
        }
        for (i, rows) in source.tables.iter().enumerate() {
            doc.tables[i] = rows
                .iter()
                .map(|row| {
                    let mut copy = row.clone();
                    copy.set_std(StandardColumn::Id, Value::Null);
                    copy
                })
                .collect();
        }
        doc.set_std(StandardColumn::AmendedFrom, Value::Str(source.name().to_string()));
        self.insert_new(who, &scope, doc, NewName::AmendmentOf(original)).await
    }

    // ----- helpers -----------------------------------------------------------------------

    fn stamp_modified(&self, doc: &mut Doc, who: &Principal) {
        doc.set_std(StandardColumn::Modified, Value::Datetime(now()));
        doc.set_std(StandardColumn::ModifiedBy, Value::Str(who.user.clone()));
        if let Value::Int(v) = doc.get_std(StandardColumn::Version) {
            let next = v + 1;
            doc.set_std(StandardColumn::Version, Value::Int(next));
        }
    }

    /// Run a hook; what it reads through [`HookCtx`] goes through this transaction, so a hook
    /// never waits for a second connection while holding one.
    async fn run_hook(
        &self,
        event: HookEvent,
        doc: &mut Doc,
        tx: &mut Tx,
        who: &Principal,
        is_new: bool,
    ) -> Result<()> {
        if let Some(hook) = self.app().hooks(doc.schema.meta.name) {
            let host = InTx { repo: self, user: &who.user, tx: tokio::sync::Mutex::new(tx) };
            hook(event, doc, &HookCtx::new(&host, &who.user, is_new)).await?;
        }
        Ok(())
    }

    /// One field of a document by name inside a transaction, ignoring row scope (for hooks).
    pub(crate) async fn get_value_in(&self, tx: &mut Tx, doctype: &str, name: &str, field: &str) -> Result<Value> {
        let schema = self.inner.app.get(doctype).cloned().ok_or(RepoError::NotFound)?;
        let col =
            schema.column(field).ok_or_else(|| RepoError::Internal(format!("{doctype} has no field `{field}`")))?;
        if name.contains('\0') {
            // No stored name holds a NUL character.
            return Ok(Value::Null);
        }
        let sql = query::select_one(&schema, self.dialect(), &DocRef::Name(name.to_string()), &Scope::all());
        tx.bypass(true).await?;
        let row = tx.fetch(&sql.text, sql.binds, &schema.all_kinds).await?.into_iter().next();
        tx.bypass(false).await?;
        Ok(row.and_then(|mut r| r.get_mut(col).map(std::mem::take)).unwrap_or(Value::Null))
    }

    async fn next_name(&self, tx: &mut Tx, doc: &Doc) -> Result<String> {
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
    async fn next_amendment(&self, tx: &mut Tx, schema: &DocSchema, original: &str) -> Result<String> {
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

    /// Every Link value must name a document the caller can read (else the same 422 as a missing
    /// one); a UUID matching a target's `id` is replaced by that target's `name`. Values equal to
    /// the stored document's (`previous`) were resolved when it was saved and are not looked up.
    async fn resolve_links(&self, tx: &mut Tx, who: &Principal, doc: &mut Doc, previous: Option<&Doc>) -> Result<()> {
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

    /// Update the parent row (in scope, at the expected version) and sync its child rows.
    async fn save_existing(
        &self,
        tx: &mut Tx,
        doc: &mut Doc,
        scope: &Scope,
        version: Option<i64>,
        old: &Doc,
    ) -> Result<()> {
        let schema = doc.schema.clone();
        let sql = query::update(&schema, self.dialect(), &doc.values, scope, version);
        if self.write(tx, &schema, sql, WriteKind::Update).await? == 0 {
            return Err(RepoError::Conflict("the document changed while it was being saved".into()));
        }
        self.write_children(tx, doc, &old.tables).await
    }

    /// Replace-the-set against the stored rows `old`: delete rows left out, update rows that
    /// changed, insert new ones; unchanged rows cost nothing.
    async fn write_children(&self, tx: &mut Tx, doc: &mut Doc, old: &[Vec<Doc>]) -> Result<()> {
        let parent_name = doc.name().to_string();
        let schema = doc.schema.clone();
        for (i, t) in schema.tables.iter().enumerate() {
            let rows = &mut doc.tables[i];
            let old_rows: &[Doc] = old.get(i).map_or(&[], Vec::as_slice);
            let keep: Vec<Uuid> = rows.iter().filter_map(Doc::id).collect();
            if old_rows.iter().any(|o| o.id().is_some_and(|id| !keep.contains(&id))) {
                let sql = query::delete_children_except(&t.child, self.dialect(), &parent_name, t.name, &keep);
                self.write(tx, &t.child, sql, WriteKind::Delete).await?;
            }
            for (idx, row) in rows.iter_mut().enumerate() {
                row.set_std(StandardColumn::Idx, Value::Int(idx as i64));
                row.set_std(StandardColumn::Parent, Value::Str(parent_name.clone()));
                row.set_std(StandardColumn::Parentfield, Value::Str(t.name.to_string()));
                let stored = old_rows.iter().find(|o| o.id().is_some() && o.id() == row.id());
                // Child rows follow the parent, whose scope this transaction already checked.
                let (sql, kind) = match stored {
                    Some(o) if o.values == row.values => continue,
                    Some(_) => {
                        (query::update(&t.child, self.dialect(), &row.values, &Scope::all(), None), WriteKind::Update)
                    }
                    None => {
                        if row.id().is_none() {
                            row.set_std(StandardColumn::Id, Value::Uuid(Uuid::now_v7()));
                        }
                        (query::insert(&t.child, self.dialect(), &row.values), WriteKind::Insert)
                    }
                };
                self.write(tx, &t.child, sql, kind).await?;
            }
        }
        Ok(())
    }

    /// Execute a write and turn constraint violations into the statuses of the README's HTTP API section.
    async fn write(&self, tx: &mut Tx, schema: &DocSchema, sql: Sql, kind: WriteKind) -> Result<u64> {
        match tx.execute(&sql.text, sql.binds).await {
            Ok(n) => Ok(n),
            Err(DbError::Unique { constraint }) => {
                let field = unique_field(schema, &constraint);
                let message = match &field {
                    Some(f) if f == "name" => format!("{} with this name already exists", schema.name()),
                    Some(f) => format!("another {} has the same {f}", schema.name()),
                    None => format!("a unique constraint of {} was violated", schema.name()),
                };
                Err(RepoError::Duplicate { message, field })
            }
            Err(DbError::ForeignKey) => match kind {
                WriteKind::Delete => Err(RepoError::LinkExists(format!(
                    "other documents link to this {}; delete or change them first",
                    schema.name()
                ))),
                _ => Err(RepoError::Validation(vec![FieldIssue::new("", "link", "a linked document does not exist")])),
            },
            Err(DbError::TooLong) => Err(RepoError::Validation(vec![FieldIssue::new(
                "",
                "max_length",
                "a value (a name, or the acting user's name) is longer than 140 characters",
            )])),
            Err(DbError::NotNull { .. }) => {
                Err(RepoError::Validation(vec![FieldIssue::new("", "required", "a required value is missing")]))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What a hook reaches: this service, inside the write's transaction.
struct InTx<'r, 't> {
    repo: &'r Repo,
    user: &'r str,
    tx: tokio::sync::Mutex<&'t mut Tx>,
}

impl HookHost for InTx<'_, '_> {
    fn get_value<'a>(
        &'a self,
        doctype: &'a str,
        name: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Value, HookError>> {
        Box::pin(async move {
            let mut tx = self.tx.lock().await;
            self.repo.get_value_in(&mut tx, doctype, name, field).await.map_err(|e| HookError::Internal(e.to_string()))
        })
    }

    fn enqueue<'a>(&'a self, job: &'a str, args: serde_json::Value) -> BoxFuture<'a, Result<String, HookError>> {
        Box::pin(async move {
            let mut tx = self.tx.lock().await;
            self.repo
                .inner
                .queue
                .enqueue_in(&mut tx, job, &args, Some(self.user))
                .await
                .map_err(|e| HookError::Internal(e.to_string()))
        })
    }
}

/// How a new document gets its name.
enum NewName {
    FromRule,
    /// `<original>-N`, the next free N.
    AmendmentOf(String),
}

fn version(doc: &Doc) -> Option<i64> {
    match doc.get_std(StandardColumn::Version) {
        Value::Int(v) => Some(*v),
        _ => None,
    }
}

/// Every Link value of a document and its rows, to see whether a hook changed one.
fn link_values(doc: &Doc) -> Vec<Value> {
    let own =
        doc.schema.columns.iter().zip(&doc.values).filter(|(c, _)| c.kind == FieldType::Link).map(|(_, v)| v.clone());
    let rows = doc.tables.iter().flatten().flat_map(link_values);
    own.chain(rows).collect()
}

#[derive(Clone, Copy)]
enum WriteKind {
    Insert,
    Update,
    Delete,
}

/// The field a unique-constraint violation is about: PostgreSQL names the constraint
/// (`<table>__<column>_key`), SQLite the columns (`UNIQUE constraint failed: t.c`).
fn unique_field(schema: &DocSchema, constraint: &str) -> Option<String> {
    let table = schema.meta.table;
    if let Some(cols) = constraint.strip_prefix("UNIQUE constraint failed: ") {
        let first = cols.split(',').next()?.trim();
        return first.split_once('.').map(|(_, c)| c.to_string());
    }
    let inner = constraint.strip_prefix(table)?.strip_prefix("__")?.strip_suffix("_key")?;
    schema.column(inner).map(|_| inner.to_string())
}

/// A change to a stored document: the action it needs, its operation (for the metrics), and the
/// docstatus the document must have, with the rule a refusal states.
struct Change {
    action: Action,
    operation: &'static str,
    from: i64,
    rule: &'static str,
}

/// The document has docstatus `required`, or the change is a 409 `invalid_state` saying `rule`.
fn check_state(doc: &Doc, required: i64, rule: &str) -> Result<()> {
    let state = match docstatus(doc) {
        s if s == required => return Ok(()),
        0 => "is a draft",
        1 => "is submitted",
        _ => "is cancelled",
    };
    Err(RepoError::InvalidState(format!("{} {} {state}; {rule}", doc.schema.name(), doc.name())))
}

fn check_if_match(doc: &Doc, expect: &Expect) -> Result<()> {
    match &expect.if_match {
        Some(h) if !if_match_ok(h, &etag(doc)) => Err(RepoError::PreconditionFailed),
        _ => Ok(()),
    }
}

fn validate(doc: &Doc) -> Result<()> {
    let mut issues = Vec::new();
    check_doc(doc, "", &mut issues);
    if issues.is_empty() { Ok(()) } else { Err(RepoError::Validation(issues)) }
}
