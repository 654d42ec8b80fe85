//! The agent's main loop: one task owns the state; signals, API requests, supervisor changes
//! and timers arrive as events. Slow work (restarts during a reload) runs in spawned tasks so
//! the loop keeps feeding systemd's watchdog — a hung loop is exactly what the watchdog is for.

mod prepare;
mod reload;

pub use prepare::{launch_spec, prepare, PrepareError, Prepared};
pub use reload::{needs_agent_restart, restart_set};

use crate::api::{self, ApiRequest, ReloadReport};
use crate::config::{self, AgentConfig};
use crate::firewall::{self, FirewallHandle};
use crate::flinkconf;
use crate::sdnotify::{notify, watchdog_period};
use crate::status::{AgentStatus, ConfigStatus, FlinkOverview};
use crate::supervisor::{self, SupervisorEvent, SupervisorHandle};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid; every problem is listed.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Flink's files could not be prepared.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The API socket could not be bound (for instance another agent serves it).
    #[error(transparent)]
    Api(#[from] api::server::ApiError),
    /// The object store or checkpoint staging could not be set up.
    #[error(transparent)]
    Checkpoints(#[from] crate::jobs::ServiceError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// The config in force and what was derived from it.
struct InForce {
    config: AgentConfig,
    prepared: Prepared,
    revision: String,
    loaded_at: u64,
}

/// Outcome of a reload task, sent back to the loop.
type ReloadReply = oneshot::Sender<Result<ReloadReport, String>>;

/// The loop's state.
struct Daemon {
    config_path: PathBuf,
    in_force: InForce,
    supervisor: SupervisorHandle,
    firewall: FirewallHandle,
    overview: watch::Receiver<Option<FlinkOverview>>,
    last_reload_error: Option<String>,
    last_error: Option<String>,
    reloading: bool,
    reload_done: mpsc::Sender<()>,
    /// Checkpoint sync and declared jobs.
    jobs: crate::jobs::Service,
}

/// Runs the agent until SIGTERM/SIGINT. Returns after Flink is stopped and the socket removed.
pub async fn run(config_path: &Path) -> Result<(), DaemonError> {
    let config_path = std::path::absolute(config_path).unwrap_or_else(|_| config_path.into());
    let in_force = load_in_force(&config_path)?;
    let cfg = &in_force.config;
    log::info!(
        "flink-agent {} starting: node {} of cluster {}, Flink {} at {}, config revision {}",
        env!("CARGO_PKG_VERSION"),
        cfg.node.id,
        cfg.cluster.id,
        in_force.prepared.version,
        cfg.flink.home.display(),
        in_force.revision
    );
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let listener = api::server::bind(&cfg.agent.socket, cfg.agent.socket_group.as_deref()).await?;
    let (api_tx, mut api_rx) = mpsc::channel::<ApiRequest>(64);
    let (api_stop, api_stopped) = oneshot::channel::<()>();
    let api_task = tokio::spawn(api::server::serve(listener, api_tx, async move {
        let _ = api_stopped.await;
    }));

    let jobs = crate::jobs::Service::start(cfg, &in_force.prepared.version.to_string()).await?;
    // Before Flink starts, so its ports are never open unfiltered.
    let firewall = firewall::spawn(cfg);
    let supervisor = supervisor::spawn(launch_spec(cfg));
    let overview = spawn_overview_poller(launch_spec(cfg).rest_url, supervisor.ready());
    let (reload_done, mut reload_done_rx) = mpsc::channel(4);
    let mut daemon = Daemon {
        config_path,
        in_force,
        supervisor,
        firewall,
        overview,
        last_reload_error: None,
        last_error: None,
        reloading: false,
        reload_done,
        jobs,
    };
    let mut ready_rx = daemon.supervisor.ready();
    let mut events = daemon.supervisor.events();
    let mut watchdog =
        tokio::time::interval(watchdog_period().unwrap_or(Duration::from_secs(3600)));
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    let mut ready_sent = false;
    let mut last_summary = String::new();

    loop {
        tokio::select! {
            _ = sigterm.recv() => { log::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { log::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => { log::info!("SIGHUP: reloading {}", daemon.config_path.display()); daemon.begin_reload(None); }
            Some(request) = api_rx.recv() => daemon.handle(request),
            Some(()) = reload_done_rx.recv() => daemon.reloading = false,
            Ok(()) = ready_rx.changed() => {
                let ready = *ready_rx.borrow_and_update();
                if ready && !ready_sent {
                    ready_sent = true;
                    log::info!("JobManager and TaskManager are healthy: ready");
                    notify("READY=1");
                }
            }
            event = events.recv() => daemon.on_event(event),
            _ = watchdog.tick() => notify("WATCHDOG=1"),
            _ = housekeeping.tick() => {
                let summary = supervisor::summary(&daemon.supervisor.statuses());
                if summary != last_summary {
                    notify(&format!("STATUS={summary}"));
                    last_summary = summary;
                }
            }
        }
    }

    notify("STOPPING=1");
    daemon.jobs.shutdown();
    let shutdown = daemon.supervisor.shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = watchdog.tick() => notify("WATCHDOG=1"),
        }
    }
    let _ = api_stop.send(());
    let _ = api_task.await;
    log::info!("stopped: Flink processes are gone");
    Ok(())
}

impl Daemon {
    fn handle(&mut self, request: ApiRequest) {
        match request {
            ApiRequest::Status(reply) => {
                let _ = reply.send(self.status());
            }
            ApiRequest::Config(reply) => {
                let rendered = &self.in_force.prepared.rendered;
                let _ = reply.send(serde_json::json!({
                    "revision": self.in_force.revision,
                    "file": rendered.file_name,
                    "flink_version": self.in_force.prepared.version.to_string(),
                    "entries": flinkconf::redacted(&rendered.entries),
                }));
            }
            ApiRequest::Firewall(reply) => {
                let _ = reply.send(self.firewall.status());
            }
            ApiRequest::Reload(reply) => self.begin_reload(Some(reply)),
            ApiRequest::Jobs(command, reply) => {
                let jobs = self.jobs.clone();
                tokio::spawn(async move {
                    let _ = reply.send(jobs.handle(command).await);
                });
            }
            ApiRequest::Restart(target, reply) => {
                let supervisor = self.supervisor.clone();
                tokio::spawn(async move {
                    let result = supervisor.restart(target).await.map_err(|e| e.to_string());
                    let _ = reply.send(result);
                });
            }
        }
    }

    fn on_event(
        &mut self,
        event: Result<SupervisorEvent, tokio::sync::broadcast::error::RecvError>,
    ) {
        match event {
            Ok(SupervisorEvent::ProcessExited { name, how }) => {
                self.last_error = Some(format!("{name} {how}"));
            }
            // A fresh JobManager knows no jobs: declared ones come back from their checkpoints.
            Ok(SupervisorEvent::JobManagerHealthy { .. }) => self.jobs.on_jobmanager_healthy(),
            _ => {}
        }
    }

    /// Validates the file again; keeps the config in force on any problem. A valid change is
    /// rendered at once and the affected processes are restarted in a background task.
    fn begin_reload(&mut self, reply: Option<ReloadReply>) {
        let answer = |reply: Option<ReloadReply>, result: Result<ReloadReport, String>| {
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        };
        if self.reloading {
            answer(
                reply,
                Err("a reload is already in progress; try again when it has finished".into()),
            );
            return;
        }
        let next = match load_in_force(&self.config_path) {
            Ok(next) => next,
            Err(e) => {
                let message =
                    format!("reload refused, the running configuration stays in force: {e}");
                log::error!("{message}");
                self.last_reload_error = Some(message.clone());
                self.last_error = Some(message.clone());
                answer(reply, Err(message));
                return;
            }
        };
        self.last_reload_error = None;
        for key in needs_agent_restart(&self.in_force.config, &next.config) {
            log::warn!("{key} changed: it takes effect when the agent restarts");
        }
        let set = restart_set(
            &self.in_force.config,
            &self.in_force.prepared.rendered,
            &next.config,
            &next.prepared.rendered,
        );
        let mut report = ReloadReport {
            revision: next.revision.clone(),
            restarted: Vec::new(),
            flink_config_changed: next.prepared.changed,
        };
        if set.taskmanager {
            report.restarted.push("taskmanager".into());
        }
        if set.jobmanager {
            report.restarted.insert(0, "jobmanager".into());
        }
        log::info!(
            "configuration revision {} in force; restarting: {}",
            next.revision,
            if report.restarted.is_empty() {
                "nothing".to_string()
            } else {
                report.restarted.join(", ")
            }
        );
        let spec = launch_spec(&next.config);
        self.in_force = next;
        self.firewall.update(&self.in_force.config);
        self.reloading = true;
        let supervisor = self.supervisor.clone();
        let done = self.reload_done.clone();
        tokio::spawn(async move {
            supervisor.apply(spec, set).await;
            let _ = done.send(()).await;
            answer(reply, Ok(report));
        });
    }

    fn status(&self) -> AgentStatus {
        let cfg = &self.in_force.config;
        let processes = self.supervisor.statuses();
        let last_error = self.last_error.clone().or_else(|| {
            processes
                .iter()
                .find_map(|p| p.reason.as_ref().map(|r| format!("{}: {r}", p.name)))
        });
        AgentStatus {
            node_id: cfg.node.id.clone(),
            cluster_id: cfg.cluster.id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            flink_version: Some(self.in_force.prepared.version.to_string()),
            ready: *self.supervisor.ready().borrow(),
            config: ConfigStatus {
                path: self.config_path.display().to_string(),
                revision: self.in_force.revision.clone(),
                loaded_at: self.in_force.loaded_at,
                last_reload_error: self.last_reload_error.clone(),
            },
            processes,
            overview: self.overview.borrow().clone(),
            last_error,
            checkpoints: Some(self.jobs.sync_status()),
            jobs: self.jobs.jobs_status(),
            firewall: self.firewall.status(),
        }
    }
}

/// Loads, validates and prepares a config; nothing in force changes if this fails.
fn load_in_force(path: &Path) -> Result<InForce, DaemonError> {
    let bytes = std::fs::read(path).map_err(|source| config::ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let config = config::load(path)?;
    let prepared = prepare(&config)?;
    Ok(InForce {
        config,
        prepared,
        revision: hex::encode(&Sha256::digest(&bytes)[..6]),
        loaded_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
}

/// Keeps Flink's `/overview` figures fresh for `status` without making requests wait on Flink.
/// Refreshes at once when readiness changes, so `status` never says "ready" next to figures
/// from before the TaskManager registered.
fn spawn_overview_poller(
    rest_url: String,
    mut ready: watch::Receiver<bool>,
) -> watch::Receiver<Option<FlinkOverview>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let client = match crate::flinkrest::FlinkRest::new(&rest_url) {
            Ok(client) => client,
            Err(e) => {
                log::error!(
                    "Flink REST client for {rest_url}: {e}; status will lack Flink's figures"
                );
                return;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut supervisor_alive = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = ready.changed(), if supervisor_alive => supervisor_alive = changed.is_ok(),
            }
            if tx.is_closed() {
                return;
            }
            tx.send_replace(client.overview().await.ok());
        }
    });
    rx
}
