//! The checkpoint-sync concern as the daemon runs it: the object store and the [`SyncEngine`]
//! for the settings in force, and the swap to new ones on a reload.
//!
//! A reconfiguration builds the new store first (a bad one is refused and the old engine keeps
//! running), then stops the old engine between two steps (an upload under way completes: its
//! manifest is the last write) and starts the new one. Staging on disk is the queue, so
//! checkpoints staged under the old settings are uploaded by the new engine.

use super::engine::{JobNames, SyncConfig, SyncEngine};
use super::remote::{Remote, RemoteError};
use super::status::SyncStatus;
use super::upload::{Origin, UploadSettings};
use super::withdrawn::Withdrawn;
use crate::config::{CheckpointsSection, ObjectStoreSection};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What checkpoint sync must do; derived from the config by `crate::desired` (pure).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    pub store: ObjectStoreSection,
    pub cluster_id: String,
    pub flink_version: String,
    /// `agent.state_dir` and `flink.data_dir`: staging goes to whichever can hard-link Flink's
    /// files (see `local::staging_root`).
    pub state_dir: PathBuf,
    pub data_dir: PathBuf,
    pub checkpoints: CheckpointsSection,
    /// Three nodes: `data_dir` is the cluster's dir on the shared storage, and staging goes
    /// there too, so whichever agent holds the owner role uploads what another one staged.
    pub shared: bool,
    /// Three nodes: Flink's REST endpoint, whose checkpoint statistics tell of completions
    /// (inotify does not see what other NFS clients write).
    pub rest: Option<crate::flinkrest::Endpoint>,
}

impl SyncSettings {
    /// Flink's checkpoint dir, as rendered.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.data_dir.join("checkpoints")
    }

    /// The engine's configuration; decides where staging lives (a filesystem check).
    fn engine_config(&self) -> std::io::Result<SyncConfig> {
        let c = &self.checkpoints;
        Ok(SyncConfig {
            origin: Origin {
                cluster_id: self.cluster_id.clone(),
                flink_version: self.flink_version.clone(),
            },
            checkpoints_dir: self.checkpoints_dir(),
            staging_root: if self.shared {
                std::fs::create_dir_all(&self.data_dir)?;
                self.data_dir.join(".staging")
            } else {
                super::local::staging_root(&self.state_dir, &self.data_dir)?
            },
            rest: self.rest.clone(),
            retain: c.retain as usize,
            rescan_interval: Duration::from_secs(c.rescan_interval_secs),
            orphan_grace: Duration::from_secs(c.orphan_grace_secs),
            alert_after_failures: c.alert_after_failures,
            upload: UploadSettings {
                concurrency: c.upload_concurrency,
                ..UploadSettings::default()
            },
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        })
    }
}

