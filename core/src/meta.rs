//! Static metadata of a DocType, as the derive macro emits it. Everything the runtime does for a
//! DocType is driven by these tables; there is no per-DocType handler code.

/// A field's type: the one vocabulary of m-schema (the TOML type names).
pub use m_schema::FieldType;

/// How a document's `name` is chosen (m-schema's vocabulary, with static text).
pub type Naming = m_schema::ir::Naming<&'static str>;

/// A default applied by the application (m-schema's vocabulary, with static text).
pub type DefaultValue = m_schema::ir::DefaultValue<&'static str>;

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

/// Which actions a role may perform (m-schema's vocabulary).
pub use m_schema::ir::Grant;

/// One role's entry of `[permissions]`.
#[derive(Debug, Clone, Copy)]
pub struct RoleGrant {
    pub role: &'static str,
    pub grant: Grant,
}

/// Everything the runtime knows about one DocType.
#[derive(Debug)]
pub struct DocMeta {
    pub name: &'static str,
    pub table: &'static str,
    pub naming: Naming,
    pub title_field: Option<&'static str>,
    pub submittable: bool,
    /// Changes are recorded as Versions.
    pub track_changes: bool,
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
