//! The API server: a Unix socket that only the agent's user and group can reach, HTTP/1.1 with
//! hard bounds (body size, header and body read timeouts, connection count) so a misbehaving
//! local client can neither exhaust the agent nor stall the daemon loop behind it.

mod listener;
mod refusal;
mod routes;
mod serve;

pub use listener::{bind, ApiError, ApiListener};
pub use serve::{serve, serve_metrics};

use std::time::Duration;

/// Bounds on what one client may cost the agent. The defaults suit production; tests shrink
/// them to observe the bounds without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a connection may take to send a request's headers (also the idle time allowed
    /// between keep-alive requests) before it is closed.
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive once the headers are in; then 408.
    pub body_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one ends.
    pub max_connections: usize,
    /// How long `GET` requests wait for the daemon loop before 503.
    pub query_timeout: Duration,
    /// How long reload and restart wait for the daemon loop (they restart processes) before 503.
    pub action_timeout: Duration,
    /// How long `GET /v1/jobs` waits: it asks Flink and the sync engine.
    pub job_list_timeout: Duration,
    /// How long job operations wait: longer than any of them may take
    /// ([`crate::jobs::OPERATION_TIMEOUT`]), so the answer is the operation's own.
    pub job_timeout: Duration,
    /// How long `POST /v1/shutdown` waits for Flink to stop (two grace periods and SIGKILL).
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 32,
            query_timeout: Duration::from_secs(5),
            action_timeout: Duration::from_secs(60),
            job_list_timeout: Duration::from_secs(30),
            job_timeout: crate::jobs::OPERATION_TIMEOUT + Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(1300),
        }
    }
}
