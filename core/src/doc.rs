//! Documents at run time: the per-DocType column layout ([`DocSchema`]), a document's values
//! ([`Doc`]), and the bridge to the typed structs the derive macro generates ([`DocType`],
//! [`FieldValue`]).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::hooks::error::HookError;
use crate::meta::{DocMeta, FieldMeta, FieldType};
use crate::value::Value;

/// Implemented by `#[derive(DocType)]` for each generated (or hand-written) DocType struct.
pub trait DocType: Sized + Send {
    /// The static metadata of this DocType.
    fn meta() -> &'static DocMeta;
    /// Build the typed struct from a document (used around hooks).
    fn from_doc(doc: &Doc) -> Result<Self, HookError>;
    /// Write the declared fields back into the document (standard fields are server-owned).
    fn write_doc(self, doc: &mut Doc);
}

/// A standard column (the README's DocType reference): the one vocabulary of m-schema.
pub use m_schema::StandardColumn;

/// One column of a DocType's table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: FieldType,
    /// The declared field, or None for a standard column.
    pub field: Option<&'static FieldMeta>,
    pub standard: Option<StandardColumn>,
}

/// A Table field: its child DocType's schema.
#[derive(Debug)]
pub struct TableField {
    pub name: &'static str,
    pub field: &'static FieldMeta,
    pub child: Arc<DocSchema>,
}

/// Where a field name points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRef {
    Column(usize),
    Table(usize),
}

/// The run-time layout of one DocType, computed once at startup from its [`DocMeta`].
#[derive(Debug)]
pub struct DocSchema {
    pub meta: &'static DocMeta,
    pub columns: Vec<Column>,
    pub tables: Vec<TableField>,
    /// Every column's index and kind, in order (a full select's projection and row decoding).
    pub all_columns: Vec<usize>,
    pub all_kinds: Vec<FieldType>,
    /// The Password columns (sealed at rest, never serialized), usually none.
    pub secrets: Vec<usize>,
    by_name: HashMap<&'static str, FieldRef>,
}

impl DocSchema {
    /// Lay out a DocType; `child` resolves a Table field's target to its (already built) schema.
    pub fn new(meta: &'static DocMeta, child: &dyn Fn(&str) -> Option<Arc<DocSchema>>) -> Result<DocSchema, String> {
        let mut std_cols = vec![StandardColumn::Id];
        if meta.child {
            std_cols.extend([StandardColumn::Idx, StandardColumn::Parent, StandardColumn::Parentfield]);
        } else {
            std_cols.extend([
                StandardColumn::Name,
                StandardColumn::Owner,
                StandardColumn::ModifiedBy,
                StandardColumn::Creation,
                StandardColumn::Modified,
            ]);
            if meta.submittable {
                std_cols.extend([StandardColumn::Docstatus, StandardColumn::AmendedFrom]);
            }
            if meta.optimistic {
                std_cols.push(StandardColumn::Version);
            }
        }
        let mut columns: Vec<Column> = std_cols
            .into_iter()
            .map(|s| Column { name: s.name(), kind: s.ty(), field: None, standard: Some(s) })
            .collect();
        let mut tables = Vec::new();
        for f in meta.fields {
            if f.kind == FieldType::Table {
                let target = f.to.unwrap_or_default();
                let schema = child(target)
                    .ok_or_else(|| format!("{}.{}: child DocType `{target}` is not registered", meta.name, f.name))?;
                tables.push(TableField { name: f.name, field: f, child: schema });
            } else {
                columns.push(Column { name: f.name, kind: f.kind, field: Some(f), standard: None });
            }
        }
        let mut by_name = HashMap::new();
        for (i, c) in columns.iter().enumerate() {
            by_name.insert(c.name, FieldRef::Column(i));
        }
        for (i, t) in tables.iter().enumerate() {
            by_name.insert(t.name, FieldRef::Table(i));
        }
        let all_columns = (0..columns.len()).collect();
        let all_kinds = columns.iter().map(|c| c.kind).collect();
        let secrets = (0..columns.len()).filter(|&i| columns[i].kind.is_secret()).collect();
        Ok(DocSchema { meta, columns, tables, all_columns, all_kinds, secrets, by_name })
    }

