//! The expansion of `#[derive(DocType)]`: the runtime's `DocType` implementation for a struct
//! whose `#[doctype(toml = "…")]` attribute carries the DocType's TOML. `m-macros` is a shim over
//! [`expand`].
//!
//! The expansion is deliberately thin (ARCHITECTURE.md): static metadata, DDL strings and two small
//! non-generic conversion functions. Handlers, SQL building and validation live once in the runtime.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt as _;
use syn::{Data, DeriveInput, Fields, LitStr};

use crate::ir::{DefaultValue, DocType, FieldType, Naming};
use crate::validate::parse_doctype;

/// The parsed `#[doctype(...)]` attribute.
struct Attr {
    toml: LitStr,
    source: Option<String>,
    parent: Option<String>,
    hooks: bool,
}

fn parse_attr(input: &DeriveInput) -> syn::Result<Attr> {
    let mut toml = None;
    let mut source = None;
    let mut parent = None;
    let mut hooks = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("doctype")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("toml") {
                toml = Some(meta.value()?.parse::<LitStr>()?);
            } else if meta.path.is_ident("source") {
                source = Some(meta.value()?.parse::<LitStr>()?.value());
            } else if meta.path.is_ident("parent") {
                parent = Some(meta.value()?.parse::<LitStr>()?.value());
            } else if meta.path.is_ident("hooks") {
                hooks = true;
            } else {
                return Err(meta.error("unknown doctype attribute; expected toml, source, parent or hooks"));
            }
            Ok(())
        })?;
    }
    let toml = toml.ok_or_else(|| {
        syn::Error::new(Span::call_site(), "#[derive(DocType)] needs #[doctype(toml = \"…\")] with the DocType's TOML")
    })?;
    Ok(Attr { toml, source, parent, hooks })
}

/// Expand `#[derive(DocType)]`; errors become `compile_error!` with spans on the user's input.
pub fn expand(input: DeriveInput) -> TokenStream {
    match try_expand(&input) {
        Ok(tokens) => tokens,
        Err(err) => err.to_compile_error(),
    }
}

