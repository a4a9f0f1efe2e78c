//! SQL DDL per dialect, from the IR. Deterministic: the same IR always renders the same text, and
//! constraint and index names are derived from table and column names.

use crate::ir::{DocType, Field, FieldType, StandardColumn};
use crate::names::{constraint_name, snake_case};
use crate::project::Project;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub const ALL: [Dialect; 2] = [Dialect::Postgres, Dialect::Sqlite];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

/// Everything that creates one DocType's table on one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDdl {
    pub table: String,
    /// `CREATE TABLE`; on SQLite it carries the foreign keys inline.
    pub create: String,
    /// Each column with its SQL type (no constraints), for adding a missing column.
    pub columns: Vec<(String, String)>,
    /// PostgreSQL: `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY`, run once every table exists.
    pub foreign_keys: Vec<String>,
    /// `CREATE [UNIQUE] INDEX IF NOT EXISTS`.
    pub indexes: Vec<String>,
}

fn q(ident: &str) -> String {
    format!("\"{ident}\"")
}

/// The SQL type of a declared field (None for Table fields, which are child tables).
pub fn field_sql_type(f: &Field, dialect: Dialect) -> Option<String> {
    use FieldType as T;
    let pg = dialect == Dialect::Postgres;
    Some(match f.ty {
        T::Table => return None,
        T::Data | T::Email | T::Phone | T::Url if pg => format!("varchar({})", f.max_length.unwrap_or(140)),
        T::Link if pg => "varchar(140)".into(),
        T::Select if pg => "varchar".into(),
        T::Text if pg => "text".into(),
        T::Int if pg => "integer".into(),
        T::BigInt if pg => "bigint".into(),
        T::Float if pg => "double precision".into(),
        T::Currency | T::Decimal if pg => format!("numeric({},{})", f.precision.unwrap_or(18), f.scale.unwrap_or(6)),
        T::Check if pg => "boolean".into(),
        T::Date if pg => "date".into(),
        T::Datetime if pg => "timestamptz".into(),
        T::Time if pg => "time".into(),
        T::Json if pg => "jsonb".into(),
        T::Uuid if pg => "uuid".into(),
        T::Int | T::BigInt | T::Check => "INTEGER".into(),
        T::Float => "REAL".into(),
        _ => "TEXT".into(),
    })
}

fn standard_sql_type(c: StandardColumn, dialect: Dialect) -> &'static str {
    use StandardColumn as S;
    match (dialect, c) {
        (Dialect::Postgres, S::Id) => "uuid",
        (Dialect::Postgres, S::Creation | S::Modified) => "timestamptz",
        (Dialect::Postgres, S::Docstatus | S::Idx) => "integer",
        (Dialect::Postgres, S::Version) => "bigint",
        (Dialect::Postgres, _) => "varchar(140)",
        (Dialect::Sqlite, S::Docstatus | S::Idx | S::Version) => "INTEGER",
        (Dialect::Sqlite, _) => "TEXT",
    }
}

struct ForeignKey {
    column: String,
    target_table: String,
    on_delete: &'static str,
}

