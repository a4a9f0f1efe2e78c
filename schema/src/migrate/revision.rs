//! Revision files (`migrations/<id>_<name>.toml`) and the chain they form.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::classify::{Hints, classify, dangerous_codes, max_class};
use super::diff::Diff;
use super::model::Schema;
use super::ops::{Class, Op, ReplayError, Step};

/// One revision file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    pub id: String,
    /// None for the root, one normally, two for a merge.
    #[serde(default)]
    pub parents: Vec<String>,
    pub name: String,
    pub created: String,
    pub class: Class,
    /// Rule codes of DANGEROUS steps the author accepts, e.g. `["M014"]`.
    #[serde(default)]
    pub acknowledge: Vec<String>,
    #[serde(default)]
    pub up: Vec<Step>,
    #[serde(default)]
    pub down: Vec<Step>,
}

const HEADER: &str =
    "# Migration revision written by `m migrate:create`; reviewed with its snapshot in snapshots/migrations/.
# A DANGEROUS step is applied only when its code is listed in `acknowledge`.
";

impl Revision {
    pub fn new(id: &str, name: &str, created: &str, parents: Vec<String>, diff: Diff) -> Revision {
        let class = max_class(&diff.up);
        Revision {
            id: id.to_string(),
            parents,
            name: name.to_string(),
            created: created.to_string(),
            class,
            acknowledge: Vec::new(),
            up: diff.up,
            down: diff.down,
        }
    }

    pub fn file_name(&self) -> String {
        format!("{}_{}.toml", self.id, self.name)
    }

    /// The file's text: one `[[up]]` / `[[down]]` table per step, nested values as dotted keys
    /// and inline tables (one column per line), so a reviewer reads a step in one place.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        let scalar = |k: &str, v: toml::Value| format!("{k} = {}\n", inline(&v));
        out.push_str(&scalar("id", self.id.clone().into()));
        out.push_str(&scalar("parents", toml::Value::Array(self.parents.iter().map(|p| p.clone().into()).collect())));
        out.push_str(&scalar("name", self.name.clone().into()));
        out.push_str(&scalar("created", self.created.clone().into()));
        out.push_str(&scalar("class", self.class.as_str().into()));
        out.push_str(&scalar(
            "acknowledge",
            toml::Value::Array(self.acknowledge.iter().map(|p| p.clone().into()).collect()),
        ));
        for (section, steps) in [("up", &self.up), ("down", &self.down)] {
            for step in steps {
                out.push_str(&format!("\n[[{section}]]\n"));
                let Ok(toml::Value::Table(t)) = toml::Value::try_from(step) else { continue };
                for (k, v) in t {
                    match v {
                        toml::Value::Table(inner) => {
                            for (k2, v2) in inner {
                                out.push_str(&format!("{k}.{k2} = {}\n", inline(&v2)));
                            }
                        }
                        v => out.push_str(&format!("{k} = {}\n", inline(&v))),
                    }
                }
            }
        }
        out
    }

    pub fn is_merge(&self) -> bool {
        self.parents.len() > 1
    }
}

