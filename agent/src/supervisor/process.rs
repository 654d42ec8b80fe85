//! Starting, watching and killing one Flink process (the side-effect edge of supervision).
//!
//! Each process is launched through Flink's own `bin/*.sh start-foreground` script (it execs the
//! JVM, so the pid we get is the JVM's), or as that JVM directly once its command is learned
//! ([`super::jvm_command`]), as the leader of a new session and process group, so one `killpg`
//! reaches everything it may have forked and nothing aimed at the agent reaches it (see
//! [`super::placement`]). The environment is rebuilt from scratch (or is the learned one, which
//! the script built from that): the agent's own environment must not leak into Flink.
//!
//! Every launch passes a gate: the forked process waits until the agent has recorded it in its
//! state file, so at no moment can a Flink process exist that a later agent would not adopt.

use super::jvm_command::JvmCommand;
use super::placement::Placement;
use super::{Kind, LaunchSpec, SupervisorError};
use crate::procfs::ProcessIdentity;
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid, User};
use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::oneshot;

/// A launched or adopted process: its group, and the answer when it exits.
#[derive(Debug)]
pub struct Live {
    /// Pid of the JVM (every step before it `exec`s), which is also its session and group id.
    pub pid: i32,
    /// Who it is for the kernel: what a later agent checks before adopting it.
    pub identity: ProcessIdentity,
    /// Launched from a learned JVM command rather than through the script.
    pub direct: bool,
    /// Started by an earlier agent: this one is not its parent and cannot learn its exit status.
    pub adopted: bool,
    /// How the process ended ("exited with status 1"), sent once it is gone.
    pub exit: oneshot::Receiver<String>,
}

/// A process that was forked but waits at the gate: it `exec`s Flink only once
/// [`Spawned::release`] says so, after the agent recorded it. An agent that dies before that
/// closes the gate's pipe, and the process exits instead of running unrecorded.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub identity: ProcessIdentity,
    pub direct: bool,
    child: tokio::process::Child,
    gate: std::fs::File,
}

impl Spawned {
    /// Lets the process go on to Flink and starts watching it.
    pub fn release(self) -> Live {
        use std::io::Write;
        let Spawned {
            pid,
            identity,
            direct,
            mut child,
            mut gate,
        } = self;
        // A failed write means the process is already gone; its exit says how.
        let _ = gate.write_all(b"go\n");
        drop(gate);
        let (tx, exit) = oneshot::channel();
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(status) => describe(status),
                Err(e) => format!("could not be waited for: {e}"),
            };
            let _ = tx.send(how);
        });
        Live {
            pid,
            identity,
            direct,
            adopted: false,
            exit,
        }
    }
}

/// The gate every launch passes: wait for the agent's "go" on fd 3, then become the command.
const GATE: &str = "read -r go <&3 && exec \"$@\" 3<&-; exit 70";

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

/// The user the Flink processes run as (`flink.user`, else the agent's).
pub fn flink_uid(spec: &LaunchSpec) -> Result<Uid, SupervisorError> {
    Ok(identity(spec.user.as_deref())?
        .switch
        .map_or_else(Uid::current, |(uid, _, _)| uid))
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

/// The uid and gid files for `user` must belong to (None: the agent's own user, or unknown).
pub fn owner(user: Option<&str>) -> Option<(Uid, Gid)> {
    let found = User::from_name(user?).ok()??;
    Some((found.uid, found.gid))
}

/// What to start: the `learned` JVM command directly when there is one (see
/// [`super::jvm_command`]), Flink's script otherwise; `extra_args` (dynamic properties of this
/// launch) go last either way, where the script puts them.
#[derive(Debug)]
pub struct Launch<'a> {
    pub kind: Kind,
    pub extra_args: &'a [String],
    pub learned: Option<&'a JvmCommand>,
    /// JVM options of this launch, first on the JVM's command line (see [`is_launch_option`]).
    pub jvm_options: &'a [String],
    pub placement: Placement,
    /// Numbers this launch (scope unit names must not repeat while an old one is collected).
    pub number: u64,
}

