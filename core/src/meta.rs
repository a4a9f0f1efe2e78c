//! Static metadata of a DocType, as the derive macro emits it. Everything the runtime does for a
//! DocType is driven by these tables; there is no per-DocType handler code.

/// A field's type: the one vocabulary of m-schema (the TOML type names).
pub use m_schema::FieldType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    Uuid,
    Hash,
    Field(&'static str),
    Series(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    Today,
    Now,
    Str(&'static str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One declared field (standard fields are not listed: the run-time layout adds them).
#[derive(Debug, Clone, Copy)]
pub struct FieldMeta {
    pub name: &'static str,
    pub kind: FieldType,
    pub to: Option<&'static str>,
    pub required: bool,
    pub unique: bool,
    pub index: bool,
    pub default: Option<DefaultValue>,
    pub options: &'static [&'static str],
    pub max_length: Option<u32>,
    pub precision: Option<u32>,
    pub scale: Option<u32>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub regex: Option<&'static str>,
    pub read_only: bool,
    pub hidden: bool,
    pub description: Option<&'static str>,
}

/// The actions a role may perform on a DocType (`[permissions]`).
#[derive(Debug, Clone, Copy)]
pub struct RoleGrant {
    pub role: &'static str,
    pub read: bool,
    pub create: bool,
    pub write: bool,
    pub delete: bool,
    pub submit: bool,
    pub cancel: bool,
    pub if_owner: bool,
}

/// Everything the runtime knows about one DocType.
#[derive(Debug)]
pub struct DocMeta {
    pub name: &'static str,
    pub table: &'static str,
    pub naming: Naming,
    pub title_field: Option<&'static str>,
    pub submittable: bool,
    pub optimistic: bool,
    pub child: bool,
    pub parent: Option<&'static str>,
    pub description: Option<&'static str>,
    pub fields: &'static [FieldMeta],
    pub permissions: &'static [RoleGrant],
    pub user_permissions: &'static [&'static str],
    /// The table in m-codegen's schema model (JSON): the desired schema for migrations.
    pub schema: &'static str,
}
