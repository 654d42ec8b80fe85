//! The fault runner on three nodes (`benches/chaos.py --nodes 3` runs this): seeded faults, in
//! random order and sometimes overlapping, on a three-node cluster of real agents on one
//! machine (`tests/support/cluster3.rs`: a network namespace per node on a bridge, a real
//! ZooKeeper ensemble, JobManagers and TaskManagers), running the keyed counter with
//! parallelism 3 (its tasks spread over the three TaskManagers).
//!
//! Faults: `kill -9` of the leading JobManager, of a standby JobManager, of a TaskManager, of a
//! ZooKeeper server, of an agent (restarted: it adopts its processes); the leading JobManager
//! hung (SIGSTOP, then SIGCONT); a whole node lost (every process of its namespace, the node
//! back after a while with its disk); a node's link down (a partition, healed after a while).
//! While a timed fault lasts, another instant fault hits another node with probability 0.3.
//!
//! After every fault, and at the end (the run fails, exit 1, on any violation):
//! - the job runs again within `--recovery-bound` s of the fault's end: every task RUNNING and
//!   a checkpoint completed after the fault began (a checkpoint needs every task), timed from
//!   the fault's start (a partition or a node loss must not stop the majority); a restore
//!   after the fault's start is from a checkpoint no older than the newest one completed before it (completed
//!   checkpoints lost: goal 0);
//! - then the cluster is whole again within the same bound: every agent ready, the quorum
//!   healthy, three TaskManagers registered, one leader all agents agree on;
//! - never two running copies of the job (every node's REST sampled every 200 ms during the
//!   fault and the recovery);
//! - every JVM in a node's namespace is one its agent reports (no orphans);
//! - the newest checkpoint completed when the job runs again is published to the object store
//!   within `--durable-bound` s;
//! - the output is continuous: every key's counts have no gap (the sources interleave, so the
//!   check is per key: a restore may repeat counts, never skip one).
//!
//! `flock /tmp/fa-flink-tests.lock cargo bench -p flink-agent --bench chaos3 -- --seed S
//! --faults N [--duration SECS] [--kinds a,b] [--recovery-bound SECS]` (root, `FLINK_HOME`).
//! Prints each fault and a table of figures; every process and namespace goes at the end, also
//! after Ctrl-C or SIGTERM (the run stops after the fault in progress and reports what it had).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/netns.rs"]
mod netns;

#[path = "../tests/support/cluster3.rs"]
mod cluster3;

#[path = "../tests/common/mod.rs"]
mod common;

use cluster3::{
    deploy_counter, deployed_id, healthy, job, max_copies, poll, progress, sample_copies, Cluster3,
    Options,
};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ALL: [usize; 3] = [0, 1, 2];

/// splitmix64: a seed replays the same faults, and no dependency is needed for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(lo + (hi - lo) * (self.next() % 1000) as f64 / 1000.0)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() % 1000) as f64) < p * 1000.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    KillLeaderJm,
    KillStandbyJm,
    KillTm,
    KillZk,
    KillAgent,
    HangLeaderJm,
    NodeLoss,
    Partition,
}

const KINDS: [Kind; 8] = [
    Kind::KillLeaderJm,
    Kind::KillStandbyJm,
    Kind::KillTm,
    Kind::KillZk,
    Kind::KillAgent,
    Kind::HangLeaderJm,
    Kind::NodeLoss,
    Kind::Partition,
];

/// The faults that may hit another node while a timed one lasts: none of them takes a
/// second ZooKeeper server away (two of three down is not a fault the cluster survives).
const OVERLAP: [Kind; 3] = [Kind::KillTm, Kind::KillAgent, Kind::KillStandbyJm];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::KillLeaderJm => "kill-leader-jm",
            Kind::KillStandbyJm => "kill-standby-jm",
            Kind::KillTm => "kill-tm",
            Kind::KillZk => "kill-zk",
            Kind::KillAgent => "kill-agent",
            Kind::HangLeaderJm => "hang-leader-jm",
            Kind::NodeLoss => "node-loss",
            Kind::Partition => "partition",
        }
    }
}