/// Forks `launch` as the leader of a new session, held at the gate (see [`Spawned`]).
pub fn spawn(spec: &LaunchSpec, launch: &Launch<'_>) -> Result<Spawned, SupervisorError> {
    let kind = launch.kind;
    let who = identity(spec.user.as_deref())?;
    if !spec.log_dir.is_dir() {
        return Err(SupervisorError::LogDir {
            path: spec.log_dir.display().to_string(),
        });
    }
    let (program, args, env): (String, Vec<String>, Vec<(String, String)>) =
        match (kind, launch.learned, spec.zookeeper.as_ref()) {
            (Kind::ZooKeeper, _, Some(zk)) => {
                super::zkserver::command(spec, &zk.server, &who.home, &who.name)
            }
            (Kind::ZooKeeper, _, None) => {
                return Err(SupervisorError::Spawn {
                    program: "ZooKeeper".into(),
                    source: std::io::Error::other(
                        "this node runs no ZooKeeper server (a single-node cluster)",
                    ),
                })
            }
            (_, Some(cmd), _) => (
                cmd.argv[0].clone(),
                launch
                    .jvm_options
                    .iter()
                    .chain(&cmd.argv[1..])
                    .cloned()
                    .collect(),
                cmd.env.clone(),
            ),
            (_, None, _) => (
                spec.flink_home
                    .join(kind.script().unwrap_or_default())
                    .display()
                    .to_string(),
                vec!["start-foreground".to_string()],
                [
                    ("PATH", PATH.to_string()),
                    ("HOME", who.home.clone()),
                    ("USER", who.name.clone()),
                    ("LOGNAME", who.name.clone()),
                    ("LANG", "C.UTF-8".to_string()),
                    ("JAVA_HOME", spec.java_home.display().to_string()),
                    ("FLINK_CONF_DIR", spec.conf_dir.display().to_string()),
                    ("FLINK_LOG_DIR", spec.log_dir.display().to_string()),
                    // Otherwise the scripts keep pid files (and a lock) in the shared /tmp.
                    ("FLINK_PID_DIR", spec.log_dir.display().to_string()),
                ]
                .into_iter()
                // The scripts put JVM_ARGS on the final JVM's command line only (not on their
                // helper JVMs').
                .chain(
                    (!launch.jvm_options.is_empty())
                        .then(|| ("JVM_ARGS", launch.jvm_options.join(" "))),
                )
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ),
        };
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", GATE, "flink-agent-gate"])
        .args(
            launch
                .placement
                .prefix(kind, launch.number, spec.user.as_deref()),
        )
        .arg(&program)
        .args(&args)
        .args(launch.extra_args)
        .env_clear()
        .envs(env)
        .current_dir(&spec.log_dir)
        .stdin(Stdio::null());
    let spawn_error = |source| SupervisorError::Spawn {
        program: program.clone(),
        source,
    };
    // Early failures (of the gate, systemd-run, the script) and, in a session, all of Flink's
    // output: a file outlives the agent, a pipe to it would not.
    let out = output_file(spec, kind).map_err(spawn_error)?;
    command
        .stdout(out.try_clone().map_err(spawn_error)?)
        .stderr(out);
    let (gate_read, gate_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| spawn_error(e.into()))?;
    let switch = if launch.placement.agent_switches_user() {
        who.switch
    } else {
        None
    };
    prepare_child(command.as_std_mut(), gate_read.as_raw_fd(), switch);
    let child = command.spawn().map_err(spawn_error)?;
    drop(gate_read);
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| {
            spawn_error(std::io::Error::other(
                "the child exited before its pid was read",
            ))
        })?;
    let identity = ProcessIdentity::of(pid).map_err(spawn_error)?;
    Ok(Spawned {
        pid,
        identity,
        direct: launch.learned.is_some(),
        child,
        gate: std::fs::File::from(gate_write),
    })
}

/// `<log_dir>/<kind>.out`, truncated per launch like the `.out` files of Flink's daemon scripts.
fn output_file(spec: &LaunchSpec, kind: Kind) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(spec.log_dir.join(format!("{}.out", kind.name())))
}

/// Between fork and exec: a new session (the process leads its own session and group, out of
/// reach of the agent's terminal and group), the gate's read end as fd 3, and, when the agent
/// switches user itself, the Flink user's groups, gid and uid.
#[allow(unsafe_code)]
fn prepare_child(
    command: &mut std::process::Command,
    gate: RawFd,
    switch: Option<(Uid, Gid, Vec<Gid>)>,
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes raw syscalls (setsid, dup2,
    // setgroups, setgid, setuid) on data prepared before the fork (no allocation, no locks),
    // which is async-signal-safe. dup2 onto fd 3 clears its close-on-exec flag; the gate's
    // original descriptor is close-on-exec.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            if libc::dup2(gate, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((uid, gid, groups)) = &switch {
                nix::unistd::setgroups(groups)?;
                nix::unistd::setgid(*gid)?;
                nix::unistd::setuid(*uid)?;
            }
            Ok(())
        });
    }
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

