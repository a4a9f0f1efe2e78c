//! The `renamed_from` keys of the desired schema: taken out before diffing, and checked against
//! the current schema. A key whose rename is already in the chain (the new name is a current
//! table or column) is ignored, so it may stay in the DocType file; a key naming nothing the
//! chain has is a typo, and an error rather than a silent drop + add.

use std::collections::BTreeMap;

use super::model::{Schema, Table};
use super::ops::ReplayError;

/// The renames a desired schema asks for.
#[derive(Debug, Clone, Default)]
pub struct Renames {
    /// `(old table, new table)`.
    pub tables: Vec<(String, String)>,
    /// `(table as desired, old column, new column)`.
    pub columns: Vec<(String, String, String)>,
    /// The DocType file of each desired table that has one, for messages.
    sources: BTreeMap<String, String>,
}

/// Take the rename keys (and the files, which revisions never store) out of the desired schema.
pub fn strip(desired: &Schema) -> (Schema, Renames) {
    let mut schema = desired.clone();
    let mut renames = Renames::default();
    for t in schema.tables.values_mut() {
        if let Some(source) = t.source.take() {
            renames.sources.insert(t.name.clone(), source);
        }
        if let Some(old) = t.renamed_from.take() {
            renames.tables.push((old, t.name.clone()));
        }
        for c in &mut t.columns {
            if let Some(old) = c.renamed_from.take() {
                renames.columns.push((t.name.clone(), old, c.name.clone()));
            }
        }
    }
    (schema, renames)
}

impl Renames {
    /// `doctypes/x.toml: ` for a desired table, or the table's name.
    fn at(&self, table: &str) -> String {
        self.sources.get(table).map_or_else(|| format!("DocType table `{table}`: "), |s| format!("{s}: "))
    }

    /// The current name of the desired table `table`: itself, the table it is renamed from, or
    /// None for a table the chain does not have.
    fn current_name<'a>(&'a self, current: &Schema, table: &'a str) -> Option<&'a str> {
        if current.tables.contains_key(table) {
            return Some(table);
        }
        self.tables
            .iter()
            .find(|(old, new)| new == table && current.tables.contains_key(old))
            .map(|(old, _)| old.as_str())
    }

    /// Check every key against `current` and the (stripped) `desired` schema. From an empty
    /// chain (the first revision, the committed schema scripts) there is nothing to rename and
    /// the keys are ignored.
    pub fn check(&self, current: &Schema, desired: &Schema) -> Result<(), ReplayError> {
        let from_nothing = current.tables.is_empty();
        for (old, new) in &self.tables {
            if current.tables.contains_key(new) || from_nothing {
                continue;
            }
            if !current.tables.contains_key(old) {
                return Err(ReplayError(format!(
                    "{}`renamed_from` names the table `{old}`, which the migration chain does not have (nor `{new}` yet): fix the DocType's previous name, or remove the key to create `{new}` as a new table",
                    self.at(new)
                )));
            }
            // A previous name still in use would make the rename ambiguous (and its downgrade lossy).
            if desired.tables.contains_key(old) {
                return Err(ReplayError(format!(
                    "{}`{new}` has `renamed_from` naming `{old}`, which is still a table of the DocTypes: rename in one revision, reuse the name in a later one",
                    self.at(new)
                )));
            }
        }
        for (table, old, new) in &self.columns {
            let cur = self.current_name(current, table).and_then(|t| current.tables.get(t));
            if cur.is_some_and(|c| c.column(new).is_some()) || from_nothing {
                continue;
            }
            match cur {
                Some(c) if c.column(old).is_some() => {
                    if desired.tables.get(table).is_some_and(|t: &Table| t.column(old).is_some()) {
                        return Err(ReplayError(format!(
                            "{}`{table}.{new}` has `renamed_from = \"{old}\"`, but `{old}` is still a field: rename in one revision, reuse the name in a later one",
                            self.at(table)
                        )));
                    }
                }
                Some(c) => {
                    return Err(ReplayError(format!(
                        "{}field `{new}` has `renamed_from = \"{old}\"`, but `{}` has no column `{old}` (nor `{new}` yet): fix the key to name the field's current column, or remove it to add `{new}` as a new field",
                        self.at(table),
                        c.name
                    )));
                }
                None => {
                    return Err(ReplayError(format!(
                        "{}field `{new}` has `renamed_from = \"{old}\"`, but `{table}` is a new table: there is no column to rename; remove the key",
                        self.at(table)
                    )));
                }
            }
        }
        Ok(())
    }
}
