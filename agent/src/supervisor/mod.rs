//! Supervises the local JobManager and TaskManager: start, health, restart with back-off and a
//! failure budget, graceful stop. (Being written; see the module files.)

/// Which processes an operation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    JobManager,
    TaskManager,
    All,
}
