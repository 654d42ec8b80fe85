//! The jobs concern as the daemon runs it: answers job commands, re-submits declared jobs after
//! each JobManager start (a single node), and keeps a job listing fresh for `status` (which must
//! answer without waiting on Flink). Checkpoint sync is a concern of its own ([`Sync`]); the
//! jobs use its store and tell its engine about deployed, stopped and deleted jobs.
//!
//! In a three-node cluster Flink's HA re-runs its jobs after a JobManager failover, so nothing
//! is re-submitted then: every agent mirrors the declared jobs from object storage, and the
//! owner agent submits only the jobs Flink's HA does not know (see `cluster`).

use super::cluster::Ha;
use super::{Answer, Command, DeployRequest, JobError, JobStatus, Jobs, RestoredFrom, StopOutcome};
use crate::checkpoints::Sync;
use crate::flinkrest::{Endpoint, FlinkRest, FlinkRestError};
use crate::zookeeper::Coordination;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Mutex};

/// What the jobs concern needs; derived from the config by `crate::desired` (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Job records live under `<state_dir>/jobs`.
    pub state_dir: PathBuf,
    /// Flink's `checkpoints/` and `savepoints/`, and the agent's `restore/` downloads.
    pub data_dir: PathBuf,
    pub endpoint: Endpoint,
    /// Three nodes: `cluster.id`. Jobs then run under deterministic Flink job ids, Flink's HA
    /// recovers them, and only the owner agent submits jobs Flink does not know.
    pub ha_cluster_id: Option<String>,
}

/// Declared jobs, as the daemon runs them. Cheap to clone; clones share.
#[derive(Debug, Clone)]
pub struct Service {
    /// Rebuilt when the settings or the store change; each operation works on a snapshot.
    current: Arc<RwLock<(Settings, Jobs)>>,
    sync: Sync,
    /// Serializes re-submissions and operator actions, so two JobManager events cannot submit
    /// a job twice.
    busy: Arc<Mutex<()>>,
    /// The store was switched and this node's job declarations are not in it yet.
    unpublished: Arc<AtomicBool>,
    /// JobManager starts seen: each one's re-submission retries until the next.
    resubmit_rounds: Arc<AtomicU64>,
    listing: Arc<watch::Sender<Vec<JobStatus>>>,
    stop: Arc<watch::Sender<bool>>,
    phase: super::Phase,
    /// Three-node clusters: the agent's ZooKeeper session (incarnation, owner).
    coordination: Option<watch::Receiver<Coordination>>,
}

/// How often a three-node cluster's agents mirror the declared jobs and the owner looks for
/// jobs Flink's HA does not know.
const CLUSTER_ROUND: Duration = Duration::from_secs(3);

/// Pauses between re-submission attempts after a JobManager start, doubling.
const RESUBMIT_RETRY_FIRST: Duration = Duration::from_secs(2);
const RESUBMIT_RETRY_MAX: Duration = Duration::from_secs(30);

impl Service {
    /// Builds the jobs on `sync`'s store and starts the listing refresher.
    /// `coordination`: three-node clusters only.
    pub fn start(
        settings: Settings,
        sync: Sync,
        coordination: Option<watch::Receiver<Coordination>>,
    ) -> Result<Self, FlinkRestError> {
        let phase = super::Phase::default();
        let jobs = build(&settings, &sync, &phase, coordination.as_ref())?;
        let (stop, stopped) = watch::channel(false);
        let service = Self {
            current: Arc::new(RwLock::new((settings, jobs))),
            sync,
            busy: Arc::new(Mutex::new(())),
            unpublished: Arc::new(AtomicBool::new(false)),
            resubmit_rounds: Arc::new(AtomicU64::new(0)),
            listing: Arc::new(watch::channel(Vec::new()).0),
            stop: Arc::new(stop),
            phase,
            coordination,
        };
        tokio::spawn(service.clone().refresh_listing(stopped.clone()));
        if service.coordination.is_some() {
            tokio::spawn(service.clone().cluster_rounds(stopped));
        }
        Ok(service)
    }

