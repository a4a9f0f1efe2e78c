//! The `m` command line. `start` serves the API; `routes` lists it. Later issues add `migrate:*`,
//! `user:*`, `worker` and `job:run` as further subcommands of the same binary.

use std::net::IpAddr;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, Mode};
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
    init_tracing();
    let app = match App::new(info.name, info.version, info.doctypes) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Routes => {
            print!("{}", routes(&app));
            ExitCode::SUCCESS
        }
        Command::Start { host, port, dev } => {
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
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(start(config, app, info.openapi)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("M_LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}

/// The route table: method, path and the permission it needs.
pub fn routes(app: &App) -> String {
    let mut out = String::new();
    let mut line = |method: &str, path: String, perm: &str| out.push_str(&format!("{method:<7} {path:<48} {perm}\n"));
    line("GET", "/health".into(), "-");
    line("GET", "/openapi.json".into(), "-");
    line("GET", "/docs".into(), "-");
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
