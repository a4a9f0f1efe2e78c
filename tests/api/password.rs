//! Password fields (the test DocType Gadget's `api_key`): accepted on write, never returned,
//! listed, filtered on or sorted by, readable by the server, and encrypted at rest with
//! `M_ENCRYPTION_KEY` (stored as they are, marked, without it — development only).

use m_runtime::config::Secret;
use m_runtime::db::{Db, DbCtx, PoolConfig};
use m_runtime::meta::FieldType;
use m_runtime::value::Value;
use serde_json::json;

use crate::support::{Backend, TestApp};

const KEY: &str = "an-encryption-key-for-the-tests-0123456789";

/// The `api_key` column as stored.
async fn stored(app: &TestApp, code: &str) -> String {
    let db =
        Db::connect(app.database_url(), &PoolConfig { min_connections: 1, max_connections: 1, ..Default::default() })
            .await
            .unwrap();
    let sql = match db.dialect() {
        m_runtime::db::Dialect::Postgres => "SELECT api_key FROM gadget WHERE code = $1",
        m_runtime::db::Dialect::Sqlite => "SELECT api_key FROM gadget WHERE code = ?",
    };
    let rows =
        db.fetch(&DbCtx::System, sql, vec![(FieldType::Data, Value::Str(code.into()))], &[FieldType::Text]).await;
    match rows.unwrap().first().and_then(|r| r.first()) {
        Some(Value::Str(s)) => s.clone(),
        other => panic!("api_key of {code}: {other:?}"),
    }
}

/// The value the server reads back.
async fn read_back(app: &TestApp, code: &str) -> Value {
    let admin = m_runtime::perms::Principal::administrator();
    app.repo().get(&admin, "Gadget", code).await.unwrap().get("api_key").clone()
}

async fn start(backend: Backend, key: Option<&str>) -> Option<TestApp> {
    let key = key.map(Secret::new);
    TestApp::start_with(backend, move |c| c.encryption_key = key).await.map(|(app, _)| app)
}

crate::both_backends!(password_fields_are_write_only_and_encrypted_at_rest, |backend| {
    let Some(app) = start(backend, Some(KEY)).await else { return };
    let created =
        app.post("/api/v1/Gadget", json!({"code": "G-1", "api_key": "s3cret-value"})).send().await.expect(201);
    assert!(created.json.get("api_key").is_none(), "{}", created.json);
    assert_eq!(created.json["code"], "G-1");
    let got = app.get("/api/v1/Gadget/G-1").send().await.expect(200);
    assert!(got.json.get("api_key").is_none(), "{}", got.json);
    let listed = app.get("/api/v1/Gadget").send().await.expect(200);
    assert!(listed.json["items"][0].get("api_key").is_none(), "{}", listed.json);
    assert!(listed.json["items"][0].get("code").is_some());
    for query in ["fields=code,api_key", "api_key=s3cret-value", "order_by=api_key", "api_key[like]=s%"] {
        let r = app.get(&format!("/api/v1/Gadget?{query}")).send().await.expect_error(400, "bad_request");
        assert!(r.json["error"]["message"].as_str().unwrap().contains("Password"), "{query}: {}", r.json);
    }
    // The metadata says the field exists (so a form can offer it); its value is nowhere.
    let meta = app.get("/api/meta/Gadget").send().await.expect(200);
    assert!(meta.json.to_string().contains("\"api_key\"") && !meta.json.to_string().contains("s3cret"));

    // At rest: ciphertext, different for the same value; the server reads the value.
    let first = stored(&app, "G-1").await;
    assert!(first.starts_with("m1:") && !first.contains("s3cret"), "{first}");
    assert_eq!(read_back(&app, "G-1").await, Value::Str("s3cret-value".into()));
    app.post("/api/v1/Gadget", json!({"code": "G-2", "api_key": "s3cret-value"})).send().await.expect(201);
    assert_ne!(stored(&app, "G-2").await, first, "a fresh nonce per value");

    // A change without the field keeps it; with it, replaces it.
    app.patch("/api/v1/Gadget/G-1", json!({"label": "relabelled"})).send().await.expect(200);
    assert_eq!(read_back(&app, "G-1").await, Value::Str("s3cret-value".into()));
    app.patch("/api/v1/Gadget/G-1", json!({"api_key": "rotated"})).send().await.expect(200);
    assert_eq!(read_back(&app, "G-1").await, Value::Str("rotated".into()));
    assert!(!stored(&app, "G-1").await.contains("rotated"));
    // Text rules hold for it too.
    let r = app
        .post("/api/v1/Gadget", json!({"code": "G-3", "api_key": "a\u{0}b"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["code"], "nul_byte");
    let r = app
        .post("/api/v1/Gadget", json!({"code": "G-3", "api_key": 987_654_321}))
        .send()
        .await
        .expect_error(400, "bad_request");
    assert!(!r.json.to_string().contains("987654321"), "the value is not echoed: {}", r.json);
    let r = app
        .post("/api/v1/Gadget", json!({"code": "G-3", "api_key": "m1:looks-stored"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["code"], "reserved");

    // Opened with another key, the document is still served and saved; the value stays as it was
    // stored, and the right key reads it again.
    let config = m_runtime::config::Config {
        database_url: Secret::new(app.database_url()),
        jwt_secret: Some(Secret::new(crate::support::SECRET)),
        encryption_key: Some(Secret::new("another-key-another-key-another-key-0123")),
        db_max_connections: 2,
        db_min_connections: 1,
        ..Default::default()
    };
    let setup = m_runtime::services::Setup::new(config, crate::support::application(), crate::support::jobs());
    let other = setup.unwrap().open(m_runtime::services::Schema::AsIs).await.unwrap();
    let admin = m_runtime::perms::Principal::administrator();
    let before = stored(&app, "G-2").await;
    let doc = other.repo.get(&admin, "Gadget", "G-2").await.unwrap();
    assert_eq!(doc.get("api_key"), &Value::Str(before.clone()), "kept in its stored form");
    app.get("/api/v1/Gadget/G-2").send().await.expect(200);
    let body = json!({"label": "saved under another key"});
    other.repo.update(&admin, "Gadget", "G-2", &body, &Default::default()).await.unwrap();
    assert_eq!(stored(&app, "G-2").await, before);
    assert_eq!(read_back(&app, "G-2").await, Value::Str("s3cret-value".into()));
});

crate::both_backends!(without_a_key_password_values_are_stored_as_they_are_marked, |backend| {
    let Some(app) = start(backend, None).await else { return };
    app.post("/api/v1/Gadget", json!({"code": "G-1", "api_key": "plain-in-development"})).send().await.expect(201);
    assert_eq!(stored(&app, "G-1").await, "m0:plain-in-development");
    assert_eq!(read_back(&app, "G-1").await, Value::Str("plain-in-development".into()));
});

crate::both_backends!(production_needs_the_key_when_a_doctype_has_a_password_field, |backend| {
    use m_runtime::config::{Config, Mode};
    let Some(scratch) = crate::support::Scratch::new(backend).await else { return };
    let config = Config { env: Mode::Production, ..crate::support::test_config(&scratch.url, &scratch) };
    let e = m_runtime::services::Setup::new(config.clone(), crate::support::application(), crate::support::jobs())
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("M_ENCRYPTION_KEY"), "{e:#}");
    let short = Config { encryption_key: Some(Secret::new("short")), ..config };
    let e = short.check().unwrap_err();
    assert!(e.contains("M_ENCRYPTION_KEY"), "{e}");
});
