//! `m migrate:status --live`: compare the database's actual tables, columns and indexes with
//! the schema its applied revisions describe, and its Select values with the DocTypes' options.

use std::collections::BTreeMap;

use m_schema::Dialect;
use m_schema::migrate::model::{ColumnType, Schema};

use super::{Arg, MigConn, MigrateError};

/// What the database has, per table.
#[derive(Debug, Default)]
struct FoundTable {
    /// name -> (type, not null)
    columns: BTreeMap<String, (String, bool)>,
    indexes: Vec<String>,
    /// (column, referenced table)
    foreign_keys: Vec<(String, String)>,
}

type Found = BTreeMap<String, FoundTable>;

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
                found.entry(s(0)).or_default().columns.insert(s(1), (s(2), s(3) == "true"));
            }
            let idx = conn
                .rows(
                    "SELECT tablename::text, indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%\\_pkey'",
                    &[],
                )
                .await?;
            for r in idx {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                found.entry(s(0)).or_default().indexes.push(s(1));
            }
            let fks = conn
                .rows(
                    "SELECT cl.relname::text, a.attname::text, ref.relname::text FROM pg_constraint c \
                     JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace \
                     JOIN pg_class ref ON ref.oid = c.confrelid \
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
                     WHERE c.contype = 'f' AND n.nspname = current_schema()",
                    &[],
                )
                .await?;
            for r in fks {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                found.entry(s(0)).or_default().foreign_keys.push((s(1), s(2)));
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
                let mut entry = FoundTable::default();
                for r in cols {
                    let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                    entry.columns.insert(s(0), (s(1), s(2) == "1" || s(3) != "0"));
                }
                let idx = conn
                    .rows(
                        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND name NOT LIKE 'sqlite\\_autoindex%' ESCAPE '\\'",
                        &[Arg::Text(t.clone())],
                    )
                    .await?;
                entry.indexes.extend(idx.into_iter().filter_map(|r| r.into_iter().next().flatten()));
                let fks = conn
                    .rows("SELECT \"from\", \"table\" FROM pragma_foreign_key_list($1)", &[Arg::Text(t.clone())])
                    .await?;
                for r in fks {
                    let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                    entry.foreign_keys.push((s(0), s(1)));
                }
                found.insert(t, entry);
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
        let Some(FoundTable { columns: cols, indexes: idx, foreign_keys: fks }) = found.get(name) else {
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
        let want_fks: Vec<(String, String)> =
            t.columns.iter().filter_map(|c| c.references.as_ref().map(|r| (c.name.clone(), r.table.clone()))).collect();
        for (c, target) in &want_fks {
            if !fks.contains(&(c.clone(), target.clone())) {
                out.push(format!("missing foreign key `{name}.{c}` -> `{target}`"));
            }
        }
        for (c, target) in fks.iter().filter(|fk| !want_fks.contains(fk)) {
            out.push(format!("unexpected foreign key `{name}.{c}` -> `{target}`"));
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

/// Rows whose Select value is not one of the column's options in `desired` (the DocTypes of
/// this build), one line per column and value (the five most frequent), for the tables that
/// exist. Adding an option makes no revision (M060), so removing one that was added that way is
/// not checked by a migration (M061 checks only options the chain knows): this finds such rows.
pub async fn invalid_values(conn: &mut MigConn, desired: &Schema) -> Result<Vec<String>, MigrateError> {
    let found = introspect(conn).await?;
    let mut out = Vec::new();
    for (name, t) in &desired.tables {
        let Some(existing) = found.get(name) else { continue };
        for c in t.columns.iter().filter(|c| !c.options.is_empty() && existing.columns.contains_key(&c.name)) {
            // Identifiers come from the DocTypes' metadata; the options are bound. The column is
            // read as text: a pending revision may not have made it a text column yet.
            let col = format!("CAST(\"{}\" AS TEXT)", c.name);
            let placeholders: Vec<String> = (1..=c.options.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {col}, COUNT(*) FROM \"{name}\" WHERE {col} IS NOT NULL AND {col} <> '' AND {col} NOT IN ({}) \
                 GROUP BY {col} ORDER BY COUNT(*) DESC, {col} LIMIT 5",
                placeholders.join(", ")
            );
            let args: Vec<Arg> = c.options.iter().map(|o| Arg::Text(o.clone())).collect();
            for r in conn.rows(&sql, &args).await? {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                out.push(format!(
                    "`{name}.{}`: {} row(s) hold `{}`, which is not one of its options (update them, or add the option back)",
                    c.name,
                    s(1),
                    s(0)
                ));
            }
        }
    }
    Ok(out)
}
