//! Database access: PostgreSQL through sqlx connections held in a ping-free, cancel-safe pool,
//! SQLite through one writer connection and a pool of readers (ARCHITECTURE.md). Above this module
//! everything is dialect-neutral: SQL text from the query builder, typed [`Value`] binds, rows
//! decoded by the columns' [`FieldType`]s.

mod pg;
mod sealing;
mod sqlite;

use std::time::Duration;

use deadpool::managed::{RecycleError, RecycleResult};

use crate::meta::FieldType;
use crate::value::Value;

pub use pg::PgDb;
pub use sealing::Sealer;
pub use sqlite::SqliteDb;

/// SQL dialect (the one vocabulary of m-schema).
pub use m_schema::Dialect;

/// Values bound to a statement's placeholders, each with the kind of the column it meets (so a
/// NULL is typed, and a value is encoded the way the column stores it).
pub type Binds = Vec<(FieldType, Value)>;

/// A decoded row: one value per selected column.
pub type Row = Vec<Value>;

/// Database failures, classified for the repository (which turns them into HTTP statuses).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unique constraint violated ({constraint})")]
    Unique { constraint: String },
    #[error("foreign key constraint violated")]
    ForeignKey,
    #[error("not-null constraint violated ({column})")]
    NotNull { column: String },
    #[error("a value is longer than its column allows")]
    TooLong,
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// No connection became free within the acquire timeout (never retried: the wait already
    /// happened).
    #[error("no database connection became free in time")]
    Saturated,
    /// The database rolled the transaction back to resolve a conflict (serialization failure,
    /// deadlock); running it again may succeed.
    #[error("transient conflict: {0}")]
    Transient(String),
    /// The statement ran past the statement timeout and was cancelled.
    #[error("the statement ran past the statement timeout")]
    Timeout,
    /// A row security policy refused a row (`M_DB_RLS`).
    #[error("a row security policy refused the change")]
    RowSecurity,
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().map(str::to_string);
                let message = db.message().to_string();
                match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => {
                        // SQLite names the columns in the message: "UNIQUE constraint failed: t.c".
                        DbError::Unique { constraint: constraint.unwrap_or(message) }
                    }
                    sqlx::error::ErrorKind::ForeignKeyViolation => DbError::ForeignKey,
                    sqlx::error::ErrorKind::NotNullViolation => DbError::NotNull { column: message },
                    // PostgreSQL: query_canceled (statement_timeout); SQLite: interrupted by the
                    // progress handler at the statement timeout.
                    _ if db.code().as_deref() == Some("57014") => DbError::Timeout,
                    // PostgreSQL: serialization_failure, deadlock_detected.
                    _ if matches!(db.code().as_deref(), Some("40001" | "40P01")) => DbError::Transient(message),
                    // PostgreSQL: admin_shutdown, crash_shutdown, cannot_connect_now.
                    _ if db.code().as_deref().is_some_and(|c| c.starts_with("57P")) => DbError::Unavailable(message),
                    _ if message == "interrupted" => DbError::Timeout,
                    // SQLite: the file is locked by another process beyond the busy timeout.
                    _ if message.starts_with("database is locked") => DbError::Unavailable(message),
                    // PostgreSQL: insufficient_privilege from a row security policy.
                    _ if db.code().as_deref() == Some("42501") && message.contains("row-level security") => {
                        DbError::RowSecurity
                    }
                    // PostgreSQL: string_data_right_truncation (varchar(n) overflow).
                    _ if db.code().as_deref() == Some("22001") => DbError::TooLong,
                    // SQLite reports some constraint failures only through the message.
                    _ if message.starts_with("FOREIGN KEY constraint failed") => DbError::ForeignKey,
                    _ if message.starts_with("UNIQUE constraint failed") => DbError::Unique { constraint: message },
                    _ if message.starts_with("NOT NULL constraint failed") => DbError::NotNull { column: message },
                    _ => DbError::Other(message),
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => DbError::Unavailable(e.to_string()),
            _ => DbError::Other(e.to_string()),
        }
    }
}

tokio::task_local! {
    /// Set for the runtime's periodic housekeeping (the job queue's poll): its statements are
    /// measured but not logged at debug level, so a development log is not a line a second.
    static QUIET: ();
}

