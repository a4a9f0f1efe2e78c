//! One way in for every command. [`Setup`] checks the configuration (production's rules
//! included) and the application's job table — `m migrate*` needs no more; [`Setup::open`] then
//! prepares or checks the schema as the command asks, connects, and builds the services the same
//! way for `m start`, `m worker`, `m user:*`, `m job:*` and tests: the document service, the
//! user service and the job queue.

use std::sync::Arc;

use anyhow::Context as _;

use crate::app::App;
use crate::breaker::Breakers;
use crate::config::{Config, Mode};
use crate::db::{Db, PoolConfig, Sealer};
use crate::jobs::{Job, JobQueue};
use crate::list_query::ListLimits;
use crate::mail::Outbox;
use crate::migrate;
use crate::print::Printer;
use crate::repo::{Parts, Repo};
use crate::users::{Directory, Users};
use crate::webhooks::Webhooks;

/// A checked configuration and the application it serves. Only [`Setup::new`] makes one, and
/// nothing in it changes afterwards, so nothing opens without the checks.
pub struct Setup {
    config: Config,
    app: App,
    jobs: &'static [Job],
}

/// What a command does with the schema before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Development applies SAFE revisions (writing one for SAFE DocType changes); production
    /// checks that the database is at the chain's head (`m start`).
    Prepare,
    /// The database must be at the chain's head, in every mode (`m worker`, `m job:*`: the queue
    /// table exists and jobs see the schema they were built for).
    Check,
    /// Nothing is checked; the users tables must exist (`m user:*`).
    AsIs,
}

/// The services of one application over one database. Only [`Setup::open`] makes one.
#[derive(Clone)]
pub struct Runtime {
    config: Arc<Config>,
    pub repo: Repo,
    pub users: Users,
    jobs: Arc<[Job]>,
    /// The revisions the database had applied when it was opened (readiness).
    revisions: Arc<[String]>,
    schema: Schema,
    /// The breakers of the outside targets (webhook hosts, …), for readiness.
    breakers: Breakers,
}

impl Setup {
    /// Refuse a configuration that cannot run and a job table that is malformed.
    pub fn new(config: Config, app: App, jobs: &'static [Job]) -> anyhow::Result<Setup> {
        config.check().map_err(anyhow::Error::msg)?;
        crate::jobs::check_table(jobs).map_err(anyhow::Error::msg)?;
        if config.env == Mode::Production && config.encryption_key.is_none() && has_passwords(&app) {
            anyhow::bail!(
                "production needs M_ENCRYPTION_KEY (at least 32 bytes): an application DocType has a Password field"
            );
        }
        Ok(Setup { config, app, jobs })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn jobs(&self) -> &'static [Job] {
        self.jobs
    }

    /// The migration commands' context: revisions (embedded, or `migrations/` in development),
    /// the desired schema, the migrator's own connection settings.
    pub fn migrations(&self) -> Result<migrate::commands::Ctx, migrate::MigrateError> {
        migrate::commands::Ctx::new(&self.config, &self.app)
    }

