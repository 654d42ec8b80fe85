//! Deploy, stop, delete and list declared jobs (re-submission is in `resubmit.rs`). Side
//! effects (Flink REST, files, object store) are here.

use super::error::{io, store, JobError};
use super::record::{self, validate_name, JobRecord, LocalRecords, RestoredFrom, RunState};
use crate::checkpoints::{JobNames, Remote, SyncStatus};
use crate::flinkrest::{FlinkRest, RunRequest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `jobs deploy` / `POST /v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub name: String,
    pub jar: PathBuf,
    pub entry_class: Option<String>,
    pub parallelism: Option<u32>,
    #[serde(default)]
    pub args: Vec<String>,
}

/// One declared job as `jobs` / `status` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub flink_job_id: Option<String>,
    /// Flink's state (`RUNNING`, ...), `STOPPED` when stopped on purpose, `UNKNOWN` when the
    /// JobManager does not answer or does not know the job.
    pub state: String,
    pub last_completed_checkpoint: Option<u64>,
    pub last_durable_checkpoint: Option<u64>,
    pub restored_from: Option<RestoredFrom>,
}

/// What `jobs stop` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopOutcome {
    /// The Flink job that was stopped.
    pub flink_job_id: String,
    pub savepoint: Option<String>,
    /// Why the savepoint failed and the job was cancelled instead (its newest retained
    /// checkpoint stays usable).
    pub cancelled_because: Option<String>,
    /// It was stopped before: nothing was asked of Flink this time.
    pub already_stopped: bool,
    /// Set when the stop could not be recorded in object storage: what that means and how
    /// to fix it.
    pub warning: Option<String>,
}

/// The job side of the agent.
#[derive(Debug, Clone)]
pub struct Jobs {
    pub(super) records: LocalRecords,
    pub(super) remote: Remote,
    pub(super) rest: FlinkRest,
    pub(super) names: JobNames,
    pub(super) checkpoints_dir: PathBuf,
    pub(super) restore_root: PathBuf,
    pub(super) savepoint_dir: PathBuf,
}

impl Jobs {
    /// `flink_data_dir` holds Flink's `checkpoints/` and `savepoints/` (as rendered) and the
    /// agent's `restore/` downloads.
    pub fn new(
        state_dir: &std::path::Path,
        flink_data_dir: &std::path::Path,
        remote: Remote,
        rest: FlinkRest,
        names: JobNames,
    ) -> Self {
        let jobs = Self {
            records: LocalRecords::new(state_dir),
            remote,
            rest,
            names,
            checkpoints_dir: flink_data_dir.join("checkpoints"),
            restore_root: flink_data_dir.join("restore"),
            savepoint_dir: flink_data_dir.join("savepoints"),
        };
        jobs.register_names();
        jobs
    }

    /// Tells the sync engine which Flink job ids belong to which declared job.
    fn register_names(&self) {
        for name in self.records.names().unwrap_or_default() {
            for id in self
                .records
                .run_state(&name)
                .unwrap_or_default()
                .flink_job_ids
            {
                self.names.set(&id, &name);
            }
        }
    }

    /// Deploys a new job. Nothing is left behind on failure: the remote record and the jar in
    /// Flink are removed again, and the local record is written only after Flink accepted it.
    pub async fn deploy(&self, req: &DeployRequest) -> Result<JobStatus, JobError> {
        validate_name(&req.name).map_err(JobError::InvalidName)?;
        let jar = std::fs::read(&req.jar).map_err(|source| JobError::JarUnreadable {
            path: req.jar.display().to_string(),
            source,
        })?;
        if !jar.starts_with(b"PK\x03\x04") {
            return Err(JobError::NotAJar {
                path: req.jar.display().to_string(),
            });
        }
        let exists_remotely = self
            .remote
            .store
            .head(&record::remote_record(&self.remote, &req.name))
            .await
            .is_ok();
        if exists_remotely
            || self
                .records
                .read(&req.name)
                .map_err(io("reading job records"))?
                .is_some()
        {
            return Err(JobError::Exists {
                name: req.name.clone(),
            });
        }
        let record = JobRecord {
            name: req.name.clone(),
            jar_name: req.jar.file_name().map_or_else(
                || format!("{}.jar", req.name),
                |n| n.to_string_lossy().into_owned(),
            ),
            jar_sha256: hex::encode(Sha256::digest(&jar)),
            entry_class: req.entry_class.clone(),
            parallelism: req.parallelism,
            args: req.args.clone(),
            flink_config: Default::default(),
            deployed_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        if let Err(e) = record::put_remote(&self.remote, &record, jar.clone()).await {
            let _ = record::delete_remote(&self.remote, &record.name).await;
            return Err(store(format!("recording job `{}`", record.name))(e));
        }
        let flink_job_id = match self.submit(&record, jar.clone(), None).await {
            Ok(id) => id,
            Err(e) => {
                let _ = record::delete_remote(&self.remote, &record.name).await;
                return Err(e);
            }
        };
        self.records
            .write(&record, &jar)
            .map_err(io("writing the job record"))?;
        let run = RunState {
            flink_job_ids: vec![flink_job_id.clone()],
            ..Default::default()
        };
        self.records
            .write_run_state(&record.name, &run)
            .map_err(io("writing the job state"))?;
        self.names.set(&flink_job_id, &record.name);
        log::info!("job {}: deployed as Flink job {flink_job_id}", record.name);
        Ok(JobStatus {
            name: record.name,
            flink_job_id: Some(flink_job_id),
            state: "SUBMITTED".into(),
            ..Default::default()
        })
    }

    /// Uploads the jar, runs it (from `savepoint` if given), deletes the uploaded jar.
    pub(super) async fn submit(
        &self,
        record: &JobRecord,
        jar: Vec<u8>,
        savepoint: Option<String>,
    ) -> Result<String, JobError> {
        let jar_id = self.rest.upload_jar(&record.jar_name, jar).await?;
        let run = RunRequest {
            entry_class: record.entry_class.clone(),
            parallelism: record.parallelism,
            args: record.args.clone(),
            savepoint_path: savepoint,
            flink_config: record.flink_config.clone(),
        };
        let result = self.rest.run_jar(&jar_id, &run).await;
        if let Err(e) = self.rest.delete_jar(&jar_id).await {
            log::warn!(
                "job {}: could not delete the uploaded jar {jar_id}: {e}",
                record.name
            );
        }
        Ok(result?)
    }

    /// Stops with a savepoint; if that fails, cancels (the newest retained checkpoint stays).
    /// Idempotent: stopping a stopped job only records the stop in object storage again.
    pub async fn stop(&self, name: &str) -> Result<StopOutcome, JobError> {
        let mut run = self.known(name)?;
        let Some(id) = run.flink_job_ids.last().cloned() else {
            return Err(JobError::Unknown { name: name.into() });
        };
        // The intent first, where a replacement node will see it: should the savepoint or the
        // cancel fail below, the job is still declared stopped. An unreachable store must not
        // keep an operator from stopping a job, though: that is reported instead.
        let warning = record::set_stopped_remote(&self.remote, name, true)
            .await
            .err()
            .map(|e| {
                log::warn!("job {name}: stop not recorded in {}: {e}", self.remote.url);
                format!(
                    "the stop is not recorded in {} ({e}): a replacement node would start the job again; run `flink-agent jobs stop {name}` again once the store is reachable",
                    self.remote.url
                )
            });
        if run.stopped {
            return Ok(StopOutcome {
                flink_job_id: id,
                savepoint: run.savepoint,
                cancelled_because: None,
                already_stopped: true,
                warning,
            });
        }
        let target = self.savepoint_dir.display().to_string();
        let outcome = match self
            .rest
            .stop_with_savepoint(&id, &target, Duration::from_secs(120))
            .await
        {
            Ok(path) => StopOutcome {
                flink_job_id: id.clone(),
                savepoint: Some(path),
                cancelled_because: None,
                already_stopped: false,
                warning,
            },
            Err(e) => {
                log::warn!("job {name}: savepoint failed ({e}); cancelling instead");
                self.rest.cancel(&id).await?;
                StopOutcome {
                    flink_job_id: id.clone(),
                    savepoint: None,
                    cancelled_because: Some(e.to_string()),
                    already_stopped: false,
                    warning,
                }
            }
        };
        run.stopped = true;
        run.savepoint = outcome.savepoint.clone();
        self.records
            .write_run_state(name, &run)
            .map_err(io("writing the job state"))?;
        Ok(outcome)
    }

    /// Forgetting a job, first half: cancels it if it runs and removes everything of it on
    /// this node. The caller then stops the sync engine from uploading more of it and calls
    /// [`Jobs::delete_remote`].
    pub async fn delete_local(&self, name: &str) -> Result<(), JobError> {
        let run = self.known(name)?;
        if let (false, Some(id)) = (run.stopped, run.flink_job_ids.last()) {
            if let Err(e) = self.rest.cancel(id).await {
                log::warn!("job {name}: cancel before delete failed: {e}");
            }
        }
        // Flink retains a cancelled job's checkpoints; a forgotten job's must not be uploaded.
        for id in &run.flink_job_ids {
            match std::fs::remove_dir_all(self.checkpoints_dir.join(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(format!("removing the local checkpoints of `{name}`"))(e))
                }
                _ => {}
            }
        }
        crate::checkpoints::prune_restored(&self.restore_root, name, None)
            .map_err(io(format!("removing the restored checkpoints of `{name}`")))?;
        self.records
            .remove(name)
            .map_err(io("removing the job record"))
    }

    /// Forgetting a job, second half: its record, jar and checkpoints in object storage.
    pub async fn delete_remote(&self, name: &str) -> Result<(), JobError> {
        record::delete_remote(&self.remote, name)
            .await
            .map_err(store(format!("deleting job `{name}`")))?;
        let prefix = crate::checkpoints::layout::job_prefix(&self.remote.root, name);
        let keys: Vec<_> =
            futures::TryStreamExt::try_collect(self.remote.store.list(Some(&prefix)))
                .await
                .map_err(store(format!("listing the checkpoints of `{name}`")))?;
        for meta in keys {
            let _ = self.remote.store.delete(&meta.location).await;
        }
        Ok(())
    }

    pub(super) fn known(&self, name: &str) -> Result<RunState, JobError> {
        if self
            .records
            .read(name)
            .map_err(io("reading a job record"))?
            .is_none()
        {
            return Err(JobError::Unknown { name: name.into() });
        }
        self.records
            .run_state(name)
            .map_err(io("reading a job state"))
    }

    /// Every declared job with Flink's view of it and the sync engine's.
    pub async fn list(&self, sync: &SyncStatus) -> Result<Vec<JobStatus>, JobError> {
        let flink = self.rest.jobs().await.ok();
        let mut out = Vec::new();
        for name in self.records.names().map_err(io("listing job records"))? {
            let run = self
                .records
                .run_state(&name)
                .map_err(io("reading a job state"))?;
            let current = run.flink_job_ids.last().cloned();
            let state = if run.stopped {
                "STOPPED".to_string()
            } else {
                flink
                    .iter()
                    .flatten()
                    .find(|j| Some(&j.jid) == current.as_ref())
                    .map_or_else(|| "UNKNOWN".to_string(), |j| j.state.clone())
            };
            let last_completed = match &current {
                Some(id) if state != "UNKNOWN" => self
                    .rest
                    .checkpoints(id)
                    .await
                    .ok()
                    .and_then(|c| c.last_completed),
                _ => None,
            };
            out.push(JobStatus {
                last_durable_checkpoint: sync.jobs.get(&name).and_then(|j| j.last_durable),
                name,
                flink_job_id: current,
                state,
                last_completed_checkpoint: last_completed,
                restored_from: run.restored_from,
            });
        }
        Ok(out)
    }
}
