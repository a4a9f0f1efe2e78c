//! Migrations against real databases: the example application's revisions and their
//! snapshots, apply / rollback round trips with data, the SQLite table rebuild, tamper
//! detection, concurrent migrators, heads and merges, partial failure and acknowledgements.

use std::collections::BTreeSet;

use m_codegen::migrate::model::{Schema, schema_of_doctypes};
use m_codegen::migrate::{Chain, Diff, Op, Revision, diff, render, review_card, script};
use m_runtime::migrate::commands::{Ctx, ungenerated};
use m_runtime::migrate::{Migrator, Source, Timeouts};

use crate::support::{Backend, Scratch};

/// Every revision of `migrations/` renders to its snapshot (up and down SQL per dialect, review
/// card), and the DocTypes have no change without a revision.
#[test]
fn revisions_match_snapshots_and_doctypes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let files = m_runtime::migrate::read_dir(&dir).unwrap();
    let chain = Chain::load(&files).unwrap();
    assert!(!chain.revisions.is_empty(), "the example application ships its initial revision");
    for r in &chain.revisions {
        let before = chain.before(&r.revision.id).unwrap();
        let mut after = before.clone();
        for s in &r.revision.up {
            s.op.replay(&mut after).unwrap();
        }
        let name = r.file.trim_end_matches(".toml").to_string();
        let mut snapshots = vec![(format!("{name}__card"), review_card(&r.revision, false))];
        for dialect in m_codegen::ddl::Dialect::ALL {
            let up: Vec<&Op> = r.revision.up.iter().map(|s| &s.op).collect();
            let down: Vec<&Op> = r.revision.down.iter().map(|s| &s.op).collect();
            snapshots.push((
                format!("{name}__{}", dialect.as_str()),
                format!(
                    "-- up\n{}\n-- down\n{}",
                    script(&render(&up, &before, dialect).unwrap(), dialect),
                    script(&render(&down, &after, dialect).unwrap(), dialect)
                ),
            ));
        }
        for (snapshot, text) in snapshots {
            insta::with_settings!({ snapshot_path => "../../snapshots/migrations", prepend_module_to_snapshot => false, omit_expression => true }, {
                insta::assert_snapshot!(snapshot, text);
            });
        }
    }
    let app = m_runtime::app::App::new("m", "0.1.0", m::doctypes::doctypes()).unwrap();
    let desired = m_runtime::migrate::desired_schema(&app).unwrap();
    let pending = ungenerated(&chain, &desired).unwrap();
    assert!(
        pending.is_empty(),
        "doctypes/ changed without a revision: run `cargo run -- migrate:create <name>` and review it:\n{:#?}",
        pending.up.iter().map(|s| &s.reason).collect::<Vec<_>>()
    );
}

const TERRITORY: &str = "name = \"Territory\"\nnaming = \"field:territory_name\"\n\n[fields.territory_name]\ntype = \"Data\"\nrequired = true\n";
const CUSTOMER: &str = "name = \"Customer\"\nnaming = \"field:customer_name\"\n\n[fields.customer_name]\ntype = \"Data\"\nrequired = true\n\n[fields.fax]\ntype = \"Data\"\nindex = true\n\n[fields.territory]\ntype = \"Link\"\nto = \"Territory\"\n";
const ORDER: &str =
    "name = \"Sales Order\"\n\n[fields.customer]\ntype = \"Link\"\nto = \"Customer\"\nrequired = true\n";

fn desired(customer: &str) -> Schema {
    let sources: Vec<(String, String)> = [("territory", TERRITORY), ("customer", customer), ("sales_order", ORDER)]
        .iter()
        .map(|(f, t)| (format!("doctypes/{f}.toml"), t.to_string()))
        .collect();
    let project =
        m_codegen::load_sources(&sources).unwrap_or_else(|d| panic!("{}", m_codegen::diagnostic::render_all(&d)));
    schema_of_doctypes(&project.doctypes)
}

/// Append a revision for `target` to `files` (as `m migrate:create` would).
fn add_revision(files: &mut Vec<(String, String)>, id: &str, name: &str, target: &Schema) -> Revision {
    let chain = Chain::load(files).unwrap();
    let d = diff(&chain.replay().unwrap(), target).unwrap();
    let parents = chain.heads().first().map(|h| vec![h.revision.id.clone()]).unwrap_or_default();
    let rev = Revision::new(id, name, "2026-11-26T00:00:00Z", parents, d);
    files.push((rev.file_name(), rev.to_toml()));
    rev
}

fn source(files: &[(String, String)]) -> Source {
    Source { files: files.to_vec(), dir: None, differs_from_binary: Vec::new() }
}

async fn migrator(scratch: &Scratch, files: &[(String, String)]) -> Migrator {
    Migrator::open(&scratch.url, source(files), "test", Timeouts::default()).await.unwrap()
}

