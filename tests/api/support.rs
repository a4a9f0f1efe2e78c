//! Test harness: the example application (plus a test DocType with every field type) served by
//! an in-process router on a fresh SQLite file or a fresh PostgreSQL database.

use std::path::PathBuf;

use axum::body::Body;
use http_body_util::BodyExt;
use m_runtime::auth::{Claims, sign_hs256};
use m_runtime::config::{Config, Secret};
use m_runtime::server::Server;
use serde_json::Value;
use tower::ServiceExt;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A DocType with every field type, for list and validation tests. Written by hand with the
/// derive macro, the way an application can define a DocType in Rust.
#[derive(Debug, Clone, Default, m_runtime::DocType)]
#[doctype(
    source = "tests/api/support.rs",
    hooks,
    toml = r#"
name = "Gadget"
naming = "field:code"

[fields.code]
type = "Data"
required = true
max_length = 20
regex = "^[A-Z0-9-]+$"

[fields.label]
type = "Text"

[fields.email]
type = "Email"

[fields.site]
type = "URL"

[fields.count]
type = "Int"
min = 0
max = 1000

[fields.big]
type = "BigInt"

[fields.weight]
type = "Float"

[fields.price]
type = "Currency"

[fields.ratio]
type = "Decimal"
precision = 10
scale = 4

[fields.active]
type = "Check"

[fields.made_on]
type = "Date"

[fields.seen_at]
type = "Datetime"

[fields.opens]
type = "Time"

[fields.color]
type = "Select"
options = ["Red", "Green", "Blue"]

[fields.extra]
type = "JSON"

[fields.token]
type = "UUID"

[fields.territory]
type = "Link"
to = "Territory"

[fields.api_key]
type = "Password"

[permissions]
"Gadget User" = { read = true, create = true, write = true, delete = true, if_owner = true }
"Gadget Reader" = { read = true }
"#
)]
pub struct Gadget {
    pub code: Option<String>,
    pub label: Option<String>,
    pub email: Option<String>,
    pub site: Option<String>,
    pub count: Option<i32>,
    pub big: Option<i64>,
    pub weight: Option<f64>,
    pub price: Option<m_runtime::types::Decimal>,
    pub ratio: Option<m_runtime::types::Decimal>,
    pub active: bool,
    pub made_on: Option<m_runtime::types::NaiveDate>,
    pub seen_at: Option<m_runtime::types::DateTime<m_runtime::types::Utc>>,
    pub opens: Option<m_runtime::types::NaiveTime>,
    pub color: Option<String>,
    pub extra: Option<m_runtime::types::JsonValue>,
    pub token: Option<m_runtime::types::Uuid>,
    pub territory: Option<String>,
    pub api_key: Option<m_runtime::types::Password>,
}

/// A hook that panics on request, to test that a panic is contained, and that queues a job
/// (then fails, on request, to test that the job goes with the rolled-back write).
impl m_runtime::hooks::Hooks for Gadget {
    async fn validate(&mut self, ctx: &m_runtime::hooks::HookCtx<'_>) -> Result<(), m_runtime::hooks::HookError> {
        assert!(self.label.as_deref() != Some("panic in a hook"), "a hook panicked");
        if let Some(label @ ("enqueue" | "enqueue then fail")) = self.label.as_deref()
            && ctx.is_new()
        {
            ctx.enqueue("gadget_count", serde_json::json!({"code": self.code, "add": 1})).await?;
            if label == "enqueue then fail" {
                return Err(m_runtime::hooks::HookError::invalid("refused after queueing a job"));
            }
        }
        Ok(())
    }
}

/// Jobs for the job tests, acting on Gadgets.
pub mod test_jobs {
    use m_runtime::jobs::{Job, JobCtx, JobError};
    use m_runtime::repo::Expect;
    use serde_json::{Value, json};

