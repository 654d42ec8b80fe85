//! The supervisor against a real Flink: start, crash recovery of each process, a TaskManager
//! that can never start, an operator restart after the fix, and a clean shutdown. One test on
//! one cluster, in sequence: two JVMs are all this machine (2 cores) can take at once.

use flink_agent::config::SupervisorSection;
use flink_agent::flinkconf::RestartSet;
use flink_agent::flinkrest::FlinkRest;
use flink_agent::status::{ProcessState, ProcessStatus};
use flink_agent::supervisor::{self, LaunchSpec, SupervisorEvent, SupervisorHandle, Target};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REST_PORT: u16 = 18181;
const SLOTS: u32 = 2;

fn flink_home() -> PathBuf {
    let home = PathBuf::from(
        std::env::var("FLINK_HOME")
            .unwrap_or_else(|_| "/root/.cache/flink-agent/flink-2.3.0/pyflink".to_string()),
    );
    assert!(
        home.join("bin/jobmanager.sh").exists(),
        "no Flink distribution at {}; run tests/setup/flink.sh and set FLINK_HOME to what it prints",
        home.display()
    );
    home
}

/// A conf dir like the agent renders: the distribution's logging files plus a config.yaml with
/// this test's ports, small memory, and `extra` lines appended. `heartbeat.timeout` is lowered
/// because a TaskManager only notices a dead JobManager (and re-registers with its successor)
/// when the heartbeat times out: 50 s by default.
fn write_conf(dir: &Path, home: &Path, extra: &str) {
    std::fs::create_dir_all(dir).expect("conf dir");
    for entry in std::fs::read_dir(home.join("conf")).expect("dist conf") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        if name != "config.yaml" {
            std::fs::copy(&path, dir.join(name)).expect("copy conf file");
        }
    }
    // Java 17 needs the distribution's --add-opens list.
    let dist = std::fs::read_to_string(home.join("conf/config.yaml")).expect("dist config");
    let java_opts = dist
        .lines()
        .find_map(|l| l.trim().strip_prefix("all: "))
        .expect("env.java.opts.all in the distribution's config.yaml");
    let config = format!(
        "env.java.opts.all: {java_opts}\n\
         jobmanager.bind-host: 127.0.0.1\n\
         jobmanager.rpc.address: 127.0.0.1\n\
         jobmanager.rpc.port: 18123\n\
         jobmanager.memory.process.size: 1024m\n\
         taskmanager.bind-host: 127.0.0.1\n\
         taskmanager.host: 127.0.0.1\n\
         taskmanager.rpc.port: 18124\n\
         taskmanager.data.port: 18126\n\
         taskmanager.numberOfTaskSlots: {SLOTS}\n\
         taskmanager.memory.process.size: 1024m\n\
         blob.server.port: 18125\n\
         rest.address: 127.0.0.1\n\
         rest.bind-address: 127.0.0.1\n\
         rest.port: {REST_PORT}\n\
         heartbeat.timeout: 20000\n\
         {extra}\n"
    );
    std::fs::write(dir.join("config.yaml"), config).expect("config.yaml");
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

