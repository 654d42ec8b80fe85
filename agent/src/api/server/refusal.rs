//! Every way the API can decline a request, each with its HTTP status, decided in one
//! exhaustive match: a new error variant anywhere below does not compile until it has a status.
//! Clients print the sentence as is, so it says what happened and what to do.

use super::routes::ROUTES;
use crate::api::{ErrorBody, ReloadError};
use crate::checkpoints::RestoreError;
use crate::flinkrest::FlinkRestError;
use crate::jobs::JobError;
use crate::supervisor::SupervisorError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;

/// A request the API did not fulfil; rendered as `{"error": "<sentence>"}`.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error("no route for {method} {path}; the API serves {}", routes())]
    NoRoute { method: String, path: String },
    #[error("{method} is not allowed on {path}; the API serves {}", routes())]
    WrongMethod { method: String, path: String },
    #[error("{method} {path}: this is the agent's metrics listener; it serves GET /metrics only")]
    MetricsOnly { method: String, path: String },
    #[error("unknown process `{0}`; valid names are jobmanager, taskmanager, all, zookeeper")]
    UnknownProcess(String),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error(transparent)]
    Reload(ReloadError),
    #[error("restart refused: {0}")]
    Restart(SupervisorError),
    #[error(transparent)]
    Job(JobError),
    #[error("the agent is shutting down; retry once it is running again")]
    ShuttingDown,
    #[error("the agent did not answer within {0:?}; the operation may still complete: check `flink-agent status`, and `journalctl -u flink-agent` if it persists")]
    Busy(Duration),
}

fn routes() -> String {
    ROUTES
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Refusal {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Refusal::NoRoute { .. } | Refusal::UnknownProcess(_) | Refusal::MetricsOnly { .. } => {
                StatusCode::NOT_FOUND
            }
            Refusal::WrongMethod { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::Reload(e) => match e {
                ReloadError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ReloadError::InProgress => StatusCode::CONFLICT,
            },
            Refusal::Restart(e) => supervisor_status(e),
            Refusal::Job(e) => job_status(e),
            Refusal::ShuttingDown | Refusal::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn supervisor_status(e: &SupervisorError) -> StatusCode {
    match e {
        SupervisorError::ShutDown => StatusCode::SERVICE_UNAVAILABLE,
        SupervisorError::NotRunHere(_) => StatusCode::NOT_FOUND,
        SupervisorError::Spawn { .. }
        | SupervisorError::LogDir { .. }
        | SupervisorError::User { .. }
        | SupervisorError::Prepare { .. }
        | SupervisorError::Record { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The client's mistakes are 4xx; Flink or the store being unreachable is 503 (try again);
/// Flink refusing what it was asked is 502 (the reason is Flink's); the agent's own I/O is 500.
fn job_status(e: &JobError) -> StatusCode {
    match e {
        JobError::InvalidName(_) | JobError::JarUnreadable { .. } | JobError::NotAJar { .. } => {
            StatusCode::BAD_REQUEST
        }
        JobError::Unknown { .. } => StatusCode::NOT_FOUND,
        JobError::Exists { .. } | JobError::NotStopped { .. } => StatusCode::CONFLICT,
        JobError::Rest(e) => flink_status(e),
        JobError::Store { .. } | JobError::RemoteLeft { .. } | JobError::NotReady { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        JobError::Restore(e) => match e {
            RestoreError::List { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RestoreError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        },
        JobError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn flink_status(e: &FlinkRestError) -> StatusCode {
    match e {
        FlinkRestError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        FlinkRestError::Refused { .. } | FlinkRestError::Decode { .. } => StatusCode::BAD_GATEWAY,
        FlinkRestError::Client(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, FieldError};

    /// The table operators and clients rely on (README, "Local API"): each row is a refusal
    /// and the status it must get.
    #[test]
    fn every_refusal_has_the_documented_status() {
        let io = || std::io::Error::other("disk full");
        let store = || object_store::Error::NotFound {
            path: "p".into(),
            source: "gone".into(),
        };
        let rows: Vec<(Refusal, u16)> = vec![
            (
                Refusal::NoRoute {
                    method: "GET".into(),
                    path: "/x".into(),
                },
                404,
            ),
            (
                Refusal::WrongMethod {
                    method: "PUT".into(),
                    path: "/v1/status".into(),
                },
                405,
            ),
            (Refusal::UnknownProcess("jm".into()), 404),
            (
                Refusal::MetricsOnly {
                    method: "GET".into(),
                    path: "/v1/status".into(),
                },
                404,
            ),
            (Refusal::Malformed("x".into()), 400),
            (Refusal::BodyTooLarge(1), 413),
            (Refusal::BodyTimeout(Duration::from_secs(1)), 408),
            (
                Refusal::Reload(ReloadError::Refused(ConfigError::Invalid {
                    path: "agent.toml".into(),
                    errors: vec![FieldError::new("ports.rest", "bad")],
                })),
                422,
            ),
            (Refusal::Reload(ReloadError::InProgress), 409),
            (Refusal::Restart(SupervisorError::ShutDown), 503),
            (
                Refusal::Restart(SupervisorError::LogDir { path: "/x".into() }),
                500,
            ),
            (
                Refusal::Restart(SupervisorError::NotRunHere("ZooKeeper server")),
                404,
            ),
            (Refusal::Job(JobError::InvalidName("a/b".into())), 400),
            (
                Refusal::Job(JobError::NotAJar {
                    path: "x.txt".into(),
                }),
                400,
            ),
            (
                Refusal::Job(JobError::Unknown {
                    name: "nope".into(),
                }),
                404,
            ),
            (Refusal::Job(JobError::Exists { name: "a".into() }), 409),
            (Refusal::Job(JobError::NotStopped { name: "a".into() }), 409),
            (
                Refusal::Job(JobError::NotReady {
                    why: "no ZooKeeper session yet".into(),
                }),
                503,
            ),
            (
                Refusal::Job(JobError::Rest(FlinkRestError::Refused {
                    what: "running jar".into(),
                    status: 500,
                    message: "main threw".into(),
                })),
                502,
            ),
            (
                Refusal::Job(JobError::Store {
                    what: "recording".into(),
                    source: store(),
                }),
                503,
            ),
            (
                Refusal::Job(JobError::RemoteLeft {
                    name: "a".into(),
                    url: "s3://b".into(),
                    left: vec!["jobs/a/job.json".into()],
                    attempts: 3,
                    source: Box::new(store()),
                }),
                503,
            ),
            (
                Refusal::Job(JobError::Restore(RestoreError::List {
                    job: "a".into(),
                    url: "s3://b".into(),
                    source: store(),
                })),
                503,
            ),
            (
                Refusal::Job(JobError::Io {
                    what: "writing".into(),
                    source: io(),
                }),
                500,
            ),
            (Refusal::ShuttingDown, 503),
            (Refusal::Busy(Duration::from_secs(5)), 503),
        ];
        for (refusal, status) in rows {
            assert_eq!(refusal.status().as_u16(), status, "{refusal}");
        }
    }

    #[test]
    fn an_unknown_route_lists_every_route_the_router_serves() {
        let text = Refusal::NoRoute {
            method: "GET".into(),
            path: "/nope".into(),
        }
        .to_string();
        for route in ["GET /v1/firewall", "POST /v1/shutdown", "GET /v1/jobs"] {
            assert!(text.contains(route), "{route} missing: {text}");
        }
    }
}
