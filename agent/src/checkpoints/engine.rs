//! The sync loop: a detector (inotify + periodic rescan) that stages every newly completed
//! checkpoint at once, and an uploader that publishes staged checkpoints, retries forever with
//! back-off, raises an alert after repeated failures, and applies retention after each publish.
//! Staging on disk is the queue: a restarted agent picks up exactly where it stopped.

use super::layout::{group_checkpoints, job_prefix, MANIFEST};
use super::local::{list_staged, scan_complete, stage, LocalCheckpoint, StageError, Staged};
use super::plan::{plan_retention, plan_uploads, Key, UploadPlan};
use super::remote::{advice, Remote};
use super::status::{JobSync, PendingUpload, SyncStatus};
use super::upload::{delete_all, list_all, publish, Origin, UploadError, UploadSettings};
use super::withdrawn::Withdrawn;
use crate::events::{CheckpointDurable, CheckpointUploadFailed, Event};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Notify};

/// Everything the engine needs to know, derived from the agent config.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub origin: Origin,
    /// Flink's checkpoint dir (`<flink.data_dir>/checkpoints`).
    pub checkpoints_dir: PathBuf,
    pub staging_root: PathBuf,
    pub retain: usize,
    pub rescan_interval: Duration,
    pub orphan_grace: Duration,
    pub alert_after_failures: u32,
    pub upload: UploadSettings,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Three nodes: Flink's REST endpoint. Its checkpoint statistics wake the detector when a
    /// checkpoint completes: inotify does not see what other NFS clients write.
    pub rest: Option<crate::flinkrest::Endpoint>,
}

/// Flink job id → declared job name (the remote directory). Undeclared jobs go under their
/// Flink job id, so their checkpoints are still durable.
#[derive(Debug, Clone, Default)]
pub struct JobNames(Arc<RwLock<BTreeMap<String, String>>>);

impl JobNames {
    pub fn set(&self, flink_job_id: &str, name: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(flink_job_id.to_string(), name.to_string());
    }

    pub fn name_for(&self, flink_job_id: &str) -> String {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(flink_job_id)
            .cloned()
            .unwrap_or_else(|| flink_job_id.to_string())
    }
}

/// How often Flink's checkpoint statistics are read (three nodes).
const COMPLETIONS_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Shared {
    status: SyncStatus,
    durable: BTreeSet<Key>,
    /// Jobs whose remote listing was read since start (durable ids known).
    listed: BTreeSet<String>,
    /// Deleted jobs: never staged, uploaded or shown again (until deployed again).
    forgotten: BTreeSet<String>,
}

/// The checkpoint sync engine. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct SyncEngine {
    remote: Remote,
    config: Arc<SyncConfig>,
    names: JobNames,
    withdrawn: Withdrawn,
    shared: Arc<Mutex<Shared>>,
    detect: Arc<Notify>,
    staged: Arc<Notify>,
    /// Held while a checkpoint is published, so [`SyncEngine::forget_job`] can wait for an
    /// upload already under way: what it writes must land before the job's prefix is deleted.
    publishing: Arc<tokio::sync::Mutex<()>>,
}

