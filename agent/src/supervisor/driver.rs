//! The supervisor task: the single owner of both processes. It waits for whichever comes first
//! (a command, a process exit, the next probe or deadline), feeds it to the processes'
//! [`Machine`]s and carries out their [`Action`]s.

use super::jvm_command::{self, JvmCommand};
use super::policy::{Action, Machine};
use super::process::{self, Kind, Live};
use super::{Command, LaunchSpec, SupervisorEvent, Target};
use crate::flinkrest::FlinkRest;
use crate::status::{ProcessState, ProcessStatus};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// Probe period while a process is starting: READY should follow health within a fraction of a
/// second, and a REST call on loopback is cheap.
const STARTING_PROBE: Duration = Duration::from_millis(200);

/// Where the task publishes what it sees.
#[derive(Debug)]
pub struct Outputs {
    pub statuses: watch::Sender<Vec<ProcessStatus>>,
    pub ready: watch::Sender<bool>,
    pub events: broadcast::Sender<SupervisorEvent>,
}

/// One process: its state machine and, while it exists, its process.
#[derive(Debug)]
struct Slot {
    kind: Kind,
    machine: Machine,
    live: Option<Live>,
    /// The JVM command key of a launch through the script: the command is learned under it once
    /// the process is healthy (None: launched directly, or the key could not be computed).
    learn_key: Option<String>,
    /// The current process has been healthy at least once.
    proven: bool,
}

#[derive(Debug)]
struct Driver {
    spec: LaunchSpec,
    rest: Option<FlinkRest>,
    jm: Slot,
    tm: Slot,
    /// JobManager launches so far (the checkpoint module re-submits jobs per generation).
    generation: u64,
    /// The resource id of the current TaskManager launch: health means *this* TaskManager is
    /// registered, not a predecessor Flink has not timed out yet.
    tm_resource_id: String,
    tm_launches: u64,
    out: Outputs,
}

pub fn initial_statuses() -> Vec<ProcessStatus> {
    [Kind::JobManager, Kind::TaskManager]
        .into_iter()
        .map(|kind| ProcessStatus {
            name: kind.name().into(),
            state: ProcessState::Stopped,
            pid: None,
            restarts: 0,
            uptime_secs: None,
            last_exit: None,
            reason: None,
        })
        .collect()
}

pub async fn run(spec: LaunchSpec, mut commands: mpsc::Receiver<Command>, out: Outputs) {
    let slot = |kind| Slot {
        kind,
        machine: Machine::new(kind.name(), spec.settings.clone()),
        live: None,
        learn_key: None,
        proven: false,
    };
    let mut d = Driver {
        rest: rest_client(&spec.rest_url),
        jm: slot(Kind::JobManager),
        tm: slot(Kind::TaskManager),
        spec,
        generation: 0,
        tm_resource_id: String::new(),
        tm_launches: 0,
        out,
    };
    d.launch(Kind::JobManager, None).await;
    d.launch(Kind::TaskManager, None).await;
    loop {
        d.publish();
        let wake = d.next_wake();
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Restart(target, reply)) => {
                    d.restart(target, "restart requested by the operator").await;
                    let _ = reply.send(());
                }
                Some(Command::Apply(spec, set, reply)) => {
                    d.apply(*spec, set).await;
                    let _ = reply.send(());
                }
                Some(Command::Shutdown(reply)) => {
                    d.shutdown().await;
                    let _ = reply.send(());
                    return;
                }
                None => {
                    // Every handle is gone: nobody could ever stop these processes.
                    d.shutdown().await;
                    return;
                }
            },
            how = exit_of(&mut d.jm.live) => d.on_exit(Kind::JobManager, how),
            how = exit_of(&mut d.tm.live) => d.on_exit(Kind::TaskManager, how),
            _ = tokio::time::sleep_until(wake.into()) => d.step().await,
        }
    }
}

