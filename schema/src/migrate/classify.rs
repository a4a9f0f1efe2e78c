//! The classification table of MIGRATION_RULES.md: every operation gets a class, a stable rule
//! code, a one-line reason and, for REVIEW and DANGEROUS, what to do instead.

use std::collections::{HashMap, HashSet};

use super::model::{Backfill, Column, ColumnType, Index, Reference, Schema};
use super::ops::{Class, Op, ReplayError, Step};

/// What the diff knows beyond the operations themselves.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// `(table, dropped column, added column)` with identical definitions and no `renamed_from`.
    pub possible_renames: Vec<(String, String, String)>,
    /// `(table, index)`: an index replaced by one on changed columns (M044).
    pub index_swaps: HashSet<(String, String)>,
}

/// Classify `ops` in order, replaying them onto a copy of `before`.
pub fn classify(ops: Vec<Op>, before: &Schema, hints: &Hints) -> Result<Vec<Step>, ReplayError> {
    let mut state = before.clone();
    let mut created: HashSet<String> = HashSet::new();
    let mut added: HashMap<(String, String), Column> = HashMap::new();
    let mut steps = Vec::with_capacity(ops.len());
    for op in ops {
        let (class, code, reason, recommendation) = classify_one(&op, &created, &added, hints);
        match &op {
            Op::CreateTable { table } => {
                created.insert(table.name.clone());
            }
            Op::AddColumn { table, column, .. } => {
                added.insert((table.clone(), column.name.clone()), column.clone());
            }
            _ => {}
        }
        op.replay(&mut state)?;
        steps.push(Step { op, class, code: code.to_string(), reason, recommendation });
    }
    Ok(steps)
}

/// The class of a revision: the highest of its steps (SAFE when empty).
pub fn max_class<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Class {
    steps.into_iter().map(|s| s.class).max().unwrap_or(Class::Safe)
}

/// Codes of the DANGEROUS steps, which `acknowledge` must list before `m migrate` applies them.
pub fn dangerous_codes<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Vec<String> {
    let mut codes: Vec<String> =
        steps.into_iter().filter(|s| s.class == Class::Dangerous).map(|s| s.code.clone()).collect();
    codes.sort();
    codes.dedup();
    codes
}

type Verdict = (Class, &'static str, String, Option<String>);

fn safe(code: &'static str, reason: String) -> Verdict {
    (Class::Safe, code, reason, None)
}

/// A REVIEW verdict with what to check before applying.
fn review(code: &'static str, reason: String, recommendation: impl Into<String>) -> Verdict {
    (Class::Review, code, reason, Some(recommendation.into()))
}

/// A DANGEROUS verdict with what to do instead (or before).
fn dangerous(code: &'static str, reason: String, recommendation: impl Into<String>) -> Verdict {
    (Class::Dangerous, code, reason, Some(recommendation.into()))
}

/// What earlier operations of the revision did, for the rules that depend on it.
struct Seen<'a> {
    /// Tables created in this revision.
    created: &'a HashSet<String>,
    /// `(table, column)` added in this revision.
    added: &'a HashMap<(String, String), Column>,
    hints: &'a Hints,
}

impl Seen<'_> {
    fn is_new_table(&self, table: &str) -> bool {
        self.created.contains(table)
    }

    fn is_new_column(&self, table: &str, column: &str) -> bool {
        self.added.contains_key(&(table.to_string(), column.to_string()))
    }

    fn is_index_swap(&self, table: &str, index: &str) -> bool {
        self.hints.index_swaps.contains(&(table.to_string(), index.to_string()))
    }
}

fn classify_one(
    op: &Op,
    created: &HashSet<String>,
    added: &HashMap<(String, String), Column>,
    hints: &Hints,
) -> Verdict {
    let seen = Seen { created, added, hints };
    match op {
        Op::CreateTable { table } => safe("M001", format!("create table `{}`", table.name)),
        Op::DropTable { table } => drop_table(table, &seen),
        Op::RenameTable { table, to } => rename_table(table, to),
        Op::AddColumn { table, column, backfill } => add_column(table, column, *backfill, &seen),
        Op::DropColumn { table, column } => drop_column(table, column, &seen),
        Op::RenameColumn { table, column, to } => rename_column(table, column, to),
        Op::AlterColumn { table, from, to } => classify_alter(table, from, to, seen.is_new_table(table), added),
        Op::AddIndex { table, index } => add_index(table, index, &seen),
        Op::DropIndex { table, index } => drop_index(table, index, &seen),
        Op::AddForeignKey { table, column, references } => add_foreign_key(table, column, references, &seen),
        Op::DropForeignKey { table, column, references } => drop_foreign_key(table, column, references),
        Op::CheckValues { table, column, allowed } => check_values(table, column, allowed),
        Op::Sql { .. } => review(
            "M080",
            "hand-written SQL step".to_string(),
            "it cannot be analysed: review it for locking and data loss, and test it on a copy of production"
                .to_string(),
        ),
    }
}

