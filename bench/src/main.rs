//! The benchmark's two helpers:
//!
//! - `m-bench seed <DATABASE_URL> <N> <ids-file>`: create the example schema, a Territory and N
//!   Customers through the repository (as the application would), and write their ids.
//! - `m-bench token <secret> <user> [role…]`: an HS256 bearer token for the generated server.
//! - `m-bench baseline <DATABASE_URL> <port>`: a hand-written axum server for the same `customer`
//!   table — get by id, list 20, create — with its own ping-free pool of sqlx connections (the
//!   same connection handling as the runtime: deadpool, no pings, statement cache on) and the same
//!   SQL statements the generated API sends. No authentication, no row scope, no logging: the
//!   floor the generated API is measured against.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SubsecRound, Utc};
use deadpool::managed::{self, Metrics, Pool, RecycleError, RecycleResult};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::Mutex;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seed") if args.len() == 5 => seed(&args[2], args[3].parse()?, &args[4]).await,
        Some("baseline") if args.len() == 4 => baseline(&args[2], args[3].parse()?).await,
        Some("token") if args.len() == 4 => {
            // A day long, issued now (`iat` is required).
            let claims = m_runtime::auth::Claims::issued_now(args[3].clone(), 86_400, None, None);
            println!("{}", m_runtime::auth::sign_hs256(args[2].as_bytes(), &claims)?);
            Ok(())
        }
        _ => bail!(
            "usage: m-bench seed <DATABASE_URL> <N> <ids-file> | m-bench baseline <DATABASE_URL> <port> | m-bench token <secret> <user>"
        ),
    }
}

