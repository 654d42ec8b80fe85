//! What the agent reports about itself (`GET /v1/status`, `flink-agent status`): the aggregate of
//! every concern's own report, shared by the daemon (producer), the API (transport) and the CLI
//! (printer). It sits above the concerns and imports their report types; none imports it.

mod human;

use crate::checkpoints::SyncStatus;
use crate::firewall::FirewallStatus;
use crate::flinkrest::FlinkOverview;
use crate::jobs::JobStatus;
use crate::supervisor::ProcessStatus;
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
    /// Three-node clusters: every node's ZooKeeper role, JobManager and TaskManager, the
    /// quorum's health, the leader and the owner.
    #[serde(default)]
    pub cluster: Option<ClusterStatus>,
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
