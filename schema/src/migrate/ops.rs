//! Migration operations: dialect-neutral, serialized into revision files, replayed onto a
//! [`Schema`] and rendered to SQL per dialect.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use super::model::Backfill;
use super::model::{Column, Index, Reference, Schema, Table};

/// One schema change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    CreateTable {
        table: Table,
    },
    DropTable {
        table: String,
    },
    RenameTable {
        table: String,
        to: String,
    },
    AddColumn {
        table: String,
        column: Column,
        /// Fills existing rows of a new NOT NULL column: `today` or `now` (M012).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backfill: Option<Backfill>,
    },
    DropColumn {
        table: String,
        column: String,
    },
    RenameColumn {
        table: String,
        column: String,
        to: String,
    },
    /// Type, nullability, default or Select options of a column.
    AlterColumn {
        table: String,
        from: Column,
        to: Column,
    },
    AddIndex {
        table: String,
        index: Index,
    },
    DropIndex {
        table: String,
        index: Index,
    },
    AddForeignKey {
        table: String,
        column: String,
        references: Reference,
    },
    DropForeignKey {
        table: String,
        column: String,
        references: Reference,
    },
    /// Fails the migration while rows hold a value outside `allowed` (M061).
    CheckValues {
        table: String,
        column: String,
        allowed: Vec<String>,
    },
    /// A hand-written step; it cannot be analysed (M080).
    Sql {
        postgres: String,
        sqlite: String,
    },
}

/// How risky an operation is (MIGRATION_RULES.md). Ordered: the maximum wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Class {
    Safe,
    Review,
    Dangerous,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Safe => "SAFE",
            Class::Review => "REVIEW",
            Class::Dangerous => "DANGEROUS",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation as written in a revision: the change, its class, rule code and reason. A key
/// that belongs to neither (a misspelt one in a hand-edited revision) is an error, not ignored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    #[serde(flatten)]
    pub op: Op,
    pub class: Class,
    pub code: String,
    pub reason: String,
    /// What to do instead, for REVIEW and DANGEROUS steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<String>,
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        // `#[serde(flatten)]` would pass unknown keys to neither side; split by hand so the
        // operation's own `deny_unknown_fields` sees exactly its keys.
        let mut map = toml::Table::deserialize(d)?;
        let mut take = |key: &'static str| map.remove(key);
        let class = take("class").ok_or_else(|| D::Error::missing_field("class"))?;
        let code = take("code").ok_or_else(|| D::Error::missing_field("code"))?;
        let reason = take("reason").ok_or_else(|| D::Error::missing_field("reason"))?;
        let recommendation = take("recommendation");
        let field = |name: &str, e: toml::de::Error| D::Error::custom(format!("`{name}`: {}", e.message()));
        Ok(Step {
            class: class.try_into().map_err(|e| field("class", e))?,
            code: code.try_into().map_err(|e| field("code", e))?,
            reason: reason.try_into().map_err(|e| field("reason", e))?,
            recommendation: recommendation.map(|r| r.try_into()).transpose().map_err(|e| field("recommendation", e))?,
            op: toml::Value::Table(map).try_into().map_err(|e: toml::de::Error| D::Error::custom(e.message()))?,
        })
    }
}

/// Replaying an operation that does not fit the schema (a hand-edited or inconsistent chain), or
/// a desired schema the diff refuses (a `renamed_from` naming nothing the chain has, a previous
/// name reused in the same revision, an identifier too long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError(pub String);

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReplayError {}

/// The name M gives an index on `table` over its columns.
pub fn derived_index_name(table: &str, ix: &Index) -> String {
    let cols: Vec<&str> = ix.columns.iter().map(String::as_str).collect();
    crate::names::constraint_name(table, &cols, if ix.unique { "key" } else { "idx" })
}

fn table_mut<'a>(schema: &'a mut Schema, table: &str) -> Result<&'a mut Table, ReplayError> {
    schema.tables.get_mut(table).ok_or_else(|| ReplayError(format!("table `{table}` does not exist")))
}

fn column_mut<'a>(t: &'a mut Table, column: &str) -> Result<&'a mut Column, ReplayError> {
    let name = t.name.clone();
    t.column_mut(column).ok_or_else(|| ReplayError(format!("column `{name}.{column}` does not exist")))
}

impl Op {
    /// The table this operation changes (None for raw SQL).
    pub fn table(&self) -> Option<&str> {
        match self {
            Op::CreateTable { table } => Some(&table.name),
            Op::DropTable { table }
            | Op::RenameTable { table, .. }
            | Op::AddColumn { table, .. }
            | Op::DropColumn { table, .. }
            | Op::RenameColumn { table, .. }
            | Op::AlterColumn { table, .. }
            | Op::AddIndex { table, .. }
            | Op::DropIndex { table, .. }
            | Op::AddForeignKey { table, .. }
            | Op::DropForeignKey { table, .. }
            | Op::CheckValues { table, .. } => Some(table),
            Op::Sql { .. } => None,
        }
    }

