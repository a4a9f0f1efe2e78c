//! Development schema setup: create the tables of DocTypes that have none, and add columns that
//! are missing. Revisions (the migrations issue) replace this; production never calls it.

use crate::app::App;
use crate::db::{Db, DbError, Dialect};
use crate::meta::{DocMeta, FieldKind};
use crate::query;
use crate::value::Value;

/// What [`ensure`] did, for the startup log.
#[derive(Debug, Default)]
pub struct SchemaReport {
    pub created_tables: Vec<String>,
    pub added_columns: Vec<String>,
}

async fn existing_columns(db: &Db, table: &str) -> Result<Vec<String>, DbError> {
    let (sql, binds) = match db.dialect() {
        Dialect::Postgres => (
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
            vec![(FieldKind::Data, Value::Str(table.to_string()))],
        ),
        Dialect::Sqlite => {
            ("SELECT name FROM pragma_table_info(?)", vec![(FieldKind::Data, Value::Str(table.to_string()))])
        }
    };
    let rows = db.fetch(sql, binds, &[FieldKind::Data]).await?;
    Ok(rows.into_iter().filter_map(|r| r.into_iter().next()).filter_map(|v| v.as_str().map(str::to_string)).collect())
}

/// Tables of the application (and the runtime's naming-series table) missing from the database.
pub async fn missing_tables(db: &Db, app: &App) -> Result<Vec<String>, DbError> {
    let mut missing = Vec::new();
    if existing_columns(db, "m_series").await?.is_empty() {
        missing.push("m_series".to_string());
    }
    for schema in app.schemas() {
        if existing_columns(db, schema.meta.table).await?.is_empty() {
            missing.push(schema.meta.table.to_string());
        }
    }
    Ok(missing)
}

/// Create what is missing, in one transaction.
pub async fn ensure(db: &Db, app: &App) -> Result<SchemaReport, DbError> {
    let dialect = db.dialect();
    let mut report = SchemaReport::default();
    let mut statements: Vec<String> = query::internal_tables(dialect);
    let mut post: Vec<String> = Vec::new();
    for schema in app.schemas() {
        let meta: &DocMeta = schema.meta;
        let ddl = match dialect {
            Dialect::Postgres => &meta.ddl_postgres,
            Dialect::Sqlite => &meta.ddl_sqlite,
        };
        let existing = existing_columns(db, meta.table).await?;
        if existing.is_empty() {
            report.created_tables.push(meta.table.to_string());
            statements.push(ddl.create.to_string());
            post.extend(ddl.foreign_keys.iter().map(|s| s.to_string()));
        } else {
            for (col, ty) in ddl.columns {
                if !existing.iter().any(|c| c == col) {
                    report.added_columns.push(format!("{}.{col}", meta.table));
                    statements.push(format!("ALTER TABLE \"{}\" ADD COLUMN \"{col}\" {ty}", meta.table));
                }
            }
        }
        post.extend(ddl.indexes.iter().map(|s| s.to_string()));
    }
    statements.extend(post);
    db.execute_script(&statements).await?;
    Ok(report)
}
