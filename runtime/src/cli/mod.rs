//! The `m` command line: every command. `start` serves the API; `routes` lists it; `migrate:*`
//! manage the schema; `user:*` manage users; `worker` and `job:*` the job queue; `token` mints a
//! local token. Each one starts through [`Setup`] (and, when it needs the database's services,
//! [`Setup::open`]).

use std::net::IpAddr;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::{App, Registered};
use crate::config::{Config, Mode};
use crate::server::Server;
use crate::services::{Schema, Setup};

mod jobs;
mod migrate;
mod users;

use jobs::JobCommand;
use migrate::MigrateCommand;
use users::UserCommand;

/// What the application crate hands to the runtime.
pub struct AppInfo {
    pub name: &'static str,
    pub version: &'static str,
    /// `git describe` at build time, when built from a git checkout.
    pub git: Option<&'static str>,
    pub doctypes: Vec<Registered>,
    pub openapi: &'static str,
    /// Revisions embedded at build time: `(file name, content)`.
    pub migrations: &'static [(&'static str, &'static str)],
    /// The application's `migrations/` folder at build time (used when it still exists).
    pub migrations_dir: Option<&'static str>,
    /// The application's background jobs.
    pub jobs: &'static [crate::jobs::Job],
    /// Print templates: `(table, template)` of `print/<table>.html`, embedded at build time.
    pub prints: &'static [(&'static str, &'static str)],
}

#[derive(Parser, Debug)]
#[command(name = "m", about = "M: DocTypes in TOML served as a typed HTTP API")]
struct Cli {
    /// Print JSON (commands that report something: migrate:*, user:list, job:list).
    #[arg(long, global = true)]
    json: bool,
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
    #[command(flatten)]
    Migrate(MigrateCommand),
    #[command(flatten)]
    User(UserCommand),
    #[command(flatten)]
    Job(JobCommand),
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
    match run(cli, info) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, info: AppInfo) -> anyhow::Result<ExitCode> {
    let app = App::new(info.name, info.version, info.doctypes)
        .map_err(anyhow::Error::msg)?
        .with_migrations(info.migrations, info.migrations_dir.map(std::path::PathBuf::from))
        .with_prints(info.prints);
    if let Command::Routes = cli.command {
        print!("{}", crate::http::route_table(&app));
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = Config::load().map_err(anyhow::Error::msg)?;
    if let Command::Start { host, port, dev } = &cli.command {
        if *dev {
            config.env = Mode::Development;
        }
        if let Some(h) = host {
            config.host = *h;
        }
        if let Some(p) = port {
            config.port = *p;
        }
    }
    let setup = Setup::new(config, app, info.jobs)?;
    if let Command::Token { user, ttl } = &cli.command {
        println!("{}", token(setup.config(), user, *ttl).map_err(anyhow::Error::msg)?);
        return Ok(ExitCode::SUCCESS);
    }
    // One TLS crypto provider for the process: the listener, the JWKS and trace exporters.
    crate::auth::install_crypto_provider();
    let serving = matches!(cli.command, Command::Start { .. } | Command::Job(JobCommand::Worker { .. }));
    let telemetry = crate::telemetry::init(setup.config(), info.name, serving);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let json = cli.json;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Start { .. } => start(setup, info.openapi).await.map(|()| ExitCode::SUCCESS),
            Command::Job(cmd) => jobs::run(cmd, setup, json).await.map(|()| ExitCode::SUCCESS),
            Command::User(cmd) => {
                let rt = setup.open(Schema::AsIs).await?;
                users::run(cmd, &rt, json).await.map(|()| ExitCode::SUCCESS).map_err(anyhow::Error::from)
            }
            Command::Migrate(cmd) => migrate::run(cmd, setup.migrations()?, json).await.map_err(anyhow::Error::from),
            Command::Routes | Command::Token { .. } => Ok(ExitCode::SUCCESS),
        }
    });
    // Stop what the shutdown deadline left running, then export buffered spans.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    telemetry.shutdown();
    result
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

async fn start(setup: Setup, openapi: &str) -> anyhow::Result<()> {
    let mode = setup.config().env;
    let server = Server::build(setup.open(Schema::Prepare).await?, openapi).await?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, ?mode, "listening on http://{addr} (API docs at /docs)");
    server.run().await
}
