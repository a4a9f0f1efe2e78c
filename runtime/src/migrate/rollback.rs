//! Rolling back applied revisions (their down steps, classified like any other) and repairing a
//! revision an operator accepts as it is.

use std::collections::BTreeSet;
use std::time::Instant;

use m_schema::Dialect;
use m_schema::migrate::classify::{Hints, classify, dangerous_codes, max_class};
use m_schema::migrate::{Class, Op, Phase, RevisionFile, render};

use super::{Arg, MigrateError, Migrator, ROLLBACK_FAILED, err};

impl Migrator {
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
    ) -> Result<Vec<(String, Vec<m_schema::migrate::Step>, Class)>, MigrateError> {
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
            let down: Vec<m_schema::migrate::Step> = r
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

    pub(super) async fn rollback_locked(
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
    pub(super) async fn run_down(&mut self, id: &str, phases: &[Phase]) -> Result<(), MigrateError> {
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

    pub(super) async fn repair_locked(&mut self, id: &str) -> Result<String, MigrateError> {
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
}