/// A pooled connection coming back: one whose statement was cancelled mid-flight (`busy`) is
/// discarded, an open transaction is rolled back, anything else is reused as it is.
async fn reset_for_reuse<T, F>(busy: bool, in_tx: &mut bool, rollback: impl FnOnce() -> F) -> RecycleResult<sqlx::Error>
where
    F: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    if busy {
        return Err(RecycleError::message("a statement was cancelled mid-flight"));
    }
    if *in_tx {
        rollback().await.map_err(RecycleError::Backend)?;
        *in_tx = false;
    }
    Ok(())
}

/// Run `fut` with its statements left out of the debug log (slow ones are still warnings).
pub(crate) async fn quietly<F: std::future::Future>(fut: F) -> F::Output {
    QUIET.scope((), fut).await
}

/// Log a statement (its text has placeholders only; values are never logged): at debug level
/// under the target `m::sql`, or as a warning when it took `slow` or longer.
pub(crate) fn log_statement(sql: &str, elapsed: Duration, slow: Duration, labels: Labels) {
    crate::metrics::db_statement(labels.doctype, labels.operation, elapsed);
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    if elapsed >= slow {
        tracing::warn!(target: "m::sql", duration_ms, sql, "slow statement");
    } else if QUIET.try_with(|()| ()).is_err() {
        tracing::debug!(target: "m::sql", duration_ms, sql, "statement");
    }
}

/// The trace span of one statement (a child of the request's span; exported only when tracing
/// is configured). Its name is the statement's first word (SELECT, INSERT …), as OpenTelemetry
/// names database spans.
pub(crate) fn query_span(system: &'static str, sql: &str) -> tracing::Span {
    tracing::trace_span!(
        target: crate::telemetry::TARGET,
        "db query",
        otel.name = sql.split_whitespace().next().unwrap_or("SQL"),
        otel.kind = "client",
        db.system.name = system,
        db.query.text = sql,
    )
}

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections kept open (PostgreSQL).
    pub min_connections: usize,
    /// Most connections at once (PostgreSQL); extra ones close when idle.
    pub max_connections: usize,
    /// SQLite reader connections.
    pub sqlite_readers: usize,
    pub acquire_timeout: Duration,
    /// A connection older than this is closed when it comes back.
    pub max_lifetime: Duration,
    /// Statement timeout: PostgreSQL `statement_timeout`; SQLite interrupts the statement.
    pub statement_timeout: Duration,
    /// Statements slower than this are logged as warnings (others at debug level).
    pub slow_statement: Duration,
    /// PostgreSQL row security (`M_DB_RLS`): every checkout says whom it acts for.
    pub rls: bool,
}

impl From<&crate::config::Config> for PoolConfig {
    fn from(c: &crate::config::Config) -> Self {
        PoolConfig {
            min_connections: c.db_min_connections,
            max_connections: c.db_max_connections,
            sqlite_readers: c.sqlite_readers,
            acquire_timeout: Duration::from_secs(c.db_acquire_timeout_secs),
            max_lifetime: Duration::from_secs(c.db_max_lifetime_secs),
            statement_timeout: Duration::from_secs(c.statement_timeout_secs),
            slow_statement: Duration::from_millis(c.slow_query_ms),
            rls: c.db_rls,
        }
    }
}

/// Whom a connection's statements act for, under PostgreSQL row security (`M_DB_RLS=on`): set
/// on the connection at every checkout (`m.user`, `m.roles`, `m.action`, `m.bypass`), so the
/// policies see the caller. Without row security it is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbCtx {
    /// A caller acting on documents: their user, roles and the action, and the DocType and
    /// operation its statements are counted under.
    Caller { user: String, roles: Vec<String>, action: &'static str, labels: Labels },
    /// The runtime acting for itself (user lookups, the login, health): not restricted.
    System,
}

/// What a checkout's statements are counted under (`m_db_query_duration_seconds{doctype,
/// operation}`): the DocType and the API operation they serve, or the runtime's own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    pub doctype: &'static str,
    pub operation: &'static str,
}

impl Labels {
    /// The runtime acting for itself (user lookups, the job queue, health).
    pub const INTERNAL: Labels = Labels { doctype: "", operation: "internal" };
}

impl DbCtx {
    /// Whether `other` acts for the same caller and action (the row security settings a
    /// connection needs are the same; what its statements are counted under may differ).
    pub fn same_settings(&self, other: &DbCtx) -> bool {
        match (self, other) {
            (DbCtx::Caller { user, roles, action, .. }, DbCtx::Caller { user: u2, roles: r2, action: a2, .. }) => {
                user == u2 && roles == r2 && action == a2
            }
            (DbCtx::System, DbCtx::System) => true,
            _ => false,
        }
    }

