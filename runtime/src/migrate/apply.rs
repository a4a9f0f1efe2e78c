//! Applying pending revisions: heads and class checks, phases run in order (a transaction, or
//! one non-transactional PostgreSQL step) with progress recorded per phase so a failed apply
//! resumes, and the transaction framing both dialects need.

use std::collections::BTreeSet;
use std::time::Instant;

use m_schema::Dialect;
use m_schema::migrate::model::Schema;
use m_schema::migrate::{Class, Op, Phase, RevisionFile, Stmt, render};

use super::{Applied, Arg, MigrateError, Migrator, ROLLBACK_FAILED, err};

impl Migrator {
    /// Revisions not yet applied (including failed and partial ones), in apply order.
    pub fn pending<'a>(&'a self, history: &[Applied]) -> Vec<&'a RevisionFile> {
        let done: BTreeSet<&str> = history.iter().filter(|h| h.state == "applied").map(|h| h.id.as_str()).collect();
        self.chain.revisions.iter().filter(|r| !done.contains(r.revision.id.as_str())).collect()
    }

    pub(super) fn check_heads(&self) -> Result<(), MigrateError> {
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

    pub(super) async fn migrate_locked(&mut self, only_safe: bool) -> Result<Vec<String>, MigrateError> {
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
    pub(super) async fn apply_one(
        &mut self,
        id: &str,
        before: &Schema,
        class: Class,
        start: usize,
    ) -> Result<bool, MigrateError> {
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

    pub(super) async fn run_stmt(&mut self, st: &Stmt) -> Result<(), MigrateError> {
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

    pub(super) async fn run_sqlite(
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

    pub(super) async fn run_postgres(
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

    /// SQLite: `foreign_keys=OFF` (outside the transaction, where it takes effect), then
    /// `BEGIN IMMEDIATE`, which waits for other writers (and migrators).
    pub(super) async fn sqlite_begin(&mut self) -> Result<(), MigrateError> {
        self.conn.exec("PRAGMA foreign_keys = OFF").await?;
        if let Err(e) = self.conn.exec("BEGIN IMMEDIATE").await {
            let _ = self.conn.exec("PRAGMA foreign_keys = ON").await;
            return Err(e.into());
        }
        Ok(())
    }

    /// SQLite: COMMIT an Ok result (a failed COMMIT is rolled back), ROLLBACK an error, and
    /// `foreign_keys=ON` whatever happened.
    pub(super) async fn sqlite_end<T>(&mut self, mut result: Result<T, MigrateError>) -> Result<T, MigrateError> {
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
    pub(super) async fn pg_begin(&mut self, transactional: bool) -> Result<(), MigrateError> {
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
    pub(super) async fn pg_end<T>(
        &mut self,
        transactional: bool,
        mut result: Result<T, MigrateError>,
    ) -> Result<T, MigrateError> {
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
}
