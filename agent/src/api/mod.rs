//! The local API: HTTP/1.1 + JSON over a Unix socket. The server turns requests into
//! [`ApiRequest`]s for the daemon loop (the single owner of state) and waits for its typed
//! answer; `server::refusal` maps every error to its HTTP status in one exhaustive match.

pub mod client;
pub mod server;

pub use client::{Client, ClientError};
pub use server::{bind, serve, serve_metrics, ApiError, ApiListener, Limits};

use crate::config::ConfigError;
use crate::firewall::FirewallStatus;
use crate::jobs::{self, JobError};
use crate::reconcile::{Outcome, Report};
use crate::status::AgentStatus;
use crate::supervisor::{SupervisorError, Target};
use crate::tls::TlsStatus;
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// A request from the API to the daemon loop, with the channel for its answer.
#[derive(Debug)]
pub enum ApiRequest {
    /// `GET /v1/status`, and `GET /v1/metrics` / `GET /metrics`, which render it.
    Status(oneshot::Sender<AgentStatus>),
    /// `GET /v1/config`: the rendered Flink config in force, secrets redacted.
    Config(oneshot::Sender<ConfigView>),
    /// `GET /v1/firewall`: the firewall loop's status (in sync, repairs, last drift, errors).
    Firewall(oneshot::Sender<FirewallStatus>),
    /// `GET /v1/tls`: the certificates in force, rotation, alert.
    Tls(oneshot::Sender<TlsStatus>),
    /// `POST /v1/reload`: re-read and validate the config, reconcile every concern.
    Reload(oneshot::Sender<Result<ReloadReport, ReloadError>>),
    /// `POST /v1/processes/{name}/restart` (`name` = jobmanager, taskmanager or all).
    Restart(Target, oneshot::Sender<Result<(), SupervisorError>>),
    /// `/v1/jobs...`: declared jobs.
    Jobs(
        jobs::Command,
        oneshot::Sender<Result<jobs::Answer, JobError>>,
    ),
    /// `POST /v1/shutdown`: stop Flink on this node, then the agent. Answered once Flink is
    /// stopped.
    Shutdown(oneshot::Sender<()>),
}

/// What `GET /v1/config` answers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConfigView {
    pub revision: String,
    pub file: String,
    pub flink_version: String,
    pub entries: BTreeMap<String, String>,
}

/// Why a reload was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file has problems; the configuration in force stays, untouched.
    #[error("reload refused, the configuration in force stays: {0}")]
    Refused(ConfigError),
    #[error("a reload is already in progress; try again when it has finished")]
    InProgress,
}

/// What a reload did, concern by concern.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReloadReport {
    pub revision: String,
    /// Config keys whose value changed (values are not shown: some are secrets).
    #[serde(default)]
    pub changed_keys: Vec<String>,
    /// Each concern's outcome, in the order they were reconciled.
    #[serde(default)]
    pub concerns: Vec<Report>,
    /// Processes restarted because of the change, in the order they were restarted.
    pub restarted: Vec<String>,
    /// Whether Flink's rendered configuration changed on disk.
    pub flink_config_changed: bool,
}

impl ReloadReport {
    /// True when every concern applied its part (none failed).
    pub fn complete(&self) -> bool {
        !self
            .concerns
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Failed { .. }))
    }
}

/// The body of a `POST` that takes no parameters. Clients send `{}` (or nothing); anything else
/// is refused with 400, so a typo'd option is reported instead of silently ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// The body of every error response: one sentence saying what failed and what to do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