    pub static JOBS: &[Job] = &[
        Job { name: "gadget_count", run: |ctx, args| Box::pin(gadget_count(ctx, args)) },
        Job { name: "flaky", run: |ctx, args| Box::pin(flaky(ctx, args)) },
        Job { name: "fatal", run: |_, _| Box::pin(async { Err(JobError::fatal("bad input")) }) },
        Job { name: "sleepy", run: |_, args| Box::pin(sleepy(args)) },
        Job { name: "panics", run: |_, _| Box::pin(async { panic!("a job panicked") }) },
        Job { name: "late_write", run: |ctx, args| Box::pin(late_write(ctx, args)) },
        Job { name: "mail_someone", run: |ctx, args| Box::pin(mail_someone(ctx, args)) },
    ];

    /// Queue an email to `args.to` greeting `args.who`.
    async fn mail_someone(ctx: &JobCtx, args: Value) -> Result<(), JobError> {
        let to = args["to"].as_str().ok_or_else(|| JobError::fatal("args.to"))?;
        let email = m_runtime::email::Email::new(to, "Hello {{ who }}")
            .text("Hi {{ who }}, from a job.")
            .context(json!({"who": args["who"]}));
        ctx.send_email(&email).await?;
        Ok(())
    }

    /// Sleep `args.ms`, then add one to Gadget `args.code`'s count (a job stopped while it
    /// sleeps must never write).
    async fn late_write(ctx: &JobCtx, args: Value) -> Result<(), JobError> {
        tokio::time::sleep(std::time::Duration::from_millis(args["ms"].as_u64().unwrap_or(0))).await;
        gadget_count(ctx, json!({"code": code(&args)?, "add": 1})).await
    }

    fn code(args: &Value) -> Result<&str, JobError> {
        args["code"].as_str().ok_or_else(|| JobError::fatal("args.code"))
    }

    /// Add `args.add` to Gadget `args.code`'s count.
    async fn gadget_count(ctx: &JobCtx, args: Value) -> Result<(), JobError> {
        let code = code(&args)?;
        let doc = ctx.repo().get(&ctx.system(), "Gadget", code).await?;
        let count = match doc.get("count") {
            m_runtime::Value::Int(n) => *n,
            _ => 0,
        } + args["add"].as_i64().unwrap_or(1);
        ctx.repo().update(&ctx.system(), "Gadget", code, &json!({"count": count}), &Expect::default()).await?;
        Ok(())
    }

    /// Fail (to be retried) until attempt `args.succeed_on`, then write the attempt into the
    /// Gadget's label.
    async fn flaky(ctx: &JobCtx, args: Value) -> Result<(), JobError> {
        if u64::from(ctx.attempt()) < args["succeed_on"].as_u64().unwrap_or(1) {
            return Err(JobError::retry(format!("flaky on attempt {}", ctx.attempt())));
        }
        let body = json!({"label": format!("attempt {}", ctx.attempt())});
        ctx.repo().update(&ctx.system(), "Gadget", code(&args)?, &body, &Expect::default()).await?;
        Ok(())
    }

    async fn sleepy(args: Value) -> Result<(), JobError> {
        tokio::time::sleep(std::time::Duration::from_millis(args["ms"].as_u64().unwrap_or(0))).await;
        Ok(())
    }
}

/// Run one statement on a database, outside any application (to stage states by hand).
pub async fn execute(url: &str, sql: &str) {
    let pool = m_runtime::db::PoolConfig { min_connections: 1, max_connections: 1, ..Default::default() };
    let db = m_runtime::db::Db::connect(url, &pool).await.expect("connect");
    let mut tx = db.begin(&m_runtime::db::DbCtx::System).await.expect("begin");
    tx.execute(sql, Vec::new()).await.expect("execute");
    tx.commit().await.expect("commit");
}

/// The example application's jobs and the test jobs.
pub fn jobs() -> &'static [m_runtime::jobs::Job] {
    static JOBS: std::sync::OnceLock<Vec<m_runtime::jobs::Job>> = std::sync::OnceLock::new();
    JOBS.get_or_init(|| m::jobs::JOBS.iter().chain(test_jobs::JOBS).copied().collect())
}

