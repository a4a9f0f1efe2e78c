//! The built-in DocTypes every application has (DESIGN §4): `User`, its child `Has Role`,
//! `User Permission`, the webhooks' `Webhook` (child `Webhook Data`) and `Webhook Request Log`,
//! the outbox's `Email Queue`, and `Version` (change history). They are ordinary DocTypes — tables, routes, OpenAPI, migrations — whose TOML ships
//! with this crate; only System Managers are granted anything on them (no `[permissions]`), and
//! the runtime adds their rules (known roles, the password kept apart, webhook targets).

/// `(file name as diagnostics show it, TOML text)` of each built-in DocType.
pub const SOURCES: &[(&str, &str)] = &[
    ("builtin/email_queue.toml", include_str!("../builtin/email_queue.toml")),
    ("builtin/has_role.toml", include_str!("../builtin/has_role.toml")),
    ("builtin/user.toml", include_str!("../builtin/user.toml")),
    ("builtin/user_permission.toml", include_str!("../builtin/user_permission.toml")),
    ("builtin/version.toml", include_str!("../builtin/version.toml")),
    ("builtin/webhook.toml", include_str!("../builtin/webhook.toml")),
    ("builtin/webhook_data.toml", include_str!("../builtin/webhook_data.toml")),
    ("builtin/webhook_request_log.toml", include_str!("../builtin/webhook_request_log.toml")),
];

/// Whether a diagnostics file name is one of the built-ins (which may use reserved names).
pub fn is_builtin(file: &str) -> bool {
    SOURCES.iter().any(|(f, _)| *f == file)
}

/// An application's DocType sources followed by the built-ins.
pub fn with_builtins(sources: &[(String, String)]) -> Vec<(String, String)> {
    let mut all = sources.to_vec();
    all.extend(SOURCES.iter().map(|(f, t)| (f.to_string(), t.to_string())));
    all
}
