//! A small client for the parts of Flink's REST API the agent needs: `/overview` (JobManager
//! health and status figures) and `/taskmanagers` (TaskManager registration). Timeouts are short
//! because these calls are health probes: a JobManager that cannot answer in seconds is unhealthy.

use crate::status::FlinkOverview;
use serde::Deserialize;
use std::time::Duration;

/// Connecting to loopback is immediate or refused; anything slower is a hung JobManager.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum FlinkRestError {
    #[error("cannot build the HTTP client for Flink's REST API: {0}")]
    Client(#[source] reqwest::Error),
    #[error("Flink's REST API at {url} did not answer: {source}; is the JobManager running and `rest.port` the port in the rendered config?")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Flink's REST API at {url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("unexpected answer from Flink's REST API at {url}: {source}; is this Flink 1.x/2.x?")]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// One registered TaskManager, as listed by `GET /taskmanagers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskManagerInfo {
    /// The resource id; the supervisor sets it per launch (`taskmanager.resource-id`).
    pub id: String,
    pub path: String,
    pub slots_number: u32,
    pub free_slots: u32,
}

#[derive(Debug, Deserialize)]
struct TaskManagers {
    taskmanagers: Vec<TaskManagerInfo>,
}

/// A client for one JobManager's REST endpoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FlinkRest {
    base: String,
    http: reqwest::Client,
}

impl FlinkRest {
    /// `rest_url` like `http://127.0.0.1:8081`.
    pub fn new(rest_url: &str) -> Result<Self, FlinkRestError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // The JobManager is local; a proxy from the environment must not be used.
            .no_proxy()
            .build()
            .map_err(FlinkRestError::Client)?;
        Ok(Self {
            base: rest_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// `GET /overview`: answers once the JobManager's dispatcher is up.
    pub async fn overview(&self) -> Result<FlinkOverview, FlinkRestError> {
        self.get("/overview").await
    }

    /// `GET /taskmanagers`: the TaskManagers registered with the ResourceManager.
    pub async fn taskmanagers(&self) -> Result<Vec<TaskManagerInfo>, FlinkRestError> {
        let list: TaskManagers = self.get("/taskmanagers").await?;
        Ok(list.taskmanagers)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, FlinkRestError> {
        let url = format!("{}{path}", self.base);
        let response =
            self.http
                .get(&url)
                .send()
                .await
                .map_err(|source| FlinkRestError::Unreachable {
                    url: url.clone(),
                    source,
                })?;
        let status = response.status();
        if !status.is_success() {
            return Err(FlinkRestError::Status { url, status });
        }
        response
            .json()
            .await
            .map_err(|source| FlinkRestError::Decode { url, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taskmanager_listing_of_flink_2_parses() {
        let body = r#"{"taskmanagers":[{"id":"flink-agent-tm-7","path":"pekko.tcp://flink@127.0.0.1:16124/user/rpc/taskmanager_0","dataPort":36913,"jmxPort":-1,"timeSinceLastHeartbeat":0,"slotsNumber":2,"freeSlots":1,"totalResource":{"cpuCores":1.0}}]}"#;
        let list: TaskManagers = serde_json::from_str(body).expect("parses");
        assert_eq!(list.taskmanagers[0].id, "flink-agent-tm-7");
        assert_eq!(list.taskmanagers[0].slots_number, 2);
        assert_eq!(list.taskmanagers[0].free_slots, 1);
    }

    #[test]
    fn overview_of_flink_2_parses() {
        let body = r#"{"taskmanagers":1,"slots-total":1,"slots-available":1,"jobs-running":0,"jobs-finished":0,"jobs-cancelled":0,"jobs-failed":0,"flink-version":"2.3.0","flink-commit":"c0f8d1a"}"#;
        let o: FlinkOverview = serde_json::from_str(body).expect("parses");
        assert_eq!((o.taskmanagers, o.slots_total), (1, 1));
        assert_eq!(o.flink_version, "2.3.0");
    }
}
