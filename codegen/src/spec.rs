//! The raw TOML shape of a DocType file (format v1), deserialized with spans for diagnostics.
//! Nothing here is trusted yet: [`crate::validate`] turns it into the IR.
//!
//! The same types describe the format as a JSON Schema ([`crate::json_schema`]): doc comments
//! become descriptions, and spans (`Spanned<T>`) appear as their inner type.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use toml::Spanned;

use crate::ir::FieldType;

/// Top-level keys, for hints.
pub const DOCTYPE_KEYS: &[&str] = &[
    "name",
    "naming",
    "title_field",
    "submittable",
    "track_changes",
    "concurrency",
    "child",
    "description",
    "fields",
    "indexes",
    "permissions",
    "rls",
    "renamed_from",
];

/// Field keys, for hints.
pub const FIELD_KEYS: &[&str] = &[
    "type",
    "to",
    "required",
    "unique",
    "index",
    "default",
    "options",
    "max_length",
    "precision",
    "scale",
    "min",
    "max",
    "regex",
    "read_only",
    "hidden",
    "description",
    "renamed_from",
];

/// Permission keys, for hints.
pub const GRANT_KEYS: &[&str] = &["read", "create", "write", "delete", "submit", "cancel", "if_owner"];

/// An M DocType file (format v1): one document type, served as `/api/v1/<name>`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DocType")]
pub struct RawDocType {
    /// The DocType's name: words of ASCII letters and digits, starting with a capital,
    /// separated by single spaces (e.g. "Sales Order"). The table is its snake_case
    /// (`sales_order`), the API path `/api/v1/Sales Order`.
    #[schemars(with = "DocTypeName")]
    pub name: Spanned<String>,
    /// How a document's `name` is chosen: "uuid" (`name` = `id`), "hash" (ten random hex
    /// characters, the default), "field:<field>" (a required Data/Email/Phone/URL/Select field) or
    /// "series:<pattern>" (e.g. "series:INV-.YYYY.-.####").
    #[schemars(with = "Option<NamingRule>")]
    pub naming: Option<Spanned<String>>,
    /// The field (or `name`) that titles a document.
    #[schemars(with = "Option<String>")]
    pub title_field: Option<Spanned<String>>,
    /// Documents are drafts (docstatus 0) until submitted (1), then may be cancelled (2) and
    /// amended.
    #[serde(default)]
    pub submittable: bool,
    /// Record every change (create, update with a field-level diff, submit, cancel, amend,
    /// delete) in the built-in Version DocType, readable at `/{ref}/versions` (Frappe's key).
    #[serde(default)]
    pub track_changes: bool,
    /// "optimistic": a `_version` column, ETags and If-Match on updates; "none" (the default).
    #[schemars(with = "Option<Concurrency>")]
    pub concurrency: Option<Spanned<String>>,
    /// Marks a child DocType (rows of a parent's Table field). Optional: a DocType that a Table
    /// field points to is a child anyway.
    #[serde(default)]
    pub child: bool,
    /// Free text, shown in the OpenAPI document.
    pub description: Option<String>,
    /// The DocType's fields, by name (lowercase snake_case).
    #[serde(default)]
    #[schemars(schema_with = "fields_map")]
    pub fields: IndexMap<Spanned<String>, Spanned<RawField>>,
    /// Indexes beyond the automatic ones (name, owner, modified, every Link).
    #[serde(default)]
    #[schemars(with = "Vec<RawIndex>")]
    pub indexes: Vec<Spanned<RawIndex>>,
    /// What each role may do, by role name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawGrant>")]
    pub permissions: IndexMap<Spanned<String>, Spanned<RawGrant>>,
    /// Row-level security.
    pub rls: Option<RawRls>,
    /// The DocType's previous name: the next revision renames its table instead of dropping it
    /// and creating a new one.
    pub renamed_from: Option<String>,
}

