//! `expand=…`: Links of a document (or of its child rows) returned as the linked documents
//! instead of their names. `expand=customer` expands a Link field, `expand=items.item` a Link
//! inside the Table `items`, and `expand=customer(customer_name,email)` projects the linked
//! document. Depth one, plus one Table hop; parsed and checked here (no I/O), resolved by the
//! document service with the caller's permissions.

use std::sync::Arc;

use crate::doc::DocSchema;
use crate::list_query::ParamError;
use crate::meta::FieldType;

/// Most Links one request may expand.
pub const MAX_EXPANDS: usize = 10;

/// One Link to expand.
#[derive(Debug, Clone)]
pub struct ExpandSpec {
    /// The Table field whose rows hold the Link (None: the document's own field).
    pub table: Option<&'static str>,
    /// The Link field.
    pub field: &'static str,
    /// The linked DocType.
    pub target: Arc<DocSchema>,
    /// The linked document's columns to return (None: all of them).
    pub columns: Option<Vec<usize>>,
}

fn bad(message: String, field: Option<&str>) -> ParamError {
    ParamError { code: "bad_request", message, field: field.map(str::to_string) }
}

/// Items separated by commas outside parentheses.
fn items(text: &str) -> Result<Vec<&str>, ParamError> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(bad(format!("expand `{text}`: unbalanced or nested parentheses"), None));
        }
    }
    if depth != 0 {
        return Err(bad(format!("expand `{text}`: unbalanced parentheses"), None));
    }
    out.push(&text[start..]);
    Ok(out.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect())
}

/// The Link field `name` of `schema`: its column and target DocType.
fn link(schema: &DocSchema, name: &str, path: &str) -> Result<(&'static str, &'static str), ParamError> {
    let column = schema.column(name).map(|i| &schema.columns[i]);
    match column.and_then(|c| Some((c.name, c.field?))) {
        Some((field, meta)) if meta.kind == FieldType::Link => match meta.to {
            Some(target) => Ok((field, target)),
            None => Err(bad(format!("expand `{path}`: {name} names no DocType"), Some(path))),
        },
        _ => Err(bad(format!("expand `{path}`: {} has no Link field `{name}`", schema.name()), Some(path))),
    }
}

/// Parse `expand` against `schema`; `doctype` finds a linked DocType's schema.
pub fn parse(
    schema: &DocSchema,
    doctype: &dyn Fn(&str) -> Option<Arc<DocSchema>>,
    text: &str,
) -> Result<Vec<ExpandSpec>, ParamError> {
    let mut specs: Vec<ExpandSpec> = Vec::new();
    for item in items(text)? {
        let (path, projection) = match item.split_once('(') {
            Some((p, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(|| bad(format!("expand `{item}`: malformed"), None))?;
                (p.trim(), Some(inner))
            }
            None => (item, None),
        };
        let (table, field, target) = match path.split_once('.') {
            None => {
                let (field, target) = link(schema, path, path)?;
                (None, field, target)
            }
            Some((table, name)) => {
                let t = schema.tables.iter().find(|t| t.name == table).ok_or_else(|| {
                    bad(format!("expand `{path}`: {} has no Table field `{table}`", schema.name()), Some(path))
                })?;
                let (field, target) = link(&t.child, name, path)?;
                (Some(t.name), field, target)
            }
        };
        let target = doctype(target).ok_or_else(|| bad(format!("expand `{path}`: no DocType {target}"), Some(path)))?;
        let columns = match projection {
            None => None,
            Some(list) => {
                let mut cols = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    match target.column(name) {
                        Some(i) if !target.columns[i].kind.is_secret() => cols.push(i),
                        Some(_) => {
                            let message = format!("expand `{path}`: {name} is a Password field");
                            return Err(bad(message, Some(path)));
                        }
                        None => {
                            let message = format!("expand `{path}`: {} has no field `{name}`", target.name());
                            return Err(bad(message, Some(path)));
                        }
                    }
                }
                Some(cols)
            }
        };
        if specs.iter().any(|s| s.table == table && s.field == field) {
            return Err(bad(format!("expand `{path}` is named twice"), Some(path)));
        }
        specs.push(ExpandSpec { table, field, target, columns });
        if specs.len() > MAX_EXPANDS {
            return Err(bad(format!("expand names more than {MAX_EXPANDS} Links"), None));
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::items;

    #[test]
    fn items_split_outside_parentheses() {
        assert_eq!(items("customer(a,b), items.item ,").unwrap(), ["customer(a,b)", "items.item"]);
        assert!(items("customer(a").is_err());
        assert!(items("customer(a(b))").is_err());
        assert!(items("customer)a(").is_err());
    }
}
