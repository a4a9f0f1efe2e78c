//! What a document operation can fail with; the http module maps each variant to one status.

use crate::checks::FieldIssue;
use crate::db::DbError;
use crate::hooks::HookError;

/// Why a document operation failed. Each variant maps to one HTTP status in the http module.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    #[error("not permitted to {action} {doctype}")]
    Forbidden { doctype: String, action: &'static str },
    /// Permitted in general, but not this document or value (a 403 with the reason).
    #[error("{0}")]
    NotPermitted(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String, field: Option<String> },
    #[error("validation failed")]
    Validation(Vec<FieldIssue>),
    #[error("{message}")]
    Duplicate { message: String, field: Option<String> },
    #[error("{0}")]
    LinkExists(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the document has changed (If-Match does not match its ETag)")]
    PreconditionFailed,
    #[error("{0}")]
    Unavailable(String),
    #[error("the database did not answer within the statement timeout")]
    Timeout,
    #[error("no database connection became free in time")]
    Saturated,
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Internal(String),
}

impl From<DbError> for RepoError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(m) => RepoError::Unavailable(m),
            DbError::Timeout => RepoError::Timeout,
            DbError::Saturated => RepoError::Saturated,
            DbError::Transient(m) => RepoError::Transient(m),
            DbError::RowSecurity => {
                RepoError::NotPermitted("not permitted: the row would be outside the user's row scope".into())
            }
            other => RepoError::Internal(other.to_string()),
        }
    }
}

/// Queueing in a write's transaction: a database failure as such, the rest (an unknown job,
/// arguments too large) the runtime's own mistake.
impl From<crate::jobs::queue::EnqueueError> for RepoError {
    fn from(e: crate::jobs::queue::EnqueueError) -> Self {
        match e {
            crate::jobs::queue::EnqueueError::Db(e) => RepoError::from(e),
            other => RepoError::Internal(other.to_string()),
        }
    }
}

impl From<HookError> for RepoError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::Validation { field, message } => {
                RepoError::Validation(vec![FieldIssue::new(field.unwrap_or_default(), "hook", message)])
            }
            HookError::Internal(m) => RepoError::Internal(m),
        }
    }
}
