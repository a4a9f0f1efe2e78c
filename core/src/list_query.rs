//! List parameters (the README's HTTP API section) parsed into a typed [`ListQuery`] checked against a DocType's
//! metadata. Field names become column indexes, operators an enum, values typed [`Value`]s; the
//! query builder never sees request text.

use serde_json::Value as Json;

use crate::doc::{DocSchema, FieldRef, StandardColumn};
use crate::meta::FieldType;
use crate::value::{InputError, Value};

/// Caps on list requests (configuration).
#[derive(Debug, Clone, Copy)]
pub struct ListLimits {
    pub default_page_size: u32,
    pub max_page_size: u32,
    pub max_fields: usize,
    pub max_filters: usize,
    pub max_in_values: usize,
}

impl Default for ListLimits {
    fn default() -> Self {
        ListLimits { default_page_size: 20, max_page_size: 500, max_fields: 100, max_filters: 50, max_in_values: 1000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    NotIn,
    Like,
    IsNull,
    Between,
}

impl Op {
    /// The canonical names and the Frappe spellings.
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "eq" | "=" | "==" => Op::Eq,
            "ne" | "!=" | "<>" => Op::Ne,
            "lt" | "<" => Op::Lt,
            "lte" | "<=" => Op::Lte,
            "gt" | ">" => Op::Gt,
            "gte" | ">=" => Op::Gte,
            "in" => Op::In,
            "not_in" | "not in" => Op::NotIn,
            "like" => Op::Like,
            "is_null" | "is" => Op::IsNull,
            "between" => Op::Between,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CondValue {
    One(Value),
    Many(Vec<Value>),
    Two(Value, Value),
    /// `is_null`: true = IS NULL.
    Flag(bool),
}

/// One condition: column index, operator, typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub column: usize,
    pub op: Op,
    pub value: CondValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// A parsed list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub limit: u32,
    pub offset: u32,
    pub order_by: Vec<(usize, SortDir)>,
    /// Projected columns (always including `id` and `name`); None = every column.
    pub fields: Option<Vec<usize>>,
    pub filters: Vec<Cond>,
    pub or_filters: Vec<Cond>,
    pub total: bool,
}

/// Most values bound by one list request (all `in` lists together).
pub const MAX_BOUND_VALUES: usize = 10_000;

/// A rejected parameter (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// `bad_request` or `unknown_field`.
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

fn bad(message: impl Into<String>) -> ParamError {
    ParamError { code: "bad_request", message: message.into(), field: None }
}

fn unknown_field(name: &str, doctype: &str) -> ParamError {
    ParamError {
        code: "unknown_field",
        message: format!("`{name}` is not a field of {doctype}"),
        field: Some(name.to_string()),
    }
}

/// Parse decoded query-string pairs.
pub fn parse(schema: &DocSchema, pairs: &[(String, String)], limits: &ListLimits) -> Result<ListQuery, ParamError> {
    let mut q = ListQuery {
        limit: limits.default_page_size,
        offset: 0,
        order_by: Vec::new(),
        fields: None,
        filters: Vec::new(),
        or_filters: Vec::new(),
        total: true,
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut conditions = 0usize;
    let mut values = 0usize;
    let mut order_given = false;
    for (key, value) in pairs {
        let reserved = ["limit", "offset", "order_by", "fields", "filters", "or_filters", "total"];
        if let Some(k) = reserved.iter().find(|k| **k == key) {
            if seen.contains(k) {
                return Err(bad(format!("parameter `{key}` is given more than once")));
            }
            seen.push(k);
        }
        match key.as_str() {
            "limit" => q.limit = parse_limit(value, limits)?,
            "offset" => q.offset = parse_offset(value)?,
            "order_by" => {
                q.order_by = parse_order(schema, value)?;
                order_given = true;
            }
            "fields" => q.fields = Some(parse_fields(schema, value, limits)?),
            "filters" => {
                let conds = parse_filter_json(schema, value, limits)?;
                conditions += conds.len();
                q.filters.extend(conds);
            }
            "or_filters" => {
                let conds = parse_filter_json(schema, value, limits)?;
                conditions += conds.len();
                q.or_filters = conds;
            }
            "total" => {
                q.total = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("`total` must be true or false")),
                }
            }
            _ => {
                q.filters.push(parse_shorthand(schema, key, value, limits)?);
                conditions += 1;
            }
        }
        if conditions > limits.max_filters {
            return Err(bad(format!("at most {} filter conditions are allowed", limits.max_filters)));
        }
    }
    // Bound values across all conditions stay far below SQLite's 32,766 parameters per statement.
    for c in q.filters.iter().chain(&q.or_filters) {
        values += match &c.value {
            CondValue::Many(v) => v.len(),
            _ => 2,
        };
    }
    if values > MAX_BOUND_VALUES {
        return Err(bad(format!("at most {MAX_BOUND_VALUES} filter values in all are allowed")));
    }
    if !order_given && let Some(m) = schema.std(StandardColumn::Modified) {
        q.order_by = vec![(m, SortDir::Desc)];
    }
    Ok(q)
}

fn parse_limit(value: &str, limits: &ListLimits) -> Result<u32, ParamError> {
    let n: i64 = value.trim().parse().map_err(|_| bad(format!("`limit` must be a positive integer, not `{value}`")))?;
    if n <= 0 {
        return Err(bad("`limit` must be at least 1"));
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX).min(limits.max_page_size))
}