/// Resolves when the process exits; never while there is none.
async fn exit_of(live: &mut Option<Live>) -> String {
    match live {
        Some(l) => (&mut l.exit)
            .await
            .unwrap_or_else(|_| "ended (not reaped)".into()),
        None => std::future::pending().await,
    }
}

fn rest_client(url: &str) -> Option<FlinkRest> {
    FlinkRest::new(url).inspect_err(|e| log::error!("{e}")).ok()
}

impl Driver {
    fn slot(&mut self, kind: Kind) -> &mut Slot {
        match kind {
            Kind::JobManager => &mut self.jm,
            Kind::TaskManager => &mut self.tm,
        }
    }

    fn emit(&self, event: SupervisorEvent) {
        // No subscriber is fine: events are notifications, the state is in `statuses`.
        let _ = self.out.events.send(event);
    }

    /// Starts `kind`. `why` = None for the first start and restarts the policy asked for;
    /// Some for deliberate restarts (operator, config change).
    async fn launch(&mut self, kind: Kind, why: Option<&str>) {
        if kind == Kind::TaskManager {
            self.tm_launches += 1;
            self.tm_resource_id =
                format!("flink-agent-tm-{}-{}", std::process::id(), self.tm_launches);
        }
        let args = self.launch_args(kind);
        let key = jvm_command::key(&self.spec, kind)
            .inspect_err(|e| log::warn!("cannot fingerprint the {} launch: {e}", kind.name()))
            .ok();
        let learned = key
            .as_deref()
            .and_then(|k| jvm_command::load(&jvm_command::cache_path(&self.spec, kind), k));
        let result = process::launch(&self.spec, kind, &args, learned.as_ref());
        let now = Instant::now();
        let slot = self.slot(kind);
        match why {
            Some(why) => slot.machine.relaunched(now, why),
            None => slot.machine.launched(now),
        }
        match result {
            Ok(live) => {
                let how = if live.direct {
                    "as its learned JVM command"
                } else {
                    "through Flink's script"
                };
                log::info!("started {} (pid {}) {how}", kind.name(), live.pid);
                slot.learn_key = if live.direct { None } else { key };
                slot.proven = false;
                slot.live = Some(live);
                if kind == Kind::JobManager {
                    self.generation += 1;
                    self.emit(SupervisorEvent::JobManagerStarted {
                        generation: self.generation,
                    });
                }
            }
            Err(e) => {
                log::error!("{e}");
                let action = slot.machine.exited(now, &e.to_string());
                self.act(kind, action);
            }
        }
    }