async fn seed(url: &str, n: usize, ids_file: &str) -> anyhow::Result<()> {
    let config = m_runtime::config::Config {
        database_url: m_runtime::config::Secret::new(url),
        port: 0,
        db_max_connections: 8,
        ..m_runtime::config::Config::default()
    };
    // The development start applies the example application's embedded revisions.
    let app = m_runtime::app::App::new("m", "0.1.0", m::doctypes::doctypes())
        .map_err(anyhow::Error::msg)?
        .with_migrations(m::migrations::MIGRATIONS, None);
    let server = m_runtime::server::Server::open(config, app, m::jobs::JOBS, m::doctypes::OPENAPI).await?;
    let repo = server.rt.repo.clone();
    let admin = m_runtime::perms::Principal::administrator();
    repo.create(&admin, "Territory", &serde_json::json!({"territory_name": "North"})).await.ok();
    // The user the benchmark's requests act as (its roles come from the database).
    let bench_user = serde_json::json!({"email": "bench@example.com", "roles": [{"role": "Sales User"}]});
    repo.create(&admin, "User", &bench_user).await.ok();
    let workers = if url.starts_with("sqlite") { 1 } else { 8 };
    let mut tasks = Vec::new();
    for w in 0..workers {
        let repo = repo.clone();
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (w..n).step_by(workers) {
                let body = serde_json::json!({"customer_name": format!("Customer {i}"), "email": format!("c{i}@example.com"), "territory": "North", "credit_limit": "1000.50"});
                let doc = repo.create(&admin, "Customer", &body).await.map_err(|e| anyhow::anyhow!("seed: {e}"))?;
                ids.push(doc.id().map(|u| u.to_string()).unwrap_or_default());
            }
            anyhow::Ok(ids)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    std::fs::write(ids_file, all.join("\n") + "\n").context("write ids")?;
    println!("seeded {} customers", all.len());
    Ok(())
}

/// A customer row, decoded by sqlx into a struct and serialized by serde: what a hand-written
/// handler does.
#[derive(Serialize)]
struct Customer {
    id: Uuid,
    name: String,
    owner: String,
    modified_by: String,
    #[serde(serialize_with = "rfc3339")]
    creation: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    modified: DateTime<Utc>,
    customer_name: String,
    email: Option<String>,
    territory: Option<String>,
    credit_limit: Option<Decimal>,
}

/// What chrono's serde support writes (this workspace builds chrono without it).
fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

impl Customer {
    fn from_pg(r: &PgRow) -> Result<Customer, sqlx::Error> {
        Ok(Customer {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            owner: r.try_get(2)?,
            modified_by: r.try_get(3)?,
            creation: r.try_get(4)?,
            modified: r.try_get(5)?,
            customer_name: r.try_get(6)?,
            email: r.try_get(7)?,
            territory: r.try_get(8)?,
            credit_limit: r.try_get(9)?,
        })
    }
}

/// SQLite stores decimals and date-times as text; the hand-written SQLite handler decodes them.
struct LiteCustomer {
    id: String,
    name: String,
    owner: String,
    modified_by: String,
    creation: String,
    modified: String,
    customer_name: String,
    email: Option<String>,
    territory: Option<String>,
    credit_limit: Option<String>,
}

impl LiteCustomer {
    fn from_row(r: &SqliteRow) -> Result<LiteCustomer, sqlx::Error> {
        Ok(LiteCustomer {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            owner: r.try_get(2)?,
            modified_by: r.try_get(3)?,
            creation: r.try_get(4)?,
            modified: r.try_get(5)?,
            customer_name: r.try_get(6)?,
            email: r.try_get(7)?,
            territory: r.try_get(8)?,
            credit_limit: r.try_get(9)?,
        })
    }

    fn into_customer(self) -> Option<Customer> {
        Some(Customer {
            id: Uuid::parse_str(&self.id).ok()?,
            name: self.name,
            owner: self.owner,
            modified_by: self.modified_by,
            creation: DateTime::parse_from_rfc3339(&self.creation).ok()?.with_timezone(&Utc),
            modified: DateTime::parse_from_rfc3339(&self.modified).ok()?.with_timezone(&Utc),
            customer_name: self.customer_name,
            email: self.email,
            territory: self.territory,
            credit_limit: self.credit_limit.and_then(|d| Decimal::from_str(&d).ok()),
        })
    }
}

#[derive(Deserialize)]
struct NewCustomer {
    customer_name: String,
    email: Option<String>,
    territory: Option<String>,
    credit_limit: Option<Decimal>,
}

const COLUMNS: &str = r#""id", "name", "owner", "modified_by", "creation", "modified", "customer_name", "email", "territory", "credit_limit""#;

struct PgConn {
    conn: PgConnection,
    busy: bool,
}

struct PgManager(PgConnectOptions);

impl managed::Manager for PgManager {
    type Type = PgConn;
    type Error = sqlx::Error;
    async fn create(&self) -> Result<PgConn, sqlx::Error> {
        Ok(PgConn { conn: self.0.connect().await?, busy: false })
    }
    async fn recycle(&self, c: &mut PgConn, _: &Metrics) -> RecycleResult<sqlx::Error> {
        if c.busy { Err(RecycleError::message("cancelled")) } else { Ok(()) }
    }
}

enum Backend {
    Pg(Pool<PgManager>),
    Lite { writer: Mutex<SqliteConnection>, readers: Vec<Mutex<SqliteConnection>> },
}

type AppState = Arc<Backend>;

fn error(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => error(e),
    }
}