/// True for the JVM options the agent decides per launch (JIT thresholds, class-data sharing):
/// a learned JVM command is kept without them.
pub fn is_launch_option(arg: &str) -> bool {
    super::jit::is_jit_option(arg) || super::cds::is_cds_option(arg)
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
pub async fn terminate(mut live: Live, grace: Duration) -> String {
    signal_group(live.pid, Signal::SIGTERM);
    match tokio::time::timeout(grace, &mut live.exit).await {
        Ok(how) => {
            sweep_group(live.pid).await;
            how.unwrap_or_else(|_| "ended (not reaped)".into())
        }
        Err(_) => {
            log::warn!(
                "process group {} did not stop within {} s of SIGTERM; sending SIGKILL",
                live.pid,
                grace.as_secs()
            );
            kill(live).await
        }
    }
}

/// SIGKILL to the group at once (a process whose work is lost anyway); returns how the leader
/// ended. Every member of the group is gone when this returns.
pub async fn kill(live: Live) -> String {
    let Live { pid, exit, .. } = live;
    signal_group(pid, Signal::SIGKILL);
    let how = match tokio::time::timeout(KILL_WAIT, exit).await {
        Ok(Ok(how)) => how,
        _ => "did not end after SIGKILL (not reaped)".into(),
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
                 {{ echo \"uid=$(id -u) groups=$(id -G)\"; echo \"pgid=$(ps -o pgid= -p $$ | tr -d ' ') sid=$(ps -o sid= -p $$ | tr -d ' ') pid=$$\"; \
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

    /// What the stub recorded once it ran (see [`stub_home`]), waiting up to 10 s for it.
    async fn what_the_stub_saw(spec: &LaunchSpec) -> String {
        let record = spec.log_dir.join("launched.txt");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::read_to_string(&record) {
                Ok(seen) if seen.contains("PATH=") => return seen,
                _ => assert!(Instant::now() < deadline, "the stub never ran"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn spec(dir: &Path, home: PathBuf, user: Option<&str>) -> LaunchSpec {
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        std::fs::set_permissions(&log_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        LaunchSpec {
            user: user.map(str::to_string),
            endpoint: crate::flinkrest::Endpoint::new("127.0.0.1", 1),
            ..super::super::test_spec(home, dir.join("conf"), log_dir)
        }
    }

    fn start(spec: &LaunchSpec) -> Result<Live, SupervisorError> {
        let launch = Launch {
            kind: Kind::JobManager,
            extra_args: &[],
            learned: None,
            jvm_options: &[],
            placement: Placement::Session,
            number: 1,
        };
        spawn(spec, &launch).map(Spawned::release)
    }

    #[tokio::test]
    async fn launches_with_a_clean_environment_in_its_own_group() {
        std::env::set_var("FLINK_AGENT_LEAK_CHECK", "leaked");
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), stub_home(dir.path(), "exit 3"), None);
        let live = start(&spec).expect("launch");
        let how = live.exit.await.expect("reaped");
        assert_eq!(how, "exited with status 3");
        let seen = std::fs::read_to_string(spec.log_dir.join("launched.txt")).expect("record");
        assert!(
            seen.contains(&format!("pgid={0} sid={0} pid={0}", live.pid)),
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
        let out = std::fs::read_to_string(spec.log_dir.join("jobmanager.out")).expect("output");
        assert_eq!(out, "to-stdout\n");
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
        let live = start(&spec).expect("launch");
        let pid = live.pid;
        let seen = what_the_stub_saw(&spec).await;
        assert!(
            seen.contains(&format!("uid={} groups={}", nobody.uid, nobody.gid)),
            "{seen}"
        );
        assert!(seen.contains("USER=nobody"), "{seen}");
        let how = terminate(live, Duration::from_secs(5)).await;
        assert_eq!(how, "killed by signal 15");
        assert!(!group_alive(pid), "a member of group {pid} survived");
    }

    #[tokio::test]
    async fn kill_ends_the_whole_group_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Neither the leader nor its child would stop on SIGTERM.
        let tail = "trap '' TERM\nsh -c 'trap \"\" TERM; while :; do sleep 1; done' &\nwhile :; do sleep 1; done";
        let spec = spec(dir.path(), stub_home(dir.path(), tail), None);
        let live = start(&spec).expect("launch");
        let pid = live.pid;
        what_the_stub_saw(&spec).await;
        let started = Instant::now();
        let how = kill(live).await;
        assert_eq!(how, "killed by signal 9");
        assert!(!group_alive(pid), "a member of group {pid} survived");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no grace period"
        );
    }

    #[tokio::test]
    async fn a_process_the_agent_never_released_exits_without_running_flink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), stub_home(dir.path(), "exec sleep 600"), None);
        let launch = Launch {
            kind: Kind::JobManager,
            extra_args: &[],
            learned: None,
            jvm_options: &[],
            placement: Placement::Session,
            number: 1,
        };
        let spawned = spawn(&spec, &launch).expect("spawn");
        let pid = spawned.pid;
        // The agent dies before it recorded the process: its end of the gate closes.
        drop(spawned);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ended(pid) {
            assert!(
                Instant::now() < deadline,
                "pid {pid} still waits at the gate"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !spec.log_dir.join("launched.txt").exists(),
            "the script ran although the launch was never recorded"
        );
    }

    /// Gone, or a zombie nobody reaped yet.
    fn ended(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    }

    #[test]
    fn an_unknown_user_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(
            dir.path(),
            dir.path().to_path_buf(),
            Some("no-such-user-4711"),
        );
        let err = start(&spec).expect_err("no such user");
        assert!(
            err.to_string()
                .contains("`no-such-user-4711`: no such user"),
            "{err}"
        );
    }
}
