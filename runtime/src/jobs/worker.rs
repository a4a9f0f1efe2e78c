//! The worker loop: claim due jobs while a slot is free, run each on its own task under the job
//! timeout, record the outcome; every few seconds take back jobs whose worker died and sweep
//! old done ones. On stop, no new job is claimed and running ones get the shutdown
//! deadline; those still running then are queued again (their attempt not counted).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::queue::now_us;
use super::store::{self, Claimed, Finish};
use super::{Job, JobCtx, JobError};
use crate::config::Config;
use crate::repo::Repo;
use crate::users::Users;

/// How workers run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once.
    pub concurrency: usize,
    pub timeout: Duration,
    /// Wait before the first retry (doubled per retry, at most an hour).
    pub backoff: Duration,
    /// How long done jobs are kept.
    pub keep: Duration,
    /// How often the queue is checked when nothing wakes the worker.
    pub poll: Duration,
    /// How often expired leases and old jobs are looked for.
    pub maintain_every: Duration,
    /// Versions older than this are deleted (None: kept).
    pub version_keep: Option<Duration>,
}

impl WorkerConfig {
    pub fn from_config(config: &Config) -> WorkerConfig {
        WorkerConfig {
            concurrency: config.job_workers,
            timeout: Duration::from_secs(config.job_timeout_secs),
            backoff: Duration::from_secs(config.job_backoff_secs),
            keep: Duration::from_secs(config.job_keep_secs),
            poll: Duration::from_secs(1),
            maintain_every: Duration::from_secs(15),
            version_keep: (config.version_keep_days > 0)
                .then(|| Duration::from_secs(config.version_keep_days.saturating_mul(24 * 3600))),
        }
    }

    /// A running job's lease: the job timeout plus a margin for recording the outcome.
    fn lease(&self) -> Duration {
        self.timeout.saturating_add(Duration::from_secs(30))
    }

    /// The wait before attempt `attempt + 1`.
    fn backoff_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(Duration::from_secs(3600))
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Runs jobs from the queue until stopped.
pub struct Worker {
    ctx: Services,
    config: WorkerConfig,
}

/// What a worker's jobs run with: the document and user services and the job table.
#[derive(Clone)]
struct Services {
    repo: Repo,
    users: Users,
    jobs: Arc<[Job]>,
}

/// Jobs this worker is running, by id (released when the worker stops before they finish).
type Running = Arc<Mutex<HashMap<String, Claimed>>>;

impl Worker {
    pub fn new(repo: Repo, users: Users, jobs: Arc<[Job]>, config: WorkerConfig) -> Worker {
        Worker { ctx: Services { repo, users, jobs }, config }
    }

