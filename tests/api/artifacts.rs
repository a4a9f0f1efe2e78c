//! The committed artifacts in `generated/` match what the build generates from `doctypes/`.
//! Locally a stale file is rewritten (and the test says so); under `CI=true` it fails.

const ARTIFACTS: &[(&str, &str)] = &[
    ("generated/openapi.json", include_str!(concat!(env!("OUT_DIR"), "/generated/openapi.json"))),
    ("generated/schema.postgres.sql", include_str!(concat!(env!("OUT_DIR"), "/generated/schema.postgres.sql"))),
    ("generated/schema.sqlite.sql", include_str!(concat!(env!("OUT_DIR"), "/generated/schema.sqlite.sql"))),
    ("generated/erd.md", include_str!(concat!(env!("OUT_DIR"), "/generated/erd.md"))),
];

#[test]
fn generated_artifacts_are_fresh() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let mut stale = Vec::new();
    for (path, fresh) in ARTIFACTS {
        let file = root.join(path);
        let committed = std::fs::read_to_string(&file).unwrap_or_default().replace("\r\n", "\n");
        if committed != *fresh {
            stale.push(*path);
            if !ci {
                std::fs::create_dir_all(file.parent().expect("generated/")).expect("create generated/");
                std::fs::write(&file, fresh).expect("rewrite artifact");
                eprintln!("rewrote stale {path}; commit it");
            }
        }
    }
    assert!(
        !ci || stale.is_empty(),
        "stale generated artifacts {stale:?}: run `cargo test --test api artifacts` locally and commit generated/"
    );
}
