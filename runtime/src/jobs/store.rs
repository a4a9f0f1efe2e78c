//! The queue's statements on `m_job` (the runtime's own table: no DocType, no row scope). Every
//! value is bound; times are Unix microseconds.

use serde::Serialize;

use crate::db::DbError;
use crate::db::{Db, DbCtx, Dialect, Row};
use crate::meta::FieldType;
use crate::query::Sql;
use crate::value::Value;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 4] = [JobState::Queued, JobState::Running, JobState::Done, JobState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

pub(crate) struct NewJob<'a> {
    pub id: &'a str,
    pub job: &'a str,
    pub args: &'a str,
    pub max_attempts: u32,
    pub enqueued_by: Option<&'a str>,
    pub trace: Option<String>,
}

fn text(v: &str) -> Value {
    Value::Str(v.to_string())
}

fn opt(v: Option<&str>) -> Value {
    v.map_or(Value::Null, text)
}

pub(crate) fn insert(dialect: Dialect, j: &NewJob<'_>, now: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO m_job (id, job, args, state, attempts, max_attempts, run_at, enqueued_by, created, trace) VALUES (");
    sql.bind(FieldType::Data, text(j.id)).push(", ").bind(FieldType::Data, text(j.job)).push(", ");
    sql.bind(FieldType::Text, text(j.args)).push(", 'queued', 0, ");
    sql.bind(FieldType::BigInt, Value::Int(i64::from(j.max_attempts))).push(", ");
    sql.bind(FieldType::BigInt, Value::Int(now)).push(", ").bind(FieldType::Data, opt(j.enqueued_by)).push(", ");
    sql.bind(FieldType::BigInt, Value::Int(now)).push(", ").bind(FieldType::Data, opt(j.trace.as_deref())).push(")");
    sql
}

/// A job a worker has claimed.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub id: String,
    pub job: String,
    pub args: String,
    /// This run's attempt number (1 for the first).
    pub attempt: u32,
    pub max_attempts: u32,
    pub enqueued_by: Option<String>,
    pub trace: Option<String>,
    /// The lease this run was given (by the lease clock): with the attempt, it identifies the
    /// run.
    pub lease_until: i64,
}

const CLAIMED_KINDS: [FieldType; 8] = [
    FieldType::Data,
    FieldType::Data,
    FieldType::Text,
    FieldType::BigInt,
    FieldType::BigInt,
    FieldType::Data,
    FieldType::Data,
    FieldType::BigInt,
];

/// The clock leases are given and taken back by: PostgreSQL's own (workers on several hosts
/// then agree whatever their clocks say), or the host's for SQLite (one host by nature).
fn lease_clock(sql: &mut Sql, dialect: Dialect, now: i64) {
    match dialect {
        Dialect::Postgres => {
            sql.push("(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint");
        }
        Dialect::Sqlite => {
            sql.bind(FieldType::BigInt, Value::Int(now));
        }
    }
}

fn string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i,
        _ => 0,
    }
}

fn claimed(row: &Row) -> Claimed {
    Claimed {
        lease_until: int(row.get(7)),
        id: string(row.first()).unwrap_or_default(),
        job: string(row.get(1)).unwrap_or_default(),
        args: string(row.get(2)).unwrap_or_default(),
        attempt: u32::try_from(int(row.get(3))).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(int(row.get(4))).unwrap_or(1),
        enqueued_by: string(row.get(5)),
        trace: string(row.get(6)),
    }
}

/// `job IN (…)` over the job names this build defines (bound).
fn known(sql: &mut Sql, names: &[&str]) {
    sql.push(" AND job IN (");
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(FieldType::Data, text(n));
    }
    sql.push(")");
}

/// Take the next due job among `names` (the jobs this build defines: a job queued by a newer
/// build waits for a worker that knows it): `running`, one more attempt, leased for `lease`
/// microseconds by the lease clock. PostgreSQL skips rows other workers hold; SQLite's single
/// writer serialises claims.
pub(crate) async fn claim(db: &Db, names: &[&str], now: i64, lease: i64) -> Result<Option<Claimed>, DbError> {
    if names.is_empty() {
        return Ok(None);
    }
    let dialect = db.dialect();
    // An idle queue is seen with a read (an index probe), so idle workers never take the write
    // lock (SQLite's single writer) just to find nothing.
    let mut probe = Sql::new(dialect);
    probe.push("SELECT 1 FROM m_job WHERE state = 'queued' AND run_at <= ");
    probe.bind(FieldType::BigInt, Value::Int(now));
    known(&mut probe, names);
    probe.push(" LIMIT 1");
    if db.fetch(&DbCtx::System, &probe.text, probe.binds, &[FieldType::Int]).await?.is_empty() {
        return Ok(None);
    }
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE m_job SET state = 'running', attempts = attempts + 1, lease_until = ");
    lease_clock(&mut sql, dialect, now);
    sql.push(" + ").bind(FieldType::BigInt, Value::Int(lease));
    sql.push(" WHERE id = (SELECT id FROM m_job WHERE state = 'queued' AND run_at <= ");
    sql.bind(FieldType::BigInt, Value::Int(now));
    known(&mut sql, names);
    sql.push(" ORDER BY run_at, id LIMIT 1");
    if dialect == Dialect::Postgres {
        sql.push(" FOR UPDATE SKIP LOCKED");
    }
    sql.push(") AND state = 'queued' RETURNING id, job, args, attempts, max_attempts, enqueued_by, trace, lease_until");
    let mut tx = db.begin(&DbCtx::System).await?;
    let rows = tx.fetch(&sql.text, sql.binds, &CLAIMED_KINDS).await?;
    tx.commit().await?;
    Ok(rows.first().map(claimed))
}

