//! A hook's failure, also what converting a document to its typed struct fails with (below the
//! document types, which return it).

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