async fn baseline(url: &str, port: u16) -> anyhow::Result<()> {
    let backend = if url.starts_with("postgres") {
        let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
        Backend::Pg(
            Pool::builder(PgManager(opts))
                .max_size(30)
                .wait_timeout(Some(Duration::from_secs(30)))
                .runtime(deadpool::Runtime::Tokio1)
                .build()?,
        )
    } else {
        let path = url.trim_start_matches("sqlite://");
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .disable_statement_logging();
        let writer = Mutex::new(opts.clone().connect().await?);
        let mut readers = Vec::new();
        for _ in 0..4 {
            readers.push(Mutex::new(opts.clone().read_only(true).connect().await?));
        }
        Backend::Lite { writer, readers }
    };
    let router = Router::new()
        .route("/customer", get(list).post(create))
        .route("/customer/{id}", get(read))
        .with_state(Arc::new(backend));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

fn reader(readers: &[Mutex<SqliteConnection>]) -> &Mutex<SqliteConnection> {
    // Spread readers by a cheap per-request choice; contention is what a pool would see too.
    let i = (Uuid::new_v4().as_u128() % readers.len() as u128) as usize;
    &readers[i]
}

async fn read(State(state): State<AppState>, Path(id): Path<Uuid>) -> Response {
    let sql = format!("SELECT {COLUMNS} FROM \"customer\" WHERE \"id\" = $1");
    let result = match &*state {
        Backend::Pg(pool) => {
            let mut c = match pool.get().await {
                Ok(c) => c,
                Err(e) => return error(e),
            };
            c.busy = true;
            let row = sqlx::query(&sql).bind(id).fetch_optional(&mut c.conn).await;
            c.busy = false;
            row.and_then(|r| r.as_ref().map(Customer::from_pg).transpose()).map_err(|e| e.to_string())
        }
        Backend::Lite { readers, .. } => {
            let mut c = reader(readers).lock().await;
            let row = sqlx::query(&sql.replace("$1", "?")).bind(id.to_string()).fetch_optional(&mut *c).await;
            row.and_then(|r| r.as_ref().map(LiteCustomer::from_row).transpose())
                .map(|r| r.and_then(LiteCustomer::into_customer))
                .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(Some(c)) => json(StatusCode::OK, &c),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => error(e),
    }
}

#[derive(Serialize)]
struct Page {
    items: Vec<Customer>,
    total: Option<i64>,
    limit: u32,
    offset: u32,
    has_more: bool,
}

async fn list(State(state): State<AppState>) -> Response {
    let sql =
        format!("SELECT {COLUMNS} FROM \"customer\" WHERE 1 = 1 ORDER BY \"modified\" DESC, \"id\" LIMIT $1 OFFSET $2");
    let rows = match &*state {
        Backend::Pg(pool) => {
            let mut c = match pool.get().await {
                Ok(c) => c,
                Err(e) => return error(e),
            };
            c.busy = true;
            let rows = sqlx::query(&sql).bind(21i64).bind(0i64).fetch_all(&mut c.conn).await;
            c.busy = false;
            rows.and_then(|rs| rs.iter().map(Customer::from_pg).collect::<Result<Vec<_>, _>>())
                .map_err(|e| e.to_string())
        }
        Backend::Lite { readers, .. } => {
            let mut c = reader(readers).lock().await;
            let rows =
                sqlx::query(&sql.replace("$1", "?").replace("$2", "?")).bind(21i64).bind(0i64).fetch_all(&mut *c).await;
            rows.and_then(|rs| rs.iter().map(LiteCustomer::from_row).collect::<Result<Vec<_>, _>>())
                .map(|r| r.into_iter().filter_map(LiteCustomer::into_customer).collect())
                .map_err(|e| e.to_string())
        }
    };
    match rows {
        Ok(mut items) => {
            let has_more = items.len() > 20;
            items.truncate(20);
            json(StatusCode::OK, &Page { items, total: None, limit: 20, offset: 0, has_more })
        }
        Err(e) => error(e),
    }
}

/// The same statements as the generated create: Link check, series counter, insert, in one
/// transaction.
async fn create(State(state): State<AppState>, body: Bytes) -> Response {
    let body: NewCustomer = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let now = Utc::now().trunc_subsecs(6);
    let id = Uuid::now_v7();
    let series = "INSERT INTO m_series (prefix, current) VALUES ($1, 1) ON CONFLICT (prefix) DO UPDATE SET current = m_series.current + 1 RETURNING current";
    let link = "SELECT \"name\" FROM \"territory\" WHERE \"name\" = $1";
    let insert = format!("INSERT INTO \"customer\" ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
    let owner = "Administrator";
    match &*state {
        Backend::Pg(_) => {
            // As on SQLite: the transaction runs to its end even if the client goes away.
            let state = state.clone();
            let task = tokio::spawn(async move {
                let Backend::Pg(pool) = &*state else { unreachable!("PostgreSQL backend") };
                let mut c = match pool.get().await {
                    Ok(c) => c,
                    Err(e) => return error(e),
                };
                c.busy = true;
                let result: Result<Customer, sqlx::Error> = async {
                    let mut tx = c.conn.begin().await?;
                    if let Some(t) = &body.territory {
                        sqlx::query_scalar::<_, String>(link).bind(t).fetch_one(&mut *tx).await?;
                    }
                    let n: i64 = sqlx::query_scalar(series).bind("CUST-").fetch_one(&mut *tx).await?;
                    let name = format!("CUST-{n:05}");
                    let customer = Customer {
                        id,
                        name,
                        owner: owner.into(),
                        modified_by: owner.into(),
                        creation: now,
                        modified: now,
                        customer_name: body.customer_name,
                        email: body.email,
                        territory: body.territory,
                        credit_limit: body.credit_limit,
                    };
                    sqlx::query(&insert)
                        .bind(customer.id)
                        .bind(&customer.name)
                        .bind(&customer.owner)
                        .bind(&customer.modified_by)
                        .bind(customer.creation)
                        .bind(customer.modified)
                        .bind(&customer.customer_name)
                        .bind(&customer.email)
                        .bind(&customer.territory)
                        .bind(customer.credit_limit)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(customer)
                }
                .await;
                c.busy = false;
                match result {
                    Ok(customer) => json(StatusCode::CREATED, &customer),
                    Err(e) => error(e),
                }
            });
            task.await.unwrap_or_else(error)
        }
        Backend::Lite { .. } => {
            // Run the transaction on its own task: a client that goes away mid-request must not
            // leave the writer inside BEGIN IMMEDIATE.
            let state = state.clone();
            let task = tokio::spawn(async move {
                let Backend::Lite { writer, .. } = &*state else { unreachable!("SQLite backend") };
                let mut c = writer.lock().await;
                let result: Result<Customer, sqlx::Error> = async {
                    sqlx::query("BEGIN IMMEDIATE").execute(&mut *c).await?;
                    if let Some(t) = &body.territory {
                        sqlx::query_scalar::<_, String>(&link.replace("$1", "?")).bind(t).fetch_one(&mut *c).await?;
                    }
                    let n: i64 =
                        sqlx::query_scalar(&series.replace("$1", "?")).bind("CUST-").fetch_one(&mut *c).await?;
                    let customer = Customer {
                        id,
                        name: format!("CUST-{n:05}"),
                        owner: owner.into(),
                        modified_by: owner.into(),
                        creation: now,
                        modified: now,
                        customer_name: body.customer_name,
                        email: body.email,
                        territory: body.territory,
                        credit_limit: body.credit_limit,
                    };
                    let lite_insert = (1..=10).fold(insert.clone(), |s, i| s.replacen(&format!("${i}"), "?", 1));
                    sqlx::query(&lite_insert)
                        .bind(customer.id.to_string())
                        .bind(&customer.name)
                        .bind(&customer.owner)
                        .bind(&customer.modified_by)
                        .bind(customer.creation.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
                        .bind(customer.modified.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
                        .bind(&customer.customer_name)
                        .bind(&customer.email)
                        .bind(&customer.territory)
                        .bind(customer.credit_limit.map(|d| d.to_string()))
                        .execute(&mut *c)
                        .await?;
                    sqlx::query("COMMIT").execute(&mut *c).await?;
                    Ok(customer)
                }
                .await;
                match result {
                    Ok(customer) => json(StatusCode::CREATED, &customer),
                    Err(e) => {
                        let _ = sqlx::query("ROLLBACK").execute(&mut *c).await;
                        error(e)
                    }
                }
            });
            task.await.unwrap_or_else(error)
        }
    }
}
