//! `#[derive(DocType)]`: a thin shim over `m_codegen::derive::expand`, where the expansion lives.

use proc_macro::TokenStream;

/// Implement `m_runtime::DocType` for a struct from the TOML in its `#[doctype(toml = "…")]`
/// attribute. Optional: `source = "doctypes/x.toml"` (names the file in errors), `parent = "…"`
/// (a child DocType's parent), `hooks` (the struct implements `m_runtime::hooks::Hooks`).
#[proc_macro_derive(DocType, attributes(doctype))]
pub fn derive_doctype(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    m_codegen::derive::expand(input).into()
}