/// M002.
fn drop_table(table: &str, seen: &Seen) -> Verdict {
    if seen.is_new_table(table) {
        return safe("M002", format!("drop table `{table}` created in this revision"));
    }
    dangerous(
        "M002",
        format!("drop table `{table}` and every row in it"),
        format!(
            "dropping `{table}` loses its data: stop using it for one release, back it up, then drop it; acknowledge M002 in the revision to apply"
        ),
    )
}

/// M003.
fn rename_table(table: &str, to: &str) -> Verdict {
    dangerous(
        "M003",
        format!("rename table `{table}` to `{to}`"),
        format!(
            "renaming `{table}` to `{to}` breaks code still running against the old name: keep the physical name, or create `{to}`, write both, backfill, switch readers, then drop `{table}`"
        ),
    )
}

/// M010–M013, M051 (a Link column with a default).
fn add_column(table: &str, column: &Column, backfill: Option<Backfill>, seen: &Seen) -> Verdict {
    let c = &column.name;
    let desc = describe_column(column);
    if seen.is_new_table(table) {
        return safe("M010", format!("add column `{c}` {desc} to the new table `{table}`"));
    }
    if let Some(b) = backfill {
        return review(
            "M012",
            format!("add NOT NULL column `{table}.{c}` {desc}, existing rows filled with `{}`", backfill_word(b)),
            format!(
                "`{c}` is computed per row for existing rows of `{table}`: check the backfill value suits them, or add it nullable, backfill with a data step, then make it required"
            ),
        );
    }
    if column.not_null && column.default.is_none() {
        return review(
            "M013",
            format!("add NOT NULL column `{table}.{c}` {desc} without a default"),
            format!(
                "`{c}` is NOT NULL without a default and `{table}` may already have rows: add it with a default -> backfill -> remove the default, or make it optional"
            ),
        );
    }
    if let (Some(r), Some(_)) = (&column.references, &column.default) {
        return review(
            "M051",
            format!(
                "add Link column `{table}.{c}` {desc}: existing rows get the default, checked against `{}`",
                r.table
            ),
            format!(
                "every existing row of `{table}` gets the default, which must be the name of a `{}` row: make sure it exists, or add `{c}` without a default",
                r.table
            ),
        );
    }
    if column.default.is_some() {
        return safe("M011", format!("add column `{table}.{c}` {desc} with a constant default"));
    }
    let fk = if column.references.is_some() { " (new Link: M050)" } else { "" };
    safe("M010", format!("add nullable column `{table}.{c}` {desc}{fk}"))
}

/// M014, or M016 when an added column has the same definition.
fn drop_column(table: &str, column: &str, seen: &Seen) -> Verdict {
    if let Some((_, _, to)) = seen.hints.possible_renames.iter().find(|(t, from, _)| t == table && from == column) {
        return dangerous(
            "M016",
            format!("drop column `{table}.{column}` (possible rename to `{to}`)"),
            format!(
                "`{to}` was added and `{column}` dropped with the same definition: if this is a rename, set `renamed_from = \"{column}\"` on `{to}`; otherwise dropping `{column}` loses its data"
            ),
        );
    }
    dangerous(
        "M014",
        format!("drop column `{table}.{column}` and its data"),
        format!(
            "dropping `{column}` loses its data: stop reading and writing it for one release, back it up, then drop it; acknowledge M014 in the revision to apply"
        ),
    )
}

/// M015.
fn rename_column(table: &str, column: &str, to: &str) -> Verdict {
    dangerous(
        "M015",
        format!("rename column `{table}.{column}` to `{to}`"),
        format!(
            "renaming `{column}` to `{to}` breaks code still running against the old name: add `{to}`, write both, backfill, switch readers, then drop `{column}`"
        ),
    )
}