/// How a run ended.
#[derive(Clone, Copy)]
pub(crate) enum Finish<'a> {
    Done,
    /// Run again at `run_at`.
    Retry {
        run_at: i64,
        error: &'a str,
    },
    Failed {
        error: &'a str,
    },
    /// Not finished (the worker is stopping): queued again, this attempt not counted.
    Release,
    /// Did not try (a dependency's breaker is open): queued again for `run_at`, this attempt not
    /// counted.
    Later {
        run_at: i64,
        error: &'a str,
    },
}

/// Record how a claimed run ended. Guarded by the run's attempt number and lease, so a run whose
/// lease expired (and whose job another worker took, or `m job:retry` queued again) changes
/// nothing.
pub(crate) async fn finish(db: &Db, job: &Claimed, how: Finish<'_>, now: i64) -> Result<bool, DbError> {
    let mut sql = Sql::new(db.dialect());
    match how {
        Finish::Done => {
            sql.push("UPDATE m_job SET state = 'done', lease_until = NULL, error = NULL, finished = ");
            sql.bind(FieldType::BigInt, Value::Int(now));
        }
        Finish::Retry { run_at, error } => {
            sql.push("UPDATE m_job SET state = 'queued', lease_until = NULL, run_at = ");
            sql.bind(FieldType::BigInt, Value::Int(run_at)).push(", error = ").bind(FieldType::Text, text(error));
        }
        Finish::Failed { error } => {
            sql.push("UPDATE m_job SET state = 'failed', lease_until = NULL, finished = ");
            sql.bind(FieldType::BigInt, Value::Int(now)).push(", error = ").bind(FieldType::Text, text(error));
        }
        Finish::Release => {
            sql.push("UPDATE m_job SET state = 'queued', lease_until = NULL, attempts = attempts - 1, run_at = ");
            sql.bind(FieldType::BigInt, Value::Int(now));
        }
        Finish::Later { run_at, error } => {
            sql.push("UPDATE m_job SET state = 'queued', lease_until = NULL, attempts = attempts - 1, run_at = ");
            sql.bind(FieldType::BigInt, Value::Int(run_at)).push(", error = ").bind(FieldType::Text, text(error));
        }
    }
    sql.push(" WHERE id = ").bind(FieldType::Data, text(&job.id));
    sql.push(" AND state = 'running' AND attempts = ").bind(FieldType::BigInt, Value::Int(i64::from(job.attempt)));
    sql.push(" AND lease_until = ").bind(FieldType::BigInt, Value::Int(job.lease_until));
    Ok(db.write(&DbCtx::System, &sql.text, sql.binds).await? == 1)
}

/// Jobs whose worker stopped answering (lease expired): queued again, or failed when their
/// attempts are used up. Returns the number of jobs taken back.
pub(crate) async fn take_back(db: &Db, now: i64) -> Result<u64, DbError> {
    let dialect = db.dialect();
    let lost = "the worker running it stopped before it finished (lease expired)";
    let mut failed = Sql::new(dialect);
    failed.push("UPDATE m_job SET state = 'failed', lease_until = NULL, finished = ");
    failed.bind(FieldType::BigInt, Value::Int(now)).push(", error = ").bind(FieldType::Text, text(lost));
    failed.push(" WHERE state = 'running' AND attempts >= max_attempts AND lease_until < ");
    lease_clock(&mut failed, dialect, now);
    let mut requeue = Sql::new(dialect);
    requeue.push("UPDATE m_job SET state = 'queued', lease_until = NULL, error = ");
    requeue.bind(FieldType::Text, text(lost)).push(", run_at = ").bind(FieldType::BigInt, Value::Int(now));
    requeue.push(" WHERE state = 'running' AND lease_until < ");
    lease_clock(&mut requeue, dialect, now);
    let mut tx = db.begin(&DbCtx::System).await?;
    let mut taken = tx.execute(&failed.text, failed.binds).await?;
    taken += tx.execute(&requeue.text, requeue.binds).await?;
    tx.commit().await?;
    Ok(taken)
}

/// Rows deleted per statement by [`sweep`], so no one statement holds the write lock long.
const SWEEP_BATCH: i64 = 1000;