/// When the supervisor emitted `event` (waiting briefly: the collector runs concurrently).
async fn seen_at(log: &Mutex<Vec<(Instant, SupervisorEvent)>>, event: SupervisorEvent) -> Instant {
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
    let home = flink_home();
    let tmp = tempfile::tempdir().expect("tempdir");
    let good_conf = tmp.path().join("conf");
    let broken_conf = tmp.path().join("conf-broken");
    write_conf(&good_conf, &home, "");
    // The scripts add -XX:+IgnoreUnrecognizedVMOptions, so an unknown -XX flag would be ignored;
    // a malformed value of a known one is not.
    write_conf(
        &broken_conf,
        &home,
        "env.java.opts.taskmanager: -XX:MaxHeapSize=broken",
    );
    let log_dir = tmp.path().join("log");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let spec = LaunchSpec {
        flink_home: home.clone(),
        java_home: PathBuf::from("/usr/lib/jvm/java-17-openjdk-amd64"),
        conf_dir: good_conf.clone(),
        log_dir,
        user: None,
        rest_url: format!("http://127.0.0.1:{REST_PORT}"),
        expected_slots: SLOTS,
        settings: SupervisorSection {
            start_timeout_secs: 120,
            health_interval_ms: 500,
            backoff_initial_ms: 200,
            backoff_max_ms: 1_000,
            max_restarts: 1,
            restart_window_secs: 300,
            stop_grace_secs: 10,
        },
    };
    let rest = FlinkRest::new(&spec.rest_url).expect("client");

    let started = Instant::now();
    let handle = supervisor::spawn(spec.clone());
    let mut events = handle.events();
    let log: Arc<Mutex<Vec<(Instant, SupervisorEvent)>>> = Arc::default();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            sink.lock().expect("lock").push((Instant::now(), event));
        }
    });
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

    // What Flink's scripts exec'd, and what the supervisor learned from that once healthy.
    let script_tm = proc_launch(tm_pid);
    let script_jm = proc_launch(jm_pid);
    for name in ["jobmanager", "taskmanager"] {
        let learned = good_conf.with_file_name(format!("conf.jvm/{name}.json"));
        assert!(learned.is_file(), "{} was not learned", learned.display());
    }

    // 2. kill -9 the TaskManager: restarted, and the *new* one registered (the old one is still
    //    listed by Flink until its heartbeat times out). It runs from the learned command: the
    //    very argv and environment the script gave its predecessor, but its own resource id.
    let t = Instant::now();
    signal::kill(Pid::from_raw(tm_pid), Signal::SIGKILL).expect("kill tm");
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
        name: "taskmanager".into(),
        how: "killed by signal 9".into(),
    })
    .await;
    let listed = rest.taskmanagers().await.expect("taskmanagers");
    assert!(
        listed.iter().any(|t| t.slots_number == SLOTS),
        "a TaskManager with {SLOTS} slots is registered: {listed:?}"
    );
    let tm_pid = tm.pid.expect("new tm pid");
    let direct_tm = proc_launch(tm_pid);
    assert_eq!(direct_tm.1, script_tm.1, "the same environment");
    let without_id = |argv: &[String]| argv[..argv.len() - 1].to_vec();
    assert_eq!(without_id(&direct_tm.0), without_id(&script_tm.0));
    assert_ne!(direct_tm.0.last(), script_tm.0.last(), "a new resource id");
    assert!(
        direct_tm
            .0
            .last()
            .is_some_and(|a| a.starts_with("taskmanager.resource-id=")),
        "{:?}",
        direct_tm.0
    );

    // 3. kill -9 the JobManager: restarted (generation 2) from the learned command (it is the
    //    JVM from its first moment, no script); the TaskManager re-registers with it without
    //    being restarted.
    let t = Instant::now();
    signal::kill(Pid::from_raw(jm_pid), Signal::SIGKILL).expect("kill jm");
    let first_look = loop {
        let jm = find(&handle.statuses(), "jobmanager").pid;
        if let Some(pid) = jm.filter(|p| *p != jm_pid) {
            reaper.remember(&handle.statuses());
            break proc_launch(pid);
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "jobmanager not relaunched"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        first_look, script_jm,
        "the JobManager starts as the JVM the script ran"
    );
    let after = wait_for(&handle, reaper, 150, "jobmanager restarted", |s| {
        both_running(s) && find(s, "jobmanager").restarts == 1
    })
    .await;
    let both_at = Instant::now();
    let jm_healthy = has(SupervisorEvent::JobManagerHealthy { generation: 2 }).await;
    println!(
        "jobmanager kill -9: {:.1} s to healthy, {:.1} s to both healthy",
        (jm_healthy - t).as_secs_f64(),
        (both_at - t).as_secs_f64()
    );
    has(SupervisorEvent::JobManagerStarted { generation: 2 }).await;
    let tm = find(&after, "taskmanager");
    assert_eq!(
        (tm.pid, tm.restarts),
        (Some(tm_pid), 1),
        "TaskManager kept running"
    );
    let overview = rest.overview().await.expect("overview");
    assert_eq!((overview.taskmanagers, overview.slots_total), (1, SLOTS));
    let jm_pid = find(&after, "jobmanager").pid.expect("jm pid");

    // 4. A TaskManager that fails on every start: failed after the budget (1 restart), with
    //    the reason; the JobManager stays up.
    let broken = LaunchSpec {
        conf_dir: broken_conf,
        ..spec.clone()
    };
    handle
        .apply(
            broken,
            RestartSet {
                jobmanager: false,
                taskmanager: true,
            },
        )
        .await;
    let failed = wait_for(&handle, reaper, 150, "taskmanager failed", |s| {
        find(s, "taskmanager").state == ProcessState::Failed
    })
    .await;
    let tm = find(&failed, "taskmanager");
    let reason = tm.reason.as_deref().expect("reason");
    assert!(
        reason.starts_with("crashed 2 times in 300 s (last: exited with status ")
            && reason.ends_with("run `flink-agent restart taskmanager` after fixing the cause"),
        "{reason}"
    );
    assert_eq!(tm.pid, None);
    let jm = find(&failed, "jobmanager");
    assert_eq!((jm.state, jm.pid), (ProcessState::Running, Some(jm_pid)));
    assert!(
        !*handle.ready().borrow(),
        "not ready with a failed TaskManager"
    );
    assert!(supervisor::summary(&failed).contains("taskmanager failed: crashed 2 times"));
    rest.overview().await.expect("the JobManager still answers");

    // 5. The operator fixes the config and restarts: a fresh budget, running again.
    handle.apply(spec.clone(), RestartSet::default()).await;
    handle
        .restart(Target::TaskManager)
        .await
        .expect("restart accepted");
    wait_for(
        &handle,
        reaper,
        150,
        "taskmanager back after restart",
        both_running,
    )
    .await;

    // 6. Shutdown: TaskManager then JobManager; no process of any group we saw survives.
    let t = Instant::now();
    handle.shutdown().await;
    println!("shutdown: {:.1} s", t.elapsed().as_secs_f64());
    let stopped = handle.statuses();
    assert!(
        stopped
            .iter()
            .all(|s| s.state == ProcessState::Stopped && s.pid.is_none()),
        "{stopped:#?}"
    );
    for pgid in reaper.seen() {
        assert!(
            group_gone(pgid),
            "process group {pgid} survived the shutdown"
        );
    }
    assert!(
        handle.restart(Target::All).await.is_err(),
        "a shut-down supervisor refuses work"
    );
}