    pub fn name(&self) -> &'static str {
        self.meta.name
    }

    pub fn lookup(&self, field: &str) -> Option<FieldRef> {
        self.by_name.get(field).copied()
    }

    /// Index of a column by name.
    pub fn column(&self, field: &str) -> Option<usize> {
        match self.lookup(field) {
            Some(FieldRef::Column(i)) => Some(i),
            _ => None,
        }
    }

    /// Index of a standard column.
    pub fn std(&self, s: StandardColumn) -> Option<usize> {
        self.columns.iter().position(|c| c.standard == Some(s))
    }
}

/// A document: one value per column, one row list per Table field.
#[derive(Debug, Clone)]
pub struct Doc {
    pub schema: Arc<DocSchema>,
    pub values: Vec<Value>,
    pub tables: Vec<Vec<Doc>>,
}

static NULL: Value = Value::Null;

impl Doc {
    /// A document with every value null and no child rows.
    pub fn empty(schema: Arc<DocSchema>) -> Doc {
        let values = vec![Value::Null; schema.columns.len()];
        let tables = vec![Vec::new(); schema.tables.len()];
        Doc { schema, values, tables }
    }

    /// The value of a column (null for an unknown name).
    pub fn get(&self, field: &str) -> &Value {
        self.schema.column(field).map_or(&NULL, |i| &self.values[i])
    }

    pub fn get_std(&self, s: StandardColumn) -> &Value {
        self.schema.std(s).map_or(&NULL, |i| &self.values[i])
    }

    /// Set a column; an unknown name is ignored (the derive only writes declared fields).
    pub fn set(&mut self, field: &str, value: Value) {
        if let Some(i) = self.schema.column(field) {
            self.values[i] = value;
        }
    }

    pub fn set_std(&mut self, s: StandardColumn, value: Value) {
        if let Some(i) = self.schema.std(s) {
            self.values[i] = value;
        }
    }

    /// The rows of a Table field (empty for an unknown name).
    pub fn table(&self, field: &str) -> &[Doc] {
        match self.schema.lookup(field) {
            Some(FieldRef::Table(i)) => &self.tables[i],
            _ => &[],
        }
    }

    /// The rows of a Table field with the child schema, for writing back.
    pub fn table_mut(&mut self, field: &str) -> Option<(Arc<DocSchema>, &mut Vec<Doc>)> {
        match self.schema.lookup(field) {
            Some(FieldRef::Table(i)) => Some((self.schema.tables[i].child.clone(), &mut self.tables[i])),
            _ => None,
        }
    }

    /// The document's `name` (children: empty).
    pub fn name(&self) -> &str {
        self.get_std(StandardColumn::Name).as_str().unwrap_or_default()
    }

    pub fn id(&self) -> Option<Uuid> {
        match self.get_std(StandardColumn::Id) {
            Value::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    /// Serialize with every column, or only `projection` (column indexes).
    /// A field's text, empty when it is absent or not text.
    pub fn text(&self, field: &str) -> &str {
        self.get(field).as_str().unwrap_or_default()
    }

    pub fn json<'a>(&'a self, projection: Option<&'a [usize]>) -> DocJson<'a> {
        DocJson { doc: self, projection }
    }
}

/// Serializes a document as its JSON object (in the forms of the README's DocType reference).
/// Password fields are never written: their values are for the server.
pub struct DocJson<'a> {
    doc: &'a Doc,
    projection: Option<&'a [usize]>,
}

impl Serialize for DocJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let schema = &self.doc.schema;
        match self.projection {
            Some(cols) => {
                let mut map = s.serialize_map(None)?;
                for &i in cols.iter().filter(|&&i| !schema.columns[i].kind.is_secret()) {
                    map.serialize_entry(schema.columns[i].name, &self.doc.values[i])?;
                }
                map.end()
            }
            None => {
                let mut map = s.serialize_map(None)?;
                for (c, v) in schema.columns.iter().zip(&self.doc.values).filter(|(c, _)| !c.kind.is_secret()) {
                    map.serialize_entry(c.name, v)?;
                }
                for (t, rows) in schema.tables.iter().zip(&self.doc.tables) {
                    map.serialize_entry(t.name, &Rows(rows))?;
                }
                map.end()
            }
        }
    }
}

