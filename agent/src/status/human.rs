//! `flink-agent status` for people: the answer to "is my node fine, and if not, why" in one
//! screen, with the same facts as the JSON form.

use super::AgentStatus;
use crate::firewall::FirewallStatus;
use crate::flinkrest::FlinkOverview;
use crate::supervisor::{ProcessState, ProcessStatus};
use crate::zookeeper::ClusterStatus;
use std::fmt::Write;

/// Shown for a missing value, so table columns never collapse.
const NONE: &str = "-";

impl AgentStatus {
    /// A multi-line report for a terminal, ending with a newline: the verdict first, then
    /// where to look, then the details.
    pub fn render_human(&self) -> String {
        self.render_human_at(crate::procfs::unix_now())
    }

    /// [`Self::render_human`] as of `now` (Unix seconds).
    pub fn render_human_at(&self, now: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.verdict(now));
        if !self.web_ui.is_empty() {
            let _ = writeln!(out, "web UI: {}", self.web_ui);
        }
        for step in self.next_steps() {
            let _ = writeln!(out, "next: {step}");
        }
        if let Some(advice) = self.heap_advice().filter(|a| a.scale_up) {
            let _ = writeln!(
                out,
                "warning: the jobs' state ({}) is over half the TaskManager's heap ({}): scale the VM up to the {} MiB plan before it runs out",
                bytes(advice.state_bytes),
                bytes(advice.heap_bytes),
                advice.recommended_mib
            );
        }
        if let Some(phase) = &self.phase {
            let _ = writeln!(out, "now: {phase}");
        }
        out.push('\n');
        let flink = self.flink_version.as_deref().unwrap_or("unknown");
        let _ = writeln!(out, "node {}, cluster {}", self.node_id, self.cluster_id);
        let _ = writeln!(out, "agent {}, Flink {flink}", self.agent_version);
        let config = &self.config;
        let _ = writeln!(
            out,
            "config: revision {} ({})",
            config.revision, config.path
        );
        if let Some(refused) = &config.last_reload_error {
            let _ = writeln!(
                out,
                "  last reload refused, still on this revision: {refused}"
            );
        }
        if self.plan.memory_mib > 0 {
            let auto = self
                .plan
                .auto
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "plan: {} MiB, {} vCPU(s){auto}",
                self.plan.memory_mib, self.plan.vcpus
            );
        }
        if let Some(listen) = &self.metrics_listen {
            let _ = writeln!(out, "metrics: http://{listen}/metrics");
        }
        out.push('\n');
        out.push_str(&process_table(&self.processes));
        out.push('\n');
        if let Some(cluster) = &self.cluster {
            out.push_str(&cluster_section(cluster));
            out.push('\n');
        }
        let _ = writeln!(out, "{}", overview_line(self.overview.as_ref()));
        out.push_str(&crate::jobs::render_human(
            &self.jobs,
            self.checkpoints.as_ref(),
        ));
        let _ = writeln!(out, "{}", firewall_line(&self.firewall));
        let _ = writeln!(out, "{}", self.tls.line());
        let last_error = self.last_error.as_deref().unwrap_or("none");
        let _ = writeln!(out, "last error: {last_error}");
        out
    }

    /// One line: ready or not, TaskManagers and slots, jobs running, the newest durable
    /// checkpoint's age (the recovery point a node loss would fall back to).
    pub fn verdict(&self, now: u64) -> String {
        if !self.ready {
            let waiting: Vec<_> = self
                .processes
                .iter()
                .filter(|p| p.state != ProcessState::Running)
                .cloned()
                .collect();
            return format!("✗ NOT READY: {}", crate::supervisor::summary(&waiting));
        }
        let mut parts = Vec::new();
        match &self.overview {
            Some(o) => parts.push(format!(
                "{} TaskManager(s), {} slot(s) ({} free)",
                o.taskmanagers, o.slots_total, o.slots_available
            )),
            None => parts.push("Flink's figures not in yet".to_string()),
        }
        let declared: Vec<_> = self.jobs.iter().filter(|j| j.state != "STOPPED").collect();
        if self.jobs.is_empty() {
            let running = self.overview.as_ref().map_or(0, |o| o.jobs_running);
            parts.push(format!("{running} job(s) running, none declared"));
        } else {
            let running = declared.iter().filter(|j| j.state == "RUNNING").count();
            parts.push(format!(
                "{running}/{} declared job(s) running",
                declared.len()
            ));
        }
        let newest = self.checkpoints.as_ref().and_then(|s| {
            s.jobs
                .values()
                .filter_map(|j| j.last_durable_completed_at.or(j.last_durable_at))
                .max()
        });
        match newest {
            Some(at) => parts.push(format!(
                "newest durable checkpoint {} old",
                format_uptime(now.saturating_sub(at))
            )),
            None if !self.jobs.is_empty() => parts.push("no durable checkpoint yet".into()),
            None => {}
        }
        format!("● ready: {}", parts.join(", "))
    }

    /// What to run or read when something is wrong, most pressing first.
    pub fn next_steps(&self) -> Vec<String> {
        let mut steps = Vec::new();
        let output = |process: &str| self.flink_output.replace("{process}", process);
        for p in &self.processes {
            match p.state {
                ProcessState::Running | ProcessState::Stopping => {}
                ProcessState::Failed => steps.push(format!(
                    "{} failed (tried again once its failure window has passed): read why with `{}`, then `flink-agent restart {}`",
                    p.name,
                    output(&p.name),
                    p.name
                )),
                _ if p.last_exit.is_some() || p.state == ProcessState::Unhealthy => {
                    steps.push(format!(
                        "{} is {}: read why with `{}`",
                        p.name,
                        p.state.name(),
                        output(&p.name)
                    ))
                }
                _ => {}
            }
        }
        if self.config.last_reload_error.is_some() {
            steps.push(format!(
                "fix the file and `flink-agent validate --config {}`, then `flink-agent reload`",
                self.config.path
            ));
        }
        for j in &self.jobs {
            if self.ready
                && !matches!(
                    j.state.as_str(),
                    "RUNNING" | "STOPPED" | "SUBMITTED" | "INITIALIZING" | "CREATED"
                )
            {
                steps.push(format!(
                    "job {} is {}: Flink's reason is in the web UI ({}) and `{}`",
                    j.name,
                    j.state,
                    self.web_ui,
                    output("jobmanager")
                ));
            }
        }
        if let Some(alert) = self.checkpoints.as_ref().and_then(|s| s.alert.as_ref()) {
            steps.push(format!(
                "{alert}; `journalctl -u flink-agent` has each attempt"
            ));
        }
        if let Some(e) = &self.firewall.last_error {
            steps.push(format!(
                "the firewall is not enforced ({e}); `flink-agent firewall show`"
            ));
        }
        steps
    }
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`.
fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// The three-node cluster: the quorum, the leader, every node's processes, the owner.
fn cluster_section(c: &ClusterStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cluster: ZooKeeper quorum {}", c.quorum);
    let leader = c.leader.as_deref().unwrap_or("none (no JobManager leads)");
    let _ = writeln!(
        out,
        "  JobManager leader: {leader}; checkpoints copied to the object store by: {}; Flink cluster id {}",
        c.owner.as_deref().unwrap_or("none"),
        c.flink_cluster_id.as_deref().unwrap_or("(not known yet)")
    );
    if let Some(problem) = &c.problem {
        let _ = writeln!(out, "  PROBLEM: {problem}");
    }
    let header = ["NODE", "ADDRESS", "ZOOKEEPER", "JOBMANAGER", "TASKMANAGER"].map(String::from);
    let mut rows = vec![header.to_vec()];
    rows.extend(c.nodes.iter().map(|n| {
        vec![
            n.id.clone().unwrap_or_else(|| NONE.into()),
            n.address.clone(),
            n.zookeeper.name().to_string(),
            n.jobmanager.clone(),
            if n.taskmanager_registered {
                "registered".into()
            } else {
                "not registered".into()
            },
        ]
    }));
    out.push_str(&table(&rows));
    out
}

fn firewall_line(f: &FirewallStatus) -> String {
    let state = match (&f.last_error, f.enabled, f.in_sync) {
        (Some(e), _, _) => format!("NOT enforced: {e}"),
        (None, false, _) => "off".to_string(),
        (None, true, true) => format!("in force (table inet {})", f.table),
        (None, true, false) => format!("applying (table inet {})", f.table),
    };
    format!("firewall: {state}, {} repair(s) of drift", f.repairs)
}

fn process_table(processes: &[ProcessStatus]) -> String {
    let header = [
        "PROCESS",
        "STATE",
        "PID",
        "RESTARTS",
        "UPTIME",
        "LAST EXIT / REASON",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    rows.extend(processes.iter().map(|p| {
        vec![
            p.name.clone(),
            p.state.name().to_string(),
            p.pid.map_or(NONE.into(), |pid| pid.to_string()),
            p.restarts.to_string(),
            p.uptime_secs.map_or(NONE.into(), format_uptime),
            exit_and_reason(p),
        ]
    }));
    table(&rows)
}

/// Rows as columns padded to the widest cell, the last column ragged.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < columns {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The last exit and the reason, each said once: a crash's reason starts with how it ended.
fn exit_and_reason(p: &ProcessStatus) -> String {
    match (&p.last_exit, &p.reason) {
        (Some(exit), Some(reason)) if reason.starts_with(exit.as_str()) => reason.clone(),
        (Some(exit), Some(reason)) => format!("{exit}; {reason}"),
        (Some(one), None) | (None, Some(one)) => one.clone(),
        (None, None) => NONE.into(),
    }
}

fn overview_line(overview: Option<&FlinkOverview>) -> String {
    match overview {
        Some(o) => format!(
            "flink: {} TaskManager(s), slots {} total / {} available, {} job(s) running",
            o.taskmanagers, o.slots_total, o.slots_available, o.jobs_running
        ),
        None => "flink: no /overview (the JobManager is not answering)".into(),
    }
}

/// Compact uptime: `42s`, `5m07s`, `1h02m`, `3d04h`: two units are enough to read at a glance.
fn format_uptime(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{m}m{:02}s", secs % 60),
        3600..86_400 => format!("{h}h{:02}m", m % 60),
        _ => format!("{d}d{:02}h", h % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ConfigStatus;

    fn process(name: &str, state: ProcessState) -> ProcessStatus {
        ProcessStatus {
            name: name.into(),
            state,
            pid: None,
            restarts: 0,
            started_at: None,
            uptime_secs: None,
            adopted: false,
            last_exit: None,
            reason: None,
            budget_remaining: 5,
            heap_bytes: None,
        }
    }

    fn sample() -> AgentStatus {
        AgentStatus {
            node_id: "node-1".into(),
            cluster_id: "demo".into(),
            agent_version: "0.1.0".into(),
            flink_version: Some("2.0.0".into()),
            ready: true,
            config: ConfigStatus {
                path: "/etc/flink-agent/agent.toml".into(),
                revision: "3f2a9c1d".into(),
                loaded_at: 1_700_000_000,
                last_reload_error: Some("advanced.number_of_task_slots: must be 1..=64".into()),
            },
            processes: vec![
                ProcessStatus {
                    pid: Some(4242),
                    uptime_secs: Some(3720),
                    ..process("jobmanager", ProcessState::Running)
                },
                ProcessStatus {
                    restarts: 5,
                    last_exit: Some("exited with status 1".into()),
                    reason: Some(
                        "failed 5 times in 10m; run `flink-agent restart taskmanager`".into(),
                    ),
                    ..process("taskmanager", ProcessState::Failed)
                },
            ],
            checkpoints: None,
            jobs: Vec::new(),
            overview: Some(FlinkOverview {
                taskmanagers: 1,
                slots_total: 2,
                slots_available: 1,
                jobs_running: 1,
                ..FlinkOverview::default()
            }),
            last_error: Some("taskmanager: exited with status 1".into()),
            firewall: crate::firewall::FirewallStatus {
                enabled: true,
                table: "flink_agent".into(),
                in_sync: true,
                repairs: 1,
                ..Default::default()
            },
            web_ui: "http://10.0.0.5:8081".into(),
            flink_output: "journalctl -t flink-{process} -e".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_three_node_cluster_shows_every_node_the_quorum_and_the_leader() {
        use crate::zookeeper::{NodeStatus, Role};
        let node = |i: u8, zookeeper, jobmanager: &str, registered| NodeStatus {
            id: Some(format!("node-{i}")),
            address: format!("10.0.0.{i}"),
            zookeeper,
            jobmanager: jobmanager.into(),
            taskmanager_registered: registered,
        };
        let status = AgentStatus {
            cluster: Some(ClusterStatus {
                flink_cluster_id: Some("/prod-3f2a9c1d0b7e".into()),
                quorum_healthy: true,
                quorum: "degraded: 2 of 3 ZooKeeper servers serving (node-3 unreachable); one more loss stops the cluster".into(),
                leader: Some("node-2".into()),
                owner: Some("node-1".into()),
                nodes: vec![
                    node(1, Role::Follower, "standby", true),
                    node(2, Role::Leader, "leader", true),
                    node(3, Role::Unreachable, "unknown", false),
                ],
                problem: None,
            }),
            ..sample()
        };
        let text = status.render_human();
        let expected = "\
cluster: ZooKeeper quorum degraded: 2 of 3 ZooKeeper servers serving (node-3 unreachable); one more loss stops the cluster
  JobManager leader: node-2; checkpoints copied to the object store by: node-1; Flink cluster id /prod-3f2a9c1d0b7e
NODE    ADDRESS   ZOOKEEPER    JOBMANAGER  TASKMANAGER
node-1  10.0.0.1  follower     standby     registered
node-2  10.0.0.2  leader       leader      registered
node-3  10.0.0.3  unreachable  unknown     not registered
";
        assert!(text.contains(expected), "{text}");
    }

    #[test]
    fn renders_every_fact_an_operator_needs() {
        let expected = "\
● ready: 1 TaskManager(s), 2 slot(s) (1 free), 1 job(s) running, none declared
web UI: http://10.0.0.5:8081
next: taskmanager failed (tried again once its failure window has passed): read why with `journalctl -t flink-taskmanager -e`, then `flink-agent restart taskmanager`
next: fix the file and `flink-agent validate --config /etc/flink-agent/agent.toml`, then `flink-agent reload`

node node-1, cluster demo
agent 0.1.0, Flink 2.0.0
config: revision 3f2a9c1d (/etc/flink-agent/agent.toml)
  last reload refused, still on this revision: advanced.number_of_task_slots: must be 1..=64

PROCESS      STATE    PID   RESTARTS  UPTIME  LAST EXIT / REASON
jobmanager   running  4242  0         1h02m   -
taskmanager  failed   -     5         -       exited with status 1; failed 5 times in 10m; run `flink-agent restart taskmanager`

flink: 1 TaskManager(s), slots 2 total / 1 available, 1 job(s) running
firewall: in force (table inet flink_agent), 1 repair(s) of drift
tls: off
last error: taskmanager: exited with status 1
";
        assert_eq!(sample().render_human_at(1_700_000_100), expected);
    }

    #[test]
    fn says_so_when_flink_is_unknown_and_not_answering() {
        let status = AgentStatus {
            overview: None,
            flink_version: None,
            ready: false,
            last_error: None,
            ..sample()
        };
        let text = status.render_human();
        assert!(text.contains("Flink unknown"), "{text}");
        assert!(
            text.starts_with("✗ NOT READY: taskmanager failed"),
            "{text}"
        );
        assert!(text.contains("flink: no /overview (the JobManager is not answering)"));
        assert!(text.contains("last error: none"), "{text}");
    }

    #[test]
    fn the_firewall_line_says_plainly_when_it_is_not_enforced() {
        let f = |firewall| sample_with(firewall).render_human();
        let not_enforced = crate::firewall::FirewallStatus {
            enabled: true,
            last_error: Some(
                "`nft` was refused (Operation not permitted): the agent lacks CAP_NET_ADMIN".into(),
            ),
            ..Default::default()
        };
        assert!(f(not_enforced).contains("firewall: NOT enforced: `nft` was refused (Operation not permitted): the agent lacks CAP_NET_ADMIN, 0 repair(s) of drift\n"));
        assert!(f(Default::default()).contains("firewall: off, 0 repair(s) of drift\n"));
    }

    fn sample_with(firewall: crate::firewall::FirewallStatus) -> AgentStatus {
        AgentStatus {
            firewall,
            ..sample()
        }
    }

    #[test]
    fn a_crash_reason_is_not_repeated_after_the_exit() {
        let p = ProcessStatus {
            last_exit: Some("killed by signal 9".into()),
            reason: Some("killed by signal 9; restarting in 1.0 s".into()),
            ..process("jobmanager", ProcessState::BackingOff)
        };
        assert_eq!(
            exit_and_reason(&p),
            "killed by signal 9; restarting in 1.0 s"
        );
    }

    #[test]
    fn uptime_uses_two_units() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m00s"),
            (307, "5m07s"),
            (3720, "1h02m"),
            (86_399, "23h59m"),
            (86_400 + 4 * 3600 + 59, "1d04h"),
        ];
        for (secs, shown) in cases {
            assert_eq!(format_uptime(secs), shown, "{secs} s");
        }
    }
}