fn parse_offset(value: &str) -> Result<u32, ParamError> {
    let n: i64 =
        value.trim().parse().map_err(|_| bad(format!("`offset` must be a non-negative integer, not `{value}`")))?;
    if !(0..=(1i64 << 31)).contains(&n) {
        return Err(bad("`offset` must be between 0 and 2147483648"));
    }
    u32::try_from(n).map_err(|_| bad("`offset` is too large"))
}

fn column(schema: &DocSchema, name: &str) -> Result<usize, ParamError> {
    match schema.lookup(name.trim()) {
        Some(FieldRef::Column(i)) if schema.columns[i].kind.is_secret() => {
            Err(bad(format!("`{name}` is a Password field: it is never listed, filtered on or sorted by")))
        }
        Some(FieldRef::Column(i)) => Ok(i),
        Some(FieldRef::Table(_)) => Err(bad(format!("`{name}` is a Table field; lists never include child rows"))),
        None => Err(unknown_field(name.trim(), schema.name())),
    }
}

fn parse_order(schema: &DocSchema, value: &str) -> Result<Vec<(usize, SortDir)>, ParamError> {
    let mut out = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(bad("empty entry in `order_by`"));
        }
        let mut parts = item.split_whitespace();
        let first = parts.next().unwrap_or_default();
        let (field, mut dir) = match first.strip_prefix('-') {
            Some(f) => (f, SortDir::Desc),
            None => (first, SortDir::Asc),
        };
        if let Some(d) = parts.next() {
            if first.starts_with('-') {
                return Err(bad(format!("`{item}`: use either `-field` or `field desc`")));
            }
            dir = match d.to_ascii_lowercase().as_str() {
                "asc" => SortDir::Asc,
                "desc" => SortDir::Desc,
                _ => return Err(bad(format!("`{item}`: the direction must be asc or desc"))),
            };
        }
        if parts.next().is_some() {
            return Err(bad(format!("`{item}` is not `field`, `-field`, `field asc` or `field desc`")));
        }
        let col = column(schema, field)?;
        if !schema.columns[col].kind.is_ordered() {
            return Err(bad(format!("cannot order by JSON field `{field}`")));
        }
        if out.iter().any(|(c, _)| *c == col) {
            return Err(bad(format!("`{field}` appears twice in `order_by`")));
        }
        out.push((col, dir));
    }
    Ok(out)
}

