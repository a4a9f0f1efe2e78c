//! Users (DESIGN §4): the built-in DocTypes `User` (name = email, `enabled`, roles in the child
//! `Has Role`) and `User Permission`, the rules the runtime adds to them, passwords and the
//! directory that turns an authenticated user name into a [`Principal`].
//!
//! Roles and the enabled flag come only from the database. The directory keeps each user's for
//! at most [`FRESH`] and forgets a user as soon as this process changes them, so a removed role,
//! a disabled or a deleted user stops working within a second on every backend — also when the
//! change was made by another server instance or by `m user:*` in another process. Passwords are
//! argon2id hashes in `m_auth`, a table no DocType query reads; they are never returned or logged.

pub mod rules;

use rules::administrator;
pub use rules::{USER_DOCTYPE, USER_PERMISSION_TABLE, USER_TABLE, known_roles, normalise};

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::checks::FieldIssue;
use crate::db::DbCtx;
use crate::doc::Doc;
use crate::meta::FieldType;
use crate::perms::{ADMINISTRATOR, Principal};
use crate::query;
use crate::repo::{Repo, RepoError};
use crate::value::Value;

/// How long a user's roles and enabled flag are used before they are read again.
pub const FRESH: Duration = Duration::from_millis(900);

/// Passwords are at least this long, and at most this many bytes (hashing is costly).
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Users already read: name -> (when, the principal or None for unknown/disabled). Bounded:
/// when full it is emptied.
#[derive(Default)]
pub struct Directory {
    map: RwLock<HashMap<String, Entry>>,
}

/// When a user was read, and what: their principal, or None (unknown or disabled).
type Entry = (Instant, Option<Arc<Principal>>);

const MAX_DIRECTORY_ENTRIES: usize = 100_000;

impl Directory {
    /// What the document service calls after each committed write: a changed or deleted user
    /// (or a change to their User Permissions) is read again on their next request.
    pub fn forget_written(directory: Arc<Directory>) -> crate::repo::WriteObserver {
        Box::new(move |doc| {
            if doc.schema.meta.table == USER_TABLE {
                directory.forget(doc.name());
            }
            if doc.schema.meta.table == USER_PERMISSION_TABLE
                && let Value::Str(user) = doc.get("user")
            {
                directory.forget(user);
            }
        })
    }

    fn get(&self, user: &str) -> Option<Option<Arc<Principal>>> {
        let map = self.map.read().ok()?;
        map.get(user).filter(|(at, _)| at.elapsed() < FRESH).map(|(_, p)| p.clone())
    }

    fn put(&self, user: &str, at: Instant, principal: Option<Arc<Principal>>) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= MAX_DIRECTORY_ENTRIES {
                map.clear();
            }
            map.insert(user.to_string(), (at, principal));
        }
    }

    /// Read this user from the database on their next request.
    pub fn forget(&self, user: &str) {
        if let Ok(mut map) = self.map.write() {
            map.remove(user);
        }
    }
}

/// An argon2id hash (PHC string) of a new password, after the length rules.
pub async fn hash_password(password: &str) -> Result<String, RepoError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(password_issue(format!("the password needs at least {MIN_PASSWORD_CHARS} characters")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(password_issue(format!("the password is longer than {MAX_PASSWORD_BYTES} bytes")));
    }
    let password = password.to_string();
    tokio::task::spawn_blocking(move || Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(|e| RepoError::Internal(format!("hashing a password: {e}")))?
        .map_err(|e| RepoError::Internal(format!("hashing a password: {e}")))
}

fn password_issue(message: String) -> RepoError {
    RepoError::Validation(vec![FieldIssue::new("password", "password", message)])
}

/// A hash of a random password, verified in place of a missing one so an unknown user costs
/// the same time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let random = uuid::Uuid::new_v4().to_string();
        Argon2::default().hash_password(random.as_bytes()).map(|h| h.to_string()).unwrap_or_default()
    })
}

async fn verify_password(hash: Option<String>, password: &str) -> bool {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| decoy_hash().to_string());
        let ok = Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok();
        real && ok
    })
    .await
    .unwrap_or(false)
}

/// One user, as `m user:list` and `/auth/me` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserInfo {
    pub name: String,
    pub full_name: Option<String>,
    pub enabled: bool,
    pub roles: Vec<String>,
}

impl UserInfo {
    pub fn from_doc(doc: &Doc) -> UserInfo {
        UserInfo {
            name: doc.name().to_string(),
            full_name: doc.get("full_name").as_str().map(str::to_string),
            enabled: doc.get("enabled") == &Value::Bool(true),
            roles: doc.table("roles").iter().filter_map(|r| r.get("role").as_str().map(str::to_string)).collect(),
        }
    }
}

/// The user service: principals for authenticated names (through the directory), the login,
/// passwords, and the built-in Administrator. Documents go through the document service, so the
/// rules of `User` are the API's.
#[derive(Clone)]
pub struct Users {
    repo: Repo,
    directory: Arc<Directory>,
}

impl Users {
    /// The service over `repo`, whose writes to users forget them in `directory`.
    pub fn new(repo: Repo, directory: Arc<Directory>) -> Users {
        Users { repo, directory }
    }

