//! Shared harness for tests that run the real agent binary against a real Flink.
//! Every process started here is killed (by process group) when its guard drops, also when
//! the test fails.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Flink distribution the suite runs against (`tests/setup/flink.sh` installs it).
pub fn flink_home() -> PathBuf {
    let home = std::env::var_os("FLINK_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/flink-agent/flink-2.3.0/pyflink")
        });
    assert!(
        home.join("bin/jobmanager.sh").is_file(),
        "no Flink distribution at {}; run `bash tests/setup/flink.sh` and export FLINK_HOME",
        home.display()
    );
    home
}

pub fn java_home() -> PathBuf {
    PathBuf::from(
        std::env::var("JAVA_HOME").unwrap_or_else(|_| "/usr/lib/jvm/java-17-openjdk-amd64".into()),
    )
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain HTTP/1.0 GET on loopback; returns (status, body). Enough for Flink's REST API.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at(([127, 0, 0, 1], port).into(), path)
}

/// [`http_get`] at any address (IPv6 loopback, say).
pub fn http_get_at(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Ports for one test cluster, away from Flink's defaults and from other test binaries.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub rest: u16,
    pub base: u16,
}

impl Ports {
    /// `slot` distinguishes test binaries that may run at the same time (0..20).
    pub fn for_slot(slot: u16) -> Self {
        let base = 20000 + slot * 10;
        Ports { rest: base, base }
    }

    pub fn toml(&self) -> String {
        format!(
            "[ports]\nrest = {}\njobmanager_rpc = {}\nblob = {}\ntaskmanager_rpc = {}\ntaskmanager_data = {}\ntaskmanager_collect = {}\nmetrics_query = {}\n",
            self.rest,
            self.base + 1,
            self.base + 2,
            self.base + 3,
            self.base + 4,
            self.base + 5,
            // metrics_query takes two ports (JobManager and TaskManager): base+6 and base+7.
            self.base + 6
        )
    }
}

/// A working directory with an agent config for a single-node cluster on loopback.
pub struct AgentDir {
    pub dir: tempfile::TempDir,
    pub ports: Ports,
}

