//! The dialect-neutral schema model: tables, columns, indexes and foreign keys. The desired
//! schema is built from the DocTypes ([`table_of`]); the current schema is the replay of the
//! migration chain. Both render to SQL through [`super::render`], so a table created by a
//! revision and the committed `schema.<dialect>.sql` are the same text.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ir::{DefaultValue, DocType, FieldType, StandardColumn};
use crate::names::{constraint_name, snake_case};

/// Every table, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Index>,
    /// The table's previous name (the DocType's `renamed_from`). Desired schema only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// The DocType file the table comes from, for messages. Desired schema only: revisions
    /// never store it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    #[serde(default, skip_serializing_if = "is_false")]
    pub primary_key: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub not_null: bool,
    /// A constant DDL default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Literal>,
    /// A foreign key to `<table>.name` (ON UPDATE CASCADE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Reference>,
    /// Select options: no DDL, but removing one needs a data check (M061).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// A default the application applies (`today` / `now`): no DDL, but a new NOT NULL column
    /// with one needs a backfill (M012).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_default: Option<Backfill>,
    /// The column's previous name (the field's `renamed_from`). Desired schema only: the diff
    /// reads it, revisions never store it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
}

/// How existing rows get a value when a NOT NULL column with an application default (`today` /
/// `now`) is added (M012), in the column model and in `add_column` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backfill {
    Today,
    Now,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    pub table: String,
    pub on_delete: OnDelete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnDelete {
    Restrict,
    Cascade,
}

impl OnDelete {
    pub fn sql(self) -> &'static str {
        match self {
            OnDelete::Restrict => "RESTRICT",
            OnDelete::Cascade => "CASCADE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub name: String,
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
}

/// A constant default value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x}"),
            Literal::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A column's type, spelled as PostgreSQL spells it. SQLite stores it by affinity
/// ([`ColumnType::sqlite`]), so two types with the same affinity never differ there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// `varchar(n)`; `None` is unbounded `varchar`.
    Varchar(Option<u32>),
    Text,
    Integer,
    BigInt,
    Double,
    Numeric(u32, u32),
    Boolean,
    Date,
    Timestamptz,
    Timestamp,
    Time,
    Jsonb,
    Uuid,
}

impl ColumnType {
    pub fn postgres(self) -> String {
        match self {
            ColumnType::Varchar(Some(n)) => format!("varchar({n})"),
            ColumnType::Varchar(None) => "varchar".into(),
            ColumnType::Text => "text".into(),
            ColumnType::Integer => "integer".into(),
            ColumnType::BigInt => "bigint".into(),
            ColumnType::Double => "double precision".into(),
            ColumnType::Numeric(p, s) => format!("numeric({p},{s})"),
            ColumnType::Boolean => "boolean".into(),
            ColumnType::Date => "date".into(),
            ColumnType::Timestamptz => "timestamptz".into(),
            ColumnType::Timestamp => "timestamp".into(),
            ColumnType::Time => "time".into(),
            ColumnType::Jsonb => "jsonb".into(),
            ColumnType::Uuid => "uuid".into(),
        }
    }

