//! The migrator's own database connection: one session (never the request pool), so
//! `PRAGMA foreign_keys`, advisory locks and session settings stay on it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row};

use m_schema::Dialect;

/// A bound argument.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

/// Bind `args` to a `sqlx::query` of either backend.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::OptText(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

pub enum MigConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// A row with every column read as text.
pub type TextRow = Vec<Option<String>>;

impl MigConn {
    pub async fn connect(url: &str) -> Result<MigConn, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?
                .application_name("m migrate")
                // `CREATE … IF NOT EXISTS` notices are noise in command output.
                .options([("client_min_messages", "warning")])
                // DDL changes result types under cached plans: no statement cache here.
                .statement_cache_capacity(0)
                .disable_statement_logging();
            Ok(MigConn::Pg(options.connect().await?))
        } else {
            let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
            if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
            }
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                // Another migrator holds the write lock for at most one revision.
                .busy_timeout(Duration::from_secs(120))
                .statement_cache_capacity(0)
                .disable_statement_logging();
            // Opening sets WAL mode, which a second process opening a new file at the same moment
            // can find locked before the busy timeout applies: try again for a while.
            let mut attempt = 0;
            loop {
                match options.connect().await {
                    Ok(c) => return Ok(MigConn::Sqlite(c)),
                    Err(sqlx::Error::Database(e)) if e.message().contains("locked") && attempt < 50 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            MigConn::Pg(_) => Dialect::Postgres,
            MigConn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Run statements without parameters (DDL, transaction control).
    pub async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            MigConn::Pg(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
            MigConn::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
        }
    }

    /// Run one statement with `$1`-style parameters (rewritten to `?` for SQLite, in order).
    pub async fn run(&mut self, sql: &str, args: &[Arg]) -> Result<u64, sqlx::Error> {
        match self {
            MigConn::Pg(c) => Ok(bind_args!(sqlx::query(sql), args).execute(c).await?.rows_affected()),
            MigConn::Sqlite(c) => {
                let sql = sqlite_placeholders(sql);
                Ok(bind_args!(sqlx::query(&sql), args).execute(c).await?.rows_affected())
            }
        }
    }

    /// Rows of a query, every column as text.
    pub async fn rows(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<TextRow>, sqlx::Error> {
        macro_rules! collect {
            ($rows:expr) => {
                $rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.try_get::<Option<String>, _>(i)
                                    .ok()
                                    .flatten()
                                    .or_else(|| r.try_get::<Option<i64>, _>(i).ok().flatten().map(|v| v.to_string()))
                                    .or_else(|| r.try_get::<Option<i32>, _>(i).ok().flatten().map(|v| v.to_string()))
                                    .or_else(|| r.try_get::<Option<bool>, _>(i).ok().flatten().map(|v| v.to_string()))
                            })
                            .collect()
                    })
                    .collect()
            };
        }
        match self {
            MigConn::Pg(c) => {
                let rows = bind_args!(sqlx::query(sql), args).fetch_all(c).await?;
                Ok(collect!(rows))
            }
            MigConn::Sqlite(c) => {
                let sql = sqlite_placeholders(sql);
                let rows = bind_args!(sqlx::query(&sql), args).fetch_all(c).await?;
                Ok(collect!(rows))
            }
        }
    }

    /// Whether a query returns at least one row.
    pub async fn any_row(&mut self, sql: &str) -> Result<bool, sqlx::Error> {
        match self {
            MigConn::Pg(c) => Ok(sqlx::query(sql).fetch_optional(c).await?.is_some()),
            MigConn::Sqlite(c) => Ok(sqlx::query(sql).fetch_optional(c).await?.is_some()),
        }
    }

    pub async fn close(self) {
        let _ = match self {
            MigConn::Pg(c) => c.close().await,
            MigConn::Sqlite(c) => c.close().await,
        };
    }
}

fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}
