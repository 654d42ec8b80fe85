//! The job side of Flink's REST API: upload a jar, run it (optionally from a checkpoint), list
//! jobs and their checkpoints, stop with a savepoint, cancel.

use super::types::{CheckpointInfo, JobOverview};
use super::{FlinkRest, FlinkRestError, JOB_TIMEOUT, QUERY_TIMEOUT};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub entry_class: Option<String>,
    pub parallelism: Option<u32>,
    pub args: Vec<String>,
    /// Checkpoint or savepoint dir to restore from.
    pub savepoint_path: Option<String>,
    pub flink_config: BTreeMap<String, String>,
    /// The Flink job id to run under (three-node clusters: deterministic, so a second
    /// submission is refused as a duplicate); None lets Flink pick one.
    pub job_id: Option<String>,
}

impl FlinkRest {
    /// `POST /jars/upload`; returns the jar id for [`FlinkRest::run_jar`].
    pub async fn upload_jar(
        &self,
        file_name: &str,
        jar: Vec<u8>,
    ) -> Result<String, FlinkRestError> {
        let what = format!("uploading {file_name}");
        let part = reqwest::multipart::Part::bytes(jar)
            .file_name(file_name.to_string())
            .mime_str("application/x-java-archive")
            .map_err(|e| FlinkRestError::Decode {
                what: what.clone(),
                message: e.to_string(),
            })?;
        let form = reqwest::multipart::Form::new().part("jarfile", part);
        let request = self
            .http
            .post(self.url("/jars/upload"))
            .multipart(form)
            .timeout(JOB_TIMEOUT);
        let v = self.send(&what, request).await?;
        let path = v["filename"]
            .as_str()
            .ok_or_else(|| FlinkRestError::Decode {
                what: what.clone(),
                message: format!("no `filename` in {v}"),
            })?;
        Ok(path.rsplit('/').next().unwrap_or(path).to_string())
    }

