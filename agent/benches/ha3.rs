//! Three-node HA, measured on three network namespaces of one machine (`tests/support/cluster3.rs`):
//!
//! - RTO after `kill -9` of the leading JobManager, and after the loss of the leader node (every
//!   process of its namespace): from the kill to the job RUNNING (every task) on the new leader,
//!   restored from a checkpoint;
//! - RPO: completed checkpoints lost (the newest completed before the kill minus the restored one);
//! - time from three cold nodes to a running job, against a single node;
//!
//! for the agent-run cluster and, in the same run on the same namespaces, for the anchor: Flink's
//! own ZooKeeper HA set up by hand (ZooKeeper servers with the zoo.cfg the agent would write, JM
//! and TM through Flink's scripts with the config the agent renders, so the same timeouts), with
//! the killed processes restarted by hand as an operator's unit would. Prints medians and ratios.
//!
//! `flock /tmp/fa-bench.lock flock /tmp/fa-flink-tests.lock cargo bench -p flink-agent --bench ha3 -- --runs 3`
//! (root, `FLINK_HOME`). Every process is killed and every namespace deleted at the end.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/netns.rs"]
mod netns;

#[path = "../tests/support/cluster3.rs"]
mod cluster3;

#[path = "../tests/common/mod.rs"]
mod common;

use cluster3::{deploy_counter, deployed_id, poll, Cluster3, Options};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(420);

fn flink_home() -> PathBuf {
    PathBuf::from(std::env::var("FLINK_HOME").expect("FLINK_HOME (tests/setup/flink.sh prints it)"))
}

fn java_home() -> PathBuf {
    PathBuf::from(
        std::env::var("JAVA_HOME").unwrap_or_else(|_| "/usr/lib/jvm/java-17-openjdk-amd64".into()),
    )
}

/// One failover: seconds to RUNNING, completed checkpoints lost, and whether the ZooKeeper
/// leader went with the lost node (the ensemble elects another first: seconds more, on both
/// sides, and by chance).
#[derive(Debug, Clone, Copy)]
struct Failover {
    rto: f64,
    lost: u64,
    zk_leader_lost: bool,
}

fn job_state(c: &Cluster3, i: usize, id: &str) -> Option<(bool, Option<u64>, Option<u64>)> {
    let j = c.rest(i, &format!("/jobs/{id}"))?;
    let running = j["state"] == "RUNNING"
        && j["vertices"]
            .as_array()?
            .iter()
            .all(|v| v["status"] == "RUNNING");
    let cp = c.rest(i, &format!("/jobs/{id}/checkpoints"))?;
    Some((
        running,
        cp["latest"]["completed"]["id"].as_u64(),
        cp["latest"]["restored"]["id"].as_u64(),
    ))
}

