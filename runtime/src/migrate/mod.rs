//! Applying the revision chain to a database: history, integrity checks, locking, apply,
//! resume, rollback and repair. What to run comes from m-schema (`m_schema::migrate`); this
//! module only executes it and records what happened.

mod apply;
pub mod commands;
mod conn;
mod history;
pub mod live;
pub mod rls;
mod rollback;

use std::path::{Path, PathBuf};
use std::time::Duration;

use m_schema::Dialect;
use m_schema::migrate::Chain;
use m_schema::migrate::model::{Schema, Table, schema_of};

pub use conn::{Arg, MigConn};
pub use history::{Applied, LogEntry};

/// Anything that stops a migration command, with a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateError(pub String);

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MigrateError {}

impl From<sqlx::Error> for MigrateError {
    fn from(e: sqlx::Error) -> Self {
        MigrateError(format!("database: {e}"))
    }
}

impl From<m_schema::migrate::ChainError> for MigrateError {
    fn from(e: m_schema::migrate::ChainError) -> Self {
        MigrateError(e.0)
    }
}

pub(super) fn err(msg: impl Into<String>) -> MigrateError {
    MigrateError(msg.into())
}

/// Where the revisions come from: the binary, or `migrations/` on disk (development).
#[derive(Debug, Clone)]
pub struct Source {
    pub files: Vec<(String, String)>,
    /// The folder read, when the revisions come from disk (new revisions are written there).
    pub dir: Option<PathBuf>,
    /// Files that differ between disk and binary (added, removed or changed).
    pub differs_from_binary: Vec<String>,
}

/// Read `*.toml` of a folder, sorted by name.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, MigrateError> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(err(format!("cannot read {}: {e}", dir.display()))),
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "toml") {
            let name = e.file_name().to_string_lossy().into_owned();
            let text =
                std::fs::read_to_string(&path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
            files.push((name, text));
        }
    }
    files.sort();
    Ok(files)
}

impl Source {
    /// The embedded revisions only (production, or no source tree).
    pub fn embedded(embedded: &[(&str, &str)]) -> Source {
        let files = embedded.iter().map(|(n, t)| ((*n).to_string(), (*t).to_string())).collect();
        Source { files, dir: None, differs_from_binary: Vec::new() }
    }

    /// `dir` when it (or the source tree holding it) exists: it is authoritative in
    /// development. Otherwise the embedded revisions.
    pub fn resolve(embedded: &[(&str, &str)], dir: Option<&Path>) -> Result<Source, MigrateError> {
        let present = |d: &&Path| d.is_dir() || d.parent().is_some_and(Path::is_dir);
        let Some(dir) = dir.filter(present) else { return Ok(Source::embedded(embedded)) };
        let files = read_dir(dir)?;
        let mut differs = Vec::new();
        for (n, t) in &files {
            match embedded.iter().find(|(e, _)| e == n) {
                None => differs.push(format!("{n} (not in this build)")),
                Some((_, et)) if m_schema::migrate::checksum(et) != m_schema::migrate::checksum(t) => {
                    differs.push(format!("{n} (changed since this build)"))
                }
                _ => {}
            }
        }
        for (n, _) in embedded {
            if !files.iter().any(|(f, _)| f == n) {
                differs.push(format!("{n} (in this build, not on disk)"));
            }
        }
        Ok(Source { files, dir: Some(dir.to_path_buf()), differs_from_binary: differs })
    }
}

/// The desired schema of an application: its DocTypes' tables (from the derive's metadata).
pub fn desired_schema(app: &crate::app::App) -> Result<Schema, MigrateError> {
    let mut tables = Vec::new();
    for s in app.schemas() {
        let t: Table = serde_json::from_str(s.meta.schema)
            .map_err(|e| err(format!("DocType `{}`: bad schema metadata: {e}", s.meta.name)))?;
        tables.push(t);
    }
    Ok(schema_of(tables))
}

/// Timeouts for migration sessions (PostgreSQL).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub lock: Duration,
    pub statement: Duration,
}

impl From<&crate::config::Config> for Timeouts {
    fn from(c: &crate::config::Config) -> Self {
        Timeouts {
            lock: Duration::from_secs(c.migrate_lock_timeout_secs.max(1)),
            statement: Duration::from_secs(c.migrate_statement_timeout_secs.max(1)),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { lock: Duration::from_secs(10), statement: Duration::from_secs(600) }
    }
}

/// The state of a revision whose rollback committed some phases and then failed.
pub(super) const ROLLBACK_FAILED: &str = "rollback_failed";

pub(super) const LOCK_KEY: i64 = 0x6d5f_6d69_6772; // "m_migr"

/// A migrator bound to one database and one chain.
pub struct Migrator {
    conn: MigConn,
    pub chain: Chain,
    pub source: Source,
    tool_version: String,
    timeouts: Timeouts,
    locked: bool,
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
impl Migrator {
    /// Connect, load the chain and create the history tables if missing.
    pub async fn open(
        url: &str,
        source: Source,
        tool_version: &str,
        timeouts: Timeouts,
    ) -> Result<Migrator, MigrateError> {
        let chain = Chain::load(&source.files)?;
        let mut conn = MigConn::connect(url).await.map_err(|e| err(format!("cannot connect to the database: {e}")))?;
        if conn.dialect() == Dialect::Postgres {
            // Under `M_DB_RLS` the tables force row security: the migrator's own reads (value
            // checks, backfills, `--live`) must see every row.
            conn.exec("SELECT set_config('m.bypass', 'on', false)").await?;
        }
        let mut m = Migrator { conn, chain, source, tool_version: tool_version.to_string(), timeouts, locked: false };
        m.lock().await?;
        let result = m.ensure_tables().await;
        m.unlock().await?;
        result?;
        Ok(m)
    }

    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    pub async fn close(self) {
        self.conn.close().await;
    }

    /// PostgreSQL: one migrator at a time (session advisory lock, waits). SQLite serialises
    /// through `BEGIN IMMEDIATE` per revision and re-reads the history inside it.
    async fn lock(&mut self) -> Result<(), MigrateError> {
        if self.dialect() == Dialect::Postgres && !self.locked {
            self.conn.run("SELECT pg_advisory_lock($1)", &[Arg::Int(LOCK_KEY)]).await?;
            self.locked = true;
        }
        Ok(())
    }

    async fn unlock(&mut self) -> Result<(), MigrateError> {
        if self.locked {
            self.conn.run("SELECT pg_advisory_unlock($1)", &[Arg::Int(LOCK_KEY)]).await?;
            self.locked = false;
        }
        Ok(())
    }

    /// Run raw SQL on the migrator's connection (tests and `--live` checks).
    pub async fn conn(&mut self) -> &mut MigConn {
        &mut self.conn
    }
}
