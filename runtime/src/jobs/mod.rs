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

pub mod cli;
mod store;
mod worker;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use store::{JobInfo, JobState};
pub use worker::{Worker, WorkerConfig};

use crate::meta::BoxFuture;
use crate::perms::Principal;
use crate::repo::{Repo, RepoError};

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
/// others are marked failed at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub message: String,
    pub retry: bool,
}

impl JobError {
    /// A failure that may pass when the job runs again (a dependency was down, a conflict).
    pub fn retry(message: impl Into<String>) -> JobError {
        JobError { message: message.into(), retry: true }
    }

    /// A failure that running again cannot fix (bad arguments, a refused change).
    pub fn fatal(message: impl Into<String>) -> JobError {
        JobError { message: message.into(), retry: false }
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
        JobError { message, retry }
    }
}

/// Enqueueing refused: no such job, arguments too large, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("no job named `{0}` in this application")]
    Unknown(String),
    #[error("job arguments are limited to {MAX_ARGS_BYTES} bytes of JSON")]
    TooLarge,
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Largest JSON arguments accepted.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;

/// What a running job sees: the repository, its own id and attempt, who enqueued it.
pub struct JobCtx {
    pub(crate) repo: Repo,
    pub(crate) id: String,
    pub(crate) attempt: u32,
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
        self.repo.principal(user).await?.ok_or_else(|| JobError::fatal(format!("user {user} is gone or disabled")))
    }

    /// Queue another job (committed at once). Returns its id.
    pub async fn enqueue(&self, job: &str, args: serde_json::Value) -> Result<String, JobError> {
        self.repo.enqueue(job, &args, self.enqueued_by.as_deref()).await.map_err(|e| match e {
            EnqueueError::Repo(r) => JobError::from(r),
            other => JobError::fatal(other.to_string()),
        })
    }
}

/// Now, in Unix microseconds (the queue's clock).
pub(crate) fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The W3C traceparent of the current span, when tracing is on.
fn current_traceparent() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&span.context(), &mut carrier));
    carrier.remove("traceparent")
}

impl Repo {
    /// Queue `job` with `args`, committed at once (outside any write). Returns the job's id.
    pub async fn enqueue(
        &self,
        job: &str,
        args: &serde_json::Value,
        enqueued_by: Option<&str>,
    ) -> Result<String, EnqueueError> {
        let (id, sql) = self.enqueue_statement(job, args, enqueued_by)?;
        self.db().write(&crate::db::DbCtx::System, &sql.text, sql.binds).await.map_err(RepoError::from)?;
        self.jobs_wake().notify_one();
        Ok(id)
    }

    /// Queue `job` inside the transaction `tx` (a hook's write): it exists only if `tx` commits.
    pub(crate) async fn enqueue_in(
        &self,
        tx: &mut crate::db::Tx,
        job: &str,
        args: &serde_json::Value,
        enqueued_by: Option<&str>,
    ) -> Result<String, EnqueueError> {
        let (id, sql) = self.enqueue_statement(job, args, enqueued_by)?;
        tx.execute(&sql.text, sql.binds).await.map_err(RepoError::from)?;
        tx.wake_on_commit(self.jobs_wake().clone());
        Ok(id)
    }

    fn enqueue_statement(
        &self,
        job: &str,
        args: &serde_json::Value,
        enqueued_by: Option<&str>,
    ) -> Result<(String, crate::query::Sql), EnqueueError> {
        let def = self.app().job(job).ok_or_else(|| EnqueueError::Unknown(job.to_string()))?;
        let args = serde_json::to_string(args).map_err(|e| EnqueueError::Repo(RepoError::Internal(e.to_string())))?;
        if args.len() > MAX_ARGS_BYTES {
            return Err(EnqueueError::TooLarge);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let new = store::NewJob {
            id: &id,
            job: def.name,
            args: &args,
            max_attempts: self.job_attempts(),
            enqueued_by,
            trace: current_traceparent(),
        };
        Ok((id.clone(), store::insert(self.db().dialect(), &new, now_us())))
    }

    /// The newest `limit` jobs, optionally in one state (`m job:list`).
    pub async fn job_list(&self, state: Option<JobState>, limit: u32) -> Result<Vec<JobInfo>, RepoError> {
        store::list(self.db(), state, limit).await
    }

    /// Jobs by state, for the metrics and `m job:list`.
    pub async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, RepoError> {
        store::counts(self.db()).await
    }
}
