//! The document service: list, get, create, update, delete, submit, cancel, amend. Used by the
//! HTTP handlers, the CLI and jobs alike; it knows nothing of HTTP. Every statement comes from
//! [`crate::query`] with the caller's scope.
//!
//! Here: the service itself, the DocType a call names ([`Target`]), scope and denials. Reads in
//! `read.rs`, changes in `write.rs`, request bodies in `body.rs`, Link resolution in `links.rs`,
//! names of new documents in `names.rs`, hooks and what they reach in `hook_host.rs`, errors in
//! `error.rs`.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use crate::app::App;
use crate::db::{Db, DbCtx, Dialect, Labels, Sealer};
use crate::doc::{Doc, DocSchema, StandardColumn};
use crate::jobs::queue::{EnqueueError, JobQueue};
use crate::list_query::ListLimits;
use crate::meta::FieldType;
use crate::perms::{self, Action, Principal, Scope};
use crate::value::Value;

mod body;
pub mod error;
mod expand;
mod hook_host;
mod links;
mod names;
mod read;
mod versions;
mod write;

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
    /// A child DocType is reached only through its parent, whichever way it is named.
    fn resolve(&self, _: &App) -> Result<Arc<DocSchema>> {
        if self.meta.child { Err(RepoError::NotFound) } else { Ok(self.clone()) }
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
    inner: Arc<Parts>,
}

/// What the document service is made of.
pub struct Parts {
    pub app: App,
    pub db: Db,
    pub limits: ListLimits,
    /// Where hooks queue jobs.
    pub queue: JobQueue,
    /// Told about every committed write (the user directory forgets changed users).
    pub observers: Vec<WriteObserver>,
    /// Password values at rest.
    pub sealer: Sealer,
    /// Which committed events are delivered to webhooks, and how.
    pub webhooks: crate::webhooks::Webhooks,
    /// Where queued email goes.
    pub outbox: crate::mail::Outbox,
    /// Documents as HTML and PDF.
    pub printer: crate::print::Printer,
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
    /// The document service over its parts.
    pub fn new(parts: Parts) -> Repo {
        Repo { inner: Arc::new(parts) }
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

    pub fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.inner.webhooks
    }

    pub fn outbox(&self) -> &crate::mail::Outbox {
        &self.inner.outbox
    }

    pub fn printer(&self) -> &crate::print::Printer {
        &self.inner.printer
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

    /// A document from a row of the columns `cols`, its Password values opened.
    fn row_to_doc(&self, schema: &Arc<DocSchema>, cols: &[usize], row: Vec<Value>) -> Doc {
        let mut doc = if cols.len() == schema.columns.len() && cols.iter().enumerate().all(|(n, &i)| n == i) {
            // A full row is already in column order.
            Doc { schema: schema.clone(), values: row, tables: vec![Vec::new(); schema.tables.len()] }
        } else {
            let mut doc = Doc::empty(schema.clone());
            for (&i, v) in cols.iter().zip(row) {
                doc.values[i] = v;
            }
            doc
        };
        for &i in &schema.secrets {
            if let Value::Str(stored) = &doc.values[i] {
                match self.inner.sealer.open(stored) {
                    Ok(opened) => doc.values[i] = Value::Str(opened),
                    // Kept in its stored form (a save keeps it as it is): the document stays
                    // readable, and the secret is there again once the right key is set.
                    Err(e) => tracing::warn!(doctype = schema.name(), field = schema.columns[i].name, "{e}"),
                }
            }
        }
        doc
    }

    /// The values to store for a document's columns: Password values sealed.
    fn stored<'v>(&self, schema: &DocSchema, values: &'v [Value]) -> Result<Cow<'v, [Value]>> {
        if schema.secrets.is_empty() {
            return Ok(Cow::Borrowed(values));
        }
        let mut sealed = values.to_vec();
        for &i in &schema.secrets {
            if let Value::Str(plain) = &sealed[i] {
                sealed[i] = Value::Str(self.inner.sealer.seal(plain)?);
            }
        }
        Ok(Cow::Owned(sealed))
    }
}
