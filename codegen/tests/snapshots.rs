//! Data-driven snapshot tests of m-codegen.
//!
//! Every directory under `tests/fixtures/valid/` is an application; its IR, the DDL of both
//! dialects, the OpenAPI document, the ER diagram and the generated Rust source are snapshotted.
//! Every case under `tests/fixtures/invalid/` (a file, or a directory for cross-file errors) must
//! fail validation; its rendered diagnostics are snapshotted.
//!
//! Snapshots live in `snapshots/codegen/` at the workspace root, named
//! `valid__<case>__<output>` and `invalid__<case>`. To add a case, add the fixture and run
//! `INSTA_UPDATE=always cargo test -p m-codegen --test snapshots`, then review the new files.

mod common;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{Case, invalid_cases, load_valid, settings, snapshots_dir, valid_cases};
use m_codegen::ddl::{self, Dialect};
use m_codegen::{derive, diagnostic, erd, openapi, rust_source};

/// Run `check` on every case, then fail once, naming every case that failed.
fn for_each_case(kind: &str, cases: &[Case], check: impl Fn(&Case)) {
    let mut failed = Vec::new();
    for case in cases {
        if catch_unwind(AssertUnwindSafe(|| check(case))).is_err() {
            failed.push(case.name.clone());
        }
    }
    assert!(failed.is_empty(), "{} {kind} fixture case(s) failed (see above): {}", failed.len(), failed.join(", "));
}

fn valid_snapshot_names(case: &Case, project: &m_codegen::Project) -> Vec<String> {
    let mut names: Vec<String> = ["ir", "ddl_postgres", "ddl_sqlite", "openapi", "erd", "rust__mod"]
        .iter()
        .map(|o| format!("valid__{}__{o}", case.name))
        .collect();
    names.extend(project.doctypes.iter().map(|d| format!("valid__{}__rust__{}", case.name, d.table())));
    names
}

#[test]
fn valid_fixtures() {
    let cases = valid_cases();
    for_each_case("valid", &cases, |case| {
        let project = load_valid(&case.name, &case.sources);
        assert_eq!(
            project.doctypes.len(),
            case.sources.len(),
            "valid fixture case `{}`: expected one DocType per file",
            case.name
        );
        settings(&format!("fixture: codegen/tests/fixtures/valid/{}/", case.name)).bind(|| {
            let c = &case.name;
            insta::assert_snapshot!(format!("valid__{c}__ir"), format!("{:#?}", project.doctypes));
            insta::assert_snapshot!(format!("valid__{c}__ddl_postgres"), ddl::schema_sql(&project, Dialect::Postgres));
            insta::assert_snapshot!(format!("valid__{c}__ddl_sqlite"), ddl::schema_sql(&project, Dialect::Sqlite));
            insta::assert_snapshot!(format!("valid__{c}__openapi"), openapi::document(&project, "fixture", "0.0.0"));
            insta::assert_snapshot!(format!("valid__{c}__erd"), erd::mermaid(&project));
            insta::assert_snapshot!(format!("valid__{c}__rust__mod"), rust_source::module_file(&project).content);
            for d in &project.doctypes {
                let text = case
                    .sources
                    .iter()
                    .find(|(f, _)| *f == d.source)
                    .map(|(_, t)| t.as_str())
                    .unwrap_or_else(|| panic!("case `{c}`: no source file `{}` for DocType {}", d.source, d.name));
                let file = rust_source::doctype_file(d, text, &project, false);
                assert_eq!(file.name, format!("{}.rs", d.table()), "case `{c}`: generated file name of {}", d.name);
                insta::assert_snapshot!(format!("valid__{c}__rust__{}", d.table()), file.content);
            }
        });
    });
}

#[test]
fn invalid_fixtures() {
    let cases = invalid_cases();
    for_each_case("invalid", &cases, |case| {
        let diags = match m_codegen::load_sources(&case.sources) {
            Ok(project) => panic!(
                "invalid fixture case `{}` loaded without diagnostics (DocTypes: {:?})",
                case.name,
                project.doctypes.iter().map(|d| &d.name).collect::<Vec<_>>()
            ),
            Err(diags) => diags,
        };
        assert!(!diags.is_empty(), "invalid fixture case `{}` returned an empty diagnostic list", case.name);
        let files: BTreeSet<&str> = case.sources.iter().map(|(f, _)| f.as_str()).collect();
        for d in &diags {
            assert!(
                files.contains(d.file.as_str()),
                "invalid fixture case `{}`: diagnostic names unknown file `{}`:\n{d}",
                case.name,
                d.file
            );
            assert!(
                d.line > 0 && d.column > 0 && d.source_line.is_some(),
                "invalid fixture case `{}`: diagnostic has no source location:\n{d}",
                case.name
            );
        }
        assert!(
            diags.iter().all(|d| d.hint.is_some()),
            "invalid fixture case `{}`: a diagnostic has no hint:\n{}",
            case.name,
            diagnostic::render_all(&diags)
        );
        let single_file = format!("invalid/{}.toml", case.name);
        let fixture = if case.sources.len() == 1 && case.sources[0].0 == single_file {
            single_file
        } else {
            format!("invalid/{}/", case.name)
        };
        settings(&format!("fixture: codegen/tests/fixtures/{fixture}")).bind(|| {
            insta::assert_snapshot!(format!("invalid__{}", case.name), diagnostic::render_all(&diags));
        });
    });
}