struct Args {
    seed: u64,
    faults: usize,
    duration: Option<Duration>,
    kinds: Vec<Kind>,
    recovery_bound: Duration,
    durable_bound: Duration,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let seed = value("--seed").map_or_else(
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                % 1_000_000_007
        },
        |s| s.parse().expect("--seed: a number"),
    );
    let kinds = value("--kinds").map_or_else(
        || KINDS.to_vec(),
        |list| {
            list.split(',')
                .map(|k| {
                    *KINDS.iter().find(|x| x.name() == k).unwrap_or_else(|| {
                        panic!(
                            "--kinds: unknown {k:?}; known: {}",
                            KINDS.map(Kind::name).join(",")
                        )
                    })
                })
                .collect()
        },
    );
    let secs = |name: &str, default: u64| {
        Duration::from_secs(value(name).map_or(default, |v| v.parse().expect("seconds")))
    };
    Args {
        seed,
        faults: value("--faults").map_or(20, |v| v.parse().expect("--faults: a number")),
        duration: value("--duration").map(|v| Duration::from_secs(v.parse().expect("seconds"))),
        kinds,
        recovery_bound: secs("--recovery-bound", 240),
        durable_bound: secs("--durable-bound", 30),
    }
}

#[derive(Default)]
struct Figure {
    injected: usize,
    recovered: usize,
    overlapped: usize,
    /// Seconds from the fault's start to the job running again, and to the cluster whole again.
    times: Vec<f64>,
    whole: Vec<f64>,
    lost: u64,
}

struct Run<'a> {
    c: &'a Cluster3,
    id: String,
    rng: Rng,
    args: &'a Args,
    figures: BTreeMap<Kind, Figure>,
    violations: Vec<String>,
    copies: usize,
    samples: usize,
    orphans: usize,
    restores: usize,
    agents_restarted: usize,
    max_rss_kib: u64,
    max_fds: usize,
}

fn pid(p: i32) -> Pid {
    Pid::from_raw(p)
}

fn proc_text(pid: i32, file: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default()
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The newest checkpoint of job `counter` with a manifest in the object store (a directory).
fn newest_published(store: &Path) -> Option<u64> {
    fn walk(dir: &Path, best: &mut Option<u64>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, best);
            } else if path.file_name().is_some_and(|n| n == "manifest.json") {
                let id = path
                    .parent()
                    .and_then(|p| p.file_name()?.to_str()?.strip_prefix("chk-")?.parse().ok());
                if path.to_string_lossy().contains("/jobs/counter/") {
                    *best = (*best).max(id);
                }
            }
        }
    }
    let mut best = None;
    walk(store, &mut best);
    best
}

/// Per key, the counts missing below its highest count (a restore repeats counts; a gap is a
/// skipped element or lost state).
fn output_gaps(counts: &Path) -> (usize, u64) {
    let text = std::fs::read_to_string(counts).unwrap_or_default();
    let mut seen: BTreeMap<u64, std::collections::BTreeSet<u64>> = BTreeMap::new();
    let mut lines = 0;
    for line in text.lines() {
        let parts: Vec<u64> = line
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if let [key, count, _n] = parts[..] {
            seen.entry(key).or_default().insert(count);
            lines += 1;
        }
    }
    let gaps = seen
        .values()
        .map(|c| c.last().copied().unwrap_or(0) - c.len() as u64)
        .sum();
    (lines, gaps)
}

/// Job `id` runs: every task RUNNING and a checkpoint completed after `since_ms` (a checkpoint
/// needs every task, so the job provably works; a RUNNING state alone can be what Flink shows
/// before it noticed a lost TaskManager, or what a cut-off leader still believes).
fn runs_since(c: &Cluster3, id: &str, since_ms: i64) -> bool {
    ALL.iter().any(|&i| {
        let Some((state, all, _)) = job(c, i, id) else {
            return false;
        };
        let at = progress(c, i, id).map_or(0, |p| p.1);
        state == "RUNNING" && all && at >= since_ms
    })
}

