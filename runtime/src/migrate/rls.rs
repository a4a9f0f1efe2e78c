//! PostgreSQL row security (`M_DB_RLS=on`, DESIGN §4): the row scope of the query builder
//! installed a second time, as policies the database itself enforces, so a statement that forgets
//! the application's predicate still sees only the caller's rows.
//!
//! Every connection of the server says whom it acts for at checkout (`m.user`, `m.roles` as a JSON
//! array, `m.action`, `m.bypass`; see `crate::db::DbCtx`). Per DocType table (`FORCE`d, so the
//! owner is bound too; superusers and `BYPASSRLS` roles never are, and the server refuses to
//! start as one):
//! - `m_select` (read), `m_insert` (create), `m_update` (write, or submit / cancel / delete by
//!   `m.action`: a row is locked with `FOR UPDATE` before it changes) and `m_delete` (delete): System Manager, or the OR over the roles granting the action of
//!   "has the role" (and "owns the row" with `if_owner`), AND each `[rls]` Link within the user's
//!   User Permissions for its target (when they have any) — the same rules as `perms::scope`;
//! - child tables: `m_child` (read: the row's parent is visible) and `m_child_insert` /
//!   `_update` / `_delete` (the parent may be changed by the action under way).
//!
//! An unset context matches nothing. The built-in DocTypes (users and their permissions) are
//! left to the API, which grants them to System Managers only; the policies read
//! `user_permission` freely. Policies are not part of the revision chain: `m migrate` and a
//! development start install, refresh or remove them to match `M_DB_RLS` and this build's
//! permissions (a fingerprint in a comment says which build's they are), and a production start
//! refuses a database whose policies do not match.

use super::conn::{Arg, MigConn};
use super::{MigrateError, err};
use crate::app::App;
use crate::meta::DocMeta;
use crate::perms::SYSTEM_MANAGER;

/// The tables the API alone guards.
const UNCOVERED: &[&str] = &["user", "has_role", "user_permission"];

/// The policies of one table.
#[derive(Debug, Clone)]
pub struct TablePolicies {
    pub table: &'static str,
    /// `CREATE POLICY` … statements (after `ENABLE` / `FORCE`).
    pub create: Vec<String>,
    /// Which policies these are (a comment on the first one).
    pub fingerprint: String,
}

/// What `M_DB_RLS` asks of the database, for this build.
#[derive(Debug, Clone)]
pub struct Plan {
    pub on: bool,
    pub tables: Vec<TablePolicies>,
}

const POLICIES: &[&str] =
    &["m_select", "m_insert", "m_update", "m_delete", "m_child", "m_child_insert", "m_child_update", "m_child_delete"];

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

const USER: &str = "current_setting('m.user', true)";

/// The caller's roles, evaluated once per statement (an uncorrelated subquery).
fn has_role(role: &str) -> String {
    format!("((SELECT coalesce(nullif(current_setting('m.roles', true), ''), '[]')::jsonb) ? {})", lit(role))
}

/// Nothing but the runtime acting for itself.
fn bypass_only() -> &'static str {
    "current_setting('m.bypass', true) = 'on'"
}

/// The predicate for one action on a DocType.
fn predicate(meta: &DocMeta, action: &str) -> String {
    let grants: Vec<String> = meta
        .permissions
        .iter()
        .filter(|g| match action {
            "read" => g.grant.read,
            "create" => g.grant.create,
            "write" => g.grant.write,
            "delete" => g.grant.delete,
            "submit" => g.grant.submit,
            _ => g.grant.cancel,
        })
        .map(|g| {
            if g.grant.if_owner {
                format!("({} AND {} = {USER})", has_role(g.role), ident("owner"))
            } else {
                has_role(g.role)
            }
        })
        .collect();
    let granted = if grants.is_empty() { "false".to_string() } else { format!("({})", grants.join(" OR ")) };
    let mut scoped = granted;
    for f in meta.user_permissions {
        let Some(target) = meta.fields.iter().find(|x| x.name == *f).and_then(|x| x.to) else { continue };
        let mine = format!(
            "FROM {up} AS {a} WHERE {a}.{user} = {USER} AND {a}.{allow} = {t}",
            up = ident("user_permission"),
            a = ident("m_up"),
            user = ident("user"),
            allow = ident("allow"),
            t = lit(target)
        );
        scoped = format!(
            "{scoped} AND ({col} IN (SELECT {a}.{fv} {mine}) OR NOT EXISTS (SELECT 1 {mine}))",
            col = ident(f),
            a = ident("m_up"),
            fv = ident("for_value"),
        );
    }
    format!(
        "(current_setting('m.bypass', true) = 'on' OR ({USER} <> '' AND ({} OR ({scoped}))))",
        has_role(SYSTEM_MANAGER)
    )
}

