//! Starting, watching and killing one Flink process (the side-effect edge of supervision).
//!
//! Each process is launched through Flink's own `bin/*.sh start-foreground` script (it execs the
//! JVM, so the pid we get is the JVM's), or as that JVM directly once its command is learned
//! ([`super::jvm_command`]), as the leader of a new process group, so one `killpg` reaches
//! everything it may have forked. The environment is rebuilt from scratch (or is the learned
//! one, which the script built from that): the agent's own environment (systemd's, an
//! operator's shell) must not leak into Flink.

use super::jvm_command::JvmCommand;
use super::{LaunchSpec, SupervisorError};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid, User};
use std::ffi::CString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::oneshot;

/// The two supervised processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    JobManager,
    TaskManager,
}

impl Kind {
    /// Name in status, logs (the `log` target) and CLI arguments.
    pub fn name(self) -> &'static str {
        match self {
            Kind::JobManager => "jobmanager",
            Kind::TaskManager => "taskmanager",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Kind::JobManager => "bin/jobmanager.sh",
            Kind::TaskManager => "bin/taskmanager.sh",
        }
    }
}

/// A launched process: its group, and the reaper's answer when it exits.
#[derive(Debug)]
pub struct Live {
    /// Pid of the JVM, which is also its process group id.
    pub pid: i32,
    pub started: Instant,
    /// Launched from a learned JVM command rather than through the script.
    pub direct: bool,
    /// How the process ended ("exited with status 1"), sent once it was reaped.
    pub exit: oneshot::Receiver<String>,
}

/// How long SIGKILL may take to empty a group (a process in uninterruptible I/O delays it).
const KILL_WAIT: Duration = Duration::from_secs(10);

/// `PATH` for the scripts: they need bash, coreutils, sed, grep, find, sort, flock, hostname.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The identity the process runs as, resolved before forking (no lookups between fork and exec).
#[derive(Debug)]
struct Identity {
    name: String,
    home: String,
    /// uid, gid and supplementary groups when switching user; None = the agent's own identity.
    switch: Option<(Uid, Gid, Vec<Gid>)>,
}

fn identity(user: Option<&str>) -> Result<Identity, SupervisorError> {
    let Some(name) = user else {
        let me = User::from_uid(Uid::current()).ok().flatten();
        return Ok(Identity {
            name: me
                .as_ref()
                .map_or_else(|| "root".into(), |u| u.name.clone()),
            home: me.map_or_else(|| "/".into(), |u| u.dir.display().to_string()),
            switch: None,
        });
    };
    let unknown = || SupervisorError::User {
        user: name.to_string(),
        detail: "no such user".into(),
    };
    let found = User::from_name(name).ok().flatten().ok_or_else(unknown)?;
    let cname = CString::new(name).map_err(|_| unknown())?;
    let groups =
        nix::unistd::getgrouplist(&cname, found.gid).map_err(|e| SupervisorError::User {
            user: name.to_string(),
            detail: format!("cannot list its groups: {e}"),
        })?;
    Ok(Identity {
        name: found.name.clone(),
        home: found.dir.display().to_string(),
        switch: Some((found.uid, found.gid, groups)),
    })
}

/// Starts `kind` in its own process group and spawns the tasks that log its output and reap it:
/// the `learned` JVM command directly when there is one (see [`super::jvm_command`]), Flink's
/// script otherwise. `extra_args` (dynamic properties of this launch) go last either way, where
/// the script puts them.
pub fn launch(
    spec: &LaunchSpec,
    kind: Kind,
    extra_args: &[String],
    learned: Option<&JvmCommand>,
) -> Result<Live, SupervisorError> {
    let who = identity(spec.user.as_deref())?;
    if !spec.log_dir.is_dir() {
        return Err(SupervisorError::LogDir {
            path: spec.log_dir.display().to_string(),
        });
    }
    let (program, mut command) = match learned {
        Some(cmd) => {
            let program = PathBuf::from(&cmd.argv[0]);
            let mut command = Command::new(&program);
            command
                .args(&cmd.argv[1..])
                .env_clear()
                .envs(cmd.env.iter().map(|(k, v)| (k, v)));
            (program, command)
        }
        None => {
            let program = spec.flink_home.join(kind.script());
            let mut command = Command::new(&program);
            command
                .arg("start-foreground")
                .env_clear()
                .env("PATH", PATH)
                .env("HOME", &who.home)
                .env("USER", &who.name)
                .env("LOGNAME", &who.name)
                .env("LANG", "C.UTF-8")
                .env("JAVA_HOME", &spec.java_home)
                .env("FLINK_CONF_DIR", &spec.conf_dir)
                .env("FLINK_LOG_DIR", &spec.log_dir)
                // Otherwise the scripts keep pid files (and a lock) in the shared /tmp.
                .env("FLINK_PID_DIR", &spec.log_dir);
            (program, command)
        }
    };
    command
        .args(extra_args)
        .current_dir(&spec.log_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some((uid, gid, groups)) = who.switch {
        switch_user(command.as_std_mut(), uid, gid, groups);
    }
    let spawn_error = |source| SupervisorError::Spawn {
        program: program.display().to_string(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| {
            spawn_error(std::io::Error::other(
                "the child exited before its pid was read",
            ))
        })?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, kind.name(), false));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, kind.name(), true));
    }
    let (tx, exit) = oneshot::channel();
    tokio::spawn(async move {
        let how = match child.wait().await {
            Ok(status) => describe(status),
            Err(e) => format!("could not be waited for: {e}"),
        };
        let _ = tx.send(how);
    });
    Ok(Live {
        pid,
        started: Instant::now(),
        direct: learned.is_some(),
        exit,
    })
}

