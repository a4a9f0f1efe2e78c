//! `m worker` and `m job:*`: run the queue in its own process, run or queue one job by hand,
//! list jobs, queue a failed job again, delete a queued or failed one.

use std::time::Duration;

use anyhow::{Context as _, bail};

use super::{JobCtx, JobState, Worker, WorkerConfig, now_us, store};
use crate::app::App;
use crate::config::Config;
use crate::db::Db;
use crate::repo::Repo;

/// One `m worker` / `m job:*` command.
#[derive(Debug, Clone)]
pub enum JobCommand {
    Worker { concurrency: Option<usize> },
    Run { name: String, args: Option<String>, enqueue: bool },
    List { state: Option<String>, limit: u32, json: bool },
    Retry { id: String },
    Delete { id: String },
}

/// Connect and check that the database is at the chain's head (the queue table exists and the
/// jobs see the schema they were built for).
async fn connect(config: &Config, app: App) -> anyhow::Result<Repo> {
    let ctx = crate::migrate::commands::Ctx::new(config, &app)?;
    crate::migrate::commands::production_check(&ctx).await?;
    let db =
        Db::connect(config.database_url.expose(), &config.pool()).await.context("cannot connect to the database")?;
    let repo = Repo::new(app, db, config.list_limits());
    repo.set_job_attempts(config.job_attempts);
    Ok(repo)
}

pub async fn run(cmd: JobCommand, config: &Config, app: App) -> anyhow::Result<()> {
    if let JobCommand::Run { name, .. } = &cmd
        && app.job(name).is_none()
    {
        let known: Vec<&str> = app.jobs().iter().map(|j| j.name).collect();
        bail!(
            "no job named `{name}`; this application defines: {}",
            if known.is_empty() { "none".into() } else { known.join(", ") }
        );
    }
    let repo = connect(config, app).await?;
    match cmd {
        JobCommand::Worker { concurrency } => {
            // Install the metrics recorder before the first job records anything.
            crate::metrics::handle();
            let mut wc = WorkerConfig::from_config(config);
            if let Some(n) = concurrency {
                wc.concurrency = n;
            }
            if wc.concurrency == 0 {
                bail!("a worker needs at least one slot: --concurrency or M_JOB_WORKERS must be at least 1");
            }
            if let Some(addr) = config.metrics_addr {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (M_METRICS_ADDR)"))?;
                let router = crate::http::worker_router(repo.clone());
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, router).await {
                        tracing::error!("metrics listener failed: {e}");
                    }
                });
            }
            let deadline = Duration::from_secs(config.shutdown_timeout_secs);
            Worker::new(repo, wc).run_until(crate::server::shutdown_signal(), deadline).await;
            Ok(())
        }
        JobCommand::Run { name, args, enqueue } => {
            let args: serde_json::Value = match args {
                Some(a) => serde_json::from_str(&a).context("--args must be JSON")?,
                None => serde_json::json!({}),
            };
            if enqueue {
                let id = repo.enqueue(&name, &args, Some(crate::perms::ADMINISTRATOR)).await?;
                println!("{id}");
                return Ok(());
            }
            let Some(def) = repo.app().job(&name).copied() else { bail!("no job named `{name}`") };
            let ctx = JobCtx {
                repo: repo.clone(),
                id: format!("cli-{}", uuid::Uuid::now_v7()),
                attempt: 1,
                enqueued_by: Some(crate::perms::ADMINISTRATOR.to_string()),
            };
            let started = std::time::Instant::now();
            let timeout = Duration::from_secs(config.job_timeout_secs);
            match tokio::time::timeout(timeout, (def.run)(&ctx, args)).await {
                Ok(Ok(())) => {
                    eprintln!("{name}: done in {} ms", started.elapsed().as_millis());
                    Ok(())
                }
                Ok(Err(e)) => bail!("{name} failed: {}", e.message),
                Err(_) => bail!("{name} ran past the job timeout ({} s)", timeout.as_secs()),
            }
        }
        JobCommand::List { state, limit, json } => {
            let state = match state.as_deref() {
                None => None,
                Some(s) => Some(
                    JobState::parse(s)
                        .with_context(|| format!("--state must be one of queued, running, done, failed (not `{s}`)"))?,
                ),
            };
            let jobs = repo.job_list(state, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
                return Ok(());
            }
            for (s, n) in repo.job_counts().await? {
                print!("{}: {n}  ", s.as_str());
            }
            println!();
            for j in jobs {
                let error = j.error.as_deref().map(|e| format!("  ({e})")).unwrap_or_default();
                println!(
                    "{}  {:<8} {:<28} attempts {}/{}  by {}{error}",
                    j.id,
                    j.state,
                    j.job,
                    j.attempts,
                    j.max_attempts,
                    j.enqueued_by.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        JobCommand::Delete { id } => {
            if store::delete(repo.db(), &id).await? {
                println!("{id} deleted");
                Ok(())
            } else {
                bail!("no queued or failed job has the id {id}")
            }
        }
        JobCommand::Retry { id } => {
            if store::retry(repo.db(), &id, now_us()).await? {
                println!("{id} queued again");
                Ok(())
            } else {
                bail!("no failed job has the id {id}")
            }
        }
    }
}
