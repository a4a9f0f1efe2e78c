//! PostgreSQL: sqlx connections in a deadpool pool that never pings. A connection is marked busy
//! while a statement runs and in-transaction between BEGIN and COMMIT; if the caller's future is
//! dropped mid-statement the mark stays, and the pool closes that connection instead of handing
//! it out again (measured: the pings of sqlx's own pool double PostgreSQL's cost per query).

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, Pool, RecycleError, RecycleResult};
use rust_decimal::Decimal;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgRow};
use sqlx::{Arguments, ConnectOptions, Row as _};
use tracing::Instrument as _;

use super::{Binds, DbError, PoolConfig, Row};
use crate::meta::FieldType;
use crate::value::Value;

pub struct PgConn {
    conn: PgConnection,
    busy: bool,
    in_tx: bool,
    /// Under row security: the caller the connection's settings name (None: unknown, set them).
    acting_for: Option<super::DbCtx>,
    /// What the current checkout's statements are counted under.
    labels: super::Labels,
    /// The connection failed at the transport level (the server went away): never reuse it.
    broken: bool,
    slow: Duration,
}

/// Whether an error means the connection itself is gone.
fn breaks_connection(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed)
        || matches!(e, sqlx::Error::Database(d) if d.code().as_deref().is_some_and(|c| c.starts_with("57P")))
}

pub struct PgManager {
    options: PgConnectOptions,
    max_lifetime: Duration,
    slow: Duration,
}

impl managed::Manager for PgManager {
    type Type = PgConn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConn, sqlx::Error> {
        let conn = self.options.connect().await?;
        Ok(PgConn {
            conn,
            busy: false,
            in_tx: false,
            acting_for: None,
            labels: super::Labels::INTERNAL,
            broken: false,
            slow: self.slow,
        })
    }

    async fn recycle(&self, c: &mut PgConn, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if c.broken {
            return Err(RecycleError::message("the connection failed"));
        }
        if metrics.age() > self.max_lifetime {
            return Err(RecycleError::message("connection reached its lifetime"));
        }
        super::reset_for_reuse(c.busy, &mut c.in_tx, || sqlx::query("ROLLBACK").execute(&mut c.conn)).await
    }
}

#[derive(Clone)]
pub struct PgDb {
    pool: Pool<PgManager>,
    flushed: Arc<Mutex<Instant>>,
    /// Row security: each checkout sets whom it acts for.
    rls: bool,
}

impl PgDb {
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<PgDb, DbError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| DbError::Other(format!("invalid DATABASE_URL: {e}")))?
            .application_name("m")
            .options([("statement_timeout", format!("{}ms", config.statement_timeout.as_millis()))])
            .disable_statement_logging();
        let manager = PgManager { options, max_lifetime: config.max_lifetime, slow: config.slow_statement };
        let pool = Pool::builder(manager)
            .max_size(config.max_connections.max(1))
            .wait_timeout(Some(config.acquire_timeout))
            // A server that does not answer fails a request fast instead of holding it.
            .create_timeout(Some(config.acquire_timeout.min(Duration::from_secs(5))))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Other(e.to_string()))?;
        let db = PgDb { pool, flushed: Arc::new(Mutex::new(Instant::now())), rls: config.rls };
        // Open the kept connections now: a bad URL or a down server fails at startup with a clear
        // message, and the first requests do not pay for connecting.
        let mut warm = Vec::new();
        for _ in 0..config.min_connections.clamp(1, config.max_connections.max(1)) {
            warm.push(db.get().await?);
        }
        drop(warm);
        // Connections opened under load beyond the kept ones close once idle for a minute.
        let pool = db.pool.clone();
        let keep = config.min_connections;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if pool.is_closed() {
                    break;
                }
                // Close connections idle for a minute, but never below the kept number.
                let mut removable = pool.status().size.saturating_sub(keep);
                if removable > 0 {
                    pool.retain(|_, metrics| {
                        if removable > 0 && metrics.last_used() >= Duration::from_secs(60) {
                            removable -= 1;
                            false
                        } else {
                            true
                        }
                    });
                }
            }
        });
        Ok(db)
    }

    pub fn pool_status(&self) -> (usize, usize) {
        let st = self.pool.status();
        (st.size.saturating_sub(st.available), st.available)
    }

    /// A connection acting for `ctx`: under row security the caller is set on it first (every
    /// setting, every time, so nothing of a previous checkout's caller remains).
    pub async fn get_as(&self, ctx: &super::DbCtx) -> Result<PgConnGuard, DbError> {
        let mut conn = self.get().await?;
        conn.0.labels = ctx.labels();
        // A connection already acting for this caller (the usual case: one user's requests in
        // a row) keeps its settings: one round trip less.
        if self.rls && !conn.0.acting_for.as_ref().is_some_and(|a| a.same_settings(ctx)) {
            conn.0.acting_for = None;
            let (sql, binds) = ctx.settings();
            conn.fetch(sql, binds, &[]).await?;
            conn.0.acting_for = Some(ctx.clone());
        }
        Ok(conn)
    }

    pub async fn get(&self) -> Result<PgConnGuard, DbError> {
        let flushed = self.flushed.clone();
        let rls = self.rls;
        self.pool
            .get()
            .await
            .map(|mut c| {
                c.labels = super::Labels::INTERNAL;
                PgConnGuard(c, flushed, rls)
            })
            .map_err(|e| match e {
                managed::PoolError::Backend(b) => DbError::from(b),
                // Every connection stayed busy for the whole acquire timeout.
                managed::PoolError::Timeout(managed::TimeoutType::Wait) => DbError::Saturated,
                other => DbError::Unavailable(other.to_string()),
            })
    }
}

