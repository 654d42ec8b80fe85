//! The concerns as the daemon drives them: each holds its running part, and on a new desired
//! state compares that with its part of it and reconciles ([`crate::reconcile`]). The daemon
//! loops over them in order: the firewall before anything that opens ports, TLS before Flink's
//! files that name its stores, Flink's files before the processes that read them, the store
//! before the jobs that use it.

use crate::checkpoints::Sync;
use crate::desired::Desired;
use crate::firewall::{self, FirewallHandle};
use crate::flinkconf;
use crate::jobs;
use crate::reconcile::{Outcome, Report};
use crate::supervisor::SupervisorHandle;
use crate::tls;
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long the daemon waits for nftables to take new rules before it goes on (the answer
/// then says the firewall did not confirm).
const FIREWALL_APPLY_WAIT: Duration = Duration::from_secs(30);

/// One concern's side of the reconcile contract.
pub trait Concern: Send {
    fn name(&self) -> &'static str;
    /// Brings what the concern runs to its part of `desired`; idempotent.
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome>;
}

/// Runs every concern against `desired`, in order. Stops at a failure of Flink's files, which
/// the processes after it would read; other failures leave their concern as it was and the rest
/// goes on (each reports for itself).
pub async fn reconcile_all(concerns: &mut [Box<dyn Concern>], desired: &Desired) -> Vec<Report> {
    let mut reports = Vec::new();
    for concern in concerns.iter_mut() {
        let outcome = concern.reconfigure(desired).await;
        let stop = matches!(outcome, Outcome::Failed { .. }) && concern.name() == FlinkFiles::NAME;
        reports.push(Report::new(concern.name(), outcome));
        if stop {
            break;
        }
    }
    reports
}

/// The agent's own socket and state dir: fixed for the life of the process. A new state dir
/// gets a copy of the supervisor's records, so the agent started on it adopts Flink.
pub struct AgentFiles {
    pub running: crate::desired::AgentFiles,
    pub supervisor: SupervisorHandle,
}

impl Concern for AgentFiles {
    fn name(&self) -> &'static str {
        "agent"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        let (a, b) = (&self.running, &desired.agent);
        let mut keys = Vec::new();
        if a.socket != b.socket {
            keys.push("agent.socket".to_string());
        }
        if a.socket_group != b.socket_group {
            keys.push("agent.socket_group".to_string());
        }
        if a.state_dir != b.state_dir {
            keys.push("agent.state_dir".to_string());
        }
        let moved = (a.state_dir != b.state_dir).then(|| b.state_dir.clone());
        Box::pin(async move {
            self.supervisor.hand_over(moved).await;
            if keys.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::NeedsAgentRestart { keys }
            }
        })
    }
}

/// The node's nftables table.
pub struct Firewall {
    pub handle: FirewallHandle,
    pub running: firewall::Settings,
}

impl Concern for Firewall {
    fn name(&self) -> &'static str {
        "firewall"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.running == desired.firewall {
                return Outcome::Unchanged;
            }
            self.running = desired.firewall.clone();
            let applied = self.handle.update(desired.firewall.clone());
            match tokio::time::timeout(FIREWALL_APPLY_WAIT, applied).await {
                Ok(Ok(Ok(()))) => Outcome::Applied {
                    what: match &desired.firewall.policy {
                        Some(p) => format!("rules of table inet {} in force", p.table),
                        None => "firewall off; the agent's table is removed".into(),
                    },
                },
                Ok(Ok(Err(e))) => Outcome::Failed { error: e },
                Ok(Err(_)) => Outcome::Failed {
                    error: "the firewall loop is gone; restart the agent".into(),
                },
                Err(_) => Outcome::Failed {
                    error: format!(
                        "nftables did not confirm the rules within {}s",
                        FIREWALL_APPLY_WAIT.as_secs()
                    ),
                },
            }
        })
    }
}

/// TLS: which generation of stores is in force (they were written when it was prepared).
pub struct Tls {
    pub running: tls::Spec,
}

impl Concern for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.running == desired.tls {
                return Outcome::Unchanged;
            }
            let same_generation = self.running.generation.as_ref().map(|g| &g.id)
                == desired.tls.generation.as_ref().map(|g| &g.id);
            let spec = desired.tls.clone();
            let applied = tokio::task::spawn_blocking(move || {
                tls::apply(&spec, std::time::SystemTime::now())
            })
            .await;
            match applied {
                Ok(Ok(what)) => {
                    self.running = desired.tls.clone();
                    Outcome::Applied {
                        what: if same_generation && desired.tls.generation.is_some() {
                            format!("{what}; settings in force")
                        } else {
                            what
                        },
                    }
                }
                Ok(Err(e)) => Outcome::Failed {
                    error: e.to_string(),
                },
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                },
            }
        })
    }
}

/// Flink's directories and rendered configuration.
pub struct FlinkFiles {
    pub running: flinkconf::Files,
}

impl FlinkFiles {
    pub const NAME: &'static str = "flink-config";
}

impl Concern for FlinkFiles {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.running == desired.flink {
                return Outcome::Unchanged;
            }
            let files = desired.flink.clone();
            // chown, fsync and renames: not on the runtime's threads.
            let written = tokio::task::spawn_blocking(move || flinkconf::prepare(&files)).await;
            match written {
                Ok(Ok(changed)) => {
                    self.running = desired.flink.clone();
                    Outcome::Applied {
                        what: if changed {
                            format!(
                                "{} rewritten",
                                desired
                                    .flink
                                    .conf_dir
                                    .join(desired.flink.rendered.file_name)
                                    .display()
                            )
                        } else {
                            "directories prepared; Flink's configuration file unchanged".into()
                        },
                    }
                }
                Ok(Err(e)) => Outcome::Failed {
                    error: e.to_string(),
                },
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                },
            }
        })
    }
}

