//! `GET /metrics` (the agent's TCP listener) and `GET /v1/metrics` (the socket): Prometheus
//! metrics rendered with `prometheus-client` from the very [`AgentStatus`] that `status` prints,
//! so the two can never disagree, plus the counters of [`crate::events`] for what a snapshot
//! cannot hold (bytes uploaded, reloads refused, restores by source).
//!
//! Conventions (prometheus.io "Metric and label naming"): the prefix `flink_agent_`, base units
//! (`_seconds`, `_bytes`), `_total` on counters, timestamps rather than ages (alert on
//! `time() - x`), enumerations as a `state` label with value 0 or 1, and bounded labels only:
//! process names, declared job names (never a Flink job id), outcomes. Scrapers that ask for
//! OpenMetrics get it as the library writes it; everyone else (curl, `promtool check metrics`)
//! the classic text format, which differs in counter family names and the `# EOF` line.

use crate::status::{AgentStatus, PLANS_MIB};
use crate::supervisor::ProcessState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// What a scraper may ask for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// OpenMetrics when `Accept` names it (Prometheus does), the classic text format otherwise.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Flink's job states (and the agent's own STOPPED and UNKNOWN), the values of
/// `flink_agent_job_state{state}`.
pub const JOB_STATES: &[&str] = &[
    "initializing",
    "created",
    "running",
    "failing",
    "failed",
    "cancelling",
    "canceled",
    "finished",
    "restarting",
    "suspended",
    "reconciling",
    "submitted",
    "stopped",
    "unknown",
];

const PROCESS_STATES: [ProcessState; 7] = [
    ProcessState::Stopped,
    ProcessState::Starting,
    ProcessState::Running,
    ProcessState::Unhealthy,
    ProcessState::BackingOff,
    ProcessState::Failed,
    ProcessState::Stopping,
];

type Labels = Vec<(&'static str, String)>;

/// One scrape's registry, filled from a status snapshot.
struct Scrape(Registry);

impl Scrape {
    /// A gauge family; `samples` may be empty (the family is then left out).
    fn gauge(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, f64)>) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let mut any = false;
        for (labels, value) in samples {
            family.get_or_create(&labels).set(value);
            any = true;
        }
        if any {
            self.0.register(name, sentence(help), family);
        }
    }

    /// One unlabelled gauge.
    fn value(&mut self, name: &str, help: &str, value: f64) {
        self.gauge(name, help, [(Vec::new(), value)]);
    }

    /// A counter family from values a snapshot holds (`name` without `_total`).
    fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let family = Family::<Labels, Counter>::default();
        let mut any = false;
        for (labels, value) in samples {
            family.get_or_create(&labels).inc_by(value);
            any = true;
        }
        if any {
            self.0.register(name, sentence(help), family);
        }
    }
}

/// The library ends every HELP text with a period itself.
fn sentence(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn job(name: &str) -> Labels {
    vec![("flink_job", name.to_string())]
}

/// The whole exposition for `status`, in `format`.
pub fn render(status: &AgentStatus, format: Format) -> String {
    let mut s = Scrape(Registry::default());
    node(&mut s, status);
    processes(&mut s, status);
    jobs(&mut s, status);
    checkpoints(&mut s, status);
    firewall(&mut s, status);
    tls(&mut s, status);
    cluster(&mut s, status);
    events(&mut s.0);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &s.0);
    match format {
        Format::OpenMetrics => out,
        Format::Text => to_text_format(&out),
    }
}

