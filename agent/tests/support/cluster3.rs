//! Three nodes on one machine, for the three-node tests and benchmark: one network namespace
//! per node on a bridge (see `netns.rs`), every node on the same ports of its own address
//! (192.0.2.1-3), each with its own agent, config, state, data and log dirs and socket, and one
//! directory all three see standing for the shared storage (NFS) and one for the object store.
//!
//! A node's agent runs inside its namespace (`ip netns exec`), so everything it starts — the
//! ZooKeeper server, the JobManager, the TaskManager — lives there too: killing every process of
//! a namespace is losing the node, taking its link down on the bridge is a partition.
//!
//! Drop kills every process of the three namespaces and any process naming the cluster's
//! directory, then the namespaces go: nothing is left behind, also when a test panics.
#![allow(dead_code)] // shared by the test and the benchmark; each uses a subset

use super::netns::{v4, Net};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const NODES: [u8; 3] = [1, 2, 3];

/// How a cluster is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The agent binary.
    pub agent: PathBuf,
    pub flink_home: PathBuf,
    pub java_home: PathBuf,
    pub checkpoint_interval_ms: u64,
    pub task_slots: u32,
    pub session_timeout_ms: u64,
    /// Extra TOML appended to every node's config.
    pub extra: String,
}

/// One node: its namespace role, address and files.
#[derive(Debug)]
pub struct Node {
    pub host: u8,
    pub role: String,
    pub id: String,
    pub address: IpAddr,
    pub dir: PathBuf,
    agent: std::sync::Mutex<Option<Child>>,
}

impl Node {
    pub fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
    pub fn rest(&self) -> SocketAddr {
        SocketAddr::new(self.address, 8081)
    }
}

/// The cluster. Drop ends everything.
pub struct Cluster3 {
    pub net: Net,
    pub root: tempfile::TempDir,
    pub shared: PathBuf,
    pub store: PathBuf,
    pub nodes: Vec<Node>,
    pub opts: Options,
}

