//! Three nodes with end-to-end TLS, as a managed service would run them: `[tls] mode = "ca"`
//! with one CA for the cluster, from which each agent issues its own node certificate. Every
//! path between the nodes then runs over mutual TLS, and this test drives each of them once:
//!
//! 1. the three TaskManagers register with the leading JobManager on another node (RPC);
//! 2. a job deployed through a standby (its jar through the blob server) runs its three subtasks
//!    on the three TaskManagers, its keyed exchange crossing nodes (the data plane), and its
//!    checkpoints become durable; Flink's REST API answers plain http with no data;
//! 3. `kill -9` of the leading JobManager: its agent hands the leadership over, a standby on
//!    another node leads, the TaskManagers register with it, the job runs again and completes
//!    checkpoints newer than before the kill.
//!
//! The agents' own REST calls (health, jobs) go through TLS with their client certificates.
//! Needs root (namespaces) and `FLINK_HOME`; run under `flock /tmp/fa-flink-tests.lock` like
//! every test that starts Flink (`tests/run.sh`).
#![allow(clippy::unwrap_used)]

#[path = "support/netns.rs"]
mod netns;

#[path = "support/cluster3.rs"]
mod cluster3;

mod common;

use cluster3::{deploy_counter, deployed_id, healthy, poll, Cluster3, Options};
use flink_agent::tls::issue::new_ca;
use flink_agent::tls::pem::write_private;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};

const START: Duration = Duration::from_secs(420);
const RECOVER: Duration = Duration::from_secs(240);
const DAY: Duration = Duration::from_secs(86_400);

/// The declared job as node `i`'s agent reports it (through Flink's REST API over TLS).
fn job(c: &Cluster3, i: usize) -> Option<Value> {
    let (_, out, _) = c.cli(i, &["jobs", "--json"]);
    serde_json::from_str::<Value>(&out).ok()?.get(0).cloned()
}

#[test]
fn three_nodes_run_everything_between_them_over_mutual_tls() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    let ca = new_ca("Cluster CA", SystemTime::now() - DAY, DAY * 3650).unwrap();
    let (ca_cert, ca_key) = (pki.path().join("ca.pem"), pki.path().join("ca.key"));
    std::fs::write(&ca_cert, ca.chain_pem()).unwrap();
    write_private(&ca_key, ca.key.to_pem().as_bytes()).unwrap();
    let opts = Options {
        agent: common::agent_bin(),
        flink_home: common::flink_home(),
        java_home: common::java_home(),
        checkpoint_interval_ms: 2000,
        task_slots: 2,
        session_timeout_ms: 6000,
        extra: format!(
            "[advanced.flink_config]\n\"taskmanager.load-balance.mode\" = \"SLOTS\"\n\n[tls]\nenabled = true\nmode = \"ca\"\nca_cert_file = \"{}\"\nca_key_file = \"{}\"\n",
            ca_cert.display(),
            ca_key.display()
        ),
    };
    let Some(c) = Cluster3::new_or_skip(opts) else {
        return;
    };
    let jar = common::build_test_jobs(&c.root.path().join("jobs-build"));

    // 1. The cluster forms: TaskManagers register across nodes over TLS.
    let t = Instant::now();
    for i in 0..3 {
        c.start(i);
    }
    let leader = poll(START, || healthy(&c, &[0, 1, 2]))
        .unwrap_or_else(|| panic!("no healthy TLS cluster; node-1: {}", c.log_tail(0, 30)));
    eprintln!(
        "1. three TLS nodes → ready cluster: {:.1} s (leader node-{})",
        t.elapsed().as_secs_f64(),
        leader + 1
    );
    for i in 0..3 {
        let conf =
            std::fs::read_to_string(c.node(i).dir.join("state/flink-conf/config.yaml")).unwrap();
        for key in ["security.ssl.internal.enabled", "security.ssl.rest.enabled"] {
            let on = conf
                .lines()
                .any(|l| l.starts_with(&format!("{key}:")) && l.contains("true"));
            assert!(
                on,
                "node-{}'s Flink config: {key} is not on:\n{conf}",
                i + 1
            );
        }
        assert!(
            c.rest(i, "/overview").is_none(),
            "node-{}'s REST API answered plain http",
            i + 1
        );
    }

    // 2. A job over TLS, deployed through a standby.
    let via = (leader + 1) % 3;
    let (code, out, err) = deploy_counter(&c, via, &jar, 3);
    assert_eq!(code, 0, "deploy: {out}{err}");
    let id = deployed_id(&out);
    let t = Instant::now();
    let before = poll(START, || {
        let j = job(&c, leader)?;
        (j["state"] == "RUNNING")
            .then(|| j["last_durable_checkpoint"].as_u64())
            .flatten()
            .and_then(|_| j["last_completed_checkpoint"].as_u64())
    })
    .unwrap_or_else(|| {
        panic!(
            "the job never ran with a durable checkpoint: {:?}",
            job(&c, leader)
        )
    });
    eprintln!(
        "2. job {id} RUNNING over TLS with a durable checkpoint: {:.1} s (newest completed {before})",
        t.elapsed().as_secs_f64()
    );

    // 3. kill -9 of the leading JobManager.
    let pid = poll(START, || c.running_pid(leader, "jobmanager")).unwrap();
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new =
        poll(RECOVER, || c.leader(&others).filter(|l| *l != leader)).expect("a standby leads");
    let after = poll(RECOVER, || {
        let j = job(&c, new)?;
        let completed = j["last_completed_checkpoint"].as_u64()?;
        (j["state"] == "RUNNING" && completed > before + 1).then_some(completed)
    })
    .unwrap_or_else(|| panic!("the job did not run again: {:?}", job(&c, new)));
    eprintln!(
        "3. kill -9 leader JobManager: node-{} leads, checkpoints completing again ({before} → {after}) after {:.1} s",
        new + 1,
        t.elapsed().as_secs_f64()
    );
    assert!(
        c.handed_over(leader),
        "no hand-over in node-{}'s agent log:\n{}",
        leader + 1,
        c.log_tail(leader, 40)
    );
    poll(RECOVER, || healthy(&c, &[0, 1, 2])).expect("the killed JobManager back as a standby");
}