/// Drops root to `uid`/`gid` with the user's supplementary groups in the child before exec.
/// std's `Command::uid` would clear the supplementary groups (and stable Rust cannot set them),
/// so all three calls happen here, in the order the kernel requires (groups before gid before uid).
#[allow(unsafe_code)]
fn switch_user(command: &mut std::process::Command, uid: Uid, gid: Gid, groups: Vec<Gid>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes three raw syscalls on
    // data prepared before the fork (no allocation, no locks), which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
}

/// Reads `/proc/<pid>/<file>` of a Flink process. Under its unit the agent is root without
/// CAP_SYS_PTRACE, which another user's `environ` needs; that user may read it, so then a
/// `cat` running as the Flink user reads it.
pub fn read_proc(spec: &LaunchSpec, pid: i32, file: &str) -> std::io::Result<Vec<u8>> {
    let path = format!("/proc/{pid}/{file}");
    let denied = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => e,
        other => return other,
    };
    let who = identity(spec.user.as_deref()).map_err(std::io::Error::other)?;
    let Some((uid, gid, groups)) = who.switch else {
        return Err(denied);
    };
    let mut command = std::process::Command::new("cat");
    command
        .arg(&path)
        .env_clear()
        .env("PATH", PATH)
        .current_dir("/")
        .stdin(Stdio::null());
    switch_user(&mut command, uid, gid, groups);
    let out = command.output()?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(std::io::Error::other(format!(
            "reading {path} as {}: {}",
            who.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Copies a child's output into the agent's log line by line through [`crate::logging::process_line`],
/// which tags each line with the process name (log target and journal field `FLINK_PROCESS`).
async fn forward_lines(stream: impl AsyncRead + Unpin, process: &'static str, is_stderr: bool) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                crate::logging::process_line(process, is_stderr, text.trim_end());
            }
        }
    }
}

/// "exited with status 1" / "killed by signal 9", as shown in `status`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("ended ({status})"),
    }
}

/// Sends `sig` to the whole group. A group that is already gone is fine.
pub fn signal_group(pgid: i32, sig: Signal) {
    match signal::killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => log::warn!("cannot send {sig} to process group {pgid}: {e}"),
    }
}

/// True while any process of the group exists (`kill(-pgid, 0)` is not ESRCH).
pub fn group_alive(pgid: i32) -> bool {
    !matches!(signal::kill(Pid::from_raw(-pgid), None), Err(Errno::ESRCH))
}