/// The application the tests serve: the example DocTypes and Gadget (its jobs are [`jobs`]),
/// with the example's print templates and a Gizmo template that tries to load from outside.
pub fn application() -> m_runtime::app::App {
    m_runtime::app::App::new("m", "0.1.0", doctypes()).expect("valid application").with_prints(prints())
}

/// A Gizmo's print: a stylesheet, an image and a font from outside, which never reach Chromium.
pub const GIZMO_PRINT: &str = r#"---
paper: Letter
orientation: landscape
margin: 1in 0.5in 1in 0.5in
---
<!doctype html>
<html><head><link rel="stylesheet" href="http://127.0.0.1:9/print.css">
<style>@font-face { font-family: X; src: url("http://127.0.0.1:9/x.woff"); } body { font-family: sans-serif }</style></head>
<body><img src="http://127.0.0.1:9/logo.png" alt="logo"><h1>Gizmo {{ doc.code }}</h1><p>{{ doc.label }}</p></body></html>
"#;

/// The example application's print templates and the tests' own.
pub fn prints() -> &'static [(&'static str, &'static str)] {
    static PRINTS: std::sync::OnceLock<Vec<(&str, &str)>> = std::sync::OnceLock::new();
    PRINTS.get_or_init(|| m::prints::PRINTS.iter().copied().chain([("gizmo", GIZMO_PRINT)]).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running application with its own database, removed on drop.
pub struct TestApp {
    router: axum::Router,
    rt: Option<m_runtime::services::Runtime>,
    /// Removed when the application is dropped.
    _scratch: Scratch,
}

/// Job workers running for a test; stopped on [`WorkerGuard::stop`] or drop.
pub struct WorkerGuard {
    stop: std::sync::Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl WorkerGuard {
    /// The worker has not ended (by itself: it only ends when stopped).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stop claiming jobs and wait for the worker to finish (within its deadline).
    pub async fn stop(mut self) {
        self.stop.notify_one();
        if let Some(task) = self.task.take() {
            task.await.expect("the worker ends cleanly");
        }
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A fresh database (SQLite file or PostgreSQL database) and a scratch folder (for the SQLite
/// file and for revisions a development start writes), removed on drop.
pub struct Scratch {
    pub url: String,
    pub dir: PathBuf,
    pg: Option<(String, String)>,
    /// A login role created for this database (dropped with it).
    role: Option<String>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let role = self.role.take();
        if let Some((admin_url, name)) = self.pg.take() {
            // Drop runs inside the test's runtime: use a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("cleanup runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                        if let Some(role) = role {
                            let _ = sqlx::query(&format!("DROP ROLE IF EXISTS \"{role}\"")).execute(&mut c).await;
                        }
                    }
                });
            })
            .join();
        }
    }
}

impl Scratch {
    /// None when the backend is not available here.
    pub async fn new(backend: Backend) -> Option<Scratch> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("m-test-{unique}"));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        match backend {
            Backend::Sqlite => {
                Some(Scratch { url: format!("sqlite://{}/m.db", dir.display()), dir, pg: None, role: None })
            }
            Backend::Postgres => {
                let Some(admin) = pg_url() else {
                    let _ = std::fs::remove_dir_all(&dir);
                    return None;
                };
                let name = format!("m_test_{unique}");
                {
                    use sqlx::Connection;
                    let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect to M_TEST_PG_URL");
                    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                        .execute(&mut c)
                        .await
                        .expect("create test database");
                }
                Some(Scratch { url: with_database(&admin, &name), dir, pg: Some((admin, name)), role: None })
            }
        }
    }

    /// A PostgreSQL database owned by a new ordinary login role (no superuser, no BYPASSRLS),
    /// with a URL that connects as that role; None without `M_TEST_PG_URL`.
    pub async fn postgres_owned_by_a_role() -> Option<Scratch> {
        let admin = pg_url()?;
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("m-test-{unique}"));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let name = format!("m_test_{unique}");
        {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect to M_TEST_PG_URL");
            for sql in [format!("CREATE ROLE \"{name}\" LOGIN"), format!("CREATE DATABASE \"{name}\" OWNER \"{name}\"")]
            {
                sqlx::query(&sql).execute(&mut c).await.expect("create the test role and database");
            }
        }
        let url = with_database(&admin, &name);
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let host = url[scheme_end..].rsplit_once('@').map_or(&url[scheme_end..], |(_, h)| h);
        let url = format!("{}{name}@{host}", &url[..scheme_end]);
        Some(Scratch { url, dir, pg: Some((admin, name.clone())), role: Some(name) })
    }

    /// Where development starts in tests read and write revisions.
    pub fn migrations_dir(&self) -> PathBuf {
        self.dir.join("migrations")
    }
}

