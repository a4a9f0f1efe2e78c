//! Desired schema vs current schema -> ordered operations, up and down. Renames come only from
//! `renamed_from`; a dropped and an added column with the same definition get a hint.

use std::collections::BTreeSet;

use super::classify::{Hints, classify};
use super::model::{Column, Schema, Table};
use super::ops::{Op, ReplayError, Step};
use super::renames;

/// A revision's operations in both directions.
#[derive(Debug, Clone, Default)]
pub struct Diff {
    pub up: Vec<Step>,
    pub down: Vec<Step>,
}

impl Diff {
    /// Only changes without database effect (Select options, application defaults): no revision.
    pub fn is_empty(&self) -> bool {
        self.up.iter().all(|s| s.code == "M060")
    }
}

/// Everything that can be wrong with a desired schema before diffing.
pub fn check_identifiers(desired: &Schema) -> Result<(), ReplayError> {
    for t in desired.tables.values() {
        let long = std::iter::once(t.name.as_str())
            .chain(t.columns.iter().map(|c| c.name.as_str()))
            .chain(t.indexes.iter().map(|i| i.name.as_str()))
            .find(|n| n.len() > 63);
        if let Some(n) = long {
            return Err(ReplayError(format!(
                "M090: identifier `{n}` is longer than 63 bytes; PostgreSQL would truncate it silently: shorten it"
            )));
        }
    }
    Ok(())
}

/// The operations that turn `current` into `desired` (and back). A `renamed_from` that names
/// nothing the chain has is an error naming the DocType file, the field and the key.
pub fn diff(current: &Schema, desired: &Schema) -> Result<Diff, ReplayError> {
    check_identifiers(desired)?;
    let (desired, renames) = renames::strip(desired);
    renames.check(current, &desired)?;
    let (table_renames, column_renames) = (&renames.tables, &renames.columns);
    let (up_ops, up_hints) = plan(current, &desired, table_renames, column_renames);
    let up = classify(up_ops, current, &up_hints)?;
    let mut after = current.clone();
    for s in &up {
        s.op.replay(&mut after)?;
    }
    let back_tables: Vec<(String, String)> = table_renames.iter().map(|(a, b)| (b.clone(), a.clone())).collect();
    let back_columns: Vec<(String, String, String)> = column_renames
        .iter()
        .map(|(t, a, b)| {
            let t = table_renames.iter().find(|(_, new)| new == t).map_or(t.clone(), |(old, _)| old.clone());
            (t, b.clone(), a.clone())
        })
        .collect();
    let (down_ops, down_hints) = plan(&after, current, &back_tables, &back_columns);
    let down = classify(down_ops, &after, &down_hints)?;
    Ok(Diff { up, down })
}

