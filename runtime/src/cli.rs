//! The `m` command line. `start` serves the API; `routes` lists it; `migrate:*` manage the
//! schema; `user:*` manage users; `token` mints a local token.

use std::net::IpAddr;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, Mode};
use crate::jobs::cli::JobCommand;
use crate::meta::DocMeta;
use crate::server::Server;

/// What the application crate hands to the runtime.
pub struct AppInfo {
    pub name: &'static str,
    pub version: &'static str,
    /// `git describe` at build time, when built from a git checkout.
    pub git: Option<&'static str>,
    pub doctypes: Vec<&'static DocMeta>,
    pub openapi: &'static str,
    /// Revisions embedded at build time: `(file name, content)`.
    pub migrations: &'static [(&'static str, &'static str)],
    /// The application's `migrations/` folder at build time (used when it still exists).
    pub migrations_dir: Option<&'static str>,
    /// The application's background jobs.
    pub jobs: &'static [crate::jobs::Job],
}

#[derive(Parser, Debug)]
#[command(name = "m", about = "M: DocTypes in TOML served as a typed HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP API.
    Start {
        /// Address to listen on (default 127.0.0.1, or M_HOST).
        #[arg(long)]
        host: Option<IpAddr>,
        /// Port to listen on (default 8000, or M_PORT).
        #[arg(long)]
        port: Option<u16>,
        /// Development mode whatever M_ENV says.
        #[arg(long)]
        dev: bool,
    },
    /// List the HTTP routes of this application.
    Routes,
    /// Apply pending revisions (refuses DANGEROUS ones that are not acknowledged).
    #[command(name = "migrate")]
    Migrate(JsonFlag),
    /// Applied and pending revisions, DocType changes without a revision, heads.
    #[command(name = "migrate:status")]
    MigrateStatus {
        /// Also compare the database's tables, columns and indexes with the revisions.
        #[arg(long)]
        live: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Write a revision for the DocType changes, and print its review card.
    #[command(name = "migrate:create")]
    MigrateCreate {
        /// A short name, e.g. add_phone_to_customer.
        name: String,
        /// Join the chain's two heads instead.
        #[arg(long)]
        merge: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Roll back applied revisions (one by default).
    #[command(name = "migrate:rollback")]
    MigrateRollback {
        #[arg(long, conflicts_with = "to")]
        steps: Option<usize>,
        /// Roll back everything applied after this revision id.
        #[arg(long)]
        to: Option<String>,
        /// Run a DANGEROUS downgrade (it loses data).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The log of applies, rollbacks and repairs.
    #[command(name = "migrate:history")]
    MigrateHistory(JsonFlag),
    /// The chain's heads (exit status 1 with more than one).
    #[command(name = "migrate:heads")]
    MigrateHeads(JsonFlag),
    /// Print a bearer token signed with M_JWT_SECRET, for local use (refused in production). The
    /// user's roles come from the database when the token is used.
    Token {
        /// The user the token names (`sub`): an existing user's email, or Administrator.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Create a user (`--password` or `--password-stdin` to let them log in; `--role` repeatable).
    #[command(name = "user:create")]
    UserCreate {
        #[arg(long)]
        email: String,
        /// The password (visible in the process list while the command runs; prefer
        /// --password-stdin).
        #[arg(long)]
        password: Option<String>,
        /// Read the password from one line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        #[arg(long)]
        full_name: Option<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Give a user a role.
    #[command(name = "user:add-role")]
    UserAddRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Take a role from a user (effective within a second).
    #[command(name = "user:remove-role")]
    UserRemoveRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Disable a user: their tokens stop working within a second.
    #[command(name = "user:disable")]
    UserDisable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user.
    #[command(name = "user:enable")]
    UserEnable {
        #[arg(long)]
        email: String,
    },
    /// Set a user's password (from --password, or one line of standard input).
    #[command(name = "user:set-password")]
    UserSetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List users with their roles.
    #[command(name = "user:list")]
    UserList(JsonFlag),
    /// Run background jobs from the queue until SIGTERM / ctrl-c.
    Worker {
        /// Jobs run at once (default M_JOB_WORKERS).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Run one job now, in this process (or queue it with --enqueue), as the Administrator.
    #[command(name = "job:run")]
    JobRun {
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
    JobList {
        /// Only jobs in this state: queued, running, done, failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Queue a failed job again, with fresh attempts.
    #[command(name = "job:retry")]
    JobRetry { id: String },
    /// Delete a queued or failed job (say, one whose job no build defines any more).
    #[command(name = "job:delete")]
    JobDelete { id: String },
    /// Accept an edited, removed, failed or partial revision explicitly (logged).
    #[command(name = "migrate:repair")]
    MigrateRepair {
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(clap::Args, Debug, Clone, Copy)]
struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Run the command line; the application's `main` calls this.
pub fn main(info: AppInfo) -> ExitCode {
    // clap keeps the version for the life of the process.
    let version: &'static str = match info.git {
        Some(git) => Box::leak(format!("{} ({git})", info.version).into_boxed_str()),
        None => info.version,
    };
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let app = match App::new(info.name, info.version, info.doctypes) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = app.with_migrations(info.migrations, info.migrations_dir.map(std::path::PathBuf::from));
    let app = match app.with_jobs(info.jobs) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (dev, host, port) = match &cli.command {
        Command::Routes => {
            print!("{}", routes(&app));
            return ExitCode::SUCCESS;
        }
        Command::Start { host, port, dev } => (*dev, *host, *port),
        _ => (false, None, None),
    };
    let mut config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if dev {
        config.env = Mode::Development;
    }
    if let Some(h) = host {
        config.host = h;
    }
    if let Some(p) = port {
        config.port = p;
    }
    if let Err(e) = config.check() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let Command::Token { user, ttl } = &cli.command {
        return match token(&config, user, *ttl) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // One TLS crypto provider for the process: the listener, the JWKS and trace exporters.
    crate::http::install_crypto_provider();
    let serving = matches!(cli.command, Command::Start { .. } | Command::Worker { .. });
    let telemetry = crate::telemetry::init(&config, info.name, serving);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match (cli.command.user_command(), cli.command) {
        (_, Command::Start { .. }) => runtime.block_on(start(config, app, info.openapi)).map(|()| ExitCode::SUCCESS),
        (_, Command::Worker { concurrency }) => runtime
            .block_on(crate::jobs::cli::run(JobCommand::Worker { concurrency }, &config, app))
            .map(|()| ExitCode::SUCCESS),
        (_, Command::JobRun { name, args, enqueue }) => runtime
            .block_on(crate::jobs::cli::run(JobCommand::Run { name, args, enqueue }, &config, app))
            .map(|()| ExitCode::SUCCESS),
        (_, Command::JobList { state, limit, json }) => runtime
            .block_on(crate::jobs::cli::run(JobCommand::List { state, limit, json: json.json }, &config, app))
            .map(|()| ExitCode::SUCCESS),
        (_, Command::JobRetry { id }) => {
            runtime.block_on(crate::jobs::cli::run(JobCommand::Retry { id }, &config, app)).map(|()| ExitCode::SUCCESS)
        }
        (_, Command::JobDelete { id }) => {
            runtime.block_on(crate::jobs::cli::run(JobCommand::Delete { id }, &config, app)).map(|()| ExitCode::SUCCESS)
        }
        (Some(cmd), _) => runtime
            .block_on(crate::users::cli::run(cmd, &config, app))
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        (None, other) => {
            runtime.block_on(crate::migrate::cli::run(other.into_migrate(), &config, &app)).map_err(anyhow::Error::from)
        }
    };
    // Stop what the shutdown deadline left running, then export buffered spans.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `m token`: an HS256 token for local use.
fn token(config: &Config, user: &str, ttl: u64) -> Result<String, String> {
    if config.env == Mode::Production {
        return Err("`m token` is refused in production: tokens come from your identity provider or the login".into());
    }
    let secret = config.jwt_secret.as_ref().ok_or("M_JWT_SECRET is not set: without it the server accepts no token")?;
    if user.trim().is_empty() {
        return Err("--user must name a user".into());
    }
    let claims = crate::auth::Claims::issued_now(
        crate::users::normalise(user),
        ttl,
        config.jwt_issuer.clone(),
        config.jwt_audience.clone(),
    );
    crate::auth::sign_hs256(secret.expose().as_bytes(), &claims).map_err(|e| e.to_string())
}

impl Command {
    fn user_command(&self) -> Option<crate::users::cli::UserCommand> {
        use crate::users::cli::UserCommand as U;
        Some(match self {
            Command::UserCreate { email, password, password_stdin, full_name, roles } => U::Create {
                email: email.clone(),
                password: password.clone(),
                password_stdin: *password_stdin,
                full_name: full_name.clone(),
                roles: roles.clone(),
            },
            Command::UserAddRole { email, role } => U::AddRole { email: email.clone(), role: role.clone() },
            Command::UserRemoveRole { email, role } => U::RemoveRole { email: email.clone(), role: role.clone() },
            Command::UserDisable { email } => U::Enable { email: email.clone(), enabled: false },
            Command::UserEnable { email } => U::Enable { email: email.clone(), enabled: true },
            Command::UserSetPassword { email, password } => {
                U::SetPassword { email: email.clone(), password: password.clone() }
            }
            Command::UserList(j) => U::List { json: j.json },
            _ => return None,
        })
    }

    fn into_migrate(self) -> crate::migrate::cli::MigrateCommand {
        use crate::migrate::cli::MigrateCommand as M;
        match self {
            Command::Migrate(j) => M::Migrate { json: j.json },
            Command::MigrateStatus { live, json } => M::Status { live, json: json.json },
            Command::MigrateCreate { name, merge, json } => M::Create { name, merge, json: json.json },
            Command::MigrateRollback { steps, to, force, json } => M::Rollback { steps, to, force, json: json.json },
            Command::MigrateHistory(j) => M::History { json: j.json },
            Command::MigrateHeads(j) => M::Heads { json: j.json },
            Command::MigrateRepair { id, json } => M::Repair { id, json: json.json },
            _ => M::Status { live: false, json: false },
        }
    }
}

async fn start(config: Config, app: App, openapi: &str) -> anyhow::Result<()> {
    let mode = config.env;
    let server = Server::build(&config, app, openapi).await?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, ?mode, "listening on http://{addr} (API docs at /docs)");
    server.run().await
}

/// The route table: method, path and the permission it needs.
pub fn routes(app: &App) -> String {
    let mut out = String::new();
    let mut line = |method: &str, path: String, perm: &str| out.push_str(&format!("{method:<7} {path:<48} {perm}\n"));
    line("GET", "/health".into(), "-");
    line("GET", "/openapi.json".into(), "-");
    line("GET", "/docs".into(), "-");
    line("POST", "/api/v1/auth/login".into(), "-");
    line("GET", "/api/v1/auth/me".into(), "authenticated");
    line("POST", "/api/v1/auth/password".into(), "authenticated");
    for s in app.schemas().iter().filter(|s| !s.meta.child) {
        let base = format!("/api/v1/{}", s.meta.name);
        line("GET", format!("/api/meta/{}", s.meta.name), "read");
        line("GET", base.clone(), "read");
        line("POST", base.clone(), "create");
        line("GET", format!("{base}/{{ref}}"), "read");
        line("PATCH", format!("{base}/{{ref}}"), "write");
        line("PUT", format!("{base}/{{ref}}"), "write");
        line("DELETE", format!("{base}/{{ref}}"), "delete");
        if s.meta.submittable {
            line("POST", format!("{base}/{{ref}}/submit"), "submit");
            line("POST", format!("{base}/{{ref}}/cancel"), "cancel");
            line("POST", format!("{base}/{{ref}}/amend"), "create");
        }
    }
    out
}
