//! The daemon's handle on checkpoints and jobs: builds the object store, runs the sync engine,
//! re-submits declared jobs after each JobManager start, and keeps a job listing fresh for
//! `status` (which must answer without waiting on Flink).

use super::{DeployRequest, JobError, JobStatus, Jobs, JobsRest, RestoredFrom, StopOutcome};
use crate::checkpoints::{JobNames, Remote, RemoteError, SyncConfig, SyncEngine, SyncStatus};
use crate::config::AgentConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("cannot prepare checkpoint staging under {path}: {source}")]
    Staging {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Rest(#[from] super::RestError),
}

/// Checkpoint sync and declared jobs, as the daemon runs them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    jobs: Jobs,
    engine: SyncEngine,
    /// Serializes re-submissions and operator actions, so two JobManager events cannot submit
    /// a job twice.
    busy: Arc<Mutex<()>>,
    listing: Arc<watch::Sender<Vec<JobStatus>>>,
    stop: Arc<watch::Sender<bool>>,
}

impl Service {
    /// Builds everything and starts the sync engine and the listing refresher. An unreachable
    /// store is logged, not fatal: the engine retries and `status` shows the alert.
    pub async fn start(config: &AgentConfig, flink_version: &str) -> Result<Self, ServiceError> {
        let remote = Remote::build(&config.object_store, &config.cluster.id)?;
        // Bounded: an unreachable store must not hold up Flink's start.
        match tokio::time::timeout(Duration::from_secs(5), remote.probe()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("{e}"),
            Err(_) => log::error!(
                "{} did not answer within 5 s; checkpoint uploads will retry",
                remote.url
            ),
        }
        let names = JobNames::default();
        let rest = JobsRest::new(&format!(
            "http://{}:{}",
            config.node.address, config.ports.rest
        ))?;
        let jobs = Jobs::new(
            &config.agent.state_dir,
            &config.flink.data_dir,
            remote.clone(),
            rest,
            names.clone(),
        );
        let sync = SyncConfig::from_agent(config, flink_version).map_err(|source| {
            ServiceError::Staging {
                path: config.agent.state_dir.display().to_string(),
                source,
            }
        })?;
        let engine = SyncEngine::new(remote, sync, names);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(engine.clone().run(stopped.clone()));
        let service = Self {
            jobs,
            engine,
            busy: Arc::new(Mutex::new(())),
            listing: Arc::new(watch::channel(Vec::new()).0),
            stop: Arc::new(stop),
        };
        tokio::spawn(service.clone().refresh_listing(stopped));
        Ok(service)
    }

    async fn refresh_listing(self, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            self.refresh().await;
        }
    }

    /// Re-reads what `status` shows of the jobs: every tick, and after each operator action
    /// before it is answered, so a `status` right after `jobs deploy` already lists the job.
    async fn refresh(&self) {
        if let Ok(list) = self.jobs.list(&self.engine.status()).await {
            self.listing.send_replace(list);
        }
    }

    /// After every `SupervisorEvent::JobManagerHealthy`: a fresh JobManager knows no jobs.
    pub fn on_jobmanager_healthy(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let _guard = this.busy.lock().await;
            match this.jobs.resubmit_all().await {
                Ok(results) => {
                    for (name, result) in results {
                        if let Err(e) = result {
                            log::error!("job {name}: not re-submitted: {e}");
                        }
                    }
                }
                Err(e) => log::error!("re-submitting declared jobs: {e}"),
            }
        });
    }

    pub fn sync_status(&self) -> SyncStatus {
        self.engine.status()
    }

    pub fn jobs_status(&self) -> Vec<JobStatus> {
        self.listing.borrow().clone()
    }

    pub async fn deploy(&self, req: &DeployRequest) -> Result<JobStatus, JobError> {
        let _guard = self.busy.lock().await;
        self.engine.remember_job(&req.name);
        self.jobs.deploy(req).await
    }

    pub async fn list(&self) -> Result<Vec<JobStatus>, JobError> {
        self.jobs.list(&self.engine.status()).await
    }

    /// Stops the job; its savepoint is uploaded like a checkpoint, so a node that replaces
    /// this one can start the job from it too.
    pub async fn stop_job(&self, name: &str) -> Result<StopOutcome, JobError> {
        let _guard = self.busy.lock().await;
        let outcome = self.jobs.stop(name).await?;
        if let (Some(location), false) = (&outcome.savepoint, outcome.already_stopped) {
            match self
                .engine
                .stage_savepoint(name, &outcome.flink_job_id, location)
            {
                Ok(id) => log::info!(
                    "job {name}: savepoint {location} (checkpoint {id}) staged for upload"
                ),
                Err(e) => {
                    log::error!("job {name}: savepoint {location} stays on this node only: {e}")
                }
            }
        }
        Ok(outcome)
    }

    /// Answers where the job was restored from (`null`: started fresh).
    pub async fn start_job(&self, name: &str) -> Result<Option<RestoredFrom>, JobError> {
        let _guard = self.busy.lock().await;
        self.jobs.start(name).await
    }

    pub async fn delete_job(&self, name: &str) -> Result<(), JobError> {
        let _guard = self.busy.lock().await;
        self.jobs.delete_local(name).await?;
        // An upload already under way must land before the remote prefix is deleted.
        self.engine
            .forget_job(name)
            .await
            .map_err(|source| JobError::Io {
                what: format!("dropping the staged checkpoints of `{name}`"),
                source,
            })?;
        self.jobs.delete_remote(name).await
    }

    /// Answers a `/v1/jobs` request with JSON, or the reason as a sentence.
    pub async fn handle(
        &self,
        command: crate::api::JobsCommand,
    ) -> Result<serde_json::Value, String> {
        use crate::api::JobsCommand;
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| e.to_string());
        let acts = command != JobsCommand::List;
        let answer = match command {
            JobsCommand::List => json(serde_json::to_value(
                self.list().await.map_err(|e| e.to_string())?,
            )),
            JobsCommand::Deploy(req) => self
                .deploy(&req)
                .await
                .map_err(|e| e.to_string())
                .and_then(|v| json(serde_json::to_value(v))),
            JobsCommand::Stop(name) => self
                .stop_job(&name)
                .await
                .map_err(|e| e.to_string())
                .and_then(|v| json(serde_json::to_value(v))),
            JobsCommand::Start(name) => self
                .start_job(&name)
                .await
                .map_err(|e| e.to_string())
                .and_then(|v| json(serde_json::to_value(v))),
            JobsCommand::Delete(name) => self
                .delete_job(&name)
                .await
                .map(|()| serde_json::json!({ "deleted": name }))
                .map_err(|e| e.to_string()),
        };
        if acts {
            self.refresh().await;
        }
        answer
    }

    /// Stops the sync engine (staged checkpoints stay and are uploaded on the next start).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}
