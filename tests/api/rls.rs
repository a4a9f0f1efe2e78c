//! `M_DB_RLS=on`: PostgreSQL row security policies enforce the row scope a second time. These
//! tests are about PostgreSQL itself (SQLite has no row security: there the setting is refused).
//! The database belongs to an ordinary role, as in a real deployment; the server refuses to run
//! as a superuser, which no policy binds.

use m_runtime::config::{Config, Secret};
use m_runtime::db::{Db, DbCtx};
use m_runtime::meta::FieldType;
use m_runtime::server::Server;
use m_runtime::value::Value;
use serde_json::json;

use crate::support::application as app;
use crate::support::{Backend, SECRET, Scratch, TestApp, test_config};

fn config(url: &str, scratch: &Scratch, rls: bool) -> Config {
    Config { db_rls: rls, ..test_config(url, scratch) }
}

/// The example application as its binary ships it, for production starts.
fn shipped() -> m_runtime::app::App {
    m_runtime::app::App::new("m", "0.1.0", m::doctypes::doctypes())
        .expect("valid application")
        .with_migrations(m::migrations::MIGRATIONS, None)
}

async fn names(db: &Db, ctx: &DbCtx, sql: &str) -> Vec<String> {
    let rows = db.fetch(ctx, sql, Vec::new(), &[FieldType::Data]).await.unwrap();
    let mut out: Vec<String> =
        rows.into_iter().filter_map(|r| r.into_iter().next()).filter_map(|v| v.as_str().map(str::to_string)).collect();
    out.sort();
    out
}

/// The test application with `M_DB_RLS=on`, on a PostgreSQL database owned by an ordinary role
/// (row security does not bind superusers); None, after saying so, without PostgreSQL.
async fn with_row_security() -> Option<(TestApp, Config)> {
    let Some(scratch) = Scratch::postgres_owned_by_a_role().await else {
        eprintln!("skipped: M_TEST_PG_URL is not set");
        return None;
    };
    let cfg = config(&scratch.url.clone(), &scratch, true);
    let server = Server::open(cfg.clone(), app(), crate::support::jobs(), m::doctypes::OPENAPI)
        .await
        .expect("server starts with M_DB_RLS=on");
    Some((TestApp::from_server(&server, scratch), cfg))
}

