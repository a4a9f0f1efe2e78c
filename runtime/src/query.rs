//! The one query builder. Every statement that touches a DocType table is built here, and every
//! one that reads or changes existing rows takes the caller's [`Scope`] and ANDs it in. Column
//! names come only from the DocType's metadata; every value is a bound parameter.

use std::fmt::Write as _;

use crate::db::{Binds, Dialect};
use crate::doc::{DocSchema, StandardColumn};
use crate::list_query::{Cond, CondValue, ListQuery, Op, SortDir};
use crate::meta::FieldType;
use crate::perms::Scope;
use crate::value::Value;

/// A statement under construction: SQL text plus its binds.
pub struct Sql {
    pub text: String,
    pub binds: Binds,
    dialect: Dialect,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Sql {
        Sql { text: String::with_capacity(160), binds: Vec::new(), dialect }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// A quoted identifier. Identifiers come from static metadata, never from a request.
    pub fn ident(&mut self, name: &str) -> &mut Self {
        self.text.push('"');
        self.text.push_str(name);
        self.text.push('"');
        self
    }

    /// `"alias"."column"`.
    fn qualified(&mut self, alias: &str, column: &str) -> &mut Self {
        self.ident(alias).push(".").ident(column)
    }

    pub fn bind(&mut self, kind: FieldType, v: Value) -> &mut Self {
        self.binds.push((kind, v));
        match self.dialect {
            Dialect::Postgres => {
                let _ = write!(self.text, "${}", self.binds.len());
            }
            Dialect::Sqlite => self.text.push('?'),
        }
        self
    }

    /// A column as an expression that compares and sorts by its meaning: SQLite keeps decimals
    /// as exact text, so they are compared as numbers.
    fn column_expr(&mut self, name: &str, kind: FieldType) -> &mut Self {
        if self.dialect == Dialect::Sqlite && kind.is_decimal() {
            self.push("CAST(").ident(name).push(" AS REAL)")
        } else {
            self.ident(name)
        }
    }

    fn bind_expr(&mut self, kind: FieldType, v: Value) -> &mut Self {
        if self.dialect == Dialect::Sqlite && kind.is_decimal() {
            self.push("CAST(").bind(kind, v).push(" AS REAL)")
        } else {
            self.bind(kind, v)
        }
    }

    /// ` AND <scope>` (nothing when the scope is every row). For each `[rls]` Link whose target
    /// the user has User Permissions for, the Link's value must be one of them (the list is read
    /// here, so a removed User Permission applies at once).
    fn scope(&mut self, scope: &Scope) -> &mut Self {
        if let Some(owner) = &scope.owner {
            self.push(" AND ").ident("owner").push(" = ").bind(FieldType::Data, Value::Str(owner.clone()));
        }
        if let Some(up) = &scope.user_permissions {
            for (column, target) in &up.links {
                self.push(" AND ").ident(column).push(" IN (SELECT ").ident("for_value");
                self.push(" FROM ").ident("user_permission").push(" WHERE ").ident("user").push(" = ");
                self.bind(FieldType::Data, Value::Str(up.user.clone()));
                self.push(" AND ").ident("allow").push(" = ").bind(FieldType::Data, Value::Str((*target).to_string()));
                self.push(")");
            }
        }
        self
    }

    fn select_columns(&mut self, schema: &DocSchema, cols: &[usize]) -> &mut Self {
        self.push("SELECT ");
        for (n, &i) in cols.iter().enumerate() {
            if n > 0 {
                self.push(", ");
            }
            self.ident(schema.columns[i].name);
        }
        self.push(" FROM ").ident(schema.meta.table)
    }
}

/// How a request names one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocRef {
    Id(uuid::Uuid),
    Name(String),
}

impl DocRef {
    /// The lookups to try, in order, for a `{ref}`: a string that parses as a UUID is first tried
    /// as an `id` (one indexed equality, the common case) and then as a `name`.
    /// A string with a NUL character names nothing (no stored name can hold one).
    pub fn attempts(s: &str) -> Vec<DocRef> {
        if s.contains('\0') {
            return Vec::new();
        }
        match uuid::Uuid::parse_str(s) {
            Ok(u) => vec![DocRef::Id(u), DocRef::Name(s.to_string())],
            Err(_) => vec![DocRef::Name(s.to_string())],
        }
    }
}

