//! SQLite: WAL, one writer connection (writes take it and run `BEGIN IMMEDIATE`, so they never
//! fail with SQLITE_BUSY on upgrade) and a small pool of read-only readers.
//!
//! Storage forms: Decimal and Currency as exact decimal text, dates and times as ISO text
//! (date-times fixed-width UTC, so text order is time order), Check as 0/1, UUID and JSON as text.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, Pool, RecycleResult};
use rust_decimal::Decimal;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, ConnectOptions, Row as _};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::Instrument as _;

use super::{Binds, DbError, PoolConfig, Row};
use crate::meta::FieldType;
use crate::value::{Value, parse_datetime, sqlite_datetime};

pub struct LiteConn {
    conn: SqliteConnection,
    busy: bool,
    in_tx: bool,
    /// When the running statement must stop, in milliseconds since `EPOCH` (0: no statement).
    deadline: Arc<AtomicU64>,
    timeout: Duration,
    slow: Duration,
    /// What the current checkout's statements are counted under.
    labels: super::Labels,
}

/// The reference point of statement deadlines.
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ms() -> u64 {
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl LiteConn {
    /// Wrap a connection; SQLite interrupts any statement that runs past `timeout` (checked
    /// every few thousand virtual-machine steps).
    async fn new(mut conn: SqliteConnection, timeout: Duration, slow: Duration) -> Result<LiteConn, sqlx::Error> {
        let deadline = Arc::new(AtomicU64::new(0));
        let watch = deadline.clone();
        conn.lock_handle().await?.set_progress_handler(4000, move || {
            let d = watch.load(Ordering::Relaxed);
            d == 0 || now_ms() < d
        });
        Ok(LiteConn { conn, busy: false, in_tx: false, deadline, timeout, slow, labels: super::Labels::INTERNAL })
    }

    /// Start the statement's clock — unless a statement abandoned mid-flight (its caller gone)
    /// still holds one: the statements queued behind it keep that deadline.
    fn arm(&self) {
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let _ =
            self.deadline.compare_exchange(0, now_ms().saturating_add(ms.max(1)), Ordering::Relaxed, Ordering::Relaxed);
    }

    fn disarm(&self) {
        self.deadline.store(0, Ordering::Relaxed);
    }

    async fn fetch(&mut self, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        self.statement(sql, binds, Some(kinds)).await.map(|(rows, _)| rows)
    }

    async fn execute(&mut self, sql: &str, binds: Binds) -> Result<u64, DbError> {
        self.statement(sql, binds, None).await.map(|(_, n)| n)
    }

    /// Run one statement under the statement timeout: its rows decoded as `kinds`, or (without
    /// kinds) the rows it changed.
    async fn statement(
        &mut self,
        sql: &str,
        binds: Binds,
        kinds: Option<&[FieldType]>,
    ) -> Result<(Vec<Row>, u64), DbError> {
        let query = sqlx::query_with(sql, bind_all(binds)?);
        self.busy = true;
        self.arm();
        let started = Instant::now();
        let span = super::query_span("sqlite", sql);
        // Only a future dropped mid-statement leaves `busy` set; an error answer is a clean end.
        let done = match kinds {
            Some(_) => query.fetch_all(&mut self.conn).instrument(span).await.map(|rows| (rows, 0)),
            None => query.execute(&mut self.conn).instrument(span).await.map(|d| (Vec::new(), d.rows_affected())),
        };
        self.disarm();
        self.busy = false;
        super::log_statement(sql, started.elapsed(), self.slow, self.labels);
        let (rows, changed) = done?;
        let kinds = kinds.unwrap_or_default();
        Ok((rows.iter().map(|r| decode_row(r, kinds)).collect::<Result<_, _>>()?, changed))
    }

    /// Undo what a dropped transaction or a cancelled statement left behind.
    async fn reset(&mut self) -> Result<(), DbError> {
        if self.busy || self.in_tx {
            // Not in a transaction is fine: ROLLBACK then fails harmlessly.
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            self.busy = false;
            self.in_tx = false;
        }
        Ok(())
    }
}

pub struct ReaderManager {
    options: SqliteConnectOptions,
    statement_timeout: Duration,
    slow: Duration,
}

impl managed::Manager for ReaderManager {
    type Type = LiteConn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<LiteConn, sqlx::Error> {
        LiteConn::new(self.options.connect().await?, self.statement_timeout, self.slow).await
    }

    async fn recycle(&self, c: &mut LiteConn, _: &Metrics) -> RecycleResult<sqlx::Error> {
        super::reset_for_reuse(c.busy, &mut c.in_tx, || sqlx::query("ROLLBACK").execute(&mut c.conn)).await
    }
}

#[derive(Clone)]
pub struct SqliteDb {
    writer: Arc<Mutex<LiteConn>>,
    readers: Pool<ReaderManager>,
    acquire_timeout: Duration,
}

impl SqliteDb {
    pub async fn open(path: &str, config: &PoolConfig) -> Result<SqliteDb, DbError> {
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let base = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| DbError::Other(format!("invalid DATABASE_URL: {e}")))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .disable_statement_logging();
        let writer = base.clone().create_if_missing(true).connect().await?;
        let readers = Pool::builder(ReaderManager {
            options: base.read_only(true),
            statement_timeout: config.statement_timeout,
            slow: config.slow_statement,
        })
        .max_size(config.sqlite_readers.max(1))
        .wait_timeout(Some(config.acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Other(e.to_string()))?;
        Ok(SqliteDb {
            writer: Arc::new(Mutex::new(LiteConn::new(writer, config.statement_timeout, config.slow_statement).await?)),
            readers,
            acquire_timeout: config.acquire_timeout,
        })
    }

    pub fn pool_status(&self) -> (usize, usize) {
        let st = self.readers.status();
        let writer_busy = usize::from(self.writer.try_lock().is_err());
        (st.size.saturating_sub(st.available) + writer_busy, st.available + 1 - writer_busy)
    }

    /// A reader whose statements are counted under `labels`.
    pub async fn reader(&self, labels: super::Labels) -> Result<ReaderGuard, DbError> {
        let mut reader = self.readers.get().await.map(ReaderGuard).map_err(|e| match e {
            managed::PoolError::Backend(b) => DbError::from(b),
            managed::PoolError::Timeout(managed::TimeoutType::Wait) => DbError::Saturated,
            other => DbError::Unavailable(other.to_string()),
        })?;
        reader.0.labels = labels;
        Ok(reader)
    }

    /// The writer, whose statements are counted under `labels`.
    pub async fn writer(&self, labels: super::Labels) -> Result<WriterGuard, DbError> {
        let guard = tokio::time::timeout(self.acquire_timeout, self.writer.clone().lock_owned())
            .await
            .map_err(|_| DbError::Saturated)?;
        let mut w = WriterGuard(guard);
        w.0.labels = labels;
        w.0.reset().await?;
        Ok(w)
    }
}

pub struct ReaderGuard(Object<ReaderManager>);

impl ReaderGuard {
    pub async fn begin_read(&mut self) -> Result<(), DbError> {
        self.0.execute("BEGIN", Vec::new()).await?;
        self.0.in_tx = true;
        Ok(())
    }

    pub async fn end_read(&mut self) -> Result<(), DbError> {
        self.0.execute("COMMIT", Vec::new()).await?;
        self.0.in_tx = false;
        Ok(())
    }

    pub async fn fetch(&mut self, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        self.0.fetch(sql, binds, kinds).await
    }

    pub async fn execute(&mut self, sql: &str, binds: Binds) -> Result<u64, DbError> {
        self.0.execute(sql, binds).await
    }
}

pub struct WriterGuard(OwnedMutexGuard<LiteConn>);

impl WriterGuard {
    pub async fn fetch(&mut self, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        self.0.fetch(sql, binds, kinds).await
    }

    pub async fn execute(&mut self, sql: &str, binds: Binds) -> Result<u64, DbError> {
        self.0.execute(sql, binds).await
    }

    pub async fn begin(&mut self) -> Result<(), DbError> {
        self.0.execute("BEGIN IMMEDIATE", Vec::new()).await?;
        self.0.in_tx = true;
        Ok(())
    }

    pub async fn finish(&mut self, commit: bool) -> Result<(), DbError> {
        self.0.execute(if commit { "COMMIT" } else { "ROLLBACK" }, Vec::new()).await?;
        self.0.in_tx = false;
        Ok(())
    }
}

fn bind_all(binds: Binds) -> Result<SqliteArguments<'static>, DbError> {
    let mut args = SqliteArguments::default();
    for (kind, v) in binds {
        let r = match v {
            Value::Null => args.add(None::<String>),
            Value::Str(s) => args.add(s),
            Value::Int(i) => args.add(i),
            Value::Float(f) => args.add(f),
            Value::Decimal(d) => args.add(d.to_string()),
            Value::Bool(b) => args.add(i64::from(b)),
            Value::Date(d) => args.add(d.format("%Y-%m-%d").to_string()),
            Value::Datetime(t) => args.add(sqlite_datetime(&t)),
            Value::Time(t) => args.add(t.format("%H:%M:%S%.f").to_string()),
            Value::Json(j) => args.add(j.to_string()),
            Value::Uuid(u) => args.add(u.to_string()),
        };
        r.map_err(|e| DbError::Other(format!("cannot bind a {} value: {e}", kind.as_str())))?;
    }
    Ok(args)
}