async fn sql(m: &mut Migrator, statement: &str) {
    m.conn().await.exec(statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn rows(m: &mut Migrator, query: &str) -> Vec<Vec<Option<String>>> {
    m.conn().await.rows(query, &[]).await.unwrap_or_else(|e| panic!("{query}: {e}"))
}

const NOW: &str = "'2026-11-26T00:00:00Z'";

async fn seed(m: &mut Migrator) {
    let id = |n: u32| format!("'0190b0c0-0000-7000-8000-{n:012}'");
    sql(m, &format!("INSERT INTO territory (id, name, owner, modified_by, creation, modified, territory_name) VALUES ({}, 'North', 'a', 'a', {NOW}, {NOW}, 'North')", id(1))).await;
    for (i, c) in ["Acme", "Globex"].iter().enumerate() {
        sql(m, &format!("INSERT INTO customer (id, name, owner, modified_by, creation, modified, customer_name, fax, territory) VALUES ({}, '{c}', 'a', 'a', {NOW}, {NOW}, '{c}', '555-{i}', 'North')", id(10 + i as u32))).await;
    }
    sql(m, &format!("INSERT INTO sales_order (id, name, owner, modified_by, creation, modified, customer) VALUES ({}, 'SO-1', 'a', 'a', {NOW}, {NOW}, 'Acme')", id(20))).await;
}

/// A database at an initial revision for `customer`, with rows.
async fn seeded(scratch: &Scratch, customer: &str) -> (Vec<(String, String)>, Migrator) {
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(customer));
    let mut m = migrator(scratch, &files).await;
    m.migrate(false).await.unwrap();
    seed(&mut m).await;
    (files, m)
}

async fn customers(m: &mut Migrator) -> Vec<Vec<Option<String>>> {
    rows(m, "SELECT name, customer_name, territory FROM customer ORDER BY name").await
}

crate::both_backends!(apply_rollback_reapply_keeps_every_row, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(CUSTOMER));
    let mut m = migrator(&scratch, &files).await;
    assert_eq!(m.migrate(false).await.unwrap().len(), 1);
    seed(&mut m).await;
    let before = customers(&mut m).await;
    m.close().await;

    // SAFE: a nullable column.
    let v2 = CUSTOMER.replace("[fields.territory]", "[fields.phone]\ntype = \"Phone\"\n\n[fields.territory]");
    let rev = add_revision(&mut files, "20260102000000", "add_phone", &desired(&v2));
    assert_eq!(rev.class, m_codegen::migrate::Class::Safe);
    let mut m = migrator(&scratch, &files).await;
    assert_eq!(m.migrate(false).await.unwrap(), vec!["20260102000000".to_string()]);
    assert_eq!(customers(&mut m).await, before);
    // Its downgrade drops the column: DANGEROUS, refused without --force.
    let refused = m.rollback(None, None, false).await.unwrap_err();
    assert!(refused.0.contains("DANGEROUS"), "{refused}");
    assert_eq!(m.rollback(None, None, true).await.unwrap(), vec!["20260102000000".to_string()]);
    assert_eq!(customers(&mut m).await, before);
    assert_eq!(m.migrate(false).await.unwrap(), vec!["20260102000000".to_string()]);
    assert_eq!(customers(&mut m).await, before);
    let log: Vec<String> = m.log().await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(log, ["apply", "apply", "rollback", "apply"]);
    m.close().await;
});

crate::both_backends!(rebuild_keeps_indexes_and_inbound_foreign_keys, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let (mut files, mut m) = seeded(&scratch, CUSTOMER).await;
    let before = customers(&mut m).await;
    m.close().await;
    // NOT NULL -> nullable: SQLite rebuilds `customer`, which has indexes and is referenced by
    // sales_order.customer.
    let v2 = CUSTOMER
        .replace("naming = \"field:customer_name\"\n", "")
        .replace("type = \"Data\"\nrequired = true\n", "type = \"Data\"\n");
    add_revision(&mut files, "20260102000000", "optional_name", &desired(&v2));
    let mut m = migrator(&scratch, &files).await;
    m.migrate(false).await.unwrap();
    assert_eq!(customers(&mut m).await, before);
    let drift =
        m_runtime::migrate::live::drift(m.conn().await, &Chain::load(&files).unwrap().replay().unwrap()).await.unwrap();
    assert!(drift.is_empty(), "the database matches the revisions: {drift:?}");
    // The inbound foreign key still holds.
    let bad = m
        .conn()
        .await
        .exec(&format!("INSERT INTO sales_order (id, name, owner, modified_by, creation, modified, customer) VALUES ('0190b0c0-0000-7000-8000-000000000099', 'SO-2', 'a', 'a', {NOW}, {NOW}, 'Nobody')"))
        .await;
    assert!(bad.is_err(), "a sales order pointing at a missing customer is rejected");
    // And it still cascades renames.
    sql(&mut m, "UPDATE customer SET name = 'Acme Ltd' WHERE name = 'Acme'").await;
    assert_eq!(rows(&mut m, "SELECT customer FROM sales_order").await, vec![vec![Some("Acme Ltd".to_string())]]);
    m.close().await;
});

