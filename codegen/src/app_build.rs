//! What an application's `build.rs` does, so that the build script itself is a two-line shim:
//! read `doctypes/`, validate (diagnostics and exit on error), write the generated Rust into
//! `OUT_DIR` (a file only when its content changed) and tell Cargo what to watch.

use std::path::{Path, PathBuf};

use crate::diagnostic::render_all;
use crate::project::{Project, load_dir, load_sources};
use crate::rust_source::{GeneratedFile, doctype_file, hooks_file, module_file};

/// Run the application build step. Call from `build.rs` with the crate's manifest directory.
/// On invalid DocTypes this reports the diagnostics through Cargo's `cargo::error` (so they are
/// what the user sees, without the build script's output dump) and returns: Cargo then fails
/// the build.
pub fn build_app() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // Tests point a fixture application at a scratch directory of DocTypes.
    println!("cargo:rerun-if-env-changed=M_DOCTYPES_DIR");
    let doctypes_dir = std::env::var_os("M_DOCTYPES_DIR").map_or_else(|| root.join("doctypes"), PathBuf::from);
    let hooks_dir = root.join("src").join("hooks");
    let migrations_dir = root.join("migrations");
    let print_dir = root.join("print");
    println!("cargo:rerun-if-changed={}", doctypes_dir.display());
    println!("cargo:rerun-if-changed={}", print_dir.display());
    println!("cargo:rerun-if-changed={}", migrations_dir.display());
    println!("cargo:rerun-if-changed={}", hooks_dir.display());
    emit_git_describe(&root);
    let generated = generate(&doctypes_dir, &hooks_dir, &out).and_then(|w| {
        embed_migrations(&migrations_dir, &out)?;
        embed_prints(&print_dir, &out)?;
        Ok(w)
    });
    match generated {
        Ok(warnings) => {
            for w in warnings {
                println!("cargo:warning={w}");
            }
        }
        Err(message) => {
            for line in cargo_errors(&message) {
                println!("{line}");
            }
        }
    }
}

/// `cargo::error=` directives for a rendered error, one per line (a directive holds one line;
/// Cargo prefixes each with `error: <package>:`, so a diagnostic's own `error: ` goes). An
/// empty directive separates diagnostics.
pub fn cargo_errors(message: &str) -> Vec<String> {
    message
        .trim_end()
        .lines()
        .map(|l| format!("cargo::error={}", l.strip_prefix("error: ").unwrap_or(l).trim_end()))
        .collect()
}

/// Generate into `out`; returns warnings, or the rendered diagnostics.
pub fn generate(doctypes_dir: &Path, hooks_dir: &Path, out: &Path) -> Result<Vec<String>, String> {
    let (sources, paths) = load_dir(doctypes_dir, "doctypes")
        .map_err(|e| format!("error: cannot read {}: {e}", doctypes_dir.display()))?;
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    // The built-in DocTypes (User, Has Role, User Permission) are part of every application.
    let sources = crate::builtin::with_builtins(&sources);
    let project = load_sources(&sources).map_err(|d| render_all(&d))?;
    let (hook_mods, warnings) = hook_modules(&project, hooks_dir);
    let mut files = vec![module_file(&project), hooks_file(&hook_mods)];
    for d in &project.doctypes {
        let text = sources.iter().find(|(f, _)| *f == d.source).map(|(_, t)| t.as_str()).unwrap_or_default();
        let has_hooks = hook_mods.iter().any(|(m, _)| *m == d.table());
        files.push(doctype_file(d, text, &project, has_hooks));
    }
    // The committed artifacts, also written here: the server embeds `openapi.json`, and a test
    // compares `generated/` with these copies.
    let title = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "m".into());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.0.0".into());
    std::fs::create_dir_all(out.join("generated"))
        .map_err(|e| format!("error: cannot create {}: {e}", out.display()))?;
    for (path, content) in artifacts(&project, &title, &version) {
        files.push(GeneratedFile { name: path, content });
    }
    for f in &files {
        write_if_changed(&out.join(&f.name), f)?;
    }
    Ok(warnings)
}

/// `    (<key>, include_str!(<path>)),` for each file of `dir` ending in `.ext`, sorted, each
/// watched by Cargo; `key` names the file (its name or stem).
fn included(dir: &Path, ext: &str, key: fn(&Path) -> Option<&std::ffi::OsStr>) -> String {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    files.retain(|p| p.extension().is_some_and(|e| e == ext));
    files.sort();
    let mut entries = String::new();
    for p in &files {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = key(p).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        entries.push_str(&format!("    ({name:?}, include_str!({:?})),\n", p.display().to_string()));
    }
    entries
}

/// `migrations.rs`: the revision files embedded with `include_str!` (a deployed binary has no
/// source tree), and the folder's path for development.
pub fn embed_migrations(dir: &Path, out: &Path) -> Result<(), String> {
    let entries = included(dir, "toml", |p| p.file_name());
    let content = format!(
        "// @generated by m-codegen: the revisions of migrations/.\n\n/// `(file name, content)` of every revision.\npub static MIGRATIONS: &[(&str, &str)] = &[\n{entries}];\n\n/// The folder they were read from.\npub const MIGRATIONS_DIR: &str = {:?};\n",
        dir.display().to_string()
    );
    write_if_changed(&out.join("migrations.rs"), &GeneratedFile { name: "migrations.rs".into(), content })
}