fn node(s: &mut Scrape, st: &AgentStatus) {
    s.gauge(
        "flink_agent_build_info",
        "The agent's version and the Flink version it runs; always 1.",
        [(
            vec![
                ("version", st.agent_version.clone()),
                (
                    "flink_version",
                    st.flink_version.clone().unwrap_or_default(),
                ),
            ],
            1.0,
        )],
    );
    s.value(
        "flink_agent_ready",
        "1 while the JobManager and the TaskManager are both healthy.",
        flag(st.ready),
    );
    s.gauge(
        "flink_agent_config_info",
        "The configuration revision in force (short SHA-256 of the file); always 1.",
        [(vec![("revision", st.config.revision.clone())], 1.0)],
    );
    s.value(
        "flink_agent_config_loaded_timestamp_seconds",
        "When the configuration in force was loaded.",
        st.config.loaded_at as f64,
    );
    s.value(
        "flink_agent_config_reload_refused",
        "1 while the last reload was refused or not fully applied (the configuration in force stays).",
        flag(st.config.last_reload_error.is_some()),
    );
    s.value(
        "flink_agent_plan_memory_bytes",
        "The VM plan's memory Flink's memory is derived from.",
        f64::from(st.plan.memory_mib) * 1024.0 * 1024.0,
    );
    s.value(
        "flink_agent_plan_vcpus",
        "The VM plan's vCPUs (the TaskManager's CPU resource).",
        f64::from(st.plan.vcpus),
    );
    if let Some(o) = &st.overview {
        s.value(
            "flink_agent_flink_taskmanagers",
            "TaskManagers registered with the JobManager (Flink's /overview).",
            f64::from(o.taskmanagers),
        );
        s.value(
            "flink_agent_flink_task_slots",
            "Task slots of the registered TaskManagers (Flink's /overview).",
            f64::from(o.slots_total),
        );
        s.value(
            "flink_agent_flink_task_slots_available",
            "Free task slots (Flink's /overview).",
            f64::from(o.slots_available),
        );
    }
    if let Some(advice) = st.heap_advice() {
        s.value(
            "flink_agent_taskmanager_heap_bytes",
            "The TaskManager's task heap, where the HashMap state backend keeps all state.",
            advice.heap_bytes as f64,
        );
        s.value(
            "flink_agent_plan_recommended_memory_bytes",
            &format!(
                "The smallest plan ({} MiB) whose TaskManager heap keeps the jobs' state under half of it; above flink_agent_plan_memory_bytes: scale up.",
                PLANS_MIB.map(|p| p.to_string()).join(", ")
            ),
            f64::from(advice.recommended_mib) * 1024.0 * 1024.0,
        );
    }
}

fn processes(s: &mut Scrape, st: &AgentStatus) {
    let name = |p: &crate::supervisor::ProcessStatus| vec![("process", p.name.clone())];
    s.gauge(
        "flink_agent_process_state",
        "1 for the state each Flink process is in (the supervisor's state machine), 0 for the others.",
        st.processes.iter().flat_map(|p| {
            PROCESS_STATES.iter().map(move |state| {
                let mut labels = name(p);
                labels.push(("state", state.name().to_string()));
                (labels, flag(p.state == *state))
            })
        }),
    );
    s.counter(
        "flink_agent_process_restarts",
        "Restarts of the process by this agent (crashes, failed health checks, config changes).",
        st.processes
            .iter()
            .map(|p| (name(p), u64::from(p.restarts))),
    );
    s.gauge(
        "flink_agent_process_start_time_seconds",
        "When the running process started, from the kernel (adopted processes keep theirs).",
        st.processes
            .iter()
            .filter_map(|p| Some((name(p), p.started_at? as f64))),
    );
    s.gauge(
        "flink_agent_process_failure_budget_remaining",
        "Failures the process may still have within supervisor.restart_window_secs before it is marked failed.",
        st.processes
            .iter()
            .map(|p| (name(p), f64::from(p.budget_remaining))),
    );
}

fn jobs(s: &mut Scrape, st: &AgentStatus) {
    s.gauge(
        "flink_agent_job_state",
        "1 for the state each declared job is in (Flink's, or stopped/unknown), 0 for the others.",
        st.jobs.iter().flat_map(|j| {
            let current = j.state.to_ascii_lowercase();
            JOB_STATES.iter().map(move |state| {
                let mut labels = job(&j.name);
                labels.push(("state", state.to_string()));
                (labels, flag(current == *state))
            })
        }),
    );
    s.gauge(
        "flink_agent_job_state_bytes",
        "Size of the job's newest completed checkpoint: with the HashMap backend, about the state it keeps on the TaskManager's heap.",
        st.jobs
            .iter()
            .filter_map(|j| Some((job(&j.name), j.state_bytes? as f64))),
    );
    s.gauge(
        "flink_agent_checkpoint_completed_id",
        "Id of the job's newest checkpoint Flink completed.",
        st.jobs
            .iter()
            .filter_map(|j| Some((job(&j.name), j.last_completed_checkpoint? as f64))),
    );
    s.gauge(
        "flink_agent_checkpoint_completed_timestamp_seconds",
        "When Flink completed the job's newest checkpoint.",
        st.jobs
            .iter()
            .filter_map(|j| Some((job(&j.name), j.last_completed_at? as f64))),
    );
}

