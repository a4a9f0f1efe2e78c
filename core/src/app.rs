//! The application: every DocType's run-time schema, looked up by name. Built once at startup
//! from the static table the generated code hands over.

use std::collections::HashMap;
use std::sync::Arc;

use crate::doc::DocSchema;
use crate::hooks::{HookEntry, HookFn};
use crate::meta::DocMeta;

/// One DocType as the application registers it: its static metadata and, when it has hooks,
/// their entry point. The generated `doctypes()` lists one per DocType.
#[derive(Clone, Copy)]
pub struct Registered {
    pub meta: &'static DocMeta,
    pub hooks: Option<HookEntry>,
}

impl Registered {
    pub fn new(meta: &'static DocMeta, hooks: Option<HookEntry>) -> Registered {
        Registered { meta, hooks }
    }
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered").field("doctype", &self.meta.name).field("hooks", &self.hooks.is_some()).finish()
    }
}

/// The DocTypes an application serves.
#[derive(Clone)]
pub struct App {
    pub name: String,
    pub version: String,
    schemas: Vec<Arc<DocSchema>>,
    by_name: HashMap<&'static str, Arc<DocSchema>>,
    hooks: HashMap<&'static str, HookEntry>,
    /// Revisions embedded at build time: `(file name, content)`.
    pub migrations: &'static [(&'static str, &'static str)],
    /// The application's `migrations/` folder in its source tree (development).
    pub migrations_dir: Option<std::path::PathBuf>,
    /// Print templates embedded at build time: `(table, template)` of `print/<table>.html`.
    pub prints: &'static [(&'static str, &'static str)],
}

impl App {
    /// Lay out every DocType (children first, so parents can point to them).
    pub fn new(name: &str, version: &str, doctypes: Vec<Registered>) -> Result<App, String> {
        let mut by_name: HashMap<&'static str, Arc<DocSchema>> = HashMap::new();
        let mut schemas = Vec::new();
        let hooks = doctypes.iter().filter_map(|r| Some((r.meta.name, r.hooks?))).collect();
        let (children, parents): (Vec<_>, Vec<_>) = doctypes.into_iter().map(|r| r.meta).partition(|m| m.child);
        for meta in children.into_iter().chain(parents) {
            if by_name.contains_key(meta.name) {
                return Err(format!("DocType `{}` is registered twice", meta.name));
            }
            let schema = {
                let lookup = |n: &str| by_name.get(n).cloned();
                Arc::new(DocSchema::new(meta, &lookup)?)
            };
            by_name.insert(meta.name, schema.clone());
            schemas.push(schema);
        }
        schemas.sort_by_key(|s| s.meta.name);
        Ok(App {
            name: name.to_string(),
            version: version.to_string(),
            schemas,
            by_name,
            hooks,
            migrations: &[],
            migrations_dir: None,
            prints: &[],
        })
    }

    /// Attach the embedded revisions and the source tree's `migrations/` folder.
    pub fn with_migrations(
        mut self,
        embedded: &'static [(&'static str, &'static str)],
        dir: Option<std::path::PathBuf>,
    ) -> App {
        self.migrations = embedded;
        self.migrations_dir = dir;
        self
    }

    /// Attach the print templates embedded at build time.
    pub fn with_prints(mut self, prints: &'static [(&'static str, &'static str)]) -> App {
        self.prints = prints;
        self
    }

    /// The hooks of a DocType, when it has any.
    pub fn hooks(&self, doctype: &str) -> Option<HookFn> {
        self.hooks.get(doctype).map(|h| h.run)
    }

    /// Whether a DocType's committed changes are recorded for its hooks' `after_commit`.
    pub fn after_commit(&self, doctype: &str) -> bool {
        self.hooks.get(doctype).is_some_and(|h| h.after_commit)
    }

    /// A DocType by name (children included).
    pub fn get(&self, name: &str) -> Option<&Arc<DocSchema>> {
        self.by_name.get(name)
    }

    /// A DocType that has routes (not a child).
    pub fn routable(&self, name: &str) -> Option<&Arc<DocSchema>> {
        self.get(name).filter(|s| !s.meta.child)
    }

    pub fn schemas(&self) -> &[Arc<DocSchema>] {
        &self.schemas
    }
}