    /// Prepare or check the schema, connect, and build the services.
    pub async fn open(self, schema: Schema) -> anyhow::Result<Runtime> {
        // Installed before anything records.
        crate::metrics::handle();
        let revisions = match (schema, self.config.env) {
            (Schema::Prepare, Mode::Development) => migrate::commands::development_start(&self.migrations()?).await?,
            (Schema::Prepare | Schema::Check, _) => migrate::commands::production_check(&self.migrations()?).await?,
            (Schema::AsIs, _) => Vec::new(),
        };
        let Setup { config, app, jobs } = self;
        if config.db_rls && schema == Schema::Prepare {
            migrate::rls::check_server_role(config.database_url.expose()).await?;
        }
        let db = Db::connect(config.database_url.expose(), &PoolConfig::from(&config))
            .await
            .context("cannot connect to the database")?;
        // The application's jobs and the runtime's own, in one table for the queue and workers.
        let jobs: Arc<[Job]> = jobs.iter().chain(BUILT_IN_JOBS).copied().collect();
        let queue = JobQueue::new(db.clone(), jobs.iter().map(|j| j.name).collect(), config.job_attempts);
        let directory = Arc::new(Directory::default());
        let breakers = Breakers::default();
        let webhooks = Webhooks::new(&config, &app, breakers.clone());
        let outbox = Outbox::new(&config, &app, breakers.clone()).map_err(anyhow::Error::msg)?;
        let printer = Printer::new(&config, &app, breakers.clone()).map_err(anyhow::Error::msg)?;
        let observers = vec![Directory::forget_written(directory.clone()), webhooks.forget_written()];
        let key = config.encryption_key.as_ref().map(|k| k.expose());
        let sealer = match config.env {
            Mode::Development => {
                if key.is_none() && has_passwords(&app) {
                    tracing::warn!(
                        "M_ENCRYPTION_KEY is not set: Password fields are stored unencrypted (development only)"
                    );
                }
                Sealer::new(key)
            }
            Mode::Production => {
                if key.is_none() {
                    tracing::warn!("M_ENCRYPTION_KEY is not set: webhook secrets cannot be saved");
                }
                Sealer::production(key)
            }
        };
        let limits = list_limits(&config);
        let repo = Repo::new(Parts { app, db, limits, queue, observers, sealer, webhooks, outbox, printer });
        let users = Users::new(repo.clone(), directory);
        let administrator = users.ensure_administrator().await;
        match schema {
            Schema::AsIs => administrator.map_err(|e| {
                anyhow::anyhow!(
                    "the database has no users table yet ({e}): run `m migrate`, or start the server once in development"
                )
            })?,
            _ => administrator.context("cannot create the built-in Administrator user")?,
        }
        Ok(Runtime { config: Arc::new(config), repo, users, jobs, revisions: revisions.into(), schema, breakers })
    }
}

/// The runtime's own jobs, run beside the application's (their names start with `m:`).
static BUILT_IN_JOBS: &[Job] = &[
    Job {
        name: crate::jobs::doc_events::JOB_NAME,
        run: |ctx, args| Box::pin(crate::jobs::deliver_doc_event(ctx, args)),
    },
    Job { name: crate::webhooks::JOB_NAME, run: |ctx, args| Box::pin(crate::webhooks::deliver::run(ctx, args)) },
    Job { name: crate::mail::JOB_NAME, run: |ctx, args| Box::pin(crate::mail::deliver::run(ctx, args)) },
];

/// Whether one of the application's DocTypes has a Password field (its values need
/// `M_ENCRYPTION_KEY` at rest). The built-in Webhook's secret does not count: without a key, a
/// production server runs and refuses to store one.
fn has_passwords(app: &App) -> bool {
    app.schemas().iter().any(|s| !s.secrets.is_empty() && !crate::webhooks::is_built_in(s.name()))
}

/// The list caps of the configuration (`M_MAX_PAGE_SIZE`, `M_MAX_FIELDS`, …).
pub fn list_limits(config: &Config) -> ListLimits {
    ListLimits {
        default_page_size: 20.min(config.max_page_size),
        max_page_size: config.max_page_size,
        max_fields: config.max_fields,
        max_filters: config.max_filters,
        max_in_values: config.max_in_values,
    }
}

impl Runtime {
    /// The configuration it was opened with (checked).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The background jobs: the application's and the runtime's own.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The revisions the database had applied when it was opened.
    pub fn revisions(&self) -> &[String] {
        &self.revisions
    }

    /// The circuit breakers of the outside targets.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// How the schema was treated when it was opened.
    pub fn schema(&self) -> Schema {
        self.schema
    }

    /// A job worker over these services.
    pub fn worker(&self, config: crate::jobs::WorkerConfig) -> crate::jobs::Worker {
        crate::jobs::Worker::new(self.repo.clone(), self.users.clone(), self.jobs.clone(), config)
    }
}