/// Render one DocType's DDL. Link and parent tables are the snake_case of the target names, so a
/// single DocType renders on its own (the derive macro needs no other file).
pub fn table_ddl(d: &DocType, dialect: Dialect) -> TableDdl {
    let table = d.table();
    let mut lines = Vec::new();
    let mut columns = Vec::new();
    let mut fks = Vec::new();

    for c in d.standard_columns() {
        let ty = standard_sql_type(c, dialect);
        columns.push((c.name().to_string(), ty.to_string()));
        let constraint = match c {
            StandardColumn::Id => " PRIMARY KEY",
            StandardColumn::Docstatus => " NOT NULL DEFAULT 0",
            StandardColumn::Version => " NOT NULL DEFAULT 1",
            StandardColumn::AmendedFrom => "",
            _ => " NOT NULL",
        };
        lines.push(format!("    {} {ty}{constraint}", q(c.name())));
        match c {
            StandardColumn::AmendedFrom => {
                fks.push(ForeignKey { column: c.name().into(), target_table: table.clone(), on_delete: "RESTRICT" })
            }
            StandardColumn::Parent => {
                if let Some(parent) = d.parent.as_deref() {
                    fks.push(ForeignKey {
                        column: c.name().into(),
                        target_table: snake_case(parent),
                        on_delete: "CASCADE",
                    });
                }
            }
            _ => {}
        }
    }
    for f in &d.fields {
        let Some(ty) = field_sql_type(f, dialect) else { continue };
        columns.push((f.name.clone(), ty.clone()));
        let mut line = format!("    {} {ty}", q(&f.name));
        if f.required {
            line.push_str(" NOT NULL");
        }
        if f.ty == FieldType::Check && dialect == Dialect::Sqlite {
            line.push_str(&format!(" CHECK ({} IN (0, 1))", q(&f.name)));
        }
        lines.push(line);
        if f.ty == FieldType::Link
            && let Some(target) = f.to.as_deref()
        {
            fks.push(ForeignKey { column: f.name.clone(), target_table: snake_case(target), on_delete: "RESTRICT" });
        }
    }

    if !d.child {
        lines.push(format!("    CONSTRAINT {} UNIQUE (\"name\")", q(&constraint_name(&table, &["name"], "key"))));
    }
    for f in d.fields.iter().filter(|f| f.unique && f.ty != FieldType::Table) {
        lines.push(format!(
            "    CONSTRAINT {} UNIQUE ({})",
            q(&constraint_name(&table, &[&f.name], "key")),
            q(&f.name)
        ));
    }

    let fk_clause = |fk: &ForeignKey| {
        format!(
            "FOREIGN KEY ({}) REFERENCES {} (\"name\") ON UPDATE CASCADE ON DELETE {}",
            q(&fk.column),
            q(&fk.target_table),
            fk.on_delete
        )
    };
    let mut foreign_keys = Vec::new();
    for fk in &fks {
        let name = q(&constraint_name(&table, &[&fk.column], "fkey"));
        match dialect {
            Dialect::Sqlite => lines.push(format!("    CONSTRAINT {name} {}", fk_clause(fk))),
            Dialect::Postgres => {
                foreign_keys.push(format!("ALTER TABLE {} ADD CONSTRAINT {name} {}", q(&table), fk_clause(fk)))
            }
        }
    }

    let create = format!("CREATE TABLE IF NOT EXISTS {} (\n{}\n)", q(&table), lines.join(",\n"));

    let mut index_cols: Vec<(Vec<String>, bool)> = Vec::new();
    let mut add = |cols: Vec<String>, unique: bool| match index_cols.iter_mut().find(|(c, _)| *c == cols) {
        // A declared unique index on the columns of an automatic one makes that one unique.
        Some(existing) => existing.1 |= unique,
        None => index_cols.push((cols, unique)),
    };
    if d.child {
        add(vec!["parent".into(), "idx".into()], false);
    } else {
        add(vec!["owner".into()], false);
        add(vec!["modified".into()], false);
        add(vec!["owner".into(), "modified".into()], false);
        if d.submittable {
            add(vec!["amended_from".into()], false);
        }
    }
    for f in &d.fields {
        if f.ty == FieldType::Link || (f.index && !f.unique) {
            add(vec![f.name.clone()], false);
        }
    }
    for ix in &d.indexes {
        add(ix.fields.clone(), ix.unique);
    }
    let indexes = index_cols
        .iter()
        .map(|(cols, unique)| {
            let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
            let name = constraint_name(&table, &refs, if *unique { "key" } else { "idx" });
            // On PostgreSQL a nullable column is indexed NULLS FIRST: the runtime sorts NULL as the
            // smallest value (like SQLite), and such an index serves both directions.
            let nullable = |c: &str| c == "amended_from" || d.field(c).is_some_and(|f| !f.required);
            let list: Vec<String> =
                cols.iter()
                    .map(|c| {
                        if dialect == Dialect::Postgres && nullable(c) { format!("{} NULLS FIRST", q(c)) } else { q(c) }
                    })
                    .collect();
            format!(
                "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                if *unique { "UNIQUE " } else { "" },
                q(&name),
                q(&table),
                list.join(", ")
            )
        })
        .collect();

    TableDdl { table, create, columns, foreign_keys, indexes }
}

/// The whole schema of an application as one SQL script (the committed `schema.<dialect>.sql`).
pub fn schema_sql(project: &Project, dialect: Dialect) -> String {
    let ddls: Vec<TableDdl> = project.doctypes.iter().map(|d| table_ddl(d, dialect)).collect();
    let mut out = format!("-- @generated by m-codegen from doctypes/ ({}) — do not edit.\n", dialect.as_str());
    for t in &ddls {
        out.push_str(&format!("\n{};\n", t.create));
    }
    for t in &ddls {
        for s in t.foreign_keys.iter().chain(&t.indexes) {
            out.push_str(&format!("{s};\n"));
        }
    }
    out
}