/// M040, M041, M044 (the new half of an index swap).
fn add_index(table: &str, index: &Index, seen: &Seen) -> Verdict {
    let cols = index.columns.join(", ");
    let kind = if index.unique { "unique index" } else { "index" };
    if seen.is_new_table(table) {
        return safe(
            if index.unique { "M041" } else { "M040" },
            format!("{kind} `{}` on the new table `{table}` ({cols})", index.name),
        );
    }
    if seen.is_index_swap(table, &index.name) {
        return review("M044", format!("{kind} `{}` on `{table}` ({cols}) replaces an index on changed columns", index.name), "queries run without the old index between the two steps: create the new index first (this revision does), then drop the old one".to_string());
    }
    if index.unique {
        // Columns added in this revision as nullable without default hold only NULLs.
        let all_new_nulls = index.columns.iter().all(|c| {
            seen.added.get(&(table.to_string(), c.clone())).is_some_and(|col| !col.not_null && col.default.is_none())
        });
        if all_new_nulls {
            return safe(
                "M041",
                format!("unique index `{}` on `{table}` ({cols}): the new column(s) hold only NULLs", index.name),
            );
        }
        return review(
            "M041",
            format!("make `{table}` ({cols}) unique with index `{}`", index.name),
            format!(
                "the index fails while `{table}` has duplicate ({cols}) values: find and fix duplicates first (SELECT {cols}, count(*) FROM {table} GROUP BY {cols} HAVING count(*) > 1)"
            ),
        );
    }
    safe("M040", format!("add index `{}` on `{table}` ({cols}) (PostgreSQL: CONCURRENTLY)", index.name))
}

/// M042, M043, M044 (the old half of an index swap).
fn drop_index(table: &str, index: &Index, seen: &Seen) -> Verdict {
    let cols = index.columns.join(", ");
    if seen.is_index_swap(table, &index.name) {
        return review(
            "M044",
            format!("drop index `{}` on `{table}` ({cols}), replaced by an index on changed columns", index.name),
            "the replacement index is created first; check queries that relied on the old column list".to_string(),
        );
    }
    if index.unique {
        return review(
            "M043",
            format!("drop unique index `{}` on `{table}` ({cols})", index.name),
            format!(
                "`{table}` ({cols}) stops being unique: duplicates can appear, and rolling back (recreating the index) then fails"
            ),
        );
    }
    safe("M042", format!("drop index `{}` on `{table}` ({cols})", index.name))
}

/// M050 (on a new column), M051 (on an existing one).
fn add_foreign_key(table: &str, column: &str, references: &Reference, seen: &Seen) -> Verdict {
    if seen.is_new_table(table) || seen.is_new_column(table, column) {
        return safe("M050", format!("foreign key `{table}.{column}` -> `{}`.name on a new column", references.table));
    }
    review(
        "M051",
        format!("add foreign key `{table}.{column}` -> `{}`.name on an existing column", references.table),
        format!(
            "rows of `{table}` whose `{column}` matches no `{}`.name make it fail: find them first (PostgreSQL adds it NOT VALID, then validates)",
            references.table
        ),
    )
}

/// M052.
fn drop_foreign_key(table: &str, column: &str, references: &Reference) -> Verdict {
    review(
        "M052",
        format!("drop foreign key `{table}.{column}` -> `{}`.name", references.table),
        format!(
            "`{table}.{column}` is no longer checked against `{}`: rows can point at missing documents, and rolling back then fails",
            references.table
        ),
    )
}

/// M061.
fn check_values(table: &str, column: &str, allowed: &[String]) -> Verdict {
    review(
        "M061",
        format!("check that `{table}.{column}` holds only {}", allowed.join(" / ")),
        format!(
            "the migration fails while rows of `{table}` hold a removed option of `{column}`: update them to a remaining option first"
        ),
    )
}

fn backfill_word(b: Backfill) -> &'static str {
    match b {
        Backfill::Today => "today",
        Backfill::Now => "now",
    }
}

/// `varchar(140) NOT NULL DEFAULT 'x'`, for reasons.
pub fn describe_column(c: &Column) -> String {
    let mut s = c.ty.postgres();
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    if let Some(d) = &c.default {
        s.push_str(&format!(" DEFAULT {d}"));
    }
    s
}