fn caller(user: &str, roles: &[&str], action: &'static str) -> DbCtx {
    DbCtx::Caller {
        user: user.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        action,
        labels: m_runtime::db::Labels::INTERNAL,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_policies_hold_when_a_query_forgets_the_scope() {
    let Some((api, cfg)) = with_row_security().await else { return };
    let url = cfg.database_url.expose().to_string();

    // The API behaves as without row security.
    for t in ["North", "South"] {
        api.post("/api/v1/Territory", json!({"territory_name": t})).send().await.expect(201);
    }
    let mut customers = Vec::new();
    for (n, t) in [("Acme", "North"), ("Bolt", "South")] {
        let c = api.post("/api/v1/Customer", json!({"customer_name": n, "territory": t})).send().await.expect(201);
        customers.push(c.json["name"].as_str().unwrap().to_string());
    }
    let alice = api.token("alice@example.com", &["Sales User"]).await;
    let bob = api.token("bob@example.com", &["Sales User"]).await;
    let mia = api.token("mia@example.com", &["Sales Manager"]).await;
    let mut invoices = Vec::new();
    for (who, c) in [(&alice, &customers[0]), (&bob, &customers[1]), (&bob, &customers[0])] {
        let inv = api
            .post("/api/v1/Invoice", json!({"customer": c, "items": [{"item_code": "A", "rate": 5}]}))
            .by(who.clone())
            .send()
            .await
            .expect(201);
        invoices.push(inv.json["name"].as_str().unwrap().to_string());
    }
    api.post(
        "/api/v1/User%20Permission",
        json!({"user": "mia@example.com", "allow": "Customer", "for_value": customers[0]}),
    )
    .send()
    .await
    .expect(201);
    assert_eq!(api.get("/api/v1/Invoice").by(alice.clone()).send().await.expect(200).json["total"], 1);
    assert_eq!(api.get("/api/v1/Invoice").by(mia.clone()).send().await.expect(200).json["total"], 2);
    assert_eq!(api.get("/api/v1/Invoice").send().await.expect(200).json["total"], 3);
    api.get(&format!("/api/v1/Invoice/{}", invoices[1])).by(alice.clone()).send().await.expect_error(404, "not_found");
    api.req("POST", &format!("/api/v1/Invoice/{}/submit", invoices[0])).by(alice.clone()).send().await.expect(200);
    api.req("POST", &format!("/api/v1/Invoice/{}/cancel", invoices[0])).by(mia.clone()).send().await.expect(200);
    let amended =
        api.req("POST", &format!("/api/v1/Invoice/{}/amend", invoices[0])).by(alice.clone()).send().await.expect(201);
    assert_eq!(amended.json["customer_name"], "Acme", "hook reads see the Customer");
    api.post("/api/v1/Invoice", json!({"customer": customers[1]}))
        .by(mia.clone())
        .send()
        .await
        .expect_error(403, "forbidden");
    // Updates replace child rows; a manager deletes a draft; counts agree.
    let patched = api
        .patch(
            &format!("/api/v1/Invoice/{}", invoices[1]),
            json!({"items": [{"item_code": "B", "rate": 7}, {"item_code": "C", "rate": 1}]}),
        )
        .by(bob.clone())
        .send()
        .await
        .expect(200);
    assert_eq!(patched.json["items"].as_array().unwrap().len(), 2);
    let extra = api.post("/api/v1/Invoice", json!({"customer": customers[0]})).by(mia.clone()).send().await.expect(201);
    api.delete(&format!("/api/v1/Invoice/{}", extra.json["name"].as_str().unwrap()))
        .by(mia.clone())
        .send()
        .await
        .expect(204);
    api.delete(&format!("/api/v1/Invoice/{}", invoices[1])).by(mia.clone()).send().await.expect_error(404, "not_found");
    let counted = api.get("/api/v1/Invoice?total=true&limit=1").by(bob.clone()).send().await.expect(200).json;
    assert_eq!(counted["total"], 2);

    // Statements without any application predicate, on the server's kind of connection: the
    // database returns only the caller's rows.
    let db = Db::connect(&url, &m_runtime::db::PoolConfig::from(&cfg)).await.unwrap();
    let all = names(&db, &DbCtx::System, "SELECT name FROM invoice").await;
    assert_eq!(all.len(), 4, "{all:?}");
    let mine = names(&db, &caller("alice@example.com", &["Sales User"], "read"), "SELECT name FROM invoice").await;
    assert_eq!(mine, vec![invoices[0].clone(), amended.json["name"].as_str().unwrap().to_string()]);
    let restricted =
        names(&db, &caller("mia@example.com", &["Sales Manager"], "read"), "SELECT name FROM invoice").await;
    assert_eq!(restricted.len(), 3, "Acme's invoices only: {restricted:?}");
    assert!(!restricted.contains(&invoices[1]));
    let items =
        names(&db, &caller("bob@example.com", &["Sales User"], "read"), "SELECT parent FROM invoice_item").await;
    assert_eq!(
        items,
        vec![invoices[1].clone(), invoices[1].clone(), invoices[2].clone()],
        "child rows follow their parent"
    );
    let none = names(&db, &caller("nobody@example.com", &[], "read"), "SELECT name FROM invoice").await;
    assert!(none.is_empty());
    // Writes: an UPDATE or DELETE without a WHERE reaches only what the caller may change.
    let mut tx = db.begin(&caller("bob@example.com", &["Sales User"], "write")).await.unwrap();
    let changed = tx.execute("UPDATE invoice SET status = 'Paid' WHERE docstatus = 0", Vec::new()).await.unwrap();
    assert_eq!(changed, 2, "Bob's two drafts");
    drop(tx);
    let mut tx = db.begin(&caller("bob@example.com", &["Sales User"], "delete")).await.unwrap();
    assert_eq!(tx.execute("DELETE FROM invoice_item", Vec::new()).await.unwrap(), 0, "no delete grant");
    drop(tx);
    let mut tx = db.begin(&caller("mia@example.com", &["Sales Manager"], "write")).await.unwrap();
    let moved = tx
        .execute(
            "UPDATE invoice SET customer = $1 WHERE name = $2",
            vec![
                (FieldType::Data, Value::Str(customers[1].clone())),
                (FieldType::Data, Value::Str(invoices[2].clone())),
            ],
        )
        .await;
    assert!(moved.is_err(), "moving a row outside the User Permissions violates the policy");
    drop(tx);
    // A connection that says nothing about its caller sees nothing.
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice").fetch_one(&mut c).await.unwrap();
        assert_eq!(n, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_policies_follow_the_setting_and_the_build() {
    let Some(scratch) = Scratch::postgres_owned_by_a_role().await else {
        eprintln!("skipped: M_TEST_PG_URL is not set");
        return;
    };
    let url = scratch.url.clone();
    let run = |args: &[&str], rls: &str, env: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_m"))
            .args(args)
            .env("DATABASE_URL", &url)
            .env("M_ENV", env)
            .env("M_JWT_SECRET", SECRET)
            .env("M_DB_RLS", rls)
            .env("M_MIGRATIONS_DIR", scratch.migrations_dir())
            .output()
            .unwrap()
    };
    // `m migrate` installs the policies with M_DB_RLS=on, and removes them with it off.
    let out = run(&["migrate"], "on", "production");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("row security policies installed"));
    let again = run(&["migrate", "--json"], "on", "production");
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["row_security"], json!([]), "nothing to change the second time");
    // Production with the setting off refuses a database that has them.
    let cfg_off = config(&url, &scratch, false);
    let prod_off = Config { env: m_runtime::config::Mode::Production, ..cfg_off.clone() };
    let e = Server::open(prod_off.clone(), shipped(), m::jobs::JOBS, m::doctypes::OPENAPI)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("M_DB_RLS is off"), "{e}");
    let prod_on = Config { db_rls: true, ..prod_off.clone() };
    Server::open(prod_on.clone(), shipped(), m::jobs::JOBS, m::doctypes::OPENAPI)
        .await
        .expect("production with the policies");
    let out = run(&["migrate"], "off", "production");
    assert!(String::from_utf8_lossy(&out.stdout).contains("row security policies removed"));
    Server::open(prod_off.clone(), shipped(), m::jobs::JOBS, m::doctypes::OPENAPI)
        .await
        .expect("production without them");
    let e = Server::open(prod_on.clone(), shipped(), m::jobs::JOBS, m::doctypes::OPENAPI)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("missing or from another build"), "{e}");

    // A superuser is refused: no policy binds it.
    let Some(su) = Scratch::new(Backend::Postgres).await else { return };
    let cfg = config(&su.url.clone(), &su, true);
    let e = Server::open(cfg.clone(), app(), crate::support::jobs(), m::doctypes::OPENAPI)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("superuser"), "{e}");
    // SQLite has no row security.
    let lite = Config { database_url: Secret::new("sqlite://x.db"), db_rls: true, ..Config::default() };
    assert!(lite.check().unwrap_err().contains("needs PostgreSQL"));
}