/// The JobManager and the TaskManager.
pub struct Supervisor {
    pub handle: SupervisorHandle,
    pub running: crate::supervisor::LaunchSpec,
}

impl Concern for Supervisor {
    fn name(&self) -> &'static str {
        "supervisor"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.running == desired.launch {
                return Outcome::Unchanged;
            }
            match self.handle.apply(desired.launch.clone()).await {
                Ok(restarted) => {
                    self.running = desired.launch.clone();
                    if restarted.is_empty() {
                        Outcome::Applied {
                            what: "supervision settings in force; no process needed a restart"
                                .into(),
                        }
                    } else {
                        Outcome::Restarted {
                            processes: restarted.into_iter().map(str::to_string).collect(),
                        }
                    }
                }
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                },
            }
        })
    }
}

/// Checkpoint sync to object storage.
pub struct CheckpointSync {
    pub sync: Sync,
}

impl Concern for CheckpointSync {
    fn name(&self) -> &'static str {
        "checkpoint-sync"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.sync.reconfigure(desired.sync.clone()).await {
                Ok(false) => Outcome::Unchanged,
                Ok(true) => Outcome::Applied {
                    what: format!(
                        "syncing {} to {}",
                        desired.sync.checkpoints_dir().display(),
                        crate::config::redact_userinfo(&desired.sync.store.url)
                    ),
                },
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                },
            }
        })
    }
}

/// Declared jobs.
pub struct Jobs {
    pub service: jobs::Service,
}

impl Concern for Jobs {
    fn name(&self) -> &'static str {
        "jobs"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.service.reconfigure(desired.jobs.clone()).await {
                Ok(false) => Outcome::Unchanged,
                Ok(true) => Outcome::Applied {
                    what: format!("jobs use Flink at {}", desired.jobs.endpoint),
                },
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                },
            }
        })
    }
}

/// What `status` shows of the node: its identity, and Flink's figures from the endpoint.
pub struct Status {
    pub identity: crate::desired::Identity,
    pub endpoint: watch::Sender<crate::flinkrest::Endpoint>,
}

impl Concern for Status {
    fn name(&self) -> &'static str {
        "status"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        let identity = self.identity != desired.identity;
        self.identity = desired.identity.clone();
        let endpoint = self.endpoint.send_if_modified(|e| {
            let changed = *e != desired.endpoint;
            *e = desired.endpoint.clone();
            changed
        });
        Box::pin(async move {
            if identity || endpoint {
                Outcome::Applied {
                    what: format!(
                        "node {} of cluster {}, Flink's figures from {}",
                        desired.identity.node_id, desired.identity.cluster_id, desired.endpoint
                    ),
                }
            } else {
                Outcome::Unchanged
            }
        })
    }
}

/// The agent's Prometheus endpoint (`metrics.listen`): bound at start, rebound on a reload that
/// moves it. The new address is bound before the old one is let go, so a refused address (in
/// use, not on this host) keeps the old listener.
pub struct Metrics {
    pub api: mpsc::Sender<crate::api::ApiRequest>,
    pub running: Option<MetricsServer>,
}

/// A serving listener and how to stop it.
pub struct MetricsServer {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `GET /metrics` there.
    pub async fn start(
        addr: SocketAddr,
        api: mpsc::Sender<crate::api::ApiRequest>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::api::serve_metrics(listener, api, async move {
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

impl Metrics {
    fn applied(addr: Option<SocketAddr>) -> Outcome {
        Outcome::Applied {
            what: match addr {
                Some(a) => format!("metrics on http://{a}/metrics"),
                None => "metrics listener off".into(),
            },
        }
    }
}

impl Concern for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let want = desired.metrics.listen;
            if self.running.as_ref().map(|r| r.addr) == want {
                return Outcome::Unchanged;
            }
            let Some(addr) = want else {
                if let Some(old) = self.running.take() {
                    old.stop().await;
                }
                return Self::applied(None);
            };
            let started = match MetricsServer::start(addr, self.api.clone()).await {
                // The same port on another address of this host: let the old one go first.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && self
                            .running
                            .as_ref()
                            .is_some_and(|r| r.addr.port() == addr.port()) =>
                {
                    let old_server = self.running.take();
                    let old = old_server.as_ref().map(|r| r.addr);
                    if let Some(server) = old_server {
                        server.stop().await;
                    }
                    match MetricsServer::start(addr, self.api.clone()).await {
                        Ok(server) => Ok(server),
                        Err(e) => {
                            if let Some(old) = old {
                                self.running =
                                    MetricsServer::start(old, self.api.clone()).await.ok();
                            }
                            Err(e)
                        }
                    }
                }
                other => other,
            };
            match started {
                Ok(server) => {
                    if let Some(old) = self.running.replace(server) {
                        old.stop().await;
                    }
                    Self::applied(want)
                }
                Err(e) => Outcome::Failed {
                    error: format!(
                        "cannot listen on {addr} ({e}); metrics stay on {}; fix metrics.listen",
                        self.running
                            .as_ref()
                            .map_or("nothing".to_string(), |r| r.addr.to_string())
                    ),
                },
            }
        })
    }
}
