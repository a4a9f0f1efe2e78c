//! The JSON Schema of the DocType TOML format (format v1), generated from the spec types
//! ([`crate::spec`]) and committed as `generated/doctype.schema.json`. Editors that read a
//! `#:schema` directive (Taplo, Even Better TOML) complete and check DocType files with it; the
//! build's own validation stays the authority (it also checks what a schema cannot: Links to
//! existing DocTypes, options of a default, …).

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::spec::RawDocType;

/// Where the schema is committed, relative to the workspace root.
pub const PATH: &str = "generated/doctype.schema.json";

/// The schema as committed: JSON Schema draft-07 (the draft editors' TOML tooling reads),
/// pretty-printed, ending in a newline.
pub fn doctype_schema() -> String {
    let mut schema = SchemaSettings::draft07().into_generator().into_root_schema_for::<RawDocType>();
    schema.insert("title".into(), "M DocType (format v1)".into());
    let mut value = schema.to_value();
    unwrap_descriptions(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Doc comments wrap at the source's line width; a description is one paragraph per line.
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "description" => {
                        *s = s.split("\n\n").map(|p| p.replace('\n', " ")).collect::<Vec<_>>().join("\n");
                    }
                    _ => unwrap_descriptions(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}