/// Plan the operations, in an order every dialect can execute: renames, drops of foreign keys
/// and indexes, dropped tables, new tables, column changes, column drops, then new indexes and
/// foreign keys.
fn plan(
    from: &Schema,
    to: &Schema,
    table_renames: &[(String, String)],
    column_renames: &[(String, String, String)],
) -> (Vec<Op>, Hints) {
    let mut ops = Vec::new();
    let mut hints = Hints::default();
    let mut work = from.clone();
    let push = |ops: &mut Vec<Op>, work: &mut Schema, op: Op| {
        // The planner only emits operations that fit `work`.
        let _ = op.replay(work);
        ops.push(op);
    };

    for (old, new) in table_renames {
        if work.tables.contains_key(old) && !work.tables.contains_key(new) && to.tables.contains_key(new) {
            push(&mut ops, &mut work, Op::RenameTable { table: old.clone(), to: new.clone() });
        }
    }
    for (table, old, new) in column_renames {
        let Some(t) = work.tables.get(table) else { continue };
        if t.column(old).is_some() && t.column(new).is_none() {
            push(&mut ops, &mut work, Op::RenameColumn { table: table.clone(), column: old.clone(), to: new.clone() });
        }
    }

    let common: Vec<String> = work.tables.keys().filter(|t| to.tables.contains_key(*t)).cloned().collect();
    let mut deferred_drops: Vec<Op> = Vec::new();

    // Foreign keys and indexes that go away (before their columns or tables do).
    for name in &common {
        let (cur, want) = (&work.tables[name], &to.tables[name]);
        let mut drops = Vec::new();
        for c in &cur.columns {
            let Some(r) = &c.references else { continue };
            if want.column(&c.name).and_then(|w| w.references.as_ref()) != Some(r) {
                drops.push(Op::DropForeignKey { table: name.clone(), column: c.name.clone(), references: r.clone() });
            }
        }
        let added: Vec<&super::model::Index> = want.indexes.iter().filter(|i| cur.index(&i.name) != Some(*i)).collect();
        for ix in &cur.indexes {
            if want.index(&ix.name) == Some(ix) {
                continue;
            }
            // An index replaced by one on changed columns sharing its first column: create the
            // new one first, then drop this one (M044).
            let survives = ix.columns.iter().all(|c| want.column(c).is_some());
            let swap = added
                .iter()
                .find(|a| !a.unique && !ix.unique && a.name != ix.name && a.columns.first() == ix.columns.first());
            // The same columns becoming (or ceasing to be) unique: also create the new index
            // before dropping this one, so the table is never without an index on them.
            let same_columns = added.iter().any(|a| a.columns == ix.columns);
            match swap {
                Some(a) if survives => {
                    hints.index_swaps.insert((name.clone(), ix.name.clone()));
                    hints.index_swaps.insert((name.clone(), a.name.clone()));
                    deferred_drops.push(Op::DropIndex { table: name.clone(), index: ix.clone() });
                }
                _ if same_columns && survives => {
                    deferred_drops.push(Op::DropIndex { table: name.clone(), index: ix.clone() })
                }
                _ => drops.push(Op::DropIndex { table: name.clone(), index: ix.clone() }),
            }
        }
        for op in drops {
            push(&mut ops, &mut work, op);
        }
    }

    // Dropped tables: tables that others (also dropped) reference go last.
    let mut dropped: Vec<String> = work.tables.keys().filter(|t| !to.tables.contains_key(*t)).cloned().collect();
    let mut ordered_drops = Vec::new();
    while !dropped.is_empty() {
        let referenced = |t: &str, among: &[String]| {
            among.iter().any(|o| {
                o != t && work.tables[o].columns.iter().any(|c| c.references.as_ref().is_some_and(|r| r.table == t))
            })
        };
        let pos = dropped.iter().position(|t| !referenced(t, &dropped)).unwrap_or(0);
        ordered_drops.push(dropped.remove(pos));
    }
    for t in ordered_drops {
        push(&mut ops, &mut work, Op::DropTable { table: t });
    }

    // New tables: referenced tables first (cycles are fine: PostgreSQL adds those foreign keys
    // after every table exists).
    let mut created: Vec<&Table> = to.tables.values().filter(|t| !work.tables.contains_key(&t.name)).collect();
    let mut ordered: Vec<&Table> = Vec::new();
    while !created.is_empty() {
        let waits = |t: &Table, among: &[&Table]| {
            t.columns.iter().any(|c| {
                c.references.as_ref().is_some_and(|r| r.table != t.name && among.iter().any(|o| o.name == r.table))
            })
        };
        let pos = created.iter().position(|t| !waits(t, &created)).unwrap_or(0);
        ordered.push(created.remove(pos));
    }
    for t in &ordered {
        let mut bare = (*t).clone();
        bare.indexes.clear();
        push(&mut ops, &mut work, Op::CreateTable { table: bare });
        for ix in &t.indexes {
            push(&mut ops, &mut work, Op::AddIndex { table: t.name.clone(), index: ix.clone() });
        }
    }

    // Columns of tables that stay.
    let mut new_fks = Vec::new();
    for name in &common {
        let want = &to.tables[name];
        let added: Vec<&Column> = want.columns.iter().filter(|c| work.tables[name].column(&c.name).is_none()).collect();
        let removed: Vec<Column> =
            work.tables[name].columns.iter().filter(|c| want.column(&c.name).is_none()).cloned().collect();
        for c in &added {
            let mut col = (*c).clone();
            let backfill = if col.not_null && col.default.is_none() { col.app_default } else { None };
            col.renamed_from = None;
            push(&mut ops, &mut work, Op::AddColumn { table: name.clone(), column: col, backfill });
        }
        for w in &want.columns {
            let Some(cur) = work.tables[name].column(&w.name).cloned() else { continue };
            let mut target = w.clone();
            // Foreign keys change through their own operations.
            target.references.clone_from(&cur.references);
            if target != cur {
                let removed_options: Vec<&String> = cur.options.iter().filter(|o| !w.options.contains(o)).collect();
                if !removed_options.is_empty() && !w.options.is_empty() {
                    push(
                        &mut ops,
                        &mut work,
                        Op::CheckValues { table: name.clone(), column: w.name.clone(), allowed: w.options.clone() },
                    );
                }
                push(&mut ops, &mut work, Op::AlterColumn { table: name.clone(), from: cur.clone(), to: target });
            }
            if let Some(r) = &w.references
                && work.tables[name].column(&w.name).and_then(|c| c.references.as_ref()) != Some(r)
            {
                new_fks.push(Op::AddForeignKey { table: name.clone(), column: w.name.clone(), references: r.clone() });
            }
        }
        for r in &removed {
            if let Some(a) = added.iter().find(|a| a.same_ddl(r)) {
                hints.possible_renames.push((name.clone(), r.name.clone(), a.name.clone()));
            }
            push(&mut ops, &mut work, Op::DropColumn { table: name.clone(), column: r.name.clone() });
        }
    }

    // New indexes and foreign keys on tables that stay, then the indexes they replace.
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for name in &common {
        let want = &to.tables[name];
        for ix in &want.indexes {
            if work.tables[name].index(&ix.name).is_none() && seen.insert((name.clone(), ix.name.clone())) {
                push(&mut ops, &mut work, Op::AddIndex { table: name.clone(), index: ix.clone() });
            }
        }
    }
    for op in new_fks {
        push(&mut ops, &mut work, op);
    }
    for op in deferred_drops {
        push(&mut ops, &mut work, op);
    }
    (ops, hints)
}