impl Cluster3 {
    /// Builds the namespaces and writes every node's config; starts nothing.
    pub fn new(opts: Options) -> Result<Cluster3, String> {
        let net = Net::new(&[("n1", 1), ("n2", 2), ("n3", 3)])?;
        let root = tempfile::Builder::new()
            .prefix("fa-ha3-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let shared = root.path().join("shared");
        let store = root.path().join("store");
        for d in [&shared, &store] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let nodes = NODES
            .iter()
            .map(|&host| Node {
                host,
                role: format!("n{host}"),
                id: format!("node-{host}"),
                address: v4(host),
                dir: root.path().join(format!("n{host}")),
                agent: std::sync::Mutex::new(None),
            })
            .collect();
        let c = Cluster3 {
            net,
            root,
            shared,
            store,
            nodes,
            opts,
        };
        for i in 0..3 {
            c.write_config(i, &c.nodes[i].id.clone());
        }
        Ok(c)
    }

    /// [`Self::new`] for a test: None, after saying why the test is skipped here, when the
    /// namespaces cannot be built.
    pub fn new_or_skip(opts: Options) -> Option<Cluster3> {
        Cluster3::new(opts)
            .map_err(|e| eprintln!("skipped: {e}"))
            .ok()
    }

    /// Node `i`'s agent logged that it handed its crashed JobManager's leadership over.
    pub fn handed_over(&self, i: usize) -> bool {
        std::fs::read_to_string(self.nodes[i].log())
            .unwrap_or_default()
            .contains("the crashed JobManager led: its ZooKeeper session")
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Writes node `i`'s config with `node.id = id`.
    pub fn write_config(&self, i: usize, id: &str) {
        let n = &self.nodes[i];
        std::fs::create_dir_all(&n.dir).expect("node dir");
        let d = n.dir.display();
        let o = &self.opts;
        let text = format!(
            r#"[agent]
state_dir = "{d}/state"
socket = "{d}/agent.sock"

[node]
id = "{id}"
address = "{a}"
bind_address = "{a}"

[cluster]
id = "ha3"
nodes = ["{n1}", "{n2}", "{n3}"]

[flink]
home = "{home}"
java_home = "{java}"
data_dir = "{d}/flink-data"
log_dir = "{d}/flink-log"

[advanced]
checkpoint_interval_ms = {interval}
number_of_task_slots = {slots}

[supervisor]
start_timeout_secs = 300
backoff_initial_ms = 500
backoff_max_ms = 5000
stop_grace_secs = 20

[object_store]
url = "file://{store}"

[checkpoints]
rescan_interval_secs = 2

[firewall]
enabled = true

[ha]
shared_dir = "{shared}"
session_timeout_ms = {session}

{extra}
"#,
            a = n.address,
            n1 = v4(1),
            n2 = v4(2),
            n3 = v4(3),
            home = o.flink_home.display(),
            java = o.java_home.display(),
            interval = o.checkpoint_interval_ms,
            slots = o.task_slots,
            store = self.store.display(),
            shared = self.shared.display(),
            session = o.session_timeout_ms,
            extra = o.extra,
        );
        std::fs::write(n.config(), text).expect("write config");
    }

    /// Starts node `i`'s agent inside its namespace (its log: `<node dir>/agent.log`, appended).
    pub fn start(&self, i: usize) {
        self.start_with(i, &self.opts.agent);
    }

    /// [`Self::start`] with another agent binary (an upgrade).
    pub fn start_with(&self, i: usize, agent: &Path) {
        let ns = self.net.ns(&self.nodes[i].role);
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.log())
            .expect("agent log");
        use std::os::unix::process::CommandExt;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(agent)
            .args(["run", "--config"])
            .arg(n.config())
            .env("FLINK_AGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start flink-agent");
        *n.agent.lock().expect("agent slot") = Some(child);
    }

    /// The agent alone gets `sig` (SIGKILL: a crash; SIGTERM: systemd's stop). Waits for it.
    pub fn signal_agent(&self, i: usize, sig: nix::sys::signal::Signal) {
        let child = self.nodes[i].agent.lock().expect("agent slot").take();
        if let Some(mut child) = child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every process of node `i`'s namespace (agent, ZooKeeper, JobManager, TaskManager).
    pub fn pids(&self, i: usize) -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.net.ns(&self.nodes[i].role)])
            .output()
            .expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// The node is lost: `kill -9` of every process in its namespace, at once.
    pub fn kill_node(&self, i: usize) {
        for pid in self.pids(i) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let child = self.nodes[i].agent.lock().expect("agent slot").take();
        if let Some(mut child) = child {
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.pids(i).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Takes node `i`'s link on the bridge down (`false`) or up: a partition without RSTs.
    pub fn link(&self, i: usize, up: bool) {
        let status = Command::new("ip")
            .args(["-n", &self.net.ns("hub"), "link", "set"])
            .arg(format!("v{}", self.nodes[i].host))
            .arg(if up { "up" } else { "down" })
            .status()
            .expect("ip link");
        assert!(
            status.success(),
            "ip link set v{} failed",
            self.nodes[i].host
        );
    }

    /// `flink-agent <args...>` against node `i`'s socket: (exit code, stdout, stderr).
    pub fn cli(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let o = Command::new(&self.opts.agent)
            .arg(args[0])
            .arg("--socket")
            .arg(self.nodes[i].socket())
            .args(&args[1..])
            .output()
            .expect("run flink-agent");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// `status --json` of node `i`, while its agent answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let (_, out, _) = self.cli(i, &["status", "--json"]);
        serde_json::from_str(&out).ok()
    }

    /// A GET of Flink's REST API on node `i`, from inside its namespace.
    pub fn rest(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let addr = self.nodes[i].rest();
        let path = path.to_string();
        self.net.run_in(&self.nodes[i].role, move || {
            let (code, body) = http_get(addr, &path, Duration::from_millis(1500))?;
            (code == 200)
                .then(|| serde_json::from_str(&body).ok())
                .flatten()
        })
    }

    /// The ZooKeeper server of node `i` answers `srvr` with this mode (`leader`, `follower`).
    pub fn zookeeper_mode(&self, i: usize) -> Option<String> {
        let addr = SocketAddr::new(self.nodes[i].address, 2181);
        self.net.run_in(&self.nodes[i].role, move || {
            use std::io::{Read, Write};
            let mut s =
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"srvr").ok()?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).ok()?;
            answer
                .lines()
                .find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
        })
    }

    /// The pid of node `i`'s process `name` from its agent's status, while `running`.
    pub fn running_pid(&self, i: usize, name: &str) -> Option<i32> {
        let s = self.status(i)?;
        let p = s["processes"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)?
            .clone();
        (p["state"] == "running")
            .then(|| p["pid"].as_i64())
            .flatten()
            .map(|p| p as i32)
    }

    /// The node whose JobManager leads, as node `asked`'s status says (index into `nodes`).
    pub fn leader_seen_by(&self, asked: usize) -> Option<usize> {
        let s = self.status(asked)?;
        let leader = s["cluster"]["leader"].as_str()?.to_string();
        self.nodes.iter().position(|n| n.id == leader)
    }

    /// The leading JobManager as a majority of the answering agents sees it.
    pub fn leader(&self, among: &[usize]) -> Option<usize> {
        let seen: Vec<usize> = among
            .iter()
            .filter_map(|&i| self.leader_seen_by(i))
            .collect();
        let first = *seen.first()?;
        (seen.iter().all(|l| *l == first) && seen.len() * 2 > among.len()).then_some(first)
    }

