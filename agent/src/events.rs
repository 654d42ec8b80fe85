//! Typed internal events that both log and count (Vector's model): what happened once (an upload,
//! a reload, a re-submission, a restore) is emitted as one value, whose [`Event::emit`] writes the
//! log line and bumps the counters, so a behaviour cannot be logged and forgotten by the metrics.
//! What is a state rather than an event (a process's state, the newest durable checkpoint, the
//! firewall's repairs) is not counted here: `/metrics` renders it from the same snapshots as
//! `status`.
//!
//! The counters live in one process-wide set ([`counters`]), like the `log` facade's logger: every
//! concern emits without being handed a registry, and `/metrics` registers the same families on
//! each scrape. Labels are bounded: declared job names (never Flink job ids), outcomes, sources.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::LazyLock;
use std::time::Duration;

/// `{result="..."}`
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// `{flink_job="..."}`: a declared job's name (`job` is Prometheus's own target label).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub flink_job: String,
}

/// `{source="local|remote|savepoint|none"}`
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// Every counted event, by family. Cheap to clone: clones share the values.
#[derive(Debug, Clone)]
pub struct Counters {
    /// `flink_agent_checkpoint_uploads_total{result="success|failure"}`
    pub uploads: Family<ResultLabel, Counter>,
    /// `flink_agent_checkpoint_upload_bytes_total{flink_job}`
    pub upload_bytes: Family<JobLabel, Counter>,
    /// `flink_agent_checkpoint_upload_duration_seconds`: one checkpoint, data and manifest.
    pub upload_duration: Histogram,
    /// `flink_agent_checkpoint_sync_lag_seconds`: from Flink's completion to durable (the RPO
    /// the sync adds).
    pub sync_lag: Histogram,
    /// `flink_agent_config_reloads_total{result="applied|partial|refused"}`
    pub reloads: Family<ResultLabel, Counter>,
    /// `flink_agent_job_resubmissions_total{flink_job}`: runs the agent submitted again by itself
    /// (after a JobManager start) or on `jobs start`.
    pub resubmissions: Family<JobLabel, Counter>,
    /// `flink_agent_job_restores_total{source}`: where those runs started from.
    pub restores: Family<SourceLabel, Counter>,
    /// `flink_agent_checkpoint_restore_download_bytes_total`
    pub restore_bytes: Counter,
    /// `flink_agent_checkpoint_restore_duration_seconds`: download and verification of one
    /// remote checkpoint.
    pub restore_duration: Histogram,
    /// `flink_agent_checkpoint_withdrawn_total`: damaged remote checkpoints restores met and
    /// deleted; one whose deletion failed is met, and counted, again by the next restore.
    pub withdrawn: Counter,
    /// `flink_agent_jobmanager_handovers_total{result="released|skipped|failed"}`: what the
    /// agent did when its JobManager crashed in a three-node cluster.
    pub handovers: Family<ResultLabel, Counter>,
}

/// Buckets from 50 ms to about 27 minutes: uploads and restores of small and large state.
fn seconds_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.05, 2.0, 16,
    ))
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| Counters {
    uploads: Family::default(),
    upload_bytes: Family::default(),
    upload_duration: seconds_buckets(),
    sync_lag: seconds_buckets(),
    reloads: Family::default(),
    resubmissions: Family::default(),
    restores: Family::default(),
    restore_bytes: Counter::default(),
    restore_duration: seconds_buckets(),
    withdrawn: Counter::default(),
    handovers: Family::default(),
});

/// The process-wide counters.
pub fn counters() -> &'static Counters {
    &COUNTERS
}

/// Something that happened: logged and counted together.
pub trait Event {
    fn emit(self);
}

/// A checkpoint became durable: its manifest is in the store.
#[derive(Debug)]
pub struct CheckpointDurable<'a> {
    pub job: &'a str,
    pub checkpoint_id: u64,
    pub files: usize,
    pub bytes: u64,
    pub took: Duration,
    /// Seconds from Flink's completion of the checkpoint to now.
    pub lag_secs: f64,
}