    /// `POST /jars/:id/run`; returns Flink's job id.
    pub async fn run_jar(&self, jar_id: &str, run: &RunRequest) -> Result<String, FlinkRestError> {
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
        if let Some(id) = &run.job_id {
            body["jobId"] = json!(id);
        }
        let what = format!("running jar {jar_id}");
        let request = self
            .http
            .post(self.url(&format!("/jars/{jar_id}/run")))
            .json(&body)
            .timeout(JOB_TIMEOUT);
        let v = self.send(&what, request).await?;
        v["jobid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| FlinkRestError::Decode {
                what,
                message: format!("no `jobid` in {v}"),
            })
    }

    /// `DELETE /jars/:id`: the JobManager keeps uploaded jars on disk until told otherwise.
    pub async fn delete_jar(&self, jar_id: &str) -> Result<(), FlinkRestError> {
        let request = self
            .http
            .delete(self.url(&format!("/jars/{jar_id}")))
            .timeout(QUERY_TIMEOUT);
        self.send(&format!("deleting jar {jar_id}"), request)
            .await
            .map(drop)
    }

    /// `GET /jobs/overview`.
    pub async fn jobs(&self) -> Result<Vec<JobOverview>, FlinkRestError> {
        #[derive(serde::Deserialize)]
        struct Jobs {
            jobs: Vec<JobOverview>,
        }
        let list: Jobs = self
            .get_json("/jobs/overview", "listing jobs", QUERY_TIMEOUT)
            .await?;
        Ok(list.jobs)
    }

    /// `GET /jobs/:id/checkpoints`: the newest completed checkpoint.
    pub async fn checkpoints(&self, job_id: &str) -> Result<CheckpointInfo, FlinkRestError> {
        let what = format!("checkpoints of job {job_id}");
        let request = self
            .http
            .get(self.url(&format!("/jobs/{job_id}/checkpoints")))
            .timeout(QUERY_TIMEOUT);
        let v = self.send(&what, request).await?;
        let completed = &v["latest"]["completed"];
        Ok(CheckpointInfo {
            last_completed: completed["id"].as_u64(),
            last_completed_at: completed["latest_ack_timestamp"]
                .as_u64()
                .map(|ms| ms / 1000),
            state_bytes: completed["state_size"].as_u64(),
        })
    }

    /// Stop-with-savepoint into `target_dir`; waits up to `timeout` for the savepoint and
    /// returns its path. A job whose tasks are still being deployed (it was just submitted or
    /// restarted) cannot take a savepoint yet: Flink says so and the request is repeated until
    /// the tasks run or the time is up.
    pub async fn stop_with_savepoint(
        &self,
        job_id: &str,
        target_dir: &str,
        timeout: Duration,
    ) -> Result<String, FlinkRestError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self
                .try_stop_with_savepoint(job_id, target_dir, deadline)
                .await
            {
                Err(FlinkRestError::Refused { message, .. })
                    if tasks_not_running(&message) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_stop_with_savepoint(
        &self,
        job_id: &str,
        target_dir: &str,
        deadline: tokio::time::Instant,
    ) -> Result<String, FlinkRestError> {
        let what = format!("stopping job {job_id} with a savepoint");
        let request = self
            .http
            .post(self.url(&format!("/jobs/{job_id}/stop")))
            .json(&json!({ "targetDirectory": target_dir, "drain": false }))
            .timeout(QUERY_TIMEOUT);
        let v = self.send(&what, request).await?;
        let trigger = v["request-id"]
            .as_str()
            .ok_or_else(|| FlinkRestError::Decode {
                what: what.clone(),
                message: format!("no `request-id` in {v}"),
            })?
            .to_string();
        loop {
            let url = self.url(&format!("/jobs/{job_id}/savepoints/{trigger}"));
            let v = self
                .send(&what, self.http.get(url).timeout(QUERY_TIMEOUT))
                .await?;
            if v["status"]["id"] == "COMPLETED" {
                let op = &v["operation"];
                if let Some(location) = op["location"].as_str() {
                    return Ok(location.to_string());
                }
                let trace = op["failure-cause"]["stack-trace"].as_str().unwrap_or("");
                let innermost = trace
                    .lines()
                    .rev()
                    .find_map(|l| l.trim().strip_prefix("Caused by: "));
                // The innermost cause says why; deploying tasks are said in the first line.
                let cause = match innermost {
                    Some(root) if !tasks_not_running(trace) => root,
                    _ => trace.lines().next().unwrap_or("unknown cause"),
                };
                return Err(FlinkRestError::Refused {
                    what,
                    status: 500,
                    message: cause.to_string(),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(FlinkRestError::Refused {
                    what,
                    status: 504,
                    message: "no savepoint in time".to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `PATCH /jobs/:id?mode=cancel`.
    pub async fn cancel(&self, job_id: &str) -> Result<(), FlinkRestError> {
        let request = self
            .http
            .patch(self.url(&format!("/jobs/{job_id}?mode=cancel")))
            .timeout(QUERY_TIMEOUT);
        self.send(&format!("cancelling job {job_id}"), request)
            .await
            .map(drop)
    }
}

/// Flink's answer while a job's tasks are still being deployed: a savepoint can follow shortly.
fn tasks_not_running(message: &str) -> bool {
    message.contains("is not being executed at the moment")
        || message.contains("Not all required tasks are currently running")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::fake_flink;
    use super::*;

    #[test]
    fn deploying_tasks_are_told_apart_from_other_savepoint_failures() {
        assert!(tasks_not_running("java.util.concurrent.CompletionException: org.apache.flink.runtime.checkpoint.CheckpointException: Checkpoint triggering task Source: sequence (1/1) of job e84 is not being executed at the moment. Aborting checkpoint. Failure reason: Not all required tasks are currently running."));
        assert!(!tasks_not_running(
            "java.io.IOException: No space left on device"
        ));
    }

    /// Flink's answer to a stop without a `request-id` is a broken answer, reported at once:
    /// polling a savepoint status without a trigger id could only run into the timeout.
    #[tokio::test]
    async fn a_stop_answer_without_request_id_is_a_decode_error_at_once() {
        let endpoint = fake_flink(|line| {
            let body = if line.starts_with("POST ") {
                r#"{"unexpected": true}"#
            } else {
                r#"{"status": {"id": "IN_PROGRESS"}}"#
            };
            ("200 OK", body)
        })
        .await;
        let rest = FlinkRest::new(&endpoint).unwrap();
        let started = std::time::Instant::now();
        let err = rest
            .stop_with_savepoint("j1", "/savepoints", Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{err}");
        match err {
            FlinkRestError::Decode { message, .. } => {
                assert!(message.contains("request-id"), "{message}")
            }
            other => panic!("not a decode error: {other}"),
        }
    }
}
