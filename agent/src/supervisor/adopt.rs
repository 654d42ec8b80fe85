//! Adopting the Flink processes an earlier agent started, instead of starting new ones.
//!
//! The state file says which processes the last agent ran (pid, boot, start time, what they
//! were launched with). A process is adopted only if the kernel confirms it is that very process
//! (same boot, same start time: a reused pid starts later) and its command line still names
//! this agent's Flink (its conf dir, or its script while the script runs). Anything else is not
//! touched as Flink: a pid reused by another program is never adopted.
//!
//! An adopted process is not the agent's child, so its exit is watched through a pidfd (the
//! kernel signals it when the process ends; init reaps it, so no zombie is left). Its exit
//! status is not knowable by a non-parent; the exit is reported as such.
//!
//! Processes that carry this agent's conf dir but are in no record (an earlier agent with
//! another state file, or a leftover of a crash outside the gate's protection) are strays and
//! are killed before anything is launched: two JobManagers would fight over the ports.

use super::persist::Record;
use super::process::Live;
use super::{Kind, LaunchSpec};
use crate::procfs::{self, ProcessIdentity};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// Why a recorded process was not adopted (logged; a fresh one is started instead).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotAdopted {
    #[error("pid {0} is gone")]
    Gone(i32),
    #[error("pid {0} was recorded before the last reboot")]
    Rebooted(i32),
    #[error("pid {pid} now belongs to another process (started at tick {now}, not {recorded})")]
    Reused { pid: i32, recorded: u64, now: u64 },
    #[error("pid {pid} is not this agent's Flink {kind} (command line: {cmdline})")]
    Foreign {
        pid: i32,
        kind: &'static str,
        cmdline: String,
    },
    #[error("cannot watch pid {pid}: {message}")]
    Unwatchable { pid: i32, message: String },
}

/// Checks that the recorded process is still this agent's `kind` and starts watching it.
pub fn adopt(record: &Record, spec: &LaunchSpec, kind: Kind) -> Result<Live, NotAdopted> {
    let recorded = &record.identity;
    let pid = recorded.pid;
    // The pidfd first: from here on the number cannot be reused under us, so the checks below
    // are about the process the pidfd refers to.
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(NotAdopted::Gone(pid)),
        Err(e) => {
            return Err(NotAdopted::Unwatchable {
                pid,
                message: e.to_string(),
            })
        }
    };
    let now = ProcessIdentity::of(pid).map_err(|_| NotAdopted::Gone(pid))?;
    if now.boot_id != recorded.boot_id {
        return Err(NotAdopted::Rebooted(pid));
    }
    if now.start_ticks != recorded.start_ticks {
        return Err(NotAdopted::Reused {
            pid,
            recorded: recorded.start_ticks,
            now: now.start_ticks,
        });
    }
    let cmdline = procfs::cmdline(pid).unwrap_or_default();
    // The conf dir it was started with: the state dir (and so the conf dir) may have moved.
    let conf_dir = if record.conf_dir.as_os_str().is_empty() {
        default_conf_dir(spec, kind)
    } else {
        record.conf_dir.clone()
    };
    if !is_ours(&cmdline, &conf_dir, &spec.flink_home, kind) {
        return Err(NotAdopted::Foreign {
            pid,
            kind: kind.name(),
            cmdline: cmdline.chars().take(200).collect(),
        });
    }
    let exit = watch_exit(pid, pidfd).map_err(|e| NotAdopted::Unwatchable {
        pid,
        message: e.to_string(),
    })?;
    Ok(Live {
        pid,
        identity: now,
        direct: record.direct,
        adopted: true,
        exit,
    })
}

/// The conf dir `kind` is started with under `spec` (ZooKeeper: where its zoo.cfg is).
pub fn default_conf_dir(spec: &LaunchSpec, kind: Kind) -> std::path::PathBuf {
    match (kind, &spec.zookeeper) {
        (Kind::ZooKeeper, Some(zk)) => zk.server.conf_dir.clone(),
        _ => spec.conf_dir.clone(),
    }
}

/// The command line of this agent's `kind` in any of its phases: the JVM (`--configDir <conf
/// dir>` and the kind's main class; for ZooKeeper, the `zoo.cfg` in its conf dir), the script
/// (`<home>/bin/<kind>.sh`), or the gate before it.
fn is_ours(cmdline: &str, conf_dir: &Path, flink_home: &Path, kind: Kind) -> bool {
    let conf = match kind {
        Kind::ZooKeeper => conf_dir.join("zoo.cfg").display().to_string(),
        _ => conf_dir.display().to_string(),
    };
    let script = kind
        .script()
        .map(|s| flink_home.join(s).display().to_string());
    (cmdline.contains(&conf) && cmdline.contains(kind.main_class()))
        || script.is_some_and(|s| cmdline.contains(&s))
}

/// Sessions (= process groups: the agent starts each process as a session leader) of processes
/// that name this agent's conf dir (or its ZooKeeper server's `zoo.cfg`) but are not in `keep`.
pub fn strays(spec: &LaunchSpec, keep: &[i32]) -> Vec<i32> {
    let mut marks = vec![format!("--configDir {}", spec.conf_dir.display())];
    if let Some(zk) = &spec.zookeeper {
        marks.push(format!(
            "{} {}",
            super::zkserver::MAIN_CLASS,
            zk.server.zoo_cfg_path().display()
        ));
    }
    let mut sessions: Vec<i32> = procfs::pids()
        .into_iter()
        .filter(|pid| procfs::cmdline(*pid).is_ok_and(|c| marks.iter().any(|m| c.contains(m))))
        .filter_map(|pid| procfs::session(pid).ok())
        .filter(|sid| *sid > 1 && !keep.contains(sid))
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    sessions
}

