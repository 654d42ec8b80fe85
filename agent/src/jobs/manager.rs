//! Deploy, stop, delete and list declared jobs (re-submission is in `resubmit.rs`). Side
//! effects (Flink REST, files, object store) are here.

use super::error::{io, store, JobError};
use super::record::{self, validate_name, JobRecord, LocalRecords, RestoredFrom, RunState};
use crate::checkpoints::{JobNames, Remote, SyncStatus, Withdrawn};
use crate::flinkrest::{FlinkRest, RunRequest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Passes over a deleted job's objects before the leftovers are reported, and the pause after
/// the first failed one (doubled after each): enough to ride out a store's brief hiccup while
/// `jobs delete` still answers within seconds.
const DELETE_ATTEMPTS: u32 = 3;
const DELETE_PAUSE: Duration = Duration::from_millis(250);

/// `jobs deploy` / `POST /v1/jobs`. Unknown fields are refused: a misspelt option would
/// otherwise deploy the job without it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// When Flink completed it, Unix seconds.
    #[serde(default)]
    pub last_completed_at: Option<u64>,
    /// Its full size: with the HashMap backend, about what the job's state takes on the
    /// TaskManager's heap.
    #[serde(default)]
    pub state_bytes: Option<u64>,
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
    pub(super) phase: super::Phase,
    /// Where restores report the damaged checkpoints they withdrew from the store (the sync
    /// engine's, see [`Jobs::with_withdrawn`]).
    pub(super) withdrawn: Withdrawn,
    /// Three-node clusters (see `cluster`).
    pub(super) ha: Option<super::cluster::Ha>,
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
        ha: Option<super::cluster::Ha>,
    ) -> Self {
        let jobs = Self {
            records: LocalRecords::new(state_dir),
            remote,
            rest,
            names,
            checkpoints_dir: flink_data_dir.join("checkpoints"),
            restore_root: flink_data_dir.join("restore"),
            savepoint_dir: flink_data_dir.join("savepoints"),
            phase: super::Phase::default(),
            withdrawn: Withdrawn::default(),
            ha,
        };
        jobs.register_names();
        jobs
    }

    /// Tells the sync engine which Flink job ids belong to which declared job. The ids are
    /// only in each job's run state: one that cannot be read leaves its Flink jobs unmapped,
    /// so their checkpoints upload under `jobs/<flink job id>/`, where no restore of the job
    /// looks. That is logged with the file and the fix; the other jobs are still mapped.
    fn register_names(&self) {
        let names = match self.records.names() {
            Ok(names) => names,
            Err(e) => {
                log::error!(
                    "cannot list the declared jobs in {} ({e}): checkpoints of their Flink jobs upload under jobs/<flink job id>/ instead of jobs/<name>/; make that directory readable and restart the agent",
                    self.records.dir().display()
                );
                return;
            }
        };
        for name in names {
            match self.records.run_state(&name) {
                Ok(run) => {
                    for id in run.flink_job_ids {
                        self.names.set(&id, &name);
                    }
                }
                Err(e) => log::error!(
                    "job {name}: cannot read its run state {} ({e}), so its Flink jobs are not known: their checkpoints upload under jobs/<flink job id>/ instead of jobs/{name}/; repair that file (JSON with the job's flink_job_ids, stopped and savepoint) and restart the agent",
                    self.records.run_path(&name).display()
                ),
            }
        }
    }

    /// Reports long work (restores) through `phase`.
    pub fn with_phase(self, phase: super::Phase) -> Self {
        Self { phase, ..self }
    }

    /// Reports withdrawn checkpoints to `withdrawn` (the sync's): without it, the sync engine
    /// goes on counting them durable until the job's next upload.
    pub fn with_withdrawn(self, withdrawn: Withdrawn) -> Self {
        Self { withdrawn, ..self }
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
            generation: 0,
        };
        // Three nodes: the id needs the incarnation; refuse before anything is recorded.
        self.submission_id(&record)?;
        if let Err(e) = record::put_remote(&self.remote, &record, jar.clone()).await {
            let _ = record::delete_remote(&self.remote, &record.name).await;
            return Err(store(format!("recording job `{}`", record.name))(e));
        }
        let flink_job_id = match self.submit(&record, jar.clone(), None).await {
            Ok(id) => id,
            // Three nodes: the owner's round saw the declaration first and submitted it under
            // the same id. Undoing the declaration now would leave Flink running a job no
            // agent declares.
            Err(e) if super::cluster::is_duplicate(&e) && self.ha.is_some() => {
                let id = self.submission_id(&record)?.unwrap_or_default();
                log::info!(
                    "job {}: Flink job {id} was submitted already (by the owner agent, from this declaration)",
                    record.name
                );
                id
            }
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
        let job_id = self.submission_id(record)?;
        let jar_id = self.rest.upload_jar(&record.jar_name, jar).await?;
        let run = RunRequest {
            entry_class: record.entry_class.clone(),
            parallelism: record.parallelism,
            args: record.args.clone(),
            savepoint_path: savepoint,
            flink_config: record.flink_config.clone(),
            job_id,
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
    ///
    /// A job this node no longer knows but whose objects are still in the store (an earlier
    /// delete left them, see [`JobError::RemoteLeft`]) passes, so `jobs delete` run again
    /// finishes the delete.
    pub async fn delete_local(&self, name: &str) -> Result<(), JobError> {
        let run = match self.known(name) {
            Ok(run) => run,
            Err(JobError::Unknown { .. }) if self.left_remotely(name).await? => return Ok(()),
            Err(e) => return Err(e),
        };
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
    /// Stores fail now and then, so a failed pass is retried after a growing pause; whatever
    /// is still there after the last one is named in [`JobError::RemoteLeft`]. Idempotent: a
    /// later call deletes what an earlier one left.
    pub async fn delete_remote(&self, name: &str) -> Result<(), JobError> {
        let prefix = crate::checkpoints::layout::job_prefix(&self.remote.root, name);
        let mut pause = DELETE_PAUSE;
        let mut attempt = 1;
        let source = loop {
            match self.delete_remote_once(name, &prefix).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt == DELETE_ATTEMPTS => break e,
                Err(e) => log::warn!(
                    "job {name}: deleting its objects in {} failed (attempt {attempt} of {DELETE_ATTEMPTS}), retrying in {pause:?}: {e}",
                    self.remote.url
                ),
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        };
        let left = match self.remote_keys(&prefix).await {
            // Gone after all: the failure was about an object that went away meanwhile.
            Ok(keys) if keys.is_empty() => return Ok(()),
            Ok(keys) => keys.iter().map(ToString::to_string).collect(),
            Err(_) => vec![format!("{prefix}/")],
        };
        Err(JobError::RemoteLeft {
            name: name.to_string(),
            url: self.remote.url.clone(),
            left,
            attempts: attempt,
            source: Box::new(source),
        })
    }

    /// One pass over the job's objects; the last error if any object stays. The record goes
    /// first and alone: while it exists a replacement node would recover the job, so its jar
    /// and checkpoints must stay too. The other objects are each tried even if one fails.
    async fn delete_remote_once(
        &self,
        name: &str,
        prefix: &object_store::path::Path,
    ) -> Result<(), object_store::Error> {
        record::delete_remote(&self.remote, name).await?;
        let mut last = None;
        for key in self.remote_keys(prefix).await? {
            match self.remote.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => last = Some(e),
            }
        }
        last.map_or(Ok(()), Err)
    }

    /// Every key under `prefix`.
    async fn remote_keys(
        &self,
        prefix: &object_store::path::Path,
    ) -> Result<Vec<object_store::path::Path>, object_store::Error> {
        let listing: Vec<_> =
            futures::TryStreamExt::try_collect(self.remote.store.list(Some(prefix))).await?;
        Ok(listing.into_iter().map(|m| m.location).collect())
    }

    /// Whether anything of job `name` is still in the store (a valid name only: others were
    /// never deployed).
    async fn left_remotely(&self, name: &str) -> Result<bool, JobError> {
        if validate_name(name).is_err() {
            return Ok(false);
        }
        let prefix = crate::checkpoints::layout::job_prefix(&self.remote.root, name);
        let keys = self
            .remote_keys(&prefix)
            .await
            .map_err(store(format!("listing what is left of `{name}`")))?;
        Ok(!keys.is_empty())
    }

    /// The run state of declared job `name`. The name is checked first: it becomes a path under
    /// the jobs dir (and in the store), so `../jobs/other` must not reach another job's files.
    pub(super) fn known(&self, name: &str) -> Result<RunState, JobError> {
        validate_name(name).map_err(JobError::InvalidName)?;
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
            let completed = match &current {
                Some(id) if state != "UNKNOWN" => self.rest.checkpoints(id).await.ok(),
                _ => None,
            }
            .unwrap_or_default();
            let mut durable = sync.jobs.get(&name).and_then(|j| j.last_durable);
            if durable.is_none() && self.ha.is_some() {
                // Another agent uploads (the owner): the store itself says what is durable.
                durable = crate::checkpoints::candidates(&self.remote, &name)
                    .await
                    .ok()
                    .and_then(|ids| ids.first().copied());
            }
            out.push(JobStatus {
                last_durable_checkpoint: durable,
                name,
                flink_job_id: current,
                state,
                last_completed_checkpoint: completed.last_completed,
                last_completed_at: completed.last_completed_at,
                state_bytes: completed.state_bytes,
                restored_from: run.restored_from,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checkpoints::testing::FaultyStore;
    use crate::flinkrest::testing::fake_flink;
    use futures::TryStreamExt;
    use std::sync::Arc;

    /// A node whose store is `store`, with no Flink.
    fn node(store: &Arc<FaultyStore>, disk: &std::path::Path) -> Jobs {
        Jobs::new(
            &disk.join("state"),
            &disk.join("data"),
            store.remote(),
            crate::flinkrest::FlinkRest::new(&crate::flinkrest::Endpoint::new("127.0.0.1", 1))
                .unwrap(),
            JobNames::default(),
            None,
        )
    }

    fn record(name: &str) -> JobRecord {
        JobRecord {
            name: name.into(),
            jar_name: "job.jar".into(),
            jar_sha256: "00".into(),
            entry_class: None,
            parallelism: None,
            args: Vec::new(),
            flink_config: Default::default(),
            deployed_at: 0,
            generation: 0,
        }
    }

    /// A stopped job `counter` (nothing to cancel) with checkpoint 3 in the store.
    async fn deployed(store: &Arc<FaultyStore>, disk: &std::path::Path) -> Jobs {
        let jobs = node(store, disk);
        record::put_remote(&jobs.remote, &record("counter"), b"PK".to_vec())
            .await
            .unwrap();
        jobs.records.write(&record("counter"), b"PK").unwrap();
        let run = RunState {
            flink_job_ids: vec!["f1".into()],
            stopped: true,
            ..Default::default()
        };
        jobs.records.write_run_state("counter", &run).unwrap();
        for key in ["chk-3/data/_metadata", "chk-3/manifest.json"] {
            let path = object_store::path::Path::from(format!("c1/jobs/counter/{key}"));
            jobs.remote
                .store
                .put(&path, b"x".to_vec().into())
                .await
                .unwrap();
        }
        jobs
    }

    async fn remote_keys(jobs: &Jobs) -> Vec<String> {
        let prefix = crate::checkpoints::layout::job_prefix(&jobs.remote.root, "counter");
        let listing: Vec<_> = jobs
            .remote
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap();
        listing.iter().map(|m| m.location.to_string()).collect()
    }

    /// A delete the store keeps refusing is not reported as done: the error names what is
    /// left and how to finish, and running the delete again does finish it.
    #[tokio::test]
    async fn a_delete_that_leaves_objects_names_them_and_running_it_again_finishes() {
        let store = Arc::new(FaultyStore::new(Arc::new(
            object_store::memory::InMemory::new(),
        )));
        let disk = tempfile::tempdir().unwrap();
        let jobs = deployed(&store, disk.path()).await;
        store.fail_deletes("chk-3/data", usize::MAX);
        jobs.delete_local("counter").await.unwrap();
        let err = jobs.delete_remote("counter").await.unwrap_err();
        assert!(matches!(err, JobError::RemoteLeft { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.contains("c1/jobs/counter/chk-3/data/_metadata"),
            "{err}"
        );
        assert!(
            err.contains("run `flink-agent jobs delete counter` again"),
            "{err}"
        );
        assert_eq!(
            remote_keys(&jobs).await,
            ["c1/jobs/counter/chk-3/data/_metadata"]
        );

        // The store is back: the same two halves, run again, finish the job.
        store.fail_deletes("", 0);
        jobs.delete_local("counter").await.unwrap();
        jobs.delete_remote("counter").await.unwrap();
        assert!(remote_keys(&jobs).await.is_empty());
        // Nothing left anywhere: the job is unknown again.
        let err = jobs.delete_local("counter").await.unwrap_err();
        assert!(matches!(err, JobError::Unknown { .. }), "{err:?}");
    }

    /// Found by the three-node fault runner: a deploy through a non-owner agent raced the
    /// owner's round, which saw the declaration and submitted the job first; the deploy took
    /// Flink's duplicate refusal for a failure and deleted the declaration of a running job.
    #[tokio::test]
    async fn a_deploy_the_owner_submitted_first_stays_declared() {
        let store = Arc::new(FaultyStore::new(Arc::new(
            object_store::memory::InMemory::new(),
        )));
        let disk = tempfile::tempdir().unwrap();
        let (_tx, coordination) = tokio::sync::watch::channel(crate::zookeeper::Coordination {
            connected: true,
            incarnation: Some("3f2a9c1d0b7e".into()),
            ..Default::default()
        });
        let jobs = Jobs::new(
            &disk.path().join("state"),
            &disk.path().join("data"),
            store.remote(),
            crate::flinkrest::FlinkRest::new(&fake_flink(|line| {
                if line.starts_with("POST /jars/upload") {
                    ("200 OK", r#"{"filename":"/tmp/x/abc_job.jar","status":"success"}"#)
                } else if line.starts_with("POST /jars/abc_job.jar/run") {
                    // The job id is taken: the owner agent submitted it.
                    ("400 Bad Request", r#"{"errors":["org.apache.flink.runtime.rest.handler.RestHandlerException: Could not execute application. (root cause: org.apache.flink.runtime.client.DuplicateApplicationSubmissionException: Application has already been submitted.)"]}"#)
                } else {
                    ("200 OK", "{}")
                }
            })
            .await)
            .unwrap(),
            JobNames::default(),
            Some(super::super::cluster::Ha {
                cluster_id: "prod".into(),
                coordination,
            }),
        );
        let jar = disk.path().join("job.jar");
        std::fs::write(&jar, b"PK\x03\x04 a jar").unwrap();
        let req = DeployRequest {
            name: "counter".into(),
            jar,
            entry_class: None,
            parallelism: None,
            args: Vec::new(),
        };
        let status = jobs.deploy(&req).await.unwrap();
        let record = jobs.records.read("counter").unwrap().unwrap();
        assert_eq!(
            status.flink_job_id,
            Some(super::super::cluster::ha_job_id(
                "prod",
                "3f2a9c1d0b7e",
                &record
            ))
        );
        let declared = record::fetch_remote_records(&jobs.remote).await.unwrap();
        assert_eq!(declared.len(), 1, "the job is still declared");
    }

    /// What this thread logged, once [`capture_logs`] ran: the agent's warnings and errors are
    /// part of its contract with the operator.
    static LOGGED: std::sync::Mutex<Vec<(std::thread::ThreadId, log::Level, String)>> =
        std::sync::Mutex::new(Vec::new());

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            let line = (
                std::thread::current().id(),
                record.level(),
                record.args().to_string(),
            );
            LOGGED.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
        fn flush(&self) {}
    }

    fn capture_logs() {
        static CAPTURE: Capture = Capture;
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Trace);
    }

    fn logged_here() -> Vec<(log::Level, String)> {
        let me = std::thread::current().id();
        LOGGED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(thread, _, _)| *thread == me)
            .map(|(_, level, line)| (*level, line.clone()))
            .collect()
    }

    /// A job whose run state cannot be read is logged with its file and the fix (its Flink job
    /// ids cannot be mapped, so its checkpoints would upload under them), and the other jobs
    /// are still mapped.
    #[test]
    fn an_unreadable_run_state_is_logged_and_the_other_jobs_are_mapped() {
        capture_logs();
        let store = Arc::new(FaultyStore::new(Arc::new(
            object_store::memory::InMemory::new(),
        )));
        let disk = tempfile::tempdir().unwrap();
        let records = LocalRecords::new(&disk.path().join("state"));
        for name in ["broken", "fine"] {
            records.write(&record(name), b"PK").unwrap();
        }
        let run = RunState {
            flink_job_ids: vec!["f-fine".into()],
            ..Default::default()
        };
        records.write_run_state("fine", &run).unwrap();
        let broken = records.run_path("broken");
        std::fs::write(&broken, b"{not json").unwrap();

        let names = JobNames::default();
        Jobs::new(
            &disk.path().join("state"),
            &disk.path().join("data"),
            store.remote(),
            crate::flinkrest::FlinkRest::new(&crate::flinkrest::Endpoint::new("127.0.0.1", 1))
                .unwrap(),
            names.clone(),
            None,
        );
        assert_eq!(names.name_for("f-fine"), "fine");
        let logged = logged_here();
        assert!(
            logged
                .iter()
                .any(|(level, line)| *level == log::Level::Error
                    && line.contains(&broken.display().to_string())
                    && line.contains("jobs/<flink job id>/")
                    && line.contains("restart the agent")),
            "{logged:?}"
        );
    }

    /// A delete that fails now and then is retried and leaves nothing.
    #[tokio::test]
    async fn a_delete_that_fails_twice_is_retried() {
        let store = Arc::new(FaultyStore::new(Arc::new(
            object_store::memory::InMemory::new(),
        )));
        let disk = tempfile::tempdir().unwrap();
        let jobs = deployed(&store, disk.path()).await;
        store.fail_deletes("", 2);
        jobs.delete_local("counter").await.unwrap();
        jobs.delete_remote("counter").await.unwrap();
        assert!(remote_keys(&jobs).await.is_empty());
    }
}
