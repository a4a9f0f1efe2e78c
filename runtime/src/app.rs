//! The application: every DocType's run-time schema, looked up by name. Built once at startup
//! from the static table the generated code hands over.

use std::collections::HashMap;
use std::sync::Arc;

use crate::doc::DocSchema;
use crate::meta::DocMeta;

/// The DocTypes an application serves.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub version: String,
    schemas: Vec<Arc<DocSchema>>,
    by_name: HashMap<&'static str, Arc<DocSchema>>,
    /// Revisions embedded at build time: `(file name, content)`.
    pub migrations: &'static [(&'static str, &'static str)],
    /// The application's `migrations/` folder in its source tree (development).
    pub migrations_dir: Option<std::path::PathBuf>,
    /// The background jobs it defines.
    jobs: Vec<crate::jobs::Job>,
}

impl App {
    /// Lay out every DocType (children first, so parents can point to them).
    pub fn new(name: &str, version: &str, doctypes: Vec<&'static DocMeta>) -> Result<App, String> {
        let mut by_name: HashMap<&'static str, Arc<DocSchema>> = HashMap::new();
        let mut schemas = Vec::new();
        let (children, parents): (Vec<_>, Vec<_>) = doctypes.into_iter().partition(|m| m.child);
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
            migrations: &[],
            migrations_dir: None,
            jobs: Vec::new(),
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

    /// Add background jobs (a name defined twice is an error).
    pub fn with_jobs(mut self, jobs: &[crate::jobs::Job]) -> Result<App, String> {
        for job in jobs {
            let well_formed = !job.name.is_empty()
                && job.name.len() <= 140
                && job.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b));
            if !well_formed {
                return Err(format!("job name `{}`: use 1–140 of a-z 0-9 _ . : -", job.name));
            }
            if self.job(job.name).is_some() {
                return Err(format!("job `{}` is defined twice", job.name));
            }
            self.jobs.push(*job);
        }
        Ok(self)
    }

    /// A background job by name.
    pub fn job(&self, name: &str) -> Option<&crate::jobs::Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    pub fn jobs(&self) -> &[crate::jobs::Job] {
        &self.jobs
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
