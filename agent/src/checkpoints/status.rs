//! What the sync engine reports (`status`): per job the newest durable checkpoint, what is
//! still waiting for upload, and an alert once uploads keep failing.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Object store URL (no secrets).
    pub url: String,
    /// Staged checkpoints not yet durable, in upload order.
    pub pending: Vec<PendingUpload>,
    pub jobs: BTreeMap<String, JobSync>,
    /// Failed upload attempts since the last success.
    pub consecutive_failures: u32,
    /// Set after `checkpoints.alert_after_failures` consecutive failures; cleared by a success.
    pub alert: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpload {
    pub job: String,
    pub checkpoint_id: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSync {
    /// Newest checkpoint with a manifest in object storage.
    pub last_durable: Option<u64>,
    /// Unix seconds when it became durable (as seen by this agent).
    pub last_durable_at: Option<u64>,
    /// Unix seconds when Flink completed it (its manifest's `completed_at`): the recovery point
    /// a node loss would fall back to. Known for checkpoints this agent uploaded.
    #[serde(default)]
    pub last_durable_completed_at: Option<u64>,
    /// Its size: the bytes of every file in its manifest.
    #[serde(default)]
    pub last_durable_bytes: Option<u64>,
    /// Complete checkpoints currently kept remotely.
    pub remote: Vec<u64>,
}
