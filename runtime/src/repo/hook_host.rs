//! Running a DocType's hooks — inside the write's transaction, or after it committed — and what
//! they reach through [`HookHost`]: other documents' fields and the job queue, in that same
//! transaction, or (after the commit) each with effect at once.

use super::{Repo, RepoError, Result};
use crate::db::{DbCtx, Fetch, Tx};
use crate::doc::Doc;
use crate::email::Email;
use crate::hooks::{BoxFuture, HookCtx, HookError, HookEvent, HookHost};
use crate::jobs::doc_events::Recorded;
use crate::perms::{Principal, Scope};
use crate::query::{self, DocRef};
use crate::value::Value;

impl Repo {
    /// Run a hook; what it reads through [`HookCtx`] goes through this transaction, so a hook
    /// never waits for a second connection while holding one.
    pub(super) async fn run_hook(
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

    /// Deliver a committed change to its DocType's `after_commit` hook: the document as it was
    /// committed, a context whose reads and queued jobs take effect at once.
    pub async fn after_commit(&self, event: &Recorded, user: &str) -> Result<()> {
        let Some(hook) = self.app().hooks(&event.doctype) else { return Ok(()) };
        let schema = self.inner.app.get(&event.doctype).cloned().ok_or(RepoError::NotFound)?;
        let mut doc = super::body::doc_from_stored(&schema, &event.doc)?;
        let host = Committed { repo: self, user };
        hook(HookEvent::Committed(event.event), &mut doc, &HookCtx::new(&host, user, false)).await?;
        Ok(())
    }

    /// One field of a document by name, ignoring row scope (for hooks), through `c` (the write's
    /// transaction, or a reader after a commit).
    pub(crate) async fn get_value_in<C: Fetch>(
        &self,
        c: &mut C,
        doctype: &str,
        name: &str,
        field: &str,
    ) -> Result<Value> {
        let schema = self.inner.app.get(doctype).cloned().ok_or(RepoError::NotFound)?;
        let col =
            schema.column(field).ok_or_else(|| RepoError::Internal(format!("{doctype} has no field `{field}`")))?;
        if name.contains('\0') {
            // No stored name holds a NUL character.
            return Ok(Value::Null);
        }
        let sql = query::select_one(&schema, self.dialect(), &DocRef::Name(name.to_string()), &Scope::all());
        c.bypass(true).await?;
        let row = c.fetch(&sql.text, sql.binds, &schema.all_kinds).await?.into_iter().next();
        c.bypass(false).await?;
        let value = row.and_then(|mut r| r.get_mut(col).map(std::mem::take)).unwrap_or(Value::Null);
        match value {
            Value::Str(stored) if schema.columns[col].kind.is_secret() => {
                Ok(Value::Str(self.inner.sealer.open(&stored).unwrap_or(stored)))
            }
            other => Ok(other),
        }
    }
}

/// What a hook sees of a failure of the runtime: a 500 whose message is logged.
fn internal(e: impl std::fmt::Display) -> HookError {
    HookError::Internal(e.to_string())
}

/// An email the outbox refused: a bad address is the caller's (422), the rest the runtime's.
fn email_error(e: RepoError) -> HookError {
    match e {
        RepoError::Validation(issues) => {
            HookError::invalid(issues.iter().map(|i| i.message.as_str()).collect::<Vec<_>>().join("; "))
        }
        other => internal(other),
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
            self.repo.get_value_in(&mut **tx, doctype, name, field).await.map_err(internal)
        })
    }

    fn enqueue<'a>(&'a self, job: &'a str, args: serde_json::Value) -> BoxFuture<'a, Result<String, HookError>> {
        Box::pin(async move {
            let mut tx = self.tx.lock().await;
            self.repo.inner.queue.enqueue_in(&mut tx, job, &args, Some(self.user)).await.map_err(internal)
        })
    }

    fn send_email<'a>(&'a self, email: Email) -> BoxFuture<'a, Result<String, HookError>> {
        Box::pin(async move {
            let mut tx = self.tx.lock().await;
            self.repo.queue_email_in(&mut tx, &email, self.user).await.map_err(email_error)
        })
    }
}

/// What an `after_commit` hook reaches: reads on a reader connection, jobs queued at once.
struct Committed<'r> {
    repo: &'r Repo,
    user: &'r str,
}

impl HookHost for Committed<'_> {
    fn get_value<'a>(
        &'a self,
        doctype: &'a str,
        name: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Value, HookError>> {
        Box::pin(async move {
            let mut conn = self.repo.db().reader(&DbCtx::System).await.map_err(internal)?;
            self.repo.get_value_in(&mut conn, doctype, name, field).await.map_err(internal)
        })
    }

    fn enqueue<'a>(&'a self, job: &'a str, args: serde_json::Value) -> BoxFuture<'a, Result<String, HookError>> {
        Box::pin(async move { self.repo.enqueue(job, &args, Some(self.user)).await.map_err(internal) })
    }

    fn send_email<'a>(&'a self, email: Email) -> BoxFuture<'a, Result<String, HookError>> {
        Box::pin(async move { self.repo.send_email(&email, self.user).await.map_err(email_error) })
    }
}
