//! The supervisor against a real Flink, launched from the agent's own desired state (rendered
//! config, fingerprints): start, crash recovery of each process, a TaskManager that can never
//! start, an operator restart after the fix, then what an agent restart means for it: detach,
//! adoption by a new supervisor (same pids, no restart), a crash of an adopted JobManager, a
//! stale state file whose pid now belongs to another program, and the final stop. One cluster,
//! in sequence: two JVMs are all this machine (2 cores) can take at once.

mod common;

use flink_agent::config::{AgentConfig, SupervisorSection};
use flink_agent::desired::{self, Desired};
use flink_agent::flinkconf::{self, FlinkVersion};
use flink_agent::flinkrest::FlinkRest;
use flink_agent::supervisor::{
    self, Placement, ProcessState, ProcessStatus, SupervisorEvent, SupervisorHandle, Target,
};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SLOTS: u32 = 2;

/// The agent's config for this test: its own dirs and ports, small back-offs.
fn config(dir: &Path) -> AgentConfig {
    let ports = common::Ports::for_slot(4);
    let mut c: AgentConfig = toml::from_str(&ports.toml()).expect("ports parse");
    c.agent.state_dir = dir.join("state");
    c.agent.socket = dir.join("agent.sock");
    c.flink.home = common::flink_home();
    c.flink.java_home = common::java_home();
    c.flink.data_dir = dir.join("data");
    c.flink.log_dir = dir.join("log");
    c.advanced.number_of_task_slots = SLOTS;
    c.firewall.enabled = false;
    c.supervisor = SupervisorSection {
        start_timeout_secs: 120,
        health_interval_ms: 500,
        backoff_initial_ms: 200,
        backoff_max_ms: 1_000,
        max_restarts: 1,
        restart_window_secs: 300,
        stop_grace_secs: 10,
        class_data_sharing: true,
        delay_c2: true,
    };
    c
}

/// What the agent would run for `c`, with its files prepared as the agent prepares them.
fn desired(c: &AgentConfig) -> Desired {
    let version = flinkconf::detect_version(&c.flink.home).expect("Flink version");
    assert!(version >= FlinkVersion::new(1, 19, 0));
    let d = desired::derive(c, version, None).expect("valid config");
    flinkconf::prepare(&d.flink).expect("prepare");
    d
}

/// Kills every process group the test has seen, also when an assertion fails midway.
#[derive(Default)]
struct Reaper(Mutex<BTreeSet<i32>>);

impl Reaper {
    fn remember(&self, statuses: &[ProcessStatus]) {
        let mut seen = self.0.lock().expect("lock");
        seen.extend(statuses.iter().filter_map(|s| s.pid));
    }
    fn seen(&self) -> BTreeSet<i32> {
        self.0.lock().expect("lock").clone()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pgid in self.seen() {
            let _ = signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// An argv without the options the agent decides per launch (class-data: record, then map;
/// the JIT thresholds).
fn without_launch_options(argv: &[String]) -> Vec<String> {
    argv.iter()
        .filter(|a| {
            !a.starts_with("-XX:DumpLoadedClassList=")
                && !a.starts_with("-XX:SharedArchiveFile=")
                && !a.starts_with("-Xlog:class+load")
                && !a.starts_with("-XX:Tier4")
        })
        .cloned()
        .collect()
}

/// The class-data archive of `kind` under `state_dir`, once the supervisor has made it (at most
/// 180 s: it waits for the JVM to settle, then dumps at the lowest priority).
async fn wait_for_archive(state_dir: &Path, kind: &str) -> std::path::PathBuf {
    let dir = state_dir.join("flink-conf.jvm");
    let t = Instant::now();
    loop {
        let found = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&format!("{kind}-")) && name.ends_with(".jsa")
            });
        if let Some(entry) = found {
            println!(
                "{kind} class-data archive after {:.0} s",
                t.elapsed().as_secs_f64()
            );
            return entry.path();
        }
        if t.elapsed() > Duration::from_secs(180) {
            panic!("no {kind} class-data archive in {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A process's argv and (sorted) environment as the kernel shows them: what was exec'd.
fn proc_launch(pid: i32) -> (Vec<String>, Vec<String>) {
    let read = |what: &str| -> Vec<String> {
        let bytes = std::fs::read(format!("/proc/{pid}/{what}")).expect("read /proc");
        String::from_utf8(bytes)
            .expect("utf-8")
            .split_terminator('\0')
            .map(str::to_string)
            .collect()
    };
    let mut env = read("environ");
    env.sort();
    (read("cmdline"), env)
}

fn group_gone(pgid: i32) -> bool {
    signal::kill(Pid::from_raw(-pgid), None) == Err(Errno::ESRCH)
}

fn find<'a>(statuses: &'a [ProcessStatus], name: &str) -> &'a ProcessStatus {
    statuses
        .iter()
        .find(|s| s.name == name)
        .expect("process listed")
}

/// Polls the statuses until `pred` holds; panics with `what` and the last statuses after `secs`.
async fn wait_for(
    handle: &SupervisorHandle,
    reaper: &Reaper,
    secs: u64,
    what: &str,
    pred: impl Fn(&[ProcessStatus]) -> bool,
) -> Vec<ProcessStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let statuses = handle.statuses();
        reaper.remember(&statuses);
        if pred(&statuses) {
            return statuses;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}; statuses: {statuses:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type EventLog = Arc<Mutex<Vec<(Instant, SupervisorEvent)>>>;

/// Collects the supervisor's events with the time they were seen.
fn record(handle: &SupervisorHandle) -> EventLog {
    let mut events = handle.events();
    let log: EventLog = Arc::default();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            sink.lock().expect("lock").push((Instant::now(), event));
        }
    });
    log
}