/// Jobs act through the same connections as requests: with row security on, a job acting as the
/// Administrator still reaches rows that other users own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_jobs_run_under_row_security() {
    let Some((api, cfg)) = with_row_security().await else { return };
    let url = cfg.database_url.expose().to_string();
    let c = api.post("/api/v1/Customer", json!({"customer_name": "Acme"})).send().await.expect(201);
    let customer = c.json["name"].as_str().unwrap().to_string();
    let alice = api.token("alice@example.com", &["Sales User"]).await;
    let inv = api.post("/api/v1/Invoice", json!({"customer": customer})).by(alice.clone()).send().await.expect(201);
    let invoice = inv.json["name"].as_str().unwrap().to_string();
    api.req("PATCH", &format!("/api/v1/Customer/{customer}"))
        .json(json!({"customer_name": "Acme Ltd"}))
        .send()
        .await
        .expect(200);
    let worker = api.worker(&cfg);
    let jobs = crate::support::wait_until("the job to end", std::time::Duration::from_secs(20), || async {
        let jobs = api.repo().jobs().list(None, 10).await.unwrap();
        if jobs.iter().any(|j| j.state != "queued" && j.state != "running") { Ok(jobs) } else { Err(jobs) }
    })
    .await;
    assert_eq!(jobs[0].state, "done", "{jobs:#?}");
    worker.stop().await;
    let r = api.get(&format!("/api/v1/Invoice/{invoice}")).by(alice).send().await.expect(200);
    assert_eq!(r.json["customer_name"], "Acme Ltd", "the job updated alice's invoice under row security");

    // The migrator sees every row too: `--live` finds a Select value outside the options.
    let db = Db::connect(&url, &m_runtime::db::PoolConfig::from(&cfg)).await.unwrap();
    let mut tx = db.begin(&DbCtx::System).await.unwrap();
    assert_eq!(tx.execute("UPDATE invoice SET status = 'Overdue'", Vec::new()).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let files = m::migrations::MIGRATIONS.iter().map(|(f, c)| ((*f).to_string(), (*c).to_string())).collect();
    let source = m_runtime::migrate::Source { files, dir: None, differs_from_binary: Vec::new() };
    let mut m = m_runtime::migrate::Migrator::open(&url, source, "test", m_runtime::migrate::Timeouts::default())
        .await
        .unwrap();
    let desired = m_runtime::migrate::desired_schema(&app()).unwrap();
    let found = m_runtime::migrate::live::invalid_values(m.conn().await, &desired).await.unwrap();
    m.close().await;
    assert!(found.iter().any(|f| f.contains("`invoice.status`") && f.contains("`Overdue`")), "{found:?}");
}

