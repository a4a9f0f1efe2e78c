//! `m migrate:status --live`: compare the database's actual tables, columns and indexes with
//! the schema its applied revisions describe.

use std::collections::BTreeMap;

use m_codegen::ddl::Dialect;
use m_codegen::migrate::model::{ColumnType, Schema};

use super::{Arg, MigConn, MigrateError};

/// What the database has: table -> (columns: name -> (type, not null), index names).
type Found = BTreeMap<String, (BTreeMap<String, (String, bool)>, Vec<String>)>;

const OWN_TABLES: &[&str] = &["m_migrations", "m_migration_log"];

async fn introspect(conn: &mut MigConn) -> Result<Found, MigrateError> {
    let mut found: Found = BTreeMap::new();
    match conn.dialect() {
        Dialect::Postgres => {
            let cols = conn
                .rows(
                    "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
                     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
                    &[],
                )
                .await?;
            for r in cols {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                found.entry(s(0)).or_default().0.insert(s(1), (s(2), s(3) == "true"));
            }
            let idx = conn
                .rows(
                    "SELECT tablename::text, indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%\\_pkey'",
                    &[],
                )
                .await?;
            for r in idx {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                found.entry(s(0)).or_default().1.push(s(1));
            }
        }
        Dialect::Sqlite => {
            let tables = conn
                .rows(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                    &[],
                )
                .await?;
            for t in tables.into_iter().filter_map(|r| r.into_iter().next().flatten()) {
                let cols = conn
                    .rows("SELECT name, type, \"notnull\", pk FROM pragma_table_info($1)", &[Arg::Text(t.clone())])
                    .await?;
                let entry = found.entry(t.clone()).or_default();
                for r in cols {
                    let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                    entry.0.insert(s(0), (s(1), s(2) == "1" || s(3) != "0"));
                }
                let idx = conn
                    .rows(
                        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND name NOT LIKE 'sqlite\\_autoindex%' ESCAPE '\\'",
                        &[Arg::Text(t.clone())],
                    )
                    .await?;
                entry.1.extend(idx.into_iter().filter_map(|r| r.into_iter().next().flatten()));
            }
        }
    }
    for t in OWN_TABLES {
        found.remove(*t);
    }
    Ok(found)
}

/// Differences between `expected` and the database, one line each (empty: no drift).
pub async fn drift(conn: &mut MigConn, expected: &Schema) -> Result<Vec<String>, MigrateError> {
    let dialect = conn.dialect();
    let found = introspect(conn).await?;
    let mut out = Vec::new();
    for (name, t) in &expected.tables {
        let Some((cols, idx)) = found.get(name) else {
            out.push(format!("missing table `{name}`"));
            continue;
        };
        for c in &t.columns {
            let Some((ty, not_null)) = cols.get(&c.name) else {
                out.push(format!("missing column `{name}.{}`", c.name));
                continue;
            };
            let same_type = match dialect {
                Dialect::Postgres => ColumnType::parse(ty) == Some(c.ty),
                Dialect::Sqlite => ty.eq_ignore_ascii_case(c.ty.sqlite()),
            };
            if !same_type {
                let want = match dialect {
                    Dialect::Postgres => c.ty.postgres(),
                    Dialect::Sqlite => c.ty.sqlite().to_string(),
                };
                out.push(format!("column `{name}.{}` is {ty}, the revisions say {want}", c.name));
            }
            let want_not_null = c.not_null || c.primary_key;
            if *not_null != want_not_null && !c.primary_key {
                let say = |b: bool| if b { "NOT NULL" } else { "nullable" };
                out.push(format!(
                    "column `{name}.{}` is {}, the revisions say {}",
                    c.name,
                    say(*not_null),
                    say(want_not_null)
                ));
            }
        }
        for extra in cols.keys().filter(|k| t.column(k).is_none()) {
            out.push(format!("unexpected column `{name}.{extra}`"));
        }
        for ix in &t.indexes {
            if !idx.contains(&ix.name) {
                out.push(format!("missing index `{}` on `{name}`", ix.name));
            }
        }
        for extra in idx.iter().filter(|i| t.index(i).is_none()) {
            out.push(format!("unexpected index `{extra}` on `{name}`"));
        }
    }
    for extra in found.keys().filter(|k| !expected.tables.contains_key(*k)) {
        out.push(format!("unexpected table `{extra}`"));
    }
    Ok(out)
}
