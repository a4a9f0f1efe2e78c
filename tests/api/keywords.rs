//! Field names that are Rust keywords (`type`, `match`, `ref`, `static`, `async`, `return` …)
//! work end to end: the fixture application (tests/fixture-app) builds against scratch DocTypes
//! using them (raw identifiers in the generated structs), `m migrate:create` writes a revision
//! with the plain column names, `m migrate` applies it, and the server reads and writes the
//! fields under their plain names, on SQLite and PostgreSQL.
//!
//! Builds the fixture application with `regenerate.rs`'s helpers, under its `FIXTURE_BUILD`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::regenerate::{FIXTURE_BUILD, build, target_dir};
use crate::support::{Backend, SECRET, Scratch, TestApp};

const GADGET: &str = r#"name = "Gadget"
title_field = "match"

[fields.type]
type = "Select"
options = ["Widget", "Sprocket"]
required = true

[fields.match]
type = "Data"
index = true

[fields.ref]
type = "Link"
to = "Part"

[fields.static]
type = "Int"
default = 0

[fields.async]
type = "Check"

[fields.gen]
type = "Table"
to = "Gadget Part"

[[indexes]]
fields = ["type", "match"]

[permissions]
"System Manager" = { read = true, create = true, write = true, delete = true }
"#;

const GADGET_PART: &str = r#"name = "Gadget Part"

[fields.return]
type = "Data"

[fields.final]
type = "Check"

[fields.try]
type = "Int"
"#;

const PART: &str = r#"name = "Part"
naming = "field:use"

[fields.use]
type = "Data"
required = true

[permissions]
"System Manager" = { read = true, create = true, write = true, delete = true }
"#;

/// The fixture binary (a copy taken right after the build) against `scratch`, in development so
/// that `migrate:create` writes into the scratch migrations folder.
fn fixture(bin: &Path, scratch: &Scratch) -> Command {
    let mut c = Command::new(bin);
    c.env("DATABASE_URL", &scratch.url)
        .env("M_ENV", "development")
        .env("M_JWT_SECRET", SECRET)
        .env("M_MIGRATIONS_DIR", scratch.migrations_dir())
        .env_remove("M_LOG_LEVEL")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("M_ZIPKIN_ENDPOINT");
    c
}

fn run(bin: &Path, scratch: &Scratch, args: &[&str]) -> Output {
    let out = fixture(bin, scratch).args(args).output().expect("run the fixture binary");
    assert!(
        out.status.success(),
        "fixture {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One request as the Administrator: (status, JSON body).
async fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let token = TestApp::admin();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n");
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let (status, text) = crate::runtime::exchange(addr, &head, &body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn serves_keyword_fields(bin: &Path, backend: Backend) {
    let Some(scratch) = Scratch::new(backend).await else { return };
    std::fs::create_dir_all(scratch.migrations_dir()).unwrap();

    // The revision names the columns plainly.
    run(bin, &scratch, &["migrate:create", "keywords"]);
    let revisions = m_runtime::migrate::read_dir(&scratch.migrations_dir()).unwrap();
    assert_eq!(revisions.len(), 1, "{revisions:?}");
    let text = &revisions[0].1;
    for column in ["type", "match", "ref", "static", "async", "return", "final", "try", "use"] {
        assert!(text.contains(&format!("name = \"{column}\"")), "revision lacks column `{column}`:\n{text}");
    }
    assert!(!text.contains("r#"), "a raw identifier leaked into the revision:\n{text}");
    run(bin, &scratch, &["migrate"]);

    let port = crate::runtime::free_port();
    let child = fixture(bin, &scratch)
        .args(["start", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server = crate::runtime::KillOnDrop(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, body) = call(addr, "POST", "/api/v1/Part", &json!({"use": "P-1"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "P-1", "{body}");

    let gadget = json!({
        "type": "Widget",
        "match": "m-1",
        "ref": "P-1",
        "static": 7,
        "async": true,
        "gen": [{"return": "r-1", "final": true, "try": 2}],
    });
    let (status, created) = call(addr, "POST", "/api/v1/Gadget", &gadget).await;
    assert_eq!(status, 201, "{created}");
    let name = created["name"].as_str().expect("a name").to_string();
    let (status, read) = call(addr, "GET", &format!("/api/v1/Gadget/{name}"), &Value::Null).await;
    assert_eq!(status, 200, "{read}");
    for key in ["type", "match", "ref", "static", "async"] {
        assert_eq!(read[key], gadget[key], "field `{key}`: {read}");
    }
    let row = &read["gen"][0];
    assert_eq!((&row["return"], &row["final"], &row["try"]), (&json!("r-1"), &json!(true), &json!(2)), "{read}");
    assert!(read.as_object().is_some_and(|o| o.keys().all(|k| !k.starts_with("r#"))), "{read}");

    // Keyword fields filter, sort and update like any other.
    let (status, list) =
        call(addr, "GET", "/api/v1/Gadget?type=Widget&static%5Bgt%5D=1&order_by=match&fields=type,match", &Value::Null)
            .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["match"], "m-1", "{list}");
    let (status, updated) =
        call(addr, "PATCH", &format!("/api/v1/Gadget/{name}"), &json!({"type": "Sprocket", "static": 8})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!((&updated["type"], &updated["static"]), (&json!("Sprocket"), &json!(8)), "{updated}");

    // Metadata lists the plain names.
    let (status, meta) = call(addr, "GET", "/api/meta/Gadget", &Value::Null).await;
    assert_eq!(status, 200, "{meta}");
    let text = meta.to_string();
    assert!(text.contains("\"type\"") && !text.contains("r#"), "{meta}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_field_names_work_end_to_end() {
    if std::env::var_os("M_SKIP_FIXTURE_BUILD").is_some() {
        eprintln!("skipped: M_SKIP_FIXTURE_BUILD is set");
        return;
    }
    let doctypes = std::env::temp_dir().join(format!("m-keywords-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&doctypes).unwrap();
    for (file, text) in [("gadget.toml", GADGET), ("gadget_part.toml", GADGET_PART), ("part.toml", PART)] {
        std::fs::write(doctypes.join(file), text).unwrap();
    }
    let bin = doctypes.join("m-fixture-app");
    {
        let _build = FIXTURE_BUILD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (ok, err) = build(&doctypes);
        assert!(ok, "the fixture application does not build with keyword field names:\n{err}");
        std::fs::copy(target_dir().join("debug").join("m-fixture-app"), &bin).unwrap();
        // Leave the fixture built from its own doctypes/ again, so later builds need no rerun.
        let (ok, err) = build(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixture-app/doctypes")));
        assert!(ok, "{err}");
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        serves_keyword_fields(&bin, backend).await;
    }
    std::fs::remove_dir_all(&doctypes).ok();
}
