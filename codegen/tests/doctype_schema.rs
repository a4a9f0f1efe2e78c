//! The JSON Schema of the DocType format in `generated/doctype.schema.json` matches the spec
//! types. Locally a stale file is rewritten (and the test says so); under `CI=true` it fails.

use std::path::Path;

use m_codegen::json_schema::{PATH, doctype_schema};

#[test]
fn doctype_schema_is_fresh() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(PATH);
    let fresh = doctype_schema();
    let committed = std::fs::read_to_string(&file).unwrap_or_default().replace("\r\n", "\n");
    if committed == fresh {
        return;
    }
    let ci = std::env::var("CI").as_deref() == Ok("true");
    assert!(!ci, "stale {PATH}: run `cargo test -p m-codegen --test doctype_schema` locally and commit it");
    std::fs::create_dir_all(file.parent().expect("generated/")).expect("create generated/");
    std::fs::write(&file, fresh).expect("rewrite the schema");
    eprintln!("rewrote stale {PATH}; commit it");
}

#[test]
fn spans_appear_as_their_inner_types_with_descriptions() {
    let schema: serde_json::Value = serde_json::from_str(&doctype_schema()).expect("the schema is JSON");
    let props = &schema["properties"];
    assert_eq!(schema["required"], serde_json::json!(["name"]));
    assert_eq!(schema["additionalProperties"], false, "unknown keys are errors");
    assert_eq!(props["name"]["type"], "string");
    assert!(props["name"]["description"].as_str().is_some_and(|d| d.contains("snake_case")), "{schema:#}");
    let field = &schema["definitions"]["Field"];
    assert_eq!(field["required"], serde_json::json!(["type"]));
    assert!(field["properties"]["type"]["enum"].as_array().is_some_and(|e| e.contains(&"Currency".into())));
    assert_eq!(field["properties"]["max_length"]["type"], serde_json::json!(["integer", "null"]));
    let text = schema.to_string();
    assert!(!text.contains("Spanned") && !text.contains("span"), "a span leaked into the schema:\n{schema:#}");
}