crate::both_backends!(edited_deleted_and_crlf_revisions, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(CUSTOMER));
    let mut m = migrator(&scratch, &files).await;
    m.migrate(false).await.unwrap();
    m.close().await;
    // A CRLF checkout is not an edit.
    let crlf: Vec<(String, String)> = files.iter().map(|(n, t)| (n.clone(), t.replace('\n', "\r\n"))).collect();
    let mut m = migrator(&scratch, &crlf).await;
    m.verify().await.expect("CRLF is the same revision");
    m.close().await;
    // An edit is a hard error naming the file.
    let edited: Vec<(String, String)> = files.iter().map(|(n, t)| (n.clone(), format!("{t}# edited\n"))).collect();
    let mut m = migrator(&scratch, &edited).await;
    let e = m.migrate(false).await.unwrap_err();
    assert!(e.0.contains("migrations/20260101000000_initial.toml was edited"), "{e}");
    // Repair accepts it explicitly, and logs that it did.
    m.repair("20260101000000").await.unwrap();
    m.verify().await.unwrap();
    assert!(m.log().await.unwrap().iter().any(|l| l.action == "repair"));
    m.close().await;
    // A deleted applied revision is a hard error too.
    let mut m = migrator(&scratch, &[]).await;
    let e = m.verify().await.unwrap_err();
    assert!(e.0.contains("20260101000000_initial.toml is missing"), "{e}");
    m.close().await;
});

crate::both_backends!(concurrent_migrators_apply_once, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(CUSTOMER));
    let v2 = CUSTOMER.replace("[fields.territory]", "[fields.phone]\ntype = \"Phone\"\n\n[fields.territory]");
    add_revision(&mut files, "20260102000000", "add_phone", &desired(&v2));
    let run = |files: Vec<(String, String)>, url: String| async move {
        let mut m = Migrator::open(&url, source(&files), "test", Timeouts::default()).await.unwrap();
        let applied = m.migrate(false).await.unwrap();
        m.close().await;
        applied
    };
    // Two migrators on their own connections, interleaved on this task.
    let (a, b) = tokio::join!(run(files.clone(), scratch.url.clone()), run(files.clone(), scratch.url.clone()));
    assert_eq!(a.len() + b.len(), 2, "each revision applied exactly once: {a:?} {b:?}");
    let mut m = migrator(&scratch, &files).await;
    let applies = m.log().await.unwrap().into_iter().filter(|l| l.action == "apply").count();
    assert_eq!(applies, 2);
    m.close().await;
});

crate::both_backends!(heads_merge_and_acknowledgement, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(CUSTOMER));
    // Two branches from the same parent.
    let base = files.clone();
    let mut a = base.clone();
    add_revision(
        &mut a,
        "20260102000000",
        "add_phone",
        &desired(&CUSTOMER.replace("[fields.territory]", "[fields.phone]\ntype = \"Phone\"\n\n[fields.territory]")),
    );
    let mut b = base.clone();
    add_revision(
        &mut b,
        "20260103000000",
        "add_vat",
        &desired(&CUSTOMER.replace("[fields.territory]", "[fields.vat]\ntype = \"Data\"\n\n[fields.territory]")),
    );
    let mut both: Vec<(String, String)> = base.clone();
    both.push(a[1].clone());
    both.push(b[1].clone());
    let mut m = migrator(&scratch, &both).await;
    let e = m.migrate(false).await.unwrap_err();
    assert!(e.0.contains("2 heads"), "{e}");
    m.close().await;
    // `m migrate:create --merge` joins them (they touch different columns).
    let dir = scratch.dir.join("merge");
    std::fs::create_dir_all(&dir).unwrap();
    for (n, t) in &both {
        std::fs::write(dir.join(n), t).unwrap();
    }
    let mut both_target = desired(CUSTOMER);
    for (t, c) in [("customer", "phone"), ("customer", "vat")] {
        let mut col =
            m_codegen::migrate::model::Column::new(c, m_codegen::migrate::model::ColumnType::Varchar(Some(140)));
        col.not_null = false;
        both_target.tables.get_mut(t).unwrap().columns.push(col);
    }
    let ctx = Ctx {
        url: scratch.url.clone(),
        source: Source::resolve(&[], Some(&dir)).unwrap(),
        desired: both_target,
        tool_version: "test".into(),
        timeouts: Timeouts::default(),
        rls: m_runtime::migrate::rls::Plan { on: false, tables: Vec::new() },
    };
    let created = m_runtime::migrate::commands::create(&ctx, "merge branches", true, false).unwrap();
    assert!(created.file.is_some(), "{}", created.message);
    let merged = m_runtime::migrate::read_dir(&dir).unwrap();
    let mut m = migrator(&scratch, &merged).await;
    assert_eq!(m.migrate(false).await.unwrap().len(), 4);
    m.close().await;

    // Branches that touch the same column cannot be merged.
    let mut c = base.clone();
    add_revision(
        &mut c,
        "20260104000000",
        "drop_fax",
        &desired(&CUSTOMER.replace("[fields.fax]\ntype = \"Data\"\nindex = true\n\n", "")),
    );
    let clash = Chain::conflicts(
        &Chain::load(&c).unwrap().touched_since("20260104000000", &BTreeSet::from(["20260101000000".to_string()])),
        &BTreeSet::from(["customer.fax".to_string()]),
    );
    assert_eq!(clash, vec!["customer.fax".to_string()]);

    // A DANGEROUS revision is refused until it acknowledges its codes.
    let mut files = merged.clone();
    let drop = {
        let chain = Chain::load(&files).unwrap();
        let mut target = chain.replay().unwrap();
        target.tables.get_mut("customer").unwrap().columns.retain(|c| c.name != "vat");
        target
    };
    let rev = add_revision(&mut files, "20260109000000", "drop_vat", &drop);
    let mut m = migrator(&scratch, &files).await;
    let e = m.migrate(false).await.unwrap_err();
    assert!(e.0.contains("does not acknowledge M014"), "{e}");
    m.close().await;
    let mut acked = rev.clone();
    acked.acknowledge = vec!["M014".into()];
    files.pop();
    files.push((acked.file_name(), acked.to_toml()));
    let mut m = migrator(&scratch, &files).await;
    assert_eq!(m.migrate(false).await.unwrap(), vec!["20260109000000".to_string()]);
    m.close().await;
});

