//! Jobs that come back by themselves: after a JobManager start (it forgot its jobs) and on a
//! node that lost its disk (records come back from object storage). The one decision — where to
//! restore from — is the pure [`choose_restore`].

use super::error::{io, store, JobError};
use super::manager::Jobs;
use super::record::{self, RestoredFrom, RunState};
use crate::checkpoints::local::scan_complete;
use crate::checkpoints::restore::{candidates, restore_newest, CONCURRENCY};
use std::path::PathBuf;

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
                match restore_newest(&self.remote, name, &self.restore_root, CONCURRENCY).await? {
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
