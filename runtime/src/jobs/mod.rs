//! Background jobs: named async functions of the application, queued in the database (`m_job`)
//! and run by workers — inside `m start` (`M_JOB_WORKERS`, default 2) or in `m worker`
//! processes. The queue lives in the application's own database, so a hook's
//! [`HookCtx::enqueue`](crate::hooks::HookCtx::enqueue) is part of the write's transaction: the
//! job exists if and only if the write commits.
//!
//! Delivery is at least once: a job is claimed with a lease (PostgreSQL `FOR UPDATE SKIP
//! LOCKED`; SQLite's single writer), runs under the job timeout (`M_JOB_TIMEOUT_SECS`, 300 s),
//! and a failure is retried with doubling backoff until its attempts are used up, when it is
//! marked `failed` (kept, and `m job:retry` runs it again). A worker that dies leaves its jobs
//! `running` until their lease expires; another worker then runs them again. Done jobs are
//! deleted after `M_JOB_KEEP_SECS`; failed ones are kept.
//!
//! An application lists its jobs in `AppInfo::jobs`:
//!
//! ```ignore
//! pub static JOBS: &[Job] = &[Job { name: "sync_customer_name", run: |ctx, args| Box::pin(sync(ctx, args)) }];
//! ```

pub mod doc_events;
pub mod queue;
pub(crate) mod store;
mod worker;

use std::sync::Arc;

pub use queue::{EnqueueError, JobQueue, MAX_ARGS_BYTES};
pub use store::{JobInfo, JobState};
pub use worker::{Worker, WorkerConfig};

use crate::hooks::BoxFuture;
use crate::perms::Principal;
use crate::repo::{Repo, RepoError};
use crate::users::Users;

/// A job's code: it receives its context and the JSON arguments it was enqueued with.
pub type JobFn = for<'a> fn(&'a JobCtx, serde_json::Value) -> BoxFuture<'a, Result<(), JobError>>;

/// One job the application defines.
#[derive(Clone, Copy)]
pub struct Job {
    /// The name it is enqueued and labelled by (`[a-z0-9_.:-]`, at most 140 characters).
    pub name: &'static str,
    pub run: JobFn,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Why a job failed: `retry` failures are run again (until the attempts are used up); the
/// others are marked failed at once. A job that could not try at all (a dependency's circuit
/// breaker is open) asks to run again `later` without using an attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub message: String,
    pub retry: bool,
    /// Run again after this long, this attempt not counted.
    pub later: Option<std::time::Duration>,
}

impl JobError {
    /// A failure that may pass when the job runs again (a dependency was down, a conflict).
    pub fn retry(message: impl Into<String>) -> JobError {
        JobError { message: message.into(), retry: true, later: None }
    }

    /// A failure that running again cannot fix (bad arguments, a refused change).
    pub fn fatal(message: impl Into<String>) -> JobError {
        JobError { message: message.into(), retry: false, later: None }
    }

    /// The job did not try (its dependency is known to be down): queued again to run after
    /// `after`, without using an attempt.
    pub fn later(message: impl Into<String>, after: std::time::Duration) -> JobError {
        JobError { message: message.into(), retry: true, later: Some(after) }
    }
}

impl From<RepoError> for JobError {
    fn from(e: RepoError) -> Self {
        let retry = matches!(
            e,
            RepoError::Unavailable(_)
                | RepoError::Timeout
                | RepoError::Saturated
                | RepoError::Transient(_)
                | RepoError::Conflict(_)
                | RepoError::PreconditionFailed
                | RepoError::Internal(_)
        );
        let message = match &e {
            RepoError::Validation(issues) => {
                issues.iter().map(|i| format!("{}: {}", i.field, i.message)).collect::<Vec<_>>().join("; ")
            }
            other => other.to_string(),
        };
        JobError { message, retry, later: None }
    }
}

