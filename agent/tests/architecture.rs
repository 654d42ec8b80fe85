//! Dependencies point one way: a module may use only modules of lower layers (README,
//! "Layout"). Checked on the code itself (comments aside), so an upward import fails the build's
//! tests instead of waiting for a review. Prints the import graph and the lines per module.
//! The same graph by hand: `grep -rhoE 'crate::[a-z_]+' agent/src/<module>` (comments included).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, leaves first. Modules of one layer do not use each other either.
const LAYERS: &[&[&str]] = &[
    &[
        "config",
        "fsutil",
        "procfs",
        "machine",
        "reconcile",
        "logging",
        "sdnotify",
        "events",
    ],
    &["flinkconf", "flinkrest"],
    &["firewall", "checkpoints", "tls", "zookeeper"],
    &["supervisor", "jobs"],
    &["desired", "status"],
    &["metrics"],
    &["api"],
    &["daemon"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src` belongs to (`src/jobs/service.rs` → `jobs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    // The crate roots and the binary's own modules are not library layers.
    (!matches!(name, "lib" | "main" | "cli")).then(|| name.to_string())
}

/// `crate::<module>` paths used in code (line comments and doc comments dropped).
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let tail = &rest[i + "crate::".len()..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = tail;
        }
    }
    found
}

#[test]
fn no_module_uses_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut lines: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read file");
        *lines.entry(module.clone()).or_default() += text.lines().count();
        let used: Vec<String> = uses(&text).into_iter().filter(|u| *u != module).collect();
        graph.entry(module).or_default().extend(used);
    }
    let mut upward = Vec::new();
    for (module, used) in &graph {
        println!(
            "{module:<12} {:>5} lines  uses {}",
            lines[module],
            used.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        for u in used {
            if layer(u) >= layer(module) {
                upward.push(format!("{module} → {u}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down the layers: {upward:?}"
    );
    assert!(graph.len() >= 15, "found only {} modules", graph.len());
}

#[test]
fn the_check_sees_imports_and_ignores_comments() {
    let text = "use crate::config::AgentConfig; // crate::daemon\n/// see crate::api\nfn f() { crate::jobs::Service::start(); }";
    let found: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(found, ["config", "jobs"]);
}
