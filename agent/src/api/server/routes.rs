//! The routes. Handlers hold no state: each turns a request into an [`ApiRequest`] for the
//! daemon loop (the single owner of state), waits a bounded time for its answer, and turns that
//! into a response.

use super::refusal::Refusal;
use super::Limits;
use crate::api::{ApiRequest, ConfigView, NoParams, ReloadReport};
use crate::jobs::{self, Answer};
use crate::status::AgentStatus;
use crate::supervisor::Target;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Every route the router serves, for the message of a wrong one (a test checks that each is
/// served).
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    ("GET", "/v1/metrics"),
    ("GET", "/v1/config"),
    ("GET", "/v1/firewall"),
    ("GET", "/v1/tls"),
    ("POST", "/v1/reload"),
    (
        "POST",
        "/v1/processes/{jobmanager|taskmanager|all|zookeeper}/restart",
    ),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs/{name}/stop"),
    ("POST", "/v1/jobs/{name}/start"),
    ("POST", "/v1/jobs/{name}/delete"),
    ("POST", "/v1/shutdown"),
];

#[derive(Debug, Clone)]
pub(super) struct AppState {
    tx: mpsc::Sender<ApiRequest>,
    limits: Limits,
}

pub(super) fn router(tx: mpsc::Sender<ApiRequest>, limits: Limits) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/metrics", get(metrics))
        .route("/v1/config", get(config))
        .route("/v1/firewall", get(firewall))
        .route("/v1/tls", get(tls))
        .route("/v1/reload", post(reload))
        .route("/v1/processes/{name}/restart", post(restart))
        .route("/v1/jobs", get(jobs_list).post(jobs_deploy))
        .route("/v1/jobs/{name}/{action}", post(jobs_action))
        .route("/v1/shutdown", post(shutdown))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(AppState { tx, limits })
}

/// The metrics listener's router: `GET /metrics` alone.
pub(super) fn metrics_router(tx: mpsc::Sender<ApiRequest>, limits: Limits) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_metrics)
        .method_not_allowed_fallback(not_metrics)
        .with_state(AppState { tx, limits })
}

