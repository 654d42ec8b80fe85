//! What the supervisor reports about each process: its state machine's state, pid, real start
//! time and failures. Owned here (not by the status aggregate) because the supervisor produces
//! it; `status` only carries it.

use serde::{Deserialize, Serialize};

/// The supervision state machine's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessState {
    /// Not started (yet), or stopped on purpose.
    Stopped,
    /// Held back until what it needs is there (its `reason` says what): the ZooKeeper
    /// quorum, or, for a ZooKeeper server with no data, a serving peer.
    Waiting,
    /// Launched (or adopted); waiting for it to prove healthy.
    Starting,
    /// Healthy.
    Running,
    /// Was healthy; health checks are failing now.
    Unhealthy,
    /// Crashed; waiting out the back-off before the next start.
    BackingOff,
    /// Failure budget exhausted: parked until the budget's window has passed (then tried
    /// again) or an operator restarts it.
    Failed,
    /// SIGTERM sent; waiting for it to exit.
    Stopping,
}

impl ProcessState {
    /// The kebab-case name used in JSON, `status` and `STATUS=`.
    pub fn name(self) -> &'static str {
        match self {
            ProcessState::Stopped => "stopped",
            ProcessState::Waiting => "waiting",
            ProcessState::Starting => "starting",
            ProcessState::Running => "running",
            ProcessState::Unhealthy => "unhealthy",
            ProcessState::BackingOff => "backing-off",
            ProcessState::Failed => "failed",
            ProcessState::Stopping => "stopping",
        }
    }
}

/// One supervised Flink process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// `jobmanager` or `taskmanager`.
    pub name: String,
    pub state: ProcessState,
    pub pid: Option<i32>,
    /// Restarts since this agent started (crashes, health failures, config changes).
    pub restarts: u32,
    /// When the process started (Unix seconds), from the kernel: an adopted process keeps its
    /// real age across agent restarts.
    #[serde(default)]
    pub started_at: Option<u64>,
    /// Seconds since `started_at`, as of the answer.
    pub uptime_secs: Option<u64>,
    /// Started by an earlier run of the agent and adopted by this one.
    #[serde(default)]
    pub adopted: bool,
    /// How the last run ended, e.g. "killed by signal 9" or "exited with status 1".
    pub last_exit: Option<String>,
    /// Why the process is `failed` or was last restarted.
    pub reason: Option<String>,
    /// Failures it may still have within `supervisor.restart_window_secs` before it is marked
    /// `failed` (`supervisor.max_restarts` minus the recent ones).
    #[serde(default)]
    pub budget_remaining: u32,
    /// The TaskManager's task heap in bytes, as Flink reports it: where HashMap-backend state
    /// lives.
    #[serde(default)]
    pub heap_bytes: Option<u64>,
}

impl ProcessStatus {
    /// Refreshes `uptime_secs` from `started_at` (statuses are published per supervisor step,
    /// answers are given at any time).
    pub fn aged(mut self) -> Self {
        self.uptime_secs = self.started_at.map(crate::procfs::age);
        self
    }
}

/// One line for systemd's `STATUS=`, e.g.
/// `jobmanager running (pid 812), taskmanager backing-off: exited with status 1; restarting in 2.0 s`.
pub fn summary(statuses: &[ProcessStatus]) -> String {
    statuses
        .iter()
        .map(|p| {
            let mut part = format!("{} {}", p.name, p.state.name());
            if let (Some(pid), ProcessState::Running) = (p.pid, p.state) {
                part.push_str(&format!(" (pid {pid})"));
            }
            if p.state != ProcessState::Running {
                if let Some(reason) = &p.reason {
                    part.push_str(&format!(": {reason}"));
                }
            }
            part
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, state: ProcessState, reason: Option<&str>) -> ProcessStatus {
        ProcessStatus {
            name: name.into(),
            state,
            pid: Some(812),
            restarts: 0,
            started_at: None,
            uptime_secs: Some(3),
            adopted: false,
            last_exit: None,
            reason: reason.map(str::to_string),
            budget_remaining: 5,
            heap_bytes: None,
        }
    }

    #[test]
    fn summary_is_one_line_with_the_reason_of_what_is_not_running() {
        let line = summary(&[
            status("jobmanager", ProcessState::Running, Some("old news")),
            status(
                "taskmanager",
                ProcessState::BackingOff,
                Some("exited with status 1; restarting in 2.0 s"),
            ),
        ]);
        assert_eq!(
            line,
            "jobmanager running (pid 812), taskmanager backing-off: exited with status 1; restarting in 2.0 s"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn state_names_are_the_json_names() {
        for state in [
            ProcessState::Stopped,
            ProcessState::Waiting,
            ProcessState::Starting,
            ProcessState::Running,
            ProcessState::Unhealthy,
            ProcessState::BackingOff,
            ProcessState::Failed,
            ProcessState::Stopping,
        ] {
            assert_eq!(
                serde_json::to_value(state).expect("serializes"),
                state.name()
            );
        }
    }
}
