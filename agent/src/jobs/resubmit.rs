//! Jobs that come back by themselves: after a JobManager start (it forgot its jobs) and on a
//! node that lost its disk (records come back from object storage). The one decision — where to
//! restore from — is the pure [`restore_candidates`] (its first entry: [`choose_restore`]).

use super::error::{io, store, JobError};
use super::manager::Jobs;
use super::record::{self, RemoteJob, RestoredFrom, RunState};
use crate::checkpoints::{
    candidates, checkpoint_id, local_dir, prune_restored, restore_first, scan_complete, CONCURRENCY,
};
use crate::events::{Event, JobResubmitted};
use std::path::PathBuf;
use std::time::Duration;

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

/// One line of `restore --dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRestore {
    pub name: String,
    /// Stopped on purpose: stays stopped until `jobs start`, which restores from `choice`
    /// (or the savepoint its stop took, when that is still on this node).
    pub stopped: bool,
    pub choice: RestoreChoice,
}

/// Where a re-submission would restore from if its first candidate verifies: the first of
/// [`restore_candidates`], [`RestoreChoice::Fresh`] when there is none.
pub fn choose_restore(local: Option<u64>, remote: Option<u64>) -> RestoreChoice {
    restore_candidates(local, remote.as_slice())
        .first()
        .copied()
        .unwrap_or(RestoreChoice::Fresh)
}

/// Every checkpoint a re-submission may restore from, in the one order they are tried: newest
/// first, local and remote together, so a corrupt remote checkpoint gives way to the next
/// newest one wherever it is — never to an older remote one while a newer local one exists.
/// Local wins a tie with remote: it needs no download and it is never older than what was
/// uploaded from it. The local one is not verified by a download, so it ends the list: nothing
/// older than it is ever worth trying. `remote` are the complete remote checkpoint ids.
pub fn restore_candidates(local: Option<u64>, remote: &[u64]) -> Vec<RestoreChoice> {
    let mut newer: Vec<u64> = remote
        .iter()
        .copied()
        .filter(|r| local.is_none_or(|l| *r > l))
        .collect();
    newer.sort_unstable_by(|a, b| b.cmp(a));
    newer.dedup();
    newer
        .into_iter()
        .map(RestoreChoice::Remote)
        .chain(local.map(RestoreChoice::Local))
        .collect()
}

/// How long a restore with a local checkpoint waits for the store's listing.
const REMOTE_CHECK: Duration = Duration::from_secs(5);

/// Flink job ids remembered per job: enough to find local checkpoints of recent runs.
const KEEP_JOB_IDS: usize = 5;
const TERMINAL: &[&str] = &["FAILED", "CANCELED", "FINISHED"];