/// The runtime's own documents — a webhook's delivery log, a queued email — are written for
/// whoever makes the change, though row security lets only System Managers at them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deliveries_and_email_are_recorded_for_any_writer() {
    let Some((api, _)) = with_row_security().await else { return };
    let hook = json!({"webhook_doctype": "Invoice", "webhook_docevent": "after_insert", "request_url": "https://example.com/in"});
    let hook = api.post("/api/v1/Webhook", hook).send().await.expect(201);
    let hook = hook.json["name"].as_str().unwrap().to_string();
    let c =
        api.post("/api/v1/Customer", json!({"customer_name": "Acme", "email": "billing@acme.example"})).send().await;
    let customer = c.expect(201).json["name"].as_str().unwrap().to_string();
    let alice = api.token("alice@example.com", &["Sales User"]).await;
    let body = json!({"customer": customer, "items": [{"item_code": "A", "qty": 1, "rate": 5}]});
    let inv = api.post("/api/v1/Invoice", body).by(alice.clone()).send().await.expect(201);
    let invoice = inv.json["name"].as_str().unwrap().to_string();
    api.post(&format!("/api/v1/Invoice/{invoice}/submit"), json!({})).by(alice.clone()).send().await.expect(200);
    let logs = api.get(&format!("/api/v1/Webhook Request Log?webhook={hook}")).send().await.expect(200);
    let logs = logs.json["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(
        (logs[0]["reference_document"].as_str(), logs[0]["user"].as_str()),
        (Some(invoice.as_str()), Some("alice@example.com"))
    );
    let mail = api.get(&format!("/api/v1/Email Queue?reference_name={invoice}")).send().await.expect(200);
    assert_eq!(mail.json["items"].as_array().map(Vec::len), Some(1), "{}", mail.json);
    // Alice herself reads neither.
    api.get("/api/v1/Email Queue").by(alice).send().await.expect_error(403, "forbidden");
}