fn checkpoints(s: &mut Scrape, st: &AgentStatus) {
    s.value(
        "flink_agent_checkpoint_interval_seconds",
        "advanced.checkpoint_interval_ms: how often Flink checkpoints.",
        st.plan.checkpoint_interval_ms as f64 / 1000.0,
    );
    let Some(sync) = &st.checkpoints else {
        return;
    };
    // Jobs the sync knows: declared ones by name; others (undeclared) are left out, since
    // their key is a Flink job id.
    let declared = |name: &&String| st.jobs.iter().any(|j| &j.name == *name);
    s.gauge(
        "flink_agent_checkpoint_durable_id",
        "Id of the job's newest checkpoint with a manifest in object storage.",
        sync.jobs
            .iter()
            .filter(|(n, _)| declared(n))
            .filter_map(|(n, j)| Some((job(n), j.last_durable? as f64))),
    );
    s.gauge(
        "flink_agent_checkpoint_durable_timestamp_seconds",
        "When Flink completed the job's newest durable checkpoint: the point a node loss falls back to.",
        sync.jobs
            .iter()
            .filter(|(n, _)| declared(n))
            .filter_map(|(n, j)| Some((job(n), j.last_durable_completed_at? as f64))),
    );
    s.value(
        "flink_agent_checkpoint_uploads_pending",
        "Completed checkpoints staged and waiting for upload.",
        sync.pending.len() as f64,
    );
    s.value(
        "flink_agent_checkpoint_upload_consecutive_failures",
        "Failed upload attempts since the last success (uploads retry forever).",
        f64::from(sync.consecutive_failures),
    );
}

fn firewall(s: &mut Scrape, st: &AgentStatus) {
    let f = &st.firewall;
    s.value(
        "flink_agent_firewall_enabled",
        "firewall.enabled of the configuration in force.",
        flag(f.enabled),
    );
    s.value(
        "flink_agent_firewall_enforced",
        "1 while the agent's nftables table is in force (0: enabled but nft failed, see status).",
        flag(f.enabled && f.last_error.is_none() && f.last_applied.is_some()),
    );
    s.value(
        "flink_agent_firewall_in_sync",
        "1 when the live table matched the desired one at the last check.",
        flag(f.in_sync),
    );
    s.counter(
        "flink_agent_firewall_drift_repairs",
        "Times the live table differed from the desired one and was repaired.",
        [(Vec::new(), f.repairs)],
    );
    if let Some(at) = f.last_checked {
        s.value(
            "flink_agent_firewall_last_check_timestamp_seconds",
            "When the live table was last compared with the desired one.",
            at as f64,
        );
    }
}

/// TLS: on or off, each certificate's end (the expiry alert's input), refused material.
fn tls(s: &mut Scrape, st: &AgentStatus) {
    let t = &st.tls;
    s.value(
        "flink_agent_tls_enabled",
        "tls.enabled of the configuration in force.",
        flag(t.enabled),
    );
    if !t.enabled {
        return;
    }
    s.gauge(
        "flink_agent_tls_certificate_expiry_timestamp_seconds",
        "When each certificate in force ends (cert: node, rest, internal CA, REST client CA, agent client).",
        t.certificates
            .iter()
            .map(|c| (vec![("cert", c.role.clone())], c.not_after_unix as f64)),
    );
    s.value(
        "flink_agent_tls_material_refused",
        "1 while new TLS material was refused and Flink keeps the certificates in force.",
        flag(!t.refused.is_empty()),
    );
}

