//! m-schema: the vocabulary m-codegen and m-runtime share, and the dialect-neutral schema model
//! both work on. A plain library with no macros, no network and no database: m-codegen builds
//! the IR from TOML and writes revisions with it; m-runtime replays revisions, renders their SQL
//! and compares the desired schema at run time.
//!
//! - [`ir`]: the validated DocType (fields, [`FieldType`], [`StandardColumn`], naming).
//! - [`dialect`]: [`Dialect`], PostgreSQL or SQLite.
//! - [`names`]: table, struct, identifier and constraint names.
//! - [`migrate`]: the schema model, operations, diff, classification, rendering, revisions.

pub mod dialect;
pub mod ir;
pub mod migrate;
pub mod names;

pub use dialect::Dialect;
pub use ir::{FieldType, StandardColumn};
