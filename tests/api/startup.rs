//! Startup rules: a development start applies SAFE revisions and writes one for SAFE DocType
//! changes; production never migrates and refuses pending revisions or DocType changes without
//! a revision.

use m_runtime::config::{Config, Mode, Secret};
use m_runtime::server::Server;

use crate::support::Scratch;
use crate::support::application as app;

fn config(scratch: &Scratch, env: Mode) -> Config {
    Config {
        env,
        database_url: Secret::new(scratch.url.clone()),
        jwt_secret: Some(Secret::new(crate::support::SECRET)),
        // The test DocType Gadget has a Password field: production needs the key.
        encryption_key: Some(Secret::new(crate::support::SECRET)),
        port: 0,
        db_max_connections: 4,
        db_min_connections: 1,
        migrations_dir: Some(scratch.migrations_dir()),
        ..Config::default()
    }
}

crate::both_backends!(production_refuses_pending_revisions_and_development_applies_them, |backend| {
    let Some(scratch) = Scratch::new(backend).await else { return };
    // Production reads only the revisions built into the binary (the example application's
    // initial revision): it is pending, so production refuses to start.
    let embedded = app().with_migrations(m::migrations::MIGRATIONS, None);
    let err = Server::open(config(&scratch, Mode::Production), embedded, crate::support::jobs(), m::doctypes::OPENAPI)
        .await
        .err()
        .expect("production refuses");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("pending revision") && msg.contains("_initial.toml") && msg.contains("run `m migrate`"),
        "{msg}"
    );
    // With no revision at all, the DocTypes have changes no revision contains.
    let err = Server::open(config(&scratch, Mode::Production), app(), crate::support::jobs(), m::doctypes::OPENAPI)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("no revision contains"), "{err:#}");

    // A development start writes `<id>_auto.toml` (every change is SAFE) and applies it.
    Server::open(config(&scratch, Mode::Development), app(), crate::support::jobs(), m::doctypes::OPENAPI)
        .await
        .expect("development start");
    let files = m_runtime::migrate::read_dir(&scratch.migrations_dir()).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].0.ends_with("_auto.toml"), "{}", files[0].0);
    // A second start has nothing to write.
    Server::open(config(&scratch, Mode::Development), app(), crate::support::jobs(), m::doctypes::OPENAPI)
        .await
        .expect("development start");
    assert_eq!(m_runtime::migrate::read_dir(&scratch.migrations_dir()).unwrap().len(), 1);
    // Production now starts: the database is at the head of the chain in the scratch folder.
    let mut prod = config(&scratch, Mode::Production);
    prod.env = Mode::Production;
    let files = m_runtime::migrate::read_dir(&scratch.migrations_dir()).unwrap();
    let leaked: &'static [(&'static str, &'static str)] = Box::leak(
        files
            .into_iter()
            .map(|(n, t)| (&*Box::leak(n.into_boxed_str()), &*Box::leak(t.into_boxed_str())))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    Server::open(prod.clone(), app().with_migrations(leaked, None), crate::support::jobs(), m::doctypes::OPENAPI)
        .await
        .expect("production start");
});