crate::both_backends!(a_failed_revision_is_recorded_and_resumes, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let (mut files, m) = seeded(&scratch, CUSTOMER).await;
    m.close().await;
    // Add an indexed column (PostgreSQL: CONCURRENTLY, its own phase), then a data check that
    // fails while a row holds an unexpected value.
    let chain = Chain::load(&files).unwrap();
    let mut target = chain.replay().unwrap();
    target.tables.get_mut("customer").unwrap().columns.push(m_codegen::migrate::model::Column::new(
        "grade",
        m_codegen::migrate::model::ColumnType::Varchar(Some(140)),
    ));
    let d = diff(&chain.replay().unwrap(), &target).unwrap();
    let mut ops: Vec<Op> = d.up.iter().map(|s| s.op.clone()).collect();
    ops.push(Op::AddIndex {
        table: "customer".into(),
        index: m_codegen::migrate::model::Index {
            name: "customer__grade_idx".into(),
            columns: vec!["grade".into()],
            unique: false,
        },
    });
    ops.push(Op::CheckValues { table: "customer".into(), column: "fax".into(), allowed: vec!["555-0".into()] });
    let steps = m_codegen::migrate::classify::classify(ops, &chain.replay().unwrap(), &Default::default()).unwrap();
    let rev = Revision::new(
        "20260102000000",
        "grade",
        "2026-11-26T00:00:00Z",
        vec!["20260101000000".into()],
        Diff { up: steps, down: Vec::new() },
    );
    files.push((rev.file_name(), rev.to_toml()));
    let mut m = migrator(&scratch, &files).await;
    let e = m.migrate(false).await.unwrap_err();
    assert!(e.0.contains("check failed"), "{e}");
    let h = m.history().await.unwrap();
    let row = h.iter().find(|h| h.id == "20260102000000").expect("the failure is recorded");
    match backend {
        // One transaction: nothing was changed.
        Backend::Sqlite => {
            assert_eq!((row.state.as_str(), row.steps_applied), ("failed", 0));
            assert!(rows(&mut m, "SELECT 1 FROM pragma_table_info('customer') WHERE name = 'grade'").await.is_empty());
        }
        // The column and the index were committed; the check's phase was not.
        Backend::Postgres => {
            assert_eq!((row.state.as_str(), row.steps_applied, row.steps_total), ("partial", 2, 3));
        }
    }
    // It blocks until resolved: fix the data, run again, it resumes and completes.
    sql(&mut m, "UPDATE customer SET fax = '555-0'").await;
    assert_eq!(m.migrate(false).await.unwrap(), vec!["20260102000000".to_string()]);
    let h = m.history().await.unwrap();
    assert!(h.iter().all(|h| h.state == "applied"), "{h:?}");
    assert!(m.log().await.unwrap().iter().any(|l| l.action == "fail"));
    m.close().await;
});