struct Rows<'a>(&'a [Doc]);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for row in self.0 {
            seq.serialize_element(&row.json(None))?;
        }
        seq.end()
    }
}

/// A Rust type a generated struct field may have, converted to and from [`Value`].
pub trait FieldValue: Sized {
    fn from_value(value: &Value, field: &str) -> Result<Self, HookError>;
    fn into_value(self) -> Value;
}

fn mismatch(field: &str, value: &Value) -> HookError {
    HookError::Internal(format!("field `{field}` holds {value:?}, which does not fit its Rust type"))
}

macro_rules! option_field {
    ($t:ty, $variant:ident, $from:expr, $into:expr) => {
        impl FieldValue for Option<$t> {
            fn from_value(value: &Value, field: &str) -> Result<Self, HookError> {
                match value {
                    Value::Null => Ok(None),
                    Value::$variant(v) => {
                        let f: fn(&_) -> Option<$t> = $from;
                        f(v).map(Some).ok_or_else(|| mismatch(field, value))
                    }
                    other => Err(mismatch(field, other)),
                }
            }
            fn into_value(self) -> Value {
                let f: fn($t) -> Value = $into;
                self.map_or(Value::Null, f)
            }
        }
    };
}

option_field!(String, Str, |s: &String| Some(s.clone()), Value::Str);
option_field!(i32, Int, |i: &i64| i32::try_from(*i).ok(), |i| Value::Int(i.into()));
option_field!(i64, Int, |i: &i64| Some(*i), Value::Int);
option_field!(f64, Float, |f: &f64| Some(*f), Value::Float);
option_field!(Decimal, Decimal, |d: &Decimal| Some(*d), Value::Decimal);
option_field!(NaiveDate, Date, |d: &NaiveDate| Some(*d), Value::Date);
option_field!(DateTime<Utc>, Datetime, |d: &DateTime<Utc>| Some(*d), Value::Datetime);
option_field!(NaiveTime, Time, |t: &NaiveTime| Some(*t), Value::Time);
option_field!(serde_json::Value, Json, |j: &serde_json::Value| Some(j.clone()), Value::Json);
option_field!(Uuid, Uuid, |u: &Uuid| Some(*u), Value::Uuid);
option_field!(crate::types::Password, Str, |s: &String| Some(crate::types::Password::new(s.clone())), |p| {
    Value::Str(p.into_inner())
});

impl FieldValue for bool {
    fn from_value(value: &Value, field: &str) -> Result<Self, HookError> {
        match value {
            Value::Null => Ok(false),
            Value::Bool(b) => Ok(*b),
            other => Err(mismatch(field, other)),
        }
    }
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}

/// Typed child rows from a Table field's documents.
pub fn rows_from_docs<T: DocType>(rows: &[Doc]) -> Result<Vec<T>, HookError> {
    rows.iter().map(T::from_doc).collect()
}

/// Write typed child rows back, by position: existing rows keep their `id`, extra rows are new,
/// rows beyond the typed list are removed.
pub fn rows_into_docs<T: DocType>(rows: Vec<T>, target: Option<(Arc<DocSchema>, &mut Vec<Doc>)>) {
    let Some((schema, docs)) = target else { return };
    docs.truncate(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        if i == docs.len() {
            docs.push(Doc::empty(schema.clone()));
        }
        row.write_doc(&mut docs[i]);
    }
}
