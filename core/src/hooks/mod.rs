//! Hand-written behaviour per DocType. An application implements [`Hooks`] for a generated struct
//! in `src/hooks/<table>.rs`; the build finds the file and the runtime calls the hooks around
//! every write.
//!
//! Every hook runs inside the write transaction. `validate` and `before_save` run after Links are
//! resolved and before the value checks and the write (on create, update and submit);
//! `after_save`, `on_submit` and `on_cancel` run after the change, so an error from them rolls it
//! back; `before_delete` runs before the delete and can refuse it. Hooks read other documents
//! through [`HookCtx`], in the same transaction.

use std::future::Future;
use std::pin::Pin;

pub mod error;

pub use error::HookError;

use crate::doc::Doc;
use crate::email::Email;
use crate::value::Value;

/// A boxed future, the return type of hook functions and [`HookHost`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The per-DocType hook entry point the derive macro generates when hooks exist; the
/// application's DocType table registers it with the DocType's metadata.
pub type HookFn = for<'a, 't> fn(HookEvent, &'a mut Doc, &'a HookCtx<'t>) -> BoxFuture<'a, Result<(), HookError>>;

/// A DocType's hooks as the application registers them: the entry point, and whether they want
/// to be told about committed changes ([`Hooks::AFTER_COMMIT`]).
#[derive(Clone, Copy)]
pub struct HookEntry {
    pub run: HookFn,
    pub after_commit: bool,
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    Validate,
    BeforeSave,
    AfterSave,
    BeforeDelete,
    OnSubmit,
    OnCancel,
    /// After the change that caused it committed (run by a job; see [`Hooks::after_commit`]).
    Committed(DocEvent),
}

/// An event after a change committed (Frappe's names): what webhooks and
/// [`Hooks::after_commit`] are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocEvent {
    /// A document was created (followed by `OnUpdate`, as in Frappe).
    AfterInsert,
    /// A document was saved: created or changed.
    OnUpdate,
    OnSubmit,
    OnCancel,
    /// A document was deleted.
    OnTrash,
}

impl DocEvent {
    pub const ALL: [DocEvent; 5] =
        [DocEvent::AfterInsert, DocEvent::OnUpdate, DocEvent::OnSubmit, DocEvent::OnCancel, DocEvent::OnTrash];

    pub fn as_str(self) -> &'static str {
        match self {
            DocEvent::AfterInsert => "after_insert",
            DocEvent::OnUpdate => "on_update",
            DocEvent::OnSubmit => "on_submit",
            DocEvent::OnCancel => "on_cancel",
            DocEvent::OnTrash => "on_trash",
        }
    }

    pub fn parse(s: &str) -> Option<DocEvent> {
        DocEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// What hooks reach the runtime through: reads of other documents and the job queue, inside the
/// write's transaction. The document service implements it; hooks never see the service itself.
pub trait HookHost: Send + Sync {
    /// One field of a document by DocType and `name` (Null when it does not exist).
    fn get_value<'a>(
        &'a self,
        doctype: &'a str,
        name: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Value, HookError>>;
    /// Queue a job in the write's transaction; returns its id.
    fn enqueue<'a>(&'a self, job: &'a str, args: serde_json::Value) -> BoxFuture<'a, Result<String, HookError>>;
    /// Queue an email in the write's transaction; returns its `Email Queue` name.
    fn send_email<'a>(&'a self, email: Email) -> BoxFuture<'a, Result<String, HookError>>;
}

/// What a hook can see: the acting user, whether the document is new, and read access to other
/// documents — through the write's own transaction, so a hook sees the transaction's state and
/// never needs a second connection.
pub struct HookCtx<'t> {
    host: &'t dyn HookHost,
    user: &'t str,
    is_new: bool,
}

impl<'t> HookCtx<'t> {
    /// A context for one hook call (the document service makes it).
    pub fn new(host: &'t dyn HookHost, user: &'t str, is_new: bool) -> HookCtx<'t> {
        HookCtx { host, user, is_new }
    }

    /// The acting user's `name`.
    pub fn user(&self) -> &str {
        self.user
    }

    /// True when the document is being created.
    pub fn is_new(&self) -> bool {
        self.is_new
    }

    /// Queue a background job in the write's transaction: it exists (and runs) only if the write
    /// commits. Returns the job's id.
    pub async fn enqueue(&self, job: &str, args: serde_json::Value) -> Result<String, HookError> {
        self.host.enqueue(job, args).await
    }

    /// Queue an email (its templates rendered now) in the write's transaction: it is sent only
    /// if the write commits. Returns its `Email Queue` name.
    pub async fn send_email(&self, email: Email) -> Result<String, HookError> {
        self.host.send_email(email).await
    }

    /// One field of another document by DocType and `name` (Null when the document does not
    /// exist). Reads bypass the caller's row scope: hooks are application code.
    pub async fn get_value(&self, doctype: &str, name: &str, field: &str) -> Result<Value, HookError> {
        self.host.get_value(doctype, name, field).await
    }
}

/// Hooks of one DocType; every method has a no-op default.
pub trait Hooks: Send {
    fn validate(&mut self, _ctx: &HookCtx<'_>) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }
    fn before_save(&mut self, _ctx: &HookCtx<'_>) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }
    fn after_save(&mut self, _ctx: &HookCtx<'_>) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }
    fn before_delete(&mut self, _ctx: &HookCtx<'_>) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }
    fn on_submit(&mut self, _ctx: &HookCtx<'_>) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }
    fn on_cancel(&mut self, _ctx: &HookCtx<'_>) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }

    /// Set to `true` to be told about committed changes through [`Hooks::after_commit`]: the
    /// runtime then records each event in the change's transaction (so it exists exactly when the
    /// change commits) and a job delivers it, at least once.
    const AFTER_COMMIT: bool = false;

    /// After a change committed, outside its transaction: `self` is the document as it was
    /// committed (Password fields empty), `ctx` reads and queues with committed effect, and what
    /// the hook changes in `self` is not saved. An error is retried like a job's.
    fn after_commit(
        &mut self,
        _event: DocEvent,
        _ctx: &HookCtx<'_>,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }
}

/// Call the hook for `event`; used by the derive macro's generated hook function.
pub async fn dispatch<T: Hooks>(this: &mut T, event: HookEvent, ctx: &HookCtx<'_>) -> Result<(), HookError> {
    match event {
        HookEvent::Validate => this.validate(ctx).await,
        HookEvent::BeforeSave => this.before_save(ctx).await,
        HookEvent::AfterSave => this.after_save(ctx).await,
        HookEvent::BeforeDelete => this.before_delete(ctx).await,
        HookEvent::OnSubmit => this.on_submit(ctx).await,
        HookEvent::OnCancel => this.on_cancel(ctx).await,
        HookEvent::Committed(e) => this.after_commit(e, ctx).await,
    }
}
