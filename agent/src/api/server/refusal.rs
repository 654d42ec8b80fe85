//! Every way the API can decline a request, each with its HTTP status. Clients print the
//! sentence as is, so it says what happened and what to do.

use crate::api::ErrorBody;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;

/// The routes, for the messages of unknown routes and wrong methods.
pub(super) const ROUTES: &str = "GET /v1/status, GET /v1/config, POST /v1/reload, \
     POST /v1/processes/{jobmanager|taskmanager|all}/restart, GET /v1/jobs, POST /v1/jobs, \
     POST /v1/jobs/{name}/stop, POST /v1/jobs/{name}/start, POST /v1/jobs/{name}/delete";

/// A request the API did not fulfil; rendered as `{"error": "<sentence>"}`.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error("no route for {method} {path}; the API serves {ROUTES}")]
    NoRoute { method: String, path: String },
    #[error("{method} is not allowed on {path}; the API serves {ROUTES}")]
    WrongMethod { method: String, path: String },
    #[error("unknown process `{0}`; valid names are {names}", names = super::routes::PROCESS_NAMES.join(", "))]
    UnknownProcess(String),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("reload refused, the configuration in force stays: {0}")]
    ReloadRefused(String),
    #[error("restart refused: {0}")]
    RestartRefused(String),
    #[error("{0}")]
    JobRefused(String),
    #[error("the agent is shutting down; retry once it is running again")]
    ShuttingDown,
    #[error("the agent did not answer within {0:?} (busy restarting processes?); retry, and see `journalctl -u flink-agent` if it persists")]
    Busy(Duration),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NoRoute { .. } | Refusal::UnknownProcess(_) => StatusCode::NOT_FOUND,
            Refusal::WrongMethod { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::ReloadRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::RestartRefused(_) | Refusal::JobRefused(_) => StatusCode::CONFLICT,
            Refusal::ShuttingDown | Refusal::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
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