    /// Node `i`'s agent log (for failure messages).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[i].log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster3 {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..3 {
                eprintln!(
                    "--- last lines of {} ---\n{}",
                    self.nodes[i].log().display(),
                    self.log_tail(i, 60)
                );
            }
        }
        for i in 0..3 {
            self.kill_node(i);
        }
        let marker = self.root.path().to_string_lossy().into_owned();
        for pid in pids_naming(&marker) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if std::env::var_os("FA_KEEP").is_some() {
            let kept = self.root.path().to_path_buf();
            eprintln!("kept {}", kept.display());
            std::mem::forget(std::mem::replace(
                &mut self.root,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}

/// Every node's agent says ready, the quorum is healthy, one leader, three TaskManagers.
pub fn healthy(c: &Cluster3, nodes: &[usize]) -> Option<usize> {
    for &i in nodes {
        let s = c.status(i)?;
        let cluster = &s["cluster"];
        if s["ready"] != true || cluster["quorum_healthy"] != true {
            return None;
        }
        let registered = cluster["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["taskmanager_registered"] == true)
            .count();
        if registered != nodes.len() {
            return None;
        }
    }
    c.leader(nodes)
}

/// Flink's view of job `id` through node `i`: (state, all tasks running, start time).
pub fn job(c: &Cluster3, i: usize, id: &str) -> Option<(String, bool, i64)> {
    let j = c.rest(i, &format!("/jobs/{id}"))?;
    let running = j["vertices"]
        .as_array()?
        .iter()
        .all(|v| v["status"] == "RUNNING");
    Some((
        j["state"].as_str()?.into(),
        running,
        j["start-time"].as_i64()?,
    ))
}

/// (last completed, last restored) checkpoint ids of job `id` through node `i`.
pub fn checkpoints(c: &Cluster3, i: usize, id: &str) -> Option<(Option<u64>, Option<u64>)> {
    progress(c, i, id).map(|(completed, _, restored, _)| (completed, restored))
}

/// (newest completed, when it completed, latest restore id, when it restored; ms) of job `id`
/// through node `i`.
pub fn progress(c: &Cluster3, i: usize, id: &str) -> Option<(Option<u64>, i64, Option<u64>, i64)> {
    let v = c.rest(i, &format!("/jobs/{id}/checkpoints"))?;
    let latest = &v["latest"];
    Some((
        latest["completed"]["id"].as_u64(),
        latest["completed"]["latest_ack_timestamp"]
            .as_i64()
            .unwrap_or(0),
        latest["restored"]["id"].as_u64(),
        latest["restored"]["restore_timestamp"]
            .as_i64()
            .unwrap_or(0),
    ))
}

/// What one node's REST said of the job: (state, all tasks running, start time).
pub type Seen = Option<(String, bool, i64)>;
/// One sample of every node: (seconds since sampling began, what each node said).
pub type Sample = (f64, Vec<Seen>);

/// Samples the job on every node every 200 ms until `stop`.
pub fn sample_copies(c: &Cluster3, id: &str, stop: &AtomicBool) -> Vec<Sample> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let seen: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3).map(|i| s.spawn(move || job(c, i, id))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        out.push((t0.elapsed().as_secs_f64(), seen));
        std::thread::sleep(Duration::from_millis(200));
    }
    out
}

/// The most distinct running copies (by the JobMaster's start time) seen in one sample.
pub fn max_copies(samples: &[Sample]) -> usize {
    samples
        .iter()
        .map(|(_, seen)| {
            let mut starts: Vec<i64> = seen
                .iter()
                .flatten()
                .filter(|(state, all, _)| state == "RUNNING" && *all)
                .map(|(_, _, start)| *start)
                .collect();
            starts.sort_unstable();
            starts.dedup();
            starts.len()
        })
        .max()
        .unwrap_or(0)
}

/// Pids whose command line names `marker`.
pub fn pids_naming(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// A plain HTTP/1.0 GET; (status, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout * 3)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: flink\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `f` every 200 ms until it returns `Some`; None after `timeout`.
/// The Flink job id in `jobs deploy`'s line: "deployed NAME as Flink job ID; ...".
pub fn deployed_id(out: &str) -> String {
    out.split("as Flink job ")
        .nth(1)
        .and_then(|rest| rest.split([';', ' ', '\n']).next())
        .unwrap_or_else(|| panic!("no job id in {out:?}"))
        .to_string()
}

pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Everything the test job needs: deploy `counter` through node `via`.
pub fn deploy_counter(
    c: &Cluster3,
    via: usize,
    jar: &Path,
    parallelism: u32,
) -> (i32, String, String) {
    let counts = c.shared.join("counts.txt").display().to_string();
    c.cli(
        via,
        &[
            "jobs",
            "deploy",
            "counter",
            "--jar",
            &jar.display().to_string(),
            "--entry-class",
            "flinkagent.testjobs.KeyedCounter",
            "--parallelism",
            &parallelism.to_string(),
            "--",
            &counts,
            "20",
        ],
    )
}