/// When the supervisor emitted `event` (waiting briefly: the collector runs concurrently).
async fn seen_at(log: &EventLog, event: SupervisorEvent) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = log
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, e)| *e == event)
            .map(|(t, _)| *t);
        if let Some(at) = found {
            return at;
        }
        assert!(Instant::now() < deadline, "no event {event:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn both_running(s: &[ProcessStatus]) -> bool {
    s.iter().all(|p| p.state == ProcessState::Running)
}

#[test]
fn supervises_a_real_flink_cluster() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let reaper = Reaper::default();
    runtime.block_on(scenarios(&reaper));
}

async fn scenarios(reaper: &Reaper) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let good = desired(&cfg);
    let state_dir = cfg.agent.state_dir.clone();
    let rest = FlinkRest::new(&good.endpoint).expect("client");

    let started = Instant::now();
    let handle = supervisor::spawn(
        good.launch.clone(),
        &state_dir,
        Placement::Session,
        tokio::sync::watch::channel(None).1,
    );
    let log = record(&handle);
    let has = |event: SupervisorEvent| seen_at(&log, event);

    // 1. Start: both healthy, READY, and Flink agrees (1 TaskManager with the slots).
    let mut ready = handle.ready();
    let up = wait_for(&handle, reaper, 150, "both running", both_running).await;
    let both_at = Instant::now();
    let jm_healthy = has(SupervisorEvent::JobManagerHealthy { generation: 1 }).await;
    println!(
        "cold start: {:.1} s to jobmanager healthy, {:.1} s to both healthy",
        (jm_healthy - started).as_secs_f64(),
        (both_at - started).as_secs_f64()
    );
    assert!(*ready.borrow_and_update(), "ready while both are running");
    let overview = rest.overview().await.expect("overview");
    assert_eq!((overview.taskmanagers, overview.slots_total), (1, SLOTS));
    let tm_pid = find(&up, "taskmanager").pid.expect("tm pid");
    let jm_pid = find(&up, "jobmanager").pid.expect("jm pid");
    assert_eq!(
        supervisor::summary(&up),
        format!("jobmanager running (pid {jm_pid}), taskmanager running (pid {tm_pid})")
    );
    for pid in [jm_pid, tm_pid] {
        assert_eq!(
            flink_agent::procfs::session(pid).expect("session"),
            pid,
            "each Flink process leads its own session, out of the agent's reach"
        );
    }

    // What Flink's scripts exec'd, and what the supervisor learned from that once healthy.
    let script_tm = proc_launch(tm_pid);
    let script_jm = proc_launch(jm_pid);
    for name in ["jobmanager", "taskmanager"] {
        let learned = state_dir.join(format!("flink-conf.jvm/{name}.json"));
        assert!(learned.is_file(), "{} was not learned", learned.display());
    }
    // No class-data archive yet: the first JVMs record the classes they load for one. Their
    // optimizing compiler waits for hot code.
    for (name, launch) in [("jobmanager", &script_jm), ("taskmanager", &script_tm)] {
        assert!(
            launch
                .0
                .iter()
                .any(|a| a == "-XX:Tier4InvocationThreshold=50000"),
            "the {name} runs with the JIT thresholds: {:?}",
            launch.0
        );
        assert!(
            launch
                .0
                .iter()
                .any(|a| a.starts_with("-XX:DumpLoadedClassList=")),
            "the {name} records its classes: {:?}",
            launch.0
        );
    }

    // 2. kill -9 the TaskManager: the new one waits until Flink has dropped the dead one (it
    //    stays listed until its heartbeat times out; a new one on the same RPC port before that
    //    can fail to ever register), then starts and registers. It runs from the learned
    //    command: the very argv and environment the script gave its predecessor, but its own
    //    resource id.
    let listed = rest.taskmanagers().await.expect("taskmanagers");
    let [old] = &listed[..] else {
        panic!("one TaskManager listed: {listed:?}")
    };
    let t = Instant::now();
    signal::kill(Pid::from_raw(tm_pid), Signal::SIGKILL).expect("kill tm");
    let waiting = wait_for(&handle, reaper, 30, "taskmanager waiting", |s| {
        find(s, "taskmanager").state == ProcessState::Waiting
    })
    .await;
    let reason = find(&waiting, "taskmanager")
        .reason
        .clone()
        .unwrap_or_default();
    assert!(
        reason.contains(&format!("drop the TaskManager that ended ({}", old.id)),
        "{reason}"
    );
    let after = wait_for(&handle, reaper, 150, "taskmanager restarted", |s| {
        let tm = find(s, "taskmanager");
        both_running(s) && tm.pid != Some(tm_pid) && tm.restarts == 1
    })
    .await;
    println!(
        "taskmanager kill -9 to re-registered: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let tm = find(&after, "taskmanager");
    assert_eq!(tm.last_exit.as_deref(), Some("killed by signal 9"));
    assert!(group_gone(tm_pid), "the killed TaskManager's group is gone");
    has(SupervisorEvent::ProcessExited {
        name: "taskmanager",
        how: "killed by signal 9".into(),
        expected: false,
    })
    .await;
    let listed = rest.taskmanagers().await.expect("taskmanagers");
    assert!(
        listed.iter().all(|t| t.id != old.id) && listed.iter().any(|t| t.slots_number == SLOTS),
        "the dead TaskManager is gone and a new one with {SLOTS} slots is registered: {listed:?}"
    );
    let tm_pid = tm.pid.expect("new tm pid");
    let direct_tm = proc_launch(tm_pid);
    assert_eq!(direct_tm.1, script_tm.1, "the same environment");
    let without_id = |argv: &[String]| without_launch_options(&argv[..argv.len() - 1]);
    assert_eq!(without_id(&direct_tm.0), without_id(&script_tm.0));
    assert_ne!(direct_tm.0.last(), script_tm.0.last(), "a new resource id");

    // 3. kill -9 the JobManager: restarted (generation 2) from the learned command (it is the
    //    JVM from its first moment, no script); the TaskManager, whose slots held the dead
    //    JobManager's tasks, is restarted with it at once and registers with the new one.
    let t = Instant::now();
    signal::kill(Pid::from_raw(jm_pid), Signal::SIGKILL).expect("kill jm");
    let first_look = loop {
        let jm = find(&handle.statuses(), "jobmanager").pid;
        if let Some(pid) = jm.filter(|p| *p != jm_pid) {
            reaper.remember(&handle.statuses());
            // Past the gate: the process has become the JVM.
            let launch = proc_launch(pid);
            if launch.0.first().is_some_and(|a| a.ends_with("/java")) {
                break launch;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "jobmanager not relaunched"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        (without_launch_options(&first_look.0), &first_look.1),
        (without_launch_options(&script_jm.0), &script_jm.1),
        "the JobManager starts as the JVM the script ran"
    );
    let after = wait_for(&handle, reaper, 150, "both restarted", |s| {
        both_running(s)
            && find(s, "jobmanager").restarts == 1
            && find(s, "taskmanager").restarts == 2
    })
    .await;
    println!(
        "jobmanager kill -9: {:.1} s to both running, the TaskManager restarted with it",
        t.elapsed().as_secs_f64()
    );
    let jm_healthy = has(SupervisorEvent::JobManagerHealthy { generation: 2 }).await;
    println!(
        "jobmanager kill -9: {:.1} s to healthy",
        (jm_healthy - t).as_secs_f64()
    );
    has(SupervisorEvent::JobManagerStarted { generation: 2 }).await;
    // What the killed JobManager left in its scratch dir (Flink's 23 MiB RPC jar, its REST
    // upload dir: by Flink's default in /tmp, where every killed one stayed) was cleared before
    // the new one started: only the new one's are there.
    let scratch: Vec<String> = std::fs::read_dir(cfg.flink.data_dir.join("tmp/jobmanager"))
        .expect("the JobManager's scratch dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let named = |prefix: &str| scratch.iter().filter(|n| n.starts_with(prefix)).count();
    assert_eq!(
        named("flink-rpc-"),
        1,
        "one RPC jar in the JobManager's scratch dir: {scratch:?}"
    );
    assert_eq!(
        named("flink-web-"),
        1,
        "one REST upload dir in the JobManager's scratch dir: {scratch:?}"
    );
    let tm = find(&after, "taskmanager");
    assert_ne!(tm.pid, Some(tm_pid), "a new TaskManager");
    assert!(
        group_gone(tm_pid),
        "the TaskManager of the dead JobManager is gone, with its group"
    );
    let jm_pid = find(&after, "jobmanager").pid.expect("jm pid");

    // 4. A TaskManager that fails on every start (a TaskManager-only key: the JobManager is not
    //    touched): failed after the budget (1 restart), with the reason.
    let mut broken_cfg = cfg.clone();
    // The scripts add -XX:+IgnoreUnrecognizedVMOptions, so an unknown -XX flag would be
    // ignored; a malformed value of a known one is not.
    broken_cfg.advanced.flink_config.insert(
        "env.java.opts.taskmanager".into(),
        "-XX:MaxHeapSize=broken".into(),
    );
    let broken = desired(&broken_cfg);
    assert_eq!(
        handle.apply(broken.launch.clone()).await.expect("applied"),
        ["taskmanager"]
    );
    let failed = wait_for(&handle, reaper, 150, "taskmanager failed", |s| {
        find(s, "taskmanager").state == ProcessState::Failed
    })
    .await;
    let tm = find(&failed, "taskmanager");
    let reason = tm.reason.as_deref().expect("reason");
    assert!(
        reason.starts_with(
            "crashed 2 times in 300 s, never healthy for 10 s (last: exited with status ",
        )
            && reason.ends_with(
                "trying again in 300 s, or at once with `flink-agent restart taskmanager` after fixing the cause"
            ),
        "{reason}"
    );
    assert_eq!(tm.pid, None);
    let jm = find(&failed, "jobmanager");
    assert_eq!((jm.state, jm.pid), (ProcessState::Running, Some(jm_pid)));
    assert!(
        !*handle.ready().borrow(),
        "not ready with a failed TaskManager"
    );
    has(SupervisorEvent::ProcessFailed {
        name: "taskmanager",
        reason: reason.to_string(),
    })
    .await;

    // 5. The operator fixes the config and reloads: the failed TaskManager runs again.
    let good = desired(&cfg);
    assert_eq!(
        handle.apply(good.launch.clone()).await.expect("applied"),
        ["taskmanager"],
        "a failed process restarts once its config changes"
    );
    let up = wait_for(&handle, reaper, 150, "taskmanager back", both_running).await;
    let jm_pid = find(&up, "jobmanager").pid.expect("jm pid");
    let tm_pid = find(&up, "taskmanager").pid.expect("tm pid");

    // 6. The agent goes away (SIGTERM, upgrade, crash): supervision ends, Flink does not.
    handle.detach().await;
    assert!(
        !group_gone(jm_pid) && !group_gone(tm_pid),
        "Flink kept running"
    );
    // A new agent adopts both: same pids, healthy at once, nothing restarted (the counts and
    // budgets are the earlier agent's), real uptime.
    let t = Instant::now();
    let handle = supervisor::spawn(
        good.launch.clone(),
        &state_dir,
        Placement::Session,
        tokio::sync::watch::channel(None).1,
    );
    let log = record(&handle);
    let adopted = wait_for(&handle, reaper, 30, "adopted and healthy", both_running).await;
    println!(
        "adoption: {:.2} s from spawn to both healthy",
        t.elapsed().as_secs_f64()
    );
    for (name, pid) in [("jobmanager", jm_pid), ("taskmanager", tm_pid)] {
        let (p, before) = (find(&adopted, name), find(&up, name));
        assert_eq!(
            (p.pid, p.adopted, p.restarts),
            (Some(pid), true, before.restarts),
            "{p:?}"
        );
        assert!(
            p.uptime_secs
                .is_some_and(|u| u as f64 >= t.elapsed().as_secs_f64()),
            "{name}: the uptime is the process's, not the agent's: {p:?}"
        );
    }
    // The same JobManager: the same generation (the jobs check it, and find nothing missing).
    seen_at(&log, SupervisorEvent::JobManagerHealthy { generation: 2 }).await;

    // 7. An adopted JobManager that crashes is noticed (it is not the agent's child) and handled
    //    as always: restarted, and the adopted TaskManager with it.
    signal::kill(Pid::from_raw(jm_pid), Signal::SIGKILL).expect("kill adopted jm");
    let after = wait_for(&handle, reaper, 150, "adopted jobmanager replaced", |s| {
        both_running(s)
            && find(s, "jobmanager").pid.is_some_and(|p| p != jm_pid)
            && find(s, "taskmanager").pid.is_some_and(|p| p != tm_pid)
    })
    .await;
    assert!(find(&after, "jobmanager")
        .last_exit
        .as_deref()
        .is_some_and(|e| e.contains("adopted")));
    seen_at(&log, SupervisorEvent::JobManagerHealthy { generation: 3 }).await;
    assert!(
        group_gone(tm_pid),
        "the adopted TaskManager's group is gone"
    );
    let jm_pid = find(&after, "jobmanager").pid.expect("jm pid");

    // By now (a minute and more of healthy JVMs) the JobManager's class-data archive is made,
    // in the background; the next JobManager maps it.
    let archive = wait_for_archive(&state_dir, "jobmanager").await;

    // 8. A stale state file: the recorded JobManager pid now belongs to another program. It
    //    is not adopted (nor killed); a fresh JobManager starts, mapping the archive.
    handle.detach().await;
    signal::killpg(Pid::from_raw(jm_pid), Signal::SIGKILL).expect("kill jm");
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("another program");
    let other_pid = other.id() as i32;
    let state_file = state_dir.join("supervisor.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state")).expect("json");
    state["jobmanager"]["identity"] = serde_json::to_value(
        flink_agent::procfs::ProcessIdentity::of(other_pid).expect("identity"),
    )
    .expect("json");
    std::fs::write(&state_file, serde_json::to_vec(&state).expect("json")).expect("write");
    let handle = supervisor::spawn(
        good.launch.clone(),
        &state_dir,
        Placement::Session,
        tokio::sync::watch::channel(None).1,
    );
    let fresh = wait_for(&handle, reaper, 150, "fresh jobmanager", both_running).await;
    let jm = find(&fresh, "jobmanager");
    assert!(!jm.adopted && jm.pid != Some(other_pid), "{jm:?}");
    let maps =
        std::fs::read_to_string(format!("/proc/{}/maps", jm.pid.expect("jm pid"))).expect("maps");
    assert!(
        maps.contains(&archive.display().to_string()),
        "the healthy JobManager maps {}",
        archive.display()
    );
    // The archive holds Pekko's classes too, which Flink loads through a class loader of its
    // own from a jar it extracts at every start (Java 17's class list leaves them out).
    let (argv, _) = proc_launch(jm.pid.expect("jm pid"));
    let classpath = &argv[argv
        .iter()
        .position(|a| a == "-classpath")
        .expect("-classpath")
        + 1];
    let shown = std::process::Command::new(&argv[0])
        .arg(format!("-XX:SharedArchiveFile={}", archive.display()))
        .args(["-cp", classpath, "-XX:+PrintSharedArchiveAndExit"])
        .output()
        .expect("java -XX:+PrintSharedArchiveAndExit");
    let shown = String::from_utf8_lossy(&shown.stdout);
    let unregistered = shown
        .split_once("Shared Unregistered Dictionary")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let pekko = unregistered.matches("org.apache.pekko.").count();
    println!(
        "the JobManager's archive holds {} classes of Flink's own class loaders, {pekko} of them Pekko's",
        unregistered.lines().filter(|l| l.contains(" unregistered_loader")).count()
    );
    // A JobManager loads some 870 of Pekko's classes by the time its REST API answers.
    assert!(
        unregistered.contains("org.apache.pekko.actor.ActorSystem ") && pekko > 500,
        "Pekko's classes are in the archive ({pekko}):\n{}",
        &shown[shown.len().saturating_sub(2000)..]
    );
    assert_eq!(
        other.try_wait().expect("wait"),
        None,
        "the other program was left alone"
    );
    other.kill().expect("kill sleep");
    other.wait().expect("reap sleep");

    // 9. Stop: TaskManager then JobManager; no process of any group we saw survives.
    let t = Instant::now();
    handle.stop().await;
    println!("stop: {:.1} s", t.elapsed().as_secs_f64());
    let stopped = handle.statuses();
    assert!(
        stopped
            .iter()
            .all(|s| s.state == ProcessState::Stopped && s.pid.is_none()),
        "{stopped:#?}"
    );
    for pgid in reaper.seen() {
        assert!(group_gone(pgid), "process group {pgid} survived the stop");
    }
    assert!(
        handle.restart(Target::All).await.is_err(),
        "a stopped supervisor refuses work"
    );
}
