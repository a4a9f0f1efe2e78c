//! Editing DocType TOML changes the generated API, at the m-codegen level: the same inputs always
//! give byte-identical outputs, and an added field or DocType shows up in the DDL of both dialects,
//! the OpenAPI document, the ER diagram and the Rust source (and nowhere it should not).

mod common;

use std::collections::BTreeMap;

use common::{load_valid, valid_case};
use m_codegen::ddl::{self, Dialect};
use m_codegen::{Project, erd, openapi, rust_source};
use serde_json::Value;

/// Everything m-codegen generates for an application, keyed by a short name.
fn generate(sources: &[(String, String)]) -> BTreeMap<String, String> {
    let project = load_valid("edited example_app", sources);
    generate_from(&project, sources)
}

fn generate_from(project: &Project, sources: &[(String, String)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("ddl_postgres".to_string(), ddl::schema_sql(project, Dialect::Postgres));
    out.insert("ddl_sqlite".to_string(), ddl::schema_sql(project, Dialect::Sqlite));
    out.insert("openapi".to_string(), openapi::document(project, "fixture", "0.0.0"));
    out.insert("erd".to_string(), erd::mermaid(project));
    let module = rust_source::module_file(project);
    out.insert(format!("rust/{}", module.name), module.content);
    for d in &project.doctypes {
        let text = sources.iter().find(|(f, _)| *f == d.source).map(|(_, t)| t.as_str()).unwrap_or_default();
        let file = rust_source::doctype_file(d, text, project, false);
        out.insert(format!("rust/{}", file.name), file.content);
    }
    out
}

fn example_app() -> Vec<(String, String)> {
    valid_case("example_app").sources
}

/// Append `extra` to the file `file` of `sources`.
fn append(sources: &[(String, String)], file: &str, extra: &str) -> Vec<(String, String)> {
    let mut found = false;
    let out = sources
        .iter()
        .map(|(f, t)| {
            if f == file {
                found = true;
                (f.clone(), format!("{t}{extra}"))
            } else {
                (f.clone(), t.clone())
            }
        })
        .collect();
    assert!(found, "no file {file} in the fixture");
    out
}

/// The `CREATE TABLE` statement of `table` in a schema script.
fn create_table<'a>(sql: &'a str, table: &str) -> &'a str {
    let head = format!("CREATE TABLE \"{table}\" (");
    let start = sql.find(&head).unwrap_or_else(|| panic!("no CREATE TABLE for {table} in:\n{sql}"));
    let len = sql[start..].find("\n);").unwrap_or_else(|| panic!("unterminated CREATE TABLE for {table}"));
    &sql[start..start + len]
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("OpenAPI is not JSON: {e}"))
}

#[test]
fn generating_twice_is_byte_identical_and_independent_of_file_order() {
    let sources = example_app();
    let first = generate(&sources);
    let second = generate(&sources);
    assert_eq!(first, second, "two runs over the same TOML differ");

    let mut reversed = sources.clone();
    reversed.reverse();
    assert_eq!(first, generate(&reversed), "the output depends on the order the files were read in");
}

