//! Startup rules: development creates the schema, production never does and refuses to serve
//! without it.

use m_runtime::config::{Config, Mode, Secret};
use m_runtime::server::Server;

#[tokio::test]
async fn production_refuses_a_database_without_its_tables() {
    let dir = std::env::temp_dir().join(format!("m-test-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/m.db", dir.display());
    let config = |env| Config {
        env,
        database_url: Secret::new(url.clone()),
        jwt_secret: Some(Secret::new(crate::support::SECRET)),
        port: 0,
        ..Config::default()
    };
    let app = || m_runtime::app::App::new("m", "0.1.0", crate::support::doctypes()).unwrap();
    let err = Server::build(&config(Mode::Production), app(), m::doctypes::OPENAPI).await.err().expect("refused");
    assert!(format!("{err:#}").contains("lacks the tables"), "{err:#}");
    // A development start creates them; production then starts.
    Server::build(&config(Mode::Development), app(), m::doctypes::OPENAPI).await.expect("development start");
    Server::build(&config(Mode::Production), app(), m::doctypes::OPENAPI).await.expect("production start");
    std::fs::remove_dir_all(dir).ok();
}

crate::both!(development_adds_missing_tables_and_columns, |app| {
    use m_runtime::db::Db;
    // Drop a column and a table behind the server's back, as an older schema would lack them.
    let db = Db::connect(app.config.database_url.expose(), &app.config.pool()).await.unwrap();
    db.execute_script(&["ALTER TABLE \"customer\" DROP COLUMN \"email\"".to_string()]).await.unwrap();
    db.execute_script(&["DROP TABLE \"invoice_item\"".to_string()]).await.unwrap();
    let schema_app = m_runtime::app::App::new("m", "0.1.0", crate::support::doctypes()).unwrap();
    let server = Server::build(&app.config, schema_app, m::doctypes::OPENAPI).await.expect("development start");
    drop(server);
    crate::support::seed(&app).await;
    let c = app.get("/api/v1/Customer?fields=email").send().await.expect(200).json;
    assert_eq!(c["items"][0]["email"], serde_json::Value::Null);
});