    /// The SQLite declared type (= its affinity). Decimals are TEXT: stored exactly.
    pub fn sqlite(self) -> &'static str {
        match self {
            ColumnType::Integer | ColumnType::BigInt | ColumnType::Boolean => "INTEGER",
            ColumnType::Double => "REAL",
            _ => "TEXT",
        }
    }

    pub fn parse(s: &str) -> Option<ColumnType> {
        let s = s.trim().to_ascii_lowercase();
        let args = |prefix: &str| -> Option<Vec<u32>> {
            let inner = s.strip_prefix(prefix)?.trim().strip_prefix('(')?.strip_suffix(')')?;
            inner.split(',').map(|p| p.trim().parse().ok()).collect()
        };
        Some(match s.as_str() {
            "varchar" | "character varying" => ColumnType::Varchar(None),
            "text" => ColumnType::Text,
            "integer" | "int" | "int4" => ColumnType::Integer,
            "bigint" | "int8" => ColumnType::BigInt,
            "double precision" | "double" | "float8" => ColumnType::Double,
            "boolean" | "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamptz" | "timestamp with time zone" => ColumnType::Timestamptz,
            "timestamp" | "timestamp without time zone" => ColumnType::Timestamp,
            "time" | "time without time zone" => ColumnType::Time,
            "jsonb" => ColumnType::Jsonb,
            "uuid" => ColumnType::Uuid,
            _ => {
                if let Some(a) = args("varchar").or_else(|| args("character varying")) {
                    match a.as_slice() {
                        [n] => ColumnType::Varchar(Some(*n)),
                        _ => return None,
                    }
                } else if let Some(a) = args("numeric") {
                    match a.as_slice() {
                        [p, s] => ColumnType::Numeric(*p, *s),
                        [p] => ColumnType::Numeric(*p, 0),
                        _ => return None,
                    }
                } else {
                    return None;
                }
            }
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.postgres())
    }
}

impl Serialize for ColumnType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.postgres())
    }
}

impl<'de> Deserialize<'de> for ColumnType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ColumnType::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown column type `{s}`")))
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_mut(&mut self, name: &str) -> Option<&mut Column> {
        self.columns.iter_mut().find(|c| c.name == name)
    }

    pub fn index(&self, name: &str) -> Option<&Index> {
        self.indexes.iter().find(|i| i.name == name)
    }
}

impl Column {
    pub fn new(name: &str, ty: ColumnType) -> Column {
        Column {
            name: name.to_string(),
            ty,
            primary_key: false,
            not_null: false,
            default: None,
            references: None,
            options: Vec::new(),
            app_default: None,
            renamed_from: None,
        }
    }

    /// The same database definition (name aside): Select options, application defaults and
    /// rename hints have no database effect.
    pub fn same_ddl(&self, other: &Column) -> bool {
        self.ty == other.ty
            && self.primary_key == other.primary_key
            && self.not_null == other.not_null
            && self.default == other.default
            && self.references == other.references
    }
}

/// The SQL type of a declared field (None for Table fields, which are child tables).
pub fn field_type(
    ty: FieldType,
    max_length: Option<u32>,
    precision: Option<u32>,
    scale: Option<u32>,
) -> Option<ColumnType> {
    use FieldType as T;
    Some(match ty {
        T::Table => return None,
        T::Data | T::Email | T::Phone | T::Url => ColumnType::Varchar(Some(max_length.unwrap_or(140))),
        T::Link => ColumnType::Varchar(Some(140)),
        T::Select => ColumnType::Varchar(None),
        // Ciphertext (or, without a key, the value as it was sent): unbounded text.
        T::Text | T::Password => ColumnType::Text,
        T::Int => ColumnType::Integer,
        T::BigInt => ColumnType::BigInt,
        T::Float => ColumnType::Double,
        T::Currency | T::Decimal => ColumnType::Numeric(precision.unwrap_or(18), scale.unwrap_or(6)),
        T::Check => ColumnType::Boolean,
        T::Date => ColumnType::Date,
        T::Datetime => ColumnType::Timestamptz,
        T::Time => ColumnType::Time,
        T::Json => ColumnType::Jsonb,
        T::Uuid => ColumnType::Uuid,
    })
}

fn standard_type(c: StandardColumn) -> ColumnType {
    use StandardColumn as S;
    match c {
        S::Id => ColumnType::Uuid,
        S::Creation | S::Modified => ColumnType::Timestamptz,
        S::Docstatus | S::Idx => ColumnType::Integer,
        S::Version => ColumnType::BigInt,
        _ => ColumnType::Varchar(Some(140)),
    }
}

