//! The command line as scripts and people meet it, through the real binary: the exit-code table
//! (README, "Exit codes") row by row, the global options before or after any subcommand,
//! `--json` on every command, man pages that render and completions that load in bash. Client
//! commands talk to a stand-in agent on a Unix socket (answers as the API's own types), so no
//! Flink is started here.
#![allow(clippy::unwrap_used)]

mod common;

use common::agent_bin;
use flink_agent::status::AgentStatus;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How the stand-in agent behaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ready,
    NotReady,
    /// Accepts and never answers.
    Silent,
}

/// A stand-in agent on `<dir>/agent.sock`, serving until the test process ends.
fn fake_agent(dir: &Path, mode: Mode) -> PathBuf {
    let socket = dir.join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                if mode == Mode::Silent {
                    std::thread::sleep(Duration::from_secs(30));
                    return;
                }
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let line = head.lines().next().unwrap_or_default().to_string();
                let (code, body) = answer(&line, mode);
                let response = format!(
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes());
            });
        }
    });
    socket
}

/// The API's answer to `request line` (as the real agent shapes it).
fn answer(line: &str, mode: Mode) -> (u16, String) {
    let json = |v: serde_json::Value| (200, v.to_string());
    let route = line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    match route.as_str() {
        "GET /v1/status" => {
            let status = AgentStatus {
                node_id: "fake".into(),
                ready: mode == Mode::Ready,
                ..Default::default()
            };
            (200, serde_json::to_string(&status).unwrap())
        }
        "POST /v1/reload" => json(serde_json::json!({
            "revision": "abc123", "changed_keys": [], "concerns": [], "restarted": [],
            "flink_config_changed": false
        })),
        "POST /v1/processes/taskmanager/restart" => {
            json(serde_json::json!({"restarted": "taskmanager"}))
        }
        "GET /v1/config" => json(serde_json::json!({
            "revision": "abc123", "file": "config.yaml", "flink_version": "2.3.0",
            "entries": {"rest.port": "8081"}
        })),
        "GET /v1/jobs" => json(serde_json::json!([])),
        "POST /v1/jobs" => json(serde_json::json!({
            "name": "counter", "flink_job_id": "f00", "state": "SUBMITTED",
            "last_completed_checkpoint": null, "last_durable_checkpoint": null, "restored_from": null
        })),
        "POST /v1/shutdown" => json(serde_json::json!({"stopped": ["taskmanager", "jobmanager"]})),
        _ => (
            404,
            serde_json::json!({"error": format!("no route for {route}")}).to_string(),
        ),
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(agent_bin())
        .args(args)
        .env_remove("FLINK_AGENT_SOCKET")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A config file the agent accepts (Flink from the test cache), its socket in `dir`.
fn valid_config(dir: &Path) -> PathBuf {
    let path = dir.join("agent.toml");
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            "[agent]\nstate_dir = \"{d}/state\"\nsocket = \"{d}/agent.sock\"\n[flink]\nhome = \"{}\"\njava_home = \"{}\"\ndata_dir = \"{d}/data\"\nlog_dir = \"{d}/log\"\n[object_store]\nurl = \"file://{d}/store\"\n[firewall]\nenabled = true\n",
            common::flink_home().display(),
            common::java_home().display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("store")).unwrap();
    path
}

#[test]
fn every_exit_code_means_one_thing() {
    let ready = tempfile::tempdir().unwrap();
    let ready_sock = fake_agent(ready.path(), Mode::Ready);
    let not_ready = tempfile::tempdir().unwrap();
    let not_ready_sock = fake_agent(not_ready.path(), Mode::NotReady);
    let silent = tempfile::tempdir().unwrap();
    let silent_sock = fake_agent(silent.path(), Mode::Silent);
    let config = valid_config(ready.path());
    let bad = ready.path().join("bad.toml");
    std::fs::write(&bad, "[advanced]\nnumber_of_task_slots = 0\n").unwrap();
    let (rs, ns, ss) = (
        ready_sock.display().to_string(),
        not_ready_sock.display().to_string(),
        silent_sock.display().to_string(),
    );
    let (cfg, badp) = (config.display().to_string(), bad.display().to_string());
    let unshare = Command::new("unshare").args(["-n", "true"]).status();
    let rows: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["status", "--socket", &rs], 0, "● ready"),
        (
            vec!["validate", "--config", &cfg],
            0,
            "configuration is valid",
        ),
        (vec!["restore"], 1, "restore --dry-run"),
        (vec!["no-such-command"], 2, "unrecognized subcommand"),
        (vec!["jobs", "deploy", "x"], 2, "--jar"),
        (
            vec!["status", "--socket", "/nonexistent/agent.sock"],
            3,
            "no agent is running",
        ),
        (vec!["status", "--socket", &ns], 4, "NOT READY"),
        (
            vec!["status", "--socket", &ss, "--timeout", "1"],
            75,
            "did not answer within 1s",
        ),
        (
            vec!["validate", "--config", &badp],
            78,
            "advanced.number_of_task_slots",
        ),
    ];
    for (args, code, says) in &rows {
        let r = run(args);
        assert_eq!(r.code, *code, "{args:?}: {}{}", r.stdout, r.stderr);
        let text = format!("{}{}", r.stdout, r.stderr);
        assert!(text.contains(says), "{args:?} should say {says:?}: {text}");
    }
    // 5: `firewall show` in an empty network namespace (root, as on CI).
    if unshare.is_ok_and(|s| s.success()) {
        let out = Command::new("unshare")
            .args(["-n"])
            .arg(agent_bin())
            .args(["firewall", "show", "--config", &cfg])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(5), "{out:?}");
    } else {
        eprintln!("exit 5 (firewall differs) not checked here: needs root for a network namespace");
    }
}