/// A checked-out connection, and when the pool last dropped its idle connections.
pub struct PgConnGuard(Object<PgManager>, Arc<Mutex<Instant>>, bool);

impl PgConnGuard {
    /// A transport failure usually means the server restarted: this connection is dropped, and
    /// so are the idle ones opened before now (the restart killed them too), once per failure
    /// episode — a connection opened after the last flush failing starts a new one.
    fn note_failure(&mut self, e: &sqlx::Error) {
        if !breaks_connection(e) {
            return;
        }
        self.0.broken = true;
        let created = Object::metrics(&self.0).created;
        let now = Instant::now();
        let flush = match self.1.lock() {
            Ok(mut last) if created >= *last => {
                *last = now;
                true
            }
            _ => false,
        };
        if flush && let Some(pool) = Object::pool(&self.0) {
            pool.retain(|_, m| m.created > now);
        }
    }

    pub async fn fetch(&mut self, sql: &str, binds: Binds, kinds: &[FieldType]) -> Result<Vec<Row>, DbError> {
        self.statement(sql, binds, Some(kinds)).await.map(|(rows, _)| rows)
    }

    pub async fn execute(&mut self, sql: &str, binds: Binds) -> Result<u64, DbError> {
        self.statement(sql, binds, None).await.map(|(_, n)| n)
    }

    /// Run one statement: its rows decoded as `kinds`, or (without kinds) the rows it changed.
    async fn statement(
        &mut self,
        sql: &str,
        binds: Binds,
        kinds: Option<&[FieldType]>,
    ) -> Result<(Vec<Row>, u64), DbError> {
        let query = sqlx::query_with(sql, bind_all(binds)?);
        let c = &mut *self.0;
        c.busy = true;
        let started = std::time::Instant::now();
        let span = super::query_span("postgresql", sql);
        // Only a future dropped mid-statement leaves `busy` set; an error answer is a clean end.
        let done = match kinds {
            Some(_) => query.fetch_all(&mut c.conn).instrument(span).await.map(|rows| (rows, 0)),
            None => query.execute(&mut c.conn).instrument(span).await.map(|d| (Vec::new(), d.rows_affected())),
        };
        c.busy = false;
        super::log_statement(sql, started.elapsed(), c.slow, c.labels);
        if let Err(e) = &done {
            self.note_failure(e);
        }
        let (rows, changed) = done?;
        let kinds = kinds.unwrap_or_default();
        Ok((rows.iter().map(|r| decode_row(r, kinds)).collect::<Result<_, _>>()?, changed))
    }

    pub async fn begin(&mut self) -> Result<(), DbError> {
        self.begin_with("BEGIN").await
    }

    /// Under row security: let the next statements see every row (`on`) or only the caller's
    /// (`off`), for the runtime's own reads inside a caller's work. Nothing without it.
    pub async fn bypass(&mut self, on: bool) -> Result<(), DbError> {
        if !self.2 {
            return Ok(());
        }
        // Until switched back, the settings are not those of a checkout.
        self.0.acting_for = None;
        let v = Value::Str(if on { "on" } else { "off" }.into());
        self.fetch("SELECT set_config('m.bypass', $1, false)", vec![(FieldType::Data, v)], &[]).await?;
        Ok(())
    }

