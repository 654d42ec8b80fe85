//! A reload: the file is read and checked off the loop (a refused file changes nothing), then
//! every concern reconciles to the new desired state, in order, in a task of its own; the loop
//! takes the new revision in force when the task reports back, and only then answers, so a
//! `status` right after `reload` shows what the reload did.

use super::concerns::reconcile_all;
use super::Daemon;
use crate::api::{ReloadError, ReloadReport};
use crate::desired::{self, Loaded};
use crate::reconcile::Outcome;
use tokio::sync::oneshot;

/// Who asked for the reload (SIGHUP: nobody to answer).
type Reply = Option<oneshot::Sender<Result<ReloadReport, ReloadError>>>;

/// A finished reload, sent back to the loop.
pub(super) struct Done {
    result: Result<(Box<Loaded>, ReloadReport), ReloadError>,
    reply: Reply,
}

impl Daemon {
    /// Starts a reload unless one runs already.
    pub(super) fn begin_reload(&mut self, reply: Reply) {
        let Ok(concerns) = self.concerns.clone().try_lock_owned() else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ReloadError::InProgress));
            }
            return;
        };
        let path = self.in_force.path.clone();
        let state_dir = self.state_dir.clone();
        let old_config = self.in_force.config.clone();
        let old_rendered = self.in_force.desired.flink.rendered.clone();
        let old_mode = self.in_force.desired.mode;
        let done = self.reloads.clone();
        tokio::spawn(async move {
            let mut concerns = concerns;
            // Reading the file, the Flink distribution and the machine: not on the loop.
            let loaded =
                tokio::task::spawn_blocking(move || desired::load(&path, Some(&state_dir)))
                    .await
                    .unwrap_or_else(|e| {
                        Err(crate::config::ConfigError::Read {
                            path: "the configuration".into(),
                            source: std::io::Error::other(e.to_string()),
                        })
                    });
            let result = match loaded.and_then(|next| same_mode(next, old_mode)) {
                Err(e) => Err(ReloadError::Refused(e)),
                Ok(next) => {
                    let reports = reconcile_all(&mut concerns, &next.desired).await;
                    let report = ReloadReport {
                        revision: next.revision.clone(),
                        changed_keys: crate::config::changed_keys(&old_config, &next.config),
                        restarted: restarted(&reports),
                        flink_config_changed: old_rendered != next.desired.flink.rendered,
                        concerns: reports,
                    };
                    Ok((Box::new(next), report))
                }
            };
            drop(concerns);
            let _ = done.send(Done { result, reply }).await;
        });
    }

    /// Takes the outcome in force and answers.
    pub(super) fn finish_reload(&mut self, done: Done) {
        let Done { result, reply } = done;
        let answer = match result {
            Err(e) => {
                log::error!("{e}");
                self.problems.reload_refused(e.to_string());
                Err(e)
            }
            Ok((next, report)) => {
                self.in_force = *next;
                log::info!("configuration revision {} in force", report.revision);
                let mut failed = Vec::new();
                for concern in &report.concerns {
                    match concern.outcome {
                        Outcome::Failed { .. } => {
                            log::error!("reload: {}", concern.line());
                            failed.push(concern.line());
                        }
                        Outcome::NeedsAgentRestart { .. } => {
                            log::warn!("reload: {}", concern.line())
                        }
                        Outcome::Unchanged => log::debug!("reload: {}", concern.line()),
                        _ => log::info!("reload: {}", concern.line()),
                    }
                }
                self.problems.reload_applied(&failed);
                Ok(report)
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }
}

/// A single node does not become one of three (or back) by a reload: the agent's ZooKeeper
/// server, session and Flink's HA start with the agent, and the jobs would need moving.
fn same_mode(next: Loaded, running: desired::Mode) -> Result<Loaded, crate::config::ConfigError> {
    if next.desired.mode == running {
        return Ok(next);
    }
    Err(crate::config::ConfigError::Invalid {
        path: next.path.display().to_string(),
        errors: vec![crate::config::FieldError::new(
            "cluster.nodes",
            format!(
                "changes the cluster from {running:?} to {:?}: that takes an agent restart (`systemctl restart flink-agent`) on every node, with the jobs stopped first (`flink-agent jobs stop NAME`)",
                next.desired.mode
            ),
        )],
    })
}

/// The processes the supervisor restarted, in order.
fn restarted(reports: &[crate::reconcile::Report]) -> Vec<String> {
    reports
        .iter()
        .find_map(|r| match &r.outcome {
            Outcome::Restarted { processes } => Some(processes.clone()),
            _ => None,
        })
        .unwrap_or_default()
}
