//! Declared jobs in a three-node cluster.
//!
//! Flink's ZooKeeper HA keeps a submitted job running across JobManager failovers: the new
//! leader recovers it (same Flink job id, newest completed checkpoint). So the agents do not
//! re-submit after a JobManager start; they only
//!
//! - **declare each job once, cluster-wide**: the record in object storage is the truth, every
//!   agent mirrors it into its state dir ([`Jobs::mirror`]), so `jobs` and `status` on any node
//!   list every job and any node can stop, start or delete it;
//! - **submit under a deterministic Flink job id** ([`ha_job_id`]: cluster, incarnation, job,
//!   deployment, generation): every agent computes the same id, so a second submission of the
//!   same job — by another agent, or by one that lost its ZooKeeper session mid-way — is
//!   refused by Flink as a duplicate, and never runs twice;
//! - **submit what Flink's HA does not know**, and only in the owner agent: the jobs of a new
//!   incarnation (the whole cluster and its shared storage were lost), restored from the
//!   newest durable checkpoint in object storage, downloaded to the shared storage where every
//!   TaskManager reads it.

use super::error::{io, store, JobError};
use super::manager::Jobs;
use super::record::{self, JobRecord, RunState};
use crate::zookeeper::Coordination;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// What the jobs need of a three-node cluster.
#[derive(Debug, Clone)]
pub struct Ha {
    pub cluster_id: String,
    pub coordination: watch::Receiver<Coordination>,
}

impl Ha {
    /// The incarnation, or why jobs cannot be submitted yet.
    fn incarnation(&self) -> Result<String, JobError> {
        let c = self.coordination.borrow();
        c.incarnation.clone().ok_or_else(|| JobError::NotReady {
            why: c
                .problem
                .clone()
                .unwrap_or_else(|| "no ZooKeeper session yet".into()),
        })
    }

    pub fn is_owner(&self) -> bool {
        self.coordination.borrow().is_owner
    }
}