/// One field of a DocType.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Field")]
pub struct RawField {
    /// The field's type (its SQL column and JSON form).
    #[serde(rename = "type")]
    #[schemars(with = "TypeName")]
    pub ty: Spanned<String>,
    /// Link: the DocType whose `name` the field holds. Table: the child DocType of its rows.
    #[schemars(with = "Option<String>")]
    pub to: Option<Spanned<String>>,
    /// NOT NULL; the API refuses a document without it.
    #[serde(default)]
    pub required: bool,
    /// A unique index on the field.
    #[serde(default)]
    pub unique: bool,
    /// An index on the field (Links are indexed anyway).
    #[serde(default)]
    pub index: bool,
    /// A constant for text, number, Check and Select fields, "today" or a "YYYY-MM-DD" date for
    /// Date, "now" for Datetime. A constant is also the column's DDL default.
    #[schemars(with = "Option<Constant>")]
    pub default: Option<Spanned<toml::Value>>,
    /// Select: the allowed values.
    #[schemars(with = "Option<Vec<String>>")]
    pub options: Option<Spanned<Vec<String>>>,
    /// Data, Email, Phone, URL: the longest value in characters (default 140).
    #[schemars(with = "Option<i64>")]
    pub max_length: Option<Spanned<i64>>,
    /// Currency, Decimal: total digits (default 18).
    #[schemars(with = "Option<i64>")]
    pub precision: Option<Spanned<i64>>,
    /// Currency, Decimal: digits after the point (default 6).
    #[schemars(with = "Option<i64>")]
    pub scale: Option<Spanned<i64>>,
    /// Numbers: the smallest value the application accepts.
    #[schemars(with = "Option<f64>")]
    pub min: Option<Spanned<f64>>,
    /// Numbers: the largest value the application accepts.
    #[schemars(with = "Option<f64>")]
    pub max: Option<Spanned<f64>>,
    /// Text fields: a pattern values must match (regex-lite syntax).
    #[schemars(with = "Option<String>")]
    pub regex: Option<Spanned<String>>,
    /// Set by hooks, never by a client (ignored in request bodies).
    #[serde(default)]
    pub read_only: bool,
    /// Metadata for clients (`/api/meta`).
    #[serde(default)]
    pub hidden: bool,
    /// Free text, shown in the OpenAPI document and on the generated struct.
    pub description: Option<String>,
    /// The field's previous name: the next revision renames the column instead of dropping it
    /// and adding a new one.
    #[schemars(with = "Option<String>")]
    pub renamed_from: Option<Spanned<String>>,
}

/// An index over one or more columns.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Index")]
pub struct RawIndex {
    /// Declared fields (not Table) or standard columns such as `modified`, in index order.
    #[schemars(with = "Vec<String>", length(min = 1))]
    pub fields: Vec<Spanned<String>>,
    /// A unique index.
    #[serde(default)]
    pub unique: bool,
}

/// The actions a role may perform.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Grant")]
pub struct RawGrant {
    /// List and read documents.
    #[serde(default)]
    pub read: bool,
    /// Create documents.
    #[serde(default)]
    pub create: bool,
    /// Update documents.
    #[serde(default)]
    pub write: bool,
    /// Delete documents.
    #[serde(default)]
    pub delete: bool,
    /// Submit documents (submittable DocTypes).
    #[serde(default)]
    pub submit: bool,
    /// Cancel submitted documents (submittable DocTypes).
    #[serde(default)]
    pub cancel: bool,
    /// Only documents the user owns.
    #[serde(default)]
    pub if_owner: bool,
}

/// Row-level security.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rls")]
pub struct RawRls {
    /// Link fields whose targets the user's User Permissions restrict rows by.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub user_permissions: Vec<Spanned<String>>,
}

/// A string schema for a key whose Rust type (a span) says nothing: `$name` stands for it in
/// `#[schemars(with = …)]`, inlined where used.
macro_rules! string_schema {
    ($(#[$doc:meta])* $name:ident, $schema:expr) => {
        $(#[$doc])*
        struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

string_schema!(
    /// A DocType name.
    DocTypeName,
    json_schema!({ "type": "string", "pattern": "^[A-Z][A-Za-z0-9]*( [A-Za-z0-9]+)*$" })
);
string_schema!(
    /// A naming rule.
    NamingRule,
    json_schema!({ "type": "string", "pattern": "^(uuid|hash|field:.+|series:.*#.*)$" })
);
string_schema!(
    /// A concurrency mode.
    Concurrency,
    json_schema!({ "type": "string", "enum": ["optimistic", "none"] })
);
string_schema!(
    /// A field type's TOML spelling.
    TypeName,
    json_schema!({ "type": "string", "enum": FieldType::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>() })
);
string_schema!(
    /// A default: a constant, or "today" / "now".
    Constant,
    json_schema!({ "type": ["string", "number", "boolean"] })
);

/// Field names: lowercase snake_case with single underscores.
fn fields_map(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<BTreeMap<String, RawField>>();
    schema.insert("propertyNames".into(), serde_json::json!({ "pattern": "^[a-z][a-z0-9]*(_[a-z0-9]+)*_?$" }));
    schema
}