    /// What its statements are counted under.
    pub fn labels(&self) -> Labels {
        match self {
            DbCtx::Caller { labels, .. } => *labels,
            DbCtx::System => Labels::INTERNAL,
        }
    }

    /// The `set_config` statement and its binds.
    fn settings(&self) -> (&'static str, Binds) {
        let (user, roles, action, bypass) = match self {
            DbCtx::Caller { user, roles, action, .. } => (
                user.clone(),
                serde_json::to_string(roles).unwrap_or_else(|_| "[]".into()),
                (*action).to_string(),
                "off".to_string(),
            ),
            DbCtx::System => (String::new(), "[]".into(), String::new(), "on".to_string()),
        };
        let binds = [user, roles, action, bypass].into_iter().map(|v| (FieldType::Data, Value::Str(v))).collect();
        (
            "SELECT set_config('m.user', $1, false), set_config('m.roles', $2, false), \
             set_config('m.action', $3, false), set_config('m.bypass', $4, false)",
            binds,
        )
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min_connections: 20,
            max_connections: 30,
            sqlite_readers: 4,
            acquire_timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(3600),
            statement_timeout: Duration::from_secs(10),
            slow_statement: Duration::from_millis(500),
            rls: false,
        }
    }
}

/// A connected database.
#[derive(Clone)]
pub enum Db {
    Postgres(PgDb),
    Sqlite(SqliteDb),
}