/// What a running job sees: the repository, its own id and attempt, who enqueued it.
pub struct JobCtx {
    pub(crate) repo: Repo,
    pub(crate) users: Users,
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) enqueued_by: Option<String>,
}

impl JobCtx {
    /// Document operations, with the same rules as the API; pass [`JobCtx::system`] or
    /// [`JobCtx::as_enqueuer`] as the acting principal.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// 1 on the first run, 2 on the first retry, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether a retryable failure now would be retried (attempts are left after this one).
    pub fn can_retry(&self) -> bool {
        self.attempt < self.max_attempts
    }

    /// The user whose request (or command) enqueued the job.
    pub fn enqueued_by(&self) -> Option<&str> {
        self.enqueued_by.as_deref()
    }

    /// The Administrator: the job acts for the application itself.
    pub fn system(&self) -> Principal {
        Principal::administrator()
    }

    /// The enqueuing user with their roles as they are now; a fatal error when that user no
    /// longer exists or is disabled.
    pub async fn as_enqueuer(&self) -> Result<Arc<Principal>, JobError> {
        let user = self.enqueued_by.as_deref().ok_or_else(|| JobError::fatal("the job has no enqueuing user"))?;
        self.users.principal(user).await?.ok_or_else(|| JobError::fatal(format!("user {user} is gone or disabled")))
    }

    /// Queue an email (its templates rendered now; committed at once). Returns its
    /// `Email Queue` name.
    pub async fn send_email(&self, email: &crate::email::Email) -> Result<String, JobError> {
        let user = self.enqueued_by.as_deref().unwrap_or(crate::perms::ADMINISTRATOR);
        Ok(self.repo.send_email(email, user).await?)
    }

    /// Queue another job (committed at once). Returns its id.
    pub async fn enqueue(&self, job: &str, args: serde_json::Value) -> Result<String, JobError> {
        self.repo.enqueue(job, &args, self.enqueued_by.as_deref()).await.map_err(|e| match e {
            EnqueueError::Db(e) => JobError::from(RepoError::from(e)),
            other => JobError::fatal(other.to_string()),
        })
    }
}

/// The job named `name` in a job table.
pub fn find<'j>(jobs: &'j [Job], name: &str) -> Option<&'j Job> {
    jobs.iter().find(|j| j.name == name)
}

/// A job table an application hands over is well formed: names of 1–140 of `a-z 0-9 _ . : -`,
/// none defined twice.
pub fn check_table(jobs: &[Job]) -> Result<(), String> {
    for (n, job) in jobs.iter().enumerate() {
        let well_formed = !job.name.is_empty()
            && job.name.len() <= 140
            && job.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b));
        if !well_formed {
            return Err(format!("job name `{}`: use 1–140 of a-z 0-9 _ . : -", job.name));
        }
        if job.name.starts_with("m:") {
            return Err(format!("job name `{}`: names starting with `m:` are the runtime's", job.name));
        }
        if jobs[..n].iter().any(|j| j.name == job.name) {
            return Err(format!("job `{}` is defined twice", job.name));
        }
    }
    Ok(())
}

/// The built-in job [`doc_events::JOB_NAME`]: deliver the after-commit events of one change to its DocType's hooks, in order, forgetting
/// each once delivered (an event already delivered is skipped when the job runs again).
pub(crate) async fn deliver_doc_event(ctx: &JobCtx, args: serde_json::Value) -> Result<(), JobError> {
    let ids = args
        .get("ids")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| JobError::fatal("args.ids must list event ids"))?;
    let db = ctx.repo.db();
    let user = ctx.enqueued_by().unwrap_or(crate::perms::ADMINISTRATOR);
    for id in ids.iter().filter_map(serde_json::Value::as_str) {
        let Some(event) = doc_events::load(db, id).await.map_err(RepoError::from)? else { continue };
        ctx.repo.after_commit(&event, user).await?;
        doc_events::delete(db, id).await.map_err(RepoError::from)?;
    }
    Ok(())
}
