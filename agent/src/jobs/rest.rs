//! The job side of Flink's REST API: upload a jar, run it (optionally from a checkpoint), list
//! jobs and their checkpoints, stop with a savepoint, cancel. Separate from the health-probe
//! client (`crate::flinkrest`) because jar uploads and savepoints need minutes, not seconds.

use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("cannot build the HTTP client for Flink's REST API: {0}")]
    Client(#[source] reqwest::Error),
    #[error("Flink's REST API at {url} did not answer: {source}; is the JobManager running?")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Flink refused {what} ({status}): {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from Flink to {what}: {message}")]
    Decode { what: String, message: String },
}

/// A client for one JobManager's REST endpoint.
#[derive(Debug, Clone)]
pub struct JobsRest {
    base: String,
    http: reqwest::Client,
}

/// `GET /jobs/overview` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobOverview {
    pub jid: String,
    pub name: String,
    pub state: String,
}

/// The parts of `GET /jobs/:id/checkpoints` the agent shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub last_completed: Option<u64>,
    /// The checkpoint the job was restored from, as Flink reports it.
    pub restored: Option<u64>,
    pub restored_path: Option<String>,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub entry_class: Option<String>,
    pub parallelism: Option<u32>,
    pub args: Vec<String>,
    /// Checkpoint or savepoint dir to restore from.
    pub savepoint_path: Option<String>,
    pub flink_config: std::collections::BTreeMap<String, String>,
}

impl JobsRest {
    /// `rest_url` like `http://127.0.0.1:8081`.
    pub fn new(rest_url: &str) -> Result<Self, RestError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(120))
            // The JobManager is local; a proxy from the environment must not be used.
            .no_proxy()
            .build()
            .map_err(RestError::Client)?;
        Ok(Self {
            base: rest_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, RestError> {
        let response = request
            .send()
            .await
            .map_err(|source| RestError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // Flink answers {"errors": ["...", "<stack trace>"]}: the first line is the reason.
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["errors"].as_array().cloned())
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(|e| e.as_str())
                        .flat_map(|e| e.lines().take(3))
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .unwrap_or(text);
            return Err(RestError::Refused {
                what: what.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| RestError::Decode {
            what: what.to_string(),
            message: e.to_string(),
        })
    }

    /// `POST /jars/upload`; returns the jar id for `run`.
    pub async fn upload_jar(&self, file_name: &str, jar: Vec<u8>) -> Result<String, RestError> {
        let what = format!("uploading {file_name}");
        let part = reqwest::multipart::Part::bytes(jar)
            .file_name(file_name.to_string())
            .mime_str("application/x-java-archive")
            .map_err(|e| RestError::Decode {
                what: what.clone(),
                message: e.to_string(),
            })?;
        let form = reqwest::multipart::Form::new().part("jarfile", part);
        let request = self
            .http
            .post(format!("{}/jars/upload", self.base))
            .multipart(form);
        let v = self.send(&what, request).await?;
        let path = v["filename"].as_str().ok_or_else(|| RestError::Decode {
            what: what.clone(),
            message: format!("no `filename` in {v}"),
        })?;
        Ok(path.rsplit('/').next().unwrap_or(path).to_string())
    }

    /// `POST /jars/:id/run`; returns Flink's job id.
    pub async fn run_jar(&self, jar_id: &str, run: &RunRequest) -> Result<String, RestError> {
        let mut body = json!({ "programArgsList": run.args });
        if let Some(c) = &run.entry_class {
            body["entryClass"] = json!(c);
        }
        if let Some(p) = run.parallelism {
            body["parallelism"] = json!(p);
        }
        if let Some(s) = &run.savepoint_path {
            body["savepointPath"] = json!(s);
        }
        if !run.flink_config.is_empty() {
            body["flinkConfiguration"] = json!(run.flink_config);
        }
        let what = format!("running jar {jar_id}");
        let request = self
            .http
            .post(format!("{}/jars/{jar_id}/run", self.base))
            .json(&body);
        let v = self.send(&what, request).await?;
        v["jobid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RestError::Decode {
                what,
                message: format!("no `jobid` in {v}"),
            })
    }

    /// `DELETE /jars/:id`: the JobManager keeps uploaded jars on disk until told otherwise.
    pub async fn delete_jar(&self, jar_id: &str) -> Result<(), RestError> {
        let request = self.http.delete(format!("{}/jars/{jar_id}", self.base));
        self.send(&format!("deleting jar {jar_id}"), request)
            .await
            .map(drop)
    }

    pub async fn jobs(&self) -> Result<Vec<JobOverview>, RestError> {
        let what = "listing jobs";
        let v = self
            .send(what, self.http.get(format!("{}/jobs/overview", self.base)))
            .await?;
        serde_json::from_value(v["jobs"].clone()).map_err(|e| RestError::Decode {
            what: what.into(),
            message: e.to_string(),
        })
    }

    pub async fn checkpoints(&self, job_id: &str) -> Result<CheckpointInfo, RestError> {
        let what = format!("checkpoints of job {job_id}");
        let request = self
            .http
            .get(format!("{}/jobs/{job_id}/checkpoints", self.base));
        let v = self.send(&what, request).await?;
        let latest = &v["latest"];
        Ok(CheckpointInfo {
            last_completed: latest["completed"]["id"].as_u64(),
            restored: latest["restored"]["id"].as_u64(),
            restored_path: latest["restored"]["external_path"]
                .as_str()
                .map(str::to_string),
        })
    }

    /// Stop-with-savepoint into `target_dir`; waits for the savepoint and returns its path.
    pub async fn stop_with_savepoint(
        &self,
        job_id: &str,
        target_dir: &str,
        timeout: Duration,
    ) -> Result<String, RestError> {
        let what = format!("stopping job {job_id} with a savepoint");
        let request = self
            .http
            .post(format!("{}/jobs/{job_id}/stop", self.base))
            .json(&json!({ "targetDirectory": target_dir, "drain": false }));
        let v = self.send(&what, request).await?;
        let trigger = v["request-id"].as_str().unwrap_or_default().to_string();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let url = format!("{}/jobs/{job_id}/savepoints/{trigger}", self.base);
            let v = self.send(&what, self.http.get(url)).await?;
            if v["status"]["id"] == "COMPLETED" {
                let op = &v["operation"];
                if let Some(location) = op["location"].as_str() {
                    return Ok(location.to_string());
                }
                let cause = op["failure-cause"]["stack-trace"]
                    .as_str()
                    .and_then(|s| s.lines().next())
                    .unwrap_or("unknown cause");
                return Err(RestError::Refused {
                    what,
                    status: 500,
                    message: cause.to_string(),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RestError::Refused {
                    what,
                    status: 504,
                    message: format!("no savepoint after {timeout:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `PATCH /jobs/:id?mode=cancel`.
    pub async fn cancel(&self, job_id: &str) -> Result<(), RestError> {
        let request = self
            .http
            .patch(format!("{}/jobs/{job_id}?mode=cancel", self.base));
        self.send(&format!("cancelling job {job_id}"), request)
            .await
            .map(drop)
    }
}
