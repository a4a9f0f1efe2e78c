//! The validated intermediate representation of DocTypes. Everything downstream (Rust, DDL,
//! OpenAPI, runtime metadata) is produced from these types, never from raw TOML.

use crate::names;

/// A field's type (the README's DocType reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Data,
    Email,
    Phone,
    Url,
    Text,
    Int,
    BigInt,
    Float,
    Currency,
    Decimal,
    Check,
    Date,
    Datetime,
    Time,
    Select,
    Link,
    Table,
    Json,
    Uuid,
    /// A secret the server uses but never returns (a webhook's or an integration's key): accepted
    /// on write, never in a response, a list, a filter or the log; encrypted at rest.
    Password,
}

impl FieldType {
    /// Every type with its TOML spelling.
    pub const ALL: &'static [(&'static str, FieldType)] = &[
        ("Data", FieldType::Data),
        ("Email", FieldType::Email),
        ("Phone", FieldType::Phone),
        ("URL", FieldType::Url),
        ("Text", FieldType::Text),
        ("Int", FieldType::Int),
        ("BigInt", FieldType::BigInt),
        ("Float", FieldType::Float),
        ("Currency", FieldType::Currency),
        ("Decimal", FieldType::Decimal),
        ("Check", FieldType::Check),
        ("Date", FieldType::Date),
        ("Datetime", FieldType::Datetime),
        ("Time", FieldType::Time),
        ("Select", FieldType::Select),
        ("Link", FieldType::Link),
        ("Table", FieldType::Table),
        ("JSON", FieldType::Json),
        ("UUID", FieldType::Uuid),
        ("Password", FieldType::Password),
    ];

    pub fn parse(s: &str) -> Option<FieldType> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, t)| *t == self).map_or("?", |(n, _)| n)
    }

    /// The variant's identifier (what the derive emits as `meta::FieldType::<variant>`).
    pub fn variant(self) -> &'static str {
        match self {
            FieldType::Data => "Data",
            FieldType::Email => "Email",
            FieldType::Phone => "Phone",
            FieldType::Url => "Url",
            FieldType::Text => "Text",
            FieldType::Int => "Int",
            FieldType::BigInt => "BigInt",
            FieldType::Float => "Float",
            FieldType::Currency => "Currency",
            FieldType::Decimal => "Decimal",
            FieldType::Check => "Check",
            FieldType::Date => "Date",
            FieldType::Datetime => "Datetime",
            FieldType::Time => "Time",
            FieldType::Select => "Select",
            FieldType::Link => "Link",
            FieldType::Table => "Table",
            FieldType::Json => "Json",
            FieldType::Uuid => "Uuid",
            FieldType::Password => "Password",
        }
    }

    /// Types stored as a bounded string (`max_length` applies).
    pub fn has_max_length(self) -> bool {
        matches!(self, FieldType::Data | FieldType::Email | FieldType::Phone | FieldType::Url)
    }

    /// Types whose value is text (regex applies).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::Data
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
                | FieldType::Text
                | FieldType::Select
                | FieldType::Link
        )
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Int | FieldType::BigInt | FieldType::Float | FieldType::Currency | FieldType::Decimal)
    }

    pub fn is_decimal(self) -> bool {
        matches!(self, FieldType::Currency | FieldType::Decimal)
    }

    /// Can be compared with `<`/`>` and sorted meaningfully.
    pub fn is_ordered(self) -> bool {
        !matches!(self, FieldType::Json | FieldType::Table | FieldType::Password)
    }

    /// Never returned, listed, filtered on or sorted by (its value is for the server).
    pub fn is_secret(self) -> bool {
        self == FieldType::Password
    }
}

/// How a document's `name` is chosen. The text is owned in the IR and static in the metadata the
/// derive emits (`m_runtime::meta::Naming` is `Naming<&'static str>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming<S = String> {
    /// `name` = `id`.
    Uuid,
    /// A random 10-character hexadecimal string (Frappe's default).
    Hash,
    /// The value of a field.
    Field(S),
    /// A pattern like `INV-.YYYY.-.####`, numbered by a concurrency-safe counter.
    Series(S),
}

impl Naming {
    pub fn to_spec(&self) -> String {
        match self {
            Naming::Uuid => "uuid".into(),
            Naming::Hash => "hash".into(),
            Naming::Field(f) => format!("field:{f}"),
            Naming::Series(p) => format!("series:{p}"),
        }
    }
}

