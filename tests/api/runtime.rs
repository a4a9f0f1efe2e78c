//! Production runtime behaviour on SQLite and PostgreSQL: health and readiness, statement and
//! request timeouts, load shedding, graceful shutdown, a database outage and a Redis outage
//! (on private instances the test starts and stops; never the shared ones).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use m_runtime::config::{Config, Mode, Secret};
use m_runtime::db::{Db, DbError, PoolConfig};
use m_runtime::meta::FieldType;
use m_runtime::server::Server;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::application as app;
use crate::support::{Backend, Scratch, TestApp, skip_unless_ci, wait_until};

/// Another session holding the write lock: SQLite `BEGIN IMMEDIATE`, PostgreSQL an exclusive
/// lock on `territory`. Writes to it wait until `release`.
enum Holder {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Holder {
    async fn hold(url: &str) -> Holder {
        use sqlx::Connection;
        if url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
            Holder::Sqlite(c)
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE territory IN ACCESS EXCLUSIVE MODE").execute(&mut c).await.unwrap();
            Holder::Pg(c)
        }
    }

    async fn release(self) {
        match self {
            Holder::Sqlite(mut c) => sqlx::raw_sql("ROLLBACK").execute(&mut c).await.map(|_| ()).unwrap(),
            Holder::Pg(mut c) => sqlx::raw_sql("ROLLBACK").execute(&mut c).await.map(|_| ()).unwrap(),
        }
    }
}

