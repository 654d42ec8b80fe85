//! The agent's main loop: one task owns the state; signals, API requests, supervisor events and
//! timers arrive as events. Slow work (a reload, job operations) runs in spawned tasks so the
//! loop keeps feeding systemd's watchdog — a hung loop is exactly what the watchdog is for.
//!
//! Start-up derives the desired state, brings up each concern in dependency order (API socket,
//! the TLS generation in force, Flink's files, the firewall — applied before any Flink port can
//! open —, the supervisor,
//! which adopts the processes an earlier agent left running, checkpoint sync, jobs), then
//! loops. How it ends decides Flink's fate: SIGTERM (systemd stop or restart, upgrade) leaves
//! Flink running for the next agent; SIGINT (Ctrl-C in a terminal) and `flink-agent shutdown`
//! stop Flink first.

mod cluster;
mod concerns;
mod overview;
mod reload;
mod status;
mod tls_check;

use crate::api::{self, ApiRequest, ConfigView};
use crate::checkpoints::{JobNames, Sync, SyncError};
use crate::config::ConfigError;
use crate::desired::{self, Loaded};
use crate::firewall;
use crate::flinkconf;
use crate::flinkrest::FlinkRestError;
use crate::jobs;
use crate::sdnotify::{notify, watchdog_period};
use crate::supervisor::{self, Kind, Placement, SupervisorEvent};
use crate::tls;
use concerns::Concern;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// How long start-up waits for the first firewall apply before it starts Flink anyway (the
/// status then says the firewall is not enforced, and why).
const FIRST_FIREWALL_APPLY: Duration = Duration::from_secs(30);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid; every problem is listed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Flink's files could not be prepared.
    #[error(transparent)]
    Prepare(#[from] flinkconf::PrepareError),
    /// The API socket could not be bound (for instance another agent serves it).
    #[error(transparent)]
    Api(#[from] api::server::ApiError),
    /// The object store or checkpoint staging could not be set up.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The jobs' Flink client could not be built.
    #[error(transparent)]
    Jobs(#[from] FlinkRestError),
    /// The TLS generation could not be put in force.
    #[error("cannot put the TLS generation in force: {0}")]
    Tls(#[from] tls::StoreError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// A start-up step panicked.
    #[error("start-up failed: {0}")]
    Task(String),
}

/// What ends the loop.
enum Ending {
    /// Leave Flink running for the next agent (SIGTERM).
    Detach,
    /// Stop Flink, then the agent; answer the request that asked once done, if any.
    StopFlink(Option<oneshot::Sender<()>>),
}

/// How much longer systemd should wait for READY each time a restore before READY reports
/// progress (`EXTEND_TIMEOUT_USEC=`): a large download is not killed by `TimeoutStartSec=`,
/// a hung one still is.
const RESTORE_EXTEND: Duration = Duration::from_secs(60);

/// The loop's state.
struct Daemon {
    in_force: Loaded,
    /// What this agent process fixed at start: its state dir (a config may ask for another,
    /// which takes effect only when the agent restarts) and the machine `"auto"` resolves to.
    started: desired::Started,
    concerns: Arc<tokio::sync::Mutex<Vec<Box<dyn Concern>>>>,
    supervisor: supervisor::SupervisorHandle,
    sync: Sync,
    jobs: jobs::Service,
    firewall: firewall::StatusReader,
    overview: watch::Receiver<Option<crate::flinkrest::FlinkOverview>>,
    /// Three-node clusters: the agent's ZooKeeper session and the cluster view.
    cluster: Option<cluster::Cluster>,
    problems: status::Problems,
    reloads: mpsc::Sender<reload::Done>,
    tls: tls_check::TlsChecks,
    placement: Placement,
}

/// Runs the agent until SIGTERM (Flink keeps running), SIGINT or a shutdown request (Flink is
/// stopped first). Returns once the socket is removed.
pub async fn run(config_path: &Path) -> Result<(), DaemonError> {
    let started = std::time::Instant::now();
    let config_path = std::path::absolute(config_path).unwrap_or_else(|_| config_path.into());
    let loaded = desired::load(&config_path, None, tls::Access::ApplyOrKeep, false)?;
    for refused in &loaded.tls_refused {
        log::error!("TLS material refused, Flink keeps the generation in force: {refused}");
    }
    let d = loaded.desired.clone();
    log::info!(
        "flink-agent {} starting: node {} of cluster {}, Flink {} at {}, config revision {}",
        env!("CARGO_PKG_VERSION"),
        d.identity.node_id,
        d.identity.cluster_id,
        d.flink.version,
        d.flink.flink_home.display(),
        loaded.revision
    );
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    // First: another agent serving this socket means another agent owns this node's Flink.
    let listener = api::server::bind(&d.agent.socket, d.agent.socket_group.as_deref()).await?;
    let (api_tx, mut api_rx) = mpsc::channel::<ApiRequest>(64);
    let (api_stop, api_stopped) = oneshot::channel::<()>();
    let metrics_api = api_tx.clone();
    let api_task = tokio::spawn(api::server::serve(listener, api_tx, async move {
        let _ = api_stopped.await;
    }));

    let spec = d.tls.clone();
    let in_force =
        tokio::task::spawn_blocking(move || tls::apply(&spec, std::time::SystemTime::now()))
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))??;
    if d.tls.settings.enabled {
        log::info!("tls: {in_force}");
    }
    let files = d.flink.clone();
    tokio::task::spawn_blocking(move || flinkconf::prepare(&files))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))??;
    let (firewall, applied) = firewall::spawn(d.firewall.clone());
    match tokio::time::timeout(FIRST_FIREWALL_APPLY, applied).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => log::error!("firewall: {e}; starting Flink without it"),
        _ => log::error!("firewall: no answer from nftables; starting Flink without it"),
    }
    let mut problems = status::Problems::default();
    let mut metrics = concerns::Metrics {
        api: metrics_api,
        running: None,
    };
    if let Some(addr) = d.metrics.listen {
        match concerns::MetricsServer::start(addr, metrics.api.clone()).await {
            Ok(server) => metrics.running = Some(server),
            Err(e) => {
                let message =
                    format!("cannot serve metrics on {addr} ({e}); fix metrics.listen and reload");
                log::error!("{message}");
                problems.set(message);
            }
        }
    }
    let placement = Placement::detect().await;
    // Three nodes: the agent's ZooKeeper session, before the processes that wait for it.
    let cluster = d
        .coordination
        .as_ref()
        .map(|spec| cluster::Cluster::start(spec, &spec.node_address, d.endpoint.clone()));
    let incarnation = cluster
        .as_ref()
        .map_or_else(|| watch::channel(None).1, cluster::Cluster::incarnation);
    let supervisor =
        supervisor::spawn(d.launch.clone(), &d.agent.state_dir, placement, incarnation);
    let sync = Sync::start(d.sync.clone(), JobNames::default(), cluster.is_none())?;
    if let Some(c) = &cluster {
        c.drive_sync(sync.clone());
    }
    let jobs = jobs::Service::start(
        d.jobs.clone(),
        sync.clone(),
        cluster.as_ref().map(cluster::Cluster::coordination),
    )?;
    let (endpoint, endpoint_rx) = watch::channel(d.endpoint.clone());
    let overview = overview::spawn(endpoint_rx, supervisor.ready());
    let firewall_status = firewall.reader();
    let mut concerns: Vec<Box<dyn Concern>> = vec![
        Box::new(concerns::AgentFiles {
            running: d.agent.clone(),
            supervisor: supervisor.clone(),
        }),
        Box::new(concerns::Firewall {
            handle: firewall,
            running: d.firewall.clone(),
        }),
        Box::new(concerns::Tls {
            running: d.tls.clone(),
        }),
        Box::new(metrics),
        Box::new(concerns::FlinkFiles {
            running: d.flink.clone(),
        }),
        Box::new(concerns::Supervisor {
            handle: supervisor.clone(),
            running: d.launch.clone(),
        }),
        Box::new(concerns::CheckpointSync { sync: sync.clone() }),
        Box::new(concerns::Jobs {
            service: jobs.clone(),
        }),
        Box::new(concerns::Status {
            identity: d.identity.clone(),
            endpoint,
        }),
    ];
    if let (Some(c), Some(spec)) = (&cluster, &d.coordination) {
        // After the supervisor (its ZooKeeper server), before the sync and the jobs.
        let after_supervisor = concerns
            .iter()
            .position(|c| c.name() == "supervisor")
            .map_or(concerns.len(), |i| i + 1);
        concerns.insert(
            after_supervisor,
            Box::new(cluster::Session {
                cluster: c.clone(),
                running: spec.clone(),
            }),
        );
    }
    let (reloads, mut reloads_rx) = mpsc::channel(4);
    let tls_checks = tls_check::TlsChecks::started(&loaded);
    let mut daemon = Daemon {
        started: desired::Started {
            state_dir: d.agent.state_dir.clone(),
            machine: loaded.machine.clone(),
        },
        in_force: loaded,
        concerns: Arc::new(tokio::sync::Mutex::new(concerns)),
        supervisor,
        sync,
        jobs,
        firewall: firewall_status,
        overview,
        cluster,
        problems,
        reloads,
        tls: tls_checks,
        placement,
    };
    if !daemon.in_force.tls_refused.is_empty() {
        let refused: Vec<String> = daemon
            .in_force
            .tls_refused
            .iter()
            .map(ToString::to_string)
            .collect();
        daemon.problems.tls_refused(&format!(
            "TLS material refused at start, Flink keeps the generation in force: {}",
            refused.join("; ")
        ));
    }
    let mut ready_rx = daemon.supervisor.ready();
    let mut events = daemon.supervisor.events();
    let mut watchdog =
        tokio::time::interval(watchdog_period().unwrap_or(Duration::from_secs(3600)));
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    let mut ready_sent = false;
    let mut last_summary = String::new();

    let ending = loop {
        tokio::select! {
            _ = sigterm.recv() => {
                log::info!("SIGTERM: the agent stops; Flink keeps running and the next agent adopts it");
                break Ending::Detach;
            }
            _ = sigint.recv() => {
                log::info!("SIGINT: stopping Flink, then the agent");
                break Ending::StopFlink(None);
            }
            _ = sighup.recv() => {
                log::info!("SIGHUP: reloading {}", daemon.in_force.path.display());
                daemon.begin_reload(reload::Trigger::File, None);
            }
            Some(request) = api_rx.recv() => match request {
                ApiRequest::Shutdown(reply) => {
                    log::info!("shutdown requested: stopping Flink, then the agent");
                    break Ending::StopFlink(Some(reply));
                }
                other => daemon.handle(other),
            },
            Some(done) = reloads_rx.recv() => daemon.finish_reload(done),
            Ok(()) = ready_rx.changed() => {
                let ready = *ready_rx.borrow_and_update();
                daemon.tls.on_ready(ready);
                if ready && !ready_sent {
                    ready_sent = true;
                    log::info!(
                        "JobManager and TaskManager are healthy: ready {} ms after the agent started",
                        started.elapsed().as_millis()
                    );
                    notify("READY=1");
                }
            }
            event = events.recv() => daemon.on_event(event),
            _ = tokio::time::sleep_until(daemon.tls.wake().into()) => daemon.tls_tick(),
            _ = watchdog.tick() => notify("WATCHDOG=1"),
            _ = housekeeping.tick() => {
                if let Some(c) = &daemon.cluster {
                    c.publish(&daemon.supervisor.statuses());
                }
                let statuses = daemon.supervisor.statuses();
                if !ready_sent {
                    // A parked process waits minutes, longer than systemd waits for READY: the
                    // agent would be killed and restarted until its unit failed, and with it
                    // the API and metrics that tell why.
                    let parked = statuses
                        .iter()
                        .find(|p| p.state == supervisor::ProcessState::Failed);
                    if let Some(parked) = parked {
                        ready_sent = true;
                        log::warn!(
                            "ready with the {} parked ({}): serving the API and metrics while it waits",
                            parked.name,
                            parked.reason.as_deref().unwrap_or("its failure budget is spent")
                        );
                        notify("READY=1");
                    }
                }
                let mut summary = supervisor::summary(&statuses);
                if let Some(phase) = daemon.jobs.phase() {
                    summary = format!("{phase}; {summary}");
                    if !ready_sent {
                        // Progress before READY: systemd waits a while longer.
                        notify(&format!("EXTEND_TIMEOUT_USEC={}", RESTORE_EXTEND.as_micros()));
                    }
                }
                if summary != last_summary {
                    notify(&format!("STATUS={summary}"));
                    last_summary = summary;
                }
            }
        }
    };

    notify("STOPPING=1");
    daemon.jobs.shutdown();
    daemon.sync.shutdown();
    let (stop_flink, reply) = match ending {
        Ending::Detach => (false, None),
        Ending::StopFlink(reply) => (true, reply),
    };
    let supervisor = daemon.supervisor.clone();
    let cluster = daemon.cluster.clone();
    let end = async move {
        if stop_flink {
            supervisor.stop().await;
        } else {
            supervisor.detach().await;
        }
        if let Some(c) = cluster {
            c.close().await;
        }
    };
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = &mut end => break,
            _ = watchdog.tick() => notify("WATCHDOG=1"),
        }
    }
    if let Some(reply) = reply {
        let _ = reply.send(());
    }
    let _ = api_stop.send(());
    let _ = api_task.await;
    log::info!(
        "stopped{}",
        if stop_flink {
            ": Flink processes are gone"
        } else {
            "; Flink keeps running"
        }
    );
    Ok(())
}

