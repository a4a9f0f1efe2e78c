//! m-core: everything about DocTypes and documents that needs no I/O. Generated code compiles
//! against this crate (through m-runtime's re-exports); m-runtime's storage, services and edge
//! build on it.
//!
//! From the bottom: [`meta`] (the static metadata the derive emits), [`value`] (typed values and
//! their JSON / text forms), [`hooks`] (hook interfaces and the [`hooks::HookHost`] a hook reaches
//! the runtime through), [`doc`] (a DocType's run-time layout and documents, the typed-struct
//! bridge), [`checks`] (value rules), [`perms`] (principals, actions, row scope), [`naming`],
//! [`list_query`] (list parameters parsed against metadata), [`app`] (the registry of DocTypes).

pub mod app;
pub mod checks;
pub mod doc;
pub mod email;
pub mod expand;
pub mod hooks;
pub mod list_query;
pub mod meta;
pub mod naming;
pub mod perms;
pub mod types;
pub mod value;

pub use doc::{Doc, DocType};
pub use value::Value;
