//! HTTP and database tests: every behaviour runs on SQLite and on PostgreSQL (`M_TEST_PG_URL`).
#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected shapes")]

mod support;

mod artifacts;
mod crud;
mod email;
mod events;
mod expand;
mod input;
mod jobs;
mod keywords;
mod lifecycle;
mod list;
mod migrate;
mod password;
mod permissions;
mod print;
mod regenerate;
mod rls;
mod runtime;
mod security;
mod startup;
mod users;
mod versions;
mod webhooks;
