//! `#[derive(DocType)]` driven directly through `m_codegen::derive::expand` (m-macros is a shim
//! over it): a valid struct expands to the runtime's `DocType` implementation, and mistakes become
//! `compile_error!` with a useful message (snapshotted as `derive__error__<case>`).

mod common;

use proc_macro2::{TokenStream, TokenTree};

fn expand(src: &str) -> TokenStream {
    let input =
        syn::parse_str::<syn::DeriveInput>(src).unwrap_or_else(|e| panic!("test input does not parse: {e}\n{src}"));
    m_codegen::derive::expand(input)
}

/// The messages of every `compile_error! { "…" }` in `tokens`.
fn compile_errors(tokens: TokenStream) -> Vec<String> {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::new();
    for (i, tt) in tts.iter().enumerate() {
        match tt {
            TokenTree::Ident(id) if id == "compile_error" => {
                let is_bang = matches!(tts.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!');
                if let (true, Some(TokenTree::Group(g))) = (is_bang, tts.get(i + 2)) {
                    let lit: syn::LitStr = syn::parse2(g.stream())
                        .unwrap_or_else(|e| panic!("compile_error! without a string literal: {e}"));
                    out.push(lit.value());
                }
            }
            TokenTree::Group(g) => out.extend(compile_errors(g.stream())),
            _ => {}
        }
    }
    out
}

/// Expand `src`, require at least one `compile_error!`, and snapshot the messages.
fn assert_error_snapshot(case: &str, src: &str) -> String {
    let tokens = expand(src);
    let text = tokens.to_string();
    let messages = compile_errors(tokens);
    assert!(!messages.is_empty(), "derive case `{case}` expanded without compile_error:\n{text}");
    assert!(
        !squash(&text).contains("impl::m_runtime::DocTypefor"),
        "derive case `{case}` emitted an impl next to its error"
    );
    let rendered = messages.join("\n---\n");
    common::settings(&format!("m_codegen::derive::expand, error case `{case}` (codegen/tests/derive_expand.rs)"))
        .bind(|| insta::assert_snapshot!(format!("derive__error__{case}"), rendered));
    rendered
}

/// Token text without whitespace, so assertions do not depend on proc-macro2's spacing.
fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn assert_contains(haystack: &str, needle: &str) {
    assert!(squash(haystack).contains(&squash(needle)), "expansion lacks `{needle}`:\n{haystack}");
}

const NOTE: &str = r####"
#[derive(Debug, Default, DocType)]
#[doctype(source = "doctypes/note.toml", toml = r#"
name = "Note"
naming = "field:code"
title_field = "title"

[fields.code]
type = "Data"
required = true
max_length = 20

[fields.title]
type = "Data"

[fields.pinned]
type = "Check"
default = true

[fields.lines]
type = "Table"
to = "Note Line"
"#)]
pub struct Note {
    pub id: Option<Uuid>,
    pub name: Option<String>,
    pub modified: Option<DateTime<Utc>>,
    pub code: Option<String>,
    pub title: Option<String>,
    pub pinned: bool,
    pub lines: Vec<NoteLine>,
}
"####;

#[test]
fn valid_struct_expands_to_the_doctype_impl() {
    let out = expand(NOTE).to_string();
    assert!(compile_errors(expand(NOTE)).is_empty(), "unexpected compile_error:\n{out}");
    assert_contains(&out, "impl ::m_runtime::DocType for Note");
    assert_contains(&out, "fn meta() -> &'static ::m_runtime::meta::DocMeta");
    assert_contains(&out, r#"name: "Note", table: "note", naming: ::m_runtime::meta::Naming::Field("code")"#);
    assert_contains(&out, r#"title_field: ::core::option::Option::Some("title")"#);
    assert_contains(&out, "child: false");
    assert_contains(&out, r#"kind: ::m_runtime::meta::FieldType::Check"#);
    assert_contains(&out, "default: ::core::option::Option::Some(::m_runtime::meta::DefaultValue::Bool(true))");
    assert_contains(&out, "max_length: ::core::option::Option::Some(20u32)");
    // Declared fields are read and written; standard fields are only read; Tables go through rows.
    assert_contains(&out, r#"code: ::m_runtime::doc::FieldValue::from_value(doc.get("code"), "code")?"#);
    assert_contains(&out, r#"doc.set("code", ::m_runtime::doc::FieldValue::into_value(self.code));"#);
    assert_contains(&out, r#"modified: ::m_runtime::doc::FieldValue::from_value(doc.get("modified"), "modified")?"#);
    assert!(
        !squash(&out).contains(&squash(r#"doc.set("modified""#)),
        "standard fields must not be written back:\n{out}"
    );
    assert_contains(&out, r#"lines: ::m_runtime::doc::rows_from_docs(doc.table("lines"))?"#);
    assert_contains(&out, r#"::m_runtime::doc::rows_into_docs(self.lines, doc.table_mut("lines"));"#);
    // The table model is the one m-codegen builds for this DocType.
    let d = m_codegen::validate::parse_doctype(
        "doctypes/note.toml",
        NOTE.split("r#\"").nth(1).and_then(|s| s.split("\"#").next()).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{}", m_codegen::diagnostic::render_all(&e)));
    let table = serde_json::to_string(&m_codegen::migrate::model::table_of(&d)).unwrap();
    assert!(out.contains(&proc_macro2::Literal::string(&table).to_string()), "expansion lacks the table model");
    assert_contains(
        &out,
        "pub const __M_HOOKS: ::core::option::Option<::m_runtime::hooks::HookEntry> = ::core::option::Option::None;",
    );
    assert!(!out.contains("__m_hooks"), "no hooks requested:\n{out}");
}

#[test]
fn hooks_and_parent_attributes() {
    let src = r####"
#[doctype(parent = "Note", hooks, toml = r#"
name = "Note Line"

[fields.text]
type = "Text"
"#)]
struct NoteLine { id: Option<Uuid>, idx: Option<i32>, parent: Option<String>, text: Option<String> }
"####;
    let out = expand(src).to_string();
    assert!(compile_errors(expand(src)).is_empty(), "unexpected compile_error:\n{out}");
    assert_contains(&out, "impl ::m_runtime::DocType for NoteLine");
    assert_contains(&out, r#"child: true, parent: ::core::option::Option::Some("Note")"#);
    assert_contains(&out, "naming: ::m_runtime::meta::Naming::Uuid");
    assert_contains(&out, "fn __m_hooks<'a, 't>(");
    assert_contains(&out, "run: Self::__m_hooks");
    assert_contains(&out, r#"\"references\":{\"table\":\"note\",\"on_delete\":\"CASCADE\"}"#);
}

const KEYWORDS: &str = r####"
#[derive(Debug, Default, DocType)]
#[doctype(source = "doctypes/gadget.toml", toml = r#"
name = "Gadget"
naming = "field:type"

[fields.type]
type = "Select"
options = ["Widget", "Sprocket"]
required = true

[fields.match]
type = "Data"

[fields.ref]
type = "Data"

[fields.static]
type = "Int"
"#)]
pub struct Gadget {
    pub name: Option<String>,
    pub r#type: Option<String>,
    pub r#match: Option<String>,
    pub r#ref: Option<String>,
    pub r#static: Option<i32>,
}
"####;

#[test]
fn keyword_fields_are_raw_identifiers_with_plain_names_in_metadata() {
    let tokens = expand(KEYWORDS);
    let out = tokens.to_string();
    assert!(compile_errors(tokens.clone()).is_empty(), "unexpected compile_error:\n{out}");
    // The expansion is valid Rust (an impl block rustc accepts syntactically).
    let file: syn::File = syn::parse2(tokens).unwrap_or_else(|e| panic!("expansion does not parse: {e}\n{out}"));
    assert!(!file.items.is_empty());
    assert_contains(&out, r#"naming: ::m_runtime::meta::Naming::Field("type")"#);
    for kw in ["type", "match", "ref", "static"] {
        // Metadata, documents and the table model use the plain name ...
        assert_contains(&out, &format!(r#"::m_runtime::meta::FieldMeta {{ name: "{kw}","#));
        assert_contains(
            &out,
            &format!(r#"r#{kw}: ::m_runtime::doc::FieldValue::from_value(doc.get("{kw}"), "{kw}")?"#),
        );
        // ... and Rust the raw identifier.
        assert_contains(&out, &format!(r#"doc.set("{kw}", ::m_runtime::doc::FieldValue::into_value(self.r#{kw}));"#));
        assert!(!out.contains(&format!("\"r#{kw}\"")), "a raw identifier leaked into a name:\n{out}");
    }
    assert_contains(&out, r#"\"name\":\"type\",\"type\":\"varchar\""#);
}

#[test]
fn keyword_fields_missing_from_the_struct_are_named_as_raw_identifiers() {
    let src = KEYWORDS.replace("    pub r#static: Option<i32>,\n", "");
    let messages = compile_errors(expand(&src));
    assert_eq!(messages, ["struct is missing field `r#static` of DocType Gadget"]);
}

#[test]
fn self_super_and_crate_are_not_field_names() {
    let src = r####"
#[doctype(source = "doctypes/note.toml", toml = r#"
name = "Note"

[fields.self]
type = "Data"
"#)]
struct Note {}
"####;
    let messages = compile_errors(expand(src));
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("doctypes/note.toml:4:9: `self` cannot be a field name"), "{}", messages[0]);
    assert!(messages[0].contains("hint: self, super and crate cannot be Rust identifiers"), "{}", messages[0]);
}

#[test]
fn invalid_toml_syntax_in_the_attribute() {
    let msg = assert_error_snapshot(
        "toml_syntax",
        r####"
#[doctype(toml = r#"
name = "Note"
[fields.title
type = "Data"
"#)]
struct Note { title: Option<String> }
"####,
    );
    assert!(msg.contains("#[doctype] on Note:3:"), "the message names the struct and the line: {msg}");
}

#[test]
fn invalid_doctype_in_the_attribute() {
    let msg = assert_error_snapshot(
        "unknown_type",
        r####"
#[doctype(source = "doctypes/note.toml", toml = r#"
name = "Note"

[fields.title]
type = "Strng"
"#)]
struct Note { title: Option<String> }
"####,
    );
    assert!(msg.contains("doctypes/note.toml:"), "the message names the source file: {msg}");
}

#[test]
fn struct_missing_a_declared_field() {
    let msg = assert_error_snapshot(
        "missing_field",
        r####"
#[doctype(toml = r#"
name = "Note"

[fields.title]
type = "Data"

[fields.body]
type = "Text"
"#)]
struct Note { title: Option<String> }
"####,
    );
    assert!(msg.contains("`body`"), "{msg}");
}

#[test]
fn struct_with_an_extra_field() {
    let msg = assert_error_snapshot(
        "extra_field",
        r####"
#[doctype(toml = r#"
name = "Note"

[fields.title]
type = "Data"
"#)]
struct Note { title: Option<String>, cache: Option<String> }
"####,
    );
    assert!(msg.contains("`cache`"), "{msg}");
}

#[test]
fn struct_with_a_standard_field_this_doctype_does_not_have() {
    // `docstatus` is standard only on submittable DocTypes.
    let msg = assert_error_snapshot(
        "standard_field_not_in_doctype",
        r####"
#[doctype(toml = r#"
name = "Note"

[fields.title]
type = "Data"
"#)]
struct Note { title: Option<String>, docstatus: Option<i32> }
"####,
    );
    assert!(msg.contains("`docstatus`"), "{msg}");
}

#[test]
fn missing_doctype_attribute() {
    let msg = assert_error_snapshot("missing_attribute", "#[derive(DocType)] struct Note { title: Option<String> }");
    assert!(msg.contains("#[doctype(toml = "), "{msg}");
    // An attribute without `toml` is the same mistake.
    let same =
        compile_errors(expand(r#"#[doctype(source = "doctypes/note.toml")] struct Note { title: Option<String> }"#));
    assert_eq!(same, [msg]);
}

#[test]
fn unknown_attribute_key() {
    assert_error_snapshot(
        "unknown_attribute_key",
        r####"
#[doctype(tmol = r#"name = "Note""#)]
struct Note {}
"####,
    );
}

#[test]
fn toml_attribute_is_not_a_string() {
    assert_error_snapshot("toml_not_a_string", "#[doctype(toml = 42)] struct Note {}");
}

#[test]
fn not_a_struct_with_named_fields() {
    let toml = r##"#[doctype(toml = r#"name = "Note""#)]"##;
    assert_error_snapshot("enum", &format!("{toml} enum Note {{ A, B }}"));
    assert_error_snapshot("tuple_struct", &format!("{toml} struct Note(String);"));
}
