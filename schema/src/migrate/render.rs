//! Operations -> SQL per dialect. PostgreSQL runs DDL in transactions except `CREATE INDEX
//! CONCURRENTLY` and foreign-key validation; SQLite runs a revision in one transaction and
//! rebuilds a table (MIGRATION_RULES.md's numbered procedure) wherever `ALTER TABLE` cannot
//! make the change.

use std::collections::{HashMap, HashSet};

use super::model::{Backfill, Column, ColumnType, Index, Literal, Reference, Schema, Table};
use super::ops::{Op, ReplayError};
use crate::dialect::Dialect;
use crate::names::constraint_name;

/// One statement of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    Exec(String),
    /// A query that must return no row; otherwise the migration fails with `message`.
    ExpectNone {
        sql: String,
        message: String,
    },
}

/// Statements run together: in one transaction, or one by one outside any (PostgreSQL
/// `CONCURRENTLY`). A revision's progress is recorded per phase, so a failed one resumes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub transactional: bool,
    pub statements: Vec<Stmt>,
}

pub fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A constant as SQL.
pub fn literal(l: &Literal, dialect: Dialect) -> String {
    match l {
        Literal::Bool(b) => match dialect {
            Dialect::Postgres => if *b { "TRUE" } else { "FALSE" }.into(),
            Dialect::Sqlite => if *b { "1" } else { "0" }.into(),
        },
        Literal::Int(i) => i.to_string(),
        Literal::Float(x) => {
            let s = x.to_string();
            if s.contains(['.', 'e', 'E']) { s } else { format!("{s}.0") }
        }
        Literal::Str(s) => format!("'{}'", s.replace('\'', "''")),
    }
}

fn column_type(c: &Column, dialect: Dialect) -> String {
    match dialect {
        Dialect::Postgres => c.ty.postgres(),
        Dialect::Sqlite => c.ty.sqlite().to_string(),
    }
}

/// `"c" type [PRIMARY KEY] [NOT NULL] [DEFAULT x] [CHECK]`, without foreign keys.
pub fn column_sql(c: &Column, dialect: Dialect) -> String {
    let mut s = format!("{} {}", q(&c.name), column_type(c, dialect));
    if c.primary_key {
        s.push_str(" PRIMARY KEY");
    } else if c.not_null {
        s.push_str(" NOT NULL");
    }
    if let Some(d) = &c.default {
        s.push_str(&format!(" DEFAULT {}", literal(d, dialect)));
    }
    if dialect == Dialect::Sqlite && c.ty == ColumnType::Boolean {
        s.push_str(&format!(" CHECK ({} IN (0, 1))", q(&c.name)));
    }
    s
}

pub fn fk_name(table: &str, column: &str) -> String {
    constraint_name(table, &[column], "fkey")
}

fn fk_clause(column: &str, r: &Reference) -> String {
    format!(
        "FOREIGN KEY ({}) REFERENCES {} (\"name\") ON UPDATE CASCADE ON DELETE {}",
        q(column),
        q(&r.table),
        r.on_delete.sql()
    )
}

/// `CREATE TABLE`; foreign keys inline when `inline_fks` (SQLite), else left to the caller.
pub fn create_table_sql(t: &Table, name: &str, dialect: Dialect, inline_fks: bool) -> String {
    let mut lines: Vec<String> = t.columns.iter().map(|c| format!("    {}", column_sql(c, dialect))).collect();
    if inline_fks {
        for c in &t.columns {
            if let Some(r) = &c.references {
                lines.push(format!("    CONSTRAINT {} {}", q(&fk_name(&t.name, &c.name)), fk_clause(&c.name, r)));
            }
        }
    }
    format!("CREATE TABLE {} (\n{}\n)", q(name), lines.join(",\n"))
}