    /// Three nodes: mirror the declared jobs; in the owner, submit what Flink's HA does not
    /// know.
    async fn cluster_rounds(self, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(CLUSTER_ROUND);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            self.cluster_round().await;
        }
    }

    async fn cluster_round(&self) {
        let _guard = self.busy.lock().await;
        let jobs = self.jobs();
        if let Err(e) = jobs.mirror().await {
            log::warn!("cannot mirror the declared jobs: {e}");
            return;
        }
        if jobs.ha.as_ref().is_some_and(Ha::is_owner) {
            if let Err(e) = jobs.submit_unknown().await {
                log::debug!("jobs Flink's HA does not know: not checked now: {e}");
            }
        }
    }

    fn jobs(&self) -> Jobs {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// Switches to `settings` (and to the sync's store, should it have changed); `Ok(false)`
    /// when nothing changed. Waits for a job operation under way to finish first. A new store
    /// gets the declarations of this node's jobs; until that succeeds the listing refresher
    /// keeps trying.
    pub async fn reconfigure(&self, settings: Settings) -> Result<bool, ReconfigureError> {
        let _guard = self.busy.lock().await;
        let (same_settings, same_store) = {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            (
                current.0 == settings,
                Arc::ptr_eq(&current.1.remote.store, &self.sync.remote().store),
            )
        };
        if same_settings && same_store {
            return Ok(false);
        }
        let jobs = build(
            &settings,
            &self.sync,
            &self.phase,
            self.coordination.as_ref(),
        )?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (settings, jobs);
        if !same_store {
            self.unpublished.store(true, Ordering::Relaxed);
            self.publish().await?;
        }
        Ok(true)
    }

    /// Writes this node's job declarations to the store in force, once after a store switch.
    /// The caller holds `busy`: a `jobs delete` must not race a rewrite of the declaration.
    async fn publish(&self) -> Result<(), JobError> {
        if !self.unpublished.load(Ordering::Relaxed) {
            return Ok(());
        }
        let jobs = self.jobs();
        let written = jobs.publish_records().await?;
        self.unpublished.store(false, Ordering::Relaxed);
        log::info!(
            "{written} job declaration(s) written to {}",
            jobs.remote.url
        );
        Ok(())
    }

    async fn refresh_listing(self, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            if self.unpublished.load(Ordering::Relaxed) {
                let _guard = self.busy.lock().await;
                if let Err(e) = self.publish().await {
                    log::warn!("job declarations not in the new store yet (retrying): {e}");
                }
            }
            self.refresh().await;
        }
    }

    /// Re-reads what `status` shows of the jobs: every tick, and after each operator action
    /// before it is answered, so a `status` right after `jobs deploy` already lists the job.
    async fn refresh(&self) {
        if let Ok(list) = self.jobs().list(&self.sync.status()).await {
            self.listing.send_replace(list);
        }
    }

    /// After every `SupervisorEvent::JobManagerHealthy`: a fresh JobManager of a single node
    /// knows no jobs. With three nodes Flink's HA recovers them: only jobs it does not know
    /// (a new incarnation) are submitted, by the owner, at once rather than at its next round.
    pub fn on_jobmanager_healthy(&self) {
        let this = self.clone();
        if self.coordination.is_some() {
            tokio::spawn(async move { this.cluster_round().await });
            return;
        }
        // A failed re-submission (Flink or the store not answering) is retried until every
        // declared job runs: once is not enough for a node that must heal by itself. The next
        // JobManager start takes over from this one's retries.
        let round = self.resubmit_rounds.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::spawn(async move {
            let mut pause = RESUBMIT_RETRY_FIRST;
            let current = || this.resubmit_rounds.load(Ordering::Relaxed) == round;
            while !this.resubmit_round().await && !*this.stop.borrow() && current() {
                log::warn!(
                    "declared jobs not all re-submitted; retrying in {} s",
                    pause.as_secs()
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RESUBMIT_RETRY_MAX);
            }
        });
    }

    /// One pass over the declared jobs; true when none failed.
    async fn resubmit_round(&self) -> bool {
        let _guard = self.busy.lock().await;
        match self.jobs().resubmit_all().await {
            Ok(results) => {
                let mut all = true;
                for (name, result) in results {
                    if let Err(e) = result {
                        log::error!("job {name}: not re-submitted: {e}");
                        all = false;
                    }
                }
                all
            }
            Err(e) => {
                log::error!("re-submitting declared jobs: {e}");
                false
            }
        }
    }

    /// What long work (a restore) runs now, if any.
    pub fn phase(&self) -> Option<String> {
        self.phase.get()
    }

    pub fn jobs_status(&self) -> Vec<JobStatus> {
        self.listing.borrow().clone()
    }

    async fn deploy(&self, req: &DeployRequest) -> Result<JobStatus, JobError> {
        let _guard = self.busy.lock().await;
        self.sync.engine().remember_job(&req.name);
        self.jobs().deploy(req).await
    }

    /// Stops the job; its savepoint is uploaded like a checkpoint, so a node that replaces
    /// this one can start the job from it too.
    async fn stop_job(&self, name: &str) -> Result<StopOutcome, JobError> {
        let _guard = self.busy.lock().await;
        let outcome = self.jobs().stop(name).await?;
        if let (Some(location), false) = (&outcome.savepoint, outcome.already_stopped) {
            match self
                .sync
                .engine()
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

    /// Answers where the job was restored from (`None`: started fresh).
    async fn start_job(&self, name: &str) -> Result<Option<RestoredFrom>, JobError> {
        let _guard = self.busy.lock().await;
        self.jobs().start(name).await
    }

    async fn delete_job(&self, name: &str) -> Result<(), JobError> {
        let _guard = self.busy.lock().await;
        let jobs = self.jobs();
        jobs.delete_local(name).await?;
        // An upload already under way must land before the remote prefix is deleted.
        self.sync
            .engine()
            .forget_job(name)
            .await
            .map_err(|source| JobError::Io {
                what: format!("dropping the staged checkpoints of `{name}`"),
                source,
            })?;
        jobs.delete_remote(name).await
    }

    /// Carries out a job command. Commands that change something refresh the listing before
    /// they answer.
    pub async fn handle(&self, command: Command) -> Result<Answer, JobError> {
        let answer = match command {
            Command::List => return Ok(Answer::List(self.jobs().list(&self.sync.status()).await?)),
            Command::Deploy(req) => self.deploy(&req).await.map(Answer::Deployed),
            Command::Stop(name) => self.stop_job(&name).await.map(Answer::Stopped),
            Command::Start(name) => self.start_job(&name).await.map(Answer::Started),
            Command::Delete(name) => self
                .delete_job(&name)
                .await
                .map(|()| Answer::Deleted { deleted: name }),
        };
        self.refresh().await;
        answer
    }

    /// Stops the listing refresher.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

/// Why the jobs could not take new settings.
#[derive(Debug, thiserror::Error)]
pub enum ReconfigureError {
    #[error(transparent)]
    Client(#[from] FlinkRestError),
    /// The new store does not have this node's job declarations yet; retried every 2 s.
    #[error("job declarations not written to the new store yet (retrying every 2 s): {0}")]
    Publish(#[from] JobError),
}

fn build(
    settings: &Settings,
    sync: &Sync,
    phase: &super::Phase,
    coordination: Option<&watch::Receiver<Coordination>>,
) -> Result<Jobs, FlinkRestError> {
    let ha = match (&settings.ha_cluster_id, coordination) {
        (Some(cluster_id), Some(coordination)) => Some(Ha {
            cluster_id: cluster_id.clone(),
            coordination: coordination.clone(),
        }),
        _ => None,
    };
    Ok(Jobs::new(
        &settings.state_dir,
        &settings.data_dir,
        sync.remote(),
        FlinkRest::new(&settings.endpoint)?,
        sync.names().clone(),
        ha,
    )
    .with_phase(phase.clone())
    .with_withdrawn(sync.withdrawn().clone()))
}