/// Why checkpoint sync could not be (re)started with new settings.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("cannot prepare checkpoint staging under {path}: {source}; check agent.state_dir and flink.data_dir")]
    Staging {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct Running {
    settings: SyncSettings,
    remote: Remote,
    engine: SyncEngine,
    /// The engine's task while it runs (see [`Sync::set_active`]), and how to stop it.
    task: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Running {
    fn start(&mut self) {
        if self.task.is_none() {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(self.engine.clone().run(stopped));
            self.task = Some((stop, task));
        }
    }
}

/// The running sync. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct Sync {
    names: JobNames,
    withdrawn: Withdrawn,
    running: Arc<Mutex<Running>>,
    /// Whether the engine runs: always on one node; on three, only in the owner agent.
    active: Arc<std::sync::atomic::AtomicBool>,
}

impl Sync {
    /// Builds the store and starts the engine. The store is probed in the background: an
    /// unreachable store must not hold up the agent (the engine retries and `status` says why).
    /// `active`: whether the engine starts at once (see [`Sync::set_active`]).
    pub fn start(settings: SyncSettings, names: JobNames, active: bool) -> Result<Self, SyncError> {
        let withdrawn = Withdrawn::default();
        let mut running = launch(settings, names.clone(), withdrawn.clone(), None)?;
        if active {
            running.start();
        }
        Ok(Self {
            names,
            withdrawn,
            running: Arc::new(Mutex::new(running)),
            active: Arc::new(std::sync::atomic::AtomicBool::new(active)),
        })
    }

    /// Starts or stops the engine (three nodes: this agent became or stopped being the owner).
    /// Staging on the shared storage is the queue, so the next owner uploads what this one
    /// staged. Stopping waits for the upload under way: its manifest is the last write.
    pub async fn set_active(&self, active: bool) {
        use std::sync::atomic::Ordering;
        if self.active.swap(active, Ordering::SeqCst) == active {
            return;
        }
        if active {
            self.lock().start();
            log::info!("checkpoint sync runs on this node");
        } else {
            let task = self.lock().task.take();
            if let Some(task) = task {
                stop(task).await;
            }
            log::info!(
                "checkpoint sync stopped on this node: another agent copies checkpoints now"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store of the settings in force.
    pub fn remote(&self) -> Remote {
        self.lock().remote.clone()
    }

    /// The engine of the settings in force.
    pub fn engine(&self) -> SyncEngine {
        self.lock().engine.clone()
    }

    /// Flink job id → declared job name, shared with the jobs.
    pub fn names(&self) -> &JobNames {
        &self.names
    }

    /// Where the jobs' restores report the damaged checkpoints they withdrew.
    pub fn withdrawn(&self) -> &Withdrawn {
        &self.withdrawn
    }

    pub fn status(&self) -> SyncStatus {
        self.engine().status()
    }

    /// Switches to `settings`; `Ok(false)` when they are the ones in force. On error the
    /// running engine is untouched.
    pub async fn reconfigure(&self, settings: SyncSettings) -> Result<bool, SyncError> {
        // The same store stays the same `Remote`: the jobs take a new one for a store switch and
        // write every declaration into it, which a change of, say, the rescan interval is not
        // (found by `benches/chaos.py`: such a reload during a store outage was reported as
        // "not fully applied", and outside one re-uploaded every job's jar).
        let same_store = {
            let running = self.lock();
            if running.settings == settings {
                return Ok(false);
            }
            (running.settings.store == settings.store
                && running.settings.cluster_id == settings.cluster_id)
                .then(|| running.remote.clone())
        };
        let mut next = launch(
            settings,
            self.names.clone(),
            self.withdrawn.clone(),
            same_store,
        )?;
        if self.active.load(std::sync::atomic::Ordering::SeqCst) {
            next.start();
        }
        let old = std::mem::replace(&mut *self.lock(), next);
        if let Some(task) = old.task {
            stop(task).await;
        }
        Ok(true)
    }

    /// Stops the engine at its next step (staged checkpoints stay; the next agent uploads
    /// them, which is the same thing to the store as finishing now).
    pub fn shutdown(&self) {
        if let Some((stop, _)) = &self.lock().task {
            let _ = stop.send(true);
        }
    }
}

/// An engine for `settings`, on `remote` when the store is the one in force already (else a
/// new one, probed in the background).
fn launch(
    settings: SyncSettings,
    names: JobNames,
    withdrawn: Withdrawn,
    remote: Option<Remote>,
) -> Result<Running, SyncError> {
    let (remote, new) = match remote {
        Some(remote) => (remote, false),
        None => (Remote::build(&settings.store, &settings.cluster_id)?, true),
    };
    let config = settings
        .engine_config()
        .map_err(|source| SyncError::Staging {
            path: settings.state_dir.display().to_string(),
            source,
        })?;
    if new {
        let probe = remote.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(10), probe.probe()).await {
                Ok(Ok(())) => log::info!("object store {} answers", probe.url),
                Ok(Err(e)) => log::error!("{e}"),
                Err(_) => log::error!(
                    "{} did not answer within 10 s; checkpoint uploads will retry",
                    probe.url
                ),
            }
        });
    }
    let engine = SyncEngine::new(remote.clone(), config, names, withdrawn);
    Ok(Running {
        settings,
        remote,
        engine,
        task: None,
    })
}

/// Stops an engine and waits for it: the detector at once, the uploader after its step.
async fn stop((stop, task): (watch::Sender<bool>, JoinHandle<()>)) {
    let _ = stop.send(true);
    if let Err(e) = task.await {
        log::error!("the previous checkpoint sync engine ended abnormally: {e}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(root: &std::path::Path) -> SyncSettings {
        SyncSettings {
            store: ObjectStoreSection {
                url: format!("file://{}/store", root.display()),
                ..ObjectStoreSection::default()
            },
            cluster_id: "c1".into(),
            flink_version: "2.3.0".into(),
            state_dir: root.join("state"),
            data_dir: root.join("data"),
            checkpoints: CheckpointsSection::default(),
            shared: false,
            rest: None,
        }
    }

    /// A reload that changes how checkpoints are synced, not where, keeps the store: the jobs
    /// treat a new one as a store switch and write every declaration into it.
    #[tokio::test]
    async fn only_a_store_change_makes_a_new_store() {
        let root = tempfile::tempdir().unwrap();
        let first = settings(root.path());
        let sync = Sync::start(first.clone(), JobNames::default(), false).unwrap();
        let before = sync.remote().store;

        let mut rescan = first.clone();
        rescan.checkpoints.rescan_interval_secs += 1;
        assert!(sync.reconfigure(rescan.clone()).await.unwrap());
        assert!(
            Arc::ptr_eq(&before, &sync.remote().store),
            "same store kept"
        );

        let mut elsewhere = rescan;
        elsewhere.store.url = format!("file://{}/other", root.path().display());
        assert!(sync.reconfigure(elsewhere).await.unwrap());
        assert!(!Arc::ptr_eq(&before, &sync.remote().store), "a new store");
    }
}
