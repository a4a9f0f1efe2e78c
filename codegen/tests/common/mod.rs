//! Helpers shared by the m-codegen integration tests: fixture discovery and insta settings.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `codegen/tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// `snapshots/codegen` at the workspace root (where [`settings`] stores snapshots).
pub fn snapshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("snapshots").join("codegen")
}

/// insta settings for every m-codegen snapshot: stored in `snapshots/codegen/` at the workspace
/// root (relative to the test file), named by the snapshot name alone.
pub fn settings(description: &str) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../../snapshots/codegen");
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s.set_description(description);
    s
}

/// One fixture case: a directory of `*.toml` files, or a single `*.toml` file.
#[derive(Debug, Clone)]
pub struct Case {
    /// The directory or file stem, e.g. `example_app` or `unknown_key`.
    pub name: String,
    /// `(file name as diagnostics show it, TOML text)`, sorted by file name.
    pub sources: Vec<(String, String)>,
}

/// Every `*.toml` file of `dir`, sorted by file name.
pub fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read fixture directory {}: {e}", dir.display()))
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
}

/// The cases under `fixtures/<kind>/`, sorted by name. Each entry is either a directory (an
/// application of several files) or, when `allow_files` is set, a single `*.toml` file.
/// `prefix(case, file)` is the file name diagnostics and generated output show.
pub fn cases(kind: &str, allow_files: bool, prefix: impl Fn(&str, &str, bool) -> String) -> Vec<Case> {
    let root = fixtures_dir().join(kind);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display())).path())
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for p in entries {
        if p.is_dir() {
            let name = file_name(&p);
            let files = toml_files(&p);
            assert!(!files.is_empty(), "fixture case {kind}/{name} has no *.toml files");
            let sources = files.iter().map(|f| (prefix(&name, &file_name(f), true), read(f))).collect();
            out.push(Case { name, sources });
        } else if p.extension().is_some_and(|e| e == "toml") {
            assert!(allow_files, "{kind}/ cases must be directories, found {}", p.display());
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            out.push(Case { sources: vec![(prefix(&name, &file_name(&p), false), read(&p))], name });
        } else {
            panic!("unexpected entry in fixtures/{kind}: {}", p.display());
        }
    }
    assert!(!out.is_empty(), "no fixture cases under {}", root.display());
    out
}

/// The valid applications: `fixtures/valid/<case>/*.toml`, named `doctypes/<file>` as the
/// application build names them.
pub fn valid_cases() -> Vec<Case> {
    cases("valid", false, |_, file, _| format!("doctypes/{file}"))
}

/// The invalid cases: `fixtures/invalid/<case>.toml` or `fixtures/invalid/<case>/*.toml`, named
/// `invalid/<case>.toml` / `invalid/<case>/<file>` (never an absolute path).
pub fn invalid_cases() -> Vec<Case> {
    cases(
        "invalid",
        true,
        |case, file, is_dir| {
            if is_dir { format!("invalid/{case}/{file}") } else { format!("invalid/{file}") }
        },
    )
}

/// A valid case by name.
pub fn valid_case(name: &str) -> Case {
    valid_cases().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no valid fixture case `{name}`"))
}

/// Load a case that must be valid, with the rendered diagnostics in the panic message otherwise.
pub fn load_valid(case_name: &str, sources: &[(String, String)]) -> m_codegen::Project {
    m_codegen::load_sources(sources).unwrap_or_else(|diags| {
        panic!("valid fixture case `{case_name}` failed to load:\n{}", m_codegen::diagnostic::render_all(&diags))
    })
}
