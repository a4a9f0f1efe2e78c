//! The raw TOML shape of a DocType file (format v1), deserialized with spans for diagnostics.
//! Nothing here is trusted yet: [`crate::validate`] turns it into the IR.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// Top-level keys, for hints.
pub const DOCTYPE_KEYS: &[&str] = &[
    "name",
    "naming",
    "title_field",
    "submittable",
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocType {
    pub name: Spanned<String>,
    pub naming: Option<Spanned<String>>,
    pub title_field: Option<Spanned<String>>,
    #[serde(default)]
    pub submittable: bool,
    pub concurrency: Option<Spanned<String>>,
    #[serde(default)]
    pub child: bool,
    pub description: Option<String>,
    #[serde(default)]
    pub fields: IndexMap<Spanned<String>, Spanned<RawField>>,
    #[serde(default)]
    pub indexes: Vec<Spanned<RawIndex>>,
    #[serde(default)]
    pub permissions: IndexMap<Spanned<String>, Spanned<RawGrant>>,
    pub rls: Option<RawRls>,
    /// The DocType's previous name, for a table rename in migrations.
    pub renamed_from: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    #[serde(rename = "type")]
    pub ty: Spanned<String>,
    pub to: Option<Spanned<String>>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub index: bool,
    pub default: Option<Spanned<toml::Value>>,
    pub options: Option<Spanned<Vec<String>>>,
    pub max_length: Option<Spanned<i64>>,
    pub precision: Option<Spanned<i64>>,
    pub scale: Option<Spanned<i64>>,
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub regex: Option<Spanned<String>>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub hidden: bool,
    pub description: Option<String>,
    pub renamed_from: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndex {
    pub fields: Vec<Spanned<String>>,
    #[serde(default)]
    pub unique: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub write: bool,
    #[serde(default)]
    pub delete: bool,
    #[serde(default)]
    pub submit: bool,
    #[serde(default)]
    pub cancel: bool,
    #[serde(default)]
    pub if_owner: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRls {
    #[serde(default)]
    pub user_permissions: Vec<Spanned<String>>,
}