impl Run<'_> {
    fn violate(&mut self, what: String) {
        println!("    VIOLATION: {what}");
        self.violations.push(what);
    }

    fn leader(&self) -> usize {
        poll(self.args.recovery_bound, || self.c.leader(&ALL)).expect("a leader")
    }

    /// The pid of `name` on node `i` as its agent reports it, once running.
    fn pid_of(&self, i: usize, name: &str) -> Option<i32> {
        poll(Duration::from_secs(60), || self.c.running_pid(i, name))
    }

    fn kill_process(&self, i: usize, name: &str) -> String {
        match self.pid_of(i, name) {
            Some(p) => {
                let _ = kill(pid(p), Signal::SIGKILL);
                format!("{name} of node-{} (pid {p})", i + 1)
            }
            None => format!("{name} of node-{}: not running, nothing killed", i + 1),
        }
    }

    fn other_than(&mut self, i: usize) -> usize {
        let others: Vec<usize> = ALL.into_iter().filter(|n| *n != i).collect();
        others[self.rng.below(others.len())]
    }

    /// An instant fault on node `i` (or the leader, for the leader's faults).
    fn instant(&mut self, kind: Kind, i: usize) -> String {
        match kind {
            Kind::KillLeaderJm | Kind::KillStandbyJm | Kind::KillTm | Kind::KillZk => {
                let name = match kind {
                    Kind::KillTm => "taskmanager",
                    Kind::KillZk => "zookeeper",
                    _ => "jobmanager",
                };
                self.kill_process(i, name)
            }
            Kind::KillAgent => {
                self.c.signal_agent(i, Signal::SIGKILL);
                let pause = self.rng.secs(0.0, 3.0);
                std::thread::sleep(pause);
                self.c.start(i);
                self.agents_restarted += 1;
                format!(
                    "agent of node-{} (restarted after {:.1} s)",
                    i + 1,
                    pause.as_secs_f64()
                )
            }
            _ => unreachable!("{kind:?} is timed"),
        }
    }

    /// The leader's node half the time (the faults that matter most), else any node.
    fn leader_or_any(&mut self, leader: usize) -> usize {
        if self.rng.chance(0.5) {
            leader
        } else {
            self.rng.below(3)
        }
    }

    /// Lets a timed fault on node `i` last `length`, injecting an overlapping instant fault on a node other than
    /// `i` with probability 0.3.
    fn timed_window(&mut self, i: usize, length: Duration) -> Option<Kind> {
        let start = Instant::now();
        let overlap = self.rng.chance(0.3).then(|| {
            let kind = OVERLAP[self.rng.below(OVERLAP.len())];
            (kind, self.rng.secs(0.0, length.as_secs_f64()))
        });
        if let Some((kind, at)) = overlap {
            std::thread::sleep(at);
            let target = self.other_than(i);
            let what = self.instant(kind, target);
            println!("    overlap: {} {what}", kind.name());
        }
        std::thread::sleep(length.saturating_sub(start.elapsed()));
        overlap.map(|(k, _)| k)
    }

    /// Injects one fault; returns what overlapped it.
    fn inject(&mut self, kind: Kind) -> (String, Option<Kind>) {
        let leader = self.leader();
        match kind {
            Kind::KillLeaderJm => (self.instant(kind, leader), None),
            Kind::KillStandbyJm => {
                let i = self.other_than(leader);
                (self.instant(kind, i), None)
            }
            Kind::KillTm | Kind::KillZk | Kind::KillAgent => {
                let i = self.rng.below(3);
                (self.instant(kind, i), None)
            }
            Kind::HangLeaderJm => {
                let length = self.rng.secs(3.0, 15.0);
                let Some(p) = self.pid_of(leader, "jobmanager") else {
                    return ("the leader's jobmanager: not running".into(), None);
                };
                let _ = kill(pid(p), Signal::SIGSTOP);
                let overlap = self.timed_window(leader, length);
                let _ = kill(pid(p), Signal::SIGCONT);
                (
                    format!(
                        "jobmanager of node-{} (pid {p}) for {:.1} s",
                        leader + 1,
                        length.as_secs_f64()
                    ),
                    overlap,
                )
            }
            Kind::NodeLoss => {
                let i = self.leader_or_any(leader);
                let length = self.rng.secs(5.0, 30.0);
                let zk_led = self.c.zookeeper_mode(i).as_deref() == Some("leader");
                self.c.kill_node(i);
                let overlap = self.timed_window(i, length);
                self.c.start(i);
                self.agents_restarted += 1;
                (
                    format!(
                        "node-{}{}{} down for {:.1} s",
                        i + 1,
                        if i == leader { " (the leader's)" } else { "" },
                        if zk_led { " (ZooKeeper's leader)" } else { "" },
                        length.as_secs_f64()
                    ),
                    overlap,
                )
            }
            Kind::Partition => {
                let i = self.leader_or_any(leader);
                let length = self.rng.secs(10.0, 40.0);
                self.c.link(i, false);
                let overlap = self.timed_window(i, length);
                self.c.link(i, true);
                (
                    format!(
                        "node-{}{} cut off for {:.1} s",
                        i + 1,
                        if i == leader { " (the leader's)" } else { "" },
                        length.as_secs_f64()
                    ),
                    overlap,
                )
            }
        }
    }

    /// Every JVM in each node's namespace is one its agent reports; the agents' footprint.
    fn check_processes(&mut self) {
        for i in ALL {
            let Some(status) = self.c.status(i) else {
                self.violate(format!("node-{}: the agent does not answer", i + 1));
                continue;
            };
            let reported: Vec<i64> = status["processes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["pid"].as_i64())
                .collect();
            for p in self.c.pids(i) {
                let comm = proc_text(p, "comm");
                let cmdline = proc_text(p, "cmdline");
                if comm.trim() == "java"
                    && !cmdline.contains("-Xshare:dump")
                    && !reported.contains(&(p as i64))
                {
                    self.orphans += 1;
                    self.violate(format!(
                        "node-{}: JVM {p} is not one its agent reports ({reported:?})",
                        i + 1
                    ));
                }
                if comm.trim() == "flink-agent" {
                    let rss = common::status_kib(&p.to_string(), "VmRSS:");
                    self.max_rss_kib = self.max_rss_kib.max(rss);
                    let fds = std::fs::read_dir(format!("/proc/{p}/fd"))
                        .map(|d| d.count())
                        .unwrap_or(0);
                    self.max_fds = self.max_fds.max(fds);
                }
            }
        }
    }

    /// One fault and every check after it.
    fn fault(&mut self, n: usize, kind: Kind) {
        let leader = self.leader();
        let before = progress(self.c, leader, &self.id)
            .and_then(|p| p.0)
            .unwrap_or(0);
        let (started, t_fault) = (Instant::now(), unix_ms());
        let bound = self.args.recovery_bound;
        let stop = AtomicBool::new(false);
        let ran_again: std::sync::Mutex<Option<f64>> = Default::default();
        let (c, id) = (self.c, self.id.clone());
        let (what, overlap, took, samples) = std::thread::scope(|s| {
            let sampler = s.spawn(|| sample_copies(c, &id, &stop));
            // From the fault's start: on a partition or a node loss the majority must go on
            // while the fault lasts.
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if runs_since(c, &id, t_fault) {
                        *ran_again.lock().unwrap() = Some(started.elapsed().as_secs_f64());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
            let (what, overlap) = self.inject(kind);
            let lasted = started.elapsed().as_secs_f64();
            let running = poll(bound, || *ran_again.lock().unwrap());
            let whole = running.and_then(|_| {
                poll(bound, || healthy(self.c, &ALL)).map(|_| started.elapsed().as_secs_f64())
            });
            std::thread::sleep(Duration::from_secs(2));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let took = running.zip(whole).map(|(r, w)| (r, w, lasted));
            (what, overlap, took, sampler.join().unwrap())
        });
        println!("[{n}] {} {what} (newest completed {before})", kind.name());
        let fig = self.figures.entry(kind).or_default();
        fig.injected += 1;
        if let Some(o) = overlap {
            fig.overlapped += 1;
            self.figures.entry(o).or_default().injected += 1;
        }
        let Some((took, whole, lasted)) = took else {
            self.violate(format!(
                "the job not running again, or the cluster not whole again, within {} s: statuses {:?}",
                self.args.recovery_bound.as_secs(),
                ALL.map(|i| self.c.status(i).map(|s| s["processes"].clone()))
            ));
            return;
        };
        let fig = self.figures.entry(kind).or_default();
        fig.recovered += 1;
        fig.times.push(took);
        fig.whole.push(whole);
        if let Some(o) = overlap {
            self.figures.entry(o).or_default().recovered += 1;
        }
        let copies = max_copies(&samples);
        self.copies = self.copies.max(copies);
        self.samples += samples.len();
        if copies > 1 {
            self.violate(format!("{copies} running copies of the job at once"));
        }
        let leader = self.leader();
        let restore = poll(Duration::from_secs(30), || {
            let (completed, _, restored, at) = progress(self.c, leader, &self.id)?;
            completed.map(|c| (c, restored.filter(|_| at >= t_fault)))
        });
        let mut note = String::new();
        match restore {
            Some((_, Some(r))) => {
                self.restores += 1;
                let lost = before.saturating_sub(r);
                self.figures.entry(kind).or_default().lost += lost;
                note = format!(", restored from {r}");
                if lost > 0 {
                    self.violate(format!(
                        "restored from {r}, older than {before}, completed before the fault"
                    ));
                }
            }
            Some((_, None)) => note = ", no restore needed".into(),
            None => self.violate("no completed checkpoint after the fault".into()),
        }
        if let Some((completed, _)) = restore {
            let durable = poll(self.args.durable_bound, || {
                newest_published(&self.c.store).filter(|p| *p >= completed)
            });
            if durable.is_none() {
                self.violate(format!(
                    "checkpoint {completed} not published within {} s (newest published: {:?})",
                    self.args.durable_bound.as_secs(),
                    newest_published(&self.c.store)
                ));
            }
        }
        println!(
            "    running again {took:.1} s after the fault began (it lasted {lasted:.1} s){note}, the cluster whole again after {whole:.1} s; {} samples, at most {copies} running cop(ies)",
            samples.len()
        );
        self.check_processes();
        let (_, gaps) = output_gaps(&self.c.shared.join("counts.txt"));
        if gaps > 0 {
            self.violate(format!("the output has {gaps} missing counts"));
        }
    }

    fn report(&self, started: Instant) {
        let (lines, gaps) = output_gaps(&self.c.shared.join("counts.txt"));
        println!(
            "\n{} faults in {:.0} s, seed {}\n",
            self.figures.values().map(|f| f.injected).sum::<usize>(),
            started.elapsed().as_secs_f64(),
            self.args.seed
        );
        println!("| fault | injected | recovered | overlapped | running again (s from the fault's start): mean | max | whole again: mean | max | completed checkpoints lost |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let stats = |v: &[f64]| {
            (
                v.iter().sum::<f64>() / v.len().max(1) as f64,
                v.iter().copied().fold(0.0, f64::max),
            )
        };
        for (kind, f) in &self.figures {
            let ((mean, max), (whole_mean, whole_max)) = (stats(&f.times), stats(&f.whole));
            println!(
                "| {} | {} | {} | {} | {mean:.1} | {max:.1} | {whole_mean:.1} | {whole_max:.1} | {} |",
                kind.name(),
                f.injected,
                f.recovered,
                f.overlapped,
                f.lost
            );
        }
        println!(
            "\nrestores {}, completed checkpoints lost {}, most running copies at once {} ({} samples), output {lines} lines with {gaps} missing counts, orphan JVMs {}, agents restarted by the runner {} (after killing them) and by nothing else, agent RSS ≤ {} KiB, ≤ {} open files, violations {}",
            self.restores,
            self.figures.values().map(|f| f.lost).sum::<u64>(),
            self.copies,
            self.samples,
            self.orphans,
            self.agents_restarted,
            self.max_rss_kib,
            self.max_fds,
            self.violations.len()
        );
    }
}

fn env_path(name: &str, default: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap_or_else(|_| default.into()))
}