fn where_ref(sql: &mut Sql, r: &DocRef) {
    match r {
        DocRef::Id(u) => {
            sql.push(" WHERE ").ident("id").push(" = ").bind(FieldType::Uuid, Value::Uuid(*u));
        }
        DocRef::Name(n) => {
            sql.push(" WHERE ").ident("name").push(" = ").bind(FieldType::Data, Value::Str(n.clone()));
        }
    }
}

/// Column kinds, for decoding the rows of a select.
pub fn kinds(schema: &DocSchema, cols: &[usize]) -> Vec<FieldType> {
    cols.iter().map(|&i| schema.columns[i].kind).collect()
}

/// `SELECT <all columns> FROM t WHERE <ref> AND <scope>`.
pub fn select_one(schema: &DocSchema, dialect: Dialect, r: &DocRef, scope: &Scope) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.select_columns(schema, &schema.all_columns);
    where_ref(&mut sql, r);
    sql.scope(scope);
    sql
}

/// `SELECT 1 … WHERE <ref>` without the caller's scope: only for the audit of a 404 (whether the
/// document exists outside the caller's scope); it returns no column of the row.
pub fn exists(schema: &DocSchema, dialect: Dialect, r: &DocRef) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT 1 FROM ").ident(schema.meta.table);
    where_ref(&mut sql, r);
    sql
}

fn push_cond(sql: &mut Sql, schema: &DocSchema, c: &Cond) {
    let col = &schema.columns[c.column];
    let (name, kind) = (col.name, col.kind);
    let dialect = sql.dialect;
    match (&c.op, &c.value) {
        (Op::IsNull, CondValue::Flag(is_null)) => {
            sql.ident(name).push(if *is_null { " IS NULL" } else { " IS NOT NULL" });
        }
        (Op::In | Op::NotIn, CondValue::Many(values)) => {
            let negate = c.op == Op::NotIn;
            if values.is_empty() {
                sql.push(if negate { "1 = 1" } else { "1 = 0" });
                return;
            }
            sql.push("(").column_expr(name, kind).push(if negate { " NOT IN (" } else { " IN (" });
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind_expr(kind, v.clone());
            }
            sql.push(")");
            if negate {
                sql.push(" OR ").ident(name).push(" IS NULL");
            }
            sql.push(")");
        }
        (Op::Between, CondValue::Two(a, b)) => {
            sql.column_expr(name, kind)
                .push(" BETWEEN ")
                .bind_expr(kind, a.clone())
                .push(" AND ")
                .bind_expr(kind, b.clone());
        }
        (Op::Like, CondValue::One(v)) => {
            // `\` escapes a wildcard on both dialects (PostgreSQL's default, SQLite's by ESCAPE).
            let op = if dialect == Dialect::Postgres { " ILIKE " } else { " LIKE " };
            sql.ident(name).push(op).bind(FieldType::Text, v.clone()).push(" ESCAPE '\\'");
        }
        (Op::Ne, CondValue::One(v)) => {
            // Null-safe: a NULL is "not equal" to a value, as users expect.
            let op = if dialect == Dialect::Postgres { " IS DISTINCT FROM " } else { " IS NOT " };
            sql.column_expr(name, kind).push(op).bind_expr(kind, v.clone());
        }
        (op, CondValue::One(v)) => {
            let sym = match op {
                Op::Eq => " = ",
                Op::Lt => " < ",
                Op::Lte => " <= ",
                Op::Gt => " > ",
                _ => " >= ",
            };
            sql.column_expr(name, kind).push(sym).bind_expr(kind, v.clone());
        }
        // The parser pairs every operator with its value shape; anything else matches nothing.
        _ => {
            sql.push("1 = 0");
        }
    }
}

fn push_where(sql: &mut Sql, schema: &DocSchema, q: &ListQuery, scope: &Scope) {
    sql.push(" WHERE 1 = 1");
    sql.scope(scope);
    for c in &q.filters {
        sql.push(" AND ");
        push_cond(sql, schema, c);
    }
    if !q.or_filters.is_empty() {
        sql.push(" AND (");
        for (i, c) in q.or_filters.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            push_cond(sql, schema, c);
        }
        sql.push(")");
    }
}