#[test]
fn global_options_go_before_or_after_any_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let socket = fake_agent(dir.path(), Mode::Ready);
    let config = valid_config(dir.path());
    let (s, c) = (socket.display().to_string(), config.display().to_string());
    let jar = dir.path().join("job.jar");
    std::fs::write(&jar, b"PK\x03\x04").unwrap();
    let j = jar.display().to_string();
    // The socket found from --config (agent.socket) or given directly, in any position.
    for args in [
        vec!["--config", &c, "status"],
        vec!["status", "--config", &c],
        vec!["--socket", &s, "status"],
        vec!["status", "--socket", &s],
        vec!["jobs", "deploy", "counter", "--jar", &j, "--config", &c],
        vec!["--config", &c, "jobs", "deploy", "counter", "--jar", &j],
        vec!["jobs", "--config", &c, "deploy", "counter", "--jar", &j],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
    }
    let r = run(&["jobs", "deploy", "counter", "--jar", &j, "--socket", &s]);
    assert_eq!(
        r.stdout,
        "deployed counter as Flink job f00; `flink-agent jobs` shows its state and checkpoints\n"
    );
    for args in [
        vec!["--json", "status", "--socket", &s],
        vec!["status", "--socket", &s, "--json"],
    ] {
        let r = run(&args);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["node_id"], "fake", "{args:?}");
    }
}

#[test]
fn json_is_honoured_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let socket = fake_agent(dir.path(), Mode::Ready);
    let config = valid_config(dir.path());
    let (s, c) = (socket.display().to_string(), config.display().to_string());
    let jar = dir.path().join("job.jar");
    std::fs::write(&jar, b"PK\x03\x04").unwrap();
    let j = jar.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["validate", "--config", &c],
        vec!["render", "--config", &c],
        vec!["plan", "--config", &c],
        vec!["restore", "--dry-run", "--config", &c],
        vec!["status", "--socket", &s],
        vec!["reload", "--socket", &s],
        vec!["restart", "taskmanager", "--socket", &s],
        vec!["config", "--socket", &s],
        vec!["jobs", "--socket", &s],
        vec!["jobs", "deploy", "counter", "--jar", &j, "--socket", &s],
        vec!["shutdown", "--socket", &s],
        // An error is JSON too.
        vec!["status", "--socket", "/nonexistent/agent.sock"],
    ];
    for args in commands {
        let mut with_json = args.clone();
        with_json.push("--json");
        let r = run(&with_json);
        let v: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{with_json:?}: not JSON ({e}): {}{}", r.stdout, r.stderr));
        if r.code != 0 {
            assert_eq!(v["exit"], r.code, "{with_json:?}: {v}");
            assert!(v["error"].is_string(), "{with_json:?}: {v}");
        }
    }
    // validate --json: every problem as {key, problem}.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[advanced]\nnumber_of_task_slots = 0\n[metrics]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let r = run(&["validate", "--json", "--config", &bad.display().to_string()]);
    assert_eq!(r.code, 78);
    let problems: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let keys: Vec<&str> = problems.iter().filter_map(|p| p["key"].as_str()).collect();
    for key in ["advanced.number_of_task_slots", "metrics.listen"] {
        assert!(keys.contains(&key), "{key} missing: {problems:?}");
    }
    assert!(problems.iter().all(|p| p["problem"].is_string()));
}

#[test]
fn man_pages_render_and_completions_load_in_bash() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let r = run(&["generate", "man", &man.display().to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "flink-agent.8",
        "flink-agent-status.8",
        "flink-agent-jobs-deploy.8",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} missing: {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("generate")),
        "hidden command paged"
    );
    if Command::new("man").arg("--version").output().is_ok() {
        let out = Command::new("man")
            .args(["-P", "cat", "-l"])
            .arg(man.join("flink-agent.8"))
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        // man justifies lines: compare with single spaces.
        let text = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(out.status.success(), "{out:?}");
        for says in [
            "NAME",
            "flink-agent",
            "SUBCOMMANDS",
            "Exit codes: 0 done",
            "--json",
        ] {
            assert!(text.contains(says), "man page lacks {says:?}:\n{text}");
        }
    } else {
        panic!("`man` is missing: tests/setup/deps.sh installs man-db");
    }
    // Completions: loaded by bash, they complete subcommands and options.
    let script = format!(
        "source <({} generate completions bash) && f=$(complete -p flink-agent | sed -E 's/.*-F ([^ ]+).*/\\1/') && COMP_WORDS=(flink-agent jo) && COMP_CWORD=1 && $f flink-agent jo flink-agent && echo \"${{COMPREPLY[@]}}\" && COMP_WORDS=(flink-agent status --w) && COMP_CWORD=2 && $f flink-agent --w status && echo \"${{COMPREPLY[@]}}\"",
        agent_bin().display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first().copied(), Some("jobs"), "{text}");
    assert!(
        lines.get(1).is_some_and(|l| l.contains("--watch")),
        "{text}"
    );
    for shell in ["zsh", "fish"] {
        let r = run(&["generate", "completions", shell]);
        assert!(r.code == 0 && r.stdout.contains("flink-agent"), "{shell}");
    }
}
