//! m-runtime: everything an M application runs on. The application crate hands over its
//! generated DocType table ([`cli::AppInfo`]); this crate serves it.
//!
//! Layers, from the edge inward: [`cli`] and [`http`] (the only module that knows axum) ->
//! [`repo`] (document operations, hooks, validation) -> [`query`] (the one SQL builder, scope
//! always applied) -> [`db`] (connections, binds, row decoding).

pub mod app;
pub mod auth;
pub mod breaker;
pub mod checks;
pub mod cli;
pub mod config;
pub mod db;
pub mod doc;
pub mod hooks;
pub mod http;
pub mod jobs;
pub mod list_query;
pub mod meta;
pub mod metrics;
pub mod migrate;
pub mod naming;
pub mod perms;
pub mod query;
pub mod ratelimit;
pub mod repo;
pub mod retry;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod types;
pub mod users;
pub mod value;

pub use doc::{Doc, DocType};
/// `#[derive(DocType)]`.
pub use m_macros::DocType;
pub use value::Value;
