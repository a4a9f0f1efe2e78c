//! `m migrate:*`: run a migration command and print its result as text or JSON.

use std::process::ExitCode;

use serde_json::json;

use crate::migrate::MigrateError;
use crate::migrate::commands::{self, Ctx, use_color};

/// The migration commands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum MigrateCommand {
    /// Apply pending revisions (refuses DANGEROUS ones that are not acknowledged).
    #[command(name = "migrate")]
    Migrate,
    /// Applied and pending revisions, DocType changes without a revision, heads.
    #[command(name = "migrate:status")]
    Status {
        /// Also compare the database's tables, columns and indexes with the revisions.
        #[arg(long)]
        live: bool,
    },
    /// Write a revision for the DocType changes, and print its review card.
    #[command(name = "migrate:create")]
    Create {
        /// A short name, e.g. add_phone_to_customer.
        name: String,
        /// Join the chain's two heads instead.
        #[arg(long)]
        merge: bool,
    },
    /// Roll back applied revisions (one by default).
    #[command(name = "migrate:rollback")]
    Rollback {
        #[arg(long, conflicts_with = "to")]
        steps: Option<usize>,
        /// Roll back everything applied after this revision id.
        #[arg(long)]
        to: Option<String>,
        /// Run a DANGEROUS downgrade (it loses data).
        #[arg(long)]
        force: bool,
    },
    /// The log of applies, rollbacks and repairs.
    #[command(name = "migrate:history")]
    History,
    /// The chain's heads (exit status 1 with more than one).
    #[command(name = "migrate:heads")]
    Heads,
    /// Accept an edited, removed, failed or partial revision explicitly (logged).
    #[command(name = "migrate:repair")]
    Repair { id: String },
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Run one command; errors are printed by the caller.
pub async fn run(cmd: MigrateCommand, ctx: Ctx, json: bool) -> Result<ExitCode, MigrateError> {
    if let Some(w) = ctx.disk_warning()
        && !json
    {
        eprintln!("warning: {w}");
    }
    let color = use_color() && !json;
    match cmd {
        MigrateCommand::Migrate => {
            let mut m = ctx.migrator().await?;
            let mut result = m.migrate(false).await.map(|a| (a, Vec::new()));
            if let Ok((_, changed)) = &mut result {
                match crate::migrate::rls::sync(m.conn().await, &ctx.rls).await {
                    Ok(c) => *changed = c,
                    Err(e) => result = Err(e),
                }
            }
            m.close().await;
            let (applied, row_security) = result?;
            if json {
                print_json(&json!({ "applied": applied, "row_security": row_security }));
            } else {
                if applied.is_empty() {
                    println!("nothing to apply: the database is at the chain's head");
                }
                for id in &applied {
                    println!("applied {id}");
                }
                if !row_security.is_empty() {
                    let what = if ctx.rls.on { "installed" } else { "removed" };
                    println!("row security policies {what} (M_DB_RLS): {}", row_security.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Status { live } => {
            let st = commands::status(&ctx, live, color).await?;
            if json {
                print_json(&serde_json::to_value(&st).unwrap_or_default());
                return Ok(ExitCode::SUCCESS);
            }
            println!("revisions: {}", st.source);
            println!("applied: {}", st.applied.len());
            for a in &st.applied {
                let extra = if a.state == "applied" {
                    String::new()
                } else {
                    format!(
                        " [{} {}/{}: {}]",
                        a.state,
                        a.steps_applied,
                        a.steps_total,
                        a.error.clone().unwrap_or_default()
                    )
                };
                println!("  {} {} ({}, {} ms){extra}", a.id, a.name, a.class, a.duration_ms);
            }
            println!("pending: {}", st.pending.len());
            for c in &st.cards {
                println!("{c}");
            }
            if st.heads.len() > 1 {
                println!("heads: {} (run `m migrate:create --merge <name>`)", st.heads.join(", "));
            }
            if st.ungenerated.is_empty() {
                println!("DocTypes: match the revisions");
            } else {
                println!("DocType changes without a revision (run `m migrate:create <name>`):");
                for u in &st.ungenerated {
                    println!("  {u}");
                }
            }
            if let Some(drift) = &st.drift {
                if drift.is_empty() {
                    println!("live: the database matches the applied revisions");
                } else {
                    println!("live: the database differs from the applied revisions:");
                    for d in drift {
                        println!("  {d}");
                    }
                }
            }
            if let Some(values) = st.invalid_values.as_ref().filter(|v| !v.is_empty()) {
                println!("live: rows hold Select values the DocTypes no longer allow:");
                for v in values {
                    println!("  {v}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Create { name, merge } => {
            let c = commands::create(&ctx, &name, merge, color)?;
            if json {
                print_json(&serde_json::to_value(&c).unwrap_or_default());
            } else {
                println!("{}", c.message);
                if !c.card.is_empty() {
                    print!("\n{}", c.card);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Rollback { steps, to, force } => {
            let mut m = ctx.migrator().await?;
            let plan = m.rollback_plan(steps, to.as_deref()).await;
            let result = match plan {
                Ok(plan) => {
                    if !json {
                        for (id, down, class) in &plan {
                            println!("roll back {id}: {class}");
                            for s in down {
                                println!("  {:<9}  {}  {}", s.class.as_str(), s.code, s.reason);
                            }
                        }
                    }
                    m.rollback(steps, to.as_deref(), force).await
                }
                Err(e) => Err(e),
            };
            m.close().await;
            let done = result?;
            if json {
                print_json(&json!({ "rolled_back": done }));
            } else if done.is_empty() {
                println!("nothing to roll back");
            } else {
                for id in &done {
                    println!("rolled back {id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::History => {
            let mut m = ctx.migrator().await?;
            let log = m.log().await;
            m.close().await;
            let log = log?;
            if json {
                print_json(&serde_json::to_value(&log).unwrap_or_default());
            } else if log.is_empty() {
                println!("no migration has run against this database");
            } else {
                for e in &log {
                    println!(
                        "{:>4}  {}  {:<16} {}  {}{}",
                        e.seq,
                        e.at,
                        e.action,
                        e.id,
                        e.class.clone().unwrap_or_default(),
                        e.detail.as_ref().map(|d| format!("  {d}")).unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Heads => {
            let chain = ctx.chain()?;
            let heads: Vec<String> = chain.heads().iter().map(|h| h.file.clone()).collect();
            if json {
                print_json(&json!({ "heads": heads }));
            } else if heads.is_empty() {
                println!("no revisions");
            } else {
                for h in &heads {
                    println!("{h}");
                }
                if heads.len() > 1 {
                    eprintln!("{} heads: run `m migrate:create --merge <name>`", heads.len());
                }
            }
            Ok(if heads.len() > 1 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        MigrateCommand::Repair { id } => {
            let mut m = ctx.migrator().await?;
            let result = m.repair(&id).await;
            m.close().await;
            let detail = result?;
            if json {
                print_json(&json!({ "repaired": id, "detail": detail }));
            } else {
                println!("{detail}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