/// The page of a list: `limit + 1` rows, so the caller learns `has_more` without counting.
pub fn select_list(schema: &DocSchema, dialect: Dialect, q: &ListQuery, cols: &[usize], scope: &Scope) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.select_columns(schema, cols);
    push_where(&mut sql, schema, q, scope);
    sql.push(" ORDER BY ");
    for (i, (col, dir)) in q.order_by.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        let c = &schema.columns[*col];
        sql.column_expr(c.name, c.kind).push(if *dir == SortDir::Asc { " ASC" } else { " DESC" });
        // NULL sorts as the smallest value on both dialects (SQLite's rule, and Frappe's). Only
        // nullable columns say so: on NOT NULL ones the clause would stop PostgreSQL from reading
        // an index in order.
        let nullable = c.field.map_or(c.standard == Some(StandardColumn::AmendedFrom), |f| !f.required);
        if dialect == Dialect::Postgres && nullable {
            sql.push(if *dir == SortDir::Asc { " NULLS FIRST" } else { " NULLS LAST" });
        }
    }
    // A unique tie-breaker keeps pages stable when the sort keys repeat.
    if !q.order_by.iter().any(|(c, _)| schema.columns[*c].standard == Some(StandardColumn::Id)) {
        sql.push(if q.order_by.is_empty() { "" } else { ", " }).ident("id");
    }
    sql.push(" LIMIT ").bind(FieldType::BigInt, Value::Int(i64::from(q.limit) + 1));
    sql.push(" OFFSET ").bind(FieldType::BigInt, Value::Int(i64::from(q.offset)));
    sql
}

/// `SELECT count(*)` over the same conditions and scope as the list.
pub fn count(schema: &DocSchema, dialect: Dialect, q: &ListQuery, scope: &Scope) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT count(*) FROM ").ident(schema.meta.table);
    push_where(&mut sql, schema, q, scope);
    sql
}

/// `INSERT` of every column of a document (creation has no row scope: the type-level `create`
/// grant is the check).
pub fn insert(schema: &DocSchema, dialect: Dialect, values: &[Value]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ").ident(schema.meta.table).push(" (");
    for (i, c) in schema.columns.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.ident(c.name);
    }
    sql.push(") VALUES (");
    for (i, (c, v)) in schema.columns.iter().zip(values).enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(c.kind, v.clone());
    }
    sql.push(")");
    sql
}

/// `UPDATE` every column but `id` of one document in scope, optionally only at an expected
/// `_version` (optimistic concurrency).
pub fn update(
    schema: &DocSchema,
    dialect: Dialect,
    values: &[Value],
    scope: &Scope,
    expect_version: Option<i64>,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE ").ident(schema.meta.table).push(" SET ");
    let mut first = true;
    let mut id = Value::Null;
    for (c, v) in schema.columns.iter().zip(values) {
        if c.standard == Some(StandardColumn::Id) {
            id = v.clone();
            continue;
        }
        if !first {
            sql.push(", ");
        }
        first = false;
        sql.ident(c.name).push(" = ").bind(c.kind, v.clone());
    }
    sql.push(" WHERE ").ident("id").push(" = ").bind(FieldType::Uuid, id);
    sql.scope(scope);
    if let Some(v) = expect_version {
        sql.push(" AND ").ident("_version").push(" = ").bind(FieldType::BigInt, Value::Int(v));
    }
    sql
}

/// `DELETE` one document in scope.
pub fn delete(schema: &DocSchema, dialect: Dialect, id: uuid::Uuid, scope: &Scope) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM ")
        .ident(schema.meta.table)
        .push(" WHERE ")
        .ident("id")
        .push(" = ")
        .bind(FieldType::Uuid, Value::Uuid(id));
    sql.scope(scope);
    sql
}

/// The rows of one Table field of a parent in scope, in order.
pub fn select_children(
    child: &DocSchema,
    parent: &DocSchema,
    dialect: Dialect,
    parent_name: &str,
    field: &str,
    scope: &Scope,
) -> Sql {
    let cols: Vec<usize> = (0..child.columns.len()).collect();
    let mut sql = Sql::new(dialect);
    sql.select_columns(child, &cols);
    sql.push(" WHERE ").ident("parentfield").push(" = ").bind(FieldType::Data, Value::Str(field.to_string()));
    sql.push(" AND ").ident("parent").push(" IN (SELECT ").ident("name").push(" FROM ").ident(parent.meta.table);
    sql.push(" WHERE ").ident("name").push(" = ").bind(FieldType::Data, Value::Str(parent_name.to_string()));
    sql.scope(scope);
    sql.push(") ORDER BY ").ident("idx");
    sql
}

