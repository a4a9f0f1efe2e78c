//! One DocType file: TOML text -> [`DocType`] IR, or diagnostics with file, line, column and a
//! hint. Rules that need other DocTypes (Links, children, cycles) live in [`crate::project`].

use std::ops::Range;

use crate::diagnostic::Diagnostic;
use crate::ir::{DefaultValue, DocType, Field, FieldType, Grant, Index, Naming, StandardColumn};
use crate::names;
use crate::spec::{self, RawDocType, RawField};

/// Longest identifier PostgreSQL keeps (longer ones are silently truncated, so they are errors).
pub const MAX_IDENT: usize = 63;

/// DocType names that are not allowed: they collide with API paths or built-in tables.
pub const RESERVED_DOCTYPES: &[&str] = &[
    "auth",
    "meta",
    "user",
    "user_permission",
    "has_role",
    "role",
    "webhook",
    "webhook_data",
    "webhook_request_log",
    "email_queue",
    "version",
];

/// Parse and validate one DocType file. `file` is how diagnostics name it.
pub fn parse_doctype(file: &str, source: &str) -> Result<DocType, Vec<Diagnostic>> {
    let raw: RawDocType = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(err) => return Err(vec![toml_error(file, source, &err)]),
    };
    let mut cx = Cx { file, source, diags: Vec::new() };
    let doctype = cx.doctype(raw);
    if cx.diags.is_empty() { Ok(doctype) } else { Err(cx.diags) }
}

/// Turn a TOML syntax or shape error into a diagnostic, adding a "did you mean" hint for unknown
/// keys and types.
fn toml_error(file: &str, source: &str, err: &toml::de::Error) -> Diagnostic {
    let message = err.message().trim().to_string();
    let mut diag = Diagnostic::at(file, source, err.span(), message.clone());
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let all: Vec<&str> = [spec::DOCTYPE_KEYS, spec::FIELD_KEYS, spec::GRANT_KEYS].concat();
        diag = match names::closest(unknown, all.iter().copied()) {
            Some(close) => diag.with_hint(format!("did you mean `{close}`?")),
            None => diag.with_hint("remove the key; the README's DocType TOML reference lists the keys of format v1"),
        };
    } else if message.starts_with("duplicate key") {
        diag = diag.with_hint("each field and key may appear once per table");
    } else if message.starts_with("missing field") {
        diag = diag.with_hint("add the key; `name` is required at the top and `type` in every field");
    } else if message.starts_with("invalid type") {
        diag = diag.with_hint(
            "give the value the type named above, e.g. `required = true`, `max_length = 80`, `options = [\"A\"]`",
        );
    } else {
        diag = diag
            .with_hint("fix the TOML syntax here: `key = value`, strings in double quotes, tables as [fields.<name>]");
    }
    diag
}