    /// The objects this operation touches, for merge checks: `table` for table-level changes —
    /// including everything SQLite does by rebuilding the table, which rewrites every column —
    /// `table.column` and `table#index` otherwise.
    pub fn objects(&self) -> Vec<String> {
        let Some(t) = self.table() else { return vec!["<sql>".to_string()] };
        match self {
            Op::CreateTable { .. } | Op::DropTable { .. } => vec![t.to_string()],
            Op::RenameTable { to, .. } => vec![t.to_string(), to.clone()],
            Op::AddColumn { column, backfill, .. } => {
                let rebuilds = backfill.is_some()
                    || (column.not_null && column.default.is_none())
                    || (column.references.is_some() && column.default.is_some());
                if rebuilds { vec![t.to_string()] } else { vec![format!("{t}.{}", column.name)] }
            }
            Op::AlterColumn { .. } | Op::AddForeignKey { .. } | Op::DropForeignKey { .. } => vec![t.to_string()],
            Op::DropColumn { column, .. } | Op::CheckValues { column, .. } => vec![format!("{t}.{column}")],
            Op::RenameColumn { column, to, .. } => vec![format!("{t}.{column}"), format!("{t}.{to}")],
            Op::AddIndex { index, .. } | Op::DropIndex { index, .. } => vec![format!("{t}#{}", index.name)],
            Op::Sql { .. } => vec!["<sql>".to_string()],
        }
    }

    /// Apply this operation to `schema`.
    pub fn replay(&self, schema: &mut Schema) -> Result<(), ReplayError> {
        match self {
            Op::CreateTable { table } => {
                if schema.tables.contains_key(&table.name) {
                    return Err(ReplayError(format!("table `{}` already exists", table.name)));
                }
                schema.tables.insert(table.name.clone(), table.clone());
            }
            Op::DropTable { table } => {
                schema.tables.remove(table).ok_or_else(|| ReplayError(format!("table `{table}` does not exist")))?;
            }
            Op::RenameTable { table, to } => {
                let mut t = schema
                    .tables
                    .remove(table)
                    .ok_or_else(|| ReplayError(format!("table `{table}` does not exist")))?;
                if schema.tables.contains_key(to) {
                    return Err(ReplayError(format!("table `{to}` already exists")));
                }
                t.name.clone_from(to);
                for ix in &mut t.indexes {
                    if ix.name == derived_index_name(table, ix) {
                        ix.name = derived_index_name(to, ix);
                    }
                }
                schema.tables.insert(to.clone(), t);
                for other in schema.tables.values_mut() {
                    for c in &mut other.columns {
                        if let Some(r) = c.references.as_mut().filter(|r| r.table == *table) {
                            r.table.clone_from(to);
                        }
                    }
                }
            }
            Op::AddColumn { table, column, .. } => {
                let t = table_mut(schema, table)?;
                if t.column(&column.name).is_some() {
                    return Err(ReplayError(format!("column `{table}.{}` already exists", column.name)));
                }
                t.columns.push(column.clone());
            }
            Op::DropColumn { table, column } => {
                let t = table_mut(schema, table)?;
                let before = t.columns.len();
                t.columns.retain(|c| c.name != *column);
                if t.columns.len() == before {
                    return Err(ReplayError(format!("column `{table}.{column}` does not exist")));
                }
                if let Some(ix) = t.indexes.iter().find(|i| i.columns.contains(column)) {
                    return Err(ReplayError(format!(
                        "column `{table}.{column}` is still used by index `{}`; drop the index first",
                        ix.name
                    )));
                }
            }
            Op::RenameColumn { table, column, to } => {
                let t = table_mut(schema, table)?;
                if t.column(to).is_some() {
                    return Err(ReplayError(format!("column `{table}.{to}` already exists")));
                }
                column_mut(t, column)?.name.clone_from(to);
                for ix in &mut t.indexes {
                    if !ix.columns.contains(column) {
                        continue;
                    }
                    let derived = ix.name == derived_index_name(table, ix);
                    for c in &mut ix.columns {
                        if c == column {
                            c.clone_from(to);
                        }
                    }
                    if derived {
                        ix.name = derived_index_name(table, ix);
                    }
                }
            }
            Op::AlterColumn { table, from, to } => {
                let t = table_mut(schema, table)?;
                let c = column_mut(t, &from.name)?;
                if *c != *from {
                    return Err(ReplayError(format!(
                        "column `{table}.{}` is not as the revision expects (it was edited elsewhere)",
                        from.name
                    )));
                }
                *c = to.clone();
            }
            Op::AddIndex { table, index } => {
                let t = table_mut(schema, table)?;
                if t.index(&index.name).is_some() {
                    return Err(ReplayError(format!("index `{}` already exists", index.name)));
                }
                if let Some(c) = index.columns.iter().find(|c| t.column(c).is_none()) {
                    return Err(ReplayError(format!("index `{}`: column `{table}.{c}` does not exist", index.name)));
                }
                t.indexes.push(index.clone());
            }
            Op::DropIndex { table, index } => {
                let t = table_mut(schema, table)?;
                let before = t.indexes.len();
                t.indexes.retain(|i| i.name != index.name);
                if t.indexes.len() == before {
                    return Err(ReplayError(format!("index `{}` does not exist", index.name)));
                }
            }
            Op::AddForeignKey { table, column, references } => {
                let c = column_mut(table_mut(schema, table)?, column)?;
                c.references = Some(references.clone());
            }
            Op::DropForeignKey { table, column, .. } => {
                let c = column_mut(table_mut(schema, table)?, column)?;
                if c.references.take().is_none() {
                    return Err(ReplayError(format!("column `{table}.{column}` has no foreign key")));
                }
            }
            Op::CheckValues { table, column, .. } => {
                column_mut(table_mut(schema, table)?, column)?;
            }
            Op::Sql { .. } => {}
        }
        Ok(())
    }
}
