//! What `status` answers, assembled from each concern's own report, and the one-line "what is
//! wrong" (`last_error`), which only real problems set: a crash, an exhausted failure budget, a
//! refused or failed reload — never a stop the agent made itself.

use super::Daemon;
use crate::status::{AgentStatus, ConfigStatus, PlanStatus};
use crate::supervisor::SupervisorEvent;

/// Problems worth a line in `status`.
#[derive(Debug, Default)]
pub(super) struct Problems {
    last_error: Option<String>,
    last_reload_error: Option<String>,
}

impl Problems {
    pub(super) fn on_event(&mut self, event: &SupervisorEvent) {
        match event {
            SupervisorEvent::ProcessExited {
                name,
                how,
                expected: false,
            } => self.last_error = Some(format!("{name} {how}")),
            SupervisorEvent::ProcessFailed { name, reason } => {
                self.last_error = Some(format!("{name} failed: {reason}"));
            }
            _ => {}
        }
    }

    /// A problem of the agent itself (a listener it could not open).
    pub(super) fn set(&mut self, message: String) {
        self.last_error = Some(message);
    }

    pub(super) fn reload_refused(&mut self, message: String) {
        self.last_error = Some(message.clone());
        self.last_reload_error = Some(message);
    }

    /// The TLS check (or the start) refused material, or could not apply it.
    pub(super) fn tls_refused(&mut self, message: &str) {
        self.last_error = Some(message.to_string());
    }

    /// A reload went through; `failed` lists the concerns that could not apply their part.
    pub(super) fn reload_applied(&mut self, failed: &[String]) {
        if failed.is_empty() {
            self.last_reload_error = None;
        } else {
            let message = format!("reload not fully applied: {}", failed.join("; "));
            self.last_error = Some(message.clone());
            self.last_reload_error = Some(message);
        }
    }
}

impl Daemon {
    pub(super) fn status(&self) -> AgentStatus {
        let d = &self.in_force.desired;
        AgentStatus {
            node_id: d.identity.node_id.clone(),
            cluster_id: d.identity.cluster_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            flink_version: Some(d.flink.version.to_string()),
            ready: *self.supervisor.ready().borrow(),
            config: ConfigStatus {
                path: self.in_force.path.display().to_string(),
                revision: self.in_force.revision.clone(),
                loaded_at: self.in_force.loaded_at,
                last_reload_error: self.problems.last_reload_error.clone(),
            },
            processes: self.supervisor.statuses(),
            overview: self.overview.borrow().clone(),
            last_error: self.problems.last_error.clone(),
            checkpoints: Some(self.sync.status()),
            jobs: self.jobs.jobs_status(),
            firewall: self.firewall.get(),
            tls: self.tls_status(),
            plan: PlanStatus {
                memory_mib: d.plan.memory_mib,
                vcpus: d.plan.vcpus,
                auto: d.plan.auto.clone(),
                checkpoint_interval_ms: d.plan.checkpoint_interval_ms,
            },
            web_ui: d.web_ui.url().to_string(),
            metrics_listen: d.metrics.listen.map(|a| a.to_string()),
            phase: self.jobs.phase(),
            flink_output: match self.placement {
                crate::supervisor::Placement::Scope => "journalctl -t flink-{process} -e".into(),
                _ => format!("less {}/{{process}}.out", d.flink.log_dir.display()),
            },
            cluster: self.cluster.as_ref().map(super::cluster::Cluster::view),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routine_stops_are_not_errors_and_failures_are() {
        let mut p = Problems::default();
        p.on_event(&SupervisorEvent::ProcessExited {
            name: "taskmanager",
            how: "exited with status 143".into(),
            expected: true,
        });
        assert_eq!(p.last_error, None);
        p.on_event(&SupervisorEvent::ProcessExited {
            name: "jobmanager",
            how: "killed by signal 9".into(),
            expected: false,
        });
        assert_eq!(
            p.last_error.as_deref(),
            Some("jobmanager killed by signal 9")
        );
        p.on_event(&SupervisorEvent::ProcessFailed {
            name: "jobmanager",
            reason: "crashed 6 times in 300 s".into(),
        });
        assert_eq!(
            p.last_error.as_deref(),
            Some("jobmanager failed: crashed 6 times in 300 s")
        );
    }

    #[test]
    fn a_failed_concern_stays_visible_until_a_reload_applies_fully() {
        let mut p = Problems::default();
        p.reload_applied(&["checkpoint-sync: FAILED, unchanged: bad url".into()]);
        assert!(p
            .last_reload_error
            .as_deref()
            .is_some_and(|e| e.contains("checkpoint-sync")));
        p.reload_applied(&[]);
        assert_eq!(p.last_reload_error, None);
    }
}