/// The table of one DocType. Links and parents are named by the snake_case of their DocType, so
/// a DocType renders on its own (the derive macro sees one file).
pub fn table_of(d: &DocType) -> Table {
    let table = d.table();
    let mut columns = Vec::new();
    for c in d.standard_columns() {
        let mut col = Column::new(c.name(), standard_type(c));
        match c {
            StandardColumn::Id => col.primary_key = true,
            StandardColumn::Docstatus => {
                col.not_null = true;
                col.default = Some(Literal::Int(0));
            }
            StandardColumn::Version => {
                col.not_null = true;
                col.default = Some(Literal::Int(1));
            }
            StandardColumn::AmendedFrom => {
                col.references = Some(Reference { table: table.clone(), on_delete: OnDelete::Restrict })
            }
            StandardColumn::Parent => {
                col.not_null = true;
                col.references =
                    d.parent.as_deref().map(|p| Reference { table: snake_case(p), on_delete: OnDelete::Cascade });
            }
            _ => col.not_null = true,
        }
        columns.push(col);
    }
    for f in &d.fields {
        let Some(ty) = field_type(f.ty, f.max_length, f.precision, f.scale) else { continue };
        let mut col = Column::new(&f.name, ty);
        col.not_null = f.required;
        col.renamed_from.clone_from(&f.renamed_from);
        col.app_default = match &f.default {
            Some(DefaultValue::Today) => Some(Backfill::Today),
            Some(DefaultValue::Now) => Some(Backfill::Now),
            _ => None,
        };
        col.default = match &f.default {
            // `today` / `now` are applied by the application.
            None | Some(DefaultValue::Today | DefaultValue::Now) => None,
            Some(DefaultValue::Str(s)) => Some(Literal::Str(s.clone())),
            Some(DefaultValue::Int(i)) => Some(Literal::Int(*i)),
            Some(DefaultValue::Float(x)) => Some(Literal::Float(*x)),
            Some(DefaultValue::Bool(b)) => Some(Literal::Bool(*b)),
        };
        if f.ty == FieldType::Link {
            col.references = f.to.as_deref().map(|t| Reference { table: snake_case(t), on_delete: OnDelete::Restrict });
        }
        if f.ty == FieldType::Select {
            col.options.clone_from(&f.options);
        }
        columns.push(col);
    }

    let mut index_cols: Vec<(Vec<String>, bool)> = Vec::new();
    let mut add = |cols: Vec<String>, unique: bool| match index_cols.iter_mut().find(|(c, _)| *c == cols) {
        // A declared unique index on the columns of an automatic one makes that one unique.
        Some(existing) => existing.1 |= unique,
        None => index_cols.push((cols, unique)),
    };
    if d.child {
        add(vec!["parent".into(), "idx".into()], false);
    } else {
        add(vec!["name".into()], true);
        add(vec!["owner".into()], false);
        add(vec!["modified".into()], false);
        add(vec!["owner".into(), "modified".into()], false);
        if d.submittable {
            add(vec!["amended_from".into()], false);
        }
    }
    for f in d.fields.iter().filter(|f| f.ty != FieldType::Table) {
        if f.unique {
            add(vec![f.name.clone()], true);
        } else if f.ty == FieldType::Link || f.index {
            add(vec![f.name.clone()], false);
        }
    }
    for ix in &d.indexes {
        add(ix.fields.clone(), ix.unique);
    }
    let indexes = index_cols
        .into_iter()
        .map(|(cols, unique)| {
            let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
            Index { name: constraint_name(&table, &refs, if unique { "key" } else { "idx" }), columns: cols, unique }
        })
        .collect();
    Table {
        name: table,
        columns,
        indexes,
        renamed_from: d.renamed_from.as_deref().map(snake_case),
        source: Some(d.source.clone()),
    }
}

