//! Deploy, re-submit, stop and delete declared jobs. Side effects (Flink REST, files, object
//! store) are here; the one decision — where to restore from — is the pure [`choose_restore`].

use super::record::{self, validate_name, JobRecord, LocalRecords, RestoredFrom, RunState};
use super::rest::{JobsRest, RestError, RunRequest};
use crate::checkpoints::local::scan_complete;
use crate::checkpoints::restore::{candidates, restore_newest, RestoreError};
use crate::checkpoints::{JobNames, Remote, SyncStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    InvalidName(String),
    #[error("jar {path} cannot be read: {source}; give the path of an existing .jar file")]
    JarUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a jar (no zip header); build the job with `jar` or Maven and pass the .jar"
    )]
    NotAJar { path: String },
    #[error("a job named `{name}` is already deployed; `flink-agent jobs delete {name}` first or choose another name")]
    Exists { name: String },
    #[error("no job named `{name}` is deployed; `flink-agent jobs` lists them")]
    Unknown { name: String },
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error("{what} in object storage failed: {source}")]
    Store {
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> JobError {
    let what = what.into();
    move |source| JobError::Io { what, source }
}

fn store(what: impl Into<String>) -> impl FnOnce(object_store::Error) -> JobError {
    let what = what.into();
    move |source| JobError::Store { what, source }
}

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
    pub savepoint: Option<String>,
    /// Why the savepoint failed and the job was cancelled instead (its newest retained
    /// checkpoint stays usable).
    pub cancelled_because: Option<String>,
}

/// Where a re-submission restores from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreChoice {
    /// Flink's local checkpoint `id`.
    Local(u64),
    /// The newest durable remote checkpoint (downloaded and verified first).
    Remote(u64),
    /// No checkpoint anywhere: start fresh.
    Fresh,
}

/// Local wins when it is at least as new as the newest durable remote checkpoint: it needs no
/// download and it is never older than what was uploaded from it.
pub fn choose_restore(local: Option<u64>, remote: Option<u64>) -> RestoreChoice {
    match (local, remote) {
        (Some(l), Some(r)) if r > l => RestoreChoice::Remote(r),
        (Some(l), _) => RestoreChoice::Local(l),
        (None, Some(r)) => RestoreChoice::Remote(r),
        (None, None) => RestoreChoice::Fresh,
    }
}

/// Flink job ids remembered per job: enough to find local checkpoints of recent runs.
const KEEP_JOB_IDS: usize = 5;
const TERMINAL: &[&str] = &["FAILED", "CANCELED", "FINISHED"];

/// The job side of the agent.
#[derive(Debug, Clone)]
pub struct Jobs {
    records: LocalRecords,
    remote: Remote,
    rest: JobsRest,
    names: JobNames,
    checkpoints_dir: PathBuf,
    restore_root: PathBuf,
    savepoint_dir: PathBuf,
}

impl Jobs {
    /// `flink_data_dir` holds Flink's `checkpoints/` and `savepoints/` (as rendered) and the
    /// agent's `restore/` downloads.
    pub fn new(
        state_dir: &std::path::Path,
        flink_data_dir: &std::path::Path,
        remote: Remote,
        rest: JobsRest,
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
    async fn submit(
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

    /// Node loss: when no job is recorded locally, takes the records and jars from object
    /// storage. Returns the names recovered.
    pub async fn recover_records(&self) -> Result<Vec<String>, JobError> {
        if !self
            .records
            .names()
            .map_err(io("listing job records"))?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        let fetched = record::fetch_remote(&self.remote)
            .await
            .map_err(store("reading job records"))?;
        let mut names = Vec::new();
        for (record, jar) in fetched {
            self.records
                .write(&record, &jar)
                .map_err(io("writing a recovered job record"))?;
            log::info!(
                "job {}: record recovered from {}",
                record.name,
                self.remote.url
            );
            names.push(record.name);
        }
        Ok(names)
    }

    /// Re-submits every declared, not stopped job Flink does not run. Called after each
    /// JobManager start; errors are per job so one bad job does not hold back the others.
    pub async fn resubmit_all(
        &self,
    ) -> Result<Vec<(String, Result<Option<RestoredFrom>, JobError>)>, JobError> {
        if let Err(e) = self.recover_records().await {
            log::error!("cannot recover job records from object storage: {e}");
        }
        let names = self.records.names().map_err(io("listing job records"))?;
        let known = self.rest.jobs().await?;
        let mut out = Vec::new();
        for name in names {
            let result = self.resubmit(&name, &known).await;
            match &result {
                Ok(Some(from)) => log::info!(
                    "job {name}: re-submitted from checkpoint {} ({})",
                    from.checkpoint_id,
                    from.source
                ),
                Ok(None) => {}
                Err(e) => log::error!("job {name}: could not re-submit: {e}"),
            }
            out.push((name, result));
        }
        Ok(out)
    }

    async fn resubmit(
        &self,
        name: &str,
        known: &[super::rest::JobOverview],
    ) -> Result<Option<RestoredFrom>, JobError> {
        let Some(record) = self
            .records
            .read(name)
            .map_err(io("reading a job record"))?
        else {
            return Ok(None);
        };
        let mut run = self
            .records
            .run_state(name)
            .map_err(io("reading a job state"))?;
        let alive = known.iter().any(|j| {
            run.flink_job_ids.last() == Some(&j.jid) && !TERMINAL.contains(&j.state.as_str())
        });
        if run.stopped || alive {
            return Ok(None);
        }
        let local = self.newest_local(&run);
        let remote = candidates(&self.remote, name).await?.first().copied();
        let from = match choose_restore(local.as_ref().map(|(id, _)| *id), remote) {
            RestoreChoice::Local(id) => local.map(|(_, dir)| RestoredFrom {
                checkpoint_id: id,
                source: "local".into(),
                path: dir.display().to_string(),
            }),
            RestoreChoice::Remote(_) => {
                match restore_newest(&self.remote, name, &self.restore_root, 8).await? {
                    Some(r) => Some(RestoredFrom {
                        checkpoint_id: r.checkpoint_id,
                        source: "remote".into(),
                        path: r.dir.display().to_string(),
                    }),
                    // Every remote one was corrupt: the local one, if any, is still better than nothing.
                    None => local.map(|(id, dir)| RestoredFrom {
                        checkpoint_id: id,
                        source: "local".into(),
                        path: dir.display().to_string(),
                    }),
                }
            }
            RestoreChoice::Fresh => None,
        };
        let jar = std::fs::read(self.records.jar_path(name))
            .map_err(io(format!("reading the jar of job `{name}`")))?;
        let flink_job_id = self
            .submit(&record, jar, from.as_ref().map(|f| f.path.clone()))
            .await?;
        self.names.set(&flink_job_id, name);
        run.flink_job_ids.push(flink_job_id);
        let excess = run.flink_job_ids.len().saturating_sub(KEEP_JOB_IDS);
        // Flink retains checkpoints of jobs lost with their JobManager forever; the agent
        // forgets all but the last few runs, and their local checkpoints with them.
        for old in run.flink_job_ids.drain(..excess) {
            let dir = self.checkpoints_dir.join(&old);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!(
                        "job {name}: cannot remove old checkpoints {}: {e}",
                        dir.display()
                    );
                }
            }
        }
        run.restored_from = from.clone();
        self.records
            .write_run_state(name, &run)
            .map_err(io("writing the job state"))?;
        Ok(from)
    }

