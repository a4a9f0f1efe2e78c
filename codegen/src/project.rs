//! A whole application: every DocType file of a directory, validated together (Links and Tables
//! point to existing DocTypes, children have exactly one parent, no cycles, unique table names).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::diagnostic::Diagnostic;
use crate::ir::{DocType, FieldType};
use crate::names;
use crate::validate::{self, MAX_IDENT};

/// The validated DocTypes of an application, sorted by name.
#[derive(Debug, Clone)]
pub struct Project {
    pub doctypes: Vec<DocType>,
}

impl Project {
    pub fn get(&self, name: &str) -> Option<&DocType> {
        self.doctypes.iter().find(|d| d.name == name)
    }
}

/// Make `d` the child DocType of `parent` (the DocType whose Table field holds it): its rows
/// get `parent`/`parentfield`/`idx` and are named by `id`. The one place this rule lives: the
/// project applies it to every Table target, the derive to a struct marked `parent = "…"`.
pub fn make_child(d: &mut DocType, parent: &str) {
    d.child = true;
    d.parent = Some(parent.to_string());
    d.naming = crate::ir::Naming::Uuid;
}

/// `(file name as diagnostics show it, TOML text)` of each DocType file.
pub type Sources = Vec<(String, String)>;

/// Read every `*.toml` of `dir` (sorted by file name). `display_prefix` is how diagnostics name
/// the directory (e.g. `doctypes`). Returns the files read, for `rerun-if-changed`.
pub fn load_dir(dir: &Path, display_prefix: &str) -> std::io::Result<(Sources, Vec<std::path::PathBuf>)> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut sources = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p)?;
        let file_name = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        sources.push((format!("{display_prefix}/{file_name}"), text));
    }
    Ok((sources, paths))
}

/// Validate a set of `(file name, TOML text)` pairs as one application.
pub fn load_sources(sources: &[(String, String)]) -> Result<Project, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut doctypes = Vec::new();
    for (file, text) in sources {
        match validate::parse_doctype(file, text) {
            Ok(d) => doctypes.push(d),
            Err(mut d) => diags.append(&mut d),
        }
    }
    // Cross-file rules on a partial set of DocTypes report consequences of the errors above
    // (a child whose parent did not parse, a Link to it): the files' own errors come first.
    if !diags.is_empty() {
        return Err(diags);
    }
    let source_of: HashMap<&str, &str> = sources.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    let at = |d: &DocType, span: std::ops::Range<usize>, msg: String, hint: &str| {
        Diagnostic::at(&d.source, source_of.get(d.source.as_str()).copied().unwrap_or(""), Some(span), msg)
            .with_hint(hint)
    };

    // Unique names and tables.
    let mut seen: BTreeMap<String, &DocType> = BTreeMap::new();
    for d in &doctypes {
        if let Some(first) = seen.insert(d.table(), d) {
            diags.push(at(
                d,
                d.name_span.clone(),
                format!(
                    "DocType `{}` has the same table `{}` as `{}` in {}",
                    d.name,
                    d.table(),
                    first.name,
                    first.source
                ),
                "rename one of them",
            ));
        }
    }

    // Which DocTypes are children: every Table target (decided first, so the checks below see
    // implicit children too).
    let by_name: HashMap<String, usize> = doctypes.iter().enumerate().map(|(i, d)| (d.name.clone(), i)).collect();
    let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &doctypes {
        for f in d.fields.iter().filter(|f| f.ty == FieldType::Table) {
            if let Some(to) = f.to.as_ref().filter(|t| by_name.contains_key(*t)) {
                let list = parents.entry(to.clone()).or_default();
                if !list.contains(&d.name) {
                    list.push(d.name.clone());
                }
            }
        }
    }
    let is_child = |name: &str| parents.contains_key(name);

    // Links and Tables point to DocTypes that exist; children are not linked to and hold no
    // Tables of their own (which also rules out cycles).
    for d in &doctypes {
        for f in &d.fields {
            let (Some(to), Some(span)) = (&f.to, &f.to_span) else { continue };
            if !by_name.contains_key(to) {
                let hint = match names::closest(to, doctypes.iter().map(|x| x.name.as_str())) {
                    Some(c) => format!("did you mean \"{c}\"?"),
                    None => "add doctypes/<name>.toml for it, or fix the name".to_string(),
                };
                diags.push(at(
                    d,
                    span.clone(),
                    format!("{} field `{}` points to `{to}`, which is not a DocType", f.ty.as_str(), f.name),
                    &hint,
                ));
            } else if f.ty == FieldType::Table && (d.child || is_child(&d.name)) {
                diags.push(at(
                    d,
                    span.clone(),
                    format!("{} is a child DocType and cannot have a Table field", d.name),
                    "children cannot nest (and a DocType cannot hold itself); link instead",
                ));
            } else if f.ty != FieldType::Table && is_child(to) {
                diags.push(at(
                    d,
                    span.clone(),
                    format!("Link field `{}` points to child DocType {to}", f.name),
                    "child rows have no routes or names of their own; link to the parent",
                ));
            }
        }
    }
    for (child, ps) in &parents {
        let d = &doctypes[by_name[child]];
        if ps.len() > 1 {
            diags.push(at(
                d,
                d.name_span.clone(),
                format!("child DocType {child} is used by several parents: {}", ps.join(", ")),
                "give each parent its own child DocType",
            ));
        }
        if d.submittable || d.optimistic || !d.permissions.is_empty() || d.naming_declared {
            diags.push(at(
                d,
                d.name_span.clone(),
                format!(
                    "{child} is a child (a Table of {}) but declares naming, submittable, concurrency or permissions",
                    ps.join(", ")
                ),
                "child rows follow their parent; remove those keys",
            ));
        }
    }
    for d in &mut doctypes {
        if let Some(parent) = parents.get(&d.name).and_then(|ps| ps.first()) {
            make_child(d, parent);
        } else if d.child {
            let msg = format!("{} is declared `child = true` but no Table field points to it", d.name);
            diags.push(
                Diagnostic::at(
                    &d.source,
                    source_of.get(d.source.as_str()).copied().unwrap_or(""),
                    Some(d.name_span.clone()),
                    msg,
                )
                .with_hint("add a Table field to its parent, or remove `child = true`"),
            );
        }
    }

    // Indexes on standard columns name columns this DocType has.
    for d in &doctypes {
        for ix in &d.indexes {
            for f in &ix.fields {
                if d.field(f).is_none() && !d.has_standard_column(f) {
                    let standard: Vec<&str> = d.standard_columns().iter().map(|c| c.name()).collect();
                    diags.push(at(
                        d,
                        d.name_span.clone(),
                        format!("index field `{f}` is not a column of {}", d.name),
                        &format!("{}'s standard columns are {}", d.name, standard.join(", ")),
                    ));
                }
            }
        }
    }

    // Generated constraint names must stay within PostgreSQL's identifier limit: they are
    // shortened deterministically, so only the column and table names themselves can fail, and
    // those were checked per file. Check composite index column lists here.
    for d in &doctypes {
        for ix in &d.indexes {
            if ix.fields.iter().any(|f| f.len() > MAX_IDENT) {
                diags.push(at(d, d.name_span.clone(), "index column name too long".into(), "shorten the field name"));
            }
        }
    }

    if diags.is_empty() {
        doctypes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Project { doctypes })
    } else {
        Err(diags)
    }
}