/// A value on one line, except an array of tables: one element per line.
fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            let lines: Vec<String> = items.iter().map(|i| format!("    {},\n", inline(i))).collect();
            format!("[\n{}]", lines.concat())
        }
        toml::Value::Table(t) => {
            let parts: Vec<String> = t.iter().map(|(k, v)| format!("{} = {}", key(k), inline(v))).collect();
            format!("{{ {} }}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// SHA-256 of the content with CRLF normalised to LF: a Windows checkout is not an edit.
pub fn checksum(content: &str) -> String {
    use sha2::Digest;
    let normalised = content.replace("\r\n", "\n");
    let digest = sha2::Sha256::digest(normalised.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loaded revision with where it came from.
#[derive(Debug, Clone)]
pub struct RevisionFile {
    pub file: String,
    pub checksum: String,
    pub revision: Revision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainError(pub String);

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChainError {}

impl From<ReplayError> for ChainError {
    fn from(e: ReplayError) -> Self {
        ChainError(e.0)
    }
}

/// The revisions in apply order (parents before children, then by id).
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub revisions: Vec<RevisionFile>,
}

/// A revision's steps re-classified against the schema it applies to: a hand-edited class
/// never lowers what the rules say.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub before: Schema,
    pub up: Vec<Step>,
    pub class: Class,
    /// DANGEROUS codes not listed in `acknowledge`.
    pub unacknowledged: Vec<String>,
}

impl Chain {
    /// Parse and order `(file name, content)` pairs.
    pub fn load(files: &[(String, String)]) -> Result<Chain, ChainError> {
        let mut by_id: BTreeMap<String, RevisionFile> = BTreeMap::new();
        for (file, content) in files {
            let revision: Revision = toml::from_str(content)
                .map_err(|e| ChainError(format!("migrations/{file}: {}", e.to_string().trim())))?;
            let expected = revision.file_name();
            if *file != expected {
                return Err(ChainError(format!(
                    "migrations/{file}: the file name must be `{expected}` (from its id and name)"
                )));
            }
            if revision.parents.len() > 2 {
                return Err(ChainError(format!("migrations/{file}: a revision has at most two parents")));
            }
            if by_id.contains_key(&revision.id) {
                return Err(ChainError(format!("migrations/{file}: revision id {} is used twice", revision.id)));
            }
            let checksum = checksum(content);
            by_id.insert(revision.id.clone(), RevisionFile { file: file.clone(), checksum, revision });
        }
        for r in by_id.values() {
            for p in &r.revision.parents {
                if !by_id.contains_key(p) {
                    return Err(ChainError(format!("migrations/{}: parent revision {p} does not exist", r.file)));
                }
            }
        }
        let roots: Vec<&str> =
            by_id.values().filter(|r| r.revision.parents.is_empty()).map(|r| r.file.as_str()).collect();
        if roots.len() > 1 {
            return Err(ChainError(format!("more than one root revision (no parents): {}", roots.join(", "))));
        }
        // Kahn's algorithm, smallest id first.
        let mut pending: BTreeMap<String, usize> =
            by_id.values().map(|r| (r.revision.id.clone(), r.revision.parents.len())).collect();
        let mut ordered = Vec::new();
        while let Some(id) = pending.iter().find(|(_, n)| **n == 0).map(|(id, _)| id.clone()) {
            pending.remove(&id);
            for r in by_id.values() {
                if r.revision.parents.contains(&id)
                    && let Some(n) = pending.get_mut(&r.revision.id)
                {
                    *n -= 1;
                }
            }
            ordered.push(id);
        }
        if !pending.is_empty() {
            return Err(ChainError(format!("revisions form a cycle: {:?}", pending.keys().collect::<Vec<_>>())));
        }
        let revisions = ordered.into_iter().filter_map(|id| by_id.remove(&id)).collect();
        Ok(Chain { revisions })
    }

    pub fn get(&self, id: &str) -> Option<&RevisionFile> {
        self.revisions.iter().find(|r| r.revision.id == id)
    }

    /// Revisions no other revision names as parent.
    pub fn heads(&self) -> Vec<&RevisionFile> {
        let parents: BTreeSet<&str> =
            self.revisions.iter().flat_map(|r| r.revision.parents.iter().map(String::as_str)).collect();
        self.revisions.iter().filter(|r| !parents.contains(r.revision.id.as_str())).collect()
    }

    /// `id` and every revision it descends from.
    pub fn ancestors(&self, id: &str) -> BTreeSet<String> {
        let parents: HashMap<&str, &Vec<String>> =
            self.revisions.iter().map(|r| (r.revision.id.as_str(), &r.revision.parents)).collect();
        let mut seen = BTreeSet::new();
        let mut stack = vec![id.to_string()];
        while let Some(x) = stack.pop() {
            if seen.insert(x.clone())
                && let Some(ps) = parents.get(x.as_str())
            {
                stack.extend(ps.iter().cloned());
            }
        }
        seen
    }

    /// The schema after applying `ids` (in chain order).
    pub fn replay_set(&self, ids: &BTreeSet<String>) -> Result<Schema, ChainError> {
        let mut schema = Schema::default();
        for r in self.revisions.iter().filter(|r| ids.contains(&r.revision.id)) {
            for s in &r.revision.up {
                s.op.replay(&mut schema).map_err(|e| ChainError(format!("migrations/{}: {e}", r.file)))?;
            }
        }
        Ok(schema)
    }

    /// The schema after every revision: the current schema for diffs.
    pub fn replay(&self) -> Result<Schema, ChainError> {
        self.replay_set(&self.revisions.iter().map(|r| r.revision.id.clone()).collect())
    }

    /// The schema a revision applies to: its ancestors replayed.
    pub fn before(&self, id: &str) -> Result<Schema, ChainError> {
        let mut ids = self.ancestors(id);
        ids.remove(id);
        self.replay_set(&ids)
    }

    /// Re-classify a revision's steps against the schema of its ancestors.
    pub fn analyze(&self, id: &str) -> Result<Analysis, ChainError> {
        self.analyze_on(id, self.before(id)?)
    }

    /// Re-classify a revision's steps against `before`: the schema of the database it is applied
    /// to, which after a merge also holds the other branch's changes.
    pub fn analyze_on(&self, id: &str, before: Schema) -> Result<Analysis, ChainError> {
        let r = self.get(id).ok_or_else(|| ChainError(format!("no revision {id}")))?;
        let ops: Vec<Op> = r.revision.up.iter().map(|s| s.op.clone()).collect();
        let computed =
            classify(ops, &before, &Hints::default()).map_err(|e| ChainError(format!("migrations/{}: {e}", r.file)))?;
        let up: Vec<Step> = r
            .revision
            .up
            .iter()
            .zip(computed)
            .map(|(declared, c)| if c.class > declared.class { c } else { declared.clone() })
            .collect();
        let class = max_class(&up).max(r.revision.class);
        let unacknowledged = dangerous_codes(&up).into_iter().filter(|c| !r.revision.acknowledge.contains(c)).collect();
        Ok(Analysis { before, up, class, unacknowledged })
    }

    /// Objects two branches both touch (a table-level change conflicts with any change inside
    /// that table; raw SQL conflicts with everything).
    pub fn conflicts(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
        let inside = |whole: &str, part: &str| {
            whole == "<sql>"
                || part == "<sql>"
                || part == whole
                || part.starts_with(&format!("{whole}."))
                || part.starts_with(&format!("{whole}#"))
        };
        let mut out: Vec<String> = Vec::new();
        for x in a {
            for y in b {
                if inside(x, y) || inside(y, x) {
                    out.push(if x.len() >= y.len() { x.clone() } else { y.clone() });
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Objects (tables, columns, indexes) the revisions after `base` on the way to `head` touch.
    pub fn touched_since(&self, head: &str, base: &BTreeSet<String>) -> BTreeSet<String> {
        let mine = self.ancestors(head);
        self.revisions
            .iter()
            .filter(|r| mine.contains(&r.revision.id) && !base.contains(&r.revision.id))
            .flat_map(|r| r.revision.up.iter().flat_map(|s| s.op.objects()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVISION: &str = r#"
id = "20260101000000"
name = "notes"
created = "2026-01-01T00:00:00Z"
class = "SAFE"

[[up]]
op = "create_table"
table.name = "note"
table.columns = [{ name = "id", type = "varchar(36)", primary_key = true, not_null = true }]
class = "SAFE"
code = "M001"
reason = "create table `note`"

[[up]]
op = "add_index"
table = "note"
index.name = "note__id_idx"
index.columns = ["id"]
class = "SAFE"
code = "M040"
reason = "an index"
"#;

    fn load(text: &str) -> Result<Chain, ChainError> {
        Chain::load(&[("20260101000000_notes.toml".to_string(), text.to_string())])
    }

    #[test]
    fn a_well_formed_revision_loads() {
        let chain = load(REVISION).expect("loads");
        assert_eq!(chain.revisions.len(), 1);
        assert_eq!(chain.revisions[0].revision.up.len(), 2);
    }

    /// A misspelt key in a hand-edited step is refused, wherever it is, instead of being ignored.
    #[test]
    fn misspelt_keys_in_steps_are_errors() {
        for (from, to, key) in [
            ("index.columns = [\"id\"]", "index.columns = [\"id\"]\nindex.uniqe = true", "uniqe"),
            ("table = \"note\"", "table = \"note\"\ntabel = \"note\"", "tabel"),
            ("primary_key = true, not_null", "primary_key = true, not_nul = true, not_null", "not_nul"),
            ("reason = \"an index\"", "reason = \"an index\"\nrecomendation = \"x\"", "recomendation"),
        ] {
            assert!(REVISION.contains(from), "{from}");
            let Err(e) = load(&REVISION.replacen(from, to, 1)) else { panic!("{key}: accepted") };
            assert!(e.0.contains(key), "{key}: {}", e.0);
            assert!(e.0.contains("20260101000000_notes.toml"), "{}", e.0);
        }
        let Err(e) = load(&REVISION.replacen("code = \"M040\"\n", "", 1)) else { panic!("accepted without a code") };
        assert!(e.0.contains("code"), "{}", e.0);
    }
}
