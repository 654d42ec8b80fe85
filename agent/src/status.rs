//! What the agent reports about itself (`GET /v1/status`, `flink-agent status`). One typed
//! struct shared by the daemon (producer), the API (transport) and the CLI (printer).

mod human;

use serde::{Deserialize, Serialize};

/// The whole node as the agent sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub node_id: String,
    pub cluster_id: String,
    pub agent_version: String,
    pub flink_version: Option<String>,
    /// True once JobManager and TaskManager were both healthy (READY=1 was sent).
    pub ready: bool,
    pub config: ConfigStatus,
    pub processes: Vec<ProcessStatus>,
    /// Figures from Flink's `GET /overview`, when the JobManager answers.
    pub overview: Option<FlinkOverview>,
    /// The most recent error anywhere in the agent, for a one-line answer to "what is wrong".
    pub last_error: Option<String>,
    /// Checkpoint sync to object storage (None when the sync is not running).
    #[serde(default)]
    pub checkpoints: Option<crate::checkpoints::SyncStatus>,
    /// Declared jobs.
    #[serde(default)]
    pub jobs: Vec<crate::jobs::JobStatus>,
    /// The node's nftables firewall, as its reconcile loop last saw it.
    #[serde(default)]
    pub firewall: crate::firewall::FirewallStatus,
}

/// Which configuration is in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigStatus {
    pub path: String,
    /// Short SHA-256 of the config file content in force.
    pub revision: String,
    /// Unix time the config in force was loaded.
    pub loaded_at: u64,
    /// Why the last reload was refused (the config in force stayed).
    pub last_reload_error: Option<String>,
}

/// One supervised Flink process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// `jobmanager` or `taskmanager`.
    pub name: String,
    pub state: ProcessState,
    pub pid: Option<i32>,
    /// Restarts since the agent started (crashes, health failures, config changes).
    pub restarts: u32,
    pub uptime_secs: Option<u64>,
    /// How the last run ended, e.g. "killed by signal 9" or "exited with status 1".
    pub last_exit: Option<String>,
    /// Why the process is `failed` or was last restarted.
    pub reason: Option<String>,
}

/// The supervision state machine's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessState {
    /// Not started (yet), or stopped on purpose.
    Stopped,
    /// Launched; waiting for it to become healthy.
    Starting,
    /// Healthy.
    Running,
    /// Was healthy; health checks are failing now.
    Unhealthy,
    /// Crashed; waiting out the back-off before the next start.
    BackingOff,
    /// Failure budget exhausted: no more restarts until an operator asks.
    Failed,
    /// SIGTERM sent; waiting for it to exit.
    Stopping,
}

/// Flink's `GET /overview`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FlinkOverview {
    pub taskmanagers: u32,
    pub slots_total: u32,
    pub slots_available: u32,
    pub jobs_running: u32,
    pub jobs_finished: u32,
    pub jobs_cancelled: u32,
    pub jobs_failed: u32,
    pub flink_version: String,
}
