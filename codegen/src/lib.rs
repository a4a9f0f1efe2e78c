//! m-codegen: the one place where DocType TOML becomes code.
//!
//! TOML spec ([`spec`]) -> validated IR ([`ir`], [`validate`]) -> outputs: the Rust source that
//! `build.rs` writes ([`rust_source`]), the `#[derive(DocType)]` expansion ([`derive`]), SQL DDL per
//! dialect ([`ddl`]), OpenAPI ([`openapi`]) and an ER diagram ([`erd`]).
//!
//! This crate is a plain library: it never touches the network or a database.

pub mod app_build;
pub mod builtin;
pub mod ddl;
pub mod derive;
pub mod diagnostic;
pub mod dialect;
pub mod erd;
pub mod ir;
pub mod json_schema;
pub mod migrate;
pub mod names;
pub mod openapi;
pub mod project;
pub mod rust_source;
pub mod spec;
pub mod validate;

pub use diagnostic::Diagnostic;
pub use ir::{DocType, Field, FieldType, Naming};
pub use project::{Project, load_dir, load_sources};