impl Event for CheckpointDurable<'_> {
    fn emit(self) {
        log::info!(
            target: "flink_agent::checkpoints",
            "job {}: checkpoint {} is durable ({} files, {} bytes, {:.2}s)",
            self.job,
            self.checkpoint_id,
            self.files,
            self.bytes,
            self.took.as_secs_f64()
        );
        let c = counters();
        c.uploads
            .get_or_create(&ResultLabel { result: "success" })
            .inc();
        c.upload_bytes
            .get_or_create(&JobLabel {
                flink_job: self.job.to_string(),
            })
            .inc_by(self.bytes);
        c.upload_duration.observe(self.took.as_secs_f64());
        c.sync_lag.observe(self.lag_secs.max(0.0));
    }
}

/// An upload attempt failed; the engine retries with back-off.
#[derive(Debug)]
pub struct CheckpointUploadFailed<'a> {
    pub attempt: u32,
    pub error: &'a str,
}

impl Event for CheckpointUploadFailed<'_> {
    fn emit(self) {
        log::warn!(
            target: "flink_agent::checkpoints",
            "checkpoint upload failed (attempt {}): {}",
            self.attempt,
            self.error
        );
        counters()
            .uploads
            .get_or_create(&ResultLabel { result: "failure" })
            .inc();
    }
}

/// A remote checkpoint was downloaded and every file verified, for a restore.
#[derive(Debug)]
pub struct CheckpointDownloaded<'a> {
    pub job: &'a str,
    pub checkpoint_id: u64,
    pub url: &'a str,
    pub dir: &'a std::path::Path,
    pub bytes: u64,
    pub took: Duration,
}

impl Event for CheckpointDownloaded<'_> {
    fn emit(self) {
        log::info!(
            target: "flink_agent::checkpoints",
            "job {}: restored checkpoint {} from {} into {} ({} bytes, {:.2}s)",
            self.job,
            self.checkpoint_id,
            self.url,
            self.dir.display(),
            self.bytes,
            self.took.as_secs_f64()
        );
        let c = counters();
        c.restore_bytes.inc_by(self.bytes);
        c.restore_duration.observe(self.took.as_secs_f64());
    }
}

/// A restore found remote checkpoint `checkpoint_id` damaged (`reason`) and deleted it from
/// the store; `failed` is why that deletion did not finish (the next restore tries again).
#[derive(Debug)]
pub struct CheckpointWithdrawn<'a> {
    pub job: &'a str,
    pub checkpoint_id: u64,
    pub url: &'a str,
    pub reason: &'a str,
    pub failed: Option<&'a str>,
}

impl Event for CheckpointWithdrawn<'_> {
    fn emit(self) {
        let (job, id, url, reason) = (self.job, self.checkpoint_id, self.url, self.reason);
        match self.failed {
            None => log::warn!(
                target: "flink_agent::checkpoints",
                "job {job}: remote checkpoint {id} in {url} is damaged ({reason}): skipped, and withdrawn from the store"
            ),
            Some(e) => log::warn!(
                target: "flink_agent::checkpoints",
                "job {job}: remote checkpoint {id} in {url} is damaged ({reason}): skipped; withdrawing it from the store failed ({e}), the next restore tries again"
            ),
        }
        counters().withdrawn.inc();
    }
}

/// The agent submitted a declared job again; `from` is where it restored from, as
/// `(checkpoint id, source)`, None when it started fresh.
#[derive(Debug)]
pub struct JobResubmitted<'a> {
    pub job: &'a str,
    pub from: Option<(u64, &'a str)>,
}

impl Event for JobResubmitted<'_> {
    fn emit(self) {
        let source = match self.from {
            Some((id, source)) => {
                log::info!(
                    target: "flink_agent::jobs",
                    "job {}: re-submitted from checkpoint {id} ({source})",
                    self.job
                );
                source
            }
            None => {
                log::info!(
                    target: "flink_agent::jobs",
                    "job {}: re-submitted fresh (no savepoint or checkpoint)",
                    self.job
                );
                "none"
            }
        };
        let c = counters();
        c.resubmissions
            .get_or_create(&JobLabel {
                flink_job: self.job.to_string(),
            })
            .inc();
        c.restores
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .inc();
    }
}

