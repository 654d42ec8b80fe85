//! What the agent reports about itself (`GET /v1/status`, `flink-agent status`): the aggregate of
//! every concern's own report, shared by the daemon (producer), the API (transport) and the CLI
//! (printer). It sits above the concerns and imports their report types; none imports it.

mod heap;
mod human;

pub use heap::{HeapAdvice, PLANS_MIB};

use crate::checkpoints::SyncStatus;
use crate::firewall::FirewallStatus;
use crate::flinkrest::FlinkOverview;
use crate::jobs::JobStatus;
use crate::supervisor::ProcessStatus;
use crate::tls::TlsStatus;
use crate::zookeeper::ClusterStatus;
use serde::{Deserialize, Serialize};

/// The whole node as the agent sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub node_id: String,
    pub cluster_id: String,
    pub agent_version: String,
    pub flink_version: Option<String>,
    /// True while the JobManager and the TaskManager are both healthy.
    pub ready: bool,
    pub config: ConfigStatus,
    pub processes: Vec<ProcessStatus>,
    /// Figures from Flink's `GET /overview`, when the JobManager answers.
    pub overview: Option<FlinkOverview>,
    /// The most recent error anywhere in the agent, for a one-line answer to "what is wrong".
    pub last_error: Option<String>,
    /// Checkpoint sync to object storage (None when the sync is not running).
    #[serde(default)]
    pub checkpoints: Option<SyncStatus>,
    /// Declared jobs.
    #[serde(default)]
    pub jobs: Vec<JobStatus>,
    /// The node's nftables firewall, as its reconcile loop last saw it.
    #[serde(default)]
    pub firewall: FirewallStatus,
    /// TLS: mode, the certificates in force, days to expiry, rotation, alert.
    #[serde(default)]
    pub tls: TlsStatus,
    /// The plan in force (memory, vCPUs, checkpoint interval).
    #[serde(default)]
    pub plan: PlanStatus,
    /// Flink's web UI, e.g. `http://10.0.0.5:8081`.
    #[serde(default)]
    pub web_ui: String,
    /// Where `GET /metrics` answers (None: `metrics.listen = "off"`).
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// What long work runs now (a restore's download), as systemd's `STATUS=` says it.
    #[serde(default)]
    pub phase: Option<String>,
    /// Where Flink's output is, with `{process}` for jobmanager/taskmanager: a `journalctl`
    /// command under systemd, a file otherwise.
    #[serde(default)]
    pub flink_output: String,
    /// Three-node clusters: every node's ZooKeeper role, JobManager and TaskManager, the
    /// quorum's health, the leader and the owner.
    #[serde(default)]
    pub cluster: Option<ClusterStatus>,
}

/// The plan Flink's memory is derived from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStatus {
    pub memory_mib: u32,
    pub vcpus: u32,
    /// Where `"auto"` values came from, e.g. `auto: 16000 MiB from MemTotal, 4 CPU(s)`.
    pub auto: Option<String>,
    pub checkpoint_interval_ms: u64,
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
