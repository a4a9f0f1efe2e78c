//! The history tables (`m_migrations`, one row per applied revision, and the append-only
//! `m_migrations_log`): creating them, reading them, checking applied revisions against the
//! chain (a modified or missing one is a hard error) and recording what a command did.

use std::time::Instant;

use m_schema::Dialect;
use m_schema::migrate::{Class, RevisionFile};
use serde::Serialize;

use super::{Arg, MigrateError, Migrator, err, now};

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

impl Migrator {
    pub(super) async fn ensure_tables(&mut self) -> Result<(), MigrateError> {
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

    #[allow(clippy::too_many_arguments, reason = "one row of the history table")]
    pub(super) async fn record(
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
    pub(super) async fn log_entry(
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
}