fn parse_fields(schema: &DocSchema, value: &str, limits: &ListLimits) -> Result<Vec<usize>, ParamError> {
    let names: Vec<String> = if value.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(value)
            .map_err(|_| bad("`fields` must be a comma list or a JSON array of field names"))?
    } else {
        value.split(',').map(|s| s.trim().to_string()).collect()
    };
    if names.len() > limits.max_fields {
        return Err(bad(format!("at most {} entries in `fields`", limits.max_fields)));
    }
    let mut cols: Vec<usize> =
        [StandardColumn::Id, StandardColumn::Name].iter().filter_map(|s| schema.std(*s)).collect();
    for n in &names {
        if n.is_empty() {
            return Err(bad("empty entry in `fields`"));
        }
        let c = column(schema, n)?;
        if !cols.contains(&c) {
            cols.push(c);
        }
    }
    Ok(cols)
}

/// Coerce text from the query string (or a JSON string) to a field's kind.
fn text_value(schema: &DocSchema, col: usize, s: &str) -> Result<Value, ParamError> {
    let c = &schema.columns[col];
    Value::parse_text(c.kind, s).map_err(|e| value_error(c.name, e))
}

fn json_value(schema: &DocSchema, col: usize, j: &Json) -> Result<Value, ParamError> {
    match j {
        Json::String(s) => text_value(schema, col, s),
        Json::Null => Err(bad(format!("null is not a value for `{}`; use is_null", schema.columns[col].name))),
        other => {
            let c = &schema.columns[col];
            Value::from_json(c.kind, other).map_err(|e| value_error(c.name, e))
        }
    }
}

fn value_error(field: &str, e: InputError) -> ParamError {
    let message = match e {
        InputError::WrongType(t) => format!("value for `{field}` must be {t}"),
        InputError::Invalid(m) => format!("value for `{field}`: {m}"),
        InputError::Nul => format!("value for `{field}` holds a NUL character (\\u0000)"),
    };
    ParamError { code: "bad_request", message, field: Some(field.to_string()) }
}

fn check_op(schema: &DocSchema, col: usize, op: Op) -> Result<(), ParamError> {
    let c = &schema.columns[col];
    match op {
        Op::Like if !c.kind.is_text() => {
            Err(bad(format!("`like` needs a text field; `{}` is {}", c.name, c.kind.as_str())))
        }
        Op::Lt | Op::Lte | Op::Gt | Op::Gte | Op::Between | Op::In | Op::NotIn if c.kind == FieldType::Json => {
            Err(bad(format!("JSON field `{}` supports only eq, ne and is_null", c.name)))
        }
        _ => Ok(()),
    }
}

fn shape(schema: &DocSchema, col: usize, op: Op, value: &Json, limits: &ListLimits) -> Result<CondValue, ParamError> {
    let list = |v: &Json| -> Result<Vec<Json>, ParamError> {
        match v {
            Json::Array(items) => Ok(items.clone()),
            Json::String(s) => Ok(s.split(',').map(|p| Json::String(p.trim().to_string())).collect()),
            _ => Err(bad(format!("`{}`: this operator takes a list", schema.columns[col].name))),
        }
    };
    Ok(match op {
        Op::In | Op::NotIn => {
            let items = list(value)?;
            if items.len() > limits.max_in_values {
                return Err(bad(format!("at most {} values in one `in`", limits.max_in_values)));
            }
            CondValue::Many(items.iter().map(|j| json_value(schema, col, j)).collect::<Result<_, _>>()?)
        }
        Op::Between => {
            let items = list(value)?;
            let [a, b] = items.as_slice() else {
                return Err(bad("`between` takes exactly two values"));
            };
            CondValue::Two(json_value(schema, col, a)?, json_value(schema, col, b)?)
        }
        Op::IsNull => CondValue::Flag(match value {
            Json::Bool(b) => *b,
            Json::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "not set" => true,
                "false" | "0" | "set" => false,
                _ => return Err(bad("`is_null` takes true or false (or Frappe's \"set\" / \"not set\")")),
            },
            _ => return Err(bad("`is_null` takes true or false")),
        }),
        Op::Like => match value {
            Json::String(s) => CondValue::One(Value::Str(s.clone())),
            _ => return Err(bad("`like` takes a string pattern")),
        },
        _ => CondValue::One(json_value(schema, col, value)?),
    })
}

