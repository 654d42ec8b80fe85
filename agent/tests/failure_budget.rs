//! A failure budget outlives the agent. A JobManager that crashes at once (a stand-in for
//! Flink's launcher script that exits 3: no JVM needed) spends its budget and is parked; an
//! agent `kill -9`ed and started again (a watchdog abort, `systemctl restart`) does not hand
//! it a new one: it stays parked for the rest of its window, says why, keeps its restart count,
//! and tells systemd it is ready, so the unit is not killed while the agent explains the
//! parked process. `flink-agent restart jobmanager` still tries it at once.

mod common;

use common::{cli, wait_for, AgentDir, RunningAgent};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A Flink distribution whose scripts count their launches in `launches` and exit 3 (the
/// TaskManager's instead runs `taskmanager`, when given).
fn crashing_flink(dir: &Path, taskmanager: Option<&str>) -> PathBuf {
    let home = dir.join("crashing-flink");
    std::fs::create_dir_all(home.join("bin")).expect("bin");
    std::fs::create_dir_all(home.join("lib")).expect("lib");
    std::fs::create_dir_all(home.join("conf")).expect("conf");
    std::fs::write(home.join("lib/flink-dist-2.3.0.jar"), b"").expect("jar");
    for script in ["jobmanager.sh", "taskmanager.sh"] {
        let path = home.join("bin").join(script);
        let tail = match (script, taskmanager) {
            ("taskmanager.sh", Some(tail)) => tail,
            _ => "exit 3",
        };
        let text = format!(
            "#!/bin/sh\necho {script} >> {}\n{tail}\n",
            dir.join("launches").display()
        );
        std::fs::write(&path, text).expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    home
}

/// Launches of `script` so far.
fn launches_of(dir: &Path, script: &str) -> usize {
    std::fs::read_to_string(dir.join("launches"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == script)
        .count()
}

fn launches(dir: &Path) -> usize {
    launches_of(dir, "jobmanager.sh")
}

/// The JobManager's entry in `status --json` once it is `failed`.
fn parked(agent: &mut RunningAgent) -> serde_json::Value {
    wait_for("the jobmanager parked", Duration::from_secs(60), || {
        let status = agent.status()?;
        let jm = status["processes"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "jobmanager")?
            .clone();
        (jm["state"] == "failed").then_some(jm)
    })
}

#[test]
fn a_parked_process_stays_parked_across_an_agent_restart() {
    let dir = AgentDir::new(18);
    let home = crashing_flink(dir.path(), None);
    dir.write_config_for(&home, "");
    let mut agent = dir.start();
    let before = parked(&mut agent);
    assert_eq!(before["budget_remaining"], 0, "{before}");
    let (restarts, tried) = (before["restarts"].clone(), launches(dir.path()));
    assert_eq!(tried, 6, "5 restarts allowed in the window, then parked");
    agent.crash();

    // The next agent, as systemd starts it.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut agent = dir.start_env(&[], &[("NOTIFY_SOCKET", &notify_path)]);
    let after = parked(&mut agent);
    let reason = after["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("crashed 6 times in 300 s, never healthy for 10 s")
            && reason.contains("before the agent restarted")
            && reason.contains("`flink-agent restart jobmanager`"),
        "{after}"
    );
    assert_eq!(
        (&after["restarts"], &after["budget_remaining"]),
        (&restarts, &serde_json::json!(0)),
        "{after}"
    );
    let mut ready = false;
    let mut buf = [0u8; 4096];
    while let Ok(n) = notify.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            ready = true;
            break;
        }
    }
    assert!(ready, "no READY=1 while parked; log:\n{}", agent.log_text());
    assert_eq!(launches(dir.path()), tried, "the new agent launched it");

    // The operator's override still works, and still counts.
    let (ok, out, err) = cli(&agent.socket, &["restart", "jobmanager"]);
    assert!(ok, "restart: {out}{err}");
    wait_for("a new launch", Duration::from_secs(30), || {
        (launches(dir.path()) > tried).then_some(())
    });
}

/// A TaskManager that never registered holds no slots: a JobManager crashing at every start
/// does not take it along (one that had registered is restarted with its JobManager).
#[test]
fn a_jobmanager_crashing_at_every_start_leaves_an_unregistered_taskmanager_alone() {
    let dir = AgentDir::new(21);
    let home = crashing_flink(dir.path(), Some("while :; do sleep 1; done"));
    dir.write_config_for(&home, "");
    let mut agent = dir.start();
    parked(&mut agent);
    assert_eq!(launches(dir.path()), 6, "the JobManager tried 6 times");
    assert_eq!(
        launches_of(dir.path(), "taskmanager.sh"),
        1,
        "the TaskManager launched once; log:\n{}",
        agent.log_text()
    );
}