/// Delete the child rows of a parent's Table field that are not in `keep` (ids).
pub fn delete_children_except(
    child: &DocSchema,
    dialect: Dialect,
    parent_name: &str,
    field: &str,
    keep: &[uuid::Uuid],
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM ")
        .ident(child.meta.table)
        .push(" WHERE ")
        .ident("parent")
        .push(" = ")
        .bind(FieldType::Data, Value::Str(parent_name.to_string()));
    sql.push(" AND ").ident("parentfield").push(" = ").bind(FieldType::Data, Value::Str(field.to_string()));
    if !keep.is_empty() {
        sql.push(" AND ").ident("id").push(" NOT IN (");
        for (i, id) in keep.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(FieldType::Uuid, Value::Uuid(*id));
        }
        sql.push(")");
    }
    sql
}

/// Does a row with this `name` (or `id`) exist in the caller's scope? Returns its `name`.
pub fn find_name(schema: &DocSchema, dialect: Dialect, r: &DocRef, scope: &Scope) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ").ident("name").push(" FROM ").ident(schema.meta.table);
    where_ref(&mut sql, r);
    sql.scope(scope);
    sql
}

/// Names starting with `prefix` (for amendments `<name>-N`), any scope: names are unique
/// across all rows.
pub fn names_like(schema: &DocSchema, dialect: Dialect, prefix: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .ident("name")
        .push(" FROM ")
        .ident(schema.meta.table)
        .push(" WHERE ")
        .ident("name")
        .push(" LIKE ");
    let escaped = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    sql.bind(FieldType::Data, Value::Str(format!("{escaped}-%"))).push(" ESCAPE '\\'");
    sql
}

