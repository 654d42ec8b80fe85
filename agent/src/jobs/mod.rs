//! Declared jobs that come back by themselves.
//!
//! `jobs deploy` uploads a jar to Flink, runs it and records the deployment locally and in
//! object storage. Without HA a restarted JobManager forgets its jobs, so after every
//! `SupervisorEvent::JobManagerHealthy` the daemon calls [`Jobs::resubmit_all`]: each declared,
//! not stopped job that Flink does not know is run again from its newest complete checkpoint —
//! the local one when it is at least as new as the newest durable remote one, else the newest
//! remote one that verifies, or the local one once every newer remote one proved corrupt (one
//! order for both: [`restore_candidates`]; see `checkpoints::restore`). A node that lost its
//! disk first gets the records and jars back from object storage ([`Jobs::recover_records`]).
//!
//! `jobs stop` is a declaration too: it is recorded in object storage before Flink is asked
//! for the savepoint, so neither a JobManager restart nor a replacement node brings the job
//! back; `jobs start` withdraws it and runs the job from that savepoint.

mod cluster;
mod error;
mod human;
mod manager;
pub mod record;
mod resubmit;
mod service;

pub use cluster::ha_job_id;
pub use error::JobError;
pub use human::{render_human, NO_JOBS};
pub use manager::{DeployRequest, JobStatus, Jobs, StopOutcome};
pub use record::{JobRecord, RestoredFrom, RunState};
pub use resubmit::{choose_restore, restore_candidates, PlannedRestore, RestoreChoice};
pub use service::{ReconfigureError, Service, Settings};

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long the agent lets a job operation take before answering that it did not finish: one
/// may queue behind a re-submission (which may download a checkpoint), and a stop is a
/// savepoint (up to 120 s) then maybe a cancel (10 s).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

/// What long job work runs now (a restore downloading a checkpoint), for `status` and
/// systemd's `STATUS=`; the daemon also extends systemd's start timeout while it runs.
#[derive(Debug, Clone, Default)]
pub struct Phase(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Phase {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the phase until the guard drops.
    pub fn enter(&self, what: String) -> PhaseGuard<'_> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
        PhaseGuard(self)
    }
}

/// Clears the [`Phase`] it was entered with.
#[derive(Debug)]
pub struct PhaseGuard<'a>(&'a Phase);

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What a job request asks for (`/v1/jobs...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Every declared job with Flink's and the sync's view of it.
    List,
    Deploy(DeployRequest),
    /// Savepoint, else cancel; the job is no longer re-submitted.
    Stop(String),
    /// A stopped job runs again from its savepoint (else its newest checkpoint).
    Start(String),
    /// Forget the job and its remote checkpoints.
    Delete(String),
}

/// What a job command answers, in the JSON shapes the API has always used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    List(Vec<JobStatus>),
    Deployed(JobStatus),
    Stopped(StopOutcome),
    Deleted {
        deleted: String,
    },
    /// Where the job was restored from; `null` when it started fresh.
    Started(Option<RestoredFrom>),
}