/// Tables the runtime itself needs, part of every application's schema.
pub fn runtime_tables() -> Vec<Table> {
    let mut prefix = Column::new("prefix", ColumnType::Varchar(Some(140)));
    prefix.primary_key = true;
    let mut current = Column::new("current", ColumnType::BigInt);
    current.not_null = true;
    let series = Table {
        name: "m_series".into(),
        columns: vec![prefix, current],
        indexes: Vec::new(),
        renamed_from: None,
        source: None,
    };
    // Password hashes, apart from the `user` table so that no query of a DocType can return one
    // (no foreign key: the runtime deletes a user's row with the user).
    let mut user = Column::new("user", ColumnType::Varchar(Some(140)));
    user.primary_key = true;
    let mut hash = Column::new("password_hash", ColumnType::Text);
    hash.not_null = true;
    // When the password last changed (Unix seconds): older tokens are refused.
    let changed = Column::new("changed", ColumnType::BigInt);
    let auth = Table {
        name: "m_auth".into(),
        columns: vec![user, hash, changed],
        indexes: Vec::new(),
        renamed_from: None,
        source: None,
    };
    vec![series, auth, job_table(), doc_event_table()]
}

/// After-commit document events (`m_doc_event`): written in the transaction of the change that
/// caused them, with the document as it was committed (JSON), and delivered by a job.
fn doc_event_table() -> Table {
    let column = |name: &str, ty: ColumnType| {
        let mut c = Column::new(name, ty);
        c.not_null = true;
        c
    };
    let mut id = column("id", ColumnType::Varchar(Some(36)));
    id.primary_key = true;
    Table {
        name: "m_doc_event".into(),
        columns: vec![
            id,
            column("doctype", ColumnType::Varchar(Some(140))),
            column("name", ColumnType::Varchar(Some(140))),
            // after_insert | on_update | on_submit | on_cancel | on_trash
            column("event", ColumnType::Varchar(Some(16))),
            column("doc", ColumnType::Text),
            column("created", ColumnType::BigInt),
        ],
        indexes: Vec::new(),
        renamed_from: None,
        source: None,
    }
}

/// The background job queue (`m_job`): one row per job, claimed by workers; times are Unix
/// microseconds.
fn job_table() -> Table {
    let column = |name: &str, ty: ColumnType, not_null: bool| {
        let mut c = Column::new(name, ty);
        c.not_null = not_null;
        c
    };
    let mut id = column("id", ColumnType::Varchar(Some(36)), true);
    id.primary_key = true;
    let columns = vec![
        id,
        column("job", ColumnType::Varchar(Some(140)), true),
        column("args", ColumnType::Text, true),
        // queued | running | done | failed
        column("state", ColumnType::Varchar(Some(16)), true),
        column("attempts", ColumnType::BigInt, true),
        column("max_attempts", ColumnType::BigInt, true),
        // Not before this time (retries wait here).
        column("run_at", ColumnType::BigInt, true),
        // While running: after this time the worker is presumed gone and the job is run again.
        column("lease_until", ColumnType::BigInt, false),
        column("enqueued_by", ColumnType::Varchar(Some(140)), false),
        column("created", ColumnType::BigInt, true),
        column("finished", ColumnType::BigInt, false),
        column("error", ColumnType::Text, false),
        // The W3C traceparent of the work that enqueued it.
        column("trace", ColumnType::Varchar(Some(64)), false),
    ];
    let claim =
        Index { name: "m_job__state_run_at_idx".into(), columns: vec!["state".into(), "run_at".into()], unique: false };
    Table { name: "m_job".into(), columns, indexes: vec![claim], renamed_from: None, source: None }
}

/// The desired schema of an application: its DocTypes' tables plus the runtime's.
pub fn schema_of(tables: impl IntoIterator<Item = Table>) -> Schema {
    let mut schema = Schema::default();
    for t in runtime_tables().into_iter().chain(tables) {
        schema.tables.insert(t.name.clone(), t);
    }
    schema
}

/// The desired schema of a set of DocTypes.
pub fn schema_of_doctypes<'a>(doctypes: impl IntoIterator<Item = &'a DocType>) -> Schema {
    schema_of(doctypes.into_iter().map(table_of))
}