/// Waits for a completed checkpoint newer than the last restore, then settles.
fn settled(c: &Cluster3, i: usize, id: &str) -> u64 {
    let done = poll(LONG, || {
        let (running, completed, restored) = job_state(c, i, id)?;
        (running && completed > restored.map(|r| r + 1))
            .then_some(completed)
            .flatten()
    })
    .unwrap_or_else(|| {
        let log = c.node(i).dir.join("anchor/log");
        let tail = std::fs::read_dir(&log)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("jobmanager"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .flat_map(|t| {
                t.lines()
                    .filter(|l| l.contains("heckpoint") || l.contains("Exception"))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .take(40)
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "no completed checkpoint on node {}: {:?}\n{tail}",
            i + 1,
            c.rest(i, &format!("/jobs/{id}/checkpoints"))
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    job_state(c, i, id).and_then(|s| s.1).unwrap_or(done)
}

/// Times the recovery after `kill` (which acts at t0) through the nodes in `watch`: the job
/// RUNNING with every task, restored from a checkpoint after the kill.
fn failover(
    c: &Cluster3,
    id: &str,
    before: u64,
    watch: &[usize],
    zk_leader_lost: bool,
    kill: impl FnOnce(),
) -> Failover {
    let earlier = watch
        .iter()
        .find_map(|&i| job_state(c, i, id))
        .and_then(|s| s.2);
    kill();
    let t0 = Instant::now();
    let restored = poll(LONG, || {
        watch.iter().find_map(|&i| {
            let (running, _, restored) = job_state(c, i, id)?;
            restored.filter(|r| running && Some(*r) > earlier)
        })
    })
    .expect("recovered");
    Failover {
        rto: t0.elapsed().as_secs_f64(),
        lost: before.saturating_sub(restored),
        zk_leader_lost,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Prints the median and the runs (`*`: the ZooKeeper leader was lost too); returns the
/// medians of all runs, of those that kept the ZooKeeper leader, of those that lost it.
fn report(label: &str, runs: &[Failover]) -> [f64; 3] {
    let of = |keep: &dyn Fn(&Failover) -> bool| {
        median(runs.iter().filter(|f| keep(f)).map(|f| f.rto).collect())
    };
    let medians = [
        of(&|_| true),
        of(&|f| !f.zk_leader_lost),
        of(&|f| f.zk_leader_lost),
    ];
    let lost: Vec<u64> = runs.iter().map(|f| f.lost).collect();
    println!(
        "  {label:<34} RTO median {:6.1} s  (runs: {})  checkpoints lost: {lost:?}",
        medians[0],
        runs.iter()
            .map(|f| format!("{:.1}{}", f.rto, if f.zk_leader_lost { "*" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
    medians
}

// ------------------------------------------------------------------ the agent-run cluster

fn leader_jm(c: &Cluster3, all: &[usize]) -> (usize, i32) {
    let l = poll(LONG, || c.leader(all)).expect("a leader");
    (
        l,
        poll(LONG, || c.running_pid(l, "jobmanager")).expect("its pid"),
    )
}

fn healthy(c: &Cluster3, nodes: &[usize]) -> Option<usize> {
    for &i in nodes {
        let s = c.status(i)?;
        if s["ready"] != true || s["cluster"]["quorum_healthy"] != true {
            return None;
        }
    }
    c.leader(nodes)
}

fn agent_cluster(c: &Cluster3, jar: &Path, runs: usize) -> (f64, Vec<Failover>, Vec<Failover>) {
    let all = [0, 1, 2];
    let t = Instant::now();
    for i in all {
        c.start(i);
    }
    let leader = poll(LONG, || healthy(c, &all)).expect("a ready cluster");
    let (code, out, err) = deploy_counter(c, leader, jar, 3);
    assert_eq!(code, 0, "{out}{err}");
    let id = deployed_id(&out);
    poll(LONG, || job_state(c, leader, &id).filter(|s| s.0)).expect("RUNNING");
    let cold = t.elapsed().as_secs_f64();
    println!("agent: three cold nodes → job RUNNING in {cold:.1} s");
    let mut jm_kills = Vec::new();
    for run in 0..runs {
        let (l, pid) = leader_jm(c, &all);
        let before = settled(c, l, &id);
        let watch: Vec<usize> = all.iter().copied().filter(|i| *i != l).collect();
        let f = failover(c, &id, before, &watch, false, || {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        });
        println!("agent JobManager kill {}: {f:?}", run + 1);
        jm_kills.push(f);
        poll(LONG, || healthy(c, &all)).expect("the JobManager back as a standby");
    }
    let mut node_losses = Vec::new();
    for run in 0..runs {
        let (l, _) = leader_jm(c, &all);
        let before = settled(c, l, &id);
        let watch: Vec<usize> = all.iter().copied().filter(|i| *i != l).collect();
        let zk = c.zookeeper_mode(l).as_deref() == Some("leader");
        let f = failover(c, &id, before, &watch, zk, || c.kill_node(l));
        println!("agent node loss {}: {f:?}", run + 1);
        node_losses.push(f);
        c.start(l);
        poll(LONG, || healthy(c, &all)).expect("the node back");
    }
    (cold, jm_kills, node_losses)
}

/// One node (the first namespace), single-node config: cold start → job RUNNING.
fn single_node(c: &Cluster3, jar: &Path) -> f64 {
    let n = c.node(0);
    let config = n.dir.join("single.toml");
    let text = std::fs::read_to_string(n.config())
        .unwrap()
        .replace(
            "nodes = [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\"]",
            "nodes = [\"192.0.2.1\"]",
        )
        .replace("/state\"", "/single-state\"")
        .replace("/flink-data\"", "/single-data\"")
        .replace("number_of_task_slots = 2", "number_of_task_slots = 3")
        .replace("id = \"ha3\"", "id = \"single\"");
    std::fs::write(&config, text).unwrap();
    let t = Instant::now();
    let mut agent = spawn_in(
        c,
        0,
        &[
            c.opts.agent.to_str().unwrap(),
            "run",
            "--config",
            config.to_str().unwrap(),
        ],
        &[("FLINK_AGENT_LOG", "info")],
        &n.dir.join("single.log"),
    );
    poll(LONG, || c.status(0).filter(|s| s["ready"] == true)).expect("single node ready");
    let (code, out, err) = deploy_counter(c, 0, jar, 3);
    assert_eq!(code, 0, "{out}{err}");
    let id = deployed_id(&out);
    poll(LONG, || job_state(c, 0, &id).filter(|s| s.0)).expect("RUNNING");
    let cold = t.elapsed().as_secs_f64();
    println!("single node: cold → job RUNNING in {cold:.1} s");
    let _ = agent.kill();
    let _ = agent.wait();
    c.kill_node(0);
    cold
}

// ------------------------------------------------------------------ the anchor

fn spawn_in(c: &Cluster3, i: usize, argv: &[&str], env: &[(&str, &str)], log: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new("ip")
        .args(["netns", "exec", &c.net.ns(&c.node(i).role)])
        .args(argv)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Node `i`'s files for the anchor: zoo.cfg/myid as the agent renders them, Flink's config as
/// the agent renders it plus the cluster id.
fn anchor_files(c: &Cluster3, i: usize) -> (PathBuf, PathBuf) {
    let n = c.node(i);
    let dir = n.dir.join("anchor");
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let mut config = flink_agent::config::load_unchecked(&n.config()).unwrap();
    config.agent.state_dir = dir.join("state");
    config.flink.data_dir = dir.join("data");
    config.flink.log_dir = dir.join("log");
    config.ha.shared_dir = Some(c.shared.join("anchor"));
    let server =
        flink_agent::zookeeper::render::server_spec(&config, &c.shared.join("anchor/ha3")).unwrap();
    std::fs::create_dir_all(&server.conf_dir).unwrap();
    std::fs::create_dir_all(&server.data_dir).unwrap();
    std::fs::create_dir_all(&config.flink.log_dir).unwrap();
    std::fs::create_dir_all(config.flink.data_dir.join("tmp")).unwrap();
    std::fs::write(server.zoo_cfg_path(), server.zoo_cfg()).unwrap();
    std::fs::write(server.data_dir.join("myid"), format!("{}\n", server.myid)).unwrap();
    let version = flink_agent::flinkconf::detect_version(&config.flink.home).unwrap();
    let rendered = flink_agent::flinkconf::render(&config, version, &Default::default()).unwrap();
    // The REST upload dir in the node's data dir, as the agent gives it: a killed JobManager
    // leaves it behind, and Flink's default is /tmp.
    let text = format!(
        "{}high-availability.cluster-id: /anchor\nweb.tmpdir: {}\n",
        rendered.content,
        config.flink.data_dir.join("tmp").display()
    );
    std::fs::write(conf.join("config.yaml"), text).unwrap();
    for entry in std::fs::read_dir(flink_home().join("conf"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("log4j") || name.starts_with("logback") {
            std::fs::copy(entry.path(), conf.join(name)).unwrap();
        }
    }
    (server.zoo_cfg_path(), conf)
}

fn anchor_zookeeper(c: &Cluster3, i: usize, cfg: &Path) -> Child {
    let java = java_home().join("bin/java");
    spawn_in(
        c,
        i,
        &[
            java.to_str().unwrap(),
            "-Xmx128m",
            "-cp",
            "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            cfg.to_str().unwrap(),
        ],
        &[],
        &c.node(i).dir.join("anchor/zookeeper.out"),
    )
}

fn anchor_flink(c: &Cluster3, i: usize, conf: &Path, what: &str) -> Child {
    let home = flink_home();
    let log = c.node(i).dir.join("anchor/log");
    let script = home.join(format!("bin/{what}.sh"));
    let j = java_home();
    spawn_in(
        c,
        i,
        &[script.to_str().unwrap(), "start-foreground"],
        &[
            ("FLINK_CONF_DIR", conf.to_str().unwrap()),
            ("FLINK_LOG_DIR", log.to_str().unwrap()),
            ("FLINK_PID_DIR", log.to_str().unwrap()),
            ("JAVA_HOME", j.to_str().unwrap()),
        ],
        &log.join(format!("{what}.console")),
    )
}

/// The anchor's leading JobManager: the node whose REST address Flink published in ZooKeeper.
fn anchor_leader(c: &Cluster3) -> Option<usize> {
    let java = java_home().join("bin/java");
    let out = Command::new("ip")
        .args(["netns", "exec", &c.net.ns("n1")])
        .arg(java)
        .args([
            "-cp",
            "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar",
            "org.apache.zookeeper.ZooKeeperMain",
            "-server",
            "192.0.2.1:2181,192.0.2.2:2181,192.0.2.3:2181",
            "get",
            "/flink/anchor/leader/rest_server/connection_info",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("http://")?;
    let host: String = text[at + 7..]
        .chars()
        .take_while(|ch| ch.is_ascii_digit() || *ch == '.')
        .collect();
    c.nodes.iter().position(|n| n.address.to_string() == host)
}

/// Flink's REST upload and run, from inside node `i`.
fn anchor_submit(c: &Cluster3, i: usize, jar: &Path) -> String {
    let counts = c.shared.join("anchor-counts.txt");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.net.ns(&c.node(i).role),
            "curl",
            "-s",
            "-m",
            "120",
            "-F",
        ])
        .arg(format!("jarfile=@{}", jar.display()))
        .arg(format!("http://{}:8081/jars/upload", c.node(i).address))
        .output()
        .unwrap();
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jar_id = up["filename"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let body = serde_json::json!({"entryClass": "flinkagent.testjobs.KeyedCounter", "parallelism": 3, "programArgsList": [counts.display().to_string(), "20"]});
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.net.ns(&c.node(i).role),
            "curl",
            "-s",
            "-m",
            "120",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
        ])
        .arg(body.to_string())
        .arg(format!(
            "http://{}:8081/jars/{jar_id}/run",
            c.node(i).address
        ))
        .output()
        .unwrap();
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    run["jobid"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"))
        .to_string()
}

struct Anchor {
    zk: Vec<Option<Child>>,
    jm: Vec<Option<Child>>,
    tm: Vec<Option<Child>>,
    files: Vec<(PathBuf, PathBuf)>,
}

fn anchor(c: &Cluster3, jar: &Path, runs: usize) -> (f64, Vec<Failover>, Vec<Failover>) {
    let all = [0usize, 1, 2];
    let files: Vec<_> = all.iter().map(|&i| anchor_files(c, i)).collect();
    let t = Instant::now();
    let mut a = Anchor {
        zk: all
            .iter()
            .map(|&i| Some(anchor_zookeeper(c, i, &files[i].0)))
            .collect(),
        jm: all
            .iter()
            .map(|&i| Some(anchor_flink(c, i, &files[i].1, "jobmanager")))
            .collect(),
        tm: all
            .iter()
            .map(|&i| Some(anchor_flink(c, i, &files[i].1, "taskmanager")))
            .collect(),
        files,
    };
    let leader = poll(LONG, || {
        let l = anchor_leader(c)?;
        let tms = c.rest(l, "/overview")?["taskmanagers"].as_u64()?;
        (tms == 3).then_some(l)
    })
    .expect("anchor leader with three TaskManagers");
    let id = anchor_submit(c, leader, jar);
    poll(LONG, || job_state(c, leader, &id).filter(|s| s.0)).expect("RUNNING");
    let cold = t.elapsed().as_secs_f64();
    println!("anchor: three cold nodes (by hand) → job RUNNING in {cold:.1} s");
    let mut jm_kills = Vec::new();
    for run in 0..runs {
        let l = poll(LONG, || anchor_leader(c)).unwrap();
        let before = settled(c, l, &id);
        let watch: Vec<usize> = all.iter().copied().filter(|i| *i != l).collect();
        let mut jm = a.jm[l].take().unwrap();
        let conf = a.files[l].1.clone();
        let mut restarted = None;
        let f = failover(c, &id, before, &watch, false, || {
            // The JVM leads the script's process group.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(jm.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = jm.wait();
            // Flink's HA as it is deployed: a supervisor restarts the crashed JobManager at once
            // (systemd's Restart= waits 100 ms by default), as the agent does; its start then
            // shares the machine with the failover, on both sides.
            restarted = Some(anchor_flink(c, l, &conf, "jobmanager"));
        });
        println!("anchor JobManager kill {}: {f:?}", run + 1);
        jm_kills.push(f);
        a.jm[l] = restarted;
        poll(LONG, || c.rest(l, "/overview")).expect("the standby back");
    }
    let mut node_losses = Vec::new();
    for run in 0..runs {
        let l = poll(LONG, || anchor_leader(c)).unwrap();
        let before = settled(c, l, &id);
        let watch: Vec<usize> = all.iter().copied().filter(|i| *i != l).collect();
        let zk = c.zookeeper_mode(l).as_deref() == Some("leader");
        let f = failover(c, &id, before, &watch, zk, || c.kill_node(l));
        for slot in [&mut a.zk[l], &mut a.jm[l], &mut a.tm[l]] {
            if let Some(mut p) = slot.take() {
                let _ = p.wait();
            }
        }
        println!("anchor node loss {}: {f:?}", run + 1);
        node_losses.push(f);
        a.zk[l] = Some(anchor_zookeeper(c, l, &a.files[l].0));
        a.jm[l] = Some(anchor_flink(c, l, &a.files[l].1, "jobmanager"));
        a.tm[l] = Some(anchor_flink(c, l, &a.files[l].1, "taskmanager"));
        poll(LONG, || {
            (c.rest(l, "/overview")?["taskmanagers"].as_u64()? == 3).then_some(())
        })
        .expect("the node back");
    }
    for i in all {
        c.kill_node(i);
    }
    (cold, jm_kills, node_losses)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3usize);
    let skip_anchor = args.iter().any(|a| a == "--skip-anchor");
    let opts = Options {
        agent: PathBuf::from(env!("CARGO_BIN_EXE_flink-agent")),
        flink_home: flink_home(),
        java_home: java_home(),
        checkpoint_interval_ms: 2000,
        task_slots: 2,
        session_timeout_ms: 6000,
        extra: "[advanced.flink_config]\n\"taskmanager.load-balance.mode\" = \"SLOTS\"\n".into(),
    };
    let c = Cluster3::new(opts).unwrap_or_else(|e| panic!("cannot build the namespaces: {e}"));
    let jar = common::build_test_jobs(&c.root.path().join("jobs-build"));
    let skip_agent = args.iter().any(|a| a == "--skip-agent");
    let (agent_cold, agent_jm, agent_node) = if skip_agent {
        (f64::NAN, Vec::new(), Vec::new())
    } else {
        agent_cluster(&c, &jar, runs)
    };
    for i in 0..3 {
        c.kill_node(i);
    }
    let single = if skip_agent {
        f64::NAN
    } else {
        single_node(&c, &jar)
    };
    // The agents' nftables tables outlive them (the firewall is kernel state), and the
    // single-node phase's admits no peer at all: Flink's own HA by hand runs without them.
    for i in 0..3 {
        let _ = Command::new("ip")
            .args(["netns", "exec", &c.net.ns(&c.node(i).role)])
            .args(["nft", "delete", "table", "inet", "flink_agent"])
            .stderr(Stdio::null())
            .status();
    }
    let anchor = (!skip_anchor).then(|| anchor(&c, &jar, runs));
    println!("\nthree-node HA, {runs} run(s) each, session timeout 6 s, heartbeat 2 s / 8 s, checkpoints every 2 s");
    let a_jm = report("agent: kill -9 leader JobManager", &agent_jm);
    let a_node = report("agent: leader node lost", &agent_node);
    println!("  (*: the node's ZooKeeper server led the ensemble, which elected another first)");
    println!("  cold start → RUNNING: three nodes {agent_cold:.1} s, single node {single:.1} s (ratio {:.2})", agent_cold / single);
    if let Some((cold, jm, node)) = anchor {
        let h_jm = report("anchor: kill -9 leader JobManager", &jm);
        let h_node = report("anchor: leader node lost", &node);
        println!("  anchor cold start (by hand) → RUNNING: {cold:.1} s");
        println!(
            "  node loss medians, ZooKeeper leader kept / lost too: agent {:.1} / {:.1} s, anchor {:.1} / {:.1} s",
            a_node[1], a_node[2], h_node[1], h_node[2]
        );
        println!(
            "  ratio agent/anchor: JobManager kill {:.2}, node loss {:.2} (ZooKeeper leader kept {:.2}, lost too {:.2}; goal <= 1.0 for node loss)",
            a_jm[0] / h_jm[0],
            a_node[0] / h_node[0],
            a_node[1] / h_node[1],
            a_node[2] / h_node[2]
        );
    }
}