#[test]
fn adding_a_field_changes_ddl_openapi_erd_and_rust() {
    let before_src = example_app();
    let after_src =
        append(&before_src, "doctypes/invoice.toml", "\n[fields.due_date]\ntype = \"Date\"\nrequired = true\n");
    let before = generate(&before_src);
    let after = generate(&after_src);

    for (key, column) in [("ddl_postgres", "\"due_date\" date NOT NULL"), ("ddl_sqlite", "\"due_date\" TEXT NOT NULL")]
    {
        assert!(!create_table(&before[key], "invoice").contains("due_date"), "{key}: due_date already present");
        let table = create_table(&after[key], "invoice");
        assert!(table.contains(column), "{key}: CREATE TABLE invoice lacks `{column}`:\n{table}");
        // Only the invoice table changed.
        for other in ["customer", "territory", "invoice_item"] {
            assert_eq!(
                create_table(&before[key], other),
                create_table(&after[key], other),
                "{key}: table {other} changed"
            );
        }
    }

    let (b, a) = (json(&before["openapi"]), json(&after["openapi"]));
    let invoice = &a["components"]["schemas"]["Invoice"];
    assert!(b["components"]["schemas"]["Invoice"]["properties"].get("due_date").is_none());
    assert_eq!(invoice["properties"]["due_date"], serde_json::json!({"type": "string", "format": "date"}));
    let required = invoice["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(required.contains(&"due_date"), "due_date is not required in OpenAPI: {required:?}");
    assert_eq!(a["paths"], b["paths"], "adding a field must not change the paths");

    assert!(
        after["erd"].contains("        Date due_date\n") && !before["erd"].contains("due_date"),
        "ER diagram:\n{}",
        after["erd"]
    );

    let rust = &after["rust/invoice.rs"];
    assert!(rust.contains("    pub due_date: Option<::m_runtime::types::NaiveDate>,\n"), "invoice.rs:\n{rust}");
    assert!(rust.contains("[fields.due_date]"), "invoice.rs does not embed the edited TOML");
    assert!(!before["rust/invoice.rs"].contains("due_date"));

    // Everything that does not depend on Invoice is untouched (build.rs rewrites only changed files).
    let changed: Vec<&String> = after.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert_eq!(
        changed,
        ["ddl_postgres", "ddl_sqlite", "erd", "openapi", "rust/invoice.rs"],
        "unexpected set of changed outputs"
    );
}

#[test]
fn removing_a_field_drops_its_column_everywhere() {
    let before_src = example_app();
    let after_src: Vec<(String, String)> = before_src
        .iter()
        .map(|(f, t)| {
            let t = if f == "doctypes/invoice.toml" {
                t.replace("[fields.grand_total]\ntype = \"Currency\"\nread_only = true\n", "")
            } else {
                t.clone()
            };
            (f.clone(), t)
        })
        .collect();
    assert_ne!(before_src, after_src, "the fixture no longer declares grand_total as expected");
    let (before, after) = (generate(&before_src), generate(&after_src));
    for key in ["ddl_postgres", "ddl_sqlite"] {
        assert!(create_table(&before[key], "invoice").contains("\"grand_total\""));
        assert!(!create_table(&after[key], "invoice").contains("\"grand_total\""), "{key} still has grand_total");
    }
    assert!(json(&after["openapi"])["components"]["schemas"]["Invoice"]["properties"].get("grand_total").is_none());
    assert!(!after["rust/invoice.rs"].contains("pub grand_total"));
}

#[test]
fn adding_a_doctype_adds_its_table_path_schema_and_struct() {
    let before_src = example_app();
    let mut after_src =
        append(&before_src, "doctypes/invoice.toml", "\n[fields.supplier]\ntype = \"Link\"\nto = \"Supplier\"\n");
    after_src.push((
        "doctypes/supplier.toml".to_string(),
        "name = \"Supplier\"\nnaming = \"field:supplier_name\"\n\n[fields.supplier_name]\ntype = \"Data\"\nrequired = true\n".to_string(),
    ));
    let before = generate(&before_src);
    let after = generate(&after_src);

    for (key, ty) in [("ddl_postgres", "varchar(140)"), ("ddl_sqlite", "TEXT")] {
        assert!(!before[key].contains("\"supplier\""), "{key}: supplier already present");
        let table = create_table(&after[key], "supplier");
        assert!(table.contains(&format!("\"supplier_name\" {ty} NOT NULL")), "{key}:\n{table}");
        assert!(create_table(&after[key], "invoice").contains(&format!("\"supplier\" {ty}")), "{key}: no Link column");
        assert!(
            after[key]
                .contains("\"invoice__supplier_fkey\" FOREIGN KEY (\"supplier\") REFERENCES \"supplier\" (\"name\")"),
            "{key}: no foreign key to supplier:\n{}",
            after[key]
        );
        assert!(
            after[key].contains("CREATE INDEX \"invoice__supplier_idx\" ON \"invoice\" (\"supplier\""),
            "{key}: Link not indexed"
        );
    }

    let (b, a) = (json(&before["openapi"]), json(&after["openapi"]));
    for path in ["/api/v1/Supplier", "/api/v1/Supplier/{ref}"] {
        assert!(b["paths"].get(path).is_none(), "{path} already present");
        assert!(a["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    assert_eq!(a["paths"]["/api/v1/Supplier"]["post"]["operationId"], "createSupplier");
    assert!(a["components"]["schemas"]["Supplier"]["properties"]["supplier_name"].is_object());
    assert_eq!(
        a["components"]["schemas"]["Invoice"]["properties"]["supplier"]["description"],
        "The `name` of a Supplier"
    );

    assert!(after["erd"].contains("    Invoice }o--o| Supplier : supplier\n"), "ER diagram:\n{}", after["erd"]);

    let module = &after["rust/doctypes.rs"];
    assert!(module.contains("include!(concat!(env!(\"OUT_DIR\"), \"/supplier.rs\"));"), "doctypes.rs:\n{module}");
    assert!(
        module.contains("<Supplier as ::m_runtime::DocType>::meta(), Supplier::__M_HOOKS)"),
        "doctypes.rs:\n{module}"
    );
    let supplier = after.get("rust/supplier.rs").unwrap_or_else(|| panic!("no supplier.rs generated"));
    assert!(
        supplier.contains("pub struct Supplier {") && supplier.contains("    pub supplier_name: Option<String>,\n"),
        "supplier.rs:\n{supplier}"
    );
    assert!(after["rust/invoice.rs"].contains("    pub supplier: Option<String>,\n"));

    let new_outputs: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(new_outputs, ["rust/supplier.rs"]);
}

#[test]
fn removing_a_linked_doctype_is_a_located_error() {
    let sources: Vec<(String, String)> =
        example_app().into_iter().filter(|(f, _)| f != "doctypes/territory.toml").collect();
    let diags = m_codegen::load_sources(&sources)
        .err()
        .unwrap_or_else(|| panic!("removing Territory must break Customer's Link"));
    assert_eq!(diags.len(), 1, "{}", m_codegen::diagnostic::render_all(&diags));
    let d = &diags[0];
    assert_eq!((d.file.as_str(), d.line, d.column), ("doctypes/customer.toml", 14, 6), "{d}");
    assert!(d.message.contains("`Territory`, which is not a DocType"), "{d}");
}