/// How a type change classifies (M030–M034), or None when the type is unchanged.
pub fn type_change(from: ColumnType, to: ColumnType) -> Option<(Class, &'static str)> {
    use ColumnType as T;
    if from == to {
        return None;
    }
    let widen_text = (Class::Review, "M030");
    let widen_num = (Class::Review, "M031");
    let narrow = (Class::Dangerous, "M032");
    Some(match (from, to) {
        (T::Varchar(Some(a)), T::Varchar(Some(b))) if b > a => widen_text,
        (T::Varchar(Some(_)), T::Varchar(Some(_))) => narrow,
        (T::Varchar(_), T::Varchar(None) | T::Text) => widen_text,
        (T::Varchar(None) | T::Text, T::Varchar(Some(_))) => narrow,
        (T::Text, T::Varchar(None)) => narrow,
        (T::Integer, T::BigInt | T::Double) => widen_num,
        (T::BigInt, T::Integer) => narrow,
        (T::Integer | T::BigInt, T::Numeric(p, s)) if p - s.min(p) >= 19 => widen_num,
        (T::Numeric(p1, s1), T::Numeric(p2, s2)) if s1 == s2 && p2 >= p1 => widen_num,
        (T::Numeric(..), T::Numeric(..)) => narrow,
        (T::Timestamp, T::Timestamptz) | (T::Timestamptz, T::Timestamp) => (Class::Review, "M034"),
        _ => (Class::Dangerous, "M033"),
    })
}

fn classify_alter(
    table: &str,
    from: &Column,
    to: &Column,
    new_table: bool,
    added: &HashMap<(String, String), Column>,
) -> Verdict {
    let c = &from.name;
    let mut parts: Vec<String> = Vec::new();
    let mut worst: Option<(Class, &'static str)> = None;
    let mut bump = |v: (Class, &'static str)| {
        if worst.is_none_or(|w| v.0 > w.0) {
            worst = Some(v);
        }
    };
    if let Some(v) = type_change(from.ty, to.ty) {
        parts.push(format!("type {} -> {}", from.ty, to.ty));
        bump(v);
    }
    if from.not_null != to.not_null {
        if to.not_null {
            parts.push("nullable -> NOT NULL".into());
            bump((Class::Review, "M020"));
        } else {
            parts.push("NOT NULL -> nullable".into());
            bump((Class::Safe, "M021"));
        }
    }
    if from.default != to.default {
        let show = |d: &Option<super::model::Literal>| d.as_ref().map_or("none".to_string(), ToString::to_string);
        parts.push(format!("default {} -> {}", show(&from.default), show(&to.default)));
        bump((Class::Safe, "M022"));
    }
    if from.options != to.options {
        parts.push("Select options".into());
        bump((Class::Safe, "M060"));
    }
    if from.app_default != to.app_default {
        parts.push("application default".into());
        bump((Class::Safe, "M060"));
    }
    let (class, code) = worst.unwrap_or((Class::Safe, "M060"));
    let reason = format!("alter column `{table}.{c}`: {}", parts.join(", "));
    let fresh = new_table || added.contains_key(&(table.to_string(), c.clone()));
    if fresh || class == Class::Safe {
        return (Class::Safe, code, reason, None);
    }
    let rec = match code {
        "M020" => format!(
            "the change fails while `{table}.{c}` holds NULLs: backfill them first (UPDATE … SET {c} = … WHERE {c} IS NULL)"
        ),
        "M030" => format!("compatible: existing values of `{c}` fit; cheap on PostgreSQL"),
        "M031" => {
            format!("compatible, but PostgreSQL rewrites `{table}` for `{c}` (locks it for the duration): schedule it")
        }
        "M032" => format!(
            "values of `{c}` that no longer fit make it fail or get truncated: validate the data first; acknowledge M032 in the revision to apply"
        ),
        "M033" => format!(
            "`{c}` changes from {} to {}: add `{c}_new`, convert with a data step, switch, drop `{c}`; acknowledge M033 to apply as is",
            from.ty, to.ty
        ),
        "M034" => format!("the meaning of stored `{c}` values changes with the time zone: convert them explicitly"),
        _ => String::new(),
    };
    (class, code, reason, Some(rec).filter(|r| !r.is_empty()))
}
