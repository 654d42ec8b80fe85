//! The local API: HTTP/1.1 + JSON over a Unix socket. The server turns requests into
//! [`ApiRequest`]s for the daemon loop (the single owner of state) and waits for its answer.

pub mod client;
pub mod server;

pub use client::{Client, ClientError};
pub use server::{bind, serve, ApiError, ApiListener, Limits};

use crate::status::AgentStatus;
use tokio::sync::oneshot;

/// A request from the API to the daemon loop.
#[derive(Debug)]
pub enum ApiRequest {
    /// `GET /v1/status`
    Status(oneshot::Sender<AgentStatus>),
    /// `GET /v1/config`: the rendered Flink config in force, secrets redacted.
    Config(oneshot::Sender<serde_json::Value>),
    /// `POST /v1/reload`: re-read and validate the config; Err carries every problem.
    Reload(oneshot::Sender<Result<ReloadReport, String>>),
    /// `POST /v1/processes/{name}/restart` (`name` = jobmanager, taskmanager or all).
    Restart(
        crate::supervisor::Target,
        oneshot::Sender<Result<(), String>>,
    ),
    /// `GET /v1/firewall`: the firewall loop's status (in sync, repairs, last drift, errors).
    Firewall(oneshot::Sender<crate::firewall::FirewallStatus>),
    /// `/v1/jobs...`: declared jobs; Err carries the reason and what to do.
    Jobs(
        JobsCommand,
        oneshot::Sender<Result<serde_json::Value, String>>,
    ),
}

/// What a `/v1/jobs` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobsCommand {
    /// `GET /v1/jobs`
    List,
    /// `POST /v1/jobs` with a [`crate::jobs::DeployRequest`] body.
    Deploy(crate::jobs::DeployRequest),
    /// `POST /v1/jobs/{name}/stop`: savepoint, else cancel.
    Stop(String),
    /// `POST /v1/jobs/{name}/start`: a stopped job runs again from its savepoint.
    Start(String),
    /// `POST /v1/jobs/{name}/delete`: forget the job and its remote checkpoints.
    Delete(String),
}

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReloadReport {
    pub revision: String,
    /// Processes restarted because of the change, in the order they were restarted.
    pub restarted: Vec<String>,
    /// Whether Flink's rendered configuration changed on disk.
    pub flink_config_changed: bool,
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