fn config(scratch: &Scratch, url: &str) -> Config {
    Config {
        env: Mode::Development,
        database_url: Secret::new(url),
        jwt_secret: Some(Secret::new(crate::support::SECRET)),
        port: 0,
        db_max_connections: 4,
        db_min_connections: 2,
        migrations_dir: Some(scratch.migrations_dir()),
        ..Config::default()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn raw_http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    raw_http_with(addr, method, path, body, "").await
}

async fn raw_http_with(addr: SocketAddr, method: &str, path: &str, body: &str, extra: &str) -> (u16, String) {
    let token = TestApp::admin();
    exchange(addr, &format!("{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n{extra}"), body)
        .await
}

/// Send `head` (request line and headers, each ending in CRLF) with a JSON `body` on a fresh
/// connection: (status, response body).
pub async fn exchange(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{head}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

crate::both_backends!(health_and_readiness, |backend| {
    // Redis configured but not listening: readiness warns and stays 200.
    let dead_redis = format!("redis://127.0.0.1:{}", free_port());
    let Some((app, _)) = TestApp::start_with(backend, |c| c.redis_url = Some(Secret::new(dead_redis))).await else {
        return;
    };
    app.get("/health").anonymous().send().await.expect(200);
    let r = app.get("/ready").anonymous().send().await.expect(200);
    assert_eq!(r.header("content-type").as_deref(), Some("application/health+json"));
    assert_eq!(r.json["status"], "warn", "{}", r.json);
    assert_eq!(r.json["checks"]["database:responseTime"][0]["status"], "pass", "{}", r.json);
    assert_eq!(r.json["checks"]["migrations:applied"][0]["status"], "pass", "{}", r.json);
    assert_eq!(r.json["checks"]["redis:responseTime"][0]["status"], "warn", "{}", r.json);
});

/// A child process stopped (and reaped) when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private `redis-server` listening on `port`; None after saying the test skipped when it is
/// not installed (never under `CI=true`).
pub async fn private_redis(port: u16) -> Option<KillOnDrop> {
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        skip_unless_ci("redis-server", "redis-server is not installed");
        return None;
    }
    let redis = KillOnDrop(
        std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the private redis-server to listen", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    Some(redis)
}

crate::both_backends!(a_private_redis_going_down_only_warns, |backend| {
    let port = free_port();
    let Some(mut redis) = private_redis(port).await else { return };
    let url = format!("redis://127.0.0.1:{port}");
    let Some((app, _)) = TestApp::start_with(backend, |c| c.redis_url = Some(Secret::new(url))).await else {
        return;
    };
    let r = app.get("/ready").anonymous().send().await.expect(200);
    assert_eq!(r.json["checks"]["redis:responseTime"][0]["status"], "pass", "{}", r.json);
    redis.stop();
    let r = app.get("/ready").anonymous().send().await.expect(200);
    assert_eq!(r.json["status"], "warn", "{}", r.json);
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    app.get("/api/v1/Territory").send().await.expect(200);
});

crate::both_backends!(the_redis_breaker_opens_in_an_outage_and_closes_when_redis_returns, |backend| {
    let port = free_port();
    let Some(mut redis) = private_redis(port).await else { return };
    let Some(scratch) = Scratch::new(backend).await else { return };
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = format!("m-test-{}:", uuid::Uuid::new_v4().simple());
    let (_server, addr) = spawn_binary(
        &scratch,
        &[("REDIS_URL", url.as_str()), ("M_REDIS_PREFIX", prefix.as_str()), ("M_RATE_LIMIT_API", "100000")],
    )
    .await;
    let breaker = |state: &'static str| async move {
        let (status, text) = raw_http(addr, "GET", "/metrics", "").await;
        assert_eq!(status, 200, "{text}");
        has(&samples(&text), "m_circuit_breaker_state", &[("breaker", "redis"), ("state", state)])
    };
    assert_eq!(raw_http(addr, "GET", "/api/v1/Territory", "").await.0, 200);
    assert_eq!(breaker("closed").await, 1.0);
    redis.stop();
    // Requests go on (limited in process); a few failures open the breaker.
    for _ in 0..5 {
        assert_eq!(raw_http(addr, "GET", "/api/v1/Territory", "").await.0, 200);
    }
    assert_eq!(breaker("open").await, 1.0, "the breaker opens while Redis is down");
    assert_eq!(breaker("closed").await, 0.0);
    let Some(_redis) = private_redis(port).await else { return };
    wait_until("the breaker to close once a probe reaches Redis again", Duration::from_secs(40), || async {
        assert_eq!(raw_http(addr, "GET", "/api/v1/Territory", "").await.0, 200);
        breaker("closed").await == 1.0
    })
    .await;
    let keys = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--scan", "--pattern", &format!("{prefix}*")])
        .output();
    match keys {
        Ok(out) => assert!(!out.stdout.is_empty(), "limits are shared through Redis again"),
        Err(_) => skip_unless_ci("redis-cli", "the shared-limits check: redis-cli is not installed"),
    }
});

crate::both_backends!(statements_stop_at_the_statement_timeout, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let pool = PoolConfig {
        min_connections: 1,
        max_connections: 2,
        statement_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    let db = Db::connect(&scratch.url, &pool).await.unwrap();
    let slow = match backend {
        Backend::Postgres => "SELECT 1 FROM pg_sleep(5)",
        Backend::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) SELECT count(*) FROM c"
        }
    };
    let started = Instant::now();
    let e = db.fetch(&m_runtime::db::DbCtx::System, slow, Vec::new(), &[FieldType::BigInt]).await.unwrap_err();
    assert!(matches!(e, DbError::Timeout), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "stopped after {:?}", started.elapsed());
    // The connection is usable afterwards.
    db.fetch(&m_runtime::db::DbCtx::System, "SELECT 1", Vec::new(), &[FieldType::Int]).await.unwrap();
});

