//! The agent's one client for Flink's REST API: health probes (`/overview`, `/taskmanagers`) for
//! the supervisor and the status, and the job side (jars, runs, savepoints) for declared jobs.
//!
//! One client, built from the one [`Endpoint`] the desired state derives, so every part of the
//! agent talks to the same address, over https with the agent's client certificate when TLS is
//! on (the CAs and the identity travel in the endpoint, so a rotation rebuilds every client).
//! Timeouts are per request because the calls differ by orders of magnitude: a probe that takes
//! seconds means a hung JobManager, while a jar upload or a savepoint may take minutes.

mod jobs;
mod types;

pub use jobs::RunRequest;
pub use types::{CheckpointInfo, FlinkOverview, JobOverview, TaskManagerInfo, TaskManagerMemory};

use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// Connecting to a local JobManager is immediate or refused; anything slower is a hung one.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Health probes and small queries.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Listings and small job operations (cancel, checkpoint statistics).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Jar uploads and runs: a run restores state before it answers.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Where Flink's REST API answers, as the agent dials it (`http://127.0.0.1:8081`,
/// `https://[2001:db8::1]:8081`). Built in one place (`crate::desired`), compared by value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
    tls: Option<ClientTls>,
}

/// How the agent's client speaks TLS to the REST port: the CAs it verifies the server with, and
/// its own certificate and key (PEM). `Debug` never shows the key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub roots_pem: Vec<u8>,
    /// The client certificate chain followed by its PKCS#8 key.
    pub identity_pem: Vec<u8>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls { roots, identity: <redacted> }")
    }
}

impl Endpoint {
    /// The endpoint at `host` (an IP address or a name; IPv6 addresses get brackets) and `port`.
    pub fn new(host: &str, port: u16) -> Self {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Self {
            base: format!("http://{host}:{port}"),
            tls: None,
        }
    }

    /// The same endpoint over https, with the agent's client certificate.
    pub fn with_tls(self, tls: ClientTls) -> Self {
        Self {
            base: self.base.replacen("http://", "https://", 1),
            tls: Some(tls),
        }
    }

    /// `http(s)://host:port`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// Why a call to Flink's REST API failed.
#[derive(Debug, thiserror::Error)]
pub enum FlinkRestError {
    /// The HTTP client itself could not be built (TLS backend initialisation).
    #[error("cannot build the HTTP client for Flink's REST API: {0}; with TLS on, `flink-agent tls show` lists the agent's client certificate")]
    Client(#[source] reqwest::Error),
    /// No answer: nothing listens, the connection broke, or the request timed out.
    #[error("Flink's REST API at {url} did not answer {what}: {source}; is the JobManager running and `ports.rest` the port it listens on?")]
    Unreachable {
        url: String,
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// Flink answered with an error status; `message` is Flink's own reason.
    #[error("Flink refused {what} ({status}): {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    /// Flink answered something the agent does not understand.
    #[error("unexpected answer from Flink to {what}: {message}; is this Flink 1.x/2.x?")]
    Decode { what: String, message: String },
}

/// A client for one JobManager's REST endpoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FlinkRest {
    endpoint: Endpoint,
    http: reqwest::Client,
}

impl FlinkRest {
    pub fn new(endpoint: &Endpoint) -> Result<Self, FlinkRestError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The JobManager is on this node; a proxy from the environment must not be used.
            .no_proxy();
        if let Some(tls) = &endpoint.tls {
            // Only the CAs of the REST port, never the system's; TLS 1.2 at least; no way back
            // to plain http (a redirect to it is refused).
            builder = builder
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .min_tls_version(reqwest::tls::Version::TLS_1_2)
                .https_only(true)
                .identity(
                    reqwest::Identity::from_pem(&tls.identity_pem)
                        .map_err(FlinkRestError::Client)?,
                );
            for root in reqwest::Certificate::from_pem_bundle(&tls.roots_pem)
                .map_err(FlinkRestError::Client)?
            {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder.build().map_err(FlinkRestError::Client)?;
        Ok(Self {
            endpoint: endpoint.clone(),
            http,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET /overview`: answers once the JobManager's dispatcher is up.
    pub async fn overview(&self) -> Result<FlinkOverview, FlinkRestError> {
        self.get_json("/overview", "the overview", PROBE_TIMEOUT)
            .await
    }

    /// `GET /taskmanagers`: the TaskManagers registered with the ResourceManager.
    pub async fn taskmanagers(&self) -> Result<Vec<TaskManagerInfo>, FlinkRestError> {
        let list: types::TaskManagers = self
            .get_json("/taskmanagers", "the TaskManager listing", PROBE_TIMEOUT)
            .await?;
        Ok(list.taskmanagers)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.url())
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        timeout: Duration,
    ) -> Result<T, FlinkRestError> {
        let value = self
            .send(what, self.http.get(self.url(path)).timeout(timeout))
            .await?;
        serde_json::from_value(value).map_err(|e| FlinkRestError::Decode {
            what: what.to_string(),
            message: e.to_string(),
        })
    }

    /// Sends a request and returns its JSON body (`Null` for an empty one). Error answers carry
    /// Flink's reason: it answers `{"errors": ["<reason>", "<stack trace>"]}`.
    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, FlinkRestError> {
        let unreachable = |source| FlinkRestError::Unreachable {
            url: self.endpoint.url().to_string(),
            what: what.to_string(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(FlinkRestError::Refused {
                what: what.to_string(),
                status: status.as_u16(),
                message: types::error_reason(&text),
            });
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| FlinkRestError::Decode {
            what: what.to_string(),
            message: e.to_string(),
        })
    }
}

/// Stand-ins for Flink in unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use super::Endpoint;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stand-in for the JobManager: answers every request with `answer(request line)`, a
    /// status line ("200 OK") and a JSON body, once the request's headers are in (a body, an
    /// upload's jar, is not read).
    pub async fn fake_flink(answer: fn(&str) -> (&'static str, &'static str)) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let (status, body) = answer(text.lines().next().unwrap_or_default());
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        Endpoint::new("127.0.0.1", port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_get_brackets_and_names_do_not() {
        assert_eq!(
            Endpoint::new("2001:db8::1", 8081).url(),
            "http://[2001:db8::1]:8081"
        );
        assert_eq!(Endpoint::new("[::1]", 8081).url(), "http://[::1]:8081");
        assert_eq!(
            Endpoint::new("127.0.0.1", 8081).url(),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            Endpoint::new("flink-1.internal", 80).url(),
            "http://flink-1.internal:80"
        );
    }
}
