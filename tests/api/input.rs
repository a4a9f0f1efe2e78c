//! Hostile or careless input: NUL characters anywhere text goes, arithmetic a hook cannot do, and
//! configurations production refuses wherever a server is built.

use m_runtime::config::{Config, Mode, Secret};
use m_runtime::server::Server;
use serde_json::json;

use crate::both;
use crate::support::{Scratch, application, jobs, seed};

/// `%00`, for paths and query strings.
const NUL: &str = "%00";

both!(nul_characters_are_refused_and_nothing_is_written, |app| {
    // A text field, a JSON field (in a nested string and in a key), a child row's field.
    let r = app.post("/api/v1/Gadget", json!({"code": "G\u{0}1"})).send().await.expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["code"], "nul_byte", "{}", r.json);
    assert_eq!(r.json["error"]["details"][0]["field"], "code");
    for extra in [json!({"k": ["x\u{0}y"]}), json!({"a\u{0}b": 1})] {
        let r = app
            .post("/api/v1/Gadget", json!({"code": "G-1", "extra": extra}))
            .send()
            .await
            .expect_error(422, "validation_failed");
        assert_eq!(r.json["error"]["details"][0]["code"], "nul_byte", "{}", r.json);
        assert_eq!(r.json["error"]["details"][0]["field"], "extra");
    }
    let (customer, invoice) = seed(&app).await;
    let r = app
        .post("/api/v1/Invoice", json!({"customer": customer, "items": [{"item_code": "A\u{0}", "qty": 1}]}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["field"], "items[0].item_code", "{}", r.json);
    assert_eq!(r.json["error"]["details"][0]["code"], "nul_byte");
    let r = app
        .patch(&format!("/api/v1/Customer/{customer}"), json!({"customer_name": "Ac\u{0}me"}))
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["code"], "nul_byte");
    // Nothing was written.
    assert_eq!(app.get("/api/v1/Gadget").send().await.expect(200).json["total"], 0);
    assert_eq!(app.get("/api/v1/Invoice").send().await.expect(200).json["total"], 1);
    let c = app.get(&format!("/api/v1/Customer/{customer}")).send().await.expect(200);
    assert_eq!(c.json["customer_name"], "Acme");

    // In a filter: a 400, whichever way it is written.
    app.get(&format!("/api/v1/Gadget?code=a{NUL}b")).send().await.expect_error(400, "bad_request");
    app.get(&format!("/api/v1/Gadget?code[in]=A,B{NUL}")).send().await.expect_error(400, "bad_request");
    let filters: String = form_urlencoded::byte_serialize(r#"[["code","eq","a\u0000b"]]"#.as_bytes()).collect();
    app.get(&format!("/api/v1/Gadget?filters={filters}")).send().await.expect_error(400, "bad_request");

    // In a {ref}: no document has that name.
    app.get(&format!("/api/v1/Invoice/{invoice}{NUL}")).send().await.expect_error(404, "not_found");
    app.patch(&format!("/api/v1/Customer/{customer}{NUL}"), json!({"customer_name": "X"}))
        .send()
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/Customer/{customer}{NUL}")).send().await.expect_error(404, "not_found");
    app.post(&format!("/api/v1/Invoice/{invoice}{NUL}/submit"), json!({})).send().await.expect_error(404, "not_found");

    // In a login: the usual refusal.
    app.post("/api/v1/auth/login", json!({"username": "a\u{0}@example.com", "password": "whatever-it-is"}))
        .send()
        .await
        .expect_error(401, "invalid_credentials");
});

both!(an_amount_too_large_for_a_decimal_is_a_422, |app| {
    let (customer, _) = seed(&app).await;
    // qty × rate beyond what a decimal holds (about 7.9e28): the hook refuses it.
    let r = app
        .post(
            "/api/v1/Invoice",
            json!({"customer": customer, "items": [{"item_code": "A", "qty": 1e20, "rate": "999999999999"}]}),
        )
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert_eq!(r.json["error"]["details"][0]["field"], "items[0].amount", "{}", r.json);
    // Amounts that fit a decimal but not the column are the value checks' (precision).
    let r = app
        .post(
            "/api/v1/Invoice",
            json!({"customer": customer, "items": [{"item_code": "A", "qty": 1e9, "rate": "1e9"}]}),
        )
        .send()
        .await
        .expect_error(422, "validation_failed");
    assert!(r.json["error"]["details"].to_string().contains("precision"), "{}", r.json);
    assert_eq!(app.get("/api/v1/Invoice").send().await.expect(200).json["total"], 1);
});

fn production(scratch: &Scratch) -> Config {
    Config {
        env: Mode::Production,
        database_url: Secret::new(scratch.url.clone()),
        port: 0,
        db_max_connections: 4,
        db_min_connections: 1,
        migrations_dir: Some(scratch.migrations_dir()),
        ..Config::default()
    }
}