/// `CONSTRAINT … REFERENCES …` for a column added with `ADD COLUMN`.
fn inline_reference(table: &str, column: &str, r: &Reference) -> String {
    format!(
        " CONSTRAINT {} REFERENCES {} (\"name\") ON UPDATE CASCADE ON DELETE {}",
        q(&fk_name(table, column)),
        q(&r.table),
        r.on_delete.sql()
    )
}

fn add_fk_sql(table: &str, column: &str, r: &Reference) -> String {
    format!("ALTER TABLE {} ADD CONSTRAINT {} {}", q(table), q(&fk_name(table, column)), fk_clause(column, r))
}

/// `CREATE [UNIQUE] INDEX`. On PostgreSQL a nullable column is indexed NULLS FIRST: the runtime
/// sorts NULL as the smallest value (like SQLite), and such an index serves both directions.
pub fn index_sql(t: &Table, ix: &Index, dialect: Dialect, concurrently: bool) -> String {
    let cols: Vec<String> = ix
        .columns
        .iter()
        .map(|c| {
            let nullable = t.column(c).is_some_and(|col| !col.not_null && !col.primary_key);
            if dialect == Dialect::Postgres && nullable { format!("{} NULLS FIRST", q(c)) } else { q(c) }
        })
        .collect();
    format!(
        "CREATE {}INDEX {}{} ON {} ({})",
        if ix.unique { "UNIQUE " } else { "" },
        if concurrently { "CONCURRENTLY " } else { "" },
        q(&ix.name),
        q(&t.name),
        cols.join(", ")
    )
}

fn backfill_sql(b: Backfill, dialect: Dialect) -> &'static str {
    match (b, dialect) {
        (Backfill::Today, Dialect::Postgres) => "CURRENT_DATE",
        (Backfill::Now, Dialect::Postgres) => "now()",
        (Backfill::Today, Dialect::Sqlite) => "date('now')",
        (Backfill::Now, Dialect::Sqlite) => "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')",
    }
}

struct Out {
    phases: Vec<Phase>,
    open: Vec<Stmt>,
    /// PostgreSQL: foreign keys of tables created in this revision, added once all exist.
    deferred: Vec<String>,
}

impl Out {
    fn exec(&mut self, sql: String) {
        self.open.push(Stmt::Exec(sql));
    }

    fn expect_none(&mut self, sql: String, message: String) {
        self.open.push(Stmt::ExpectNone { sql, message });
    }

    fn close(&mut self) {
        let deferred: Vec<Stmt> = self.deferred.drain(..).map(Stmt::Exec).collect();
        self.open.extend(deferred);
        if !self.open.is_empty() {
            self.phases.push(Phase { transactional: true, statements: std::mem::take(&mut self.open) });
        }
    }

    fn phase(&mut self, transactional: bool, statements: Vec<Stmt>) {
        self.close();
        self.phases.push(Phase { transactional, statements });
    }
}

/// What the operations around the one being rendered do to tables.
#[derive(Default)]
struct Around {
    /// Tables created by earlier operations of this revision.
    created: HashSet<String>,
    /// Tables that later operations of this revision drop (how many times).
    dropped_later: HashMap<String, usize>,
}

/// Render `ops`, applied in order to `before`, for `dialect`.
pub fn render(ops: &[&Op], before: &Schema, dialect: Dialect) -> Result<Vec<Phase>, ReplayError> {
    let mut state = before.clone();
    let mut around = Around::default();
    for op in ops {
        if let Op::DropTable { table } = op {
            *around.dropped_later.entry(table.clone()).or_default() += 1;
        }
    }
    let mut out = Out { phases: Vec::new(), open: Vec::new(), deferred: Vec::new() };
    for op in ops {
        let prev = state.clone();
        op.replay(&mut state)?;
        if let Op::DropTable { table } = op
            && let Some(n) = around.dropped_later.get_mut(table)
        {
            *n -= 1;
        }
        match dialect {
            Dialect::Postgres => postgres(op, &prev, &state, &around, &mut out),
            Dialect::Sqlite => sqlite(op, &prev, &state, &mut out),
        }
        if let Op::CreateTable { table } = op {
            around.created.insert(table.name.clone());
        }
    }
    out.close();
    Ok(out.phases)
}

