//! A typed field value, and its conversions: JSON input, query-string input, JSON output.
//! Parsing happens here, at the edge; the query builder and the database layer only ever see
//! [`Value`]s of the field's kind.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::ser::{Serialize, Serializer};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::meta::FieldType;

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Decimal(Decimal),
    Bool(bool),
    Date(NaiveDate),
    Datetime(DateTime<Utc>),
    Time(NaiveTime),
    Json(Json),
    Uuid(Uuid),
}

/// Why an input value was rejected: the JSON type is wrong (a 400) or the value does not parse
/// as the field's type (a 422 from a body, a 400 from the query string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    WrongType(&'static str),
    Invalid(String),
    /// Text with a NUL character (`\u0000`): PostgreSQL stores none, in text or in jsonb, so no
    /// field accepts one on either database.
    Nul,
}

/// Whether a JSON value holds a NUL character in any string or object key.
fn has_nul(json: &Json) -> bool {
    match json {
        Json::String(s) => s.contains('\0'),
        Json::Array(items) => items.iter().any(has_nul),
        Json::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Parse a JSON input value for a field of `kind`.
    pub fn from_json(kind: FieldType, json: &Json) -> Result<Value, InputError> {
        use FieldType as K;
        if json.is_null() {
            return Ok(Value::Null);
        }
        if has_nul(json) {
            return Err(InputError::Nul);
        }
        match kind {
            K::Data | K::Email | K::Phone | K::Url | K::Text | K::Select | K::Link | K::Password => match json {
                Json::String(s) => Ok(Value::Str(s.clone())),
                _ => Err(InputError::WrongType("a string")),
            },
            K::Int => match json.as_i64() {
                Some(i) if i32::try_from(i).is_ok() => Ok(Value::Int(i)),
                Some(_) => Err(InputError::Invalid("out of range for Int (32-bit)".into())),
                None if json.is_number() => Err(InputError::Invalid("not an integer".into())),
                None => Err(InputError::WrongType("an integer")),
            },
            K::BigInt => match json.as_i64() {
                Some(i) => Ok(Value::Int(i)),
                None if json.is_number() => Err(InputError::Invalid("not a 64-bit integer".into())),
                None => Err(InputError::WrongType("an integer")),
            },
            K::Float => match json.as_f64() {
                Some(f) if f.is_finite() => Ok(Value::Float(f)),
                Some(_) => Err(InputError::Invalid("not a finite number".into())),
                None => Err(InputError::WrongType("a number")),
            },
            K::Currency | K::Decimal => match json {
                Json::Number(n) => parse_decimal(&n.to_string()),
                Json::String(s) => parse_decimal(s),
                _ => Err(InputError::WrongType("a number or a numeric string")),
            },
            K::Check => match json {
                Json::Bool(b) => Ok(Value::Bool(*b)),
                Json::Number(n) if n.as_i64() == Some(0) => Ok(Value::Bool(false)),
                Json::Number(n) if n.as_i64() == Some(1) => Ok(Value::Bool(true)),
                _ => Err(InputError::WrongType("true, false, 0 or 1")),
            },
            K::Date | K::Datetime | K::Time | K::Uuid => match json {
                Json::String(s) => Value::parse_text(kind, s),
                _ => Err(InputError::WrongType("a string")),
            },
            K::Json => Ok(Value::Json(json.clone())),
            K::Table => Err(InputError::WrongType("an array of rows")),
        }
    }

    /// Parse text (a query-string value, or a date/time/uuid string) as a field of `kind`.
    pub fn parse_text(kind: FieldType, s: &str) -> Result<Value, InputError> {
        use FieldType as K;
        let invalid = |what: &str| InputError::Invalid(format!("`{s}` is not {what}"));
        if s.contains('\0') {
            return Err(InputError::Nul);
        }
        match kind {
            K::Data | K::Email | K::Phone | K::Url | K::Text | K::Select | K::Link | K::Password => {
                Ok(Value::Str(s.to_string()))
            }
            K::Int => s.trim().parse::<i32>().map(|i| Value::Int(i.into())).map_err(|_| invalid("an Int")),
            K::BigInt => s.trim().parse::<i64>().map(Value::Int).map_err(|_| invalid("a BigInt")),
            K::Float => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => Err(invalid("a number")),
            },
            K::Currency | K::Decimal => parse_decimal(s),
            K::Check => match s.trim() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(invalid("true/false/1/0")),
            },
            K::Date => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map(Value::Date)
                .map_err(|_| invalid("a date (YYYY-MM-DD)")),
            // Both databases keep microseconds; so does the value, so a response equals a re-read.
            K::Datetime => parse_datetime(s.trim())
                .map(|t| Value::Datetime(t.trunc_subsecs(6)))
                .ok_or_else(|| invalid("an RFC 3339 date-time")),
            K::Time => parse_time(s.trim())
                .map(|t| Value::Time(t.trunc_subsecs(6)))
                .ok_or_else(|| invalid("a time (HH:MM:SS)")),
            K::Uuid => Uuid::parse_str(s.trim()).map(Value::Uuid).map_err(|_| invalid("a UUID")),
            K::Json => serde_json::from_str(s).map(Value::Json).map_err(|_| invalid("JSON")),
            K::Table => Err(InputError::WrongType("an array of rows")),
        }
    }

    /// The JSON form of a value (the README's DocType reference), for output.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Str(s) => Json::String(s.clone()),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Decimal(d) => decimal_number(d),
            Value::Bool(b) => Json::Bool(*b),
            Value::Date(d) => Json::String(d.to_string()),
            Value::Datetime(t) => Json::String(format_datetime(t)),
            Value::Time(t) => Json::String(t.format("%H:%M:%S").to_string()),
            Value::Json(j) => j.clone(),
            Value::Uuid(u) => Json::String(u.to_string()),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Str(v) => s.serialize_str(v),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Uuid(u) => s.collect_str(u),
            Value::Json(j) => j.serialize(s),
            // `Display` of a date is ISO `YYYY-MM-DD`; neither this nor `format_datetime` parses a
            // format string per value (chrono's `format` does, which is slow in lists).
            Value::Date(d) => s.collect_str(d),
            Value::Datetime(t) => s.serialize_str(&format_datetime(t)),
            Value::Time(t) => s.collect_str(&t.format("%H:%M:%S")),
            other => other.to_json().serialize(s),
        }
    }
}

