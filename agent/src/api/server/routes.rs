//! The routes. Handlers hold no state: each turns a request into an [`ApiRequest`] for the
//! daemon loop (the single owner of state), waits a bounded time for its answer, and turns that
//! into a response.

use super::refusal::Refusal;
use super::Limits;
use crate::api::{ApiRequest, JobsCommand, NoParams, ReloadReport};
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

/// The names `POST /v1/processes/{name}/restart` accepts: [`Target`]'s serde names.
pub(super) const PROCESS_NAMES: &[&str] = &["jobmanager", "taskmanager", "all"];

#[derive(Debug, Clone)]
pub(super) struct AppState {
    tx: mpsc::Sender<ApiRequest>,
    limits: Limits,
}

pub(super) fn router(tx: mpsc::Sender<ApiRequest>, limits: Limits) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/config", get(config))
        .route("/v1/firewall", get(firewall))
        .route("/v1/reload", post(reload))
        .route("/v1/processes/{name}/restart", post(restart))
        .route("/v1/jobs", get(jobs_list).post(jobs_deploy))
        .route("/v1/jobs/{name}/{action}", post(jobs_action))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(AppState { tx, limits })
}

async fn status(State(app): State<AppState>) -> Result<Json<AgentStatus>, Refusal> {
    ask(&app.tx, ApiRequest::Status, app.limits.query_timeout)
        .await
        .map(Json)
}

async fn jobs(app: &AppState, command: JobsCommand) -> Result<Json<serde_json::Value>, Refusal> {
    ask(
        &app.tx,
        |reply| ApiRequest::Jobs(command, reply),
        app.limits.action_timeout,
    )
    .await?
    .map(Json)
    .map_err(Refusal::JobRefused)
}

async fn jobs_list(State(app): State<AppState>) -> Result<Json<serde_json::Value>, Refusal> {
    jobs(&app, JobsCommand::List).await
}

async fn jobs_deploy(
    State(app): State<AppState>,
    Params(request): Params<crate::jobs::DeployRequest>,
) -> Result<Json<serde_json::Value>, Refusal> {
    jobs(&app, JobsCommand::Deploy(request)).await
}

async fn jobs_action(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    _: Params<NoParams>,
) -> Result<Json<serde_json::Value>, Refusal> {
    let Path((name, action)) =
        path.map_err(|rejection| Refusal::Malformed(rejection.body_text()))?;
    let command = match action.as_str() {
        "stop" => JobsCommand::Stop(name),
        "start" => JobsCommand::Start(name),
        "delete" => JobsCommand::Delete(name),
        other => {
            return Err(Refusal::Malformed(format!(
                "unknown job action `{other}`; use stop, start or delete"
            )))
        }
    };
    jobs(&app, command).await
}

async fn config(State(app): State<AppState>) -> Result<Json<serde_json::Value>, Refusal> {
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

async fn reload(
    State(app): State<AppState>,
    _: Params<NoParams>,
) -> Result<Json<ReloadReport>, Refusal> {
    ask(&app.tx, ApiRequest::Reload, app.limits.action_timeout)
        .await?
        .map(Json)
        .map_err(Refusal::ReloadRefused)
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
    .map_err(Refusal::RestartRefused)?;
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
        serde_json::from_slice(&bytes)
            .map(Params)
            .map_err(|e| Refusal::Malformed(format!("the body is not the expected JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_names_are_the_targets_serde_names() {
        for name in PROCESS_NAMES {
            let target = parse_target(name).expect("every listed name parses");
            let spelled = serde_json::to_value(target).expect("a target serializes");
            assert_eq!(spelled, *name);
        }
        assert!(matches!(
            parse_target("JobManager"),
            Err(Refusal::UnknownProcess(_))
        ));
    }
}