fn table<'a>(s: &'a Schema, name: &str) -> &'a Table {
    // Replay succeeded, so the table exists.
    &s.tables[name]
}

fn narrowing_check(table: &str, from: &Column, to: &Column, out: &mut Out) {
    if let ColumnType::Varchar(Some(n)) = to.ty
        && !matches!(from.ty, ColumnType::Varchar(Some(m)) if m <= n)
        && matches!(from.ty, ColumnType::Varchar(_) | ColumnType::Text)
    {
        out.expect_none(
            format!("SELECT 1 FROM {} WHERE length({}) > {n} LIMIT 1", q(table), q(&to.name)),
            format!("`{table}.{}` holds values longer than {n} characters", to.name),
        );
    }
}

fn values_check(table: &str, column: &str, allowed: &[String], dialect: Dialect, out: &mut Out) {
    let list: Vec<String> = allowed.iter().map(|v| literal(&Literal::Str(v.clone()), dialect)).collect();
    out.expect_none(
        format!(
            "SELECT 1 FROM {} WHERE {} IS NOT NULL AND {} NOT IN ({}) LIMIT 1",
            q(table),
            q(column),
            q(column),
            list.join(", ")
        ),
        format!("rows of `{table}` hold a value of `{column}` outside {}: update them first", allowed.join(" / ")),
    );
}

