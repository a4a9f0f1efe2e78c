//! The example application: DocTypes in `doctypes/`, hooks in `src/hooks/`, background jobs in
//! `src/jobs.rs`. Everything else is
//! generated at build time or lives in m-runtime.

/// The generated DocType structs and the table the runtime serves.
pub mod doctypes {
    include!(concat!(env!("OUT_DIR"), "/doctypes.rs"));
}

/// The print templates of `print/`, embedded at build time.
pub mod prints {
    include!(concat!(env!("OUT_DIR"), "/prints.rs"));
}

/// The revisions of `migrations/`, embedded at build time.
pub mod migrations {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

// Hand-written hooks: one file per DocType in src/hooks/, picked up by the build.
mod hooks {
    include!(concat!(env!("OUT_DIR"), "/hooks.rs"));
}

/// Background jobs.
pub mod jobs;

/// What `m` serves: this application's name, version and DocTypes.
pub fn app_info() -> m_runtime::cli::AppInfo {
    m_runtime::cli::AppInfo {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        git: option_env!("M_GIT_DESCRIBE"),
        doctypes: doctypes::doctypes(),
        openapi: doctypes::OPENAPI,
        migrations: migrations::MIGRATIONS,
        migrations_dir: Some(migrations::MIGRATIONS_DIR),
        prints: prints::PRINTS,
        jobs: jobs::JOBS,
    }
}