impl Jobs {
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
        for RemoteJob {
            record,
            jar,
            stopped,
        } in fetched
        {
            // The run state first: a crash in between must not leave a stopped job startable.
            let run = RunState {
                stopped,
                ..Default::default()
            };
            self.records
                .write_run_state(&record.name, &run)
                .map_err(io("writing a recovered job state"))?;
            self.records
                .write(&record, &jar)
                .map_err(io("writing a recovered job record"))?;
            log::info!(
                "job {}: record recovered from {}{}",
                record.name,
                self.remote.url,
                if stopped { " (stopped)" } else { "" }
            );
            names.push(record.name);
        }
        Ok(names)
    }

    /// Makes the store hold every job declared on this node (record, jar, stopped marker): after
    /// a switch to another store the declarations must be where a replacement node looks.
    /// Idempotent; returns how many jobs were written.
    pub async fn publish_records(&self) -> Result<usize, JobError> {
        let names = self.records.names().map_err(io("listing job records"))?;
        for name in &names {
            let Some(record) = self
                .records
                .read(name)
                .map_err(io("reading a job record"))?
            else {
                continue;
            };
            let jar = std::fs::read(self.records.jar_path(name))
                .map_err(io(format!("reading the jar of `{name}`")))?;
            record::put_remote(&self.remote, &record, jar)
                .await
                .map_err(store(format!("recording job `{name}`")))?;
            let stopped = self
                .records
                .run_state(name)
                .map_err(io("reading a job state"))?
                .stopped;
            record::set_stopped_remote(&self.remote, name, stopped)
                .await
                .map_err(store(format!("recording whether `{name}` is stopped")))?;
        }
        Ok(names.len())
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
            if let Err(e) = &result {
                log::error!("job {name}: could not re-submit: {e}");
            }
            out.push((name, result));
        }
        Ok(out)
    }

    pub(super) async fn resubmit(
        &self,
        name: &str,
        known: &[crate::flinkrest::JobOverview],
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
        let alive = match self.submission_id(&record)? {
            // Three nodes: Flink knowing the job's id in any state means its HA and restart
            // strategy have it; the id cannot be submitted again anyway.
            Some(id) => known.iter().any(|j| j.jid == id),
            None => known.iter().any(|j| {
                run.flink_job_ids.last() == Some(&j.jid) && !TERMINAL.contains(&j.state.as_str())
            }),
        };
        if run.stopped || alive {
            return Ok(None);
        }
        let from = match self.savepoint_of(name, &run) {
            Some(savepoint) => Some(savepoint),
            None => self.newest_checkpoint(name, &run).await?,
        };
        let jar = std::fs::read(self.records.jar_path(name))
            .map_err(io(format!("reading the jar of job `{name}`")))?;
        let flink_job_id = self
            .submit(&record, jar, from.as_ref().map(|f| f.path.clone()))
            .await?;
        self.names.set(&flink_job_id, name);
        let keep = from.as_ref().map(|f| PathBuf::from(&f.path));
        if let Err(e) = prune_restored(&self.restore_root, name, keep.as_deref()) {
            log::warn!("job {name}: cannot free earlier restored checkpoints: {e}");
        }
        super::cluster::current(&mut run, &flink_job_id);
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
        JobResubmitted {
            job: name,
            from: from.as_ref().map(|f| (f.checkpoint_id, f.source.as_str())),
        }
        .emit();
        run.restored_from = from.clone();
        // Consumed: after this run's first checkpoint, the savepoint is older than its state.
        run.savepoint = None;
        self.records
            .write_run_state(name, &run)
            .map_err(io("writing the job state"))?;
        Ok(from)
    }

    async fn newest_checkpoint(
        &self,
        name: &str,
        run: &RunState,
    ) -> Result<Option<RestoredFrom>, JobError> {
        let local = self.newest_local(run);
        let remote = self
            .remote_candidates(name, local.as_ref().map(|(id, _)| *id))
            .await?;
        let order = restore_candidates(local.as_ref().map(|(id, _)| *id), &remote);
        // The remote candidates come first (each newer than the local one) and are tried in
        // order; the local one, last, is the next newest once every one of them is corrupt.
        let newer_remote: Vec<u64> = order
            .iter()
            .map_while(|c| match c {
                RestoreChoice::Remote(id) => Some(*id),
                _ => None,
            })
            .collect();
        let _phase = newer_remote.first().map(|id| {
            self.phase.enter(format!(
                "restoring job {name}: downloading and verifying checkpoint {id} from {}",
                self.remote.url
            ))
        });
        if let Some(r) = restore_first(
            &self.remote,
            name,
            &newer_remote,
            &self.restore_root,
            CONCURRENCY,
            &self.withdrawn,
        )
        .await?
        {
            return Ok(Some(RestoredFrom {
                checkpoint_id: r.checkpoint_id,
                source: "remote".into(),
                path: r.dir.display().to_string(),
            }));
        }
        let from = local.map(|(id, dir)| RestoredFrom {
            checkpoint_id: id,
            source: "local".into(),
            path: dir.display().to_string(),
        });
        if let (Some(from), false) = (&from, newer_remote.is_empty()) {
            log::warn!(
                "job {name}: every newer remote checkpoint is unusable; restoring local checkpoint {}",
                from.checkpoint_id
            );
        }
        Ok(from)
    }

    /// The complete remote checkpoints of `name`. With a local checkpoint in hand the store is
    /// only asked whether it holds a newer one (it does not, unless this node's disk was
    /// replaced since): a store that does not answer within [`REMOTE_CHECK`] must not keep the
    /// job down, so the local one is restored, as it would be after the listing. Without one,
    /// the store is the only source and is waited for (and the re-submission retried).
    async fn remote_candidates(
        &self,
        name: &str,
        local: Option<u64>,
    ) -> Result<Vec<u64>, JobError> {
        let listing = candidates(&self.remote, name);
        let Some(local) = local else {
            return Ok(listing.await?);
        };
        let why = match tokio::time::timeout(REMOTE_CHECK, listing).await {
            Ok(Ok(ids)) => return Ok(ids),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "{} did not answer within {} s",
                self.remote.url,
                REMOTE_CHECK.as_secs()
            ),
        };
        log::warn!(
            "job {name}: restoring local checkpoint {local} without checking the store for a newer one: {why}"
        );
        Ok(Vec::new())
    }

    /// The savepoint the last `jobs stop` took, if it is still there: it is newer than every
    /// checkpoint of the job. An unreadable one is passed over with a logged reason.
    fn savepoint_of(&self, name: &str, run: &RunState) -> Option<RestoredFrom> {
        let path = run.savepoint.as_ref()?;
        match checkpoint_id(local_dir(path)) {
            Ok(id) => Some(RestoredFrom {
                checkpoint_id: id,
                source: "savepoint".into(),
                path: path.clone(),
            }),
            Err(e) => {
                log::warn!("job {name}: not restoring from savepoint {path}: {e}");
                None
            }
        }
    }

    /// `jobs start`: a stopped job runs again, from the savepoint its stop took if it is still
    /// there, else from its newest checkpoint (a replacement node has only those).
    pub async fn start(&self, name: &str) -> Result<Option<RestoredFrom>, JobError> {
        let mut run = self.known(name)?;
        if !run.stopped {
            return Err(JobError::NotStopped { name: name.into() });
        }
        self.next_generation(name).await?;
        // Recorded first: a replacement node obeys the store's marker, so a job started here
        // while the store still says stopped would not run there. Nothing changed on failure.
        record::set_stopped_remote(&self.remote, name, false)
            .await
            .map_err(store(format!(
                "`{name}` stays stopped (run `flink-agent jobs start {name}` again once the store answers): recording that it runs again"
            )))?;
        run.stopped = false;
        self.records
            .write_run_state(name, &run)
            .map_err(io("writing the job state"))?;
        let known = self.rest.jobs().await?;
        self.resubmit(name, &known).await
    }

    /// What [`Jobs::resubmit_all`] would restore each declared job from, touching nothing
    /// (`flink-agent restore --dry-run`). Jobs only recorded remotely (node loss) count too.
    pub async fn plan(&self) -> Result<Vec<PlannedRestore>, JobError> {
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
            let stopped = run.stopped
                || record::is_stopped_remote(&self.remote, &name)
                    .await
                    .map_err(store("reading job records"))?;
            out.push(PlannedRestore {
                choice: choose_restore(local, remote),
                name,
                stopped,
            });
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checkpoints::testing::put_remote_checkpoint;
    use crate::checkpoints::{JobNames, Remote};
    use crate::config::ObjectStoreSection;
    use crate::jobs::JobRecord;

    /// A node with an empty disk, a local-directory store, and no Flink.
    fn node(store: &std::path::Path, disk: &std::path::Path) -> Jobs {
        let section = ObjectStoreSection {
            url: format!("file://{}", store.display()),
            ..Default::default()
        };
        let remote = Remote::build(&section, "c1").unwrap();
        let rest =
            crate::flinkrest::FlinkRest::new(&crate::flinkrest::Endpoint::new("127.0.0.1", 1))
                .unwrap();
        Jobs::new(
            &disk.join("state"),
            &disk.join("data"),
            remote,
            rest,
            JobNames::default(),
            None,
        )
    }

    /// `jobs` with a store nothing listens for (every request refused).
    fn offline(jobs: Jobs) -> Jobs {
        let unreachable = ObjectStoreSection {
            url: "s3://bucket/p".into(),
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            allow_http: true,
            credentials_file: None,
        };
        Jobs {
            remote: Remote::build(&unreachable, "c1").unwrap(),
            ..jobs
        }
    }

    /// `jobs` with a store whose link is silently dead: it accepts connections (the kernel's
    /// backlog) and never answers, for as long as the returned listener lives.
    fn silent(jobs: Jobs, disk: &std::path::Path) -> (Jobs, std::net::TcpListener) {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let creds = disk.join("creds.toml");
        std::fs::write(
            &creds,
            "aws_access_key_id = \"k\"\naws_secret_access_key = \"s\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let section = ObjectStoreSection {
            url: "s3://bucket/p".into(),
            region: Some("us-east-1".into()),
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            allow_http: true,
            credentials_file: Some(creds),
        };
        let jobs = Jobs {
            remote: Remote::build(&section, "c1").unwrap(),
            ..jobs
        };
        (jobs, silent)
    }

    /// Found by `benches/chaos.py` (`jobs stop` while the store's link was silently dead): the
    /// stop waited out the client's two-minute timeout on the stop marker, longer than the CLI
    /// waits. The marker gets [`record::MARKER_DEADLINE`], then the stop goes on and says the
    /// store did not record it.
    #[tokio::test]
    async fn a_stop_the_silent_store_cannot_record_is_reported_not_waited_for() {
        let store = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let jobs = node(store.path(), disk.path());
        stopped_job(&jobs, None);
        let (jobs, silent) = silent(jobs, disk.path());
        let t = std::time::Instant::now();
        let outcome = jobs.stop("paused").await.unwrap();
        let warning = outcome.warning.unwrap();
        assert!(warning.contains("no answer within 10 s"), "{warning}");
        assert!(
            t.elapsed() < record::MARKER_DEADLINE + Duration::from_secs(3),
            "{:?}",
            t.elapsed()
        );
        let e = jobs.start("paused").await.unwrap_err().to_string();
        assert!(e.contains("`paused` stays stopped"), "{e}");
        assert!(
            t.elapsed() < record::MARKER_DEADLINE * 2 + Duration::from_secs(3),
            "{:?}",
            t.elapsed()
        );
        drop(silent);
    }

    /// `paused` declared on this node, run once as `f1` and stopped (with `savepoint`).
    fn stopped_job(jobs: &Jobs, savepoint: Option<&str>) {
        jobs.records.write(&record("paused"), b"PK").unwrap();
        let run = RunState {
            flink_job_ids: vec!["f1".into()],
            stopped: true,
            savepoint: savepoint.map(str::to_string),
            ..Default::default()
        };
        jobs.records.write_run_state("paused", &run).unwrap();
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

    /// Stopping a stopped job asks nothing of Flink and records the stop again; a store that
    /// cannot be reached does not keep the operator from stopping, it is reported.
    #[tokio::test]
    async fn stopping_again_records_the_stop_and_an_outage_is_reported() {
        let store = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let jobs = node(store.path(), disk.path());
        stopped_job(&jobs, Some("file:/sp/savepoint-1"));
        let outcome = jobs.stop("paused").await.unwrap();
        assert!(
            outcome.already_stopped && outcome.warning.is_none(),
            "{outcome:?}"
        );
        assert_eq!(outcome.savepoint.as_deref(), Some("file:/sp/savepoint-1"));
        assert!(record::is_stopped_remote(&jobs.remote, "paused")
            .await
            .unwrap());

        let offline = offline(jobs);
        let outcome = offline.stop("paused").await.unwrap();
        let warning = outcome.warning.unwrap();
        assert!(
            warning.contains("a replacement node would start the job again; run `flink-agent jobs stop paused` again"),
            "{warning}"
        );
    }

    /// Found by `benches/chaos.py` (a JobManager killed while the store's link was silently
    /// dead): the restore waited 120 s on the listing, failed, and the job stayed down. With a
    /// local checkpoint the store gets [`REMOTE_CHECK`], then the local one is restored.
    #[tokio::test]
    async fn a_silent_store_does_not_hold_back_a_local_restore() {
        let store = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let jobs = node(store.path(), disk.path());
        let chk = disk.path().join("data/checkpoints/f1/chk-7");
        std::fs::create_dir_all(&chk).unwrap();
        std::fs::write(chk.join("_metadata"), b"m").unwrap();
        let (jobs, silent) = silent(jobs, disk.path());
        let run = RunState {
            flink_job_ids: vec!["f1".into()],
            ..Default::default()
        };
        let t = std::time::Instant::now();
        let from = jobs
            .newest_checkpoint("counter", &run)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((from.checkpoint_id, from.source.as_str()), (7, "local"));
        // It waited for the store (a refusal would have come at once), but no longer.
        assert!(t.elapsed() >= REMOTE_CHECK, "{:?}", t.elapsed());
        assert!(
            t.elapsed() < REMOTE_CHECK + Duration::from_secs(3),
            "{:?}",
            t.elapsed()
        );
        drop(silent);
    }

    /// Found by `benches/chaos.py` (`jobs stop` + `jobs start` inside a store outage): a start
    /// the store cannot record is refused with what to do, and the job stays stopped here too.
    #[tokio::test]
    async fn a_start_the_store_cannot_record_is_refused_and_changes_nothing() {
        let store = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let jobs = node(store.path(), disk.path());
        stopped_job(&jobs, None);
        let offline = offline(jobs);
        let e = offline.start("paused").await.unwrap_err().to_string();
        assert!(
            e.contains("`paused` stays stopped (run `flink-agent jobs start paused` again once the store answers)"),
            "{e}"
        );
        assert!(offline.records.run_state("paused").unwrap().stopped);
    }

    /// A job stopped on one node stays stopped on the node that replaces it, and `jobs start`
    /// is the way back; a job that was not stopped comes back by itself.
    #[tokio::test]
    async fn a_stopped_job_stays_stopped_after_node_loss() {
        let store = tempfile::tempdir().unwrap();
        let old = tempfile::tempdir().unwrap();
        let jobs = node(store.path(), old.path());
        for name in ["paused", "running"] {
            record::put_remote(&jobs.remote, &record(name), b"PK".to_vec())
                .await
                .unwrap();
        }
        record::set_stopped_remote(&jobs.remote, "paused", true)
            .await
            .unwrap();

        let fresh = tempfile::tempdir().unwrap();
        let replacement = node(store.path(), fresh.path());
        let plan = replacement.plan().await.unwrap();
        let stopped: Vec<_> = plan.iter().map(|p| (p.name.as_str(), p.stopped)).collect();
        assert_eq!(stopped, [("paused", true), ("running", false)]);

        assert_eq!(
            replacement.recover_records().await.unwrap(),
            ["paused", "running"]
        );
        assert!(replacement.records.run_state("paused").unwrap().stopped);
        assert!(!replacement.records.run_state("running").unwrap().stopped);
        let err = replacement.start("running").await.unwrap_err().to_string();
        assert_eq!(
            err,
            "job `running` is not stopped; `flink-agent jobs` shows its state"
        );

        record::delete_remote(&replacement.remote, "paused")
            .await
            .unwrap();
        assert!(!record::is_stopped_remote(&replacement.remote, "paused")
            .await
            .unwrap());
    }

    /// The newest remote checkpoint is corrupt and the next remote one is older than the local
    /// one: the local one wins, not the older remote one.
    #[tokio::test]
    async fn a_corrupt_newest_remote_checkpoint_falls_back_to_a_newer_local_one() {
        let store = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let jobs = node(store.path(), disk.path());
        put_remote_checkpoint(&jobs.remote, "counter", 9, b"meta 9", b"other").await;
        put_remote_checkpoint(&jobs.remote, "counter", 5, b"meta 5", b"meta 5").await;
        let local = crate::checkpoints::testing::fake_checkpoint(
            &jobs.checkpoints_dir,
            "f1",
            7,
            &[("state", b"s")],
        );
        let run = RunState {
            flink_job_ids: vec!["f1".into()],
            ..Default::default()
        };
        let from = jobs.newest_checkpoint("counter", &run).await.unwrap();
        assert_eq!(
            from,
            Some(RestoredFrom {
                checkpoint_id: 7,
                source: "local".into(),
                path: local.display().to_string(),
            })
        );

        // A newer remote one that verifies still wins over the local one.
        put_remote_checkpoint(&jobs.remote, "counter", 8, b"meta 8", b"meta 8").await;
        let from = jobs
            .newest_checkpoint("counter", &run)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((from.checkpoint_id, from.source.as_str()), (8, "remote"));
    }

    #[test]
    fn restore_prefers_local_unless_remote_is_newer() {
        assert_eq!(choose_restore(Some(7), Some(7)), RestoreChoice::Local(7));
        assert_eq!(choose_restore(Some(7), Some(5)), RestoreChoice::Local(7));
        assert_eq!(choose_restore(Some(5), Some(7)), RestoreChoice::Remote(7));
        assert_eq!(choose_restore(None, Some(3)), RestoreChoice::Remote(3));
        assert_eq!(choose_restore(None, None), RestoreChoice::Fresh);
    }

    #[test]
    fn candidates_are_one_newest_first_order_that_ends_at_the_local_one() {
        use RestoreChoice::{Local, Remote};
        // A corrupt 9 gives way to the local 7, never to the older remote 5.
        assert_eq!(restore_candidates(Some(7), &[9, 5]), [Remote(9), Local(7)]);
        assert_eq!(
            restore_candidates(Some(7), &[5, 9, 8]),
            [Remote(9), Remote(8), Local(7)]
        );
        // Local wins a tie: no download.
        assert_eq!(restore_candidates(Some(7), &[7, 5]), [Local(7)]);
        assert_eq!(restore_candidates(Some(3), &[]), [Local(3)]);
        // Without a local one every remote one is a candidate.
        assert_eq!(restore_candidates(None, &[5, 9]), [Remote(9), Remote(5)]);
        assert_eq!(restore_candidates(None, &[]), []);
    }
}