    pub async fn begin_with(&mut self, statement: &str) -> Result<(), DbError> {
        self.execute(statement, Vec::new()).await?;
        self.0.in_tx = true;
        Ok(())
    }

    pub async fn finish(&mut self, commit: bool) -> Result<(), DbError> {
        self.execute(if commit { "COMMIT" } else { "ROLLBACK" }, Vec::new()).await?;
        self.0.in_tx = false;
        Ok(())
    }
}

fn mismatch(kind: FieldType, v: &Value) -> DbError {
    // The message is logged: a secret's value never is.
    let shown = if kind.is_secret() { "a value".to_string() } else { format!("{v:?}") };
    DbError::Other(format!("cannot bind {shown} to a {} column", kind.as_str()))
}

fn bind_all(binds: Binds) -> Result<PgArguments, DbError> {
    let mut args = PgArguments::default();
    for (kind, v) in binds {
        bind(&mut args, kind, v)?;
    }
    Ok(args)
}

fn bind(args: &mut PgArguments, kind: FieldType, v: Value) -> Result<(), DbError> {
    use FieldType as K;
    let r = match (kind, v) {
        (K::Int, Value::Int(i)) => args.add(i32::try_from(i).map_err(|_| DbError::Other("Int out of range".into()))?),
        (K::Int, Value::Null) => args.add(None::<i32>),
        (K::BigInt, Value::Int(i)) => args.add(i),
        (K::BigInt, Value::Null) => args.add(None::<i64>),
        (K::Float, Value::Float(f)) => args.add(f),
        (K::Float, Value::Int(i)) => args.add(i as f64),
        (K::Float, Value::Null) => args.add(None::<f64>),
        (K::Currency | K::Decimal, Value::Decimal(d)) => args.add(d),
        (K::Currency | K::Decimal, Value::Null) => args.add(None::<Decimal>),
        (K::Check, Value::Bool(b)) => args.add(b),
        (K::Check, Value::Null) => args.add(None::<bool>),
        (K::Date, Value::Date(d)) => args.add(d),
        (K::Date, Value::Null) => args.add(None::<chrono::NaiveDate>),
        (K::Datetime, Value::Datetime(t)) => args.add(t),
        (K::Datetime, Value::Null) => args.add(None::<chrono::DateTime<chrono::Utc>>),
        (K::Time, Value::Time(t)) => args.add(t),
        (K::Time, Value::Null) => args.add(None::<chrono::NaiveTime>),
        (K::Json, Value::Json(j)) => args.add(sqlx::types::Json(j)),
        (K::Json, Value::Null) => args.add(None::<sqlx::types::Json<serde_json::Value>>),
        (K::Uuid, Value::Uuid(u)) => args.add(u),
        (K::Uuid, Value::Null) => args.add(None::<uuid::Uuid>),
        (k, Value::Str(s)) if k.is_text() || k.is_secret() => args.add(s),
        (k, Value::Null) if k.is_text() || k.is_secret() => args.add(None::<String>),
        (k, v) => return Err(mismatch(k, &v)),
    };
    r.map_err(|e| DbError::Other(e.to_string()))
}

fn decode_row(row: &PgRow, kinds: &[FieldType]) -> Result<Row, DbError> {
    use FieldType as K;
    let mut out = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let v = match kind {
            K::Int => row.try_get::<Option<i32>, _>(i)?.map(|x| Value::Int(x.into())),
            K::BigInt => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
            K::Float => row.try_get::<Option<f64>, _>(i)?.map(Value::Float),
            K::Currency | K::Decimal => row.try_get::<Option<Decimal>, _>(i)?.map(Value::Decimal),
            K::Check => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
            K::Date => row.try_get::<Option<chrono::NaiveDate>, _>(i)?.map(Value::Date),
            K::Datetime => row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i)?.map(Value::Datetime),
            K::Time => row.try_get::<Option<chrono::NaiveTime>, _>(i)?.map(Value::Time),
            K::Json => row.try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>(i)?.map(|j| Value::Json(j.0)),
            K::Uuid => row.try_get::<Option<uuid::Uuid>, _>(i)?.map(Value::Uuid),
            K::Table => None,
            _ => row.try_get::<Option<String>, _>(i)?.map(Value::Str),
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(out)
}
