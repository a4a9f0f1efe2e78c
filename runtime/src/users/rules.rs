//! The runtime's rules for the built-in DocTypes `User` and `User Permission`, applied by the
//! document service on every write (pure: no I/O).

use std::sync::{Arc, OnceLock};

use crate::app::App;
use crate::checks::FieldIssue;
use crate::doc::Doc;
use crate::perms::{ADMINISTRATOR, Principal, SYSTEM_MANAGER};
use crate::repo::error::RepoError;
use crate::value::Value;

/// The built-in tables.
pub const USER_TABLE: &str = "user";
pub const USER_DOCTYPE: &str = "User";
pub const USER_PERMISSION_TABLE: &str = "user_permission";

pub(super) fn administrator() -> Arc<Principal> {
    static ADMIN: OnceLock<Arc<Principal>> = OnceLock::new();
    ADMIN.get_or_init(|| Arc::new(Principal::administrator())).clone()
}

/// A sign-in name as stored: emails in lower case, `Administrator` as is.
pub fn normalise(username: &str) -> String {
    let u = username.trim();
    if u.eq_ignore_ascii_case(ADMINISTRATOR) { ADMINISTRATOR.to_string() } else { u.to_lowercase() }
}

fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Every role the application knows: those its DocTypes grant, and System Manager.
pub fn known_roles(app: &App) -> Vec<&'static str> {
    let mut roles: Vec<&'static str> = vec![SYSTEM_MANAGER];
    for s in app.schemas() {
        for g in s.meta.permissions {
            if !roles.contains(&g.role) {
                roles.push(g.role);
            }
        }
    }
    roles.sort_unstable();
    roles
}

/// The runtime's rules for a `User` being saved (after hooks, before the value checks):
/// the email is the name (normalised, fixed once created), roles are known and not repeated,
/// and the Administrator stays enabled.
pub fn check(app: &App, doc: &mut Doc, previous: Option<&Doc>) -> Result<(), RepoError> {
    if doc.schema.meta.table == USER_PERMISSION_TABLE {
        return check_user_permission(app, doc);
    }
    if doc.schema.meta.table != USER_TABLE {
        return Ok(());
    }
    let mut issues = Vec::new();
    if let Value::Str(email) = doc.get("email") {
        let normal = normalise(email);
        if normal != ADMINISTRATOR && !looks_like_email(&normal) {
            issues.push(FieldIssue::new("email", "email", format!("`{email}` is not an email address")));
        }
        doc.set("email", Value::Str(normal));
    }
    if let Some(prev) = previous
        && prev.get("email") != doc.get("email")
    {
        issues.push(FieldIssue::new("email", "immutable", "the email is the user's name and cannot be changed"));
    }
    let name = previous.map(Doc::name).unwrap_or_default();
    if name == ADMINISTRATOR && doc.get("enabled") != &Value::Bool(true) {
        issues.push(FieldIssue::new("enabled", "administrator", "the Administrator cannot be disabled"));
    }
    let known = known_roles(app);
    let mut seen: Vec<String> = Vec::new();
    for (n, row) in doc.table("roles").iter().enumerate() {
        let Value::Str(role) = row.get("role") else { continue };
        if !known.contains(&role.as_str()) {
            issues.push(FieldIssue::new(
                format!("roles[{n}].role"),
                "unknown_role",
                format!("unknown role `{role}`; the application's roles are: {}", known.join(", ")),
            ));
        } else if seen.contains(role) {
            issues.push(FieldIssue::new(
                format!("roles[{n}].role"),
                "duplicate",
                format!("role `{role}` is listed twice"),
            ));
        }
        seen.push(role.clone());
    }
    if issues.is_empty() { Ok(()) } else { Err(RepoError::Validation(issues)) }
}

/// A User Permission's `allow` names one of the application's DocTypes (not a child).
fn check_user_permission(app: &App, doc: &Doc) -> Result<(), RepoError> {
    let Value::Str(allow) = doc.get("allow") else { return Ok(()) };
    if app.routable(allow).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = app.schemas().iter().filter(|s| !s.meta.child).map(|s| s.meta.name).collect();
    Err(RepoError::Validation(vec![FieldIssue::new(
        "allow",
        "unknown_doctype",
        format!("`{allow}` is not a DocType; allow one of: {}", names.join(", ")),
    )]))
}

/// The Administrator cannot be deleted.
pub fn before_delete(doc: &Doc) -> Result<(), RepoError> {
    if doc.schema.meta.table == USER_TABLE && doc.name() == ADMINISTRATOR {
        return Err(RepoError::NotPermitted("the Administrator cannot be deleted".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_the_administrator_are_normalised() {
        assert_eq!(normalise(" Ann@Example.COM "), "ann@example.com");
        assert_eq!(normalise("administrator"), "Administrator");
        assert!(looks_like_email("a@b.c"));
        for bad in ["a", "@b.c", "a@", "a@@b", "a b@c.d", "a@.b", "a@b."] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }
}