/// Three-node clusters: the ZooKeeper quorum, each node's ZooKeeper role, the JobManager leader.
/// Node labels are the cluster's three addresses (bounded).
fn cluster(s: &mut Scrape, st: &AgentStatus) {
    let Some(c) = &st.cluster else {
        return;
    };
    s.value(
        "flink_agent_zookeeper_quorum_healthy",
        "1 while a majority of the cluster's ZooKeeper servers serve, one of them as leader.",
        flag(c.quorum_healthy),
    );
    s.gauge(
        "flink_agent_zookeeper_role",
        "Each node's ZooKeeper server role as this agent sees it (1 for the current role).",
        c.nodes.iter().map(|n| {
            (
                vec![
                    ("node", n.address.clone()),
                    ("role", n.zookeeper.name().to_string()),
                ],
                1.0,
            )
        }),
    );
    s.gauge(
        "flink_agent_jobmanager_leader",
        "1 for the node whose JobManager leads the cluster, 0 for the others.",
        c.nodes.iter().map(|n| {
            let leads = n.jobmanager == "leader";
            (vec![("node", n.address.clone())], flag(leads))
        }),
    );
}

/// The event counters ([`crate::events`]), the same families every scrape.
fn events(r: &mut Registry) {
    let c = crate::events::counters().clone();
    r.register(
        "flink_agent_checkpoint_uploads",
        sentence("Checkpoint upload attempts, by result."),
        c.uploads,
    );
    r.register(
        "flink_agent_checkpoint_upload_bytes",
        sentence("Bytes of checkpoint data made durable, per declared job."),
        c.upload_bytes,
    );
    r.register(
        "flink_agent_checkpoint_upload_duration_seconds",
        sentence("Time to make one checkpoint durable (data files, then its manifest)."),
        c.upload_duration,
    );
    r.register(
        "flink_agent_checkpoint_sync_lag_seconds",
        sentence("Time from Flink completing a checkpoint to its being durable."),
        c.sync_lag,
    );
    r.register(
        "flink_agent_config_reloads",
        sentence("Reloads by result: applied, partial (a concern failed), refused (invalid file)."),
        c.reloads,
    );
    r.register(
        "flink_agent_jobmanager_handovers",
        sentence(
            "Crashes of this node's JobManager in a three-node cluster, by what the agent did: released (its leadership handed over at once), skipped (it did not lead, or too late), failed.",
        ),
        c.handovers,
    );
    r.register(
        "flink_agent_job_resubmissions",
        sentence(
            "Declared jobs the agent submitted again (after a JobManager start, or jobs start).",
        ),
        c.resubmissions,
    );
    r.register(
        "flink_agent_job_restores",
        sentence(
            "Re-submissions by where they restored from: local, remote, savepoint, none (fresh).",
        ),
        c.restores,
    );
    r.register(
        "flink_agent_checkpoint_restore_download_bytes",
        sentence("Bytes of remote checkpoints downloaded and verified for restores."),
        c.restore_bytes,
    );
    r.register(
        "flink_agent_checkpoint_restore_duration_seconds",
        sentence("Time to download and verify one remote checkpoint for a restore."),
        c.restore_duration,
    );
    r.register(
        "flink_agent_checkpoint_withdrawn",
        sentence("Damaged remote checkpoints (a file missing, or of another size or content than its manifest says) restores met and deleted from the store."),
        c.withdrawn,
    );
}