impl Daemon {
    fn handle(&mut self, request: ApiRequest) {
        match request {
            ApiRequest::Status(reply) => {
                let _ = reply.send(self.status());
            }
            ApiRequest::Config(reply) => {
                let flink = &self.in_force.desired.flink;
                let _ = reply.send(ConfigView {
                    revision: self.in_force.revision.clone(),
                    file: flink.rendered.file_name.to_string(),
                    flink_version: flink.version.to_string(),
                    entries: flinkconf::redacted(&flink.rendered.entries),
                });
            }
            ApiRequest::Firewall(reply) => {
                let _ = reply.send(self.firewall.get());
            }
            ApiRequest::Tls(reply) => {
                let _ = reply.send(self.tls_status());
            }
            ApiRequest::Reload(reply) => self.begin_reload(reload::Trigger::File, Some(reply)),
            ApiRequest::Jobs(command, reply) => {
                let jobs = self.jobs.clone();
                tokio::spawn(async move {
                    let _ = reply.send(jobs.handle(command).await);
                });
            }
            ApiRequest::Restart(target, reply) => {
                let supervisor = self.supervisor.clone();
                tokio::spawn(async move {
                    let _ = reply.send(supervisor.restart(target).await);
                });
            }
            // Handled by the loop itself: it ends the loop.
            ApiRequest::Shutdown(reply) => drop(reply),
        }
    }

    fn on_event(&mut self, event: Result<SupervisorEvent, broadcast::error::RecvError>) {
        match event {
            // A fresh JobManager knows no jobs: declared ones come back from their checkpoints.
            Ok(SupervisorEvent::JobManagerHealthy { .. }) => self.jobs.on_jobmanager_healthy(),
            Ok(event) => {
                let jobmanager_crashed = matches!(
                    &event,
                    SupervisorEvent::ProcessExited { name, expected: false, .. }
                        if *name == Kind::JobManager.name()
                );
                if let (true, Some(cluster)) = (jobmanager_crashed, &self.cluster) {
                    cluster.jobmanager_crashed();
                }
                self.problems.on_event(&event);
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // One of them may have been a JobManager start: re-submitting is idempotent.
                log::warn!("missed {missed} supervisor events; checking the declared jobs");
                self.jobs.on_jobmanager_healthy();
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }
}
