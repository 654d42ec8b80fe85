//! A reload: the file is read and checked off the loop (a refused file changes nothing), then
//! every concern reconciles to the new desired state, in order, in a task of its own; the loop
//! takes the new revision in force when the task reports back, and only then answers, so a
//! `status` right after `reload` shows what the reload did. The periodic TLS check goes the
//! same way with the revision in force instead of the file (see `tls_check`).

use super::concerns::reconcile_all;
use super::Daemon;
use crate::api::{ReloadError, ReloadReport};
use crate::desired::{self, Loaded};
use crate::events::{Event, ReloadApplied, ReloadRefused};
use crate::reconcile::Outcome;
use crate::tls;
use tokio::sync::oneshot;

/// Who asked for the reload (SIGHUP: nobody to answer).
type Reply = Option<oneshot::Sender<Result<ReloadReport, ReloadError>>>;

/// What starts a reconcile of every concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// SIGHUP or `POST /v1/reload`: the file is read again.
    File,
    /// The periodic TLS check: the revision in force, its TLS material checked again.
    TlsCheck,
}

/// A finished reload, sent back to the loop.
pub(super) struct Done {
    trigger: Trigger,
    result: Result<(Box<Loaded>, ReloadReport), ReloadError>,
    reply: Reply,
}

impl Daemon {
    /// Starts a reload (or a TLS check) unless one runs already.
    pub(super) fn begin_reload(&mut self, trigger: Trigger, reply: Reply) {
        let Ok(concerns) = self.concerns.clone().try_lock_owned() else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ReloadError::InProgress));
            }
            if trigger == Trigger::TlsCheck {
                self.tls.postpone();
            }
            return;
        };
        if trigger == Trigger::TlsCheck {
            self.tls.begin();
        }
        let path = self.in_force.path.clone();
        let started = self.started.clone();
        let in_force = self.in_force.clone();
        let hold = self.tls.holding();
        let old_config = self.in_force.config.clone();
        let old_desired = self.in_force.desired.clone();
        let old_mode = self.in_force.desired.mode;
        let done = self.reloads.clone();
        tokio::spawn(async move {
            let mut concerns = concerns;
            // Reading the file, the Flink distribution, the machine and the TLS material: not
            // on the loop.
            let loaded = tokio::task::spawn_blocking(move || match trigger {
                Trigger::File => desired::load(&path, Some(&started), tls::Access::Apply, hold),
                Trigger::TlsCheck => in_force
                    .recheck_tls(std::time::SystemTime::now(), hold)
                    .map_err(|errors| crate::config::ConfigError::Invalid {
                        path: in_force.path.display().to_string(),
                        errors,
                    }),
            });
            let loaded = loaded.await.unwrap_or_else(|e| {
                Err(crate::config::ConfigError::Read {
                    path: "the configuration".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
            let result = match loaded.and_then(|next| same_mode(next, old_mode)) {
                Err(e) => Err(ReloadError::Refused(e)),
                Ok(next) => {
                    // A check that finds nothing new touches nothing.
                    let reports = if trigger == Trigger::TlsCheck && next.desired == old_desired {
                        Vec::new()
                    } else {
                        reconcile_all(&mut concerns, &next.desired).await
                    };
                    let report = ReloadReport {
                        revision: next.revision.clone(),
                        changed_keys: crate::config::changed_keys(&old_config, &next.config),
                        restarted: restarted(&reports),
                        flink_config_changed: old_desired.flink.rendered
                            != next.desired.flink.rendered,
                        concerns: reports,
                    };
                    Ok((Box::new(next), report))
                }
            };
            drop(concerns);
            let _ = done
                .send(Done {
                    trigger,
                    result,
                    reply,
                })
                .await;
        });
    }

    /// Takes the outcome in force and answers.
    pub(super) fn finish_reload(&mut self, done: Done) {
        let Done {
            trigger,
            result,
            reply,
        } = done;
        let what = match trigger {
            Trigger::File => "reload",
            Trigger::TlsCheck => "TLS check",
        };
        let answer = match result {
            Err(e) => {
                match (trigger, &e) {
                    (Trigger::TlsCheck, ReloadError::Refused(c)) => {
                        log::error!("{what}: {e}");
                        self.tls.failed(c.field_errors().to_vec());
                        self.problems.tls_refused(&e.to_string());
                    }
                    (Trigger::TlsCheck, _) => {
                        log::error!("{what}: {e}");
                        self.problems.reload_refused(e.to_string());
                    }
                    (Trigger::File, _) => {
                        ReloadRefused {
                            error: &e.to_string(),
                        }
                        .emit();
                        self.problems.reload_refused(e.to_string());
                    }
                }
                Err(e)
            }
            Ok((next, report)) => {
                let generation =
                    |l: &Loaded| l.desired.tls.generation.as_ref().map(|g| g.id.clone());
                let new_generation = generation(&self.in_force) != generation(&next);
                self.in_force = *next;
                self.tls.checked(&self.in_force, new_generation);
                for refused in &self.in_force.tls_refused {
                    log::error!("{what}: TLS material refused, Flink keeps the generation in force: {refused}");
                }
                if !self.in_force.tls_refused.is_empty() {
                    self.problems.tls_refused(&format!(
                        "TLS material refused, Flink keeps the generation in force: {}",
                        self.in_force
                            .tls_refused
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
                let mut failed = Vec::new();
                for concern in &report.concerns {
                    match concern.outcome {
                        Outcome::Failed { .. } if trigger == Trigger::TlsCheck => {
                            log::error!("{what}: {}", concern.line());
                            failed.push(concern.line());
                        }
                        Outcome::Failed { .. } => failed.push(concern.line()),
                        Outcome::NeedsAgentRestart { .. } => {
                            log::warn!("{what}: {}", concern.line())
                        }
                        Outcome::Unchanged => log::debug!("{what}: {}", concern.line()),
                        _ => log::info!("{what}: {}", concern.line()),
                    }
                }
                match trigger {
                    Trigger::File => {
                        ReloadApplied {
                            revision: &report.revision,
                            failed: &failed,
                        }
                        .emit();
                        self.problems.reload_applied(&failed);
                    }
                    Trigger::TlsCheck if !failed.is_empty() => self.problems.tls_refused(&format!(
                        "TLS check not fully applied: {}",
                        failed.join("; ")
                    )),
                    Trigger::TlsCheck => {}
                }
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