impl SyncEngine {
    pub fn new(remote: Remote, config: SyncConfig, names: JobNames, withdrawn: Withdrawn) -> Self {
        let shared = Shared {
            status: SyncStatus {
                url: remote.url.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        Self {
            remote,
            config: Arc::new(config),
            names,
            withdrawn,
            shared: Arc::new(Mutex::new(shared)),
            detect: Arc::new(Notify::new()),
            staged: Arc::new(Notify::new()),
            publishing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn status(&self) -> SyncStatus {
        self.forget_withdrawn();
        self.lock().status.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops counting durable what a restore withdrew from the store, and lists the job's
    /// store again before its next upload. The newest durable checkpoint's times and size
    /// described the withdrawn one: they stay unknown until the next upload.
    fn forget_withdrawn(&self) {
        let withdrawn = self.withdrawn.take();
        if withdrawn.is_empty() {
            return;
        }
        let mut shared = self.lock();
        for (job, id) in withdrawn {
            shared.durable.remove(&(job.clone(), id));
            shared.listed.remove(&job);
            let Some(entry) = shared.status.jobs.get_mut(&job) else {
                continue;
            };
            entry.remote.retain(|r| *r != id);
            if entry.last_durable == Some(id) {
                *entry = JobSync {
                    last_durable: entry.remote.last().copied(),
                    remote: std::mem::take(&mut entry.remote),
                    ..JobSync::default()
                };
            }
        }
    }

    /// Runs detector and uploader until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let uploader = tokio::spawn(self.clone().upload_loop(shutdown.clone()));
        let completions = self
            .config
            .rest
            .clone()
            .map(|rest| tokio::spawn(self.clone().completions_loop(rest, shutdown.clone())));
        self.detect_loop(shutdown).await;
        let _ = uploader.await;
        if let Some(c) = completions {
            let _ = c.await;
        }
    }

    /// Wakes the detector whenever Flink's checkpoint statistics show a newer completed
    /// checkpoint of a running job.
    async fn completions_loop(
        self,
        endpoint: crate::flinkrest::Endpoint,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Ok(rest) = crate::flinkrest::FlinkRest::new(&endpoint) else {
            return;
        };
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut tick = tokio::time::interval(COMPLETIONS_POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Ok(jobs) = rest.jobs().await else {
                continue;
            };
            let mut newer = false;
            for job in jobs.iter().filter(|j| j.state == "RUNNING") {
                if let Ok(Some(id)) = rest.checkpoints(&job.jid).await.map(|c| c.last_completed) {
                    if seen.insert(job.jid.clone(), id) != Some(id) {
                        newer = true;
                    }
                }
            }
            if newer {
                self.detect.notify_one();
            }
        }
    }

    /// Stages newly completed checkpoints on every filesystem event and every rescan tick.
    async fn detect_loop(&self, mut shutdown: watch::Receiver<bool>) {
        let mut watch: Option<(notify::RecommendedWatcher, bool)> = None;
        let mut tick = tokio::time::interval(self.config.rescan_interval);
        loop {
            if !watch.as_ref().is_some_and(|(_, recursive)| *recursive) {
                watch = self.watch().or(watch);
            }
            self.detect_once();
            tokio::select! {
                _ = self.detect.notified() => {}
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Watches Flink's checkpoint dir recursively once it exists (`true`); until then its
    /// parent, whose events tell us when to try again (`false`).
    fn watch(&self) -> Option<(notify::RecommendedWatcher, bool)> {
        use notify::Watcher;
        let wake = self.detect.clone();
        // Access events (open, close-without-write) are ignored: our own scans cause them, and
        // waking on them would make every scan trigger the next one — a busy loop.
        let mut w = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                wake.notify_one();
            }
        })
        .ok()?;
        let dir = &self.config.checkpoints_dir;
        if dir.is_dir() {
            w.watch(dir, notify::RecursiveMode::Recursive).ok()?;
            Some((w, true))
        } else {
            w.watch(dir.parent()?, notify::RecursiveMode::NonRecursive)
                .ok()?;
            Some((w, false))
        }
    }

    /// One scan of Flink's dir: stages each complete checkpoint that is not durable yet and
    /// newer than the newest durable one of its job.
    pub fn detect_once(&self) {
        self.forget_withdrawn();
        let found = match scan_complete(&self.config.checkpoints_dir) {
            Ok(found) => found,
            Err(e) => {
                self.lock().status.last_error = Some(format!(
                    "cannot scan {}: {e}",
                    self.config.checkpoints_dir.display()
                ));
                return;
            }
        };
        let mut staged_any = false;
        for local in found {
            let job = self.names.name_for(&local.flink_job_id);
            let skip = {
                let shared = self.lock();
                if shared.forgotten.contains(&job) {
                    continue;
                }
                let newest = shared
                    .durable
                    .iter()
                    .filter(|(j, _)| *j == job)
                    .map(|(_, id)| *id)
                    .max();
                shared.durable.contains(&(job.clone(), local.id))
                    || newest.is_some_and(|n| local.id < n)
            };
            if skip || Staged::dir_for(&self.config.staging_root, &job, local.id).exists() {
                continue;
            }
            match stage(&local, &job, &self.config.staging_root) {
                Ok(_) => {
                    log::info!(
                        "job {job}: checkpoint {} completed; staged for upload",
                        local.id
                    );
                    staged_any = true;
                }
                Err(e @ StageError::Vanished { .. }) => log::info!("{e}"),
                Err(e) => {
                    log::error!("{e}");
                    self.lock().status.last_error = Some(e.to_string());
                }
            }
        }
        if staged_any {
            self.staged.notify_one();
        }
    }

    /// Publishes staged checkpoints; on failure waits with exponential back-off and retries.
    async fn upload_loop(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = self.config.backoff_initial;
        loop {
            let wait = match self.upload_step().await {
                Ok(true) => {
                    backoff = self.config.backoff_initial;
                    continue;
                }
                Ok(false) => None,
                Err(e) => {
                    self.record_failure(&e);
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    Some(wait)
                }
            };
            tokio::select! {
                _ = self.staged.notified(), if wait.is_none() => {}
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// What to upload and what to free, given what is known durable; `status` shows the former.
    fn plan(&self, keys: &[Key]) -> UploadPlan {
        let mut shared = self.lock();
        let plan = plan_uploads(keys, &shared.durable, self.config.retain);
        shared.status.pending = plan
            .upload
            .iter()
            .map(|(job, id)| PendingUpload {
                job: job.clone(),
                checkpoint_id: *id,
            })
            .collect();
        plan
    }

    fn record_failure(&self, e: &UploadError) {
        let mut shared = self.lock();
        let s = &mut shared.status;
        s.consecutive_failures += 1;
        s.last_error = Some(e.to_string());
        CheckpointUploadFailed {
            attempt: s.consecutive_failures,
            error: &e.to_string(),
        }
        .emit();
        if s.consecutive_failures >= self.config.alert_after_failures {
            s.alert = Some(format!(
                "checkpoints are not reaching {} ({} failed attempts, still retrying): {}{e}",
                s.url,
                s.consecutive_failures,
                advice_prefix(e)
            ));
        }
    }

    /// Does one unit of work. `Ok(true)`: published one, look again at once; `Ok(false)`:
    /// nothing to do.
    pub async fn upload_step(&self) -> Result<bool, UploadError> {
        self.forget_withdrawn();
        let staged = list_staged(&self.config.staging_root).map_err(|source| UploadError::Io {
            path: self.config.staging_root.display().to_string(),
            source,
        })?;
        let keys: Vec<Key> = staged
            .iter()
            .map(|s| (s.info.job.clone(), s.info.checkpoint_id))
            .collect();
        // Shown before the first listing of a job, which may fail: `status` must show what
        // waits even while the store is unreachable.
        self.plan(&keys);
        for job in staged
            .iter()
            .map(|s| s.info.job.clone())
            .collect::<BTreeSet<_>>()
        {
            if !self.lock().listed.contains(&job) {
                self.apply_retention(&job, &staged).await?;
            }
        }
        let plan = self.plan(&keys);
        for key in &plan.discard {
            if let Some(s) = staged
                .iter()
                .find(|s| (&s.info.job, s.info.checkpoint_id) == (&key.0, key.1))
            {
                log::info!(
                    "job {}: checkpoint {} no longer needs uploading; freeing its staging",
                    key.0,
                    key.1
                );
                s.remove().map_err(|source| UploadError::Io {
                    path: s.dir.display().to_string(),
                    source,
                })?;
            }
        }
        let Some(next) = plan.upload.first() else {
            return Ok(false);
        };
        let Some(item) = staged
            .iter()
            .find(|s| (&s.info.job, s.info.checkpoint_id) == (&next.0, next.1))
        else {
            return Ok(false);
        };
        let _publishing = self.publishing.lock().await;
        if self.lock().forgotten.contains(&next.0) {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let manifest = publish(&self.remote, item, &self.config.origin, self.config.upload).await?;
        CheckpointDurable {
            job: &manifest.job,
            checkpoint_id: manifest.checkpoint_id,
            files: manifest.files.len(),
            bytes: manifest.total_bytes(),
            took: started.elapsed(),
            lag_secs: unix_now_f64() - manifest.completed_at as f64,
        }
        .emit();
        item.remove().map_err(|source| UploadError::Io {
            path: item.dir.display().to_string(),
            source,
        })?;
        {
            let mut shared = self.lock();
            if shared.forgotten.contains(&next.0) {
                // Deleted while this upload ran: `forget_job` waited for it, and the caller
                // deletes the job's prefix, this checkpoint included, afterwards.
                return Ok(true);
            }
            shared.durable.insert(next.clone());
            let s = &mut shared.status;
            s.consecutive_failures = 0;
            s.alert = None;
            s.pending
                .retain(|p| (&p.job, p.checkpoint_id) != (&next.0, next.1));
            let job = s.jobs.entry(next.0.clone()).or_default();
            if job.last_durable.is_none_or(|d| d < next.1) {
                job.last_durable = Some(next.1);
                job.last_durable_at = Some(unix_now() as u64);
                job.last_durable_completed_at = Some(manifest.completed_at);
                job.last_durable_bytes = Some(manifest.total_bytes());
            }
        }
        // Retention must know which checkpoints are still staged: it would take their partial
        // uploads for orphans and delete them. Without that list it waits for the job's next
        // publish; the next step lists staging first and reports the failure in `status`.
        match list_staged(&self.config.staging_root) {
            Ok(remaining) => self.apply_retention(&next.0, &remaining).await?,
            Err(e) => log::warn!(
                "job {}: retention skipped until its next upload (expired checkpoints stay in {} meanwhile): cannot list the staged checkpoints in {}: {e}",
                next.0,
                self.remote.url,
                self.config.staging_root.display()
            ),
        }
        Ok(true)
    }

    /// Forgets a deleted job: its staged checkpoints are dropped unuploaded (they would
    /// recreate its remote prefix) and it leaves `status`. Returns once no upload of the job
    /// is under way any more, so deleting its remote prefix afterwards leaves nothing behind.
    pub async fn forget_job(&self, job: &str) -> std::io::Result<()> {
        // First, so neither the detector nor the uploader starts anything new for the job.
        self.lock().forgotten.insert(job.to_string());
        drop(self.publishing.lock().await);
        let dir = self.config.staging_root.join(job);
        remove_busy_dir(&dir, |d| std::fs::remove_dir_all(d)).await?;
        let mut shared = self.lock();
        shared.durable.retain(|(j, _)| j != job);
        shared.listed.remove(job);
        shared.status.jobs.remove(job);
        shared.status.pending.retain(|p| p.job != job);
        Ok(())
    }

    /// A savepoint `jobs stop` took, at Flink's `location`: staged and published like a
    /// checkpoint (its id continues the job's checkpoint ids, so it becomes the newest durable
    /// one), and a replacement node resumes the job from it. Returns its id.
    pub fn stage_savepoint(
        &self,
        job: &str,
        flink_job_id: &str,
        location: &str,
    ) -> Result<u64, StageError> {
        let dir = super::metadata::local_dir(location).to_path_buf();
        let id = super::metadata::checkpoint_id(&dir).map_err(|source| StageError::Io {
            dir: dir.display().to_string(),
            staging: self.config.staging_root.display().to_string(),
            source,
        })?;
        let savepoint = LocalCheckpoint {
            flink_job_id: flink_job_id.to_string(),
            id,
            dir,
        };
        stage(&savepoint, job, &self.config.staging_root)?;
        self.staged.notify_one();
        Ok(id)
    }

    /// A job (re)deployed under `job`: undoes [`SyncEngine::forget_job`].
    pub fn remember_job(&self, job: &str) {
        self.lock().forgotten.remove(job);
    }

    /// Lists the job's remote checkpoints, deletes what retention says, and refreshes the
    /// durable ids from what remains.
    pub async fn apply_retention(&self, job: &str, staged: &[Staged]) -> Result<(), UploadError> {
        let prefix = job_prefix(&self.remote.root, job);
        let listing = list_all(&self.remote, &prefix).await?;
        let checkpoints = group_checkpoints(&prefix, &listing);
        let in_flight: BTreeSet<u64> = staged
            .iter()
            .filter(|s| s.info.job == job)
            .map(|s| s.info.checkpoint_id)
            .collect();
        let deletions = plan_retention(
            &checkpoints,
            self.config.retain,
            unix_now(),
            self.config.orphan_grace.as_secs() as i64,
            &in_flight,
        );
        // Manifests first, all of them gone before any data file goes: an interrupted pass
        // never leaves a manifest whose files are missing.
        let (manifests, data): (Vec<_>, Vec<_>) = deletions
            .iter()
            .cloned()
            .partition(|p| p.filename() == Some(MANIFEST));
        delete_all(&self.remote, manifests).await?;
        delete_all(&self.remote, data).await?;
        let deleted: BTreeSet<&object_store::path::Path> = deletions.iter().collect();
        let retired: Vec<u64> = checkpoints
            .iter()
            .filter(|(_, c)| c.objects.iter().any(|o| deleted.contains(o)))
            .map(|(id, _)| *id)
            .collect();
        if !retired.is_empty() {
            log::debug!(
                "job {job}: retention deleted checkpoints {retired:?} ({} objects)",
                deletions.len()
            );
        }
        let remote: Vec<u64> = checkpoints
            .iter()
            .filter(|(_, c)| c.has_manifest && c.objects.iter().all(|o| !deleted.contains(o)))
            .map(|(id, _)| *id)
            .collect();
        let mut shared = self.lock();
        if shared.forgotten.contains(job) {
            return Ok(());
        }
        shared.durable.retain(|(j, _)| j != job);
        shared
            .durable
            .extend(remote.iter().map(|id| (job.to_string(), *id)));
        shared.listed.insert(job.to_string());
        let entry = shared.status.jobs.entry(job.to_string()).or_default();
        entry.last_durable = remote.last().copied().or(entry.last_durable);
        entry.remote = remote;
        Ok(())
    }
}

/// Attempts at removing a forgotten job's staging dir, and the pause after the first failed
/// one (doubled after each: 10 + 20 + 40 + 80 + 160 ms). Back-to-back attempts would all land
/// inside the same write of the detector or uploader; spread over 0.3 s, they outlast it.
const REMOVE_ATTEMPTS: u32 = 6;
const REMOVE_PAUSE: Duration = Duration::from_millis(10);

/// Removes `dir` with `remove`. The detector or uploader may be writing into it right now, so
/// "directory not empty" is retried after a growing pause; the error after the last attempt
/// names the dir and the attempts. A missing dir is removed already.
async fn remove_busy_dir(
    dir: &std::path::Path,
    mut remove: impl FnMut(&std::path::Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let mut pause = REMOVE_PAUSE;
    let mut attempt = 1;
    loop {
        let e = match remove(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        if e.kind() != ErrorKind::DirectoryNotEmpty {
            let message = format!("cannot remove {}: {e}", dir.display());
            return Err(Error::new(e.kind(), message));
        }
        if attempt == REMOVE_ATTEMPTS {
            let message = format!(
                "{} is still not empty after {attempt} attempts, something keeps writing into it: {e}",
                dir.display()
            );
            return Err(Error::new(e.kind(), message));
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
        attempt += 1;
    }
}

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// "the credentials were rejected; …" before an error that retrying alone will not fix.
fn advice_prefix(e: &UploadError) -> String {
    match e {
        UploadError::Store { source, .. } => advice(source).map(|a| format!("{a}; ")),
        _ => None,
    }
    .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checkpoints::local::tests::fake_checkpoint;
    use crate::checkpoints::remote::testing::FaultyStore;
    use object_store::ObjectStore;
    use std::path::Path;

    /// An engine over `store`, with Flink's dir and staging under `dir`.
    fn engine(store: &Arc<FaultyStore>, dir: &Path) -> SyncEngine {
        let config = SyncConfig {
            origin: Origin {
                cluster_id: "c1".into(),
                flink_version: "2.3.0".into(),
            },
            checkpoints_dir: dir.join("checkpoints"),
            staging_root: dir.join("staging"),
            retain: 3,
            rescan_interval: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(60),
            alert_after_failures: 3,
            upload: UploadSettings::default(),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
            rest: None,
        };
        SyncEngine::new(
            store.remote(),
            config,
            JobNames::default(),
            Withdrawn::default(),
        )
    }

    /// Stages Flink's checkpoint `id` of job `j` (Flink job `f`).
    fn stage_checkpoint(engine: &SyncEngine, id: u64) {
        let dir = fake_checkpoint(&engine.config.checkpoints_dir, "f", id, &[("state", b"s")]);
        let local = LocalCheckpoint {
            flink_job_id: "f".into(),
            id,
            dir,
        };
        stage(&local, "j", &engine.config.staging_root).unwrap();
    }

    /// Forgetting a job while something still writes into its staging dir for a moment, on a
    /// real filesystem: the dir ends removed.
    #[tokio::test]
    async fn forgetting_a_job_outlasts_a_brief_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FaultyStore::local(tmp.path());
        let engine = engine(&store, tmp.path());
        let dir = engine.config.staging_root.join("j");
        std::fs::create_dir_all(&dir).unwrap();
        // Writers as busy as can be, for a fixed time (they stop once the dir is gone).
        let until = std::time::Instant::now() + Duration::from_millis(150);
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    for n in 0.. {
                        if std::time::Instant::now() > until
                            || std::fs::File::create(dir.join(format!("f{w}-{n}"))).is_err()
                        {
                            break;
                        }
                    }
                })
            })
            .collect();
        while std::fs::read_dir(&dir).unwrap().count() < 100 {
            std::thread::yield_now();
        }
        let result = engine.forget_job("j").await;
        for w in writers {
            w.join().unwrap();
        }
        result.unwrap();
        assert!(!dir.exists());
    }

    /// A staging dir that stays busy: each attempt waits longer than the one before, and the
    /// error says which dir and how often it was tried.
    #[tokio::test]
    async fn a_busy_staging_dir_is_retried_with_growing_pauses_then_reported() {
        let dir = Path::new("/staging/j");
        let mut calls = Vec::new();
        let err = remove_busy_dir(dir, |_| {
            calls.push(std::time::Instant::now());
            Err(std::io::ErrorKind::DirectoryNotEmpty.into())
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::DirectoryNotEmpty);
        let err = err.to_string();
        assert!(
            err.contains("/staging/j") && err.contains("6 attempts"),
            "{err}"
        );
        assert_eq!(calls.len(), 6);
        let pauses: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
        for (pause, at_least) in pauses.iter().zip([10, 20, 40, 80, 160]) {
            assert!(*pause >= Duration::from_millis(at_least), "{pauses:?}");
        }
    }

    /// A staging dir that empties between attempts is removed; a missing one is no error.
    #[tokio::test]
    async fn a_staging_dir_that_frees_up_is_removed() {
        let mut failures = 2;
        remove_busy_dir(Path::new("/staging/j"), |_| {
            if failures == 0 {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            failures -= 1;
            Err(std::io::ErrorKind::DirectoryNotEmpty.into())
        })
        .await
        .unwrap();
        assert_eq!(failures, 0);
    }

    /// Staging that cannot be read after a publish must not make retention think nothing is
    /// in flight: it would delete the partial upload of a staged checkpoint as an orphan.
    #[tokio::test]
    async fn unreadable_staging_skips_retention_instead_of_deleting_what_is_in_flight() {
        let tmp = tempfile::tempdir().unwrap();
        let files = tmp.path().join("store");
        let store = FaultyStore::local(&files);
        let engine = engine(&store, tmp.path());
        stage_checkpoint(&engine, 2);
        stage_checkpoint(&engine, 3);
        // Checkpoint 3 was partly uploaded an hour ago (an earlier attempt): older than the
        // orphan grace, kept only because it is still staged.
        let partial = object_store::path::Path::from("c1/jobs/j/chk-3/data/_metadata");
        store
            .put(&partial, b"meta 3".to_vec().into())
            .await
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(files.join("c1/jobs/j/chk-3/data/_metadata"))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        // Publishing checkpoint 2's manifest leaves a stray file that makes listing the
        // staging fail.
        let staging = engine.config.staging_root.clone();
        store.before_put(move |key| {
            if key.filename() == Some(crate::checkpoints::layout::MANIFEST) {
                std::fs::write(staging.join("stray"), b"x").unwrap();
            }
        });

        assert!(engine.upload_step().await.unwrap());
        assert_eq!(engine.status().jobs["j"].last_durable, Some(2));
        store.head(&partial).await.unwrap();
    }

    /// Retention deletes every expired manifest before any data file, in bulk: a manifest that
    /// cannot be deleted leaves its checkpoint whole (still restorable), never a manifest that
    /// names missing files; the next pass finishes the job.
    #[tokio::test]
    async fn retention_takes_manifests_before_data_and_stops_at_a_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let files = tmp.path().join("store");
        let store = FaultyStore::local(&files);
        let engine = engine(&store, tmp.path());
        for id in 1..=3 {
            stage_checkpoint(&engine, id);
            assert!(engine.upload_step().await.unwrap());
        }
        let chk1 = files.join("c1/jobs/j/chk-1");
        store.fail_deletes("chk-1/manifest.json", 1);
        stage_checkpoint(&engine, 4);
        let failed = engine.upload_step().await.unwrap_err();
        assert!(
            failed.to_string().contains("chk-1/manifest.json"),
            "{failed}"
        );
        assert!(chk1.join("manifest.json").exists() && chk1.join("data/_metadata").exists());

        engine.apply_retention("j", &[]).await.unwrap();
        assert!(!chk1.join("manifest.json").exists() && !chk1.join("data/_metadata").exists());
        assert_eq!(engine.status().jobs["j"].remote, [2, 3, 4]);
    }
}