fn table_policies(meta: &'static DocMeta, parent: Option<&'static DocMeta>) -> TablePolicies {
    let t = ident(meta.table);
    let create = match parent {
        Some(parent) => {
            // Child rows: readable with their parent; changed only as the parent may be by the
            // action under way (children are written while their parent is created or saved).
            let of_parent = |extra: &str| {
                format!(
                    "EXISTS (SELECT 1 FROM {p} WHERE {p}.{name} = {t}.{col}{extra})",
                    p = ident(parent.table),
                    name = ident("name"),
                    col = ident("parent")
                )
            };
            let change = format!(
                " AND CASE current_setting('m.action', true) WHEN 'create' THEN {} WHEN 'write' THEN {} WHEN 'submit' THEN {} WHEN 'cancel' THEN {} ELSE {} END",
                predicate(parent, "create"),
                predicate(parent, "write"),
                predicate(parent, "submit"),
                predicate(parent, "cancel"),
                bypass_only()
            );
            let (read, write) = (of_parent(""), of_parent(&change));
            vec![
                format!("CREATE POLICY m_child ON {t} FOR SELECT USING ({read})"),
                format!("CREATE POLICY m_child_insert ON {t} FOR INSERT WITH CHECK ({write})"),
                format!("CREATE POLICY m_child_update ON {t} FOR UPDATE USING ({write}) WITH CHECK ({write})"),
                format!("CREATE POLICY m_child_delete ON {t} FOR DELETE USING ({write})"),
            ]
        }
        None => {
            let update = format!(
                "CASE current_setting('m.action', true) WHEN 'write' THEN {} WHEN 'submit' THEN {} WHEN 'cancel' THEN {} WHEN 'delete' THEN {} ELSE {} END",
                predicate(meta, "write"),
                predicate(meta, "submit"),
                predicate(meta, "cancel"),
                // Deleting locks the row first (`SELECT … FOR UPDATE` passes the UPDATE policy).
                predicate(meta, "delete"),
                bypass_only()
            );
            vec![
                format!("CREATE POLICY m_select ON {t} FOR SELECT USING ({})", predicate(meta, "read")),
                format!("CREATE POLICY m_insert ON {t} FOR INSERT WITH CHECK ({})", predicate(meta, "create")),
                format!("CREATE POLICY m_update ON {t} FOR UPDATE USING ({update}) WITH CHECK ({update})"),
                format!("CREATE POLICY m_delete ON {t} FOR DELETE USING ({})", predicate(meta, "delete")),
            ]
        }
    };
    let fingerprint = format!("m:{}", m_schema::migrate::checksum(&create.join("\n")));
    TablePolicies { table: meta.table, create, fingerprint }
}

impl Plan {
    pub fn new(app: &App, on: bool) -> Plan {
        let tables = app
            .schemas()
            .iter()
            .filter(|s| !UNCOVERED.contains(&s.meta.table))
            .map(|s| {
                let parent = s.meta.parent.and_then(|p| app.get(p)).map(|p| p.meta);
                table_policies(s.meta, if s.meta.child { parent } else { None })
            })
            .collect();
        Plan { on, tables }
    }
}

/// A table's row security as the database has it.
struct TableState {
    /// Row security enabled.
    enabled: bool,
    /// Enabled and forced (binding the owner too), with this fingerprint.
    current: Option<String>,
}

async fn state(conn: &mut MigConn, table: &str) -> Result<TableState, MigrateError> {
    let rows = conn
        .rows(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, obj_description(p.oid, 'pg_policy') FROM pg_class c \
             LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname IN ('m_select', 'm_child') \
             WHERE c.oid = to_regclass($1)",
            &[Arg::Text(ident(table))],
        )
        .await
        .map_err(|e| err(format!("reading the row security of `{table}`: {e}")))?;
    let row = rows.into_iter().next().unwrap_or_default();
    let flag = |i: usize| row.get(i).cloned().flatten().is_some_and(|v| v == "true");
    let (enabled, forced) = (flag(0), flag(1));
    let comment = row.get(2).cloned().flatten();
    Ok(TableState { enabled, current: comment.filter(|_| enabled && forced) })
}