/// A run under `CI=true`, where every test must run: a missing service or tool fails it.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Say that a test (or a check in it) skipped, and why; under `CI=true`, where `required` must be
/// here, fail instead.
#[track_caller]
pub fn skip_unless_ci(required: &str, why: &str) {
    assert!(!under_ci(), "{required} is required when CI=true ({why})");
    eprintln!("skipped: {why}");
}

/// The shared Redis for tests, or None (the test then prints that it skipped; under `CI=true` a
/// missing server fails).
pub fn redis_url() -> Option<String> {
    match std::env::var("M_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(!under_ci(), "M_TEST_REDIS_URL is required when CI=true");
            None
        }
    }
}

/// The PostgreSQL server for tests, or None (the test then prints that it skipped; under
/// `CI=true` a missing server fails).
pub fn pg_url() -> Option<String> {
    match std::env::var("M_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(!under_ci(), "M_TEST_PG_URL is required when CI=true");
            None
        }
    }
}

/// What a check polled by [`wait_until`] returns: done (with a value), or not yet (with what it
/// saw, for the failure message).
pub trait Progress {
    type Done;
    fn done(self) -> Result<Self::Done, String>;
}

impl Progress for bool {
    type Done = ();
    fn done(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("not yet".into()) }
    }
}

impl<T> Progress for Option<T> {
    type Done = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".into())
    }
}

impl<T, E: std::fmt::Debug> Progress for Result<T, E> {
    type Done = T;
    fn done(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:#?}"))
    }
}