/// Next value of a naming-series counter, atomically, inside the write transaction.
pub fn next_series(dialect: Dialect, key: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO m_series (prefix, current) VALUES (").bind(FieldType::Data, Value::Str(key.to_string()));
    sql.push(", 1) ON CONFLICT (prefix) DO UPDATE SET current = m_series.current + 1 RETURNING current");
    sql
}

/// A user's enabled flag, role, creation and last password change: one row per role (a NULL
/// role when they have none); no row for an unknown user.
pub fn user_access(dialect: Dialect, user: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ").qualified("u", "enabled").push(", ").qualified("r", "role");
    sql.push(", ").qualified("u", "creation").push(", ").qualified("a", "changed");
    sql.push(" FROM ").ident("user").push(" AS ").ident("u");
    sql.push(" LEFT JOIN ").ident("has_role").push(" AS ").ident("r");
    sql.push(" ON ").qualified("r", "parent").push(" = ").qualified("u", "name");
    sql.push(" LEFT JOIN ").ident("m_auth").push(" AS ").ident("a");
    sql.push(" ON ").qualified("a", "user").push(" = ").qualified("u", "name");
    sql.push(" WHERE ").qualified("u", "name").push(" = ").bind(FieldType::Data, Value::Str(user.to_string()));
    sql
}

/// The DocTypes a user has User Permissions for.
pub fn user_permission_doctypes(dialect: Dialect, user: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT DISTINCT ").ident("allow").push(" FROM ").ident("user_permission");
    sql.push(" WHERE ").ident("user").push(" = ").bind(FieldType::Data, Value::Str(user.to_string()));
    sql
}

/// A user's enabled flag and password hash (NULL when no password is set), for the login.
pub fn user_credentials(dialect: Dialect, user: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ").qualified("u", "enabled").push(", ").qualified("a", "password_hash");
    sql.push(" FROM ").ident("user").push(" AS ").ident("u");
    sql.push(" LEFT JOIN ").ident("m_auth").push(" AS ").ident("a");
    sql.push(" ON ").qualified("a", "user").push(" = ").qualified("u", "name");
    sql.push(" WHERE ").qualified("u", "name").push(" = ").bind(FieldType::Data, Value::Str(user.to_string()));
    sql
}

/// Set a user's password hash (kept in `m_auth`, apart from the `user` table) and when it
/// changed (Unix seconds).
pub fn set_password_hash(dialect: Dialect, user: &str, hash: &str, changed: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ").ident("m_auth").push(" (").ident("user").push(", ").ident("password_hash");
    sql.push(", ").ident("changed").push(") VALUES (").bind(FieldType::Data, Value::Str(user.to_string())).push(", ");
    sql.bind(FieldType::Text, Value::Str(hash.to_string())).push(", ").bind(FieldType::BigInt, Value::Int(changed));
    sql.push(") ON CONFLICT (").ident("user").push(") DO UPDATE SET ").ident("password_hash");
    sql.push(" = excluded.").ident("password_hash").push(", ").ident("changed").push(" = excluded.").ident("changed");
    sql
}

/// Forget a user's password hash (the user is being deleted).
pub fn delete_password_hash(dialect: Dialect, user: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM ").ident("m_auth").push(" WHERE ").ident("user").push(" = ");
    sql.bind(FieldType::Data, Value::Str(user.to_string()));
    sql
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::doc::DocSchema;
    use crate::list_query::{ListLimits, parse};
    use crate::meta::{DocMeta, FieldMeta, Naming};

    static FIELDS: &[FieldMeta] = &[FieldMeta {
        name: "qty",
        kind: FieldType::Currency,
        to: None,
        required: false,
        unique: false,
        index: false,
        default: None,
        options: &[],
        max_length: None,
        precision: Some(18),
        scale: Some(6),
        min: None,
        max: None,
        regex: None,
        read_only: false,
        hidden: false,
        description: None,
    }];

    static META: DocMeta = DocMeta {
        name: "Note",
        table: "note",
        naming: Naming::Hash,
        title_field: None,
        submittable: false,
        track_changes: false,
        optimistic: false,
        child: false,
        parent: None,
        description: None,
        fields: FIELDS,
        permissions: &[],
        user_permissions: &[],
        schema: "",
    };

    fn schema() -> Arc<DocSchema> {
        Arc::new(DocSchema::new(&META, &|_| None).expect("schema"))
    }

    fn owner_scope() -> Scope {
        let up = crate::perms::UserPermissions { user: "a@example.com".into(), links: vec![("customer", "Customer")] };
        Scope { owner: Some("a@example.com".into()), user_permissions: Some(up) }
    }

    /// Every statement on existing rows carries the owner and User Permission predicates, with
    /// the user and DocType bound.
    #[test]
    fn the_scope_is_in_every_statement_on_existing_rows() {
        let s = schema();
        let q = parse(&s, &[("qty[gt]".into(), "2".into())], &ListLimits::default()).expect("query");
        let id = uuid::Uuid::nil();
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            let statements = [
                select_one(&s, dialect, &DocRef::Name("x".into()), &owner_scope()),
                select_list(&s, dialect, &q, &s.all_columns, &owner_scope()),
                count(&s, dialect, &q, &owner_scope()),
                update(&s, dialect, &vec![Value::Null; s.columns.len()], &owner_scope(), None),
                delete(&s, dialect, id, &owner_scope()),
                find_name(&s, dialect, &DocRef::Id(id), &owner_scope()),
                select_children(&s, &s, dialect, "x", "items", &owner_scope()),
            ];
            for sql in statements {
                assert!(sql.text.contains("\"owner\" = "), "{dialect:?}: no scope in {}", sql.text);
                assert!(
                    sql.text.contains("\"customer\" IN (SELECT \"for_value\" FROM \"user_permission\""),
                    "{dialect:?}: no User Permission predicate in {}",
                    sql.text
                );
                assert!(sql.binds.iter().any(|(_, v)| *v == Value::Str("Customer".into())));
                assert!(
                    sql.binds.iter().any(|(_, v)| *v == Value::Str("a@example.com".into())),
                    "{dialect:?}: owner not bound in {}",
                    sql.text
                );
            }
        }
    }

    #[test]
    fn values_are_bound_and_decimals_compare_as_numbers_on_sqlite() {
        let s = schema();
        let q = parse(&s, &[("qty[gt]".into(), "2.5".into())], &ListLimits::default()).expect("query");
        let pg = select_list(&s, Dialect::Postgres, &q, &s.all_columns, &Scope::all());
        assert!(pg.text.contains("\"qty\" > $1"), "{}", pg.text);
        assert!(!pg.text.contains("2.5"), "values are never inlined: {}", pg.text);
        let lite = select_list(&s, Dialect::Sqlite, &q, &s.all_columns, &Scope::all());
        assert!(lite.text.contains("CAST(\"qty\" AS REAL) > CAST(? AS REAL)"), "{}", lite.text);
        assert!(lite.text.ends_with("LIMIT ? OFFSET ?"), "{}", lite.text);
    }
}