crate::both_backends!(production_rules_hold_wherever_a_server_is_built, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    let start = |config: Config| async move {
        let e = Server::open(config, application(), jobs(), m::doctypes::OPENAPI).await.err().expect("refused");
        format!("{e:#}")
    };
    // No key: a crate user building a server directly gets no anonymous Administrator.
    let e = start(production(&scratch)).await;
    assert!(e.contains("M_JWT_SECRET"), "{e}");
    // Keys fetched over plain HTTP could be swapped on the way.
    let plain = Config { jwt_jwks_url: Some("http://id.example.com/jwks.json".into()), ..production(&scratch) };
    let e = start(plain).await;
    assert!(e.contains("http://") && e.contains("M_JWT_JWKS_URL"), "{e}");
    let loud = Config { jwt_jwks_url: Some("HTTP://id.example.com/jwks.json".into()), ..production(&scratch) };
    assert!(start(loud).await.contains("M_JWT_JWKS_URL"));
    // Development may use one (a local identity provider).
    let dev = Config { env: Mode::Development, ..production(&scratch) };
    assert!(dev.check().is_ok());
});

#[test]
fn routes_are_the_routers_own() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m")).arg("routes").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    let has = |method: &str, path: &str| lines.iter().any(|l| l.first() == Some(&method) && l.get(1) == Some(&path));
    for (method, path) in [
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/auth/me"),
        ("POST", "/api/v1/auth/password"),
        ("GET", "/api/meta/Invoice"),
        ("GET", "/api/v1/Invoice"),
        ("POST", "/api/v1/Invoice"),
        ("GET", "/api/v1/Invoice/{ref}"),
        ("PATCH", "/api/v1/Invoice/{ref}"),
        ("PUT", "/api/v1/Invoice/{ref}"),
        ("DELETE", "/api/v1/Invoice/{ref}"),
        ("POST", "/api/v1/Invoice/{ref}/submit"),
        ("POST", "/api/v1/Invoice/{ref}/cancel"),
        ("POST", "/api/v1/Invoice/{ref}/amend"),
        ("GET", "/api/v1/Customer"),
    ] {
        assert!(has(method, path), "`m routes` lists {method} {path}:\n{text}");
    }
    // Only submittable DocTypes have lifecycle routes; children have none.
    assert!(!has("POST", "/api/v1/Customer/{ref}/submit"), "{text}");
    assert!(!text.contains("/api/v1/Invoice Item"), "{text}");
}

both!(a_child_doctype_is_reached_only_through_its_parent, |app| {
    use m_runtime::repo::RepoError;
    let admin = m_runtime::perms::Principal::administrator();
    let repo = app.repo();
    let child = repo.app().get("Invoice Item").unwrap().clone();
    // By name or by its resolved schema, a child DocType is the same 404 as an unknown one.
    let by_name = repo.list_all(&admin, "Invoice Item", &[]).await;
    assert!(matches!(by_name, Err(RepoError::NotFound)), "{by_name:?}");
    let by_schema = repo.create(&admin, &child, &json!({"item_code": "A"})).await;
    assert!(matches!(by_schema, Err(RepoError::NotFound)), "{by_schema:?}");
    assert!(matches!(repo.get(&admin, &child, "x").await, Err(RepoError::NotFound)));
    app.get("/api/v1/Invoice%20Item").send().await.expect_error(404, "not_found");
});

crate::both_backends!(a_server_is_built_only_from_a_prepared_runtime, |backend| {
    use m_runtime::services::{Schema, Setup};
    let Some(scratch) = Scratch::new(backend).await else { return };
    let config = crate::support::test_config(&scratch.url, &scratch);
    // The schema is prepared by a first start; a runtime opened as it is cannot serve.
    drop(Server::open(config.clone(), application(), jobs(), m::doctypes::OPENAPI).await.expect("first start"));
    let as_is = Setup::new(config.clone(), application(), jobs()).unwrap().open(Schema::AsIs).await.unwrap();
    let e = Server::build(as_is, m::doctypes::OPENAPI).await.err().expect("refused");
    assert!(format!("{e:#}").contains("Schema::Prepare"), "{e:#}");
    let prepared = Setup::new(config, application(), jobs()).unwrap().open(Schema::Prepare).await.unwrap();
    assert!(Server::build(prepared, m::doctypes::OPENAPI).await.is_ok());
});

crate::both!(unknown_query_parameters_are_refused_on_every_route, |app| {
    app.post("/api/v1/Territory", json!({"territory_name": "North"})).send().await.expect(201);
    for (method, path) in [
        ("GET", "/api/v1/Territory/North?expnad=customer"),
        ("PATCH", "/api/v1/Territory/North?dry_run=1"),
        ("DELETE", "/api/v1/Territory/North?force=1"),
        ("POST", "/api/v1/Territory?upsert=1"),
        ("GET", "/api/meta/Territory?x=1"),
        ("GET", "/api/v1/auth/me?x=1"),
        ("GET", "/health?verbose=1"),
        ("GET", "/ready?x"),
        ("GET", "/openapi.json?v=2"),
        ("GET", "/api/v1/Territory?nope=1"),
    ] {
        let r = app.req(method, path).json(json!({})).send().await;
        let r = r.expect_error(400, "bad_request");
        assert!(
            r.json["error"]["message"].as_str().unwrap().contains("unknown parameter"),
            "{method} {path}: {}",
            r.json
        );
    }
    // An empty query is no parameter.
    app.get("/api/v1/Territory/North?").send().await.expect(200);
    app.get("/health").send().await.expect(200);
});
