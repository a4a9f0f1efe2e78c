//! Building and running the HTTP server: connect the database, prepare the schema (development),
//! bind the listener (port 0 in tests) and serve until ctrl-c / SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::App;
use crate::auth::Authenticator;
use crate::config::{Config, Mode};
use crate::db::Db;
use crate::http::{ApiState, router};
use crate::repo::Repo;
use crate::schema;

/// A bound, ready-to-serve server.
pub struct Server {
    listener: TcpListener,
    router: axum::Router,
    pub repo: Repo,
}

impl Server {
    /// Connect, prepare and bind. `openapi` is the application's generated OpenAPI document.
    pub async fn build(config: &Config, app: App, openapi: &str) -> anyhow::Result<Server> {
        let db = Db::connect(config.database_url.expose(), &config.pool())
            .await
            .context("cannot connect to the database")?;
        prepare_schema(config, &db, &app).await?;
        let repo = Repo::new(app, db, config.list_limits());
        let auth = match &config.jwt_secret {
            Some(secret) => Authenticator::hs256(secret.expose().as_bytes()),
            None => {
                tracing::warn!(
                    "M_JWT_SECRET is not set: DEVELOPMENT MODE, every request without a token acts as Administrator (System Manager)"
                );
                Authenticator::DevAdministrator
            }
        };
        let state = ApiState {
            repo: repo.clone(),
            auth: Arc::new(auth),
            openapi: Arc::from(openapi),
            max_body_bytes: config.max_body_bytes,
        };
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Server { listener, router: router(state), repo })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The router, for in-process tests.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Serve until ctrl-c or SIGTERM, then finish in-flight requests.
    pub async fn run(self) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown_signal()).await.context("server error")
    }
}

async fn prepare_schema(config: &Config, db: &Db, app: &App) -> anyhow::Result<()> {
    match config.env {
        Mode::Development => {
            let report = schema::ensure(db, app).await.context("cannot prepare the schema")?;
            if !report.created_tables.is_empty() {
                tracing::info!(tables = ?report.created_tables, "created tables (development)");
            }
            if !report.added_columns.is_empty() {
                tracing::warn!(columns = ?report.added_columns, "added missing columns as nullable (development); production needs a migration");
            }
            Ok(())
        }
        // Production never changes the schema by itself, and does not serve without it.
        Mode::Production => {
            let missing = schema::missing_tables(db, app).await.context("cannot read the schema")?;
            if missing.is_empty() {
                Ok(())
            } else {
                anyhow::bail!(
                    "the database lacks the tables {missing:?}; production never creates them (run `m start --dev` once against this database)"
                )
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
