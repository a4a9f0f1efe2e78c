//! Building and running the HTTP server over opened services: bind the listener (port 0 in
//! tests) and serve until ctrl-c / SIGTERM, with the in-process job workers beside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::auth::{Authenticator, Expected};
use crate::config::Mode;
use crate::http::{ApiState, Edge, Limits, RateLimits, Readiness, Shared, metrics_router, router};
use crate::ratelimit::{Limiter, Policy};
use crate::services::Runtime;

/// The main listener: plain HTTP, or TLS (`M_TLS_CERT` / `M_TLS_KEY`).
enum Bound {
    Plain(TcpListener),
    Tls(crate::http::TlsListener),
}

/// A bound, ready-to-serve server.
pub struct Server {
    listener: Bound,
    router: axum::Router,
    /// `/metrics` on its own listener (`M_METRICS_ADDR`).
    metrics: Option<(TcpListener, axum::Router)>,
    /// The services it serves.
    pub rt: Runtime,
    shutdown_timeout: Duration,
    /// In-process job workers (`M_JOB_WORKERS` > 0).
    workers: Option<crate::jobs::WorkerConfig>,
}

impl Server {
    /// Set up, open (preparing the schema) and bind: the whole start of `m start`.
    pub async fn open(
        config: crate::config::Config,
        app: crate::app::App,
        jobs: &'static [crate::jobs::Job],
        openapi: &str,
    ) -> anyhow::Result<Server> {
        let rt = crate::services::Setup::new(config, app, jobs)?.open(crate::services::Schema::Prepare).await?;
        Server::build(rt, openapi).await
    }

