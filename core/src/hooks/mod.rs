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
use crate::value::Value;

/// A boxed future, the return type of hook functions and [`HookHost`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The per-DocType hook entry point the derive macro generates when hooks exist; the
/// application's DocType table registers it with the DocType's metadata.
pub type HookFn = for<'a, 't> fn(HookEvent, &'a mut Doc, &'a HookCtx<'t>) -> BoxFuture<'a, Result<(), HookError>>;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    Validate,
    BeforeSave,
    AfterSave,
    BeforeDelete,
    OnSubmit,
    OnCancel,
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
    }
}
