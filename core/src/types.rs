//! Types that generated structs use, re-exported so applications need no direct dependency.

pub use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
pub use rust_decimal::Decimal;
pub use serde_json::Value as JsonValue;
pub use uuid::Uuid;
