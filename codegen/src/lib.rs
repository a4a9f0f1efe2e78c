//! m-codegen: the one place where DocType TOML becomes code.
//!
//! TOML spec ([`spec`]) -> validated IR ([`ir`], [`validate`]) -> outputs: the Rust source that
//! `build.rs` writes ([`rust_source`]), the `#[derive(DocType)]` expansion ([`derive`]), SQL DDL per
//! dialect ([`ddl`]), OpenAPI ([`openapi`]) and an ER diagram ([`erd`]).
//!
//! This crate is a plain library: it never touches the network or a database. The vocabulary
//! and the schema model it shares with m-runtime ([`ir`], [`dialect`], [`names`], [`migrate`])
//! live in m-schema, re-exported here under their old paths.

pub mod app_build;
pub mod builtin;
pub mod ddl;
pub mod derive;
pub mod diagnostic;
pub mod erd;
pub mod json_schema;
pub mod openapi;
pub mod project;
pub mod rust_source;
pub mod spec;
pub mod validate;

pub use diagnostic::Diagnostic;
pub use ir::{DocType, Field, FieldType, Naming};
pub use m_schema::{dialect, ir, migrate, names};
pub use project::{Project, load_dir, load_sources};
