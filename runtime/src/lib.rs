//! m-runtime: everything an M application runs on. The application crate hands over its
//! generated DocType table ([`cli::AppInfo`]); this crate serves it.
//!
//! Layers, from the edge inward (ARCHITECTURE.md; checked by `tests/layers.rs`): the edge —
//! [`cli`] (every command), [`http`] and [`server`] (the only axum code); the services —
//! [`services`] (`Setup` / `Runtime`, the one way commands start), [`repo`] (documents),
//! [`users`], [`jobs`], [`migrate`], [`auth`], [`ratelimit`]; storage — [`query`] (the one SQL
//! builder, scope always applied) and [`db`]; the leaves — [`config`], [`metrics`], [`breaker`],
//! [`telemetry`]. Below them all, m-core (no I/O), re-exported here: [`meta`], [`value`],
//! [`doc`], [`hooks`], [`checks`], [`perms`], [`naming`], [`list_query`], [`app`], [`types`].

pub mod auth;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod migrate;
pub mod outbound;
pub mod print;
pub mod query;
pub mod ratelimit;
pub mod repo;
pub mod retry;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod templates;
pub mod users;
pub mod webhooks;

pub use m_core::{
    Doc, DocType, Value, app, checks, doc, email, expand, hooks, list_query, meta, naming, perms, types, value,
};
/// `#[derive(DocType)]`.
#[cfg(feature = "derive")]
pub use m_macros::DocType;
