//! What the kernel says about a process, read from `/proc`: enough to recognise a process the
//! agent started before it restarted (pid, start time, boot, command line) and to tell its real
//! age. A pid alone is not an identity: after a crash or a reboot the same number may belong to
//! any program, so adoption always checks the start time and the boot as well.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who a process is, as far as the kernel can tell: the same pid, boot and start time mean the
/// same process (a pid is reused only after its process is gone, and then it starts later).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessIdentity {
    pub pid: i32,
    /// `/proc/sys/kernel/random/boot_id` when the process was seen.
    pub boot_id: String,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub start_ticks: u64,
}

impl ProcessIdentity {
    /// The identity of a live process, or the error reading it (`NotFound` when it is gone).
    pub fn of(pid: i32) -> io::Result<Self> {
        Ok(Self {
            pid,
            boot_id: boot_id()?,
            start_ticks: start_ticks(pid)?,
        })
    }

    /// True when this exact process still exists.
    pub fn is_alive(&self) -> bool {
        Self::of(self.pid).is_ok_and(|now| now == *self)
    }

    /// Wall-clock time the process started (Unix seconds).
    pub fn started_at(&self) -> Option<u64> {
        let ticks_per_sec = clock_ticks()?;
        Some(boot_time().ok()? + self.start_ticks / ticks_per_sec)
    }
}

/// This boot's id: it changes at every reboot, so nothing recorded before one is trusted.
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Start time of `pid` in clock ticks since boot.
pub fn start_ticks(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_ticks(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat"),
        )
    })
}

/// Field 22 of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; starttime is field 22, so the 20th after the command.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The NUL-separated arguments of `pid`, joined by spaces (empty for a zombie).
pub fn cmdline(pid: i32) -> io::Result<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" "))
}

/// Every pid on the machine (in this pid namespace).
pub fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The session id of `pid` (field 6 of `/proc/<pid>/stat`): the agent starts each Flink process
/// as a session leader, so everything it forked shares its pid as session.
pub fn session(pid: i32) -> io::Result<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().nth(3)?.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected stat"))
}

fn clock_ticks() -> Option<u64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    u64::try_from(ticks).ok().filter(|t| *t > 0)
}

/// Boot time (Unix seconds), from the `btime` line of `/proc/stat`.
fn boot_time() -> io::Result<u64> {
    std::fs::read_to_string("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no btime in /proc/stat"))
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Seconds since `started_at` (Unix seconds), for `status`.
pub fn age(started_at: u64) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .saturating_sub(started_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4711 (java (x) y) S 1 4711 4711 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 40 0 123456 0 0";
        assert_eq!(parse_start_ticks(stat), Some(123456));
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_another_process() {
        let me = ProcessIdentity::of(std::process::id() as i32).expect("own identity");
        assert!(me.is_alive());
        let started = me.started_at().expect("start time");
        assert!(age(started) < 24 * 3600, "started {} s ago?", age(started));
        let other = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!other.is_alive());
        let rebooted = ProcessIdentity {
            boot_id: "another-boot".into(),
            ..me
        };
        assert!(!rebooted.is_alive());
    }

    #[test]
    fn this_process_has_a_command_line_and_a_session() {
        let pid = std::process::id() as i32;
        assert!(!cmdline(pid).expect("cmdline").is_empty());
        // The kernel's own answer: 0 when the session leader lives outside this pid namespace
        // (as in a CI container), so only equality with getsid(2) is meaningful.
        let sid = nix::unistd::getsid(None).expect("getsid").as_raw();
        assert_eq!(session(pid).expect("session"), sid);
        assert!(pids().contains(&pid));
    }
}
