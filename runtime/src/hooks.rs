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

use crate::db::Tx;
pub use crate::meta::BoxFuture;
use crate::repo::Repo;
use crate::value::Value;

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

/// A hook's failure. `Validation` is shown to the client (422); `Internal` is logged and the
/// client sees a 500 without the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("{message}")]
    Validation { field: Option<String>, message: String },
    #[error("hook failed: {0}")]
    Internal(String),
}

impl HookError {
    /// A 422 about one field.
    pub fn field(field: &str, message: impl Into<String>) -> HookError {
        HookError::Validation { field: Some(field.to_string()), message: message.into() }
    }

    /// A 422 about the document as a whole.
    pub fn invalid(message: impl Into<String>) -> HookError {
        HookError::Validation { field: None, message: message.into() }
    }
}

/// What a hook can see: the acting user, whether the document is new, and read access to other
/// documents — through the write's own transaction, so a hook sees the transaction's state and
/// never needs a second connection.
pub struct HookCtx<'t> {
    pub(crate) repo: Repo,
    pub(crate) user: String,
    pub(crate) is_new: bool,
    pub(crate) tx: tokio::sync::Mutex<&'t mut Tx>,
}

impl HookCtx<'_> {
    /// The acting user's `name`.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// True when the document is being created.
    pub fn is_new(&self) -> bool {
        self.is_new
    }

    /// Queue a background job in the write's transaction: it exists (and runs) only if the write
    /// commits. Returns the job's id.
    pub async fn enqueue(&self, job: &str, args: serde_json::Value) -> Result<String, HookError> {
        let mut tx = self.tx.lock().await;
        self.repo
            .enqueue_in(&mut tx, job, &args, Some(&self.user))
            .await
            .map_err(|e| HookError::Internal(e.to_string()))
    }

    /// One field of another document by DocType and `name` (Null when the document does not
    /// exist). Reads bypass the caller's row scope: hooks are application code.
    pub async fn get_value(&self, doctype: &str, name: &str, field: &str) -> Result<Value, HookError> {
        let mut tx = self.tx.lock().await;
        self.repo.get_value_in(&mut tx, doctype, name, field).await.map_err(|e| HookError::Internal(e.to_string()))
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