/// Resolves when the process behind `pidfd` has ended.
#[allow(unsafe_code)]
fn watch_exit(pid: i32, pidfd: OwnedFd) -> io::Result<oneshot::Receiver<String>> {
    // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it until dropped: the
    // descriptor stays open and always refers to the same pidfd.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let how = match fd.readable().await {
            Ok(_) => {
                format!("ended (pid {pid}, adopted: its exit status is only known to its parent)")
            }
            Err(e) => format!("could not be watched: {e}"),
        };
        let _ = tx.send(how);
    });
    Ok(rx)
}

/// `pidfd_open(2)`: a descriptor that refers to one process for as long as it is open and
/// becomes readable when that process ends (Linux 5.3+).
#[allow(unsafe_code)]
fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor or -1;
    // no memory is shared with the kernel.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn spec() -> LaunchSpec {
        super::super::test_spec(
            PathBuf::from("/opt/flink"),
            PathBuf::from("/var/lib/flink-agent/flink-conf"),
            PathBuf::from("/var/log/flink"),
        )
    }

    #[test]
    fn flink_in_each_phase_is_recognised_and_other_programs_are_not() {
        let s = spec();
        let jvm = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xmx1g -classpath x org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint --configDir /var/lib/flink-agent/flink-conf --executionMode cluster";
        assert!(is_ours(jvm, &s.conf_dir, &s.flink_home, Kind::JobManager));
        assert!(!is_ours(jvm, &s.conf_dir, &s.flink_home, Kind::TaskManager));
        assert!(is_ours(
            "/bin/bash /opt/flink/bin/taskmanager.sh start-foreground",
            &s.conf_dir,
            &s.flink_home,
            Kind::TaskManager
        ));
        assert!(is_ours(
            "/bin/sh -c read -r go <&3 && exec \"$@\" 3<&-; exit 70 flink-agent-gate /opt/flink/bin/jobmanager.sh start-foreground",
            &s.conf_dir,
            &s.flink_home,
            Kind::JobManager
        ));
        assert!(!is_ours(
            "/usr/sbin/sshd -D",
            &s.conf_dir,
            &s.flink_home,
            Kind::JobManager
        ));
        // Another agent's Flink (another conf dir) is not ours.
        assert!(!is_ours(
            &jvm.replace("/var/lib/flink-agent/", "/srv/other/"),
            &s.conf_dir,
            &s.flink_home,
            Kind::JobManager
        ));
    }

    fn record(identity: ProcessIdentity, conf_dir: &Path, direct: bool) -> Record {
        Record {
            identity,
            conf_dir: conf_dir.to_path_buf(),
            direct,
            fingerprint: super::super::Fingerprint::new(&[], "config.yaml", []),
            resource_id: None,
        }
    }

    #[tokio::test]
    async fn a_pid_that_now_belongs_to_another_program_is_not_adopted() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = sleeper.id() as i32;
        let real = ProcessIdentity::of(pid).expect("identity");
        // The right process, but not Flink.
        let conf = spec().conf_dir;
        assert!(matches!(
            adopt(
                &record(real.clone(), &conf, false),
                &spec(),
                Kind::JobManager
            ),
            Err(NotAdopted::Foreign { .. })
        ));
        // A record of an earlier process that had this pid.
        let earlier = ProcessIdentity {
            start_ticks: real.start_ticks.saturating_sub(1),
            ..real.clone()
        };
        assert!(matches!(
            adopt(&record(earlier, &conf, false), &spec(), Kind::JobManager),
            Err(NotAdopted::Reused { .. })
        ));
        let before_reboot = ProcessIdentity {
            boot_id: "0".into(),
            ..real
        };
        assert_eq!(
            adopt(
                &record(before_reboot, &conf, false),
                &spec(),
                Kind::JobManager
            )
            .err(),
            Some(NotAdopted::Rebooted(pid))
        );
        sleeper.kill().expect("kill");
        sleeper.wait().expect("reap");
    }

    #[tokio::test]
    async fn the_end_of_an_adopted_process_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = spec();
        s.conf_dir = dir.path().join("flink-conf");
        // Stands in for a JVM an earlier agent started: a session leader whose command line
        // names the kind's main class and `--configDir <conf dir>`.
        let mut jvm = std::process::Command::new("setsid")
            .args([
                "sh",
                "-c",
                "sleep 30; : org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
                "--configDir",
            ])
            .arg(&s.conf_dir)
            .spawn()
            .expect("stand-in");
        let pid = jvm.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while procfs::session(pid).ok() != Some(pid) {
            assert!(std::time::Instant::now() < deadline, "setsid did not run");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(strays(&s, &[]), vec![pid], "unrecorded: a stray");
        assert_eq!(strays(&s, &[pid]), Vec::<i32>::new(), "recorded: kept");
        let recorded = record(
            ProcessIdentity::of(pid).expect("identity"),
            &s.conf_dir,
            true,
        );
        // The agent's state dir (and so its conf dir) moved since: still recognised by what the
        // record says it was started with.
        let moved = LaunchSpec {
            conf_dir: dir.path().join("elsewhere/flink-conf"),
            ..s.clone()
        };
        let live = adopt(&recorded, &moved, Kind::JobManager).expect("adopted");
        assert!(live.adopted && live.direct);
        // The whole session: sh and its sleep.
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        let how = tokio::time::timeout(Duration::from_secs(5), live.exit)
            .await
            .expect("noticed within 5 s")
            .expect("an answer");
        assert!(how.contains("adopted"), "{how}");
        jvm.wait().expect("reap");
    }
}