/// `prints.rs`: the print templates of `print/<table>.html`, embedded with `include_str!` (a
/// deployed binary has no source tree). The runtime compiles them at start.
pub fn embed_prints(dir: &Path, out: &Path) -> Result<(), String> {
    let entries = included(dir, "html", |p| p.file_stem());
    let content = format!(
        "// @generated by m-codegen: the print templates of print/.\n\n/// `(table, template)` of every `print/<table>.html`.\npub static PRINTS: &[(&str, &str)] = &[\n{entries}];\n"
    );
    write_if_changed(&out.join("prints.rs"), &GeneratedFile { name: "prints.rs".into(), content })
}

/// `M_GIT_DESCRIBE` for `m --version`, when the application is built from a git checkout.
fn emit_git_describe(root: &Path) {
    let Some(git_dir) = root.ancestors().map(|p| p.join(".git")).find(|p| p.exists()) else { return };
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    println!("cargo:rerun-if-changed={}", git_dir.join("refs").join("heads").display());
    let described = std::process::Command::new("git")
        .args(["describe", "--always", "--tags"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if let Some(d) = described {
        println!("cargo:rustc-env=M_GIT_DESCRIBE={d}");
    }
}

/// Hook files `src/hooks/<table>.rs` whose DocType exists; a file without one is a warning.
fn hook_modules(project: &Project, hooks_dir: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let mut mods = Vec::new();
    let mut warnings = Vec::new();
    let Ok(entries) = std::fs::read_dir(hooks_dir) else { return (mods, warnings) };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let Some(stem) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
        if stem == "mod" {
            continue;
        }
        if project.doctypes.iter().any(|d| d.table() == stem) {
            mods.push((stem, p.display().to_string()));
        } else {
            warnings
                .push(format!("src/hooks/{stem}.rs: no DocType has the table `{stem}`; these hooks are not compiled"));
        }
    }
    (mods, warnings)
}

fn write_if_changed(path: &Path, file: &GeneratedFile) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == file.content) {
        return Ok(());
    }
    std::fs::write(path, &file.content).map_err(|e| format!("error: cannot write {}: {e}", path.display()))
}

/// The committed artifacts of `generated/` (path relative to the application root, content).
pub fn artifacts(project: &Project, title: &str, version: &str) -> Vec<(String, String)> {
    use crate::ddl::schema_sql;
    use crate::dialect::Dialect;
    let mut out = vec![("generated/openapi.json".to_string(), crate::openapi::document(project, title, version))];
    for d in Dialect::ALL {
        out.push((format!("generated/schema.{}.sql", d.as_str()), schema_sql(project, d)));
    }
    out.push(("generated/erd.md".to_string(), crate::erd::mermaid(project)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_become_one_cargo_error_per_line() {
        let source = "name = \"Memo\"\n\n[fields.body]\ntype = \"Txet\"\n";
        let diags = crate::project::load_sources(&[("doctypes/memo.toml".into(), source.into())]).unwrap_err();
        let lines = cargo_errors(&render_all(&diags));
        assert_eq!(
            lines,
            [
                "cargo::error=doctypes/memo.toml:4:8: unknown field type `Txet`",
                "cargo::error=  |",
                "cargo::error=4 | type = \"Txet\"",
                "cargo::error=  |        ^^^^^^",
                "cargo::error=  = hint: did you mean `Text`?",
                "cargo::error=",
                "cargo::error=1 error(s) in DocType files",
            ]
        );
    }

    #[test]
    fn hook_files_without_a_doctype_are_warnings() {
        let root = std::env::temp_dir().join(format!("m-app-build-{}", std::process::id()));
        let (doctypes, hooks, out) = (root.join("doctypes"), root.join("hooks"), root.join("out"));
        for d in [&doctypes, &hooks, &out] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(doctypes.join("note.toml"), "name = \"Note\"\n\n[fields.title]\ntype = \"Data\"\n").unwrap();
        std::fs::write(hooks.join("note.rs"), "").unwrap();
        std::fs::write(hooks.join("gone.rs"), "").unwrap();
        let warnings = generate(&doctypes, &hooks, &out).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("src/hooks/gone.rs"), "{warnings:?}");
        let modules = std::fs::read_to_string(out.join("hooks.rs")).unwrap();
        assert!(modules.contains("mod note;") && !modules.contains("mod gone;"), "{modules}");
        let note = std::fs::read_to_string(out.join("note.rs")).unwrap();
        assert!(note.contains(", hooks, toml = "), "the struct is marked as having hooks:\n{note}");
        // Writing again leaves unchanged files untouched.
        let before = std::fs::metadata(out.join("note.rs")).unwrap().modified().unwrap();
        generate(&doctypes, &hooks, &out).unwrap();
        assert_eq!(std::fs::metadata(out.join("note.rs")).unwrap().modified().unwrap(), before);
        std::fs::remove_dir_all(root).ok();
    }
}
