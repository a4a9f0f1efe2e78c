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
