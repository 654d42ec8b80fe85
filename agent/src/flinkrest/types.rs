//! What Flink's REST API answers, in the shapes the agent reads (Flink 1.x and 2.x agree on
//! these), and how its error bodies are turned into one sentence.

use serde::{Deserialize, Serialize};

/// Flink's `GET /overview`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FlinkOverview {
    pub taskmanagers: u32,
    pub slots_total: u32,
    pub slots_available: u32,
    pub jobs_running: u32,
    pub jobs_finished: u32,
    pub jobs_cancelled: u32,
    pub jobs_failed: u32,
    pub flink_version: String,
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
    /// Its memory model (Flink >= 1.12); the task heap holds HashMap-backend state.
    #[serde(default)]
    pub memory_configuration: Option<TaskManagerMemory>,
}

/// The part of a TaskManager's `memoryConfiguration` the agent reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskManagerMemory {
    /// Bytes of heap for the tasks (their state, with the HashMap backend).
    pub task_heap: u64,
}

#[derive(Debug, Deserialize)]
pub(super) struct TaskManagers {
    pub taskmanagers: Vec<TaskManagerInfo>,
}

/// `GET /jobs/overview` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobOverview {
    pub jid: String,
    pub name: String,
    pub state: String,
}

/// The part of `GET /jobs/:id/checkpoints` the agent shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub last_completed: Option<u64>,
    /// When Flink completed it (its last acknowledgement), Unix seconds.
    pub last_completed_at: Option<u64>,
    /// Its full state size in bytes (self-contained HashMap checkpoints).
    pub state_bytes: Option<u64>,
}

/// Flink's reason for refusing a request. Its error bodies are `{"errors": [...]}` where an
/// entry may be a whole stack trace; the useful part is the first line and the innermost
/// `Caused by:` (for a refused job, the job's own exception from its `main`).
pub(super) fn error_reason(body: &str) -> String {
    let Some(errors) = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
    else {
        return body.trim().to_string();
    };
    let texts: Vec<&str> = errors.iter().filter_map(|e| e.as_str()).collect();
    let first = texts
        .iter()
        .flat_map(|t| t.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no reason given");
    let root = texts
        .iter()
        .rev()
        .flat_map(|t| t.lines().rev())
        .find_map(|l| l.trim().strip_prefix("Caused by: "));
    match root {
        Some(root) if !first.contains(root) => format!("{first} (root cause: {root})"),
        _ => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taskmanager_listing_of_flink_2_parses() {
        let body = r#"{"taskmanagers":[{"id":"flink-agent-tm-7","path":"pekko.tcp://flink@127.0.0.1:16124/user/rpc/taskmanager_0","dataPort":36913,"jmxPort":-1,"timeSinceLastHeartbeat":0,"slotsNumber":2,"freeSlots":1,"totalResource":{"cpuCores":1.0},"memoryConfiguration":{"frameworkHeap":134217728,"taskHeap":939524096,"frameworkOffHeap":134217728}}]}"#;
        let list: TaskManagers = serde_json::from_str(body).expect("parses");
        assert_eq!(list.taskmanagers[0].id, "flink-agent-tm-7");
        assert_eq!(list.taskmanagers[0].slots_number, 2);
        assert_eq!(list.taskmanagers[0].free_slots, 1);
        let memory = list.taskmanagers[0].memory_configuration.as_ref();
        assert_eq!(memory.map(|m| m.task_heap), Some(939_524_096));
    }

    #[test]
    fn overview_of_flink_2_parses() {
        let body = r#"{"taskmanagers":1,"slots-total":1,"slots-available":1,"jobs-running":0,"jobs-finished":0,"jobs-cancelled":0,"jobs-failed":0,"flink-version":"2.3.0","flink-commit":"c0f8d1a"}"#;
        let o: FlinkOverview = serde_json::from_str(body).expect("parses");
        assert_eq!((o.taskmanagers, o.slots_total), (1, 1));
        assert_eq!(o.flink_version, "2.3.0");
    }

    #[test]
    fn a_refused_job_reports_its_own_exception_as_the_root_cause() {
        let body = r#"{"errors":["org.apache.flink.runtime.rest.handler.RestHandlerException: Could not execute application.\n\tat org.apache.flink...\nCaused by: org.apache.flink.client.program.ProgramInvocationException: The main method caused an error: boom\n\tat ...\nCaused by: java.lang.IllegalStateException: boom\n\tat Job.main(Job.java:3)"]}"#;
        assert_eq!(
            error_reason(body),
            "org.apache.flink.runtime.rest.handler.RestHandlerException: Could not execute application. (root cause: java.lang.IllegalStateException: boom)"
        );
    }

    #[test]
    fn a_short_error_is_its_first_line_and_a_non_json_body_is_kept() {
        assert_eq!(
            error_reason(r#"{"errors":["Job could not be found."]}"#),
            "Job could not be found."
        );
        assert_eq!(error_reason("Bad gateway\n"), "Bad gateway");
    }
}
