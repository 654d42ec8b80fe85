//! The agent may go away and come back, and its config may change under it, without Flink or
//! the jobs noticing more than the change needs. On one real cluster with a real stateful job,
//! outside systemd (the demo's way):
//!
//! 1. `kill -9` of the agent, and a SIGTERM: Flink keeps running, a new agent adopts the same
//!    JobManager and TaskManager, the job stays RUNNING under the same id (sampled every 200 ms)
//!    with no restore, and checkpoints keep completing and becoming durable.
//! 2. A reload of each concern's keys: retention, object store, state dir (needs an agent
//!    restart: said, nothing else touched), REST port and node address (Flink restarted on
//!    them, the job re-submitted, and the agent's own clients follow — over IPv6 too, where
//!    `jobs`, `jobs stop` and `jobs start` work), and Flink's data dir.
//! 3. `flink-agent shutdown`: Flink stopped, then the agent.
#![allow(clippy::unwrap_used)]

mod common;

use common::{build_test_jobs, cli, http_get_at, wait_for, AgentDir, RunningAgent};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const START: Duration = Duration::from_secs(150);

/// The settings this test changes, everything else fixed.
#[derive(Clone)]
struct Knobs {
    state_dir: String,
    address: String,
    rest: u16,
    data_dir: String,
    store: PathBuf,
    retain: u32,
}

fn write_config(dir: &AgentDir, k: &Knobs) {
    let d = dir.path().display();
    let ports = dir.ports.toml().replace(
        &format!("rest = {}\n", dir.ports.rest),
        &format!("rest = {}\n", k.rest),
    );
    let text = format!(
        r#"[agent]
state_dir = "{state}"
socket = "{d}/agent.sock"

[node]
id = "lifecycle"
address = "{a}"
bind_address = "{a}"

[cluster]
id = "lifecycle"
nodes = ["{a}"]

[flink]
home = "{home}"
java_home = "{java}"
data_dir = "{data}"
log_dir = "{d}/flink-log"

[advanced]
checkpoint_interval_ms = 1000

[supervisor]
start_timeout_secs = 120
backoff_initial_ms = 200
backoff_max_ms = 2000
stop_grace_secs = 20

[object_store]
url = "file://{store}"

[checkpoints]
retain = {retain}
rescan_interval_secs = 1

[firewall]
enabled = false

{ports}"#,
        state = k.state_dir,
        a = k.address,
        home = common::flink_home().display(),
        java = common::java_home().display(),
        data = k.data_dir,
        store = k.store.display(),
        retain = k.retain,
    );
    std::fs::write(dir.config_path(), text).unwrap();
}

fn rest_addr(k: &Knobs) -> SocketAddr {
    SocketAddr::new(k.address.parse().unwrap(), k.rest)
}

fn jobs(socket: &Path) -> Option<serde_json::Value> {
    let (ok, out, _) = cli(socket, &["jobs", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    list.as_array()?.first().cloned()
}

fn durable(socket: &Path) -> Option<u64> {
    jobs(socket)?["last_durable_checkpoint"].as_u64()
}

/// Flink's own view of a job: (state, completed checkpoints, restored checkpoint id).
fn flink_job(k: &Knobs, id: &str) -> Option<(String, u64, Option<u64>)> {
    let (code, body) = http_get_at(rest_addr(k), &format!("/jobs/{id}"))?;
    let job: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
    let (_, body) = http_get_at(rest_addr(k), &format!("/jobs/{id}/checkpoints"))?;
    let chk: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some((
        job["state"].as_str()?.to_string(),
        chk["counts"]["completed"].as_u64()?,
        chk["latest"]["restored"]["id"].as_u64(),
    ))
}

/// Samples the job's state every 200 ms in a thread until `stop`; returns every sample.
fn sample(k: &Knobs, id: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    let (k, id) = (k.clone(), id.to_string());
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            seen.push(flink_job(&k, &id).map_or("unreachable".into(), |j| j.0));
            std::thread::sleep(Duration::from_millis(200));
        }
        seen
    })
}

fn reload(socket: &Path) -> serde_json::Value {
    let (ok, out, err) = cli(socket, &["reload", "--json"]);
    assert!(ok, "reload failed: {out}{err}");
    serde_json::from_str(&out).unwrap()
}

/// The outcome the reload report gives `concern`.
fn outcome<'a>(report: &'a serde_json::Value, concern: &str) -> &'a serde_json::Value {
    report["concerns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["concern"] == concern)
        .unwrap_or_else(|| panic!("{concern} missing from {report}"))
}

fn pid(agent: &mut RunningAgent, name: &str) -> i32 {
    wait_for(&format!("{name} running"), START, || {
        agent.running_pid(name)
    })
}

/// The processes' view in status: (pid, adopted, uptime).
fn process(agent: &mut RunningAgent, name: &str) -> (i64, bool, u64) {
    let s = agent.status().unwrap();
    let p = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
        .clone();
    (
        p["pid"].as_i64().unwrap(),
        p["adopted"].as_bool().unwrap(),
        p["uptime_secs"].as_u64().unwrap(),
    )
}

