//! Migrations: the schema model, the diff between the compiled DocTypes and the replay of the
//! revision chain, the classification of MIGRATION_RULES.md, SQL per dialect, revision files
//! and review cards. No database: the runtime's migrator executes what this renders.

pub mod card;
pub mod classify;
pub mod diff;
pub mod model;
pub mod ops;
pub mod renames;
pub mod render;
pub mod revision;

pub use card::review_card;
pub use diff::{Diff, diff};
pub use model::{Schema, Table};
pub use ops::{Class, Op, Step};
pub use render::{Phase, Stmt, render, script};
pub use revision::{Chain, ChainError, Revision, RevisionFile, checksum};