/// A default applied by the application when the client leaves a field out (owned text in the
/// IR, static in the metadata: `m_runtime::meta::DefaultValue` is `DefaultValue<&'static str>`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue<S = String> {
    Today,
    Now,
    Str(S),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One declared field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    /// Target DocType of a Link or Table.
    pub to: Option<String>,
    pub required: bool,
    pub unique: bool,
    pub index: bool,
    pub default: Option<DefaultValue>,
    pub options: Vec<String>,
    pub max_length: Option<u32>,
    pub precision: Option<u32>,
    pub scale: Option<u32>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub regex: Option<String>,
    pub read_only: bool,
    pub hidden: bool,
    pub description: Option<String>,
    pub renamed_from: Option<String>,
    /// Byte span of `to` in the source file, for cross-DocType diagnostics.
    pub to_span: Option<std::ops::Range<usize>>,
}

/// Which actions a role may perform on a DocType.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grant {
    pub read: bool,
    pub create: bool,
    pub write: bool,
    pub delete: bool,
    pub submit: bool,
    pub cancel: bool,
    pub if_owner: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub fields: Vec<String>,
    pub unique: bool,
}

/// One validated DocType.
#[derive(Debug, Clone, PartialEq)]
pub struct DocType {
    pub name: String,
    /// The file it came from, relative to the application root.
    pub source: String,
    pub naming: Naming,
    pub title_field: Option<String>,
    pub submittable: bool,
    /// Changes are recorded in the Version DocType.
    pub track_changes: bool,
    pub optimistic: bool,
    /// A child DocType: rows of a parent's Table field.
    pub child: bool,
    /// For a child: the DocType whose Table field holds it.
    pub parent: Option<String>,
    pub description: Option<String>,
    pub fields: Vec<Field>,
    pub indexes: Vec<Index>,
    pub permissions: Vec<(String, Grant)>,
    pub user_permissions: Vec<String>,
    /// Byte span of `name` in the source file, for cross-DocType diagnostics.
    pub name_span: std::ops::Range<usize>,
    /// Whether the file sets `naming` (a child may not).
    pub naming_declared: bool,
    /// The DocType's previous name: migrations rename its table instead of dropping it.
    pub renamed_from: Option<String>,
}

impl DocType {
    pub fn table(&self) -> String {
        names::snake_case(&self.name)
    }

    pub fn struct_name(&self) -> String {
        names::struct_name(&self.name)
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether `name` is one of this DocType's standard columns.
    pub fn has_standard_column(&self, name: &str) -> bool {
        self.standard_columns().iter().any(|c| c.name() == name)
    }

    /// The standard columns of this DocType, in table order, before the declared fields.
    pub fn standard_columns(&self) -> Vec<StandardColumn> {
        let mut cols = vec![StandardColumn::Id];
        if self.child {
            cols.extend([StandardColumn::Idx, StandardColumn::Parent, StandardColumn::Parentfield]);
            return cols;
        }
        cols.extend([
            StandardColumn::Name,
            StandardColumn::Owner,
            StandardColumn::ModifiedBy,
            StandardColumn::Creation,
            StandardColumn::Modified,
        ]);
        if self.submittable {
            cols.extend([StandardColumn::Docstatus, StandardColumn::AmendedFrom]);
        }
        if self.optimistic {
            cols.push(StandardColumn::Version);
        }
        cols
    }
}

/// Columns the server sets on every row; clients never write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardColumn {
    Id,
    Name,
    Owner,
    ModifiedBy,
    Creation,
    Modified,
    Docstatus,
    AmendedFrom,
    Version,
    Idx,
    Parent,
    Parentfield,
}

impl StandardColumn {
    /// Every standard column name; a declared field may not use one.
    pub const RESERVED: &'static [&'static str] = &[
        "id",
        "name",
        "owner",
        "modified_by",
        "creation",
        "modified",
        "docstatus",
        "amended_from",
        "_version",
        "idx",
        "parent",
        "parentfield",
        "parenttype",
    ];

    pub fn name(self) -> &'static str {
        match self {
            StandardColumn::Id => "id",
            StandardColumn::Name => "name",
            StandardColumn::Owner => "owner",
            StandardColumn::ModifiedBy => "modified_by",
            StandardColumn::Creation => "creation",
            StandardColumn::Modified => "modified",
            StandardColumn::Docstatus => "docstatus",
            StandardColumn::AmendedFrom => "amended_from",
            StandardColumn::Version => "_version",
            StandardColumn::Idx => "idx",
            StandardColumn::Parent => "parent",
            StandardColumn::Parentfield => "parentfield",
        }
    }

    /// The type used to store and serialize this column.
    pub fn ty(self) -> FieldType {
        match self {
            StandardColumn::Id => FieldType::Uuid,
            StandardColumn::Creation | StandardColumn::Modified => FieldType::Datetime,
            StandardColumn::Docstatus | StandardColumn::Idx => FieldType::Int,
            StandardColumn::Version => FieldType::BigInt,
            StandardColumn::AmendedFrom => FieldType::Link,
            _ => FieldType::Data,
        }
    }
}