fn postgres(op: &Op, prev: &Schema, state: &Schema, around: &Around, out: &mut Out) {
    let d = Dialect::Postgres;
    let is_new = |t: &str| around.created.contains(t);
    match op {
        Op::CreateTable { table: t } => {
            out.exec(create_table_sql(t, &t.name, d, false));
            for c in &t.columns {
                if let Some(r) = &c.references {
                    out.deferred.push(add_fk_sql(&t.name, &c.name, r));
                }
            }
        }
        Op::DropTable { table: t } => {
            unlink_dropped_pg(t, prev, &around.dropped_later, out);
            out.exec(format!("DROP TABLE {}", q(t)));
        }
        Op::RenameTable { table: old, to } => {
            out.exec(format!("ALTER TABLE {} RENAME TO {}", q(old), q(to)));
            rename_objects_pg(table(prev, old), table(state, to), out);
        }
        Op::AddColumn { table: t, column, backfill } => {
            let mut col = column.clone();
            if backfill.is_some() {
                col.not_null = false;
            }
            let mut sql = format!("ALTER TABLE {} ADD COLUMN {}", q(t), column_sql(&col, d));
            if let Some(r) = &column.references {
                sql.push_str(&inline_reference(t, &column.name, r));
            }
            out.exec(sql);
            if let Some(b) = backfill {
                out.exec(format!("UPDATE {} SET {} = {}", q(t), q(&column.name), backfill_sql(*b, d)));
                out.exec(format!("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL", q(t), q(&column.name)));
            }
        }
        Op::DropColumn { table: t, column } => out.exec(format!("ALTER TABLE {} DROP COLUMN {}", q(t), q(column))),
        Op::RenameColumn { table: t, column, to } => {
            out.exec(format!("ALTER TABLE {} RENAME COLUMN {} TO {}", q(t), q(column), q(to)));
            rename_objects_pg(table(prev, t), table(state, t), out);
        }
        Op::AlterColumn { table: t, from, to } => {
            let c = q(&to.name);
            let retype = from.ty != to.ty;
            // PostgreSQL casts the old default with the column; drop it first, set it after.
            let reset_default = retype && from.default.is_some();
            if reset_default {
                out.exec(format!("ALTER TABLE {} ALTER COLUMN {c} DROP DEFAULT", q(t)));
            }
            if retype {
                narrowing_check(t, from, to, out);
                let compatible = super::classify::type_change(from.ty, to.ty).is_some_and(|(_, code)| code != "M033");
                let using = if compatible { String::new() } else { format!(" USING {c}::{}", to.ty.postgres()) };
                out.exec(format!("ALTER TABLE {} ALTER COLUMN {c} TYPE {}{using}", q(t), to.ty.postgres()));
            }
            if from.not_null != to.not_null {
                let verb = if to.not_null { "SET" } else { "DROP" };
                out.exec(format!("ALTER TABLE {} ALTER COLUMN {c} {verb} NOT NULL", q(t)));
            }
            if from.default != to.default || reset_default {
                match &to.default {
                    Some(v) => out.exec(format!("ALTER TABLE {} ALTER COLUMN {c} SET DEFAULT {}", q(t), literal(v, d))),
                    None if !reset_default => out.exec(format!("ALTER TABLE {} ALTER COLUMN {c} DROP DEFAULT", q(t))),
                    None => {}
                }
            }
        }
        Op::AddIndex { table: t, index } => {
            let tbl = table(state, t);
            if is_new(t) {
                out.exec(index_sql(tbl, index, d, false));
            } else {
                // Outside a transaction; a failed attempt leaves an invalid index, dropped first.
                out.phase(
                    false,
                    vec![
                        Stmt::Exec(format!("DROP INDEX CONCURRENTLY IF EXISTS {}", q(&index.name))),
                        Stmt::Exec(index_sql(tbl, index, d, true)),
                    ],
                );
            }
        }
        Op::DropIndex { index, .. } => out.exec(format!("DROP INDEX IF EXISTS {}", q(&index.name))),
        Op::AddForeignKey { table: t, column, references } => {
            if is_new(t) {
                out.exec(add_fk_sql(t, column, references));
            } else {
                // NOT VALID takes a light lock; validation scans the table in its own transaction.
                out.exec(format!("{} NOT VALID", add_fk_sql(t, column, references)));
                out.phase(
                    true,
                    vec![Stmt::Exec(format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", q(t), q(&fk_name(t, column))))],
                );
            }
        }
        Op::DropForeignKey { table: t, column, .. } => {
            out.exec(format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}", q(t), q(&fk_name(t, column))))
        }
        Op::CheckValues { table: t, column, allowed } => values_check(t, column, allowed, d, out),
        Op::Sql { postgres, .. } => out.exec(postgres.clone()),
    }
}

/// PostgreSQL refuses to drop a table another table's foreign key references. The diff drops
/// referencing tables first; tables that reference each other (two DocTypes linking one another)
/// have no such order, so the foreign keys of tables this revision drops later that point at
/// `dropped` go first. (SQLite needs nothing: revisions run with `foreign_keys=OFF`.)
fn unlink_dropped_pg(dropped: &str, before: &Schema, dropped_later: &HashMap<String, usize>, out: &mut Out) {
    let later = |t: &str| dropped_later.get(t).is_some_and(|n| *n > 0);
    let referencing = before.tables.values().filter(|o| o.name != dropped && later(&o.name));
    for o in referencing {
        for c in o.columns.iter().filter(|c| c.references.as_ref().is_some_and(|r| r.table == dropped)) {
            out.exec(format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}", q(&o.name), q(&fk_name(&o.name, &c.name))));
        }
    }
}

/// After a table or column rename, PostgreSQL keeps index and constraint names: rename the
/// derived ones so they match what the schema model expects.
fn rename_objects_pg(before: &Table, after: &Table, out: &mut Out) {
    for (old, new) in before.indexes.iter().zip(&after.indexes) {
        if old.name != new.name {
            out.exec(format!("ALTER INDEX {} RENAME TO {}", q(&old.name), q(&new.name)));
        }
    }
    for (old, new) in before.columns.iter().zip(&after.columns) {
        let (a, b) = (fk_name(&before.name, &old.name), fk_name(&after.name, &new.name));
        if old.references.is_some() && a != b {
            out.exec(format!("ALTER TABLE {} RENAME CONSTRAINT {} TO {}", q(&after.name), q(&a), q(&b)));
        }
    }
}

fn sqlite(op: &Op, prev: &Schema, state: &Schema, out: &mut Out) {
    let d = Dialect::Sqlite;
    match op {
        Op::CreateTable { table: t } => out.exec(create_table_sql(t, &t.name, d, true)),
        Op::DropTable { table: t } => out.exec(format!("DROP TABLE {}", q(t))),
        Op::RenameTable { table: old, to } => {
            out.exec(format!("ALTER TABLE {} RENAME TO {}", q(old), q(to)));
            rename_indexes_sqlite(table(prev, old), table(state, to), out);
        }
        Op::AddColumn { table: t, column, backfill } => {
            let fk_with_default = column.references.is_some() && column.default.is_some();
            let plain = backfill.is_none() && (!column.not_null || column.default.is_some()) && !fk_with_default;
            if plain {
                let mut sql = format!("ALTER TABLE {} ADD COLUMN {}", q(t), column_sql(column, d));
                if let Some(r) = &column.references {
                    sql.push_str(&format!(
                        " CONSTRAINT {} REFERENCES {} (\"name\") ON UPDATE CASCADE ON DELETE {}",
                        q(&fk_name(t, &column.name)),
                        q(&r.table),
                        r.on_delete.sql()
                    ));
                }
                out.exec(sql);
            } else {
                let fill = backfill.map(|b| (column.name.clone(), backfill_sql(b, d).to_string()));
                rebuild(state, table(prev, t), table(state, t), fill, out);
            }
        }
        Op::DropColumn { table: t, column } => {
            let before = table(prev, t);
            let simple = before.column(column).is_some_and(|c| c.references.is_none() && !c.primary_key);
            if simple {
                out.exec(format!("ALTER TABLE {} DROP COLUMN {}", q(t), q(column)));
            } else {
                rebuild(state, before, table(state, t), None, out);
            }
        }
        Op::RenameColumn { table: t, column, to } => {
            out.exec(format!("ALTER TABLE {} RENAME COLUMN {} TO {}", q(t), q(column), q(to)));
            rename_indexes_sqlite(table(prev, t), table(state, t), out);
        }
        Op::AlterColumn { table: t, from, to } => {
            narrowing_check(t, from, to, out);
            let same_here =
                from.ty.sqlite() == to.ty.sqlite() && from.not_null == to.not_null && from.default == to.default;
            if !same_here {
                rebuild(state, table(prev, t), table(state, t), None, out);
            }
        }
        Op::AddIndex { table: t, index } => out.exec(index_sql(table(state, t), index, d, false)),
        Op::DropIndex { index, .. } => out.exec(format!("DROP INDEX IF EXISTS {}", q(&index.name))),
        Op::AddForeignKey { table: t, .. } | Op::DropForeignKey { table: t, .. } => {
            rebuild(state, table(prev, t), table(state, t), None, out)
        }
        Op::CheckValues { table: t, column, allowed } => values_check(t, column, allowed, d, out),
        Op::Sql { sqlite, .. } => out.exec(sqlite.clone()),
    }
}

/// SQLite has no ALTER INDEX: recreate renamed indexes under their new names.
fn rename_indexes_sqlite(before: &Table, after: &Table, out: &mut Out) {
    for (old, new) in before.indexes.iter().zip(&after.indexes) {
        if old.name != new.name {
            out.exec(format!("DROP INDEX IF EXISTS {}", q(&old.name)));
            out.exec(index_sql(after, new, Dialect::Sqlite, false));
        }
    }
}

/// Steps 4–8 of the SQLite table rebuild; the revision's transaction, `foreign_keys=OFF` and the
/// `foreign_key_check` around it are the migrator's (steps 1–3, 9–11).
fn rebuild(state: &Schema, before: &Table, after: &Table, fill: Option<(String, String)>, out: &mut Out) {
    let d = Dialect::Sqlite;
    // `new_<t>` unless a table has that name (a DocType "New Customer").
    let mut tmp = format!("new_{}", after.name);
    while state.tables.contains_key(&tmp) {
        tmp = format!("_m_{tmp}");
    }
    // CAST never fails in SQLite ('abc' becomes 0): refuse values that would not convert.
    for c in &after.columns {
        let Some(old) = before.column(&c.name) else { continue };
        if old.ty.sqlite() == c.ty.sqlite() {
            continue;
        }
        let col = q(&c.name);
        let bad = match c.ty.sqlite() {
            "INTEGER" => format!(
                "(typeof({col}) = 'text' AND (trim({col}) = '' OR ltrim(trim({col}), '+-') GLOB '*[^0-9]*')) OR (typeof({col}) = 'real' AND {col} <> CAST({col} AS INTEGER))"
            ),
            "REAL" => format!(
                "typeof({col}) = 'text' AND (trim({col}) = '' OR ltrim(trim({col}), '+-') GLOB '*[^0-9.eE+-]*')"
            ),
            _ => continue,
        };
        out.expect_none(
            format!("SELECT 1 FROM {} WHERE {bad} LIMIT 1", q(&before.name)),
            format!("`{}.{}` holds values that are not {}: convert them first", before.name, c.name, c.ty.postgres()),
        );
    }
    out.exec(create_table_sql(after, &tmp, d, true));
    let mut cols = Vec::new();
    let mut exprs = Vec::new();
    for c in &after.columns {
        let expr = match before.column(&c.name) {
            Some(old) if old.ty.sqlite() != c.ty.sqlite() => format!("CAST({} AS {})", q(&c.name), c.ty.sqlite()),
            Some(_) => q(&c.name),
            None => match (&fill, &c.default) {
                (Some((name, e)), _) if *name == c.name => e.clone(),
                (_, Some(l)) => literal(l, d),
                _ => continue,
            },
        };
        cols.push(q(&c.name));
        exprs.push(expr);
    }
    out.exec(format!(
        "INSERT INTO {} ({}) SELECT {} FROM {}",
        q(&tmp),
        cols.join(", "),
        exprs.join(", "),
        q(&before.name)
    ));
    out.exec(format!("DROP TABLE {}", q(&before.name)));
    out.exec(format!("ALTER TABLE {} RENAME TO {}", q(&tmp), q(&after.name)));
    for ix in &after.indexes {
        out.exec(index_sql(after, ix, d, false));
    }
}

/// A phase list as one reviewable script (snapshots, `m migrate:create`), with the framing the
/// migrator adds around it.
pub fn script(phases: &[Phase], dialect: Dialect) -> String {
    let mut s = String::new();
    if phases.is_empty() {
        return "-- no statements\n".to_string();
    }
    if dialect == Dialect::Sqlite {
        s.push_str("PRAGMA foreign_keys = OFF;\n");
    }
    for p in phases {
        if p.transactional {
            s.push_str(match dialect {
                Dialect::Postgres => "BEGIN;\n",
                Dialect::Sqlite => "BEGIN IMMEDIATE;\n",
            });
        } else {
            s.push_str("-- outside a transaction\n");
        }
        for st in &p.statements {
            match st {
                Stmt::Exec(sql) => s.push_str(&format!("{sql};\n")),
                Stmt::ExpectNone { sql, message } => s.push_str(&format!("-- must return no row: {message}\n{sql};\n")),
            }
        }
        if p.transactional {
            if dialect == Dialect::Sqlite {
                s.push_str("PRAGMA foreign_key_check; -- must return no row\n");
            }
            s.push_str("COMMIT;\n");
        }
    }
    if dialect == Dialect::Sqlite {
        s.push_str("PRAGMA foreign_keys = ON;\n");
    }
    s
}
