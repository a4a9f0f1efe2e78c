//! The import structure ARCHITECTURE.md promises, checked on the source: the modules of each
//! crate (m-schema, m-core, m-runtime, m-codegen) import each other in no cycle (a cycle inside
//! one folder — its `mod.rs` and children — of at most three files is tolerated), m-runtime's
//! layers import only downward, and only the edge knows axum. Between crates, Cargo enforces the
//! direction: m-schema <- m-core <- m-runtime, m-schema <- m-codegen <- m-macros.
#![expect(clippy::unwrap_used, reason = "a test of the source tree: an unreadable file fails it")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path (`repo::error`; the crate root is ``) and its file.
type Modules = BTreeMap<String, PathBuf>;
/// Module -> the modules of its crate it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// m-runtime's layers, from the bottom up. A module may import its own layer and those below;
/// the leaves import only leaves.
const LAYERS: &[(&str, &[&str])] = &[
    ("leaf", &["config", "metrics", "breaker", "telemetry", "outbound", "templates"]),
    ("storage", &["db", "query"]),
    (
        "services",
        &["repo", "users", "jobs", "migrate", "auth", "ratelimit", "retry", "webhooks", "mail", "print", "services"],
    ),
    ("edge", &["http", "server", "cli", ""]),
];

fn modules(root: &Path) -> Modules {
    fn walk(dir: &Path, root: &Path, out: &mut Modules) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                out.insert(parts.join("::"), path);
            }
        }
    }
    let mut out = Modules::new();
    walk(root, root, &mut out);
    out
}

/// The code of a file without its unit tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Identifier paths (`a::b::c`) that follow `prefix` in `code`, with `use prefix{a, b::c}` groups
/// expanded.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if code[..at].chars().next_back().is_some_and(ident) {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let items: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
            None => vec![rest],
        };
        for item in items {
            let path: String = item.trim().chars().take_while(|&c| ident(c) || c == ':').collect();
            let segments: Vec<String> = path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
            if !segments.is_empty() {
                found.push(segments);
            }
        }
    }
    found
}

/// The longest prefix of `path` that is a module.
fn resolve(modules: &Modules, path: &[String]) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains_key(m))
}

fn graph(modules: &Modules) -> Graph {
    let mut graph = Graph::new();
    for (module, path) in modules {
        let code = code(path);
        let own: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
        let is_folder = matches!(path.file_stem().and_then(|s| s.to_str()), Some("mod" | "lib" | "main"));
        // `super::` from a folder's `mod.rs` is the folder's parent; from a file, its folder.
        let parent: Vec<String> = if is_folder || own.is_empty() {
            own[..own.len().saturating_sub(1)].to_vec()
        } else {
            own[..own.len() - 1].to_vec()
        };
        let mut targets = BTreeSet::new();
        for p in paths_after(&code, "crate::") {
            targets.extend(resolve(modules, &p));
        }
        for p in paths_after(&code, "super::") {
            let full: Vec<String> = parent.iter().cloned().chain(p).collect();
            targets.extend(resolve(modules, &full).or_else(|| Some(parent.join("::"))));
        }
        targets.remove(module);
        graph.insert(module.clone(), targets);
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// A cycle inside one folder (a module and its children) of at most three files.
fn tolerated(cycle: &[String]) -> bool {
    let folder = |m: &str| m.split("::").next().unwrap_or_default().to_string();
    cycle.len() <= 3 && cycle.iter().all(|m| folder(m) == folder(&cycle[0]))
}

fn source(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
}

#[test]
fn no_import_cycles_between_modules() {
    for root in [source("../schema/src"), source("../core/src"), source("src"), source("../codegen/src")] {
        let graph = graph(&modules(&root));
        assert!(graph.len() > 3, "{} holds the crate's modules", root.display());
        let bad: Vec<_> = cycles(&graph).into_iter().filter(|c| !tolerated(c)).collect();
        assert!(bad.is_empty(), "import cycles in {}: {bad:?}", root.display());
    }
}

#[test]
fn runtime_layers_import_only_downward() {
    let modules = modules(&source("src"));
    let graph = graph(&modules);
    let layer_of = |module: &str| {
        let top = module.split("::").next().unwrap_or_default();
        LAYERS.iter().position(|(_, ms)| ms.contains(&top))
    };
    let mut wrong = Vec::new();
    for (module, targets) in &graph {
        let Some(from) = layer_of(module) else {
            wrong.push(format!("{module} is in no layer: add it to LAYERS and ARCHITECTURE.md"));
            continue;
        };
        for target in targets {
            let to = layer_of(target).unwrap_or(usize::MAX);
            let up = to > from;
            let leaf_reaching_in = from == 0 && to != 0;
            if up || leaf_reaching_in {
                let name = |l: usize| LAYERS.get(l).map_or("?", |(n, _)| *n);
                wrong.push(format!("{module} ({}) imports {target} ({})", name(from), name(to)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n{}", wrong.join("\n"));
}

#[test]
fn only_the_edge_knows_axum() {
    let mut wrong = Vec::new();
    for (module, path) in modules(&source("src")) {
        let edge = module.starts_with("http") || module == "server";
        if !edge && code(&path).contains("axum") {
            wrong.push(module);
        }
    }
    assert!(wrong.is_empty(), "modules outside http/ and server.rs that use axum: {wrong:?}");
}