    /// What [`Jobs::resubmit_all`] would restore each declared job from, touching nothing
    /// (`flink-agent restore --dry-run`). Jobs only recorded remotely (node loss) count too.
    pub async fn plan(&self) -> Result<Vec<(String, RestoreChoice)>, JobError> {
        let mut names = self.records.names().map_err(io("listing job records"))?;
        let jobs = self.remote.root.child("jobs");
        let listing = self
            .remote
            .store
            .list_with_delimiter(Some(&jobs))
            .await
            .map_err(store("listing jobs"))?;
        for prefix in listing.common_prefixes {
            let name = prefix.filename().unwrap_or_default().to_string();
            let recorded = self
                .remote
                .store
                .head(&record::remote_record(&self.remote, &name))
                .await
                .is_ok();
            if recorded && !names.contains(&name) {
                names.push(name);
            }
        }
        let mut out = Vec::new();
        for name in names {
            let run = self
                .records
                .run_state(&name)
                .map_err(io("reading a job state"))?;
            let local = self.newest_local(&run).map(|(id, _)| id);
            let remote = candidates(&self.remote, &name).await?.first().copied();
            out.push((name, choose_restore(local, remote)));
        }
        Ok(out)
    }

    /// The newest complete local checkpoint of any of the job's recent Flink job ids.
    fn newest_local(&self, run: &RunState) -> Option<(u64, PathBuf)> {
        scan_complete(&self.checkpoints_dir)
            .ok()?
            .into_iter()
            .filter(|c| run.flink_job_ids.contains(&c.flink_job_id))
            .max_by_key(|c| c.id)
            .map(|c| (c.id, c.dir))
    }

    /// Stops with a savepoint; if that fails, cancels (the newest retained checkpoint stays).
    pub async fn stop(&self, name: &str) -> Result<StopOutcome, JobError> {
        let mut run = self.known(name)?;
        let Some(id) = run.flink_job_ids.last().cloned() else {
            return Err(JobError::Unknown { name: name.into() });
        };
        let target = self.savepoint_dir.display().to_string();
        let outcome = match self
            .rest
            .stop_with_savepoint(&id, &target, Duration::from_secs(120))
            .await
        {
            Ok(path) => StopOutcome {
                savepoint: Some(path),
                cancelled_because: None,
            },
            Err(e) => {
                log::warn!("job {name}: savepoint failed ({e}); cancelling instead");
                self.rest.cancel(&id).await?;
                StopOutcome {
                    savepoint: None,
                    cancelled_because: Some(e.to_string()),
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

    /// Forgets a job: cancels it if it runs, removes its records and its remote checkpoints.
    pub async fn delete(&self, name: &str) -> Result<(), JobError> {
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
        self.records
            .remove(name)
            .map_err(io("removing the job record"))?;
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

    fn known(&self, name: &str) -> Result<RunState, JobError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_prefers_local_unless_remote_is_newer() {
        assert_eq!(choose_restore(Some(7), Some(7)), RestoreChoice::Local(7));
        assert_eq!(choose_restore(Some(7), Some(5)), RestoreChoice::Local(7));
        assert_eq!(choose_restore(Some(5), Some(7)), RestoreChoice::Remote(7));
        assert_eq!(choose_restore(None, Some(3)), RestoreChoice::Remote(3));
        assert_eq!(choose_restore(None, None), RestoreChoice::Fresh);
    }
}
