//! Editing TOML changes the API with no hand-written Rust: build the fixture application
//! (tests/fixture-app) against a scratch copy of its DocTypes, edit them, build again, and read
//! the routes and the OpenAPI document of each binary. A TOML mistake fails the build with
//! file:line:col. Shares the workspace's build cache; tests that build the fixture application
//! take [`FIXTURE_BUILD`] (they share its binary).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Serialises builds of the fixture application (one binary, rebuilt per DocTypes folder).
pub(crate) static FIXTURE_BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from)
}

/// Build the fixture app with `dir` as its doctypes/ and return (success, stderr).
pub(crate) fn build(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "m-fixture-app"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("M_DOCTYPES_DIR", dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("run cargo");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn routes() -> String {
    let bin = target_dir().join("debug").join("m-fixture-app");
    let out = Command::new(bin).arg("routes").output().expect("run the fixture binary");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn editing_toml_changes_the_api() {
    if std::env::var_os("M_SKIP_FIXTURE_BUILD").is_some() {
        eprintln!("skipped: M_SKIP_FIXTURE_BUILD is set");
        return;
    }
    let _build = FIXTURE_BUILD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = std::env::temp_dir().join(format!("m-fixture-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("note.toml"), "name = \"Note\"\n\n[fields.title]\ntype = \"Data\"\nrequired = true\n")
        .unwrap();

    let (ok, err) = build(&dir);
    assert!(ok, "fixture build failed:\n{err}");
    let before = routes();
    assert!(before.contains("/api/v1/Note"));
    assert!(!before.contains("/api/v1/Memo"));

    // Add a DocType: new routes, with no Rust written.
    std::fs::write(dir.join("memo.toml"), "name = \"Memo\"\nsubmittable = true\n\n[fields.body]\ntype = \"Text\"\n")
        .unwrap();
    let (ok, err) = build(&dir);
    assert!(ok, "fixture build failed:\n{err}");
    let after = routes();
    assert!(after.contains("/api/v1/Memo/{ref}/submit"), "{after}");

    // A mistake fails the build with file, line, column and a hint.
    std::fs::write(dir.join("memo.toml"), "name = \"Memo\"\n\n[fields.body]\ntype = \"Txet\"\n").unwrap();
    let (ok, err) = build(&dir);
    assert!(!ok, "a bad type must fail the build");
    assert!(err.contains("doctypes/memo.toml:4:8"), "{err}");
    assert!(err.contains("did you mean `Text`?"), "{err}");

    std::fs::remove_dir_all(&dir).ok();
    // Leave the fixture built from its own doctypes/ again, so later builds need no rerun.
    let (ok, err) = build(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixture-app/doctypes")));
    assert!(ok, "{err}");
}