    /// Dynamic properties of this launch: the TaskManager's resource id, unique per launch.
    fn launch_args(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::JobManager => Vec::new(),
            Kind::TaskManager => vec![
                "-D".to_string(),
                format!("taskmanager.resource-id={}", self.tm_resource_id),
            ],
        }
    }

    /// The process just became healthy: a learned command that got it there stays trusted, and
    /// if the script launched it, its JVM command is kept for the next launches under this config.
    fn proved_healthy(&mut self, kind: Kind) {
        let args = self.launch_args(kind);
        let path = jvm_command::cache_path(&self.spec, kind);
        let spec = self.spec.clone();
        let slot = self.slot(kind);
        slot.proven = true;
        let (Some(key), Some(live)) = (slot.learn_key.take(), &slot.live) else {
            return;
        };
        let read = |file: &str| process::read_proc(&spec, live.pid, file);
        let learned = match (read("cmdline"), read("environ")) {
            (Ok(cmdline), Ok(environ)) => {
                jvm_command::learn(key, &cmdline, &environ, &args).map_err(|e| e.to_string())
            }
            (Err(e), _) | (_, Err(e)) => Err(format!("cannot read it from /proc: {e}")),
        };
        match learned.and_then(|cmd: JvmCommand| {
            jvm_command::store(&path, &cmd)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }) {
            Ok(()) => log::info!(
                "learned the {} JVM command; restarts under this config skip Flink's scripts",
                kind.name()
            ),
            Err(e) => log::warn!(
                "{} keeps starting through Flink's script: not learning its JVM command: {e}",
                kind.name()
            ),
        }
    }

    fn on_exit(&mut self, kind: Kind, how: String) {
        let now = Instant::now();
        let path = jvm_command::cache_path(&self.spec, kind);
        let slot = self.slot(kind);
        if let Some(live) = slot.live.take() {
            // The JVM led the group; anything it left behind goes with it.
            process::signal_group(live.pid, Signal::SIGKILL);
            if live.direct && !slot.proven {
                // Never healthy from the learned command (crashed, or killed at the start
                // timeout): let the script decide again.
                jvm_command::forget(&path);
            }
        }
        slot.learn_key = None;
        let action = slot.machine.exited(now, &how);
        log::warn!("{} {how}", kind.name());
        self.emit(SupervisorEvent::ProcessExited {
            name: kind.name().into(),
            how,
        });
        self.act(kind, action);
        if kind == Kind::JobManager {
            self.tm.machine.revalidate(
                now,
                "waiting for the TaskManager to re-register with the restarted JobManager",
            );
        }
    }

    /// Carries out the policy's kill decisions (launches happen in `step`).
    fn act(&mut self, kind: Kind, action: Action) {
        let slot = self.slot(kind);
        if matches!(action, Action::Kill | Action::GiveUp) {
            if let Some(live) = &slot.live {
                process::signal_group(live.pid, Signal::SIGKILL);
            }
        }
        if action == Action::GiveUp {
            let reason = slot.machine.reason().unwrap_or_default().to_string();
            log::error!("{}: {reason}", kind.name());
            self.emit(SupervisorEvent::ProcessFailed {
                name: kind.name().into(),
                reason,
            });
        }
    }

    /// Timers and health probes.
    async fn step(&mut self) {
        let now = Instant::now();
        for kind in [Kind::JobManager, Kind::TaskManager] {
            match self.slot(kind).machine.tick(now) {
                Action::Launch => {
                    if let Some(old) = self.slot(kind).live.take() {
                        process::sweep_group(old.pid).await;
                    }
                    self.launch(kind, None).await;
                }
                action => self.act(kind, action),
            }
        }
        self.probe_jobmanager().await;
        self.probe_taskmanager().await;
    }

    async fn probe_jobmanager(&mut self) {
        let (Some(rest), true) = (&self.rest, self.jm.machine.is_live()) else {
            return;
        };
        let result = rest.overview().await;
        let now = Instant::now();
        match result {
            Ok(_) => {
                let was = self.jm.machine.state();
                self.jm.machine.healthy();
                if was == ProcessState::Starting {
                    log::info!("jobmanager healthy (generation {})", self.generation);
                    self.emit(SupervisorEvent::JobManagerHealthy {
                        generation: self.generation,
                    });
                    self.proved_healthy(Kind::JobManager);
                }
            }
            Err(e) => {
                let action = self.jm.machine.probe_failed(now, &e.to_string());
                self.act(Kind::JobManager, action);
            }
        }
    }

    async fn probe_taskmanager(&mut self) {
        if !self.tm.machine.is_live() {
            return;
        }
        let rest = match &self.rest {
            Some(rest) if self.jm.machine.state() == ProcessState::Running => rest,
            // Registration needs a healthy JobManager: not the TaskManager's fault.
            _ => return self.tm.machine.hold(Instant::now()),
        };
        // A failed listing is the JobManager's problem, judged by its own probe.
        let Ok(list) = rest.taskmanagers().await else {
            return;
        };
        let registered = list
            .iter()
            .any(|t| t.id == self.tm_resource_id && t.slots_number == self.spec.expected_slots);
        if registered {
            let was = self.tm.machine.state();
            self.tm.machine.healthy();
            if was == ProcessState::Starting {
                log::info!(
                    "taskmanager {} registered with {} slots",
                    self.tm_resource_id,
                    self.spec.expected_slots
                );
                self.emit(SupervisorEvent::TaskManagerHealthy);
                self.proved_healthy(Kind::TaskManager);
            }
        } else {
            let why = format!(
                "TaskManager {} is not registered with {} slots",
                self.tm_resource_id, self.spec.expected_slots
            );
            let action = self.tm.machine.probe_failed(Instant::now(), &why);
            self.act(Kind::TaskManager, action);
        }
    }

    /// When to step next: the probe period, or earlier for a deadline.
    fn next_wake(&self) -> Instant {
        let machines = [&self.jm.machine, &self.tm.machine];
        let period = if machines.iter().any(|m| m.state() == ProcessState::Starting) {
            STARTING_PROBE
        } else {
            Duration::from_millis(self.spec.settings.health_interval_ms)
        };
        machines
            .iter()
            .filter_map(|m| m.deadline())
            .fold(Instant::now() + period, Instant::min)
    }

    /// Stops one process gracefully and waits until its group is gone.
    async fn stop(&mut self, kind: Kind) {
        let grace = Duration::from_secs(self.spec.settings.stop_grace_secs);
        self.slot(kind).machine.stopping();
        self.publish();
        if let Some(live) = self.slot(kind).live.take() {
            log::info!("stopping {} (pid {})", kind.name(), live.pid);
            let how = process::terminate(live, grace).await;
            self.slot(kind).machine.exited(Instant::now(), &how);
            self.emit(SupervisorEvent::ProcessExited {
                name: kind.name().into(),
                how,
            });
        }
        self.slot(kind).machine.stopped();
    }

    /// Deliberate restart in a controlled order: TaskManager down, JobManager down and up,
    /// TaskManager up. Each restarted process gets a fresh failure budget.
    async fn restart(&mut self, target: Target, why: &str) {
        if target.includes_taskmanager() {
            self.stop(Kind::TaskManager).await;
        }
        if target.includes_jobmanager() {
            self.stop(Kind::JobManager).await;
            self.jm.machine.reset_budget();
            self.launch(Kind::JobManager, Some(why)).await;
            self.tm.machine.revalidate(
                Instant::now(),
                "waiting for the TaskManager to re-register with the restarted JobManager",
            );
        }
        if target.includes_taskmanager() {
            self.tm.machine.reset_budget();
            self.launch(Kind::TaskManager, Some(why)).await;
        }
    }

    async fn apply(&mut self, spec: LaunchSpec, set: crate::flinkconf::RestartSet) {
        if spec.rest_url != self.spec.rest_url {
            self.rest = rest_client(&spec.rest_url).or(self.rest.take());
        }
        for slot in [&mut self.jm, &mut self.tm] {
            slot.machine.set_settings(spec.settings.clone());
        }
        self.spec = spec;
        if let Some(target) = set.target() {
            self.restart(target, "configuration changed").await;
        }
    }

    async fn shutdown(&mut self) {
        self.stop(Kind::TaskManager).await;
        self.stop(Kind::JobManager).await;
        self.publish();
    }

    fn publish(&self) {
        let statuses: Vec<ProcessStatus> = [&self.jm, &self.tm]
            .into_iter()
            .map(|slot| ProcessStatus {
                name: slot.kind.name().into(),
                state: slot.machine.state(),
                pid: slot.live.as_ref().map(|l| l.pid),
                restarts: slot.machine.restarts(),
                uptime_secs: slot.live.as_ref().map(|l| l.started.elapsed().as_secs()),
                last_exit: slot.machine.last_exit().map(str::to_string),
                reason: slot.machine.reason().map(str::to_string),
            })
            .collect();
        self.out.statuses.send_replace(statuses);
        let ready = self.jm.machine.state() == ProcessState::Running
            && self.tm.machine.state() == ProcessState::Running;
        self.out
            .ready
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }
}
