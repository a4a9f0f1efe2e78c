//! The SQL dialects M speaks. A leaf module: m-codegen's committed schema scripts (`ddl`, which
//! re-exports it as `m_codegen::ddl::Dialect`), the migration renderer and m-runtime's database
//! layer all use this one type.

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