fn condition(schema: &DocSchema, field: &str, op: &str, value: &Json, limits: &ListLimits) -> Result<Cond, ParamError> {
    let column = column(schema, field)?;
    let op = Op::parse(op).ok_or_else(|| bad(format!("unknown operator `{op}`")))?;
    check_op(schema, column, op)?;
    let value = shape(schema, column, op, value, limits)?;
    Ok(Cond { column, op, value })
}

/// `field[op]=value` or a bare `field=value`.
fn parse_shorthand(schema: &DocSchema, key: &str, value: &str, limits: &ListLimits) -> Result<Cond, ParamError> {
    let (field, op) = match key.split_once('[') {
        Some((f, rest)) => match rest.strip_suffix(']') {
            Some(op) => (f, op),
            None => return Err(bad(format!("malformed parameter `{key}`"))),
        },
        None => (key, "eq"),
    };
    if schema.lookup(field).is_none() {
        return Err(ParamError {
            code: "bad_request",
            message: format!("unknown parameter `{key}`"),
            field: Some(field.to_string()),
        });
    }
    condition(schema, field, op, &Json::String(value.to_string()), limits)
}

fn parse_filter_json(schema: &DocSchema, text: &str, limits: &ListLimits) -> Result<Vec<Cond>, ParamError> {
    let json: Json = serde_json::from_str(text).map_err(|_| bad("filters must be JSON: [[field, op, value], …]"))?;
    let mut out = Vec::new();
    let count = match &json {
        Json::Array(a) => a.len(),
        Json::Object(o) => o.len(),
        _ => 0,
    };
    if count > limits.max_filters {
        return Err(bad(format!("at most {} filter conditions are allowed", limits.max_filters)));
    }
    match json {
        Json::Array(items) => {
            for item in items {
                out.push(match item {
                    Json::Array(parts) => match parts.as_slice() {
                        [Json::String(f), Json::String(op), v] => condition(schema, f, op, v, limits)?,
                        // Frappe's [doctype, field, op, value].
                        [Json::String(dt), Json::String(f), Json::String(op), v] if dt == schema.name() => {
                            condition(schema, f, op, v, limits)?
                        }
                        _ => return Err(bad("each filter is [field, operator, value]")),
                    },
                    Json::Object(o) => {
                        let (Some(Json::String(f)), Some(Json::String(op))) = (o.get("field"), o.get("operator"))
                        else {
                            return Err(bad("each filter object needs \"field\", \"operator\" and \"value\""));
                        };
                        if o.keys().any(|k| !["field", "operator", "value"].contains(&k.as_str())) {
                            return Err(bad("filter objects have only \"field\", \"operator\" and \"value\""));
                        }
                        condition(schema, f, op, o.get("value").unwrap_or(&Json::Null), limits)?
                    }
                    _ => return Err(bad("each filter is [field, operator, value]")),
                });
            }
        }
        // Frappe's {"field": value} and {"field": [op, value]}.
        Json::Object(map) => {
            for (f, v) in map {
                out.push(match v {
                    Json::Array(parts) if parts.len() == 2 && parts[0].is_string() => {
                        condition(schema, &f, parts[0].as_str().unwrap_or_default(), &parts[1], limits)?
                    }
                    v => condition(schema, &f, "eq", &v, limits)?,
                });
            }
        }
        _ => return Err(bad("filters must be a JSON array")),
    }
    Ok(out)
}