/// The example application's revisions, copied into a scratch folder.
fn copy_app_revisions(dir: &std::path::Path) -> Vec<(String, String)> {
    let files =
        m_runtime::migrate::read_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (n, t) in &files {
        std::fs::write(dir.join(n), t).unwrap();
    }
    files
}

fn app_ctx(scratch: &Scratch, desired: Schema) -> Ctx {
    Ctx {
        url: scratch.url.clone(),
        source: Source::resolve(&[], Some(&scratch.migrations_dir())).unwrap(),
        desired,
        tool_version: "test".into(),
        timeouts: Timeouts::default(),
        rls: m_runtime::migrate::rls::Plan { on: false, tables: Vec::new() },
    }
}

fn app_desired() -> Schema {
    let app = m_runtime::app::App::new("m", "0.1.0", m::doctypes::doctypes()).unwrap();
    m_runtime::migrate::desired_schema(&app).unwrap()
}

crate::both_backends!(development_start_applies_only_safe_changes, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    copy_app_revisions(&scratch.migrations_dir());
    // A REVIEW change (a NOT NULL column without default on an existing table) is neither
    // written nor applied by a development start.
    let mut review = app_desired();
    let mut col =
        m_codegen::migrate::model::Column::new("vat", m_codegen::migrate::model::ColumnType::Varchar(Some(140)));
    col.not_null = true;
    review.tables.get_mut("customer").unwrap().columns.push(col);
    m_runtime::migrate::commands::development_start(&app_ctx(&scratch, review)).await.unwrap();
    let shipped = m::migrations::MIGRATIONS.len();
    assert_eq!(m_runtime::migrate::read_dir(&scratch.migrations_dir()).unwrap().len(), shipped, "no revision written");
    let mut m = migrator(&scratch, &m_runtime::migrate::read_dir(&scratch.migrations_dir()).unwrap()).await;
    let history = m.history().await.unwrap();
    assert_eq!(history.len(), shipped, "the pending SAFE revisions were applied");
    // The REVIEW column was not added: the database is exactly the shipped revisions.
    let files = m_runtime::migrate::read_dir(&scratch.migrations_dir()).unwrap();
    let drift =
        m_runtime::migrate::live::drift(m.conn().await, &Chain::load(&files).unwrap().replay().unwrap()).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
    m.close().await;
    // A SAFE change is written as `<id>_auto.toml` and applied.
    let mut safe = app_desired();
    safe.tables
        .get_mut("customer")
        .unwrap()
        .columns
        .push(m_codegen::migrate::model::Column::new("vat", m_codegen::migrate::model::ColumnType::Varchar(Some(140))));
    m_runtime::migrate::commands::development_start(&app_ctx(&scratch, safe.clone())).await.unwrap();
    let files = m_runtime::migrate::read_dir(&scratch.migrations_dir()).unwrap();
    assert_eq!(files.len(), shipped + 1);
    assert!(files[shipped].0.ends_with("_auto.toml"));
    let mut m = migrator(&scratch, &files).await;
    assert_eq!(m.history().await.unwrap().len(), shipped + 1);
    let drift =
        m_runtime::migrate::live::drift(m.conn().await, &Chain::load(&files).unwrap().replay().unwrap()).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
    m.close().await;
    // Production accepts it; a pending REVIEW revision makes production refuse.
    m_runtime::migrate::commands::production_check(&app_ctx(&scratch, safe.clone())).await.unwrap();
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_give_up_on_a_held_lock() {
    let Some(scratch) = Scratch::new(Backend::Postgres).await else {
        eprintln!("skipped: M_TEST_PG_URL is not set");
        return;
    };
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(CUSTOMER));
    let mut m = migrator(&scratch, &files).await;
    m.migrate(false).await.unwrap();
    m.close().await;
    let v2 = CUSTOMER.replace("[fields.territory]", "[fields.phone]\ntype = \"Phone\"\n\n[fields.territory]");
    add_revision(&mut files, "20260102000000", "add_phone", &desired(&v2));
    // Another session holds the table.
    use sqlx::Connection;
    let mut holder = sqlx::PgConnection::connect(&scratch.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE customer IN ACCESS EXCLUSIVE MODE").execute(&mut holder).await.unwrap();
    let timeouts = Timeouts { lock: std::time::Duration::from_secs(1), statement: std::time::Duration::from_secs(30) };
    let mut m = Migrator::open(&scratch.url, source(&files), "test", timeouts).await.unwrap();
    let started = std::time::Instant::now();
    let e = m.migrate(false).await.unwrap_err();
    assert!(e.0.contains("lock timeout"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "lock_timeout applies");
    let h = m.history().await.unwrap();
    assert_eq!(h.iter().find(|h| h.id == "20260102000000").map(|h| h.state.as_str()), Some("failed"));
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.unwrap();
    assert_eq!(m.migrate(false).await.unwrap(), vec!["20260102000000".to_string()]);
    m.close().await;
}

#[test]
fn migrate_commands_of_the_binary_sqlite() {
    binary_commands(Backend::Sqlite);
}

#[test]
fn migrate_commands_of_the_binary_postgres() {
    if crate::support::pg_url().is_none() {
        eprintln!("skipped: M_TEST_PG_URL is not set");
        return;
    }
    binary_commands(Backend::Postgres);
}

/// The `m` binary's migration commands, with `--json`, exit statuses and warnings; two `m migrate`
/// processes started together.
fn binary_commands(backend: Backend) {
    let scratch = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(Scratch::new(backend))
        .unwrap();
    let dir = scratch.migrations_dir();
    let files = copy_app_revisions(&dir);
    let m = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_m"))
            .args(args)
            .env("DATABASE_URL", &scratch.url)
            .env("M_MIGRATIONS_DIR", &dir)
            .env("M_ENV", "development")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_else(|e| panic!("{e}: {s}"));

    let (code, out, err) = m(&["migrate:status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let st = json(&out);
    let shipped = m::migrations::MIGRATIONS.len();
    assert_eq!(st["pending"].as_array().unwrap().len(), shipped);
    assert_eq!(st["applied"].as_array().unwrap().len(), 0);
    assert_eq!(st["ungenerated"].as_array().unwrap().len(), 0, "{out}");

    // Two processes at once: the revision is applied exactly once.
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_m"))
            .args(["migrate", "--json"])
            .env("DATABASE_URL", &scratch.url)
            .env("M_MIGRATIONS_DIR", &dir)
            .env("M_ENV", "development")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let applied =
        |o: &std::process::Output| json(&String::from_utf8_lossy(&o.stdout))["applied"].as_array().unwrap().len();
    assert_eq!(applied(&a) + applied(&b), shipped);

    let (code, out, _) = m(&["migrate:status", "--live"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("live: the database matches the applied revisions"), "{out}");

    let (code, out, _) = m(&["migrate:create", "nothing"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("no changes"), "{out}");

    let (code, out, _) = m(&["migrate:history", "--json"]);
    assert_eq!(code, Some(0));
    let log = json(&out);
    assert_eq!(log.as_array().unwrap().len(), shipped, "{log}");
    assert_eq!(log[0]["action"], "apply");

    // The latest revision's downgrade drops its tables: refused without --force.
    let (code, out, err) = m(&["migrate:rollback"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("DANGEROUS"), "{err}");
    assert!(out.contains("M002"), "the downgrade's classes are shown: {out}");

    // Two revisions on the same parent: two heads, a non-zero exit; disk differs from the binary.
    let chain = Chain::load(&files).unwrap();
    let parent = chain.heads()[0].revision.id.clone();
    for (id, col) in [("29990101000000", "a1"), ("29990101000001", "b1")] {
        let mut target = chain.replay().unwrap();
        target
            .tables
            .get_mut("customer")
            .unwrap()
            .columns
            .push(m_codegen::migrate::model::Column::new(col, m_codegen::migrate::model::ColumnType::Text));
        let d = diff(&chain.replay().unwrap(), &target).unwrap();
        let rev = Revision::new(id, col, "2999-01-01T00:00:00Z", vec![parent.clone()], d);
        std::fs::write(dir.join(rev.file_name()), rev.to_toml()).unwrap();
    }
    let (code, out, err) = m(&["migrate:heads"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("a1.toml") && out.contains("b1.toml"), "{out}");
    assert!(err.contains("differs from the revisions built into this binary"), "{err}");
    let (code, _, err) = m(&["migrate"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("2 heads"), "{err}");
    let (code, out, err) = m(&["migrate:create", "join", "--merge", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(json(&out)["file"].as_str().unwrap().ends_with("_join.toml"), "{out}");
    let (code, _, _) = m(&["migrate:heads"]);
    assert_eq!(code, Some(0));
}

crate::both_backends!(merged_branches_keep_each_others_columns, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(CUSTOMER));
    let base = Chain::load(&files).unwrap().replay().unwrap();
    // Branch A adds a column; branch B changes a column in a way SQLite does by rebuilding the
    // table. A hand-written merge joins them.
    let mut a = base.clone();
    a.tables.get_mut("customer").unwrap().columns.push(m_codegen::migrate::model::Column::new(
        "phone",
        m_codegen::migrate::model::ColumnType::Varchar(Some(140)),
    ));
    let ra = Revision::new(
        "20260102000000",
        "a",
        "2026-01-02T00:00:00Z",
        vec!["20260101000000".into()],
        diff(&base, &a).unwrap(),
    );
    let mut b = base.clone();
    b.tables.get_mut("customer").unwrap().column_mut("customer_name").unwrap().not_null = false;
    let rb = Revision::new(
        "20260103000000",
        "b",
        "2026-01-03T00:00:00Z",
        vec!["20260101000000".into()],
        diff(&base, &b).unwrap(),
    );
    let merge = Revision::new(
        "20260104000000",
        "merge",
        "2026-01-04T00:00:00Z",
        vec!["20260102000000".into(), "20260103000000".into()],
        Diff::default(),
    );
    let mut m = migrator(&scratch, &files).await;
    m.migrate(false).await.unwrap();
    seed(&mut m).await;
    m.close().await;
    files.push((ra.file_name(), ra.to_toml()));
    let mut m = migrator(&scratch, &files).await;
    m.migrate(false).await.unwrap();
    sql(&mut m, "UPDATE customer SET phone = '+1 555'").await;
    m.close().await;
    for r in [&rb, &merge] {
        files.push((r.file_name(), r.to_toml()));
    }
    let mut m = migrator(&scratch, &files).await;
    assert_eq!(m.migrate(false).await.unwrap().len(), 2);
    assert_eq!(
        rows(&mut m, "SELECT phone FROM customer ORDER BY name").await,
        vec![vec![Some("+1 555".to_string())], vec![Some("+1 555".to_string())]]
    );
    m.close().await;
});

crate::both_backends!(type_changes_check_values_and_keep_defaults, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let v1 = format!("{CUSTOMER}\n[fields.age]\ntype = \"Data\"\n\n[fields.qty]\ntype = \"Int\"\ndefault = 1\n");
    let (mut files, mut m) = seeded(&scratch, &v1).await;
    sql(&mut m, "UPDATE customer SET age = '42' WHERE name = 'Acme'").await;
    sql(&mut m, "UPDATE customer SET age = 'abc' WHERE name = 'Globex'").await;
    m.close().await;
    let v2 = v1
        .replace("[fields.age]\ntype = \"Data\"", "[fields.age]\ntype = \"Int\"")
        .replace("type = \"Int\"\ndefault = 1", "type = \"BigInt\"\ndefault = 1");
    let mut rev = add_revision(&mut files, "20260102000000", "types", &desired(&v2));
    rev.acknowledge = vec!["M033".into()];
    files.pop();
    files.push((rev.file_name(), rev.to_toml()));
    let mut m = migrator(&scratch, &files).await;
    let e = m.migrate(false).await.unwrap_err();
    assert!(e.0.contains("(nothing was changed)"), "{e}");
    assert_eq!(
        rows(&mut m, "SELECT age FROM customer ORDER BY name").await,
        vec![vec![Some("42".into())], vec![Some("abc".into())]]
    );
    // Fix the data; the failed revision is pending and applies.
    sql(&mut m, "UPDATE customer SET age = '7' WHERE name = 'Globex'").await;
    assert_eq!(m.migrate(false).await.unwrap(), vec!["20260102000000".to_string()]);
    assert_eq!(
        rows(&mut m, "SELECT age FROM customer ORDER BY name").await,
        vec![vec![Some("42".into())], vec![Some("7".into())]]
    );
    // The default survived the type change.
    sql(&mut m, &format!("INSERT INTO customer (id, name, owner, modified_by, creation, modified, customer_name) VALUES ('0190b0c0-0000-7000-8000-000000000077', 'Initech', 'a', 'a', {NOW}, {NOW}, 'Initech')")).await;
    assert_eq!(rows(&mut m, "SELECT qty FROM customer WHERE name = 'Initech'").await, vec![vec![Some("1".into())]]);
    m.close().await;
});

crate::both_backends!(live_status_reports_drift, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(CUSTOMER));
    let mut m = migrator(&scratch, &files).await;
    m.migrate(false).await.unwrap();
    let expected = Chain::load(&files).unwrap().replay().unwrap();
    assert_eq!(m_runtime::migrate::live::drift(m.conn().await, &expected).await.unwrap(), Vec::<String>::new());
    // Changes made behind the migrations' back.
    sql(&mut m, "ALTER TABLE customer ADD COLUMN extra TEXT").await;
    sql(&mut m, "DROP INDEX customer__fax_idx").await;
    sql(&mut m, "CREATE TABLE scratch_notes (id TEXT)").await;
    let drift = m_runtime::migrate::live::drift(m.conn().await, &expected).await.unwrap();
    for line in [
        "unexpected column `customer.extra`",
        "missing index `customer__fax_idx` on `customer`",
        "unexpected table `scratch_notes`",
    ] {
        assert!(drift.iter().any(|d| d == line), "{line} not in {drift:?}");
    }
    m.close().await;
});

crate::both_backends!(live_status_finds_select_values_the_doctypes_no_longer_allow, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let with = |opts: &str| format!("{CUSTOMER}\n[fields.tier]\ntype = \"Select\"\noptions = [{opts}]\n");
    let (files, mut m) = seeded(&scratch, &with("\"Gold\", \"Silver\"")).await;
    let current = || Chain::load(&files).unwrap().replay().unwrap();
    // Adding an option makes no revision (M060) …
    let added = desired(&with("\"Gold\", \"Silver\", \"Bronze\""));
    assert!(diff(&current(), &added).unwrap().is_empty());
    sql(&mut m, "UPDATE customer SET tier = 'Bronze' WHERE name = 'Acme'").await;
    sql(&mut m, "UPDATE customer SET tier = 'Gold' WHERE name = 'Globex'").await;
    assert_eq!(m_runtime::migrate::live::invalid_values(m.conn().await, &added).await.unwrap(), Vec::<String>::new());
    // … so removing it again makes none either (nothing differs from the chain): the live check
    // finds the rows that hold it.
    let removed = desired(&with("\"Gold\", \"Silver\""));
    assert!(diff(&current(), &removed).unwrap().is_empty());
    let found = m_runtime::migrate::live::invalid_values(m.conn().await, &removed).await.unwrap();
    assert_eq!(
        found,
        vec![
            "`customer.tier`: 1 row(s) hold `Bronze`, which is not one of its options (update them, or add the option back)"
                .to_string()
        ]
    );
    m.close().await;
});

const AUTHOR: &str = "name = \"Author\"\n\n[fields.favourite_book]\ntype = \"Link\"\nto = \"Book\"\n";
const BOOK: &str = "name = \"Book\"\n\n[fields.author]\ntype = \"Link\"\nto = \"Author\"\n";

// A revision creating two DocTypes that link each other rolls back, with rows pointing both ways.
crate::both_backends!(rollback_of_doctypes_linking_each_other, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let mut files = Vec::new();
    let base = desired(CUSTOMER);
    add_revision(&mut files, "20260101000000", "initial", &base);
    let sources =
        [("doctypes/author.toml", AUTHOR), ("doctypes/book.toml", BOOK)].map(|(f, t)| (f.to_string(), t.to_string()));
    let mut linked = base.clone();
    linked.tables.extend(schema_of_doctypes(&m_codegen::load_sources(&sources).unwrap().doctypes).tables);
    add_revision(&mut files, "20260102000000", "authors_and_books", &linked);
    let mut m = migrator(&scratch, &files).await;
    assert_eq!(m.migrate(false).await.unwrap().len(), 2);
    let row = |table: &str, id: u32, name: &str, link: &str, to: &str| {
        format!(
            "INSERT INTO {table} (id, name, owner, modified_by, creation, modified, {link}) \
             VALUES ('0190b0c0-0000-7000-8000-{id:012}', '{name}', 'a', 'a', {NOW}, {NOW}, {to})"
        )
    };
    sql(&mut m, &row("author", 31, "A", "favourite_book", "NULL")).await;
    sql(&mut m, &row("book", 32, "B", "author", "'A'")).await;
    sql(&mut m, "UPDATE author SET favourite_book = 'B'").await;
    // Dropping tables is DANGEROUS (M002): forced.
    assert_eq!(m.rollback(None, None, true).await.unwrap(), vec!["20260102000000".to_string()]);
    let at_initial = Chain::load(&files[..1]).unwrap().replay().unwrap();
    assert_eq!(m_runtime::migrate::live::drift(m.conn().await, &at_initial).await.unwrap(), Vec::<String>::new());
    assert_eq!(m.migrate(false).await.unwrap(), vec!["20260102000000".to_string()]);
    m.close().await;
});

#[test]
fn a_renamed_from_naming_no_column_is_an_error() {
    let mut files = Vec::new();
    add_revision(&mut files, "20260101000000", "initial", &desired(CUSTOMER));
    let chain = Chain::load(&files).unwrap();
    // A typo: neither `fxa` nor `telefax` is a column yet, so nothing says what to rename.
    let typo = CUSTOMER.replace("[fields.fax]", "[fields.telefax]\nrenamed_from = \"fxa\"");
    let e = ungenerated(&chain, &desired(&typo)).expect_err("refused").to_string();
    assert!(e.contains("doctypes/customer.toml") && e.contains("renamed_from = \"fxa\""), "{e}");
    // Spelled right, it is a rename; once applied, the key may stay and changes nothing.
    let renamed = CUSTOMER.replace("[fields.fax]", "[fields.telefax]\nrenamed_from = \"fax\"");
    let d = ungenerated(&chain, &desired(&renamed)).unwrap();
    assert!(d.up.iter().any(|s| matches!(s.op, Op::RenameColumn { .. })), "{:#?}", d.up);
    add_revision(&mut files, "20260102000000", "rename_fax", &desired(&renamed));
    let chain = Chain::load(&files).unwrap();
    assert!(ungenerated(&chain, &desired(&renamed)).unwrap().is_empty());
}