/// Poll `check` every 50 ms until it is done (`true`, `Some`, `Ok`) and return its value; fail,
/// naming `what` and the last thing `check` saw, when `deadline` passes first.
pub async fn wait_until<P, F, Fut>(what: &str, deadline: std::time::Duration, mut check: F) -> P::Done
where
    P: Progress,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = P>,
{
    let started = std::time::Instant::now();
    loop {
        match check().await.done() {
            Ok(v) => return v,
            Err(seen) => {
                assert!(
                    started.elapsed() < deadline,
                    "timed out after {deadline:?} waiting for {what}; last seen: {seen}"
                );
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The Unix second now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The Unix microsecond now (the job queue's times).
pub fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Wait until the clock is in a later whole second than `token` was issued in (tokens carry
/// whole seconds), so a change made from now on is newer than the token.
pub async fn wait_past_issue_of(token: &str) {
    let auth = m_runtime::auth::Authenticator::hs256(SECRET.as_bytes());
    let subject = auth.authenticate(Some(&format!("Bearer {token}"))).await.expect("a test token");
    let issued = subject.issued_at.expect("the token says when it was issued");
    wait_until("the second after the token was issued", std::time::Duration::from_secs(5), || async {
        if unix_now() > issued { Ok(()) } else { Err(format!("now {} <= iat {issued}", unix_now())) }
    })
    .await;
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

pub fn doctypes() -> Vec<m_runtime::app::Registered> {
    let mut all = m::doctypes::doctypes();
    all.push(m_runtime::app::Registered::new(<Gadget as m_runtime::DocType>::meta(), Gadget::__M_HOOKS));
    all.push(m_runtime::app::Registered::new(<Gizmo as m_runtime::DocType>::meta(), Gizmo::__M_HOOKS));
    all.push(m_runtime::app::Registered::new(<GizmoPart as m_runtime::DocType>::meta(), None));
    all
}

/// A Gizmo's part: a child row with a Link (for expanding Links inside child rows).
#[derive(Debug, Clone, Default, m_runtime::DocType)]
#[doctype(
    source = "tests/api/support.rs",
    parent = "Gizmo",
    toml = r#"
name = "Gizmo Part"
child = true

[fields.part]
type = "Data"

[fields.territory]
type = "Link"
to = "Territory"
"#
)]
pub struct GizmoPart {
    pub part: Option<String>,
    pub territory: Option<String>,
}

/// A submittable DocType whose hooks are told about committed changes.
#[derive(Debug, Clone, Default, m_runtime::DocType)]
#[doctype(
    source = "tests/api/support.rs",
    hooks,
    toml = r#"
name = "Gizmo"
naming = "field:code"
submittable = true

[fields.code]
type = "Data"
required = true

[fields.label]
type = "Text"

[fields.secret]
type = "Password"

[fields.parts]
type = "Table"
to = "Gizmo Part"

[permissions]
"Gizmo User" = { read = true, create = true, write = true, delete = true, submit = true, cancel = true }
"#
)]
pub struct Gizmo {
    pub code: Option<String>,
    pub parts: Vec<GizmoPart>,
    pub label: Option<String>,
    pub secret: Option<m_runtime::types::Password>,
}

/// A committed change to a Gizmo as `after_commit` saw it: (code, event, label, its docstatus
/// read through the context).
pub type GizmoEvent = (String, &'static str, Option<String>, String);

/// Every committed change to a Gizmo.
pub static GIZMO_EVENTS: std::sync::Mutex<Vec<GizmoEvent>> = std::sync::Mutex::new(Vec::new());

impl m_runtime::hooks::Hooks for Gizmo {
    const AFTER_COMMIT: bool = true;

    async fn validate(&mut self, _ctx: &m_runtime::hooks::HookCtx<'_>) -> Result<(), m_runtime::hooks::HookError> {
        if self.label.as_deref() == Some("refuse") {
            return Err(m_runtime::hooks::HookError::invalid("refused"));
        }
        Ok(())
    }

    async fn after_commit(
        &mut self,
        event: m_runtime::hooks::DocEvent,
        ctx: &m_runtime::hooks::HookCtx<'_>,
    ) -> Result<(), m_runtime::hooks::HookError> {
        let code = self.code.clone().unwrap_or_default();
        // What the database says now (the change is committed, so it is visible to a new read).
        let now = ctx.get_value("Gizmo", &code, "docstatus").await?;
        if let Ok(mut events) = GIZMO_EVENTS.lock() {
            events.push((code, event.as_str(), self.label.clone(), format!("{now:?}")));
        }
        Ok(())
    }
}

/// The configuration tests start servers with: the test secret, a small pool, the scratch
/// folder's revisions, and rate limits out of the way (the rate-limit tests set their own).
pub fn test_config(url: &str, scratch: &Scratch) -> Config {
    Config {
        database_url: Secret::new(url),
        jwt_secret: Some(Secret::new(SECRET)),
        port: 0,
        db_max_connections: 8,
        db_min_connections: 1,
        // A development start writes and applies a revision for these DocTypes there.
        migrations_dir: Some(scratch.migrations_dir()),
        rate_limit_api: 1_000_000,
        rate_limit_anon: 1_000_000,
        ..Config::default()
    }
}

impl TestApp {
    /// Start the application on a fresh database; None when the backend is not available here.
    pub async fn start(backend: Backend) -> Option<TestApp> {
        Self::start_with(backend, |_| {}).await.map(|(app, _)| app)
    }

    /// Start with a changed configuration; also returns the configuration used.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<(TestApp, Config)> {
        let scratch = Scratch::new(backend).await?;
        let mut config = test_config(&scratch.url, &scratch);
        tweak(&mut config);
        let server =
            Server::open(config.clone(), application(), jobs(), m::doctypes::OPENAPI).await.expect("server starts");
        Some((TestApp::from_server(&server, scratch), config))
    }

    /// The URL of this application's database.
    pub fn database_url(&self) -> &str {
        &self._scratch.url
    }

    /// The server's repository (None for an application built from a router).
    pub fn repo(&self) -> &m_runtime::repo::Repo {
        &self.rt().repo
    }

    /// The server's services (None for an application built from a router).
    pub fn rt(&self) -> &m_runtime::services::Runtime {
        self.rt.as_ref().expect("a TestApp started by start_with")
    }

    /// Run job workers for this application until the returned guard is dropped.
    pub fn worker(&self, config: &Config) -> WorkerGuard {
        let mut wc = m_runtime::jobs::WorkerConfig::from_config(config);
        wc.poll = std::time::Duration::from_millis(100);
        wc.maintain_every = std::time::Duration::from_millis(200);
        self.worker_with(wc, std::time::Duration::from_secs(5))
    }

    /// Run job workers that poll every 50 ms and retry after 100 ms (doubling), for tests that
    /// go through several attempts.
    pub fn fast_worker(&self, config: &Config) -> WorkerGuard {
        let mut wc = m_runtime::jobs::WorkerConfig::from_config(config);
        wc.poll = std::time::Duration::from_millis(50);
        wc.maintain_every = std::time::Duration::from_millis(200);
        wc.backoff = std::time::Duration::from_millis(100);
        self.worker_with(wc, std::time::Duration::from_secs(5))
    }

    /// Run job workers with this configuration and shutdown deadline.
    pub fn worker_with(&self, wc: m_runtime::jobs::WorkerConfig, deadline: std::time::Duration) -> WorkerGuard {
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let signal = stop.clone();
        let worker = self.rt().worker(wc);
        let task = tokio::spawn(worker.run_until(async move { signal.notified().await }, deadline));
        WorkerGuard { stop, task: Some(task) }
    }

    /// Requests against a server built elsewhere, with its repository (for jobs and workers).
    pub fn from_server(server: &Server, scratch: Scratch) -> TestApp {
        TestApp { router: server.router(), rt: Some(server.rt.clone()), _scratch: scratch }
    }

    /// Requests against a server built elsewhere.
    pub fn from_router(router: axum::Router, scratch: Scratch) -> TestApp {
        TestApp { router, rt: None, _scratch: scratch }
    }

    /// A bearer token naming `user`, with no user behind it.
    pub fn bare_token(user: &str) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = Claims { sub: user.into(), exp: now + 3600, iat: Some(now), nbf: None, iss: None, aud: None };
        sign_hs256(SECRET.as_bytes(), &claims).expect("sign token")
    }

    /// A bearer token for `user`, who is made to exist (through the API, as the Administrator)
    /// with exactly `roles`.
    pub async fn token(&self, user: &str, roles: &[&str]) -> String {
        self.ensure_user(user, roles).await;
        Self::bare_token(user)
    }

    /// Create `user` with `roles`, or set an existing one's roles to exactly those.
    pub async fn ensure_user(&self, user: &str, roles: &[&str]) {
        let roles: Vec<Value> = roles.iter().map(|r| serde_json::json!({"role": r})).collect();
        let path = format!("/api/v1/User/{user}");
        if self.get(&path).send().await.status == 404 {
            self.post("/api/v1/User", serde_json::json!({"email": user, "full_name": user, "roles": roles}))
                .send()
                .await
                .expect(201);
        } else {
            self.req("PUT", &path).json(serde_json::json!({"roles": roles})).send().await.expect(200);
        }
    }

    /// The built-in Administrator (System Manager).
    pub fn admin() -> String {
        Self::bare_token("Administrator")
    }

    pub fn req(&self, method: &str, path: &str) -> Req {
        Req {
            router: self.router.clone(),
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
            token: Some(Self::admin()),
        }
    }

    pub fn get(&self, path: &str) -> Req {
        self.req("GET", path)
    }

    pub fn post(&self, path: &str, body: Value) -> Req {
        self.req("POST", path).json(body)
    }

    pub fn patch(&self, path: &str, body: Value) -> Req {
        self.req("PATCH", path).json(body)
    }

    pub fn delete(&self, path: &str) -> Req {
        self.req("DELETE", path)
    }
}

pub struct Req {
    router: axum::Router,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    token: Option<String>,
}

impl Req {
    pub fn json(mut self, body: Value) -> Req {
        self.body = Some(serde_json::to_vec(&body).expect("json"));
        self
    }

    pub fn raw(mut self, body: &str) -> Req {
        self.body = Some(body.as_bytes().to_vec());
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn by(mut self, token: String) -> Req {
        self.token = Some(token);
        self
    }

    pub fn anonymous(mut self) -> Req {
        self.token = None;
        self
    }

    pub async fn send(self) -> Resp {
        // Clients send `field[op]=v` with raw brackets; the URI type wants them encoded.
        let uri = self.path.replace('[', "%5B").replace(']', "%5D").replace(' ', "%20");
        let mut b = axum::http::Request::builder().method(self.method.as_str()).uri(uri);
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if self.body.is_some() {
            b = b.header("content-type", "application/json");
        }
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        let req = b.body(Body::from(self.body.unwrap_or_default())).expect("request");
        let res = self.router.oneshot(req).await.expect("infallible");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Resp { status, headers, json, bytes: bytes.to_vec() }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    /// The body as JSON (a string when it is not JSON).
    pub json: Value,
    /// The body as sent.
    pub bytes: Vec<u8>,
}

impl Resp {
    /// Assert the status, showing the body on failure.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.json);
        self
    }

    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Resp {
        let r = self.expect(status);
        assert_eq!(r.json["error"]["code"], code, "unexpected error code; body: {}", r.json);
        assert!(
            r.json["error"]["request_id"].as_str().is_some_and(|s| !s.is_empty()),
            "error without request_id: {}",
            r.json
        );
        r
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// The sum of the process's metric samples (as `/metrics` serves them) named `name` whose
/// labels include every one of `labels` (0 when there is none).
pub async fn metric_value(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = app.get("/metrics").anonymous().send().await.expect(200).json.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Whether the samples of `name` with `labels` add up to at least 1 (counters and 0/1 gauges:
/// one of them is at least 1).
pub async fn has_metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> bool {
    metric_value(app, name, labels).await >= 1.0
}

/// Run a test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::support::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::support::TestApp::start($crate::support::Backend::Sqlite).await.expect("sqlite");
                run(app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::support::TestApp::start($crate::support::Backend::Postgres).await {
                    Some(app) => run(app).await,
                    None => eprintln!("skipped: M_TEST_PG_URL is not set"),
                }
            }
        }
    };
}

/// A test on each backend that sets up its own database: the body gets the `Backend` and
/// returns early (printing that it skipped) when that backend is not available.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::support::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::support::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::pg_url().is_none() {
                    eprintln!("skipped: M_TEST_PG_URL is not set");
                    return;
                }
                run($crate::support::Backend::Postgres).await;
            }
        }
    };
}

/// Shared fixtures: a territory, a customer in it, and an invoice with two rows.
pub async fn seed(app: &TestApp) -> (String, String) {
    app.post("/api/v1/Territory", serde_json::json!({"territory_name": "North"})).send().await.expect(201);
    let c = app
        .post(
            "/api/v1/Customer",
            serde_json::json!({"customer_name": "Acme", "territory": "North", "credit_limit": "5000"}),
        )
        .send()
        .await
        .expect(201);
    let customer = c.json["name"].as_str().expect("customer name").to_string();
    let i = app
        .post(
            "/api/v1/Invoice",
            serde_json::json!({"customer": customer, "items": [{"item_code": "A", "qty": 2, "rate": "10.50"}, {"item_code": "B", "qty": 1, "rate": 4}]}),
        )
        .send()
        .await
        .expect(201);
    let invoice = i.json["name"].as_str().expect("invoice name").to_string();
    (customer, invoice)
}