fn try_expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let attr = parse_attr(input)?;
    let file = attr.source.clone().unwrap_or_else(|| format!("#[doctype] on {}", input.ident));
    let mut d = parse_doctype(&file, &attr.toml.value()).map_err(|diags| {
        // rustc prefixes "error: " itself.
        let text: Vec<String> = diags.iter().map(|d| d.to_string().trim_start_matches("error: ").to_string()).collect();
        syn::Error::new(attr.toml.span(), text.join("\n"))
    })?;
    if let Some(parent) = &attr.parent {
        crate::project::make_child(&mut d, parent);
    }

    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(&input.ident, "DocType can only be derived for a struct"));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new_spanned(&input.ident, "DocType needs a struct with named fields"));
    };

    // Every declared field needs a struct field; struct fields must be declared or standard.
    let mut from = Vec::new();
    let mut write = Vec::new();
    for f in &named.named {
        let ident = f.ident.as_ref().ok_or_else(|| syn::Error::new_spanned(f, "unnamed field"))?;
        // `r#type` is the field `type`: metadata, JSON and SQL use the plain name.
        let name = ident.unraw().to_string();
        let lit = LitStr::new(&name, ident.span());
        match d.field(&name) {
            Some(field) if field.ty == FieldType::Table => {
                from.push(quote! { #ident: ::m_runtime::doc::rows_from_docs(doc.table(#lit))? });
                write.push(quote! { ::m_runtime::doc::rows_into_docs(self.#ident, doc.table_mut(#lit)); });
            }
            Some(_) => {
                from.push(quote! { #ident: ::m_runtime::doc::FieldValue::from_value(doc.get(#lit), #lit)? });
                write.push(quote! { doc.set(#lit, ::m_runtime::doc::FieldValue::into_value(self.#ident)); });
            }
            None if d.has_standard_column(&name) => {
                // Standard fields are server-set: readable by hooks, never written back.
                from.push(quote! { #ident: ::m_runtime::doc::FieldValue::from_value(doc.get(#lit), #lit)? });
            }
            None => {
                return Err(syn::Error::new_spanned(
                    ident,
                    format!("`{name}` is not a field of DocType {} (nor a standard field)", d.name),
                ));
            }
        }
    }
    for field in &d.fields {
        if !named.named.iter().any(|f| f.ident.as_ref().is_some_and(|i| i.unraw() == field.name)) {
            return Err(syn::Error::new_spanned(
                &input.ident,
                format!("struct is missing field `{}` of DocType {}", crate::names::rust_ident(&field.name), d.name),
            ));
        }
    }

    let ident = &input.ident;
    let meta = meta_tokens(&d);
    let hooks_fn = if attr.hooks {
        quote! {
            impl #ident {
                #[doc(hidden)]
                fn __m_hooks<'a, 't>(
                    event: ::m_runtime::hooks::HookEvent,
                    doc: &'a mut ::m_runtime::Doc,
                    ctx: &'a ::m_runtime::hooks::HookCtx<'t>,
                ) -> ::m_runtime::hooks::BoxFuture<'a, ::core::result::Result<(), ::m_runtime::hooks::HookError>> {
                    ::std::boxed::Box::pin(async move {
                        let mut this = <Self as ::m_runtime::DocType>::from_doc(doc)?;
                        ::m_runtime::hooks::dispatch(&mut this, event, ctx).await?;
                        ::m_runtime::DocType::write_doc(this, doc);
                        ::core::result::Result::Ok(())
                    })
                }

                /// The hooks the application's DocType table registers.
                #[doc(hidden)]
                pub const __M_HOOKS: ::core::option::Option<::m_runtime::hooks::HookEntry> =
                    ::core::option::Option::Some(::m_runtime::hooks::HookEntry {
                        run: Self::__m_hooks,
                        after_commit: <Self as ::m_runtime::hooks::Hooks>::AFTER_COMMIT,
                    });
            }
        }
    } else {
        quote! {
            impl #ident {
                /// No hooks: the application's DocType table registers none.
                #[doc(hidden)]
                pub const __M_HOOKS: ::core::option::Option<::m_runtime::hooks::HookEntry> = ::core::option::Option::None;
            }
        }
    };

    Ok(quote! {
        #hooks_fn
        impl ::m_runtime::DocType for #ident {
            fn meta() -> &'static ::m_runtime::meta::DocMeta {
                static META: ::m_runtime::meta::DocMeta = #meta;
                &META
            }
            fn from_doc(doc: &::m_runtime::Doc) -> ::core::result::Result<Self, ::m_runtime::hooks::HookError> {
                ::core::result::Result::Ok(Self { #(#from,)* })
            }
            fn write_doc(self, doc: &mut ::m_runtime::Doc) {
                #(#write)*
            }
        }
    })
}

fn opt_str(s: Option<&str>) -> TokenStream {
    match s {
        Some(s) => quote! { ::core::option::Option::Some(#s) },
        None => quote! { ::core::option::Option::None },
    }
}

fn opt<T: quote::ToTokens>(v: Option<T>) -> TokenStream {
    match v {
        Some(v) => quote! { ::core::option::Option::Some(#v) },
        None => quote! { ::core::option::Option::None },
    }
}

/// The `DocMeta` literal for a DocType.
pub fn meta_tokens(d: &DocType) -> TokenStream {
    let name = &d.name;
    let table = d.table();
    let naming = match &d.naming {
        Naming::Uuid => quote! { ::m_runtime::meta::Naming::Uuid },
        Naming::Hash => quote! { ::m_runtime::meta::Naming::Hash },
        Naming::Field(f) => quote! { ::m_runtime::meta::Naming::Field(#f) },
        Naming::Series(p) => quote! { ::m_runtime::meta::Naming::Series(#p) },
    };
    let title = opt_str(d.title_field.as_deref());
    let parent = opt_str(d.parent.as_deref());
    let description = opt_str(d.description.as_deref());
    let (submittable, optimistic, child) = (d.submittable, d.optimistic, d.child);
    let track_changes = d.track_changes;
    let fields = d.fields.iter().map(|f| {
        let fname = &f.name;
        let kind = format_ident!("{}", f.ty.variant());
        let to = opt_str(f.to.as_deref());
        let (required, unique, index, read_only, hidden) = (f.required, f.unique, f.index, f.read_only, f.hidden);
        let default = match &f.default {
            None => quote! { ::core::option::Option::None },
            Some(v) => {
                let v = match v {
                    DefaultValue::Today => quote! { ::m_runtime::meta::DefaultValue::Today },
                    DefaultValue::Now => quote! { ::m_runtime::meta::DefaultValue::Now },
                    DefaultValue::Str(s) => quote! { ::m_runtime::meta::DefaultValue::Str(#s) },
                    DefaultValue::Int(i) => quote! { ::m_runtime::meta::DefaultValue::Int(#i) },
                    DefaultValue::Float(x) => quote! { ::m_runtime::meta::DefaultValue::Float(#x) },
                    DefaultValue::Bool(b) => quote! { ::m_runtime::meta::DefaultValue::Bool(#b) },
                };
                quote! { ::core::option::Option::Some(#v) }
            }
        };
        let options = &f.options;
        let max_length = opt(f.max_length);
        let precision = opt(f.precision);
        let scale = opt(f.scale);
        let min = opt(f.min);
        let max = opt(f.max);
        let regex = opt_str(f.regex.as_deref());
        let desc = opt_str(f.description.as_deref());
        quote! {
            ::m_runtime::meta::FieldMeta {
                name: #fname,
                kind: ::m_runtime::meta::FieldType::#kind,
                to: #to,
                required: #required,
                unique: #unique,
                index: #index,
                default: #default,
                options: &[#(#options),*],
                max_length: #max_length,
                precision: #precision,
                scale: #scale,
                min: #min,
                max: #max,
                regex: #regex,
                read_only: #read_only,
                hidden: #hidden,
                description: #desc,
            }
        }
    });
    let perms = d.permissions.iter().map(|(role, g)| {
        let (r, c, w, de, s, ca, o) = (g.read, g.create, g.write, g.delete, g.submit, g.cancel, g.if_owner);
        quote! {
            ::m_runtime::meta::RoleGrant {
                role: #role,
                grant: ::m_runtime::meta::Grant { read: #r, create: #c, write: #w, delete: #de, submit: #s, cancel: #ca, if_owner: #o },
            }
        }
    });
    let ups = &d.user_permissions;
    // The table in the schema model, for migrations (desired schema) at run time.
    let schema = serde_json::to_string(&crate::migrate::model::table_of(d)).unwrap_or_default();
    quote! {
        ::m_runtime::meta::DocMeta {
            name: #name,
            table: #table,
            naming: #naming,
            title_field: #title,
            submittable: #submittable,
            track_changes: #track_changes,
            optimistic: #optimistic,
            child: #child,
            parent: #parent,
            description: #description,
            fields: &[#(#fields),*],
            permissions: &[#(#perms),*],
            user_permissions: &[#(#ups),*],
            schema: #schema,
        }
    }
}
