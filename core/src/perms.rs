//! Identity and type-level permissions (the README's identity section): who is acting, which actions their roles
//! grant on a DocType, and the row scope that follows from those grants.

use crate::meta::{DocMeta, RoleGrant};

/// The built-in role that may do everything and bypasses row rules.
pub const SYSTEM_MANAGER: &str = "System Manager";
/// The built-in administrator user.
pub const ADMINISTRATOR: &str = "Administrator";

/// The acting user of a request, a CLI command or a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's `name` (their email, or `Administrator`).
    pub user: String,
    pub roles: Vec<String>,
    /// DocTypes the user has at least one User Permission for (read with the roles).
    pub restricted: Vec<String>,
    /// Tokens issued (`iat`, Unix seconds) before this are refused: the user's creation or last
    /// password change.
    pub tokens_after: Option<u64>,
}

impl Principal {
    /// The built-in administrator (System Manager).
    pub fn administrator() -> Principal {
        Principal {
            user: ADMINISTRATOR.into(),
            roles: vec![SYSTEM_MANAGER.into()],
            restricted: Vec::new(),
            tokens_after: None,
        }
    }

    pub fn is_system_manager(&self) -> bool {
        self.roles.iter().any(|r| r == SYSTEM_MANAGER)
    }
}

/// What a request does to a DocType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Create,
    Write,
    Delete,
    Submit,
    Cancel,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Submit => "submit",
            Action::Cancel => "cancel",
        }
    }

    pub const ALL: [Action; 6] =
        [Action::Read, Action::Create, Action::Write, Action::Delete, Action::Submit, Action::Cancel];

    fn granted_by(self, g: &RoleGrant) -> bool {
        match self {
            Action::Read => g.grant.read,
            Action::Create => g.grant.create,
            Action::Write => g.grant.write,
            Action::Delete => g.grant.delete,
            Action::Submit => g.grant.submit,
            Action::Cancel => g.grant.cancel,
        }
    }
}

/// The rows an action may touch: a predicate the query builder ANDs into every statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Only rows whose `owner` is this user (`if_owner` on every granting role).
    pub owner: Option<String>,
    /// `[rls] user_permissions`: this user's User Permissions restrict the DocType's listed Links
    /// (each Link's value must be among them, for every target DocType the user has any for).
    pub user_permissions: Option<UserPermissions>,
}

/// The user whose User Permissions apply, and the `[rls]` Links they restrict: `(Link column,
/// target DocType)` for each target the user has User Permissions for (targets they have none
/// for do not restrict, Frappe's rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPermissions {
    pub user: String,
    pub links: Vec<(&'static str, &'static str)>,
}

impl Scope {
    /// Every row (System Manager, and code acting on the application's behalf).
    pub fn all() -> Scope {
        Scope { owner: None, user_permissions: None }
    }

    /// Whether some rows may be outside this scope.
    pub fn is_restricted(&self) -> bool {
        self.owner.is_some() || self.user_permissions.is_some()
    }
}

/// The caller's scope for `action` on a DocType, or None when no role grants it (a 403).
pub fn scope(meta: &DocMeta, who: &Principal, action: Action) -> Option<Scope> {
    if who.is_system_manager() {
        return Some(Scope::all());
    }
    let mut granted = false;
    let mut owner_only = true;
    for g in meta.permissions.iter().filter(|g| who.roles.iter().any(|r| r == g.role)) {
        if action.granted_by(g) {
            granted = true;
            owner_only &= g.grant.if_owner;
        }
    }
    granted.then(|| Scope { owner: owner_only.then(|| who.user.clone()), user_permissions: restriction(meta, who) })
}

/// The `[rls] user_permissions` Links of a DocType whose targets the user has User
/// Permissions for; None when there are none.
fn restriction(meta: &DocMeta, who: &Principal) -> Option<UserPermissions> {
    if who.restricted.is_empty() {
        return None;
    }
    let links: Vec<(&'static str, &'static str)> = meta
        .user_permissions
        .iter()
        .filter_map(|f| meta.fields.iter().find(|x| x.name == *f))
        .filter_map(|f| Some((f.name, f.to?)))
        .filter(|(_, target)| who.restricted.iter().any(|r| r == target))
        .collect();
    (!links.is_empty()).then(|| UserPermissions { user: who.user.clone(), links })
}

/// The actions the caller has on a DocType (for `/api/meta`).
pub fn allowed_actions(meta: &DocMeta, who: &Principal) -> Vec<&'static str> {
    Action::ALL.iter().filter(|a| scope(meta, who, **a).is_some()).map(|a| a.as_str()).collect()
}