impl AgentDir {
    pub fn new(slot: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fa-test-")
            .tempdir()
            .expect("temp dir");
        AgentDir {
            dir,
            ports: Ports::for_slot(slot),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("agent.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("agent.sock")
    }

    /// Writes the config with `extra` TOML appended (sections the test needs).
    pub fn write_config(&self, extra: &str) {
        self.write_config_for(&flink_home(), extra);
    }

    /// [`Self::write_config`] with another Flink distribution (`home`). Without an
    /// `[object_store]` in `extra` the store is a directory of the test's own: the embedded
    /// default is the host's `/var/lib/flink-agent/object-store`, which no test may write.
    pub fn write_config_for(&self, home: &Path, extra: &str) {
        let d = self.path().display();
        let store = match extra.contains("[object_store]") {
            true => String::new(),
            false => format!("[object_store]\nurl = \"file://{d}/store\"\n"),
        };
        let text = format!(
            r#"[agent]
state_dir = "{d}/state"
socket = "{d}/agent.sock"

[node]
id = "test"
address = "127.0.0.1"
bind_address = "127.0.0.1"

[cluster]
id = "test"
nodes = ["127.0.0.1"]

[flink]
home = "{home}"
java_home = "{java}"
data_dir = "{d}/flink-data"
log_dir = "{d}/flink-log"

[supervisor]
start_timeout_secs = 90
backoff_initial_ms = 200
backoff_max_ms = 2000
stop_grace_secs = 20

# The agent runs on the test host here: it must not put firewall rules there.
[firewall]
enabled = false

{ports}
{store}
{extra}"#,
            home = home.display(),
            java = java_home().display(),
            ports = self.ports.toml(),
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Starts `flink-agent run` on this config.
    pub fn start(&self) -> RunningAgent {
        self.start_with(&[])
    }

    /// Starts `flink-agent run` under `wrapper` (e.g. `ip netns exec NS`, which execs it, so
    /// the pid is still the agent's).
    pub fn start_with(&self, wrapper: &[&str]) -> RunningAgent {
        self.start_env(wrapper, &[])
    }

    /// [`Self::start_with`], with `env` set for the agent.
    pub fn start_env(&self, wrapper: &[&str], env: &[(&str, &Path)]) -> RunningAgent {
        let log = std::fs::File::create(self.path().join("agent.log")).expect("log file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(agent_bin());
                c
            }
            None => Command::new(agent_bin()),
        };
        let child = command
            .args(["run", "--config"])
            .arg(self.config_path())
            .env("FLINK_AGENT_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start flink-agent");
        RunningAgent {
            child: Some(child),
            cleans_up: true,
            marker: self.path().to_path_buf(),
            socket: self.socket(),
            log: self.path().join("agent.log"),
            seen_pgids: Vec::new(),
        }
    }
}

use std::os::unix::process::CommandExt;

/// A KiB field (`VmRSS:`, `VmHWM:`) of `/proc/<process>/status` (`process`: a pid or `self`);
/// 0 once the process is gone.
pub fn status_kib(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Compiles the repository's test jobs (`tests/jobs`) into `out`; returns the jar.
pub fn build_test_jobs(out: &Path) -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/jobs/build.sh");
    let o = Command::new("bash")
        .arg(script)
        .arg(out)
        .output()
        .expect("run build.sh");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// Runs `flink-agent <command> --socket S <rest...>`: (success, stdout, stderr).
pub fn cli(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(agent_bin())
        .arg(args[0])
        .arg("--socket")
        .arg(socket)
        .args(&args[1..])
        .output()
        .expect("run flink-agent");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flink-agent"))
}

/// A running agent. Drop kills it and every Flink process group it was seen to run.
pub struct RunningAgent {
    child: Option<Child>,
    /// Drop kills Flink too (unset once the agent ended and left Flink to a successor).
    cleans_up: bool,
    /// The test's directory: every Flink JVM of this agent names it on its command line.
    marker: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    seen_pgids: Vec<i32>,
}

impl RunningAgent {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// `flink-agent status --json` over the socket; None while the agent does not answer.
    pub fn status(&mut self) -> Option<serde_json::Value> {
        let out = Command::new(agent_bin())
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        for p in v["processes"].as_array().into_iter().flatten() {
            if let Some(pid) = p["pid"].as_i64() {
                if !self.seen_pgids.contains(&(pid as i32)) {
                    self.seen_pgids.push(pid as i32);
                }
            }
        }
        Some(v)
    }

    /// The pid of a process (`jobmanager`/`taskmanager`) while it is `running`.
    pub fn running_pid(&mut self, name: &str) -> Option<i32> {
        let s = self.status()?;
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

    pub fn wait_ready(&mut self, timeout: Duration) -> serde_json::Value {
        let log = self.log.clone();
        wait_for(
            &format!("agent ready (log: {})", log.display()),
            timeout,
            || self.status().filter(|s| s["ready"] == true),
        )
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal agent");
    }

    /// Waits for the agent to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = wait_for("agent exit", timeout, || child.try_wait().ok().flatten());
        self.child = None;
        status.code()
    }

    /// `kill -9` of the agent alone, as a crash would: Flink stays for the next agent, and this
    /// guard no longer cleans it up.
    pub fn crash(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(10));
        self.cleans_up = false;
    }

    /// SIGTERM, as systemd's stop or restart: the agent exits 0 and leaves Flink running for
    /// the next agent; this guard no longer cleans it up.
    pub fn stop_leaving_flink(mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(30));
        assert_eq!(
            code,
            Some(0),
            "SIGTERM exit code; log:\n{}",
            self.log_text()
        );
        self.cleans_up = false;
    }

    /// Process groups the agent was seen to run (Flink JVMs lead their own groups).
    pub fn seen_pgids(&self) -> &[i32] {
        &self.seen_pgids
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// True while any process of group `pgid` exists.
pub fn group_alive(pgid: i32) -> bool {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok()
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        // The test dir goes with the test: a failing test shows what the agent said last.
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(80).collect();
            eprintln!("--- last lines of {} ---", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.cleans_up {
            return;
        }
        for pgid in &self.seen_pgids {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for pid in pids_mentioning(&self.marker) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Pids whose command line mentions `marker` (a test's temp dir): the backstop that finds
/// JVMs the agent started even if the agent died before reporting them.
pub fn pids_mentioning(marker: &Path) -> Vec<i32> {
    let needle = marker.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}
