//! Golden-file tests of the rendered Flink configuration, and a check that the real Flink reads
//! the rendered 2.x file back exactly as meant.
//!
//! Input: `agent.toml` next to this file. Expected output: `flink-<version>-<file>` next to it.
//! Any difference fails the test; `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the files
//! (review the diff before committing).

#![allow(clippy::unwrap_used)]

use flink_agent::config::{self, AgentConfig};
use flink_agent::flinkconf::{render, write_conf_dir, FlinkVersion};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn input() -> AgentConfig {
    let path = golden_dir().join("agent.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    config::parse(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn check_golden(version: FlinkVersion, expected_file: &str) {
    let rendered = render(&input(), version, &Default::default()).expect("renders");
    let path = golden_dir().join(format!(
        "flink-{}.{}-{}",
        version.major, version.minor, expected_file
    ));
    assert_eq!(rendered.file_name, expected_file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered.content).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_GOLDEN=1 cargo test --test golden to create it",
            path.display()
        )
    });
    if expected != rendered.content {
        let diff: Vec<String> = diff_lines(&expected, &rendered.content);
        panic!(
            "rendered {} for Flink {version} differs from {}:\n{}\n(UPDATE_GOLDEN=1 rewrites it if the change is intended)",
            expected_file,
            path.display(),
            diff.join("\n")
        );
    }
}

/// A small line diff: lines only in the golden file (-) and only in the rendering (+).
fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out: Vec<String> = e
        .iter()
        .filter(|l| !a.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        a.iter()
            .filter(|l| !e.contains(l))
            .map(|l| format!("+ {l}")),
    );
    if out.is_empty() {
        out.push("(same lines, different order or whitespace)".into());
    }
    out
}

#[test]
fn flink_2x_config_yaml() {
    check_golden(FlinkVersion::new(2, 3, 0), "config.yaml");
}

#[test]
fn flink_1_19_config_yaml_with_old_checkpoint_keys() {
    check_golden(FlinkVersion::new(1, 19, 3), "config.yaml");
}

#[test]
fn flink_1_18_legacy_flink_conf_yaml() {
    check_golden(FlinkVersion::new(1, 18, 1), "flink-conf.yaml");
}

/// The Flink distribution the tests run against: `FLINK_HOME`, else the one
/// `tests/setup/flink.sh` installs into the download cache (a no-op when cached).
fn flink_home() -> PathBuf {
    if let Some(home) = std::env::var_os("FLINK_HOME") {
        return PathBuf::from(home);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/setup/flink.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed", script.display());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `-flatten` prints each value as a YAML scalar again (`'a: b'`); decode it.
fn yaml_scalar(v: &str) -> String {
    match serde_norway::from_str::<serde_norway::Value>(v) {
        Ok(serde_norway::Value::String(s)) => s,
        Ok(serde_norway::Value::Number(n)) => n.to_string(),
        Ok(serde_norway::Value::Bool(b)) => b.to_string(),
        _ => v.to_string(),
    }
}

fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// Feeds the rendered conf dir to the parser Flink's own scripts use (`BashJavaUtils`, see
/// `bin/bash-java-utils.sh`), two ways at once (about 2.5 s on two cores):
/// - `UPDATE_AND_GET_FLINK_CONFIGURATION -flatten` must print back every key with exactly the
///   value we meant (proves the YAML and its quoting are read as intended);
/// - `GET_TM_RESOURCE_PARAMS` must accept the TaskManager's memory at the smallest plan (Flink's
///   memory model refuses process sizes its fixed components do not fit in; the JobManager's
///   1 GiB minimum is far from its limit).
#[test]
fn real_flink_reads_the_rendered_config() {
    let home = flink_home();
    let version = flink_agent::flinkconf::detect_version(&home).unwrap();
    assert!(
        version.uses_config_yaml(),
        "expects Flink >= 1.19, got {version}"
    );
    let mut cfg = input();
    cfg.plan.memory_mib = flink_agent::config::Sizing::Fixed(4096); // the smallest plan is the tightest fit
    let rendered = render(&cfg, version, &Default::default()).expect("renders");
    let dir = tempfile::tempdir().unwrap();
    assert!(write_conf_dir(dir.path(), &home, &rendered).unwrap());
    assert!(dir.path().join("log4j-console.properties").is_file());

    let dist = std::fs::read_dir(home.join("lib"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("flink-dist"))
        })
        .unwrap();
    let classpath = format!(
        "{}:{}",
        home.join("bin/bash-java-utils.jar").display(),
        dist.display()
    );
    let commands: [&[&str]; 2] = [
        &["UPDATE_AND_GET_FLINK_CONFIGURATION", "-flatten"],
        &["GET_TM_RESOURCE_PARAMS"],
    ];
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            Command::new(java())
                // Short-lived JVMs: skip the optimizing JIT and the parallel GC.
                .args([
                    "-XX:TieredStopAtLevel=1",
                    "-XX:+UseSerialGC",
                    "-Xshare:auto",
                ])
                .arg("-classpath")
                .arg(&classpath)
                .arg("org.apache.flink.runtime.util.bash.BashJavaUtils")
                .arg(args[0])
                .arg("--configDir")
                .arg(dir.path())
                .args(&args[1..])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cannot start java")
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (args, out) in commands.iter().zip(&outputs) {
        assert!(
            out.status.success(),
            "BashJavaUtils {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let stdout = String::from_utf8_lossy(&outputs[0].stdout);
    let read_back: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("BASH_JAVA_UTILS_EXEC_RESULT:"))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), yaml_scalar(v)))
        .collect();
    assert_eq!(
        read_back
            .get("taskmanager.numberOfTaskSlots")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        read_back.get("pipeline.name").map(String::as_str),
        Some("orders: enrich 'v2'")
    );
    assert_eq!(
        read_back, rendered.entries,
        "Flink read back different keys or values"
    );

    let tm = String::from_utf8_lossy(&outputs[1].stdout);
    assert!(tm.contains("-Xmx"), "no TaskManager JVM parameters:\n{tm}");
}