/// Make the database's policies match the plan (PostgreSQL; one transaction; tables already
/// right are not touched). Returns the tables changed.
pub async fn sync(conn: &mut MigConn, plan: &Plan) -> Result<Vec<&'static str>, MigrateError> {
    if conn.dialect() != m_schema::Dialect::Postgres {
        return Ok(Vec::new());
    }
    let mut script = Vec::new();
    let mut changed = Vec::new();
    for t in &plan.tables {
        let st = state(conn, t.table).await?;
        let current = st.current.as_deref() == Some(t.fingerprint.as_str());
        if plan.on && current || !plan.on && !st.enabled {
            continue;
        }
        let name = ident(t.table);
        for p in POLICIES {
            script.push(format!("DROP POLICY IF EXISTS {p} ON {name}"));
        }
        if plan.on {
            script.push(format!("ALTER TABLE {name} ENABLE ROW LEVEL SECURITY"));
            script.push(format!("ALTER TABLE {name} FORCE ROW LEVEL SECURITY"));
            script.extend(t.create.iter().cloned());
            let first = if t.create[0].starts_with("CREATE POLICY m_child") { "m_child" } else { "m_select" };
            script.push(format!("COMMENT ON POLICY {first} ON {name} IS {}", lit(&t.fingerprint)));
        } else {
            script.push(format!("ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY"));
            script.push(format!("ALTER TABLE {name} DISABLE ROW LEVEL SECURITY"));
        }
        changed.push(t.table);
    }
    if script.is_empty() {
        return Ok(changed);
    }
    let sql = format!("BEGIN;\n{};\nCOMMIT;", script.join(";\n"));
    if let Err(e) = conn.exec(&sql).await {
        let _ = conn.exec("ROLLBACK").await;
        return Err(err(format!("installing the row security policies (M_DB_RLS): {e}")));
    }
    Ok(changed)
}

/// A production start: the policies must be exactly this build's (M_DB_RLS on), or absent (off).
pub async fn check(conn: &mut MigConn, plan: &Plan) -> Result<(), MigrateError> {
    if conn.dialect() != m_schema::Dialect::Postgres {
        return Ok(());
    }
    for t in &plan.tables {
        let st = state(conn, t.table).await?;
        if plan.on && st.current.as_deref() != Some(t.fingerprint.as_str()) {
            return Err(err(format!(
                "M_DB_RLS=on but the row security policies of `{}` are missing or from another build: run `m migrate` with M_DB_RLS=on",
                t.table
            )));
        }
        if !plan.on && st.enabled {
            return Err(err(format!(
                "M_DB_RLS is off but `{}` has row security on: run `m migrate` (it removes the policies) or set M_DB_RLS=on",
                t.table
            )));
        }
    }
    Ok(())
}

/// Row security binds neither superusers nor `BYPASSRLS` roles: with it on, the server refuses
/// to run as one.
pub async fn check_server_role(url: &str) -> Result<(), MigrateError> {
    let mut conn = MigConn::connect(url).await.map_err(|e| err(format!("cannot connect to the database: {e}")))?;
    let checked = check_role(&mut conn).await;
    conn.close().await;
    checked
}

async fn check_role(conn: &mut MigConn) -> Result<(), MigrateError> {
    let rows = conn
        .rows("SELECT current_user::text, (rolsuper OR rolbypassrls) FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .map_err(|e| err(format!("reading the database role: {e}")))?;
    let row = rows.into_iter().next().unwrap_or_default();
    if row.get(1).cloned().flatten().as_deref() == Some("true") {
        let user = row.first().cloned().flatten().unwrap_or_default();
        return Err(err(format!(
            "M_DB_RLS=on, but the database user `{user}` is a superuser or has BYPASSRLS, so PostgreSQL would not apply the policies: connect as an ordinary role (the tables' owner)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(lit("O'Brien"), "'O''Brien'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert!(has_role("Sales User").contains("? 'Sales User'"));
    }
}
