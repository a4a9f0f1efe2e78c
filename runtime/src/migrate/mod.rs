//! Applying the revision chain to a database: history, integrity checks, locking, apply,
//! resume, rollback and repair. What to run comes from m-codegen (`m_codegen::migrate`); this
//! module only executes it and records what happened.

pub mod commands;
mod conn;
pub mod live;
pub mod rls;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use m_codegen::ddl::Dialect;
use m_codegen::migrate::classify::{Hints, classify, dangerous_codes, max_class};
use m_codegen::migrate::model::{Schema, Table, schema_of};
use m_codegen::migrate::{Chain, Class, Op, Phase, RevisionFile, Stmt, render};
use serde::Serialize;

pub use conn::{Arg, MigConn};

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

impl From<m_codegen::migrate::ChainError> for MigrateError {
    fn from(e: m_codegen::migrate::ChainError) -> Self {
        MigrateError(e.0)
    }
}

fn err(msg: impl Into<String>) -> MigrateError {
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
                Some((_, et)) if m_codegen::migrate::checksum(et) != m_codegen::migrate::checksum(t) => {
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

/// One row of the history table.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub id: String,
    pub name: String,
    pub parents: String,
    pub checksum: String,
    pub class: String,
    /// `applied`, `partial` (some phases committed) or `failed` (nothing committed).
    pub state: String,
    pub steps_applied: i64,
    pub steps_total: i64,
    pub error: Option<String>,
    pub applied_at: String,
    pub duration_ms: i64,
    pub tool_version: String,
}

/// One entry of the append-only log.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub seq: i64,
    pub id: String,
    pub action: String,
    pub at: String,
    pub class: Option<String>,
    pub state: Option<String>,
    pub duration_ms: Option<i64>,
    pub detail: Option<String>,
    pub tool_version: String,
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
const ROLLBACK_FAILED: &str = "rollback_failed";

const LOCK_KEY: i64 = 0x6d5f_6d69_6772; // "m_migr"

/// A migrator bound to one database and one chain.
pub struct Migrator {
    conn: MigConn,
    pub chain: Chain,
    pub source: Source,
    tool_version: String,
    timeouts: Timeouts,
    locked: bool,
}

fn now() -> String {
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

    async fn ensure_tables(&mut self) -> Result<(), MigrateError> {
        let (text, seq) = match self.dialect() {
            Dialect::Postgres => ("text", "bigserial PRIMARY KEY"),
            Dialect::Sqlite => ("TEXT", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        };
        self.conn
            .exec(&format!(
                "CREATE TABLE IF NOT EXISTS m_migrations (id {text} PRIMARY KEY, name {text} NOT NULL, parents {text} NOT NULL, \
                 checksum {text} NOT NULL, class {text} NOT NULL, state {text} NOT NULL, steps_applied bigint NOT NULL, \
                 steps_total bigint NOT NULL, error {text}, applied_at {text} NOT NULL, duration_ms bigint NOT NULL, \
                 tool_version {text} NOT NULL)"
            ))
            .await?;
        self.conn
            .exec(&format!(
                "CREATE TABLE IF NOT EXISTS m_migration_log (seq {seq}, id {text} NOT NULL, action {text} NOT NULL, \
                 at {text} NOT NULL, checksum {text}, class {text}, state {text}, duration_ms bigint, detail {text}, \
                 tool_version {text} NOT NULL)"
            ))
            .await?;
        Ok(())
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

    /// The history rows, in the order they were applied.
    pub async fn history(&mut self) -> Result<Vec<Applied>, MigrateError> {
        let rows = self
            .conn
            .rows(
                "SELECT id, name, parents, checksum, class, state, steps_applied, steps_total, error, applied_at, \
                 duration_ms, tool_version FROM m_migrations ORDER BY applied_at, id",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                let n = |i: usize| s(i).parse().unwrap_or(0);
                Applied {
                    id: s(0),
                    name: s(1),
                    parents: s(2),
                    checksum: s(3),
                    class: s(4),
                    state: s(5),
                    steps_applied: n(6),
                    steps_total: n(7),
                    error: r.get(8).cloned().flatten(),
                    applied_at: s(9),
                    duration_ms: n(10),
                    tool_version: s(11),
                }
            })
            .collect())
    }

    /// The append-only log, oldest first.
    pub async fn log(&mut self) -> Result<Vec<LogEntry>, MigrateError> {
        let rows = self
            .conn
            .rows(
                "SELECT seq, id, action, at, class, state, duration_ms, detail, tool_version FROM m_migration_log ORDER BY seq",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let o = |i: usize| r.get(i).cloned().flatten();
                LogEntry {
                    seq: o(0).and_then(|v| v.parse().ok()).unwrap_or(0),
                    id: o(1).unwrap_or_default(),
                    action: o(2).unwrap_or_default(),
                    at: o(3).unwrap_or_default(),
                    class: o(4),
                    state: o(5),
                    duration_ms: o(6).and_then(|v| v.parse().ok()),
                    detail: o(7),
                    tool_version: o(8).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Every applied (or partly applied) revision must exist unchanged: an edited or deleted one
    /// is a hard error naming the file. Returns the history.
    pub async fn verify(&mut self) -> Result<Vec<Applied>, MigrateError> {
        let history = self.history().await?;
        let mut problems = Vec::new();
        for h in &history {
            match self.chain.get(&h.id) {
                None => problems.push(format!(
                    "revision {} was applied to this database but migrations/{}_{}.toml is missing; restore it (or run `m migrate:repair {}` if it was removed on purpose)",
                    h.id, h.id, h.name, h.id
                )),
                // Nothing of a failed revision was committed: fixing its file is allowed.
                Some(r) if r.checksum != h.checksum && h.state != "failed" => problems.push(format!(
                    "migrations/{} was edited after it was applied (checksum differs); restore the applied version, or run `m migrate:repair {}` to accept the edit",
                    r.file, h.id
                )),
                Some(_) => {}
            }
        }
        if problems.is_empty() { Ok(history) } else { Err(err(problems.join("\n"))) }
    }

    /// Revisions not yet applied (including failed and partial ones), in apply order.
    pub fn pending<'a>(&'a self, history: &[Applied]) -> Vec<&'a RevisionFile> {
        let done: BTreeSet<&str> = history.iter().filter(|h| h.state == "applied").map(|h| h.id.as_str()).collect();
        self.chain.revisions.iter().filter(|r| !done.contains(r.revision.id.as_str())).collect()
    }

    fn check_heads(&self) -> Result<(), MigrateError> {
        let heads = self.chain.heads();
        if heads.len() > 1 {
            let names: Vec<&str> = heads.iter().map(|h| h.file.as_str()).collect();
            return Err(err(format!(
                "the chain has {} heads ({}): run `m migrate:create --merge` to join them",
                heads.len(),
                names.join(", ")
            )));
        }
        Ok(())
    }

    /// Apply pending revisions. With `only_safe`, stop (without error) before anything above
    /// SAFE; otherwise refuse up front a DANGEROUS revision whose codes are not acknowledged.
    /// Returns the ids applied.
    pub async fn migrate(&mut self, only_safe: bool) -> Result<Vec<String>, MigrateError> {
        self.lock().await?;
        let result = self.migrate_locked(only_safe).await;
        self.unlock().await?;
        result
    }

    async fn migrate_locked(&mut self, only_safe: bool) -> Result<Vec<String>, MigrateError> {
        let history = self.verify().await?;
        self.check_heads()?;
        if let Some(h) = history.iter().find(|h| h.state == ROLLBACK_FAILED) {
            return Err(err(format!(
                "rolling back revision {} failed half-way ({}); the database is between two versions: finish by hand, then run `m migrate:repair {}`",
                h.id,
                h.error.clone().unwrap_or_default(),
                h.id
            )));
        }
        let pending: Vec<String> = self.pending(&history).iter().map(|r| r.revision.id.clone()).collect();
        // Each revision is rendered against everything applied before it — after a merge, that
        // includes the other branch (a SQLite rebuild must keep its columns).
        let mut done: BTreeSet<String> =
            history.iter().filter(|h| h.state == "applied").map(|h| h.id.clone()).collect();
        let mut plan = Vec::new();
        for id in &pending {
            let a = self.chain.analyze_on(id, self.chain.replay_set(&done)?)?;
            done.insert(id.clone());
            if only_safe && a.class > Class::Safe {
                break;
            }
            if !a.unacknowledged.is_empty() {
                let file = self.chain.get(id).map(|r| r.file.clone()).unwrap_or_default();
                return Err(err(format!(
                    "migrations/{file} is DANGEROUS and does not acknowledge {}: read its review card (`m migrate:status`), handle the data, then add `acknowledge = [{}]` to the revision",
                    a.unacknowledged.join(", "),
                    a.unacknowledged.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
                )));
            }
            plan.push((id.clone(), a));
        }
        let mut applied = Vec::new();
        for (id, analysis) in plan {
            let start = history.iter().find(|h| h.id == id && h.state == "partial").map_or(0, |h| h.steps_applied);
            if self.apply_one(&id, &analysis.before, analysis.class, start as usize).await? {
                applied.push(id);
            }
        }
        Ok(applied)
    }

    /// Apply one revision from phase `start`. Returns false when another migrator applied it.
    async fn apply_one(&mut self, id: &str, before: &Schema, class: Class, start: usize) -> Result<bool, MigrateError> {
        let r = self.chain.get(id).cloned().ok_or_else(|| err(format!("no revision {id}")))?;
        let ops: Vec<&Op> = r.revision.up.iter().map(|s| &s.op).collect();
        let dialect = self.dialect();
        let phases = render(&ops, before, dialect).map_err(|e| err(format!("migrations/{}: {e}", r.file)))?;
        let began = Instant::now();
        let result = match dialect {
            Dialect::Sqlite => self.run_sqlite(&r, &phases, class, began).await,
            Dialect::Postgres => self.run_postgres(&r, &phases, class, start, began).await,
        };
        match result {
            Ok(applied) => Ok(applied),
            Err((done, e)) => {
                let state = if done > 0 { "partial" } else { "failed" };
                let message = e.0.clone();
                let _ = self.record(&r, class, state, done, phases.len(), Some(&message), began).await;
                let _ = self
                    .log_entry(id, "fail", Some(&r.checksum), Some(class), Some(state), began, Some(&message))
                    .await;
                let mut hint = if done > 0 {
                    format!(" ({done} of {} phases committed; `m migrate` resumes from there)", phases.len())
                } else {
                    " (nothing was changed)".to_string()
                };
                if message.contains("already exists") && r.revision.parents.is_empty() {
                    hint.push_str(
                        ". The database already has these tables but no migration history: it was created outside \
                         the migrations (e.g. by an earlier version); use a new database, or drop the tables",
                    );
                }
                Err(err(format!("migrations/{} failed: {message}{hint}", r.file)))
            }
        }
    }

    async fn run_stmt(&mut self, st: &Stmt) -> Result<(), MigrateError> {
        match st {
            Stmt::Exec(sql) => self.conn.exec(sql).await.map_err(|e| err(format!("{e}\n  in: {sql}"))),
            Stmt::ExpectNone { sql, message } => {
                if self.conn.any_row(sql).await? {
                    Err(err(format!("check failed: {message}")))
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn run_sqlite(
        &mut self,
        r: &RevisionFile,
        phases: &[Phase],
        class: Class,
        began: Instant,
    ) -> Result<bool, (usize, MigrateError)> {
        self.sqlite_begin().await.map_err(|e| (0, e))?;
        let result = async {
            // Another migrator may have applied it while this one waited for the lock.
            let state = self
                .conn
                .rows("SELECT state FROM m_migrations WHERE id = $1", &[Arg::Text(r.revision.id.clone())])
                .await?;
            if state.first().and_then(|row| row.first().cloned().flatten()).as_deref() == Some("applied") {
                return Ok(false);
            }
            for st in phases.iter().flat_map(|p| &p.statements) {
                self.run_stmt(st).await?;
            }
            // No row may break a foreign key (step 9 of the rebuild procedure).
            if self.conn.any_row("PRAGMA foreign_key_check").await? {
                return Err(err("PRAGMA foreign_key_check found rows that break a foreign key"));
            }
            self.record(r, class, "applied", phases.len(), phases.len(), None, began).await?;
            self.log_entry(&r.revision.id, "apply", Some(&r.checksum), Some(class), Some("applied"), began, None)
                .await?;
            Ok(true)
        }
        .await;
        self.sqlite_end(result).await.map_err(|e| (0, e))
    }

    async fn run_postgres(
        &mut self,
        r: &RevisionFile,
        phases: &[Phase],
        class: Class,
        start: usize,
        began: Instant,
    ) -> Result<bool, (usize, MigrateError)> {
        let total = phases.len();
        for (k, phase) in phases.iter().enumerate().skip(start) {
            let last = k + 1 == total;
            self.pg_begin(phase.transactional).await.map_err(|e| (k, e))?;
            let result = async {
                for st in &phase.statements {
                    self.run_stmt(st).await?;
                }
                // Progress is recorded in the phase's own transaction.
                let state = if last { "applied" } else { "partial" };
                self.record(r, class, state, k + 1, total, None, began).await?;
                if last {
                    self.log_entry(&r.revision.id, "apply", Some(&r.checksum), Some(class), Some(state), began, None)
                        .await?;
                }
                Ok(())
            }
            .await;
            self.pg_end(phase.transactional, result).await.map_err(|e| (k, e))?;
        }
        if total == 0 {
            self.record(r, class, "applied", 0, 0, None, began).await.map_err(|e| (0, e))?;
            self.log_entry(&r.revision.id, "apply", Some(&r.checksum), Some(class), Some("applied"), began, None)
                .await
                .map_err(|e| (0, e))?;
        }
        Ok(true)
    }

    #[allow(clippy::too_many_arguments, reason = "one row of the history table")]
    async fn record(
        &mut self,
        r: &RevisionFile,
        class: Class,
        state: &str,
        done: usize,
        total: usize,
        error: Option<&str>,
        began: Instant,
    ) -> Result<(), MigrateError> {
        let sql = "INSERT INTO m_migrations (id, name, parents, checksum, class, state, steps_applied, steps_total, error, applied_at, duration_ms, tool_version) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                   ON CONFLICT (id) DO UPDATE SET checksum = excluded.checksum, class = excluded.class, state = excluded.state, \
                   steps_applied = excluded.steps_applied, steps_total = excluded.steps_total, error = excluded.error, \
                   applied_at = excluded.applied_at, duration_ms = excluded.duration_ms, tool_version = excluded.tool_version";
        self.conn
            .run(
                sql,
                &[
                    Arg::Text(r.revision.id.clone()),
                    Arg::Text(r.revision.name.clone()),
                    Arg::Text(r.revision.parents.join(",")),
                    Arg::Text(r.checksum.clone()),
                    Arg::Text(class.as_str().into()),
                    Arg::Text(state.into()),
                    Arg::Int(done as i64),
                    Arg::Int(total as i64),
                    Arg::OptText(error.map(str::to_string)),
                    Arg::Text(now()),
                    Arg::Int(began.elapsed().as_millis() as i64),
                    Arg::Text(self.tool_version.clone()),
                ],
            )
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments, reason = "one row of the log")]
    async fn log_entry(
        &mut self,
        id: &str,
        action: &str,
        checksum: Option<&str>,
        class: Option<Class>,
        state: Option<&str>,
        began: Instant,
        detail: Option<&str>,
    ) -> Result<(), MigrateError> {
        self.conn
            .run(
                "INSERT INTO m_migration_log (id, action, at, checksum, class, state, duration_ms, detail, tool_version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    Arg::Text(id.into()),
                    Arg::Text(action.into()),
                    Arg::Text(now()),
                    Arg::OptText(checksum.map(str::to_string)),
                    Arg::OptText(class.map(|c| c.as_str().to_string())),
                    Arg::OptText(state.map(str::to_string)),
                    Arg::Int(began.elapsed().as_millis() as i64),
                    Arg::OptText(detail.map(str::to_string)),
                    Arg::Text(self.tool_version.clone()),
                ],
            )
            .await?;
        Ok(())
    }

    /// Roll back applied revisions, newest first: `steps` of them, or all applied after `to`.
    /// A DANGEROUS downgrade needs `force`. Returns the ids rolled back.
    pub async fn rollback(
        &mut self,
        steps: Option<usize>,
        to: Option<&str>,
        force: bool,
    ) -> Result<Vec<String>, MigrateError> {
        self.lock().await?;
        let result = self.rollback_locked(steps, to, force).await;
        self.unlock().await?;
        result
    }

    /// The revisions a rollback would undo, newest first, with their downgrade steps classified.
    pub async fn rollback_plan(
        &mut self,
        steps: Option<usize>,
        to: Option<&str>,
    ) -> Result<Vec<(String, Vec<m_codegen::migrate::Step>, Class)>, MigrateError> {
        let history = self.verify().await?;
        if history.iter().any(|h| h.state != "applied") {
            return Err(err("a revision is failed or partial: finish it with `m migrate` or `m migrate:repair` first"));
        }
        let applied: Vec<String> = self
            .chain
            .revisions
            .iter()
            .filter(|r| history.iter().any(|h| h.id == r.revision.id))
            .map(|r| r.revision.id.clone())
            .collect();
        let targets: Vec<String> = match (steps, to) {
            (_, Some(to)) => {
                if !applied.iter().any(|a| a == to) {
                    return Err(err(format!("revision {to} is not applied")));
                }
                let keep = self.chain.ancestors(to);
                applied.iter().rev().filter(|a| !keep.contains(*a)).cloned().collect()
            }
            (n, None) => applied.iter().rev().take(n.unwrap_or(1)).cloned().collect(),
        };
        let mut current: BTreeSet<String> = applied.iter().cloned().collect();
        let mut plan = Vec::new();
        for id in targets {
            let children: Vec<&RevisionFile> = self
                .chain
                .revisions
                .iter()
                .filter(|r| r.revision.parents.contains(&id) && current.contains(&r.revision.id))
                .collect();
            if let Some(c) = children.first() {
                return Err(err(format!("cannot roll back {id}: {} is applied on top of it", c.file)));
            }
            let state = self.chain.replay_set(&current)?;
            let r = self.chain.get(&id).ok_or_else(|| err(format!("no revision {id}")))?;
            let ops: Vec<Op> = r.revision.down.iter().map(|s| s.op.clone()).collect();
            let computed =
                classify(ops, &state, &Hints::default()).map_err(|e| err(format!("migrations/{}: {e}", r.file)))?;
            let down: Vec<m_codegen::migrate::Step> = r
                .revision
                .down
                .iter()
                .zip(computed)
                .map(|(d, c)| if c.class > d.class { c } else { d.clone() })
                .collect();
            let class = max_class(&down);
            current.remove(&id);
            plan.push((id, down, class));
        }
        Ok(plan)
    }

    async fn rollback_locked(
        &mut self,
        steps: Option<usize>,
        to: Option<&str>,
        force: bool,
    ) -> Result<Vec<String>, MigrateError> {
        let plan = self.rollback_plan(steps, to).await?;
        if !force && let Some((id, down, _)) = plan.iter().find(|(_, _, c)| *c == Class::Dangerous) {
            return Err(err(format!(
                "rolling back {id} is DANGEROUS ({}): it loses data; run again with --force after a backup",
                dangerous_codes(down).join(", ")
            )));
        }
        let mut applied: BTreeSet<String> = self.history().await?.into_iter().map(|h| h.id).collect::<BTreeSet<_>>();
        let mut done = Vec::new();
        for (id, down, class) in plan {
            let state = self.chain.replay_set(&applied)?;
            let ops: Vec<&Op> = down.iter().map(|s| &s.op).collect();
            let dialect = self.dialect();
            let r = self.chain.get(&id).cloned().ok_or_else(|| err(format!("no revision {id}")))?;
            let phases = render(&ops, &state, dialect).map_err(|e| err(format!("migrations/{}: {e}", r.file)))?;
            let began = Instant::now();
            let result = self.run_down(&id, &phases).await;
            if let Err(e) = result {
                let _ = self
                    .log_entry(&id, "rollback-failed", Some(&r.checksum), Some(class), None, began, Some(&e.0))
                    .await;
                return Err(err(format!("rolling back migrations/{} failed: {e}", r.file)));
            }
            self.log_entry(&id, "rollback", Some(&r.checksum), Some(class), Some("rolled back"), began, None).await?;
            applied.remove(&id);
            done.push(id);
        }
        Ok(done)
    }

    /// Run a downgrade. SQLite: one transaction (nothing changes on failure). PostgreSQL: phase by
    /// phase; the history row goes away in the last phase's transaction, and a failure after a
    /// committed phase marks the revision `rollback_failed` (it blocks `m migrate` until repaired).
    async fn run_down(&mut self, id: &str, phases: &[Phase]) -> Result<(), MigrateError> {
        let delete_sql = "DELETE FROM m_migrations WHERE id = $1";
        if self.dialect() == Dialect::Sqlite {
            self.sqlite_begin().await?;
            let result = async {
                for st in phases.iter().flat_map(|p| &p.statements) {
                    self.run_stmt(st).await?;
                }
                if self.conn.any_row("PRAGMA foreign_key_check").await? {
                    return Err(err("PRAGMA foreign_key_check found rows that break a foreign key"));
                }
                self.conn.run(delete_sql, &[Arg::Text(id.into())]).await?;
                Ok(())
            }
            .await;
            return self.sqlite_end(result).await;
        }
        let n = phases.len();
        if n == 0 {
            self.conn.run(delete_sql, &[Arg::Text(id.into())]).await?;
            return Ok(());
        }
        for (k, phase) in phases.iter().enumerate() {
            let last = k + 1 == n;
            let result = match self.pg_begin(phase.transactional).await {
                Err(e) => Err(e),
                Ok(()) => {
                    let body = async {
                        for st in &phase.statements {
                            self.run_stmt(st).await?;
                        }
                        if last {
                            self.conn.run(delete_sql, &[Arg::Text(id.into())]).await?;
                        }
                        Ok(())
                    }
                    .await;
                    self.pg_end(phase.transactional, body).await
                }
            };
            if let Err(e) = result {
                if k > 0 {
                    let message = format!("{k} of {n} phases of the downgrade committed: {e}");
                    let _ = self
                        .conn
                        .run(
                            "UPDATE m_migrations SET state = $1, error = $2 WHERE id = $3",
                            &[Arg::Text(ROLLBACK_FAILED.into()), Arg::Text(message), Arg::Text(id.into())],
                        )
                        .await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// SQLite: `foreign_keys=OFF` (outside the transaction, where it takes effect), then
    /// `BEGIN IMMEDIATE`, which waits for other writers (and migrators).
    async fn sqlite_begin(&mut self) -> Result<(), MigrateError> {
        self.conn.exec("PRAGMA foreign_keys = OFF").await?;
        if let Err(e) = self.conn.exec("BEGIN IMMEDIATE").await {
            let _ = self.conn.exec("PRAGMA foreign_keys = ON").await;
            return Err(e.into());
        }
        Ok(())
    }

    /// SQLite: COMMIT an Ok result (a failed COMMIT is rolled back), ROLLBACK an error, and
    /// `foreign_keys=ON` whatever happened.
    async fn sqlite_end<T>(&mut self, mut result: Result<T, MigrateError>) -> Result<T, MigrateError> {
        if result.is_ok()
            && let Err(e) = self.conn.exec("COMMIT").await
        {
            result = Err(e.into());
        }
        if result.is_err() {
            let _ = self.conn.exec("ROLLBACK").await;
        }
        let _ = self.conn.exec("PRAGMA foreign_keys = ON").await;
        result
    }

    /// PostgreSQL: start a phase — a transaction with `SET LOCAL` timeouts, or session timeouts
    /// for a non-transactional phase.
    async fn pg_begin(&mut self, transactional: bool) -> Result<(), MigrateError> {
        let (l, s) = (self.timeouts.lock.as_millis(), self.timeouts.statement.as_millis());
        if !transactional {
            self.conn.exec(&format!("SET lock_timeout = {l}; SET statement_timeout = {s}")).await?;
            return Ok(());
        }
        self.conn.exec("BEGIN").await?;
        if let Err(e) =
            self.conn.exec(&format!("SET LOCAL lock_timeout = {l}; SET LOCAL statement_timeout = {s}")).await
        {
            let _ = self.conn.exec("ROLLBACK").await;
            return Err(e.into());
        }
        Ok(())
    }

    /// PostgreSQL: end a phase — COMMIT an Ok result, ROLLBACK an error or a failed COMMIT.
    async fn pg_end<T>(&mut self, transactional: bool, mut result: Result<T, MigrateError>) -> Result<T, MigrateError> {
        if !transactional {
            return result;
        }
        if result.is_ok()
            && let Err(e) = self.conn.exec("COMMIT").await
        {
            result = Err(e.into());
        }
        if result.is_err() {
            let _ = self.conn.exec("ROLLBACK").await;
        }
        result
    }

    /// Accept the current state of a revision explicitly (logged): re-stamp an applied revision's
    /// edited file; mark a partial revision, or one whose rollback failed half-way, as applied
    /// once it was finished by hand; clear a failed attempt (nothing was committed) so the
    /// revision is simply pending; forget a revision whose file was removed.
    pub async fn repair(&mut self, id: &str) -> Result<String, MigrateError> {
        self.lock().await?;
        let result = self.repair_locked(id).await;
        self.unlock().await?;
        result
    }

    async fn repair_locked(&mut self, id: &str) -> Result<String, MigrateError> {
        let history = self.history().await?;
        let began = Instant::now();
        let row = history.iter().find(|h| h.id == id);
        match (row, self.chain.get(id).cloned()) {
            (None, _) => Err(err(format!("revision {id} has no history row: nothing to repair"))),
            (Some(h), None) => {
                self.conn.run("DELETE FROM m_migrations WHERE id = $1", &[Arg::Text(id.into())]).await?;
                let detail = format!("history row removed: migrations/{}_{}.toml no longer exists", h.id, h.name);
                self.log_entry(id, "repair", Some(&h.checksum), None, Some("removed"), began, Some(&detail)).await?;
                Ok(detail)
            }
            (Some(h), Some(_)) if h.state == "failed" => {
                // Nothing of it was committed: forget the failure; the revision is pending again.
                self.conn.run("DELETE FROM m_migrations WHERE id = $1", &[Arg::Text(id.into())]).await?;
                let detail = format!("cleared the failed attempt of revision {id}; it is pending again");
                self.log_entry(id, "repair", Some(&h.checksum), None, Some("pending"), began, Some(&detail)).await?;
                Ok(detail)
            }
            (Some(h), Some(r)) => {
                let detail = format!(
                    "re-stamped migrations/{}: checksum {} -> {}, state {} -> applied",
                    r.file,
                    &h.checksum[..h.checksum.len().min(12)],
                    &r.checksum[..r.checksum.len().min(12)],
                    h.state
                );
                let class = self.chain.analyze(id).map(|a| a.class).unwrap_or(r.revision.class);
                let total = h.steps_total.max(0) as usize;
                self.record(&r, class, "applied", total, total, None, began).await?;
                self.log_entry(id, "repair", Some(&r.checksum), Some(class), Some("applied"), began, Some(&detail))
                    .await?;
                Ok(detail)
            }
        }
    }

    /// Run raw SQL on the migrator's connection (tests and `--live` checks).
    pub async fn conn(&mut self) -> &mut MigConn {
        &mut self.conn
    }
}
