//! The agent as an operator sees it, on a real Flink: start to READY, status agreeing with
//! Flink, the socket's protections, crash recovery, reloads good and bad, and `shutdown`.
//! One cluster serves every scenario (a fresh one would prove nothing new), in sequence.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const START: Duration = Duration::from_secs(120);

fn overview(port: u16) -> Option<serde_json::Value> {
    let (code, body) = http_get(port, "/overview")?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Waits until Flink reports `slots` slots on one TaskManager.
fn wait_slots(port: u16, slots: u64) -> serde_json::Value {
    wait_for(
        &format!("Flink /overview with 1 TaskManager and {slots} slots"),
        START,
        || overview(port).filter(|o| o["taskmanagers"] == 1 && o["slots-total"] == slots),
    )
}

#[test]
fn agent_runs_a_real_cluster_and_keeps_it_healthy() {
    let dir = AgentDir::new(0);
    dir.write_config("");
    let rest = dir.ports.rest;
    let mut agent = dir.start();

    // READY: both processes running and Flink agrees with status.
    let status = agent.wait_ready(START);
    let o = wait_slots(rest, 1);
    assert_eq!(status["flink_version"], "2.3.0");
    for name in ["jobmanager", "taskmanager"] {
        assert!(
            agent.running_pid(name).is_some(),
            "{name} not running: {status}"
        );
    }
    // Flink lists a new TaskManager a moment before its slots: wait for both figures.
    let st = wait_for("status with Flink's figures", START, || {
        agent
            .status()
            .filter(|s| s["overview"]["slots-total"] == o["slots-total"])
    });
    assert_eq!(st["overview"]["taskmanagers"], o["taskmanagers"]);

    // The socket is 0660, and a second agent on it refuses to start.
    let mode = std::fs::metadata(&agent.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "socket mode");
    let second = std::process::Command::new(agent_bin())
        .args(["run", "--config"])
        .arg(dir.config_path())
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "a second agent started on a live socket"
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("already serving"),
        "second agent's error: {err}"
    );
    assert!(
        agent.status().is_some(),
        "the first agent stopped answering"
    );

    // kill -9 the TaskManager: restarted and re-registered.
    let tm = agent.running_pid("taskmanager").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(tm), Signal::SIGKILL).unwrap();
    let tm2 = wait_for("a new TaskManager", START, || {
        agent.running_pid("taskmanager").filter(|p| *p != tm)
    });
    assert_ne!(tm, tm2);
    wait_slots(rest, 1);
    let s = agent.status().unwrap();
    let tm_status = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "taskmanager")
        .unwrap()
        .clone();
    assert!(
        tm_status["restarts"].as_u64().unwrap() >= 1,
        "restart not counted: {tm_status}"
    );
    assert!(
        tm_status["last_exit"].as_str().unwrap_or("").contains('9'),
        "last exit: {tm_status}"
    );

    // kill -9 the JobManager: restarted, then the TaskManager registers again.
    let jm = agent.running_pid("jobmanager").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(jm), Signal::SIGKILL).unwrap();
    wait_for("a new JobManager", START, || {
        agent.running_pid("jobmanager").filter(|p| *p != jm)
    });
    wait_slots(rest, 1);
    agent.wait_ready(START);

    // A broken config on SIGHUP: nothing restarts, status names the problem, Flink's
    // rendered config stays as it was.
    let conf_file = dir.path().join("state/flink-conf/config.yaml");
    let rendered_before = std::fs::read_to_string(&conf_file).unwrap();
    let (jm, tm) = (
        agent.running_pid("jobmanager").unwrap(),
        agent.running_pid("taskmanager").unwrap(),
    );
    dir.write_config("[advanced]\nnumber_of_task_slots = 0\n");
    agent.signal(Signal::SIGHUP);
    let s = wait_for(
        "the refused reload in status",
        Duration::from_secs(20),
        || {
            agent
                .status()
                .filter(|s| s["config"]["last_reload_error"].is_string())
        },
    );
    let why = s["config"]["last_reload_error"].as_str().unwrap();
    assert!(
        why.contains("advanced.number_of_task_slots"),
        "reload error: {why}"
    );
    assert_eq!(
        std::fs::read_to_string(&conf_file).unwrap(),
        rendered_before
    );
    assert_eq!(agent.running_pid("jobmanager"), Some(jm));
    assert_eq!(agent.running_pid("taskmanager"), Some(tm));

    // Slots 1 → 2 on SIGHUP: only the TaskManager restarts; Flink then shows 2 slots.
    dir.write_config("[advanced]\nnumber_of_task_slots = 2\n");
    agent.signal(Signal::SIGHUP);
    wait_slots(rest, 2);
    let tm3 = wait_for("the TaskManager restarted with 2 slots", START, || {
        agent.running_pid("taskmanager").filter(|p| *p != tm)
    });
    assert_ne!(tm3, tm);
    assert_eq!(
        agent.running_pid("jobmanager"),
        Some(jm),
        "the JobManager was restarted for a slot change"
    );
    let s = agent.status().unwrap();
    assert!(
        s["config"]["last_reload_error"].is_null(),
        "stale reload error: {s}"
    );
    assert!(std::fs::read_to_string(&conf_file)
        .unwrap()
        .contains("numberOfTaskSlots: 2"));

    // `flink-agent shutdown`: Flink is stopped first, then the agent exits 0; no process of
    // either group survives.
    let groups: Vec<i32> = agent.seen_pgids().to_vec();
    let out = std::process::Command::new(agent_bin())
        .args(["shutdown", "--socket"])
        .arg(&agent.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for g in &groups {
        assert!(
            !group_alive(*g),
            "process group {g} outlived `shutdown`'s answer"
        );
    }
    let code = agent.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "exit code; log:\n{}", agent.log_text());
    for g in groups {
        assert!(!group_alive(g), "process group {g} survived the agent");
    }
    assert!(
        pids_mentioning(dir.path()).is_empty(),
        "a Flink process survived the agent"
    );
    assert!(!agent.socket.exists(), "the socket was left behind");
}