/// Ctrl-C and SIGTERM set the flag instead of ending the process: killed by the signal, the
/// runner left three nodes' JVMs, agents and namespaces behind (its cleanup is in `Drop`).
/// The signals are blocked in every thread and taken by one that waits for them; the processes
/// the nodes start get a clean signal mask from `std::process::Command`.
fn stop_on_signal() -> Arc<AtomicBool> {
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    signals.thread_block().expect("block SIGINT and SIGTERM");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            eprintln!("{signal}: stopping after the fault in progress, then cleaning up");
            flag.store(true, Ordering::SeqCst);
        }
    });
    stop
}

fn main() {
    let stop = stop_on_signal();
    let args = args();
    let kinds: Vec<&str> = args.kinds.iter().map(|k| k.name()).collect();
    println!(
        "seed {} (replay: --seed {} --faults {} --kinds {})",
        args.seed,
        args.seed,
        args.faults,
        kinds.join(",")
    );
    let opts = Options {
        agent: PathBuf::from(env!("CARGO_BIN_EXE_flink-agent")),
        flink_home: env_path("FLINK_HOME", ""),
        java_home: env_path("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"),
        checkpoint_interval_ms: 2000,
        task_slots: 2,
        session_timeout_ms: 6000,
        extra: "[advanced.flink_config]\n\"taskmanager.load-balance.mode\" = \"SLOTS\"\n".into(),
    };
    assert!(
        opts.flink_home.is_dir(),
        "FLINK_HOME (tests/setup/flink.sh prints it)"
    );
    let c = Cluster3::new(opts).unwrap_or_else(|e| panic!("cannot build the namespaces: {e}"));
    let jar = common::build_test_jobs(&c.root.path().join("jobs-build"));
    let started = Instant::now();
    for i in ALL {
        c.start(i);
    }
    let leader = poll(Duration::from_secs(420), || healthy(&c, &ALL)).expect("a ready cluster");
    let (code, out, err) = deploy_counter(&c, leader, &jar, 3);
    assert_eq!(code, 0, "{out}{err}");
    let id = deployed_id(&out);
    poll(Duration::from_secs(240), || {
        progress(&c, leader, &id).and_then(|p| p.0)
    })
    .expect("a first completed checkpoint");
    println!(
        "three nodes up, job {id} RUNNING with a completed checkpoint after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut run = Run {
        c: &c,
        id,
        rng: Rng(args.seed),
        args: &args,
        figures: BTreeMap::new(),
        violations: Vec::new(),
        copies: 0,
        samples: 0,
        orphans: 0,
        restores: 0,
        agents_restarted: 0,
        max_rss_kib: 0,
        max_fds: 0,
    };
    let faults_started = Instant::now();
    for n in 1..=args.faults {
        if stop.load(Ordering::SeqCst)
            || args.duration.is_some_and(|d| faults_started.elapsed() >= d)
        {
            break;
        }
        let kind = args.kinds[run.rng.below(args.kinds.len())];
        run.fault(n, kind);
        let settle = run.rng.secs(1.0, 5.0);
        std::thread::sleep(settle);
    }
    run.report(faults_started);
    let failed = !run.violations.is_empty();
    drop(run);
    drop(c);
    if failed {
        std::process::exit(1);
    }
}