/// Kills the group and waits (bounded) until no member is left, so ports are free for the
/// next launch. Members that are not our children are reaped by init, which takes a moment.
pub async fn sweep_group(pgid: i32) {
    let deadline = Instant::now() + KILL_WAIT;
    while group_alive(pgid) && Instant::now() < deadline {
        signal_group(pgid, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if group_alive(pgid) {
        log::error!(
            "process group {pgid} survived SIGKILL for {} s",
            KILL_WAIT.as_secs()
        );
    }
}

/// Graceful stop: SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL;
/// returns how the leader ended. Every member of the group is gone when this returns.
pub async fn terminate(live: Live, grace: Duration) -> String {
    let Live { pid, mut exit, .. } = live;
    signal_group(pid, Signal::SIGTERM);
    let how = match tokio::time::timeout(grace, &mut exit).await {
        Ok(how) => how.unwrap_or_else(|_| "ended (not reaped)".into()),
        Err(_) => {
            log::warn!(
                "process group {pid} did not stop within {} s of SIGTERM; sending SIGKILL",
                grace.as_secs()
            );
            signal_group(pid, Signal::SIGKILL);
            match tokio::time::timeout(KILL_WAIT, exit).await {
                Ok(Ok(how)) => how,
                _ => "did not end after SIGKILL (not reaped)".into(),
            }
        }
    };
    sweep_group(pid).await;
    how
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// A stand-in for Flink's launcher script: it records what a launched JVM would inherit
    /// (identity, environment, process group) and then behaves as told by `tail`.
    fn stub_home(dir: &Path, tail: &str) -> PathBuf {
        let home = dir.join("flink");
        std::fs::create_dir_all(home.join("bin")).expect("bin");
        let script = home.join("bin/jobmanager.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 {{ echo \"uid=$(id -u) groups=$(id -G)\"; echo \"pgid=$(ps -o pgid= -p $$ | tr -d ' ') pid=$$\"; \
                 env | sort; }} > launched.txt\n\
                 echo to-stdout\n{tail}\n"
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for d in [dir, &home, &home.join("bin")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        home
    }

    fn spec(dir: &Path, home: PathBuf, user: Option<&str>) -> LaunchSpec {
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        std::fs::set_permissions(&log_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        LaunchSpec {
            flink_home: home,
            java_home: PathBuf::from("/usr/lib/jvm/java-17-openjdk-amd64"),
            conf_dir: dir.join("conf"),
            log_dir,
            user: user.map(str::to_string),
            rest_url: "http://127.0.0.1:1".into(),
            expected_slots: 1,
            settings: crate::config::SupervisorSection::default(),
        }
    }

    #[tokio::test]
    async fn launches_with_a_clean_environment_in_its_own_group() {
        std::env::set_var("FLINK_AGENT_LEAK_CHECK", "leaked");
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), stub_home(dir.path(), "exit 3"), None);
        let live = launch(&spec, Kind::JobManager, &[], None).expect("launch");
        let how = live.exit.await.expect("reaped");
        assert_eq!(how, "exited with status 3");
        let seen = std::fs::read_to_string(spec.log_dir.join("launched.txt")).expect("record");
        assert!(
            seen.contains(&format!("pgid={0} pid={0}", live.pid)),
            "{seen}"
        );
        let names: Vec<&str> = seen
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .filter(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        for expected in [
            "FLINK_CONF_DIR",
            "FLINK_LOG_DIR",
            "FLINK_PID_DIR",
            "HOME",
            "JAVA_HOME",
            "LANG",
            "PATH",
            "USER",
        ] {
            assert!(names.contains(&expected), "{expected} missing: {seen}");
        }
        assert!(!seen.contains("FLINK_AGENT_LEAK_CHECK"), "{seen}");
    }

    #[tokio::test]
    async fn runs_as_the_configured_user_and_terminate_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A child in the group that ignores SIGTERM, next to a leader that obeys it.
        let tail = "sh -c 'trap \"\" TERM; while :; do sleep 1; done' &\nexec sleep 600";
        let spec = spec(dir.path(), stub_home(dir.path(), tail), Some("nobody"));
        let nobody = User::from_name("nobody")
            .ok()
            .flatten()
            .expect("user nobody");
        let live = launch(&spec, Kind::JobManager, &[], None).expect("launch");
        let pid = live.pid;
        let record = spec.log_dir.join("launched.txt");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&record).is_ok_and(|s| s.contains("PATH=")) {
            assert!(Instant::now() < deadline, "the stub never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = std::fs::read_to_string(&record).expect("record");
        assert!(
            seen.contains(&format!("uid={} groups={}", nobody.uid, nobody.gid)),
            "{seen}"
        );
        assert!(seen.contains("USER=nobody"), "{seen}");
        let how = terminate(live, Duration::from_secs(5)).await;
        assert_eq!(how, "killed by signal 15");
        assert!(!group_alive(pid), "a member of group {pid} survived");
    }

    #[test]
    fn an_unknown_user_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(
            dir.path(),
            dir.path().to_path_buf(),
            Some("no-such-user-4711"),
        );
        let err = launch(&spec, Kind::JobManager, &[], None).expect_err("no such user");
        assert!(
            err.to_string()
                .contains("`no-such-user-4711`: no such user"),
            "{err}"
        );
    }
}