/// Delete done jobs that finished before `keep_until`, a batch per transaction, at most `batches`
/// batches. Returns the number deleted.
pub(crate) async fn sweep(db: &Db, keep_until: i64, batches: u32) -> Result<u64, DbError> {
    let mut deleted = 0;
    for _ in 0..batches {
        let mut sql = Sql::new(db.dialect());
        sql.push("DELETE FROM m_job WHERE id IN (SELECT id FROM m_job WHERE state = 'done' AND finished < ");
        sql.bind(FieldType::BigInt, Value::Int(keep_until)).push(" LIMIT ");
        sql.bind(FieldType::BigInt, Value::Int(SWEEP_BATCH)).push(")");
        let n = db.write(&DbCtx::System, &sql.text, sql.binds).await?;
        deleted += n;
        if n < SWEEP_BATCH.unsigned_abs() {
            break;
        }
    }
    Ok(deleted)
}

/// Jobs waiting, running and failed (done ones are not counted: there can be many, and the
/// outcome counter tells how many finished).
pub(crate) async fn counts(db: &Db) -> Result<Vec<(JobState, i64)>, DbError> {
    let rows = db
        .fetch(
            &DbCtx::System,
            "SELECT state, COUNT(*) FROM m_job WHERE state IN ('queued', 'running', 'failed') GROUP BY state",
            Vec::new(),
            &[FieldType::Data, FieldType::BigInt],
        )
        .await?;
    Ok([JobState::Queued, JobState::Running, JobState::Failed]
        .into_iter()
        .map(|s| {
            let n = rows
                .iter()
                .find(|r| r.first().and_then(Value::as_str) == Some(s.as_str()))
                .map_or(0, |r| int(r.get(1)));
            (s, n)
        })
        .collect())
}

/// One job as `m job:list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub job: String,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub args: serde_json::Value,
    pub enqueued_by: Option<String>,
    /// Unix microseconds.
    pub created: i64,
    pub run_at: i64,
    pub finished: Option<i64>,
    pub error: Option<String>,
}

/// The newest `limit` jobs, optionally in one state.
pub(crate) async fn list(db: &Db, state: Option<JobState>, limit: u32) -> Result<Vec<JobInfo>, DbError> {
    let mut sql = Sql::new(db.dialect());
    sql.push(
        "SELECT id, job, state, attempts, max_attempts, args, enqueued_by, created, run_at, finished, error FROM m_job",
    );
    if let Some(s) = state {
        sql.push(" WHERE state = ").bind(FieldType::Data, text(s.as_str()));
    }
    sql.push(" ORDER BY created DESC, id DESC LIMIT ").bind(FieldType::BigInt, Value::Int(i64::from(limit)));
    let kinds = [
        FieldType::Data,
        FieldType::Data,
        FieldType::Data,
        FieldType::BigInt,
        FieldType::BigInt,
        FieldType::Text,
        FieldType::Data,
        FieldType::BigInt,
        FieldType::BigInt,
        FieldType::BigInt,
        FieldType::Text,
    ];
    let rows = db.fetch(&DbCtx::System, &sql.text, sql.binds, &kinds).await?;
    Ok(rows
        .iter()
        .map(|r| JobInfo {
            id: string(r.first()).unwrap_or_default(),
            job: string(r.get(1)).unwrap_or_default(),
            state: string(r.get(2)).unwrap_or_default(),
            attempts: int(r.get(3)),
            max_attempts: int(r.get(4)),
            args: string(r.get(5)).and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_default(),
            enqueued_by: string(r.get(6)),
            created: int(r.get(7)),
            run_at: int(r.get(8)),
            finished: match r.get(9) {
                Some(Value::Int(i)) => Some(*i),
                _ => None,
            },
            error: string(r.get(10)),
        })
        .collect())
}

/// A failed job queued again with fresh attempts. False when no failed job has that id.
pub(crate) async fn retry(db: &Db, id: &str, now: i64) -> Result<bool, DbError> {
    let mut sql = Sql::new(db.dialect());
    sql.push("UPDATE m_job SET state = 'queued', attempts = 0, finished = NULL, run_at = ");
    sql.bind(FieldType::BigInt, Value::Int(now)).push(" WHERE id = ").bind(FieldType::Data, text(id));
    sql.push(" AND state = 'failed'");
    Ok(db.write(&DbCtx::System, &sql.text, sql.binds).await? == 1)
}

/// Delete a queued or failed job (one no worker will run, or that is not wanted). False when no
/// such job is queued or failed.
pub(crate) async fn delete(db: &Db, id: &str) -> Result<bool, DbError> {
    let mut sql = Sql::new(db.dialect());
    sql.push("DELETE FROM m_job WHERE id = ").bind(FieldType::Data, text(id));
    sql.push(" AND state IN ('queued', 'failed')");
    Ok(db.write(&DbCtx::System, &sql.text, sql.binds).await? == 1)
}