/// OpenMetrics as the classic text format: counter families are named with `_total` there,
/// and `# UNIT` and `# EOF` do not exist.
fn to_text_format(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoints::SyncStatus;
    use crate::jobs::JobStatus;
    use crate::status::{ConfigStatus, PlanStatus};
    use crate::supervisor::ProcessStatus;

    fn sample() -> AgentStatus {
        let mut sync = SyncStatus::default();
        sync.jobs.insert(
            "counter".into(),
            crate::checkpoints::JobSync {
                last_durable: Some(41),
                last_durable_completed_at: Some(1_700_000_040),
                ..Default::default()
            },
        );
        AgentStatus {
            node_id: "node-1".into(),
            agent_version: "0.1.0".into(),
            flink_version: Some("2.3.0".into()),
            ready: true,
            config: ConfigStatus {
                revision: "3f2a9c1d0b7e".into(),
                loaded_at: 1_700_000_000,
                ..Default::default()
            },
            processes: vec![ProcessStatus {
                name: "jobmanager".into(),
                state: ProcessState::Running,
                pid: Some(4242),
                restarts: 2,
                started_at: Some(1_700_000_001),
                uptime_secs: None,
                adopted: false,
                last_exit: None,
                reason: None,
                budget_remaining: 3,
                heap_bytes: None,
            }],
            jobs: vec![JobStatus {
                name: "counter".into(),
                flink_job_id: Some("a1b2c3".into()),
                state: "RUNNING".into(),
                last_completed_checkpoint: Some(42),
                ..Default::default()
            }],
            checkpoints: Some(sync),
            plan: PlanStatus {
                memory_mib: 4096,
                vcpus: 2,
                auto: None,
                checkpoint_interval_ms: 10_000,
            },
            ..Default::default()
        }
    }

    #[test]
    fn certificates_and_the_three_node_cluster_are_series_once_they_exist() {
        let off = render(&sample(), Format::Text);
        assert!(off.contains("flink_agent_tls_enabled 0.0"), "{off}");
        assert!(!off.contains("flink_agent_tls_certificate_expiry") && !off.contains("zookeeper"));
        let mut st = sample();
        st.tls.enabled = true;
        st.tls.certificates = vec![crate::tls::CertificateView {
            role: "node".into(),
            not_after_unix: 1_800_000_000,
            ..Default::default()
        }];
        st.cluster = Some(crate::zookeeper::ClusterStatus {
            quorum_healthy: true,
            nodes: vec![crate::zookeeper::NodeStatus {
                id: Some("node-1".into()),
                address: "10.0.0.1".into(),
                zookeeper: crate::zookeeper::Role::Follower,
                jobmanager: "leader".into(),
                taskmanager_registered: true,
            }],
            ..Default::default()
        });
        let text = render(&st, Format::Text);
        for line in [
            "flink_agent_tls_certificate_expiry_timestamp_seconds{cert=\"node\"} 1800000000.0",
            "flink_agent_tls_material_refused 0.0",
            "flink_agent_zookeeper_quorum_healthy 1.0",
            "flink_agent_zookeeper_role{node=\"10.0.0.1\",role=\"follower\"} 1.0",
            "flink_agent_jobmanager_leader{node=\"10.0.0.1\"} 1.0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn the_text_format_has_the_snapshot_s_values_and_no_flink_job_id() {
        let text = render(&sample(), Format::Text);
        for line in [
            "flink_agent_ready 1.0",
            "flink_agent_build_info{version=\"0.1.0\",flink_version=\"2.3.0\"} 1.0",
            "flink_agent_process_state{process=\"jobmanager\",state=\"running\"} 1.0",
            "flink_agent_process_state{process=\"jobmanager\",state=\"failed\"} 0.0",
            "# TYPE flink_agent_process_restarts_total counter",
            "flink_agent_process_restarts_total{process=\"jobmanager\"} 2",
            "flink_agent_process_start_time_seconds{process=\"jobmanager\"} 1700000001.0",
            "flink_agent_job_state{flink_job=\"counter\",state=\"running\"} 1.0",
            "flink_agent_checkpoint_durable_id{flink_job=\"counter\"} 41.0",
            "flink_agent_checkpoint_durable_timestamp_seconds{flink_job=\"counter\"} 1700000040.0",
            "flink_agent_checkpoint_interval_seconds 10.0",
            "flink_agent_config_info{revision=\"3f2a9c1d0b7e\"} 1.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("a1b2c3"), "a Flink job id is a label value");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }

    #[test]
    fn openmetrics_is_what_the_library_writes() {
        let om = render(&sample(), Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE flink_agent_process_restarts counter\n"));
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
    }
}