fn bad(kind: FieldType, text: &str) -> DbError {
    DbError::Other(format!("stored value `{text}` is not a valid {}", kind.as_str()))
}

fn decode_row(row: &SqliteRow, kinds: &[FieldType]) -> Result<Row, DbError> {
    use FieldType as K;
    let mut out = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let v = match kind {
            K::Int | K::BigInt => row.try_get_unchecked::<Option<i64>, _>(i)?.map(Value::Int),
            K::Float => row.try_get_unchecked::<Option<f64>, _>(i)?.map(Value::Float),
            K::Check => row.try_get_unchecked::<Option<i64>, _>(i)?.map(|b| Value::Bool(b != 0)),
            K::Table => None,
            _ => match row.try_get_unchecked::<Option<String>, _>(i)? {
                None => None,
                Some(s) => Some(match kind {
                    K::Currency | K::Decimal => Value::Decimal(
                        Decimal::from_str(&s).or_else(|_| Decimal::from_scientific(&s)).map_err(|_| bad(*kind, &s))?,
                    ),
                    K::Date => {
                        Value::Date(chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| bad(*kind, &s))?)
                    }
                    K::Datetime => Value::Datetime(parse_datetime(&s).ok_or_else(|| bad(*kind, &s))?),
                    K::Time => {
                        Value::Time(chrono::NaiveTime::parse_from_str(&s, "%H:%M:%S%.f").map_err(|_| bad(*kind, &s))?)
                    }
                    K::Json => Value::Json(serde_json::from_str(&s).map_err(|_| bad(*kind, &s))?),
                    K::Uuid => Value::Uuid(uuid::Uuid::parse_str(&s).map_err(|_| bad(*kind, &s))?),
                    _ => Value::Str(s),
                }),
            },
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(out)
}