/// A decimal as a JSON number with its exact digits (serde_json's arbitrary precision).
fn decimal_number(d: &Decimal) -> Json {
    serde_json::Number::from_str(&d.normalize().to_string()).map_or_else(|_| Json::String(d.to_string()), Json::Number)
}

fn parse_decimal(s: &str) -> Result<Value, InputError> {
    let t = s.trim();
    let parsed = Decimal::from_str_exact(t).or_else(|_| Decimal::from_scientific(t));
    parsed.map(Value::Decimal).map_err(|_| InputError::Invalid(format!("`{s}` is not a decimal number")))
}

/// RFC 3339 with any offset (converted to UTC), or `YYYY-MM-DD[ HH:MM:SS[.f]]` taken as UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .map(|n| n.and_utc())
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    ["%H:%M:%S%.f", "%H:%M"].iter().find_map(|f| NaiveTime::parse_from_str(s, f).ok())
}

/// Output form of a date-time: RFC 3339 in UTC with `Z`, fractional seconds only when present.
pub fn format_datetime(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Storage form of a date-time on SQLite: fixed width, so text order is time order.
pub fn sqlite_datetime(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_keep_their_digits() {
        // Parsed from text: a Rust f64 literal would already have lost digits.
        let number: Json = serde_json::from_str("12345678901234.123456").unwrap();
        let v = Value::from_json(FieldType::Currency, &number).unwrap();
        assert_eq!(v.to_json().to_string(), "12345678901234.123456");
        let v = Value::from_json(FieldType::Currency, &json!("0.1")).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "0.1");
    }

    #[test]
    fn wrong_json_types_are_reported() {
        assert_eq!(Value::from_json(FieldType::Int, &json!("3")), Err(InputError::WrongType("an integer")));
        assert!(matches!(Value::from_json(FieldType::Int, &json!(3_000_000_000i64)), Err(InputError::Invalid(_))));
        assert_eq!(Value::from_json(FieldType::Check, &json!(1)), Ok(Value::Bool(true)));
    }

    #[test]
    fn datetimes_are_utc() {
        let v = Value::parse_text(FieldType::Datetime, "2026-11-26T10:30:00+01:00").unwrap();
        assert_eq!(v.to_json(), json!("2026-11-26T09:30:00Z"));
        assert_eq!(serde_json::to_value(&v).unwrap(), v.to_json());
        let v = Value::parse_text(FieldType::Datetime, "2026-11-26T10:30:00.123456789Z").unwrap();
        assert_eq!(serde_json::to_value(&v).unwrap(), json!("2026-11-26T10:30:00.123456Z"));
        assert_eq!(serde_json::to_value(&v).unwrap(), v.to_json());
    }
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_in_any_text() {
        let j = serde_json::json!("G\u{0}1");
        assert!(matches!(Value::from_json(FieldType::Data, &j), Err(InputError::Nul)));
        assert!(matches!(Value::from_json(FieldType::Json, &serde_json::json!({"a\u{0}": 1})), Err(InputError::Nul)));
        assert!(matches!(Value::parse_text(FieldType::Data, "a\0b"), Err(InputError::Nul)));
    }
}
