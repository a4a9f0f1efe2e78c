//! m-runtime: everything an M application runs on. The application crate hands over its
//! generated DocType table ([`cli::AppInfo`]); this crate serves it.
//!
//! Layers, from the edge inward: [`cli`] and [`http`] (the only module that knows axum) ->
//! [`repo`] (document operations, hooks, validation) -> [`query`] (the one SQL builder, scope
//! always applied) -> [`db`] (connections, binds, row decoding).

pub mod auth;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod migrate;
pub mod query;
pub mod ratelimit;
pub mod repo;
pub mod retry;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod users;

pub use m_core::{Doc, DocType, Value, app, checks, doc, hooks, list_query, meta, naming, perms, types, value};
/// `#[derive(DocType)]`.
#[cfg(feature = "derive")]
pub use m_macros::DocType;