    /// Read `user` again on their next request.
    pub fn forget(&self, user: &str) {
        self.directory.forget(user);
    }

    /// The principal of an authenticated user name, with roles from the database; None for a
    /// user that does not exist or is disabled (their tokens no longer work).
    pub async fn principal(&self, user: &str) -> Result<Option<Arc<Principal>>, RepoError> {
        if user == ADMINISTRATOR {
            return Ok(Some(administrator()));
        }
        if user.contains('\0') {
            return Ok(None);
        }
        if let Some(hit) = self.directory.get(user) {
            crate::metrics::cache_lookup("user", true);
            return Ok(hit);
        }
        crate::metrics::cache_lookup("user", false);
        let at = Instant::now();
        let sql = query::user_access(self.repo.db().dialect(), user);
        let kinds = [FieldType::Check, FieldType::Data, FieldType::Datetime, FieldType::BigInt];
        let rows = self.repo.db().fetch(&DbCtx::System, &sql.text, sql.binds, &kinds).await?;
        let principal = match rows.first() {
            Some(first) if first.first() == Some(&Value::Bool(true)) => {
                let roles = rows.iter().filter_map(|r| r.get(1).and_then(Value::as_str).map(str::to_string)).collect();
                let sql = query::user_permission_doctypes(self.repo.db().dialect(), user);
                let restricted = self
                    .repo
                    .db()
                    .fetch(&DbCtx::System, &sql.text, sql.binds, &[FieldType::Data])
                    .await?
                    .into_iter()
                    .filter_map(|r| r.into_iter().next().and_then(|v| v.as_str().map(str::to_string)))
                    .collect();
                let created = match first.get(2) {
                    Some(Value::Datetime(t)) => u64::try_from(t.timestamp()).ok(),
                    _ => None,
                };
                let changed = match first.get(3) {
                    Some(Value::Int(t)) => u64::try_from(*t).ok(),
                    _ => None,
                };
                let tokens_after = created.max(changed);
                Some(Arc::new(Principal { user: user.to_string(), roles, restricted, tokens_after }))
            }
            _ => None,
        };
        self.directory.put(user, at, principal.clone());
        Ok(principal)
    }

    /// The user a username and password sign in as, or None — the same answer, after the same
    /// work, for an unknown user, a disabled one, one without a password and a wrong password.
    pub async fn login(&self, username: &str, password: &str) -> Result<Option<String>, RepoError> {
        let name = normalise(username);
        // No user name holds a NUL character; the password is hashed, never stored as text.
        let name = if name.contains('\0') { String::new() } else { name };
        let sql = query::user_credentials(self.repo.db().dialect(), &name);
        let rows =
            self.repo.db().fetch(&DbCtx::System, &sql.text, sql.binds, &[FieldType::Check, FieldType::Text]).await?;
        let hash = match rows.first().map(Vec::as_slice) {
            Some([Value::Bool(true), Value::Str(h)]) if password.len() <= MAX_PASSWORD_BYTES => Some(h.clone()),
            _ => None,
        };
        let password = if password.len() > MAX_PASSWORD_BYTES { "" } else { password };
        Ok(verify_password(hash, password).await.then_some(name))
    }

    /// Set a user's password (argon2id).
    pub async fn set_password(&self, user: &str, password: &str) -> Result<(), RepoError> {
        let name = normalise(user);
        let hash = hash_password(password).await?;
        let who = Principal::administrator();
        // The user must exist (the hash table references it).
        self.repo.get(&who, USER_DOCTYPE, &name).await?;
        let now = chrono::Utc::now().timestamp();
        let sql = query::set_password_hash(self.repo.db().dialect(), &name, &hash, now);
        self.repo.db().write(&DbCtx::System, &sql.text, sql.binds).await?;
        // Tokens issued before now stop working (at once here, within a second elsewhere).
        self.directory.forget(&name);
        Ok(())
    }

    /// Create the built-in Administrator user when it does not exist yet (its roles do not
    /// matter: the Administrator is always a System Manager).
    pub async fn ensure_administrator(&self) -> Result<(), RepoError> {
        let who = Principal::administrator();
        match self.repo.get(&who, USER_DOCTYPE, ADMINISTRATOR).await {
            Ok(_) => return Ok(()),
            Err(RepoError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let body = serde_json::json!({"email": ADMINISTRATOR, "full_name": ADMINISTRATOR, "enabled": true});
        match self.repo.create(&who, USER_DOCTYPE, &body).await {
            // Another instance created it at the same moment.
            Ok(_) | Err(RepoError::Duplicate { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A user's profile (for `/auth/me` and `m user:list`).
    pub async fn user_info(&self, user: &str) -> Result<UserInfo, RepoError> {
        let doc = self.repo.get(&Principal::administrator(), USER_DOCTYPE, user).await?;
        Ok(UserInfo::from_doc(&doc))
    }

    /// Warm the decoy hash so the first login to an unknown user is not faster than the rest.
    pub async fn warm_login(&self) {
        let _ = tokio::task::spawn_blocking(decoy_hash).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(Some(h.clone()), "correct horse").await);
        assert!(!verify_password(Some(h), "wrong horse!").await);
        assert!(!verify_password(None, "anything at all").await);
        assert!(hash_password("short").await.is_err());
    }
}