struct Cx<'a> {
    file: &'a str,
    source: &'a str,
    diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        let diag = Diagnostic::at(self.file, self.source, Some(span), message).with_hint(hint);
        self.diags.push(diag);
    }

    fn doctype(&mut self, raw: RawDocType) -> DocType {
        let name = raw.name.get_ref().clone();
        if !names::is_doctype_name(&name) {
            self.error(
                raw.name.span(),
                format!("invalid DocType name `{name}`"),
                "use words of ASCII letters and digits starting with a capital, separated by single spaces, e.g. \"Sales Order\"",
            );
        } else {
            let table = names::snake_case(&name);
            if (RESERVED_DOCTYPES.contains(&table.as_str()) || table.starts_with("m_"))
                && !crate::builtin::is_builtin(self.file)
            {
                self.error(
                    raw.name.span(),
                    format!("`{name}` is a reserved DocType name"),
                    "auth, meta, the built-in DocTypes (User, User Permission, Role, Webhook, Webhook Data, Webhook Request Log, Email Queue, Version) and names starting with `M ` are reserved; pick another name",
                );
            } else if table.len() > MAX_IDENT {
                self.error(
                    raw.name.span(),
                    format!("table name `{table}` is longer than {MAX_IDENT} bytes"),
                    "PostgreSQL truncates longer identifiers; use a shorter name",
                );
            }
        }

        let mut fields = Vec::new();
        for (key, raw_field) in raw.fields {
            if let Some(field) = self.field(&key, raw_field) {
                fields.push(field);
            }
        }

        let optimistic = match &raw.concurrency {
            None => false,
            Some(c) => match c.get_ref().as_str() {
                "optimistic" => true,
                "none" => false,
                other => {
                    self.error(
                        c.span(),
                        format!("unknown concurrency `{other}`"),
                        "use \"optimistic\" (a `_version` column, ETag / If-Match) or \"none\"",
                    );
                    false
                }
            },
        };

        let naming = match &raw.naming {
            None => Naming::Hash,
            Some(n) => self.naming(n.get_ref(), n.span(), &fields).unwrap_or(Naming::Hash),
        };

        if let Some(title) = &raw.title_field {
            let t = title.get_ref();
            if t != "name" && !fields.iter().any(|f| &f.name == t) {
                let hint = match names::closest(t, fields.iter().map(|f| f.name.as_str())) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => "title_field must name one of this DocType's fields".into(),
                };
                self.error(title.span(), format!("title_field `{t}` is not a field of {name}"), hint);
            } else if fields.iter().any(|f| &f.name == t && f.ty.is_secret()) {
                self.error(
                    title.span(),
                    format!("title_field `{t}` is a Password field"),
                    "a title is shown; a secret never is",
                );
            }
        }

        let mut indexes = Vec::new();
        for raw_index in raw.indexes {
            let span = raw_index.span();
            let raw_index = raw_index.into_inner();
            if raw_index.fields.is_empty() {
                self.error(span, "an index needs at least one field", "fields = [\"customer\", \"posting_date\"]");
                continue;
            }
            let mut cols = Vec::new();
            for f in &raw_index.fields {
                let fname = f.get_ref();
                // Standard columns are checked against this DocType's own in project.rs, once it
                // is known whether the DocType is a child.
                let ok = StandardColumn::RESERVED.contains(&fname.as_str())
                    || fields.iter().any(|x| &x.name == fname && x.ty != FieldType::Table && !x.ty.is_secret());
                if !ok {
                    self.error(
                        f.span(),
                        format!("index field `{fname}` is not a column of {name}"),
                        "index fields must be declared fields (not Table or Password) or standard columns such as `modified`",
                    );
                }
                cols.push(fname.clone());
            }
            indexes.push(Index { fields: cols, unique: raw_index.unique });
        }

        let mut permissions = Vec::new();
        for (role, grant) in raw.permissions {
            let g = grant.get_ref();
            if role.get_ref().trim().is_empty() {
                self.error(role.span(), "empty role name", "name the role, e.g. \"Sales User\"");
            }
            let grant = Grant {
                read: g.read,
                create: g.create,
                write: g.write,
                delete: g.delete,
                submit: g.submit,
                cancel: g.cancel,
                if_owner: g.if_owner,
            };
            if (grant.submit || grant.cancel) && !raw.submittable {
                self.error(
                    role.span(),
                    format!("role `{}` is granted submit/cancel but {name} is not submittable", role.get_ref()),
                    "set `submittable = true` or remove submit/cancel",
                );
            }
            permissions.push((role.into_inner(), grant));
        }

        let mut user_permissions = Vec::new();
        for f in raw.rls.map(|r| r.user_permissions).unwrap_or_default() {
            match fields.iter().find(|x| &x.name == f.get_ref()) {
                Some(x) if x.ty == FieldType::Link => user_permissions.push(f.into_inner()),
                _ => self.error(f.span(), format!("`{}` is not a Link field of {name}", f.get_ref()), "[rls] user_permissions lists Link fields; rows are filtered by the user's User Permissions on each Link's target"),
            }
        }

        if raw.child && (raw.submittable || optimistic || !permissions.is_empty() || raw.naming.is_some()) {
            self.error(
                raw.name.span(),
                format!("child DocType {name} cannot have naming, submittable, concurrency or permissions"),
                "child rows follow their parent's lifecycle and permissions",
            );
        }

        DocType {
            name,
            source: self.file.to_string(),
            naming: if raw.child { Naming::Uuid } else { naming },
            title_field: raw.title_field.map(toml::Spanned::into_inner),
            submittable: raw.submittable,
            track_changes: raw.track_changes && !raw.child,
            optimistic,
            child: raw.child,
            parent: None,
            description: raw.description,
            fields,
            indexes,
            permissions,
            user_permissions,
            name_span: raw.name.span(),
            naming_declared: raw.naming.is_some(),
            renamed_from: raw.renamed_from,
        }
    }

    fn naming(&mut self, spec: &str, span: Range<usize>, fields: &[Field]) -> Option<Naming> {
        let naming = match spec {
            "uuid" => Naming::Uuid,
            "hash" => Naming::Hash,
            s if s.starts_with("field:") => {
                let f = &s["field:".len()..];
                match fields.iter().find(|x| x.name == f) {
                    Some(x) if x.ty.has_max_length() || x.ty == FieldType::Select => {
                        if !x.required {
                            self.error(
                                span.clone(),
                                format!("naming field `{f}` must be required"),
                                format!("add `required = true` to [fields.{f}]"),
                            );
                        }
                        if x.max_length.unwrap_or(140) > 140 {
                            self.error(
                                span.clone(),
                                format!("naming field `{f}` may be longer than a name (140)"),
                                "set max_length <= 140",
                            );
                        }
                    }
                    Some(_) => self.error(
                        span.clone(),
                        format!("naming field `{f}` must be a Data, Email, Phone, URL or Select field"),
                        "names are short strings",
                    ),
                    None => self.error(
                        span.clone(),
                        format!("naming field `{f}` does not exist"),
                        "naming = \"field:<a declared field>\"",
                    ),
                }
                Naming::Field(f.to_string())
            }
            s if s.starts_with("series:") => {
                let p = &s["series:".len()..];
                if !p.contains('#') {
                    self.error(
                        span.clone(),
                        format!("series pattern `{p}` has no `#` counter"),
                        "e.g. \"series:INV-.YYYY.-.####\"",
                    );
                }
                Naming::Series(p.to_string())
            }
            other => {
                self.error(
                    span,
                    format!("unknown naming rule `{other}`"),
                    "use uuid, hash, field:<field> or series:<pattern>",
                );
                return None;
            }
        };
        Some(naming)
    }

    fn field(&mut self, key: &toml::Spanned<String>, raw: toml::Spanned<RawField>) -> Option<Field> {
        let name = key.get_ref().clone();
        let kspan = key.span();
        let raw = raw.into_inner();
        if StandardColumn::RESERVED.contains(&name.as_str()) {
            self.error(
                kspan.clone(),
                format!("`{name}` is a reserved name"),
                format!(
                    "standard fields ({}) are set by the server; rename the field",
                    StandardColumn::RESERVED.join(", ")
                ),
            );
            return None;
        }
        if !names::is_field_ident(&name) {
            self.error(
                kspan.clone(),
                format!("invalid field name `{name}`"),
                "use lowercase snake_case starting with a letter and single underscores, e.g. `posting_date`",
            );
            return None;
        }
        if names::is_unusable_ident(&name) {
            self.error(
                kspan.clone(),
                format!("`{name}` cannot be a field name"),
                "self, super and crate cannot be Rust identifiers, even raw ones (other keywords such as `type` are fine); rename the field, e.g. `self_ref`",
            );
            return None;
        }
        if name.len() > MAX_IDENT {
            self.error(
                kspan.clone(),
                format!("field name `{name}` is longer than {MAX_IDENT} bytes"),
                "PostgreSQL truncates longer identifiers",
            );
        }
        let ty_str = raw.ty.get_ref();
        let Some(ty) = FieldType::parse(ty_str) else {
            let hint = match names::closest(ty_str, FieldType::ALL.iter().map(|(n, _)| *n)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => {
                    format!("known types: {}", FieldType::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
                }
            };
            self.error(raw.ty.span(), format!("unknown field type `{ty_str}`"), hint);
            return None;
        };

        let needs_to = matches!(ty, FieldType::Link | FieldType::Table);
        match (&raw.to, needs_to) {
            (None, true) => self.error(
                raw.ty.span(),
                format!("{} field `{name}` needs `to`", ty.as_str()),
                "to = \"<DocType name>\"",
            ),
            (Some(to), false) => self.error(
                to.span(),
                format!("`to` is only for Link and Table fields (`{name}` is {})", ty.as_str()),
                "remove `to`",
            ),
            _ => {}
        }

        let options = raw.options.as_ref().map(|o| o.get_ref().clone()).unwrap_or_default();
        match (&raw.options, ty) {
            (None, FieldType::Select) => self.error(
                raw.ty.span(),
                format!("Select field `{name}` needs `options`"),
                "options = [\"Draft\", \"Paid\"]",
            ),
            (Some(o), FieldType::Select) if o.get_ref().is_empty() => {
                self.error(o.span(), "options is empty", "list at least one option")
            }
            (Some(o), t) if t != FieldType::Select => {
                self.error(o.span(), "`options` is only for Select fields", "remove `options`")
            }
            _ => {}
        }

        let max_length = match &raw.max_length {
            Some(m) if !ty.has_max_length() => {
                self.error(
                    m.span(),
                    "`max_length` is only for Data, Email, Phone and URL",
                    "use Text for unbounded strings",
                );
                None
            }
            Some(m) if !(1..=10_485_760).contains(m.get_ref()) => {
                self.error(m.span(), "max_length must be between 1 and 10485760", "the default is 140");
                None
            }
            Some(m) => u32::try_from(*m.get_ref()).ok(),
            None if ty.has_max_length() => Some(140),
            None => None,
        };

        let (precision, scale) = if ty.is_decimal() {
            let p = raw.precision.as_ref().map_or(18, |p| *p.get_ref());
            let s = raw.scale.as_ref().map_or(6, |s| *s.get_ref());
            if !(1..=1000).contains(&p) || s < 0 || s > p {
                let span = raw.precision.as_ref().or(raw.scale.as_ref()).map_or(kspan.clone(), |x| x.span());
                self.error(
                    span,
                    format!("invalid precision/scale {p}/{s}"),
                    "need 1 <= precision <= 1000 and 0 <= scale <= precision",
                );
            }
            (u32::try_from(p).ok(), u32::try_from(s).ok())
        } else {
            for x in [&raw.precision, &raw.scale].into_iter().flatten() {
                self.error(x.span(), "precision and scale are only for Currency and Decimal", "remove the key");
            }
            (None, None)
        };

        for x in [&raw.min, &raw.max].into_iter().flatten() {
            if !ty.is_numeric() {
                self.error(x.span(), "min and max are only for numeric fields", "remove the key");
            }
        }
        if let (Some(lo), Some(hi)) = (&raw.min, &raw.max)
            && lo.get_ref() > hi.get_ref()
        {
            self.error(lo.span(), "min is greater than max", "swap them");
        }

        if let Some(re) = &raw.regex {
            if !ty.is_text() {
                self.error(re.span(), "regex is only for text fields", "remove the key");
            } else if let Err(e) = regex_lite::Regex::new(re.get_ref()) {
                self.error(re.span(), format!("invalid regex: {e}"), "the runtime uses regex-lite syntax");
            }
        }

        if ty.is_secret() && (raw.unique || raw.index) {
            self.error(
                kspan.clone(),
                "a Password field cannot be unique or indexed",
                "its stored value is ciphertext, never looked up",
            );
        }
        if ty == FieldType::Table && (raw.unique || raw.index || raw.default.is_some()) {
            self.error(
                kspan.clone(),
                "a Table field cannot be unique, indexed or have a default",
                "index the child DocType's fields instead",
            );
        }

        let default = raw.default.as_ref().and_then(|d| self.default_value(&name, ty, d));
        if let (Some(DefaultValue::Str(s)), FieldType::Select, Some(d)) = (&default, ty, &raw.default)
            && !options.is_empty()
            && !options.contains(s)
        {
            self.error(
                d.span(),
                format!("default `{s}` is not one of the options of `{name}`"),
                format!("options: {}", options.join(", ")),
            );
        }

        Some(Field {
            name,
            ty,
            to_span: raw.to.as_ref().map(toml::Spanned::span),
            to: raw.to.map(toml::Spanned::into_inner),
            required: raw.required,
            unique: raw.unique,
            index: raw.index,
            default,
            options,
            max_length,
            precision,
            scale,
            min: raw.min.map(toml::Spanned::into_inner),
            max: raw.max.map(toml::Spanned::into_inner),
            regex: raw.regex.map(toml::Spanned::into_inner),
            read_only: raw.read_only,
            hidden: raw.hidden,
            description: raw.description,
            renamed_from: raw.renamed_from.map(toml::Spanned::into_inner),
        })
    }

    fn default_value(&mut self, field: &str, ty: FieldType, d: &toml::Spanned<toml::Value>) -> Option<DefaultValue> {
        use toml::Value as V;
        let bad = |cx: &mut Self, expected: &str| {
            cx.error(
                d.span(),
                format!("default of `{field}` does not fit its type {}", ty.as_str()),
                format!("expected {expected}"),
            );
            None
        };
        match (ty, d.get_ref()) {
            (FieldType::Date, V::String(s)) if s == "today" => Some(DefaultValue::Today),
            (FieldType::Datetime, V::String(s)) if s == "now" => Some(DefaultValue::Now),
            (FieldType::Date, V::String(s)) if is_date(s) => Some(DefaultValue::Str(s.clone())),
            (FieldType::Date, _) => bad(self, "\"today\" or \"YYYY-MM-DD\""),
            (FieldType::Datetime, _) => bad(self, "\"now\""),
            (FieldType::Select, V::String(s)) => {
                // Options are validated after parsing, against the field's own list.
                Some(DefaultValue::Str(s.clone()))
            }
            (FieldType::Int | FieldType::BigInt, V::Integer(i)) => Some(DefaultValue::Int(*i)),
            (FieldType::Float | FieldType::Currency | FieldType::Decimal, V::Integer(i)) => Some(DefaultValue::Int(*i)),
            (FieldType::Float | FieldType::Currency | FieldType::Decimal, V::Float(f)) => Some(DefaultValue::Float(*f)),
            (FieldType::Currency | FieldType::Decimal, V::String(s)) if is_decimal(s) => {
                Some(DefaultValue::Str(s.clone()))
            }
            (FieldType::Check, V::Boolean(b)) => Some(DefaultValue::Bool(*b)),
            (FieldType::Check, V::Integer(i @ (0 | 1))) => Some(DefaultValue::Bool(*i == 1)),
            (t, V::String(s)) if t.is_text() && t != FieldType::Link => Some(DefaultValue::Str(s.clone())),
            (FieldType::Int | FieldType::BigInt, _) => bad(self, "an integer"),
            (FieldType::Float | FieldType::Currency | FieldType::Decimal, _) => bad(self, "a number"),
            (FieldType::Check, _) => bad(self, "true or false"),
            (t, _) if t.is_text() && t != FieldType::Link => bad(self, "a string"),
            _ => bad(self, "no default (this type takes none)"),
        }
    }
}

fn is_decimal(s: &str) -> bool {
    let t = s.strip_prefix('-').unwrap_or(s);
    let mut parts = t.splitn(2, '.');
    let int = parts.next().unwrap_or_default();
    let frac = parts.next().unwrap_or("0");
    !int.is_empty()
        && int.chars().all(|c| c.is_ascii_digit())
        && !frac.is_empty()
        && frac.chars().all(|c| c.is_ascii_digit())
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && s.chars().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}