impl Db {
    /// Connect to `postgres://…` or `sqlite://path` (the file and its folder are created).
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Db, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Db::Postgres(PgDb::connect(url, config).await?))
        } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Ok(Db::Sqlite(SqliteDb::open(path, config).await?))
        } else {
            Err(DbError::Other("DATABASE_URL must start with postgres:// or sqlite://".into()))
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// A connection for reads, acting for `ctx`.
    pub async fn reader(&self, ctx: &DbCtx) -> Result<Conn, DbError> {
        match self {
            Db::Postgres(p) => Ok(Conn { link: Link::Pg(p.get_as(ctx).await?) }),
            Db::Sqlite(s) => Ok(Conn { link: Link::SqliteRead(s.reader(ctx.labels()).await?) }),
        }
    }

    /// A write transaction acting for `ctx` (SQLite: the single writer, `BEGIN IMMEDIATE`).
    pub async fn begin(&self, ctx: &DbCtx) -> Result<Tx, DbError> {
        let mut attempt = 0;
        loop {
            let link = match self {
                Db::Postgres(p) => Link::Pg(p.get_as(ctx).await?),
                Db::Sqlite(s) => Link::SqliteWrite(s.writer(ctx.labels()).await?),
            };
            let mut conn = Conn { link };
            match conn.begin().await {
                Ok(()) => return Ok(Tx { conn: Some(conn), wake: None }),
                // A pooled connection that died while idle fails on BEGIN, before anything was
                // done: another connection may work.
                Err(DbError::Unavailable(_)) if attempt == 0 && matches!(self, Db::Postgres(_)) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Connections (in use, idle).
    pub fn pool_status(&self) -> (usize, usize) {
        match self {
            Db::Postgres(p) => p.pool_status(),
            Db::Sqlite(s) => s.pool_status(),
        }
    }

    /// One statement in a transaction of its own, committed: the rows it changed.
    pub async fn write(&self, ctx: &DbCtx, sql: &str, binds: Binds) -> Result<u64, DbError> {
        let mut tx = self.begin(ctx).await?;
        let n = tx.execute(sql, binds).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Read rows with a fresh reader connection acting for `ctx`.
    pub async fn fetch(&self, ctx: &DbCtx, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        self.reader(ctx).await?.fetch(sql, binds, kinds).await
    }
}

/// Something that runs a query: a connection or a transaction.
pub trait Fetch: Send {
    fn fetch(
        &mut self,
        sql: &str,
        binds: Binds,
        kinds: &[FieldType],
    ) -> impl std::future::Future<Output = Result<Vec<Row>, DbError>> + Send;

    /// See [`Conn::bypass`].
    fn bypass(&mut self, on: bool) -> impl std::future::Future<Output = Result<(), DbError>> + Send;
}

impl Fetch for Conn {
    async fn fetch(&mut self, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        Conn::fetch(self, sql, binds, kinds).await
    }

    async fn bypass(&mut self, on: bool) -> Result<(), DbError> {
        Conn::bypass(self, on).await
    }
}

impl Fetch for Tx {
    async fn fetch(&mut self, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        Tx::fetch(self, sql, binds, kinds).await
    }

    async fn bypass(&mut self, on: bool) -> Result<(), DbError> {
        self.conn()?.bypass(on).await
    }
}

/// One connection, for reads or inside a transaction.
pub struct Conn {
    link: Link,
}

enum Link {
    Pg(pg::PgConnGuard),
    SqliteRead(sqlite::ReaderGuard),
    SqliteWrite(sqlite::WriterGuard),
}

impl Conn {
    pub async fn fetch(&mut self, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        match &mut self.link {
            Link::Pg(c) => c.fetch(sql, binds, kinds).await,
            Link::SqliteRead(c) => c.fetch(sql, binds, kinds).await,
            Link::SqliteWrite(c) => c.fetch(sql, binds, kinds).await,
        }
    }

    pub async fn execute(&mut self, sql: &str, binds: Binds) -> Result<u64, DbError> {
        match &mut self.link {
            Link::Pg(c) => c.execute(sql, binds).await,
            Link::SqliteRead(c) => c.execute(sql, binds).await,
            Link::SqliteWrite(c) => c.execute(sql, binds).await,
        }
    }

    /// Under PostgreSQL row security, let the next statements see every row (`on`: the runtime's
    /// own reads inside a caller's work, such as hook reads) or only the caller's (`off`).
    pub async fn bypass(&mut self, on: bool) -> Result<(), DbError> {
        match &mut self.link {
            Link::Pg(c) => c.bypass(on).await,
            _ => Ok(()),
        }
    }

    /// Start a read-only snapshot, so several statements see one state of the database.
    pub async fn begin_read(&mut self) -> Result<(), DbError> {
        match &mut self.link {
            Link::Pg(c) => c.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await,
            Link::SqliteRead(c) => c.begin_read().await,
            Link::SqliteWrite(_) => Ok(()),
        }
    }

    /// End a snapshot started by [`Conn::begin_read`].
    pub async fn end_read(&mut self) -> Result<(), DbError> {
        match &mut self.link {
            Link::Pg(c) => c.finish(true).await,
            Link::SqliteRead(c) => c.end_read().await,
            Link::SqliteWrite(_) => Ok(()),
        }
    }

    async fn begin(&mut self) -> Result<(), DbError> {
        match &mut self.link {
            Link::Pg(c) => c.begin().await,
            Link::SqliteWrite(c) => c.begin().await,
            Link::SqliteRead(_) => Err(DbError::Other("a reader cannot start a write transaction".into())),
        }
    }

    async fn finish(&mut self, commit: bool) -> Result<(), DbError> {
        match &mut self.link {
            Link::Pg(c) => c.finish(commit).await,
            Link::SqliteWrite(c) => c.finish(commit).await,
            Link::SqliteRead(_) => Ok(()),
        }
    }
}

/// A write transaction. Dropped without [`Tx::commit`] (an error returned early, a cancelled
/// request), it is rolled back at once on a background task, so its locks are released without
/// waiting for the connection's next use.
pub struct Tx {
    conn: Option<Conn>,
    /// Notified once the transaction commits (job workers, when it queued a job).
    wake: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        match self.conn.as_ref().map(|c| &c.link) {
            Some(Link::Pg(_)) => Dialect::Postgres,
            _ => Dialect::Sqlite,
        }
    }

    fn conn(&mut self) -> Result<&mut Conn, DbError> {
        self.conn.as_mut().ok_or_else(|| DbError::Other("transaction already finished".into()))
    }

    pub async fn fetch(&mut self, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        self.conn()?.fetch(sql, binds, kinds).await
    }

    pub async fn execute(&mut self, sql: &str, binds: Binds) -> Result<u64, DbError> {
        self.conn()?.execute(sql, binds).await
    }

    pub async fn commit(mut self) -> Result<(), DbError> {
        self.conn()?.finish(true).await?;
        self.conn = None;
        if let Some(wake) = self.wake.take() {
            wake.notify_one();
        }
        Ok(())
    }

    /// Notify `wake` when (and only if) this transaction commits.
    pub fn wake_on_commit(&mut self, wake: std::sync::Arc<tokio::sync::Notify>) {
        self.wake = Some(wake);
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                // A failed rollback leaves the connection marked in-transaction; the pool then
                // rolls back (or discards it) before handing it out again.
                let _ = conn.finish(false).await;
            });
        }
    }
}