crate::both_backends!(slow_requests_time_out_and_overload_is_shed, |backend| {
    let Some((app, config)) = TestApp::start_with(backend, |c| {
        c.request_timeout_secs = 1;
        c.max_concurrent_requests = 1;
    })
    .await
    else {
        return;
    };
    let hold = Holder::hold(config.database_url.expose()).await;
    let slow = tokio::spawn(app.post("/api/v1/Territory", json!({"territory_name": "Slow"})).send());
    // Nothing else uses the pool: a connection in use is the slow request's, inside the one
    // permit (it keeps one while it waits for the lock).
    wait_until("the slow request to take a connection", Duration::from_secs(5), || async {
        app.repo().pool_status().0 >= 1
    })
    .await;
    // The one permit is taken: the next request is shed at once.
    let started = Instant::now();
    let r = app.get("/api/v1/Customer").send().await.expect_error(503, "overloaded");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert!(started.elapsed() < Duration::from_millis(500));
    app.get("/health").anonymous().send().await.expect(200);
    slow.await.unwrap().expect_error(504, "timeout");
    hold.release().await;
    app.post("/api/v1/Territory", json!({"territory_name": "After"})).send().await.expect(201);
});

crate::both_backends!(shutdown_finishes_in_flight_requests, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut config = config(&scratch, &scratch.url.clone());
    // No job workers: a connection in use is the request's.
    config.job_workers = 0;
    let server = Server::open(config.clone(), app(), crate::support::jobs(), m::doctypes::OPENAPI).await.unwrap();
    let addr = server.local_addr().unwrap();
    let repo = server.rt.repo.clone();
    let stop = Arc::new(tokio::sync::Notify::new());
    let signal = stop.clone();
    let running = tokio::spawn(server.run_until(async move { signal.notified().await }));
    let hold = Holder::hold(&scratch.url).await;
    let in_flight = tokio::spawn(raw_http(addr, "POST", "/api/v1/Territory", r#"{"territory_name": "North"}"#));
    // The request is being served (it keeps a connection while it waits for the lock).
    wait_until("the request to take a connection", Duration::from_secs(5), || async { repo.pool_status().0 >= 1 })
        .await;
    stop.notify_one();
    wait_until("the listener to close", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no new connections while shutting down");
    hold.release().await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 201, "{body}");
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("the server stops").unwrap().unwrap();
});

/// A PostgreSQL server of its own, in a scratch folder, on a free port.
struct PrivatePg {
    dir: std::path::PathBuf,
    port: u16,
    bin: std::path::PathBuf,
    as_postgres: bool,
}

impl PrivatePg {
    fn bin_dir() -> Option<std::path::PathBuf> {
        let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .collect();
        dirs.sort();
        dirs.pop().filter(|d| d.join("initdb").exists())
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        cmd.args(args).output().unwrap()
    }

    fn start_new() -> Option<PrivatePg> {
        let bin = Self::bin_dir()?;
        let root = std::process::Command::new("id").arg("-u").output().ok()?.stdout == b"0\n";
        let dir = std::env::temp_dir().join(format!("m-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if root {
            std::process::Command::new("chown").args(["-R", "postgres"]).arg(&dir).status().unwrap();
        }
        let pg = PrivatePg { dir, port: free_port(), bin, as_postgres: root };
        let data = pg.dir.join("data");
        let out = pg.run("initdb", &["-D", data.to_str()?, "-U", "postgres", "--auth=trust", "-N"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.start();
        Some(pg)
    }

    fn start(&self) {
        let data = self.dir.join("data");
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let log = self.dir.join("log");
        let out = self
            .run("pg_ctl", &["-D", data.to_str().unwrap(), "-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"]);
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn stop(&self) {
        let data = self.dir.join("data");
        let out = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run("pg_ctl", &["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private PostgreSQL server, or None after saying the test skipped (never under `CI=true`).
fn private_pg() -> Option<PrivatePg> {
    let pg = PrivatePg::start_new();
    if pg.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "PostgreSQL server binaries are required when CI=true");
        eprintln!("skipped: no PostgreSQL server binaries");
    }
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_fast_503_and_recovers() {
    let Some(pg) = private_pg() else { return };
    let scratch = Scratch::new(Backend::Sqlite).await.unwrap();
    let config = config(&scratch, &pg.url());
    let server = Server::open(config.clone(), app(), crate::support::jobs(), m::doctypes::OPENAPI).await.unwrap();
    let app = TestApp::from_router(server.router(), scratch);
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    app.get("/ready").anonymous().send().await.expect(200);

    pg.stop();
    let started = Instant::now();
    app.get("/api/v1/Territory").send().await.expect_error(503, "unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast: {:?}", started.elapsed());
    let r = app.get("/ready").anonymous().send().await.expect(503);
    assert_eq!(r.json["checks"]["database:responseTime"][0]["status"], "fail", "{}", r.json);
    app.get("/health").anonymous().send().await.expect(200);

    pg.start();
    let r = wait_until("the API to recover", Duration::from_secs(20), || async {
        let r = app.get("/api/v1/Territory").send().await;
        if r.status == 200 { Ok(r) } else { Err(r) }
    })
    .await;
    assert_eq!(r.json["total"], 1, "{}", r.json);
    app.get("/ready").anonymous().send().await.expect(200);
}

/// Job workers ride out a database outage: claims fail quietly while it is down, and jobs queued
/// after it returns run without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_workers_recover_after_a_database_outage() {
    let Some(pg) = private_pg() else { return };
    let scratch = Scratch::new(Backend::Sqlite).await.unwrap();
    let mut config = config(&scratch, &pg.url());
    config.job_backoff_secs = 0;
    let server = Server::open(config.clone(), app(), crate::support::jobs(), m::doctypes::OPENAPI).await.unwrap();
    let app = TestApp::from_server(&server, scratch);
    let repo = app.repo().clone();
    let worker = app.worker(&config);
    let done = |id: String| {
        let repo = repo.clone();
        async move {
            wait_until(&format!("job {id} to run"), Duration::from_secs(30), || async {
                let jobs = repo.jobs().list(None, 10).await;
                if jobs.as_ref().is_ok_and(|jobs| jobs.iter().any(|j| j.id == id && j.state == "done")) {
                    Ok(())
                } else {
                    Err(jobs)
                }
            })
            .await;
        }
    };
    let first = repo.enqueue("sleepy", &json!({"ms": 1}), None).await.unwrap();
    done(first).await;
    pg.stop();
    assert!(
        repo.enqueue("sleepy", &json!({"ms": 1}), None).await.is_err(),
        "nothing is queued while the database is down"
    );
    // The worker goes on trying the database during the outage: its next attempt knocks on the
    // (now free) port, where nothing answers it.
    let port = tokio::net::TcpListener::bind(("127.0.0.1", pg.port)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), port.accept())
        .await
        .expect("the worker tries the database during the outage")
        .unwrap();
    drop(port);
    assert!(worker.is_running(), "the worker keeps running through the outage");
    pg.start();
    let second = wait_until("enqueueing to work again", Duration::from_secs(20), || async {
        repo.enqueue("sleepy", &json!({"ms": 1}), None).await
    })
    .await;
    done(second).await;
    worker.stop().await;
}

/// The `m` binary against `scratch` in production, with the test secret, default logging and
/// no trace export, plus `extra` environment.
pub fn m_command(scratch: &Scratch, extra: &[(&str, &str)]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_m"));
    c.env("DATABASE_URL", &scratch.url)
        .env("M_ENV", "production")
        .env("M_JWT_SECRET", crate::support::SECRET)
        .env_remove("M_LOG_LEVEL")
        .env_remove("RUST_LOG")
        .env_remove("M_LOG_FORMAT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("M_ZIPKIN_ENDPOINT");
    for (k, v) in extra {
        c.env(k, v);
    }
    c
}

/// The `m` binary serving `scratch` in production (after `m migrate`), with extra environment.
pub async fn spawn_binary(scratch: &Scratch, extra: &[(&str, &str)]) -> (KillOnDrop, SocketAddr) {
    let out = m_command(scratch, extra).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let child = m_command(scratch, extra)
        .args(["start", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = KillOnDrop(child);
    wait_until("the server to listen", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    (child, addr)
}

/// SIGTERM the server, wait for it to exit, and return what it wrote to stderr.
pub fn terminate(server: &mut KillOnDrop) -> String {
    let pid = server.0.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let started = Instant::now();
    while server.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "the server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    if let Some(mut e) = server.0.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut stderr).unwrap();
    }
    stderr
}

crate::both_backends!(production_logs_are_json_lines, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let (mut server, addr) = spawn_binary(&scratch, &[("M_SLOW_QUERY_MS", "0")]).await;
    let (status, body) = raw_http_with(
        addr,
        "POST",
        "/api/v1/Territory",
        r#"{"territory_name": "Secret North"}"#,
        "X-Request-Id: log-test-1\r\n",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = raw_http_with(addr, "POST", "/api/v1/User", r#"{"email": "nobody@example.com"}"#, "").await;
    assert_eq!(status, 201, "{body}");
    let nobody = TestApp::bare_token("nobody@example.com");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!(
            "GET /api/v1/Territory HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {nobody}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut denied = String::new();
    c.read_to_string(&mut denied).await.unwrap();
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    let stderr = terminate(&mut server);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let request =
        lines.iter().find(|l| l["request_id"] == "log-test-1").unwrap_or_else(|| panic!("no request line:\n{stderr}"));
    assert_eq!(request["level"], "INFO", "{request}");
    assert_eq!(request["method"], "POST");
    assert_eq!(request["route"], "/api/v1/{doctype}");
    assert_eq!(request["doctype"], "Territory");
    assert_eq!(request["status"], 201);
    assert_eq!(request["user"], "Administrator");
    assert!(request["duration_ms"].as_f64().is_some(), "{request}");
    // Every statement is "slow" at 0 ms: logged with its text and duration, never its values.
    let statements: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "slow statement").collect();
    assert!(statements.iter().any(|l| l["sql"].as_str().is_some_and(|s| s.contains("INSERT INTO"))), "{stderr}");
    assert!(!stderr.contains("Secret North"), "a value reached the logs:\n{stderr}");
    // A denial is a structured event: who, which DocType, which action, why.
    let denial = lines
        .iter()
        .find(|l| l["target"] == "m::audit" && l["message"] == "permission denied")
        .unwrap_or_else(|| panic!("no denial event:\n{stderr}"));
    assert_eq!(denial["user"], "nobody@example.com");
    assert_eq!(denial["doctype"], "Territory");
    assert_eq!(denial["action"], "read");
    assert!(denial["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(!stderr.contains(&TestApp::admin()), "a token reached the logs");
});

/// What the collector received: (path, JSON body) per POST.
type Received = Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// A collector that keeps every body POSTed to it, by path.
async fn receiver() -> (SocketAddr, Received) {
    use axum::extract::State;
    let got: Received = Arc::default();
    async fn collect(State(got): State<Received>, uri: axum::http::Uri, body: axum::body::Bytes) -> &'static str {
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        got.lock().unwrap().push((uri.path().to_string(), json));
        "{}"
    }
    let app = axum::Router::new().fallback(axum::routing::post(collect)).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, got)
}

crate::both_backends!(traces_are_exported_with_request_and_query_spans, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let (collector, got) = receiver().await;
    let otlp = format!("http://{collector}");
    let zipkin = format!("http://{collector}/api/v2/spans");
    let (mut server, addr) =
        spawn_binary(&scratch, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp), ("M_ZIPKIN_ENDPOINT", &zipkin)]).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let header = format!("traceparent: 00-{trace_id}-{parent}-01\r\n");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/Territory HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n{header}Connection: close\r\n\r\n",
        TestApp::admin()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.to_lowercase().contains(&format!("traceparent: 00-{trace_id}-")),
        "traceparent goes out:\n{response}"
    );
    // A job queued by a request continues the request's trace.
    let admin = TestApp::admin();
    let (status, body) = exchange(
        addr,
        &format!("POST /api/v1/Customer HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\n"),
        r#"{"customer_name": "Traced"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let customer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let job_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let head = format!(
        "PATCH /api/v1/Customer/{} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\ntraceparent: 00-{job_trace}-{parent}-01\r\n",
        customer["name"].as_str().unwrap()
    );
    let (status, body) = exchange(addr, &head, r#"{"customer_name": "Traced Ltd"}"#).await;
    assert_eq!(status, 200, "{body}");
    let job_span = |got: &[(String, serde_json::Value)]| {
        got.iter()
            .filter(|(p, _)| p == "/v1/traces")
            .flat_map(|(_, b)| b["resourceSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
            .any(|s| s["name"] == "job sync_customer_name")
    };
    // The server's workers run the job; its span is exported at shutdown.
    wait_until("the job to run", Duration::from_secs(20), || async {
        let out = m_command(&scratch, &[]).args(["job:list", "--json"]).output().unwrap();
        let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if jobs.as_array().is_some_and(|a| a.iter().any(|j| j["state"] == "done")) { Ok(()) } else { Err(jobs) }
    })
    .await;
    let stderr = terminate(&mut server);
    let got = got.lock().unwrap().clone();
    assert!(job_span(&got), "no job span exported:\n{stderr}");

    // OTLP/HTTP (JSON): the request span continues the caller's trace; queries are its children.
    let otlp_spans: Vec<serde_json::Value> = got
        .iter()
        .filter(|(p, _)| p == "/v1/traces")
        .flat_map(|(_, b)| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .collect();
    let http = otlp_spans
        .iter()
        .find(|s| s["name"] == "GET /api/v1/{doctype}")
        .unwrap_or_else(|| panic!("no request span in {otlp_spans:?}\n{stderr}"));
    assert_eq!(http["traceId"].as_str().map(str::to_lowercase).as_deref(), Some(trace_id), "{http}");
    assert_eq!(http["parentSpanId"].as_str().map(str::to_lowercase).as_deref(), Some(parent), "{http}");
    let queries: Vec<&serde_json::Value> = otlp_spans.iter().filter(|s| s["parentSpanId"] == http["spanId"]).collect();
    assert!(queries.iter().any(|q| q["name"] == "SELECT"), "no query span under the request: {otlp_spans:?}");
    // The job's span is a child of the request that queued it, with its statements under it.
    let patch = otlp_spans
        .iter()
        .find(|s| s["name"] == "PATCH /api/v1/{doctype}/{docref}")
        .unwrap_or_else(|| panic!("no PATCH span in {otlp_spans:?}"));
    let job = otlp_spans.iter().find(|s| s["name"] == "job sync_customer_name").unwrap();
    assert_eq!(job["traceId"].as_str().map(str::to_lowercase).as_deref(), Some(job_trace), "{job}");
    assert_eq!(job["parentSpanId"], patch["spanId"], "the job continues the request's trace: {job}");
    assert!(
        otlp_spans.iter().any(|s| s["parentSpanId"] == job["spanId"] && s["name"] == "SELECT"),
        "no query span under the job: {otlp_spans:?}"
    );

    // Zipkin v2: the same structure.
    let zipkin_spans: Vec<serde_json::Value> = got
        .iter()
        .filter(|(p, _)| p == "/api/v2/spans")
        .flat_map(|(_, b)| b.as_array().cloned().unwrap_or_default())
        .collect();
    let zhttp = zipkin_spans
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("GET /api/v1/{doctype}")))
        .unwrap_or_else(|| panic!("no Zipkin request span in {zipkin_spans:?}"));
    assert_eq!(zhttp["traceId"], trace_id);
    assert!(zipkin_spans.iter().any(|s| s["parentId"] == zhttp["id"]), "no Zipkin query span under the request");
});

/// Parse the Prometheus text format: (name, labels, value) per sample.
fn samples(text: &str) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in: {line}"));
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").unwrap_or_else(|| panic!("bad label in: {line}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), Default::default()),
        };
        out.push((name, labels, value));
    }
    out
}

fn has(
    samples: &[(String, std::collections::BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
        .fold(f64::NAN, |acc, v| if acc.is_nan() { v } else { acc.max(v) })
}

crate::both_backends!(metrics_use_route_templates_and_doctypes, |backend| {
    let Some((app, _)) = TestApp::start_with(backend, |_| {}).await else { return };
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    app.get("/api/v1/Territory/North").send().await.expect(200);
    app.get("/api/v1/Territory/North").send().await.expect(200);
    app.get("/api/v1/Territory").by(app.token("nobody@example.com", &[]).await).send().await.expect(403);
    let r = app.get("/metrics").anonymous().send().await.expect(200);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain")));
    let text = r.json.as_str().unwrap_or_default().to_string();
    let s = samples(&text);
    let checks: &[(&str, &[(&str, &str)])] = &[
        ("m_http_requests_total", &[("method", "POST"), ("route", "/api/v1/{doctype}"), ("status", "201")]),
        ("m_http_requests_total", &[("method", "GET"), ("route", "/api/v1/{doctype}/{docref}"), ("status", "200")]),
        ("m_http_request_duration_seconds_count", &[("method", "GET"), ("route", "/api/v1/{doctype}/{docref}")]),
        ("m_http_request_duration_seconds_bucket", &[("route", "/api/v1/{doctype}"), ("le", "+Inf")]),
        ("m_db_query_duration_seconds_count", &[("doctype", "Territory"), ("operation", "create")]),
        ("m_db_query_duration_seconds_count", &[("doctype", "Territory"), ("operation", "get")]),
        ("m_db_pool_connections", &[("state", "idle")]),
        ("m_db_pool_connections", &[("state", "in_use")]),
        ("m_cache_requests_total", &[("cache", "token"), ("result", "hit")]),
        ("m_cache_requests_total", &[("cache", "token"), ("result", "miss")]),
        ("m_permission_denials_total", &[("doctype", "Territory"), ("action", "read")]),
        ("m_jobs_queued", &[("state", "queued")]),
        ("m_jobs_queued", &[("state", "failed")]),
    ];
    for (name, labels) in checks {
        let v = has(&s, name, labels);
        assert!(
            v >= 1.0 || (matches!(*name, "m_db_pool_connections" | "m_jobs_queued") && v >= 0.0),
            "{name}{labels:?} missing or zero:\n{text}"
        );
    }
    // Labels carry templates, never raw paths or document names.
    assert!(!text.contains("/api/v1/Territory"), "a raw path reached a label:\n{text}");
    assert!(!text.contains("North"), "a document name reached a label");
});

crate::both_backends!(every_named_metric_series_is_exported, |backend| {
    let Some(redis) = crate::support::redis_url() else {
        eprintln!("skipped: M_TEST_REDIS_URL is not set");
        return;
    };
    let Some(scratch) = Scratch::new(backend).await else { return };
    let prefix = format!("m-test-{}:", uuid::Uuid::new_v4().simple());
    let (_server, addr) = spawn_binary(
        &scratch,
        &[("REDIS_URL", redis.as_str()), ("M_REDIS_PREFIX", prefix.as_str()), ("M_RATE_LIMIT_API", "8")],
    )
    .await;
    let admin = TestApp::admin();
    let call = |method: &'static str, path: &'static str, token: String, body: &'static str| async move {
        exchange(addr, &format!("{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"), body)
            .await
            .0
    };
    assert_eq!(call("POST", "/api/v1/Territory", admin.clone(), r#"{"territory_name": "North"}"#).await, 201);
    assert_eq!(call("GET", "/api/v1/Territory/North", admin.clone(), "").await, 200);
    assert_eq!(call("POST", "/api/v1/User", admin.clone(), r#"{"email": "nobody@example.com"}"#).await, 201);
    let nobody = TestApp::bare_token("nobody@example.com");
    assert_eq!(call("GET", "/api/v1/Territory", nobody, "").await, 403);
    let mut limited = false;
    for _ in 0..10 {
        limited |= call("GET", "/api/v1/Territory", admin.clone(), "").await == 429;
    }
    assert!(limited, "the API limit of 8 per minute was reached");
    let (status, text) = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n", "").await;
    assert_eq!(status, 200);
    let s = samples(&text);
    let at_least_one: &[(&str, &[(&str, &str)])] = &[
        ("m_http_requests_total", &[("method", "POST"), ("route", "/api/v1/{doctype}"), ("status", "201")]),
        ("m_http_request_duration_seconds_count", &[("method", "GET"), ("route", "/api/v1/{doctype}/{docref}")]),
        ("m_db_query_duration_seconds_count", &[("doctype", "Territory"), ("operation", "create")]),
        ("m_cache_requests_total", &[("cache", "token"), ("result", "miss")]),
        ("m_cache_requests_total", &[("cache", "token"), ("result", "hit")]),
        ("m_cache_requests_total", &[("cache", "user"), ("result", "miss")]),
        ("m_rate_limit_rejections_total", &[("policy", "api")]),
        ("m_permission_denials_total", &[("doctype", "Territory"), ("action", "read")]),
        ("m_circuit_breaker_state", &[("breaker", "redis"), ("state", "closed")]),
    ];
    for (name, labels) in at_least_one {
        assert!(has(&s, name, labels) >= 1.0, "{name}{labels:?} missing or zero:\n{text}");
    }
    let present: &[(&str, &[(&str, &str)])] = &[
        ("m_db_pool_connections", &[("state", "in_use")]),
        ("m_db_pool_connections", &[("state", "idle")]),
        ("m_jobs_queued", &[("state", "queued")]),
        ("m_jobs_queued", &[("state", "running")]),
        ("m_jobs_queued", &[("state", "failed")]),
        ("m_circuit_breaker_state", &[("breaker", "redis"), ("state", "open")]),
    ];
    for (name, labels) in present {
        assert!(has(&s, name, labels) >= 0.0, "{name}{labels:?} missing:\n{text}");
    }
    assert!(!text.contains("North") && !text.contains("nobody@"), "no document or user in a label");
});

crate::both_backends!(metrics_can_have_their_own_listener, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut config = config(&scratch, &scratch.url.clone());
    config.metrics_addr = Some(([127, 0, 0, 1], 0).into());
    let server = Server::open(config.clone(), app(), crate::support::jobs(), m::doctypes::OPENAPI).await.unwrap();
    let metrics = server.metrics_addr().expect("a metrics listener");
    let main = TestApp::from_router(server.router(), Scratch::new(Backend::Sqlite).await.unwrap());
    main.get("/metrics").anonymous().send().await.expect(404);
    let stop = Arc::new(tokio::sync::Notify::new());
    let signal = stop.clone();
    let running = tokio::spawn(server.run_until(async move { signal.notified().await }));
    let (status, body) = raw_http(metrics, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{body}");
    stop.notify_one();
    running.await.unwrap().unwrap();
});

crate::both_backends!(a_panic_is_a_500_and_the_server_goes_on, |backend| {
    let Some((app, _)) = TestApp::start_with(backend, |_| {}).await else { return };
    let r = app
        .post("/api/v1/Gadget", json!({"code": "P-1", "label": "panic in a hook"}))
        .send()
        .await
        .expect_error(500, "internal");
    assert!(!r.json.to_string().contains("panicked"), "no panic text in the body: {}", r.json);
    app.post("/api/v1/Gadget", json!({"code": "P-2", "label": "fine"})).send().await.expect(201);
    app.get("/api/v1/Gadget").send().await.expect(200);
});
