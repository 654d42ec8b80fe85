//! The API client the CLI uses: one HTTP/1.1 request per connection over the agent's Unix
//! socket. Every failure is turned into a sentence that tells the operator what to do, since the
//! CLI prints it as is.

use crate::api::{ConfigView, ErrorBody, NoParams, ReloadReport};
use crate::status::AgentStatus;
use crate::supervisor::Target;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::UnixStream;

/// Upper bound on one request; longer than the server's own 60 s bound on reload and restart,
/// so the server's answer (even "busy") normally arrives first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(75);

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no agent is running (no socket at {path}); start it with `systemctl start flink-agent`"
    )]
    NotRunning { path: PathBuf },
    #[error("no agent is listening on {path} (the socket is left from a stopped agent); start it with `systemctl start flink-agent`")]
    Stale { path: PathBuf },
    #[error("you may not use {path}: join the group that owns it or use sudo")]
    PermissionDenied { path: PathBuf },
    #[error("cannot connect to the agent on {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error(
        "the connection to the agent on {path} failed: {source}; see `journalctl -u flink-agent`"
    )]
    Transport { path: PathBuf, source: hyper::Error },
    #[error(
        "the agent on {path} did not answer within {timeout:?}; see `systemctl status flink-agent`"
    )]
    Timeout { path: PathBuf, timeout: Duration },
    /// The agent refused the request; `message` is its sentence.
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("cannot build the request for {uri}: {detail}")]
    Request { uri: String, detail: String },
    #[error("the agent answered {status} with an unexpected body ({detail}); are the CLI and the agent the same version?")]
    UnexpectedBody { status: u16, detail: String },
}

/// A client of one agent's API socket.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// For requests the agent may legitimately work on longer than [`REQUEST_TIMEOUT`] (job
    /// operations: a savepoint alone may take two minutes).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    pub async fn status(&self) -> Result<AgentStatus, ClientError> {
        self.get_json("/v1/status").await
    }

    /// The rendered Flink configuration in force, secrets redacted.
    pub async fn config(&self) -> Result<ConfigView, ClientError> {
        self.get_json("/v1/config").await
    }

    /// Stops Flink on the node (TaskManager, then JobManager), then the agent.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post_json("/v1/shutdown", &NoParams {}).await?;
        Ok(())
    }

    /// Asks the agent to re-read its configuration; a refusal carries every problem found.
    pub async fn reload(&self) -> Result<ReloadReport, ClientError> {
        self.post_json("/v1/reload", &NoParams {}).await
    }

    /// Restarts the process(es) and resets their failure budget.
    pub async fn restart(&self, target: Target) -> Result<(), ClientError> {
        // The URL uses the target's serde name, as the server parses it.
        let name = match serde_json::to_value(target) {
            Ok(serde_json::Value::String(name)) => name,
            other => {
                return Err(ClientError::Request {
                    uri: "/v1/processes/{name}/restart".into(),
                    detail: format!("{target:?} has no process name ({other:?})"),
                })
            }
        };
        let uri = format!("/v1/processes/{name}/restart");
        let _: serde_json::Value = self.post_json(&uri, &NoParams {}).await?;
        Ok(())
    }

    /// `GET path`, decoding a JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, Bytes::new()).await
    }

    /// `POST path` with `body` as JSON, decoding a JSON answer.
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Request {
            uri: path.to_string(),
            detail: e.to_string(),
        })?;
        self.request(Method::POST, path, Bytes::from(body)).await
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: &str,
        body: Bytes,
    ) -> Result<T, ClientError> {
        let (status, bytes) = tokio::time::timeout(self.timeout, self.exchange(method, uri, body))
            .await
            .map_err(|_| ClientError::Timeout {
                path: self.path.clone(),
                timeout: self.timeout,
            })??;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::UnexpectedBody {
                status: status.as_u16(),
                detail: e.to_string(),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) => Err(ClientError::Api {
                status: status.as_u16(),
                message: error,
            }),
            Err(_) => Err(ClientError::UnexpectedBody {
                status: status.as_u16(),
                detail: String::from_utf8_lossy(&bytes).trim().to_string(),
            }),
        }
    }

    /// One request on a fresh connection; returns the status and the whole body.
    async fn exchange(
        &self,
        method: Method,
        uri: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|source| self.connect_error(source))?;
        let transport = |source| ClientError::Transport {
            path: self.path.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, "localhost")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Request {
                uri: uri.to_string(),
                detail: e.to_string(),
            })?;
        let exchange = async move {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            Ok((status, bytes))
            // `sender` drops here, which lets `conn` finish.
        };
        let (result, _closed) = tokio::join!(exchange, conn);
        result.map_err(transport)
    }

    fn connect_error(&self, source: io::Error) -> ClientError {
        let path = self.path.clone();
        match source.kind() {
            io::ErrorKind::NotFound => ClientError::NotRunning { path },
            io::ErrorKind::ConnectionRefused => ClientError::Stale { path },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
            _ => ClientError::Connect { path, source },
        }
    }
}