/// The Flink job id of `record` in incarnation `incarnation` of cluster `cluster_id`: 16 bytes
/// of SHA-256 over them, the job's name, its deployment time and its generation (`jobs start`
/// after a stop runs a new generation: the stopped one's id has reached a terminal state).
pub fn ha_job_id(cluster_id: &str, incarnation: &str, record: &JobRecord) -> String {
    let mut h = Sha256::new();
    for part in [
        "flink-agent job id v1",
        cluster_id,
        incarnation,
        &record.name,
        &record.deployed_at.to_string(),
        &record.generation.to_string(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Flink refused a submission because the job id is taken: the job was submitted already.
pub fn is_duplicate(e: &JobError) -> bool {
    matches!(e, JobError::Rest(crate::flinkrest::FlinkRestError::Refused { message, .. })
        if message.contains("DuplicateJobSubmissionException")
            || message.contains("DuplicateApplicationSubmissionException"))
}

impl Jobs {
    /// The Flink job id a submission of `record` uses now: deterministic in a three-node
    /// cluster (None on a single node: Flink picks one).
    pub(super) fn submission_id(&self, record: &JobRecord) -> Result<Option<String>, JobError> {
        match &self.ha {
            None => Ok(None),
            Some(ha) => Ok(Some(ha_job_id(&ha.cluster_id, &ha.incarnation()?, record))),
        }
    }

    /// Brings this node's job records to what object storage declares: new and changed jobs
    /// are fetched (with their jars), deleted ones removed, the stop marker and the Flink job
    /// id of each taken over. A run state's savepoint taken on this node is kept.
    pub async fn mirror(&self) -> Result<(), JobError> {
        let Some(ha) = &self.ha else { return Ok(()) };
        let incarnation = ha.incarnation().ok();
        let remote = record::fetch_remote_records(&self.remote)
            .await
            .map_err(store("reading job records"))?;
        for (rec, stopped) in &remote {
            let local = self
                .records
                .read(&rec.name)
                .map_err(io("reading a job record"))?;
            if local.as_ref() != Some(rec) {
                let jar = record::fetch_remote_jar(&self.remote, &rec.name)
                    .await
                    .map_err(store(format!("reading the jar of `{}`", rec.name)))?;
                self.records
                    .write(rec, &jar)
                    .map_err(io("writing a mirrored job record"))?;
                log::info!(
                    "job {}: declared in {}; mirrored",
                    rec.name,
                    self.remote.url
                );
            }
            let mut run = self
                .records
                .run_state(&rec.name)
                .map_err(io("reading a job state"))?;
            let before = run.clone();
            run.stopped = *stopped;
            if let Some(inc) = &incarnation {
                let id = ha_job_id(&ha.cluster_id, inc, rec);
                if run.flink_job_ids.last() != Some(&id) {
                    run.flink_job_ids.push(id.clone());
                }
                self.names.set(&id, &rec.name);
            }
            if run != before {
                self.records
                    .write_run_state(&rec.name, &run)
                    .map_err(io("writing a job state"))?;
            }
        }
        for name in self.records.names().map_err(io("listing job records"))? {
            if !remote.iter().any(|(r, _)| r.name == name) {
                log::info!(
                    "job {name}: no longer declared in {}; forgotten here",
                    self.remote.url
                );
                self.records
                    .remove(&name)
                    .map_err(io("removing a job record"))?;
            }
        }
        Ok(())
    }

    /// The owner's round: every declared, not stopped job Flink does not know (under its
    /// current id) is submitted, from its newest durable checkpoint. Flink knowing the job in
    /// any state is enough: its own HA and restart strategy run it from there.
    pub async fn submit_unknown(&self) -> Result<Vec<String>, JobError> {
        let known = self.rest.jobs().await?;
        let mut submitted = Vec::new();
        for name in self.records.names().map_err(io("listing job records"))? {
            let Some(rec) = self
                .records
                .read(&name)
                .map_err(io("reading a job record"))?
            else {
                continue;
            };
            let run = self
                .records
                .run_state(&name)
                .map_err(io("reading a job state"))?;
            let Some(id) = self.submission_id(&rec)? else {
                continue;
            };
            if run.stopped || known.iter().any(|j| j.jid == id) {
                continue;
            }
            log::info!("job {name}: Flink's HA does not know it (Flink job {id}); submitting it");
            match self.resubmit(&name, &known).await {
                Ok(from) => {
                    let from = from.map_or_else(
                        || "without a checkpoint".to_string(),
                        |f| format!("from checkpoint {} ({})", f.checkpoint_id, f.source),
                    );
                    log::info!("job {name}: submitted as Flink job {id} {from}");
                    submitted.push(name);
                }
                Err(e) if is_duplicate(&e) => {
                    log::info!("job {name}: Flink job {id} was submitted already");
                }
                Err(e) => log::error!("job {name}: could not submit: {e}"),
            }
        }
        Ok(submitted)
    }

    /// `jobs start` in a three-node cluster: the next generation, declared in object storage
    /// first so every agent computes its id.
    pub(super) async fn next_generation(&self, name: &str) -> Result<(), JobError> {
        if self.ha.is_none() {
            return Ok(());
        }
        let Some(mut rec) = self
            .records
            .read(name)
            .map_err(io("reading a job record"))?
        else {
            return Err(JobError::Unknown { name: name.into() });
        };
        rec.generation += 1;
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| JobError::Io {
            what: "encoding the job record".into(),
            source: std::io::Error::other(e),
        })?;
        self.remote
            .store
            .put(&record::remote_record(&self.remote, name), json.into())
            .await
            .map_err(store(format!("recording the next run of `{name}`")))?;
        let jar = std::fs::read(self.records.jar_path(name))
            .map_err(io(format!("reading the jar of job `{name}`")))?;
        self.records
            .write(&rec, &jar)
            .map_err(io("writing the job record"))
    }
}

/// A run state that names `id` as the job's current Flink job.
pub(super) fn current(run: &mut RunState, id: &str) {
    if run.flink_job_ids.last().map(String::as_str) != Some(id) {
        run.flink_job_ids.push(id.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(generation: u64) -> JobRecord {
        JobRecord {
            name: "counter".into(),
            jar_name: "job.jar".into(),
            jar_sha256: "00".into(),
            entry_class: None,
            parallelism: None,
            args: Vec::new(),
            flink_config: Default::default(),
            deployed_at: 1_700_000_000,
            generation,
        }
    }

    #[test]
    fn every_agent_computes_the_same_id_and_it_changes_with_incarnation_and_generation() {
        let a = ha_job_id("prod", "3f2a9c1d0b7e", &record(0));
        assert_eq!(a, ha_job_id("prod", "3f2a9c1d0b7e", &record(0)));
        assert_eq!(a.len(), 32, "a Flink JobID: 16 bytes in hex");
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, ha_job_id("prod", "000000000000", &record(0)));
        assert_ne!(a, ha_job_id("prod", "3f2a9c1d0b7e", &record(1)));
        assert_ne!(a, ha_job_id("test", "3f2a9c1d0b7e", &record(0)));
    }

    #[test]
    fn flinks_duplicate_refusals_are_recognised() {
        let refused = |message: &str| {
            JobError::Rest(crate::flinkrest::FlinkRestError::Refused {
                what: "running jar x".into(),
                status: 500,
                message: message.into(),
            })
        };
        assert!(is_duplicate(&refused("org.apache.flink.runtime.rest.handler.RestHandlerException: Could not execute application. (root cause: org.apache.flink.runtime.client.DuplicateApplicationSubmissionException: Application has already been submitted.)")));
        assert!(is_duplicate(&refused("(root cause: org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been submitted.)")));
        assert!(!is_duplicate(&refused(
            "java.lang.IllegalStateException: boom"
        )));
    }
}
