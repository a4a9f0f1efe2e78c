//! `m worker` and `m job:*`: run the queue in its own process, run or queue one job by hand,
//! list jobs, queue a failed job again, delete a queued or failed one.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::jobs::{self, JobCtx, JobState, WorkerConfig};
use crate::services::Setup;

/// `m worker` and the job commands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum JobCommand {
    /// Run background jobs from the queue until SIGTERM / ctrl-c.
    Worker {
        /// Jobs run at once (default M_JOB_WORKERS).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Run one job now, in this process (or queue it with --enqueue), as the Administrator.
    #[command(name = "job:run")]
    Run {
        name: String,
        /// The job's arguments as JSON (default `{}`).
        #[arg(long)]
        args: Option<String>,
        /// Put it on the queue for a worker instead, and print its id.
        #[arg(long)]
        enqueue: bool,
    },
    /// Jobs by state, and the newest jobs.
    #[command(name = "job:list")]
    List {
        /// Only jobs in this state: queued, running, done, failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Queue a failed job again, with fresh attempts.
    #[command(name = "job:retry")]
    Retry { id: String },
    /// Delete a queued or failed job (say, one whose job no build defines any more).
    #[command(name = "job:delete")]
    Delete { id: String },
}

pub async fn run(cmd: JobCommand, setup: Setup, json: bool) -> anyhow::Result<()> {
    // The job to run, known before anything is opened.
    let job = match &cmd {
        JobCommand::Run { name, .. } => Some(jobs::find(setup.jobs(), name).copied().ok_or_else(|| {
            let known: Vec<&str> = setup.jobs().iter().map(|j| j.name).collect();
            anyhow::anyhow!(
                "no job named `{name}`; this application defines: {}",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            )
        })?),
        _ => None,
    };
    let rt = setup.open(crate::services::Schema::Check).await?;
    let config = rt.config().clone();
    match cmd {
        JobCommand::Worker { concurrency } => {
            let mut wc = WorkerConfig::from_config(&config);
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
                crate::server::serve_in_background(listener, crate::http::worker_router(rt.repo.clone()));
            }
            let deadline = Duration::from_secs(config.shutdown_timeout_secs);
            rt.worker(wc).run_until(crate::server::shutdown_signal(), deadline).await;
            Ok(())
        }
        JobCommand::Run { name, args, enqueue } => {
            let args: serde_json::Value = match args {
                Some(a) => serde_json::from_str(&a).context("--args must be JSON")?,
                None => serde_json::json!({}),
            };
            if enqueue {
                let id = rt.repo.enqueue(&name, &args, Some(crate::perms::ADMINISTRATOR)).await?;
                println!("{id}");
                return Ok(());
            }
            let Some(def) = job else { bail!("no job named `{name}`") };
            let ctx = JobCtx {
                repo: rt.repo.clone(),
                users: rt.users.clone(),
                id: format!("cli-{}", uuid::Uuid::now_v7()),
                attempt: 1,
                max_attempts: 1,
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
        JobCommand::List { state, limit } => {
            let state = match state.as_deref() {
                None => None,
                Some(s) => Some(
                    JobState::parse(s)
                        .with_context(|| format!("--state must be one of queued, running, done, failed (not `{s}`)"))?,
                ),
            };
            let jobs = rt.repo.jobs().list(state, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
                return Ok(());
            }
            for (s, n) in rt.repo.jobs().counts().await? {
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
        JobCommand::Delete { id } => report(
            rt.repo.jobs().delete(&id).await?,
            || format!("{id} deleted"),
            || format!("no queued or failed job has the id {id}"),
        ),
        JobCommand::Retry { id } => report(
            rt.repo.jobs().retry(&id).await?,
            || format!("{id} queued again"),
            || format!("no failed job has the id {id}"),
        ),
    }
}

/// Print what a change to one job did, or fail saying why nothing was changed.
fn report(changed: bool, done: impl FnOnce() -> String, refused: impl FnOnce() -> String) -> anyhow::Result<()> {
    if !changed {
        bail!("{}", refused());
    }
    println!("{}", done());
    Ok(())
}