/// Every `valid__*` / `invalid__*` snapshot in `snapshots/codegen/` belongs to a fixture case
/// (renaming or deleting a fixture must not leave stale snapshots behind).
#[test]
fn no_stale_fixture_snapshots() {
    let mut expected = BTreeSet::new();
    for case in valid_cases() {
        // An invalid "valid" case is reported by `valid_fixtures`; here it just has no names.
        if let Ok(project) = m_codegen::load_sources(&case.sources) {
            expected.extend(valid_snapshot_names(&case, &project));
        }
    }
    for case in invalid_cases() {
        expected.insert(format!("invalid__{}", case.name));
    }
    let dir = snapshots_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut stale = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".snap") else {
            continue;
        };
        if (name.starts_with("valid__") || name.starts_with("invalid__")) && !expected.contains(name) {
            stale.push(file);
        }
    }
    stale.sort();
    assert!(
        stale.is_empty(),
        "stale snapshots in {} (no fixture case produces them; delete them): {stale:?}",
        dir.display()
    );
}

/// The quoted identifier right after `marker` in `line`, if any.
fn ident_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('"')?;
    rest.split('"').next()
}

/// Every DDL identifier fits PostgreSQL's 63 bytes, and no two tables, unique constraints or
/// indexes share a name (on PostgreSQL they share one namespace per schema; on SQLite indexes
/// do, and `CREATE INDEX IF NOT EXISTS` would silently skip the second one).
#[test]
fn ddl_identifiers_fit_and_do_not_collide() {
    let cases = valid_cases();
    for_each_case("valid", &cases, |case| {
        let project = load_valid(&case.name, &case.sources);
        let sql = ddl::schema_sql(&project, Dialect::Postgres);
        for ident in sql.split('"').skip(1).step_by(2) {
            assert!(
                ident.len() <= 63,
                "case `{}`: identifier `{ident}` is {} bytes (PostgreSQL keeps 63)",
                case.name,
                ident.len()
            );
        }
        let mut relations: Vec<&str> = Vec::new();
        for line in sql.lines() {
            let name = ident_after(line, "CREATE TABLE ")
                .or_else(|| ident_after(line, "INDEX "))
                .or_else(|| if line.contains(" FOREIGN KEY (") { ident_after(line, "CONSTRAINT ") } else { None });
            relations.extend(name);
        }
        let mut seen = BTreeSet::new();
        let dups: Vec<&str> = relations.iter().copied().filter(|r| !seen.insert(*r)).collect();
        assert!(dups.is_empty(), "case `{}`: relation names used twice in the PostgreSQL schema: {dups:?}", case.name);
    });
}

/// The Rust source `build.rs` writes parses as a struct, and `#[derive(DocType)]` expands it
/// without errors into valid Rust holding the same table DDL as the whole-application path.
#[test]
fn generated_rust_parses_and_expands_to_the_same_ddl() {
    let cases = valid_cases();
    for_each_case("valid", &cases, |case| {
        let project = load_valid(&case.name, &case.sources);
        let mut problems = Vec::new();
        for d in &project.doctypes {
            let text = case.sources.iter().find(|(f, _)| *f == d.source).map(|(_, t)| t.as_str()).unwrap_or_default();
            let file = rust_source::doctype_file(d, text, &project, false);
            let input = match syn::parse_str::<syn::DeriveInput>(&file.content) {
                Ok(input) => input,
                Err(e) => {
                    problems.push(format!("{}: generated Rust does not parse: {e}\n{}", file.name, file.content));
                    continue;
                }
            };
            let tokens = derive::expand(input);
            let expanded = tokens.to_string();
            if expanded.contains("compile_error") {
                problems.push(format!("{}: derive expansion failed: {expanded}", file.name));
                continue;
            }
            if let Err(e) = syn::parse2::<syn::File>(tokens) {
                problems.push(format!("{}: derive expansion is not valid Rust: {e}\n{expanded}", file.name));
                continue;
            }
            let table = serde_json::to_string(&m_codegen::migrate::model::table_of(d)).unwrap();
            if !expanded.contains(&proc_macro2::Literal::string(&table).to_string()) {
                problems.push(format!("{}: derive expansion lacks the table model {table}", file.name));
            }
        }
        assert!(problems.is_empty(), "case `{}`:\n{}", case.name, problems.join("\n"));
    });
}

/// Every `[[indexes]]` entry with `unique = true` becomes a unique index (or constraint) on
/// exactly its columns, on both dialects.
#[test]
fn declared_unique_indexes_are_unique() {
    let cases = valid_cases();
    for_each_case("valid", &cases, |case| {
        let project = load_valid(&case.name, &case.sources);
        let mut lost = Vec::new();
        for d in &project.doctypes {
            for dialect in Dialect::ALL {
                let statements = ddl::table_statements(d, dialect);
                let table = d.table();
                for ix in d.indexes.iter().filter(|ix| ix.unique) {
                    let cols: Vec<String> = ix.fields.iter().map(|f| format!("\"{f}\"")).collect();
                    let cols = format!("({})", cols.join(", "));
                    // PostgreSQL indexes nullable columns NULLS FIRST; compare the column names.
                    let as_index = statements.iter().any(|s| {
                        s.starts_with("CREATE UNIQUE INDEX")
                            && s.replace(" NULLS FIRST", "").ends_with(&format!("ON \"{table}\" {cols}"))
                    });
                    if !as_index {
                        lost.push(format!("{} ({}): unique index on {cols}", d.name, dialect.as_str()));
                    }
                }
            }
        }
        assert!(lost.is_empty(), "case `{}`: declared unique indexes missing from the DDL: {lost:?}", case.name);
    });
}