    /// Bind the listeners for `rt` (opened with [`Schema::Prepare`](crate::services::Schema)).
    /// `openapi` is the application's generated OpenAPI document.
    pub async fn build(rt: Runtime, openapi: &str) -> anyhow::Result<Server> {
        if rt.schema() != crate::services::Schema::Prepare {
            anyhow::bail!("a server needs its schema prepared or checked: open it with Schema::Prepare");
        }
        let config = rt.config().clone();
        if config.db_rls {
            tracing::info!("M_DB_RLS=on: PostgreSQL row security policies enforce the row scope as well");
        }
        rt.users.warm_login().await;
        let expected = Expected { issuer: config.jwt_issuer.clone(), audience: config.jwt_audience.clone() };
        let auth = match (&config.jwt_jwks_url, &config.jwt_secret) {
            (Some(jwks), _) => Authenticator::jwks(jwks, expected).await.context("cannot load M_JWT_JWKS_URL")?,
            (None, Some(secret)) => Authenticator::hs256_with(secret.expose().as_bytes(), expected),
            (None, None) if config.env == Mode::Production => {
                anyhow::bail!("production needs M_JWT_SECRET of at least 32 bytes, or M_JWT_JWKS_URL")
            }
            (None, None) => {
                tracing::warn!(
                    "M_JWT_SECRET is not set: DEVELOPMENT MODE, every request without a token acts as Administrator (System Manager)"
                );
                Authenticator::DevAdministrator
            }
        };
        let state = ApiState::new(Shared {
            repo: rt.repo.clone(),
            users: rt.users.clone(),
            auth: Arc::new(auth),
            openapi: Arc::from(openapi),
            max_body_bytes: config.max_body_bytes,
            token_ttl_secs: config.jwt_ttl_secs,
            ready: Arc::new(Readiness {
                revisions: rt.revisions().to_vec(),
                redis_url: config.redis_url.as_ref().map(|u| u.expose().to_string()),
                breakers: rt.breakers().clone(),
            }),
            limits: Limits::new(config.max_concurrent_requests, Duration::from_secs(config.request_timeout_secs)),
            rate_limits: Arc::new(RateLimits {
                limiter: Limiter::new(config.redis_url.as_ref().map(|u| u.expose()), &config.redis_prefix),
                api: Policy { name: "api", limit: config.rate_limit_api, window: Duration::from_secs(60) },
                anon: Policy { name: "anonymous", limit: config.rate_limit_anon, window: Duration::from_secs(60) },
                login: Policy { name: "login", limit: config.rate_limit_login, window: Duration::from_secs(60) },
                trusted_proxies: config.trusted_proxies.clone(),
            }),
            edge: Arc::new(Edge {
                cors_origins: config.cors_origins.clone(),
                trusted_proxies: config.trusted_proxies.clone(),
                production: config.env == Mode::Production,
                max_url_bytes: config.max_url_bytes,
                max_header_bytes: config.max_header_bytes,
            }),
        });
        let addr = SocketAddr::new(config.host, config.port);
        let tcp = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let listener = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = crate::http::tls_server_config(cert, key).map_err(anyhow::Error::msg)?;
                Bound::Tls(crate::http::TlsListener::new(tcp, tls, config.env == Mode::Production)?)
            }
            _ => Bound::Plain(tcp),
        };
        let metrics = match config.metrics_addr {
            Some(m) => Some((
                TcpListener::bind(m).await.with_context(|| format!("cannot listen on {m} (M_METRICS_ADDR)"))?,
                metrics_router(state.clone()),
            )),
            None => None,
        };
        Ok(Server {
            listener,
            router: router(state, metrics.is_none()),
            metrics,
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
            workers: (config.job_workers > 0).then(|| crate::jobs::WorkerConfig::from_config(&config)),
            rt,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Bound::Plain(l) => l.local_addr(),
            Bound::Tls(l) => axum::serve::Listener::local_addr(l),
        }
    }

    /// The metrics listener's address, when it has its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The router, for in-process tests.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Serve until ctrl-c or SIGTERM, then finish in-flight requests (within the shutdown
    /// timeout).
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serve (and run jobs) until `signal` completes; then stop accepting connections and
    /// claiming jobs, and give in-flight requests and running jobs up to the shutdown timeout
    /// before returning.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
        let signal = async move {
            signal.await;
            let _ = stop_jobs.send(true);
            let _ = stopping_tx.send(());
        };
        let workers = self.workers.map(|config| {
            let worker = self.rt.worker(config);
            let mut stopped = jobs_stopped;
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            tokio::spawn(worker.run_until(stop, self.shutdown_timeout))
        });
        if let Some((listener, router)) = self.metrics {
            // The internal listener lives as long as the process.
            serve_in_background(listener, router);
        }
        let deadline = self.shutdown_timeout;
        let served = match self.listener {
            Bound::Plain(l) => serve(l, self.router, signal, stopping_rx, deadline).await,
            Bound::Tls(l) => serve(l, self.router, signal, stopping_rx, deadline).await,
        };
        if let Some(workers) = workers {
            let _ = workers.await;
        }
        served
    }
}

/// Serve until `signal`; then give in-flight requests up to `deadline`.
async fn serve<L>(
    listener: L,
    router: axum::Router,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    stopping: tokio::sync::oneshot::Receiver<()>,
    deadline: Duration,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: Send,
{
    // Peer addresses decide whether `X-Forwarded-*` is believed (`tap_io` makes any listener's
    // address available as connect info).
    let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let serve = axum::serve(listener, service).with_graceful_shutdown(signal).into_future();
    let expire = async move {
        if stopping.await.is_ok() {
            tokio::time::sleep(deadline).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serve => served.context("server error"),
        () = expire => {
            tracing::warn!(seconds = deadline.as_secs(), "shutdown timeout reached: dropping the requests still in flight");
            Ok(())
        }
    }
}

/// Ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
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
    tracing::info!("shutting down: finishing in-flight work");
}

/// Serve `router` on `listener` for the life of the process (the internal metrics listener).
pub fn serve_in_background(listener: TcpListener, router: axum::Router) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("metrics listener failed: {e}");
        }
    });
}
