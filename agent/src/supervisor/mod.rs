//! Supervises the local JobManager and TaskManager: start, health, restart with back-off and a
//! failure budget, graceful stop.
//!
//! - [`policy`]: the per-process state machine and the back-off/budget arithmetic (pure);
//! - `process`: launching through Flink's scripts, output capture, process-group signals;
//! - `jvm_command`: the JVM command line the scripts compute, learned once per rendered config
//!   so that restarts skip the scripts' seconds of helper JVMs;
//! - `driver`: the task that owns both processes, probes their health through
//!   [`crate::flinkrest`] and executes the policy's decisions;
//! - [`SupervisorHandle`]: how the daemon and the API talk to that task.
//!
//! Start order: the JobManager and the TaskManager are launched together. Each of Flink's
//! scripts spends seconds in helper JVMs (config parsing, memory calculation) before the real
//! JVM starts, and a TaskManager that comes up first simply retries its registration, so
//! overlapping the two startups reaches READY sooner than `start-cluster.sh`'s sequence. The
//! TaskManager's start timeout only runs while the JobManager is healthy.

mod driver;
mod jvm_command;
pub mod policy;
mod process;

use crate::config::SupervisorSection;
use crate::flinkconf::RestartSet;
use crate::status::{ProcessState, ProcessStatus};
use std::path::PathBuf;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Which processes an operation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    JobManager,
    TaskManager,
    All,
}

impl Target {
    fn includes_jobmanager(self) -> bool {
        matches!(self, Target::JobManager | Target::All)
    }
    fn includes_taskmanager(self) -> bool {
        matches!(self, Target::TaskManager | Target::All)
    }
}

/// Everything needed to start the processes; built by the daemon from the agent config.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub flink_home: PathBuf,
    pub java_home: PathBuf,
    /// Becomes `FLINK_CONF_DIR`: the agent-rendered conf dir.
    pub conf_dir: PathBuf,
    /// Becomes `FLINK_LOG_DIR` (and the scripts' pid dir); must be writable by `user`.
    pub log_dir: PathBuf,
    /// Run the processes as this user (with its groups); None = as the agent.
    pub user: Option<String>,
    /// Flink's REST endpoint, e.g. `http://127.0.0.1:8081`.
    pub rest_url: String,
    /// The TaskManager is healthy once registered with this many slots.
    pub expected_slots: u32,
    pub settings: SupervisorSection,
}

/// What happened, for the daemon (READY, STATUS=) and the checkpoint module (re-submit jobs
/// after every JobManager start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A JobManager was launched; `generation` counts launches since the agent started.
    JobManagerStarted {
        generation: u64,
    },
    /// The JobManager of this generation answers its REST API.
    JobManagerHealthy {
        generation: u64,
    },
    /// The TaskManager is registered with the expected slots.
    TaskManagerHealthy,
    ProcessExited {
        name: String,
        how: String,
    },
    /// The failure budget is exhausted; no more restarts until an operator asks.
    ProcessFailed {
        name: String,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the supervisor has shut down; restart the agent")]
    ShutDown,
    #[error("cannot start {program}: {source}; check `flink.home` points at a Flink distribution")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Flink's log directory {path} does not exist; create it (writable by the Flink user) or fix `flink.log_dir`")]
    LogDir { path: String },
    #[error("cannot run Flink as user `{user}`: {detail}; fix `flink.user` or create the user")]
    User { user: String, detail: String },
}

/// Requests from the handles to the supervisor task.
#[derive(Debug)]
enum Command {
    Restart(Target, oneshot::Sender<()>),
    Apply(Box<LaunchSpec>, RestartSet, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The daemon's and the API's way to the supervisor task. Dropping every handle shuts the
/// processes down.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    commands: mpsc::Sender<Command>,
    statuses: watch::Receiver<Vec<ProcessStatus>>,
    ready: watch::Receiver<bool>,
    events: broadcast::Sender<SupervisorEvent>,
}

/// Starts the supervisor task (it launches the JobManager and the TaskManager at once).
/// Must be called inside a tokio runtime.
pub fn spawn(spec: LaunchSpec) -> SupervisorHandle {
    let (commands, rx) = mpsc::channel(16);
    let (events, _) = broadcast::channel(64);
    let (statuses_tx, statuses) = watch::channel(driver::initial_statuses());
    let (ready_tx, ready) = watch::channel(false);
    let outputs = driver::Outputs {
        statuses: statuses_tx,
        ready: ready_tx,
        events: events.clone(),
    };
    tokio::spawn(driver::run(spec, rx, outputs));
    SupervisorHandle {
        commands,
        statuses,
        ready,
        events,
    }
}

impl SupervisorHandle {
    /// The processes as of the supervisor's last step (no round trip).
    pub fn statuses(&self) -> Vec<ProcessStatus> {
        self.statuses.borrow().clone()
    }

    /// True while both processes are healthy.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    pub fn events(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    /// Restarts `target` now (TaskManager stopped first, JobManager restarted before the
    /// TaskManager starts) and gives it a fresh failure budget, which also revives a `failed`
    /// process. Returns once the processes are launched, not when they are healthy.
    pub async fn restart(&self, target: Target) -> Result<(), SupervisorError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Restart(target, tx))
            .await
            .map_err(|_| SupervisorError::ShutDown)?;
        rx.await.map_err(|_| SupervisorError::ShutDown)
    }

    /// Takes a new configuration (after a reload) and restarts what `restart` names, in the
    /// same order as [`Self::restart`]. The new spec is used for every later (re)start.
    pub async fn apply(&self, spec: LaunchSpec, restart: RestartSet) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Apply(Box::new(spec), restart, tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Stops the TaskManager, then the JobManager (SIGTERM to the group, `stop_grace_secs`,
    /// SIGKILL); returns when no process of either group is left. The supervisor task ends.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// One line for systemd's `STATUS=`, e.g.
/// `jobmanager running (pid 812), taskmanager backing-off: exited with status 1; restarting in 2.0 s`.
pub fn summary(statuses: &[ProcessStatus]) -> String {
    statuses
        .iter()
        .map(|p| {
            let state = serde_json::to_value(p.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut part = format!("{} {state}", p.name);
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
            uptime_secs: Some(3),
            last_exit: None,
            reason: reason.map(str::to_string),
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
}