    /// Run until `stop` completes; then let running jobs finish within `deadline`.
    pub async fn run_until(self, stop: impl Future<Output = ()>, deadline: Duration) {
        let config = Arc::new(self.config);
        let names: Vec<&'static str> = self.ctx.jobs.iter().map(|j| j.name).collect();
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let running: Running = Arc::default();
        let mut tasks = JoinSet::new();
        let mut maintenance = tokio::time::interval(config.maintain_every);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut queue_failing = false;
        let mut maintenance_failing = false;
        tokio::pin!(stop);
        tracing::info!(concurrency = config.concurrency, jobs = names.len(), "job worker started");
        loop {
            while tasks.try_join_next().is_some() {}
            // Wait for a free slot; maintenance goes on while every slot is busy.
            let slot = tokio::select! {
                biased;
                () = &mut stop => break,
                _ = maintenance.tick() => {
                    crate::db::quietly(maintain(&self.ctx.repo, &config, &mut maintenance_failing)).await;
                    continue;
                }
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let now = now_us();
            match crate::db::quietly(store::claim(self.ctx.repo.db(), &names, now, micros(config.lease()))).await {
                Ok(Some(job)) => {
                    queue_failing = false;
                    if let Ok(mut r) = running.lock() {
                        r.insert(job.id.clone(), job.clone());
                    }
                    let (ctx, config, running) = (self.ctx.clone(), config.clone(), running.clone());
                    tasks.spawn(async move {
                        run_one(&ctx, &config, &job).await;
                        if let Ok(mut r) = running.lock() {
                            r.remove(&job.id);
                        }
                        drop(slot);
                    });
                    continue;
                }
                Ok(None) => queue_failing = false,
                Err(e) => {
                    // Logged once per outage, not once per poll.
                    if !queue_failing {
                        tracing::warn!(error = %e, "cannot read the job queue; retrying");
                    }
                    queue_failing = true;
                }
            }
            drop(slot);
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = self.ctx.repo.jobs().wake().notified() => {}
                () = tokio::time::sleep(config.poll) => {}
            }
        }
        if !tasks.is_empty() {
            tracing::info!(jobs = tasks.len(), "job worker stopping: waiting for running jobs");
        }
        if tokio::time::timeout(deadline, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
            // A job runs inside its task: aborting the task drops the job's future, so once the
            // tasks are joined no job of this worker is still running.
            // A job that blocks its thread instead of awaiting cannot be stopped; it is released
            // after a second anyway (the attempt and lease guard any late outcome).
            tasks.abort_all();
            let _ = tokio::time::timeout(Duration::from_secs(1), async { while tasks.join_next().await.is_some() {} })
                .await;
            let left: Vec<Claimed> =
                running.lock().map(|mut r| r.drain().map(|(_, j)| j).collect()).unwrap_or_default();
            for job in left {
                let _ = store::finish(self.ctx.repo.db(), &job, Finish::Release, now_us()).await;
                tracing::warn!(job = %job.job, id = %job.id, "job stopped by the shutdown deadline: queued again");
            }
        }
        tracing::info!("job worker stopped");
    }
}

/// Take back jobs whose worker died, then delete old done jobs. Failures are logged once until
/// maintenance works again.
async fn maintain(repo: &Repo, config: &WorkerConfig, failing: &mut bool) {
    let now = now_us();
    let result = async {
        let taken = store::take_back(repo.db(), now).await?;
        if taken > 0 {
            tracing::warn!(jobs = taken, "took back jobs whose worker stopped answering");
        }
        store::sweep(repo.db(), now.saturating_sub(micros(config.keep)), 10).await?;
        if let Some(keep) = config.version_keep {
            let before = chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
            let deleted = repo.sweep_versions(before, 10).await?;
            if deleted > 0 {
                tracing::info!(versions = deleted, "deleted versions past M_VERSION_KEEP_DAYS");
            }
        }
        Ok::<(), crate::db::DbError>(())
    }
    .await;
    match result {
        Ok(_) => *failing = false,
        Err(e) => {
            if !*failing {
                tracing::warn!(error = %e, "job queue maintenance failed; retrying");
            }
            *failing = true;
        }
    }
}

/// Run one claimed job and record its outcome.
async fn run_one(services: &Services, config: &WorkerConfig, job: &Claimed) {
    let repo = &services.repo;
    use futures_util::FutureExt as _;
    let started = Instant::now();
    let def = super::find(&services.jobs, &job.job).copied();
    let label = def.map_or("unknown", |d| d.name);
    let span = job_span(job, label);
    let outcome = match def {
        None => Err(JobError::fatal(format!("no job named `{}` in this build", job.job))),
        Some(def) => match serde_json::from_str::<serde_json::Value>(&job.args) {
            Err(e) => Err(JobError::fatal(format!("arguments are not JSON: {e}"))),
            Ok(args) => {
                let ctx = JobCtx {
                    repo: repo.clone(),
                    users: services.users.clone(),
                    id: job.id.clone(),
                    attempt: job.attempt,
                    max_attempts: job.max_attempts,
                    enqueued_by: job.enqueued_by.clone(),
                };
                // The job runs in this task (not a task of its own), so a timeout or an abort
                // drops its future at once: nothing of it runs after the outcome is recorded.
                let run = (def.run)(&ctx, args).instrument(span.clone());
                match tokio::time::timeout(config.timeout, std::panic::AssertUnwindSafe(run).catch_unwind()).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err(JobError::retry("the job panicked")),
                    Err(_) => {
                        Err(JobError::retry(format!("ran past the job timeout ({} s)", config.timeout.as_secs())))
                    }
                }
            }
        },
    };
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let now = now_us();
    let (how, outcome_label) = match &outcome {
        Ok(()) => (Finish::Done, "done"),
        Err(JobError { later: Some(after), message, .. }) => {
            (Finish::Later { run_at: now.saturating_add(micros(*after)), error: message }, "deferred")
        }
        Err(e) if e.retry && job.attempt < job.max_attempts => {
            let run_at = now.saturating_add(micros(config.backoff_after(job.attempt)));
            (Finish::Retry { run_at, error: &e.message }, "retry")
        }
        Err(e) => (Finish::Failed { error: &e.message }, "failed"),
    };
    crate::metrics::job_finished(label, outcome_label, elapsed);
    span.in_scope(|| match &outcome {
        Ok(()) => tracing::info!(job = label, id = %job.id, attempt = job.attempt, duration_ms, "job done"),
        Err(e) => tracing::warn!(
            job = label, id = %job.id, attempt = job.attempt, max_attempts = job.max_attempts,
            duration_ms, outcome = outcome_label, error = %e.message, "job failed"
        ),
    });
    // The outcome is recorded even through a short database outage; when it cannot be, the
    // lease expires and the job runs again (at least once).
    for wait in [0u64, 200, 1000, 5000] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        match store::finish(repo.db(), job, how, now).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(job = label, id = %job.id, "job outcome not recorded: its lease had expired and it was taken back");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "recording a job's outcome failed; trying again"),
        }
    }
    tracing::error!(job = label, id = %job.id, "could not record the job's outcome: it will run again after its lease");
}

/// The job's trace span, continuing the trace of the request that enqueued it.
fn job_span(job: &Claimed, label: &'static str) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::trace_span!(
        target: crate::telemetry::TARGET,
        "job",
        otel.name = %format!("job {label}"),
        otel.kind = "consumer",
        job.name = label,
        job.id = %job.id,
        job.attempt = job.attempt,
    );
    if !span.is_disabled()
        && let Some(tp) = &job.trace
    {
        let carrier: HashMap<String, String> = HashMap::from([("traceparent".to_string(), tp.clone())]);
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let _ = span.set_parent(parent);
    }
    span
}