async fn not_metrics(method: Method, uri: Uri) -> Refusal {
    Refusal::MetricsOnly {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

/// Prometheus metrics from the status snapshot, in the format the scraper accepts.
async fn metrics(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, Refusal> {
    use axum::response::IntoResponse;
    let status = ask(&app.tx, ApiRequest::Status, app.limits.query_timeout).await?;
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::from_accept(accept);
    let body = crate::metrics::render(&status, format);
    Ok((
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response())
}

async fn status(State(app): State<AppState>) -> Result<Json<AgentStatus>, Refusal> {
    ask(&app.tx, ApiRequest::Status, app.limits.query_timeout)
        .await
        .map(Json)
}

/// Job requests wait as long as a job operation may take; a listing asks Flink and the store,
/// so it gets longer than the other queries too.
async fn jobs(app: &AppState, command: jobs::Command) -> Result<Json<Answer>, Refusal> {
    let wait = match command {
        jobs::Command::List => app.limits.job_list_timeout,
        _ => app.limits.job_timeout,
    };
    ask(&app.tx, |reply| ApiRequest::Jobs(command, reply), wait)
        .await?
        .map(Json)
        .map_err(Refusal::Job)
}

async fn jobs_list(State(app): State<AppState>) -> Result<Json<Answer>, Refusal> {
    jobs(&app, jobs::Command::List).await
}

async fn jobs_deploy(
    State(app): State<AppState>,
    Params(request): Params<jobs::DeployRequest>,
) -> Result<Json<Answer>, Refusal> {
    jobs(&app, jobs::Command::Deploy(request)).await
}

async fn jobs_action(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    _: Params<NoParams>,
) -> Result<Json<Answer>, Refusal> {
    let Path((name, action)) =
        path.map_err(|rejection| Refusal::Malformed(rejection.body_text()))?;
    let command = match action.as_str() {
        "stop" => jobs::Command::Stop(name),
        "start" => jobs::Command::Start(name),
        "delete" => jobs::Command::Delete(name),
        other => {
            return Err(Refusal::Malformed(format!(
                "unknown job action `{other}`; use stop, start or delete"
            )))
        }
    };
    jobs(&app, command).await
}

/// Stops Flink on this node and then the agent; answers once Flink is stopped.
async fn shutdown(
    State(app): State<AppState>,
    _: Params<NoParams>,
) -> Result<Json<serde_json::Value>, Refusal> {
    ask(&app.tx, ApiRequest::Shutdown, app.limits.shutdown_timeout).await?;
    Ok(Json(
        serde_json::json!({ "stopped": ["taskmanager", "jobmanager"] }),
    ))
}

async fn config(State(app): State<AppState>) -> Result<Json<ConfigView>, Refusal> {
    ask(&app.tx, ApiRequest::Config, app.limits.query_timeout)
        .await
        .map(Json)
}

async fn firewall(
    State(app): State<AppState>,
) -> Result<Json<crate::firewall::FirewallStatus>, Refusal> {
    ask(&app.tx, ApiRequest::Firewall, app.limits.query_timeout)
        .await
        .map(Json)
}

async fn tls(State(app): State<AppState>) -> Result<Json<crate::tls::TlsStatus>, Refusal> {
    ask(&app.tx, ApiRequest::Tls, app.limits.query_timeout)
        .await
        .map(Json)
}

async fn reload(
    State(app): State<AppState>,
    _: Params<NoParams>,
) -> Result<Json<ReloadReport>, Refusal> {
    ask(&app.tx, ApiRequest::Reload, app.limits.action_timeout)
        .await?
        .map(Json)
        .map_err(Refusal::Reload)
}

async fn restart(
    State(app): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    _: Params<NoParams>,
) -> Result<Json<serde_json::Value>, Refusal> {
    let Path(name) = name.map_err(|rejection| Refusal::Malformed(rejection.body_text()))?;
    let target = parse_target(&name)?;
    ask(
        &app.tx,
        |reply| ApiRequest::Restart(target, reply),
        app.limits.action_timeout,
    )
    .await?
    .map_err(Refusal::Restart)?;
    Ok(Json(serde_json::json!({ "restarted": name })))
}

async fn no_route(method: Method, uri: Uri) -> Refusal {
    Refusal::NoRoute {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

async fn wrong_method(method: Method, uri: Uri) -> Refusal {
    Refusal::WrongMethod {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

/// Sends `request` to the daemon loop and waits at most `wait` for its answer.
async fn ask<T>(
    tx: &mpsc::Sender<ApiRequest>,
    request: impl FnOnce(oneshot::Sender<T>) -> ApiRequest,
    wait: Duration,
) -> Result<T, Refusal> {
    let (reply, answer) = oneshot::channel();
    let exchange = async {
        // Either side closing means the daemon loop has ended.
        tx.send(request(reply))
            .await
            .map_err(|_| Refusal::ShuttingDown)?;
        answer.await.map_err(|_| Refusal::ShuttingDown)
    };
    tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| Refusal::Busy(wait))?
}

/// Parses through [`Target`]'s own serde names so the URL and the JSON spelling cannot drift.
fn parse_target(name: &str) -> Result<Target, Refusal> {
    let de = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name);
    Target::deserialize(de).map_err(|_| Refusal::UnknownProcess(name.to_string()))
}

/// A JSON request body of type `T`; an empty body means `T::default()`. The body must arrive
/// within the body read timeout (headers alone are bounded by hyper) and fit the size limit.
pub(super) struct Params<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for Params<T> {
    type Rejection = Refusal;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Refusal> {
        let limits = app.limits;
        let bytes = tokio::time::timeout(limits.body_read_timeout, Bytes::from_request(req, app))
            .await
            .map_err(|_| Refusal::BodyTimeout(limits.body_read_timeout))?
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Refusal::BodyTooLarge(limits.max_body_bytes)
                } else {
                    Refusal::Malformed(rejection.body_text())
                }
            })?;
        if bytes.is_empty() {
            return Ok(Params(T::default()));
        }
        // The path names the field a wrong value is in (serde_json's message alone does not).
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&bytes))
            .map(Params)
            .map_err(|e| {
                let at = match e.path().to_string() {
                    path if path == "." => String::new(),
                    path => format!("`{path}`: "),
                };
                Refusal::Malformed(format!(
                    "the body is not the expected JSON: {at}{}",
                    e.inner()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_names_are_the_targets_serde_names() {
        for name in ["jobmanager", "taskmanager", "all", "zookeeper"] {
            let target = parse_target(name).expect("every listed name parses");
            let spelled = serde_json::to_value(target).expect("a target serializes");
            assert_eq!(spelled, name);
            assert!(
                ROUTES.iter().any(|(_, path)| path.contains(name)),
                "{name} not in ROUTES"
            );
        }
        assert!(matches!(
            parse_target("JobManager"),
            Err(Refusal::UnknownProcess(_))
        ));
    }
}