/// A reload went through every concern; `failed` lists those that could not apply their part.
#[derive(Debug)]
pub struct ReloadApplied<'a> {
    pub revision: &'a str,
    pub failed: &'a [String],
}

impl Event for ReloadApplied<'_> {
    fn emit(self) {
        let result = if self.failed.is_empty() {
            log::info!(
                target: "flink_agent::daemon",
                "configuration revision {} in force",
                self.revision
            );
            "applied"
        } else {
            log::error!(
                target: "flink_agent::daemon",
                "configuration revision {} in force, but not fully applied: {}",
                self.revision,
                self.failed.join("; ")
            );
            "partial"
        };
        counters()
            .reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}

/// A reload was refused: the configuration in force stays.
#[derive(Debug)]
pub struct ReloadRefused<'a> {
    pub error: &'a str,
}

impl Event for ReloadRefused<'_> {
    fn emit(self) {
        log::error!(target: "flink_agent::daemon", "{}", self.error);
        counters()
            .reloads
            .get_or_create(&ResultLabel { result: "refused" })
            .inc();
    }
}

/// What the agent did when this node's JobManager crashed in a three-node cluster.
#[derive(Debug)]
pub enum HandOver<'a> {
    /// The crashed JobManager led: its ZooKeeper session's nodes were deleted, so a standby
    /// leads at once.
    Released { session: i64, nodes: usize },
    /// Left to ZooKeeper's session timeout, and why.
    Skipped(&'a str),
    /// The release failed (the error): the session timeout decides.
    Failed(&'a str),
}

/// This node's JobManager crashed in a three-node cluster; `took` is the release's time.
#[derive(Debug)]
pub struct JobManagerHandOver<'a> {
    pub outcome: HandOver<'a>,
    pub took: Duration,
}

impl Event for JobManagerHandOver<'_> {
    fn emit(self) {
        let result = match self.outcome {
            HandOver::Released { session, nodes } => {
                log::warn!(
                    target: "flink_agent::zookeeper",
                    "the crashed JobManager led: its ZooKeeper session {session:#x} released ({nodes} nodes in {:.0} ms), a standby leads now rather than after the session timeout",
                    self.took.as_secs_f64() * 1000.0
                );
                "released"
            }
            HandOver::Skipped(why) => {
                log::info!(
                    target: "flink_agent::zookeeper",
                    "the crashed JobManager's leadership is left to ZooKeeper: {why}"
                );
                "skipped"
            }
            HandOver::Failed(e) => {
                log::warn!(
                    target: "flink_agent::zookeeper",
                    "could not release the crashed JobManager's leadership ({e}); a standby leads once its session expires"
                );
                "failed"
            }
        };
        counters()
            .handovers
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads(result: &'static str) -> u64 {
        counters()
            .uploads
            .get_or_create(&ResultLabel { result })
            .get()
    }

    /// Each event counts where `/metrics` reads it (other tests emit too: deltas only).
    #[test]
    fn events_count_what_they_log() {
        let (ok, failed) = (uploads("success"), uploads("failure"));
        let job = JobLabel {
            flink_job: "events-test".into(),
        };
        CheckpointDurable {
            job: "events-test",
            checkpoint_id: 7,
            files: 2,
            bytes: 1000,
            took: Duration::from_millis(300),
            lag_secs: 1.5,
        }
        .emit();
        CheckpointUploadFailed {
            attempt: 1,
            error: "store down",
        }
        .emit();
        assert_eq!(uploads("success"), ok + 1);
        assert_eq!(uploads("failure"), failed + 1);
        assert_eq!(counters().upload_bytes.get_or_create(&job).get(), 1000);
        JobResubmitted {
            job: "events-test",
            from: Some((7, "remote")),
        }
        .emit();
        assert_eq!(counters().resubmissions.get_or_create(&job).get(), 1);
    }
}
