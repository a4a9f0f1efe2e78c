//! A minimal M application the test suite builds to prove that editing TOML changes the API.

mod doctypes {
    include!(concat!(env!("OUT_DIR"), "/doctypes.rs"));
}

mod migrations {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

fn main() -> std::process::ExitCode {
    m_runtime::cli::main(m_runtime::cli::AppInfo {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        git: None,
        doctypes: doctypes::doctypes(),
        openapi: doctypes::OPENAPI,
        migrations: migrations::MIGRATIONS,
        migrations_dir: Some(migrations::MIGRATIONS_DIR),
        jobs: &[],
        prints: &[],
    })
}