/// Counts remote checkpoints (manifests) of `counter` in a file:// store.
fn remote_checkpoints(store: &Path) -> Vec<u64> {
    let dir = store.join("lifecycle/jobs/counter");
    let mut ids: Vec<u64> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            e.path().join("manifest.json").is_file().then_some(())?;
            e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// The job RUNNING under a Flink id other than `not`; returns its id.
fn running_again(socket: &Path, not: &str) -> String {
    let job = wait_for("the job RUNNING again under a new id", START, || {
        jobs(socket).filter(|j| j["state"] == "RUNNING" && j["flink_job_id"] != not)
    });
    job["flink_job_id"].as_str().unwrap().to_string()
}

/// The agent goes away (`how`), a new one starts: Flink does not notice.
fn survive(
    dir: &AgentDir,
    k: &Knobs,
    agent: RunningAgent,
    id: &str,
    deployed: Instant,
    how: fn(RunningAgent),
) -> RunningAgent {
    let mut agent = agent;
    let (jm, tm) = (
        pid(&mut agent, "jobmanager"),
        pid(&mut agent, "taskmanager"),
    );
    let socket = dir.socket();
    let before = flink_job(k, id).unwrap();
    let durable_before = durable(&socket).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(k, id, stop.clone());
    std::thread::sleep(Duration::from_millis(600));
    how(agent);
    let started = Instant::now();
    let mut agent = dir.start();
    agent.wait_ready(START);
    eprintln!(
        "agent start → ready with adopted processes: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    assert!(samples.len() >= 5, "{samples:?}");
    assert!(
        samples.iter().all(|s| s == "RUNNING"),
        "the job was not RUNNING throughout: {samples:?}"
    );
    for (name, was) in [("jobmanager", jm), ("taskmanager", tm)] {
        let (now, adopted, uptime) = process(&mut agent, name);
        assert_eq!((now, adopted), (i64::from(was), true), "{name}");
        assert!(
            uptime >= deployed.elapsed().as_secs(),
            "{name}: uptime {uptime} s is not the process's"
        );
    }
    let after = wait_for("more completed checkpoints", START, || {
        flink_job(k, id).filter(|j| j.1 > before.1 + 1)
    });
    assert_eq!(after.0, "RUNNING");
    assert_eq!(after.2, before.2, "the job was restored: {after:?}");
    wait_for("a newer durable checkpoint", START, || {
        durable(&socket).filter(|d| *d > durable_before)
    });
    agent
}

#[test]
fn flink_outlives_the_agent_and_every_reload_reaches_its_concern() {
    let dir = AgentDir::new(12);
    let jar = build_test_jobs(&dir.path().join("jobs-build"));
    let d = dir.path().display().to_string();
    let mut k = Knobs {
        state_dir: format!("{d}/state"),
        address: "127.0.0.1".into(),
        rest: dir.ports.rest,
        data_dir: format!("{d}/flink-data"),
        store: dir.path().join("store-a"),
        retain: 3,
    };
    write_config(&dir, &k);
    let socket = dir.socket();
    let mut agent = dir.start();
    agent.wait_ready(START);
    let counts = dir.path().join("counts.txt");
    let (ok, out, err) = cli(
        &socket,
        &[
            "jobs",
            "deploy",
            "counter",
            "--jar",
            &jar.display().to_string(),
            "--entry-class",
            "flinkagent.testjobs.KeyedCounter",
            "--parallelism",
            "1",
            "--",
            &counts.display().to_string(),
            "20",
        ],
    );
    assert!(
        ok && out.starts_with("deployed counter as Flink job "),
        "{out}{err}"
    );
    let deployed = Instant::now();
    let id = jobs(&socket).unwrap()["flink_job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("a durable checkpoint", START, || durable(&socket));

    // 1. The agent crashes, then stops the way systemd stops it: Flink does not notice.
    let agent = survive(&dir, &k, agent, &id, deployed, RunningAgent::crash);
    let mut agent = survive(
        &dir,
        &k,
        agent,
        &id,
        deployed,
        RunningAgent::stop_leaving_flink,
    );

    // 2a. Retention: applied by the sync, the store keeps one checkpoint.
    k.retain = 1;
    write_config(&dir, &k);
    let report = reload(&socket);
    assert_eq!(
        report["changed_keys"],
        serde_json::json!(["checkpoints.retain"])
    );
    assert_eq!(outcome(&report, "checkpoint-sync")["outcome"], "applied");
    assert_eq!(outcome(&report, "supervisor")["outcome"], "unchanged");
    wait_for("one checkpoint kept remotely", START, || {
        let ids = remote_checkpoints(&k.store);
        (ids.len() == 1).then_some(ids)
    });

    // 2b. Another object store: new checkpoints arrive there.
    k.store = dir.path().join("store-b");
    write_config(&dir, &k);
    let report = reload(&socket);
    assert_eq!(outcome(&report, "checkpoint-sync")["outcome"], "applied");
    assert_eq!(outcome(&report, "jobs")["outcome"], "applied");
    wait_for("checkpoints in the new store", START, || {
        Some(remote_checkpoints(&k.store)).filter(|ids| !ids.is_empty())
    });
    assert!(
        k.store.join("lifecycle/jobs/counter/job.json").is_file(),
        "the job's declaration did not follow to the new store"
    );

    // 2c. The state dir moves only with the agent: said so, nothing else touched.
    let jm = pid(&mut agent, "jobmanager");
    let moved = Knobs {
        state_dir: format!("{d}/state-elsewhere"),
        ..k.clone()
    };
    write_config(&dir, &moved);
    let report = reload(&socket);
    assert_eq!(
        outcome(&report, "agent"),
        &serde_json::json!({"concern": "agent", "outcome": "needs-agent-restart", "keys": ["agent.state_dir"]})
    );
    for concern in ["flink-config", "supervisor", "checkpoint-sync", "jobs"] {
        assert_eq!(
            outcome(&report, concern)["outcome"],
            "unchanged",
            "{report}"
        );
    }
    assert_eq!(pid(&mut agent, "jobmanager"), jm);
    // Back to the state dir in force: nothing to do for anyone.
    write_config(&dir, &k);
    let report = reload(&socket);
    for r in report["concerns"].as_array().unwrap() {
        assert_eq!(r["outcome"], "unchanged", "{report}");
    }
    // For real now: the agent restarts on the new state dir. It finds the supervisor's records
    // there (mirrored since the reload), adopts Flink rather than tripping over it, and restarts
    // it once in order on the new conf dir; the job comes back.
    k.state_dir = moved.state_dir;
    write_config(&dir, &k);
    reload(&socket);
    agent.stop_leaving_flink();
    let mut agent = dir.start();
    agent.wait_ready(START);
    let id = running_again(&socket, &id);
    assert!(
        agent.log_text().contains("adopted the running jobmanager"),
        "the records did not follow the state dir"
    );
    assert!(PathBuf::from(&k.state_dir)
        .join("flink-conf/config.yaml")
        .is_file());

    // 2d. Another REST port: Flink restarts on it, the job is re-submitted, and the agent's
    // clients (status, jobs) follow.
    let old_rest = rest_addr(&k);
    k.rest = dir.ports.base + 9;
    write_config(&dir, &k);
    let report = reload(&socket);
    assert_eq!(
        outcome(&report, "supervisor")["processes"],
        serde_json::json!(["jobmanager", "taskmanager"])
    );
    let id = running_again(&socket, &id);
    assert!(
        http_get_at(old_rest, "/overview").is_none(),
        "the old port still answers"
    );
    wait_for(
        "status with Flink's figures from the new port",
        START,
        || {
            agent
                .status()
                .filter(|s| s["overview"]["jobs-running"] == 1)
        },
    );

    // 2e. Node address and bind address on IPv6: Flink restarts there, and the agent dials it
    // with brackets: `jobs`, `jobs stop` and `jobs start` work.
    k.address = "::1".into();
    write_config(&dir, &k);
    let report = reload(&socket);
    assert_eq!(
        outcome(&report, "supervisor")["processes"],
        serde_json::json!(["jobmanager", "taskmanager"]),
        "{report}"
    );
    let id = running_again(&socket, &id);
    assert!(
        flink_job(&k, &id).is_some(),
        "Flink does not answer on [::1]"
    );
    let (ok, out, err) = cli(&socket, &["jobs", "stop", "counter"]);
    assert!(
        ok && out.starts_with("stopped with a savepoint at "),
        "{out}{err}"
    );
    let (ok, out, err) = cli(&socket, &["jobs", "start", "counter"]);
    assert!(ok && out.contains("(savepoint)"), "{out}{err}");
    let id = running_again(&socket, &id);

    // 2f. Flink's data dir: Flink restarts on it; checkpoints are made there and become durable.
    k.data_dir = format!("{d}/flink-data-2");
    write_config(&dir, &k);
    let report = reload(&socket);
    assert_eq!(outcome(&report, "checkpoint-sync")["outcome"], "applied");
    running_again(&socket, &id);
    let new_dir = PathBuf::from(&k.data_dir).join("checkpoints");
    let newest = wait_for("a durable checkpoint from the new data dir", START, || {
        let ids = remote_checkpoints(&k.store);
        let made_here = std::fs::read_dir(&new_dir).ok()?.flatten().any(|job| {
            ids.iter()
                .any(|id| job.path().join(format!("chk-{id}/_metadata")).is_file())
        });
        made_here.then_some(ids)
    });
    assert!(!newest.is_empty());

    // 3. Shutdown: Flink first, then the agent.
    let groups = agent.seen_pgids().to_vec();
    let (ok, out, err) = cli(&socket, &["shutdown"]);
    assert!(ok, "{out}{err}");
    for g in groups {
        assert!(
            !common::group_alive(g),
            "process group {g} outlived `shutdown`"
        );
    }
    assert_eq!(agent.wait_exit(Duration::from_secs(30)), Some(0));
}
