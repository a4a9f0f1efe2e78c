//! The queue as writers see it: put a job on it, in a write's transaction (it exists only if the
//! write commits) or on its own. Known job names, the attempts a new job gets and the wake-up of
//! this process's workers live here, below the document service that queues from hooks.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::store::{self, JobInfo, JobState};
use crate::db::{Db, DbCtx, DbError, Tx};
use crate::query::Sql;

/// Largest JSON arguments accepted.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;

/// Enqueueing refused: no such job, arguments too large, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("no job named `{0}` in this application")]
    Unknown(String),
    #[error("job arguments are limited to {MAX_ARGS_BYTES} bytes of JSON")]
    TooLarge,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The job queue of one application and database.
#[derive(Clone)]
pub struct JobQueue {
    db: Db,
    names: Arc<[&'static str]>,
    /// Attempts a newly queued job gets (`M_JOB_ATTEMPTS`).
    attempts: u32,
    /// Wakes this process's workers when a job is queued.
    wake: Arc<Notify>,
}

impl JobQueue {
    pub fn new(db: Db, names: Vec<&'static str>, attempts: u32) -> JobQueue {
        JobQueue { db, names: names.into(), attempts: attempts.max(1), wake: Arc::new(Notify::new()) }
    }

    pub(crate) fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Queue `job` with `args`, committed at once (outside any write). Returns the job's id.
    pub async fn enqueue(
        &self,
        job: &str,
        args: &serde_json::Value,
        enqueued_by: Option<&str>,
    ) -> Result<String, EnqueueError> {
        let (id, sql) = self.statement(job, args, enqueued_by)?;
        self.db.write(&DbCtx::System, &sql.text, sql.binds).await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Queue `job` inside the transaction `tx` (a hook's write): it exists only if `tx` commits.
    pub(crate) async fn enqueue_in(
        &self,
        tx: &mut Tx,
        job: &str,
        args: &serde_json::Value,
        enqueued_by: Option<&str>,
    ) -> Result<String, EnqueueError> {
        let (id, sql) = self.statement(job, args, enqueued_by)?;
        tx.execute(&sql.text, sql.binds).await?;
        tx.wake_on_commit(self.wake.clone());
        Ok(id)
    }

    fn statement(
        &self,
        job: &str,
        args: &serde_json::Value,
        enqueued_by: Option<&str>,
    ) -> Result<(String, Sql), EnqueueError> {
        let name = self.names.iter().find(|n| **n == job).ok_or_else(|| EnqueueError::Unknown(job.to_string()))?;
        let args = serde_json::to_string(args).map_err(|e| EnqueueError::Db(DbError::Other(e.to_string())))?;
        if args.len() > MAX_ARGS_BYTES {
            return Err(EnqueueError::TooLarge);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let new = store::NewJob {
            id: &id,
            job: name,
            args: &args,
            max_attempts: self.attempts,
            enqueued_by,
            trace: current_traceparent(),
        };
        Ok((id.clone(), store::insert(self.db.dialect(), &new, now_us())))
    }

    /// The newest `limit` jobs, optionally in one state (`m job:list`).
    pub async fn list(&self, state: Option<JobState>, limit: u32) -> Result<Vec<JobInfo>, DbError> {
        store::list(&self.db, state, limit).await
    }

    /// Jobs by state, for the metrics and `m job:list`.
    pub async fn counts(&self) -> Result<Vec<(JobState, i64)>, DbError> {
        store::counts(&self.db).await
    }

    /// Queue a failed job again with fresh attempts; false when no failed job has that id.
    pub async fn retry(&self, id: &str) -> Result<bool, DbError> {
        store::retry(&self.db, id, now_us()).await
    }

    /// Delete a queued or failed job; false when no such job has that id.
    pub async fn delete(&self, id: &str) -> Result<bool, DbError> {
        store::delete(&self.db, id).await
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
