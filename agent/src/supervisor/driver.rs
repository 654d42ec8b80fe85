//! The supervisor task: the single owner of the processes (the JobManager, the TaskManager and,
//! in a three-node cluster, the ZooKeeper server). It starts by adopting what an earlier agent
//! left running, then waits for whichever comes first (a command, a process exit, the next
//! probe or deadline), feeds it to the processes' [`Machine`]s and carries out their
//! [`Action`]s. Every change of who runs is written to the state file first.
//!
//! A process whose precondition does not hold yet is `waiting` (not a failure): in a three-node
//! cluster the JobManager and the TaskManager wait for the ensemble to tell the cluster's
//! incarnation (their `high-availability.cluster-id`), and a ZooKeeper server with an empty data
//! dir for a serving peer (see `zkserver`).

use super::adopt;
use super::cds;
use super::fingerprint::{restart_set, Fingerprint, RestartSet};
use super::jvm_command::{self, JvmCommand};
use super::persist::{self, Budget, Budgets, Persisted, Record, StateFile};
use super::placement::Placement;
use super::policy::{Action, Machine};
use super::process::{self, Launch, Live};
use super::{scratch, zkserver};
use super::{
    Command, Ending, Kind, LaunchSpec, ProcessState, ProcessStatus, SupervisorError,
    SupervisorEvent, Target,
};
use crate::flinkrest::FlinkRest;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, watch};

/// Probe period while a process is starting: READY should follow health within a fraction of a
/// second, and a REST call on loopback is cheap.
const STARTING_PROBE: Duration = Duration::from_millis(200);

/// How often a waiting process's precondition is checked again.
const WAITING_RECHECK: Duration = Duration::from_secs(1);

/// The longest a TaskManager's restart waits for the JobManager to drop its dead predecessor:
/// Flink's heartbeat timeout, after which the ResourceManager drops it on its own, and a margin
/// for the listing to catch up. Past it the JobManager is not answering as it should, and
/// waiting longer would not help.
const PREDECESSOR_LET_GO: Duration =
    Duration::from_secs(crate::flinkconf::HEARTBEAT_TIMEOUT.as_secs() + 3);

/// Where the task publishes what it sees.
#[derive(Debug)]
pub struct Outputs {
    pub statuses: watch::Sender<Vec<ProcessStatus>>,
    pub ready: watch::Sender<bool>,
    pub events: broadcast::Sender<SupervisorEvent>,
}

/// One process: its state machine and, while it exists, its process and what it runs with.
#[derive(Debug)]
struct Slot {
    kind: Kind,
    machine: Machine,
    live: Option<Live>,
    /// The launch inputs of the last process (live, or the one that ended).
    fingerprint: Option<Fingerprint>,
    /// The TaskManager's resource id of the last process.
    resource_id: Option<String>,
    /// When the last process ended (it stays set while the next one runs).
    ended: Option<Instant>,
    /// The conf dir the last process was started with.
    conf_dir: Option<std::path::PathBuf>,
    /// The JVM command key of a launch through the script: the command is learned under it once
    /// the process is healthy (None: launched directly, or the key could not be computed).
    learn_key: Option<String>,
    /// The current process has been healthy at least once.
    proven: bool,
    /// The TaskManager's task heap, as Flink's listing last reported it.
    heap_bytes: Option<u64>,
    /// The per-launch arguments of the current process (stripped when its JVM command is
    /// learned).
    extra_args: Vec<String>,
    /// The current process's class-data archive and what it does with it (see [`cds`]).
    cds: Option<(cds::Archive, cds::Cds)>,
}

impl Slot {
    fn new(kind: Kind, spec: &LaunchSpec) -> Self {
        Slot {
            kind,
            machine: Machine::new(kind.name(), spec.settings.clone()),
            live: None,
            fingerprint: None,
            resource_id: None,
            ended: None,
            conf_dir: None,
            learn_key: None,
            proven: false,
            heap_bytes: None,
            extra_args: Vec::new(),
            cds: None,
        }
    }

    fn record(&self) -> Option<Record> {
        let live = self.live.as_ref()?;
        Some(Record {
            identity: live.identity.clone(),
            conf_dir: self.conf_dir.clone()?,
            direct: live.direct,
            fingerprint: self.fingerprint.clone()?,
            resource_id: self.resource_id.clone(),
        })
    }
}

#[derive(Debug)]
struct Driver {
    spec: LaunchSpec,
    rest: Option<FlinkRest>,
    zk: Slot,
    jm: Slot,
    tm: Slot,
    /// Three-node clusters: the cluster's incarnation, once the ensemble tells it.
    incarnation: watch::Receiver<Option<String>>,
    /// Three-node clusters: the ensemble has been seen serving (the shared marker is written).
    formed: bool,
    /// JobManager launches on this node (the jobs re-submit per generation).
    generation: u64,
    /// Launches of either process on this node.
    launches: u64,
    placement: Placement,
    state: StateFile,
    out: Outputs,
}

/// The processes this node runs under `spec`, in start order.
fn kinds(spec: &LaunchSpec) -> Vec<Kind> {
    let mut kinds = Vec::new();
    if spec.zookeeper.is_some() {
        kinds.push(Kind::ZooKeeper);
    }
    kinds.extend([Kind::JobManager, Kind::TaskManager]);
    kinds
}

pub fn initial_statuses(spec: &LaunchSpec) -> Vec<ProcessStatus> {
    kinds(spec)
        .into_iter()
        .map(|kind| ProcessStatus {
            name: kind.name().into(),
            state: ProcessState::Stopped,
            pid: None,
            restarts: 0,
            started_at: None,
            uptime_secs: None,
            adopted: false,
            last_exit: None,
            reason: None,
            budget_remaining: 0,
            heap_bytes: None,
        })
        .collect()
}

/// How [`Driver::stop`] ends a process.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGTERM, and SIGKILL after the configured grace period.
    Graceful,
    /// SIGKILL at once: the process's work is lost anyway.
    Kill,
}

pub async fn run(
    spec: LaunchSpec,
    state: StateFile,
    placement: Placement,
    incarnation: watch::Receiver<Option<String>>,
    mut commands: mpsc::Receiver<Command>,
    out: Outputs,
) {
    let persisted = state.load();
    let mut d = Driver {
        rest: rest_client(&spec),
        zk: Slot::new(Kind::ZooKeeper, &spec),
        jm: Slot::new(Kind::JobManager, &spec),
        tm: Slot::new(Kind::TaskManager, &spec),
        incarnation,
        formed: false,
        spec,
        generation: persisted.generation,
        launches: persisted.launches,
        placement,
        state,
        out,
    };
    d.adopt(persisted).await;
    d.reconcile("configuration changed while the agent was away")
        .await;
    // Adopted processes are probably healthy already: probe them now, not a period later.
    d.step().await;
    loop {
        d.publish();
        let wake = d.next_wake();
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Restart(target, reply)) => {
                    let result = if target == Target::ZooKeeper && d.spec.zookeeper.is_none() {
                        Err(SupervisorError::NotRunHere("ZooKeeper server"))
                    } else {
                        d.restart(target, "restart requested by the operator").await;
                        Ok(())
                    };
                    let _ = reply.send(result);
                }
                Some(Command::HandOver(state_dir)) => {
                    d.state.mirror_to(state_dir.as_deref());
                    let _ = d.save();
                }
                Some(Command::Apply(spec, reply)) => {
                    let restarted = d.apply(*spec).await;
                    let _ = reply.send(restarted);
                }
                Some(Command::End(how, reply)) => {
                    d.end(how).await;
                    let _ = reply.send(());
                    return;
                }
                None => {
                    // Every handle is gone: the agent is going away; a later one adopts.
                    d.end(Ending::Detach).await;
                    return;
                }
            },
            how = exit_of(&mut d.zk.live) => d.on_exit(Kind::ZooKeeper, how).await,
            how = exit_of(&mut d.jm.live) => d.on_exit(Kind::JobManager, how).await,
            how = exit_of(&mut d.tm.live) => d.on_exit(Kind::TaskManager, how).await,
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

fn rest_client(spec: &LaunchSpec) -> Option<FlinkRest> {
    FlinkRest::new(&spec.endpoint)
        .inspect_err(|e| log::error!("{e}"))
        .ok()
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl Driver {
    fn slot(&mut self, kind: Kind) -> &mut Slot {
        match kind {
            Kind::ZooKeeper => &mut self.zk,
            Kind::JobManager => &mut self.jm,
            Kind::TaskManager => &mut self.tm,
        }
    }

    fn emit(&self, event: SupervisorEvent) {
        // No subscriber is fine: events are notifications, the state is in `statuses`.
        let _ = self.out.events.send(event);
    }

    /// Writes who runs now. A failure is logged: the processes are real either way, and the
    /// next agent finds unrecorded ones by their command line (see `adopt::strays`).
    fn save(&self) -> std::io::Result<()> {
        self.state.save(&self.persisted()).inspect_err(|e| {
            log::error!(
                "cannot write {}: {e}; a restarted agent may not adopt the Flink processes",
                self.state.path().display()
            );
        })
    }

    /// Who runs now, as the state file records it.
    fn persisted(&self) -> Persisted {
        Persisted {
            generation: self.generation,
            launches: self.launches,
            jobmanager: self.jm.record(),
            taskmanager: self.tm.record(),
            zookeeper: self.zk.record(),
            budgets: Some(self.budgets()),
        }
    }

    /// Every process's failure budget, for the next agent (see [`persist::Budget`]).
    fn budgets(&self) -> Budgets {
        let (now, clock_ms) = (Instant::now(), persist::clock_ms());
        let runs = kinds(&self.spec);
        let processes = [&self.zk, &self.jm, &self.tm]
            .into_iter()
            .filter(|slot| runs.contains(&slot.kind))
            .map(|slot| {
                let history = slot.machine.history(now);
                let budget = Budget::of(history, slot.fingerprint.clone(), clock_ms);
                (slot.kind.name().to_string(), budget)
            })
            .collect();
        Budgets {
            boot_id: crate::procfs::boot_id().unwrap_or_default(),
            processes,
        }
    }

    /// Goes on with the failure budgets an earlier agent left, for the processes this node
    /// runs. A process that is not running and had spent its budget stays parked; `reconcile`
    /// then restarts it at once if the config changed since it last ran, as after a reload.
    fn resume(&mut self, budgets: Option<Budgets>) {
        let Some(budgets) = budgets else { return };
        let same_boot = crate::procfs::boot_id().is_ok_and(|b| b == budgets.boot_id);
        let (now, clock_ms) = (Instant::now(), persist::clock_ms());
        for kind in kinds(&self.spec) {
            let Some(budget) = budgets.processes.get(kind.name()) else {
                continue;
            };
            let slot = self.slot(kind);
            if slot.fingerprint.is_none() {
                slot.fingerprint.clone_from(&budget.fingerprint);
            }
            slot.machine
                .resume(budget.history(clock_ms, same_boot), now);
            if slot.machine.state() == ProcessState::Failed {
                log::warn!(
                    "{} stays parked: {}",
                    kind.name(),
                    slot.machine.reason().unwrap_or_default()
                );
            }
        }
    }

    /// Takes over the processes an earlier agent recorded and that are still its Flink; kills
    /// strays that carry this agent's conf dir but are in no record.
    async fn adopt(&mut self, persisted: Persisted) {
        let now = Instant::now();
        for (kind, record) in [
            (Kind::ZooKeeper, persisted.zookeeper),
            (Kind::JobManager, persisted.jobmanager),
            (Kind::TaskManager, persisted.taskmanager),
        ] {
            let Some(record) = record else { continue };
            match adopt::adopt(&record, &self.spec, kind) {
                Ok(live) => {
                    log::info!(
                        "adopted the running {} (pid {}, started by an earlier agent)",
                        kind.name(),
                        live.pid
                    );
                    let conf_dir = if record.conf_dir.as_os_str().is_empty() {
                        adopt::default_conf_dir(&self.spec, kind)
                    } else {
                        record.conf_dir
                    };
                    // It was healthy under the agent that recorded it: its health counts from
                    // its start, not from this agent's first probe.
                    let running_for = live.identity.started_at().map(crate::procfs::age);
                    let slot = self.slot(kind);
                    slot.live = Some(live);
                    slot.conf_dir = Some(conf_dir);
                    slot.fingerprint = Some(record.fingerprint);
                    slot.resource_id = record.resource_id;
                    slot.proven = true;
                    slot.machine.launched(now);
                    if let Some(since) = running_for
                        .and_then(|secs| now.checked_sub(std::time::Duration::from_secs(secs)))
                    {
                        slot.machine.healthy_since(since);
                    }
                }
                Err(e) => log::info!("not adopting the recorded {}: {e}", kind.name()),
            }
        }
        self.resume(persisted.budgets);
        let keep: Vec<i32> = [&self.zk, &self.jm, &self.tm]
            .iter()
            .filter_map(|s| s.live.as_ref().map(|l| l.pid))
            .collect();
        for session in adopt::strays(&self.spec, &keep) {
            log::warn!(
                "killing process group {session}: it runs this agent's Flink configuration but no agent recorded it"
            );
            process::sweep_group(session).await;
        }
        let _ = self.save();
    }

    /// Brings the processes to the desired spec: restarts (in order) what runs with another
    /// fingerprint or has failed, launches what does not run. Answers what it restarted, in
    /// order. A changed ZooKeeper server restarts alone, first; a ZooKeeper server the spec no
    /// longer has (the cluster became a single node) is stopped.
    async fn reconcile(&mut self, why: &str) -> Vec<&'static str> {
        let mut restarted = Vec::new();
        let zk_stale = match (&self.spec.zookeeper, &self.zk.fingerprint) {
            (Some(zk), Some(fp)) => {
                (self.zk.live.is_some() || self.zk.machine.state() == ProcessState::Failed)
                    && *fp != zk.fingerprint
            }
            _ => false,
        };
        if zk_stale {
            self.restart(Target::ZooKeeper, why).await;
            restarted.push(Kind::ZooKeeper.name());
        }
        if self.spec.zookeeper.is_none() && self.zk.live.is_some() {
            self.stop(Kind::ZooKeeper, Stop::Graceful).await;
            self.zk.fingerprint = None;
        }
        // A live process, or a failed one (a new config may be the operator's fix), restarts
        // when it ran with another fingerprint.
        let stale = |slot: &Slot, pick: fn(RestartSet) -> bool| match &slot.fingerprint {
            Some(fp) if slot.live.is_some() || slot.machine.state() == ProcessState::Failed => {
                pick(restart_set(fp, &self.spec.fingerprint))
            }
            _ => false,
        };
        let set = RestartSet {
            jobmanager: stale(&self.jm, |s| s.jobmanager),
            taskmanager: stale(&self.tm, |s| s.taskmanager),
        };
        if let Some(target) = Target::of(set) {
            self.restart(target, why).await;
            restarted.extend(target.names());
        }
        for kind in kinds(&self.spec) {
            let slot = self.slot(kind);
            if slot.live.is_none() && slot.machine.state() == ProcessState::Stopped {
                self.launch(kind, None).await;
            }
        }
        restarted
    }

    /// What `kind` needs before it may start: its per-launch arguments, or why it waits.
    async fn precondition(&mut self, kind: Kind) -> Result<Vec<String>, String> {
        match kind {
            Kind::ZooKeeper => {
                let Some(zk) = &self.spec.zookeeper else {
                    return Err("this node runs no ZooKeeper server".into());
                };
                zkserver::may_start(&zk.server).await.map(|()| Vec::new())
            }
            Kind::JobManager | Kind::TaskManager => {
                if kind == Kind::TaskManager {
                    self.predecessor_let_go().await?;
                }
                let mut args = Vec::new();
                if let Some(cluster) = &self.spec.ha_cluster_id {
                    let Some(incarnation) = self.incarnation.borrow().clone() else {
                        return Err("waiting for the ZooKeeper quorum, which tells the cluster's incarnation (Flink's high-availability.cluster-id)".into());
                    };
                    args.push("-D".to_string());
                    args.push(format!(
                        "high-availability.cluster-id={}",
                        crate::zookeeper::coordination::flink_cluster_id(cluster, &incarnation)
                    ));
                }
                Ok(args)
            }
        }
    }

    /// A new TaskManager binds the same RPC port as the one that died. While the JobManager
    /// still heartbeats the dead one it keeps connecting to that port, and if its connection and
    /// the new TaskManager's own meet, Flink's RPC (Pekko's classic remoting) can leave the new
    /// TaskManager unable to register at all ("Discarding inbound message … in read-only
    /// association" in its log) until the start timeout kills it: 130.9 s to recover, twice in
    /// the fault runs. So the new one starts once the JobManager no longer lists the old one
    /// (at most [`PREDECESSOR_LET_GO`] after it ended); a listing that fails does not hold it.
    async fn predecessor_let_go(&self) -> Result<(), String> {
        let (Some(id), Some(ended), Some(rest)) = (&self.tm.resource_id, self.tm.ended, &self.rest)
        else {
            return Ok(());
        };
        if ended.elapsed() >= PREDECESSOR_LET_GO {
            return Ok(());
        }
        match rest.taskmanagers().await {
            Ok(list) if list.iter().any(|t| &t.id == id) => Err(format!(
                "waiting for the JobManager to drop the TaskManager that ended ({id}; at most {} s): a new one on the same RPC port before that may never register",
                PREDECESSOR_LET_GO.as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// Starts `kind`. `why` = None for the first start and restarts the policy asked for;
    /// Some for deliberate restarts (operator, config change).
    async fn launch(&mut self, kind: Kind, why: Option<&str>) {
        let mut args = match self.precondition(kind).await {
            Ok(args) => args,
            Err(waiting) => {
                let slot = self.slot(kind);
                if slot.machine.state() != ProcessState::Waiting {
                    log::info!("{} waits: {waiting}", kind.name());
                }
                slot.machine.waiting(&waiting);
                return;
            }
        };
        if let Some(zk) = self
            .spec
            .zookeeper
            .as_ref()
            .filter(|_| kind == Kind::ZooKeeper)
        {
            let server = zk.server.clone();
            let owner = process::owner(self.spec.user.as_deref());
            let written = tokio::task::spawn_blocking(move || {
                zkserver::write_files(&server, owner)
                    .map_err(|e| zkserver::prepare_error(&server, e))
            })
            .await
            .unwrap_or_else(|e| {
                Err(SupervisorError::Prepare {
                    what: "ZooKeeper's files".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
            if let Err(e) = written {
                log::error!("{e}");
                let now = Instant::now();
                let slot = self.slot(kind);
                slot.machine.launched(now);
                let action = slot.machine.exited(now, &e.to_string());
                self.act(kind, action);
                return;
            }
        }
        if let Some(dir) = self.spec.properties.scratch_dir(kind) {
            // Only a dead predecessor of this kind wrote there: launches never overlap.
            let cleared = tokio::task::spawn_blocking(move || scratch::clear(&dir)).await;
            if let Ok(Err(e)) = cleared {
                log::warn!("cannot clear the {}'s scratch dir: {e}", kind.name());
            }
        }
        self.launches += 1;
        let resource_id = (kind == Kind::TaskManager)
            .then(|| resource_id(&self.spec.node_id, self.launches, unix_millis()));
        args.extend(launch_args(&self.spec, kind, resource_id.as_deref()));
        let (key, archive) = if kind == Kind::ZooKeeper {
            (None, None)
        } else {
            let spec = self.spec.clone();
            // Stats every file of the distribution's lib/: not on the runtime's threads.
            tokio::task::spawn_blocking(move || {
                let archive = if spec.settings.class_data_sharing {
                    cds::Archive::of(&spec, kind).unwrap_or_else(|e| {
                        log::warn!("no class-data archive for the {}: {e}", kind.name());
                        None
                    })
                } else {
                    None
                };
                (jvm_command::key(&spec, kind), archive)
            })
            .await
            .map(|(key, archive)| {
                let key = key
                    .inspect_err(|e| {
                        log::warn!("cannot fingerprint the {} launch: {e}", kind.name())
                    })
                    .ok();
                (key, archive)
            })
            .unwrap_or_default()
        };
        let learned = key
            .as_deref()
            .and_then(|k| jvm_command::load(&jvm_command::cache_path(&self.spec, kind), k));
        let cds = archive.and_then(|a| a.plan().map(|plan| (a, plan)));
        let result = self.start(
            kind,
            &args,
            learned.as_ref(),
            cds.as_ref().map(|(_, plan)| plan),
            resource_id.clone(),
        );
        let now = Instant::now();
        let fingerprint = self.fingerprint_of(kind);
        let conf_dir = self.conf_dir_of(kind);
        let slot = self.slot(kind);
        match why {
            Some(why) => slot.machine.relaunched(now, why),
            None => slot.machine.launched(now),
        }
        match result {
            Ok(live) => {
                let how = match (kind, live.direct) {
                    (Kind::ZooKeeper, _) => "as a JVM",
                    (_, true) => "as its learned JVM command",
                    (_, false) => "through Flink's script",
                };
                let classes = match &cds {
                    Some((_, cds::Cds::Map(_))) => ", mapping its class-data archive",
                    Some((_, cds::Cds::Record { .. })) => ", recording its classes for an archive",
                    None => "",
                };
                log::info!("started {} (pid {}) {how}{classes}", kind.name(), live.pid);
                slot.cds = cds;
                slot.learn_key = if live.direct { None } else { key };
                slot.proven = false;
                slot.live = Some(live);
                slot.fingerprint = Some(fingerprint);
                slot.resource_id = resource_id;
                slot.extra_args = args;
                slot.conf_dir = Some(conf_dir);
                if kind == Kind::JobManager {
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

    /// Forks the process, records it, then lets it through the gate.
    fn start(
        &mut self,
        kind: Kind,
        args: &[String],
        learned: Option<&JvmCommand>,
        cds: Option<&cds::Cds>,
        resource_id: Option<String>,
    ) -> Result<Live, SupervisorError> {
        let jit = self.spec.settings.delay_c2 && kind != Kind::ZooKeeper;
        let jvm_options: Vec<String> = jit
            .then_some(super::jit::OPTIONS)
            .into_iter()
            .flatten()
            .map(str::to_string)
            .chain(cds.into_iter().flat_map(cds::Cds::options))
            .collect();
        let launch = Launch {
            kind,
            extra_args: args,
            learned,
            jvm_options: &jvm_options,
            placement: self.placement,
            number: self.launches,
        };
        let spawned = process::spawn(&self.spec, &launch)?;
        if kind == Kind::JobManager {
            self.generation += 1;
        }
        let record = Record {
            identity: spawned.identity.clone(),
            conf_dir: self.conf_dir_of(kind),
            direct: spawned.direct,
            fingerprint: self.fingerprint_of(kind),
            resource_id,
        };
        let mut state = self.persisted();
        match kind {
            Kind::ZooKeeper => state.zookeeper = Some(record),
            Kind::JobManager => state.jobmanager = Some(record),
            Kind::TaskManager => state.taskmanager = Some(record),
        }
        // Dropping `spawned` unreleased makes it exit at the gate.
        self.state
            .save(&state)
            .map_err(|source| SupervisorError::Record {
                kind: kind.name(),
                path: self.state.path().display().to_string(),
                source,
            })?;
        Ok(spawned.release())
    }

    /// The conf dir `kind` is launched with now.
    fn conf_dir_of(&self, kind: Kind) -> std::path::PathBuf {
        adopt::default_conf_dir(&self.spec, kind)
    }

    /// What `kind` is launched with now.
    fn fingerprint_of(&self, kind: Kind) -> Fingerprint {
        match (kind, &self.spec.zookeeper) {
            (Kind::ZooKeeper, Some(zk)) => zk.fingerprint.clone(),
            _ => self.spec.fingerprint.clone(),
        }
    }

    /// The process just became healthy: a learned command that got it there stays trusted, and
    /// if the script launched it, its JVM command is kept for the next launches under this config.
    async fn proved_healthy(&mut self, kind: Kind) {
        let path = jvm_command::cache_path(&self.spec, kind);
        let spec = self.spec.clone();
        let slot = self.slot(kind);
        slot.proven = true;
        let args = slot.extra_args.clone();
        if let (Some((archive, cds::Cds::Record { .. })), Some(live)) = (&slot.cds, &slot.live) {
            let (archive, identity) = (archive.clone(), live.identity.clone());
            slot.cds = None;
            self.make_archive(archive, identity);
        }
        let slot = self.slot(kind);
        let (Some(key), Some(pid)) = (slot.learn_key.take(), slot.live.as_ref().map(|l| l.pid))
        else {
            return;
        };
        // Reading another user's environ may run `cat` as that user: off the runtime's threads.
        let learned = tokio::task::spawn_blocking(move || {
            let read = |file: &str| process::read_proc(&spec, pid, file);
            let cmd = match (read("cmdline"), read("environ")) {
                (Ok(cmdline), Ok(environ)) => {
                    jvm_command::learn(key, &cmdline, &environ, &args).map_err(|e| e.to_string())
                }
                (Err(e), _) | (_, Err(e)) => Err(format!("cannot read it from /proc: {e}")),
            }?;
            jvm_command::store(&path, &cmd)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match learned {
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

    /// The process `identity` records the classes it loads: once it has run for
    /// [`cds::SETTLE`], dump them into an archive with its own JVM and class path, in the
    /// background. If it has ended by then (a reload restarted it), its successor records again.
    fn make_archive(&self, archive: cds::Archive, identity: crate::procfs::ProcessIdentity) {
        let spec = self.spec.clone();
        tokio::spawn(async move {
            tokio::time::sleep(cds::SETTLE).await;
            let kind = archive.kind;
            if !identity.is_alive() {
                log::info!(
                    "the {} ended before its classes were archived; its next start records them",
                    kind.name()
                );
                return;
            }
            let pid = identity.pid;
            let made = tokio::task::spawn_blocking(move || {
                let argv = process::read_proc(&spec, pid, "cmdline")
                    .map_err(|e| format!("cannot read its command line: {e}"))?;
                let argv: Vec<String> = String::from_utf8_lossy(&argv)
                    .split('\0')
                    .map(str::to_string)
                    .collect();
                let classpath = cds::classpath(&argv)
                    .ok_or_else(|| "its command line names no class path".to_string())?;
                let uid = process::flink_uid(&spec).map_err(|e| e.to_string())?;
                archive
                    .make(&argv[0], classpath, uid.as_raw())
                    .map(|made| (made, archive.archive.clone()))
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match made {
                Ok((None, _)) => {}
                Ok((Some(made), path)) => log::info!(
                    "made the {} class-data archive {} ({} MiB, {} classes of Flink's own class \
                     loaders among them, in {:.1} s): its next starts map it",
                    kind.name(),
                    path.display(),
                    made.bytes >> 20,
                    made.unregistered,
                    made.took.as_secs_f64()
                ),
                Err(e) => log::warn!(
                    "no class-data archive for the {}: {e}; it starts without one",
                    kind.name()
                ),
            }
        });
    }

    async fn on_exit(&mut self, kind: Kind, how: String) {
        let now = Instant::now();
        let path = jvm_command::cache_path(&self.spec, kind);
        let slot = self.slot(kind);
        slot.ended = Some(now);
        if let Some(live) = slot.live.take() {
            // The JVM led the group; anything it left behind goes with it.
            process::signal_group(live.pid, Signal::SIGKILL);
            if live.direct && !slot.proven {
                // Never healthy from the learned command (crashed, or killed at the start
                // timeout): let the script decide again.
                jvm_command::forget(&path);
            }
            if let (Some((archive, cds::Cds::Map(_))), false) = (&slot.cds, slot.proven) {
                archive.forget();
            }
        }
        slot.cds = None;
        slot.learn_key = None;
        let action = slot.machine.exited(now, &how);
        log::warn!("{} {how}", kind.name());
        let _ = self.save();
        self.emit(SupervisorEvent::ProcessExited {
            name: kind.name(),
            how,
            expected: false,
        });
        self.act(kind, action);
        // With HA the TaskManager stays registered with the leader, wherever that is. One that
        // has not registered yet holds no slots and registers with the new JobManager on its
        // own (a JobManager crashing at every start does not take it along each time).
        let registered = matches!(
            self.tm.machine.state(),
            ProcessState::Running | ProcessState::Unhealthy
        );
        if kind == Kind::JobManager && self.spec.ha_cluster_id.is_none() && registered {
            self.restart_taskmanager_with_jobmanager().await;
        }
    }

    /// Without HA, a TaskManager that outlives its JobManager only holds the dead JobMasters'
    /// slots, their tasks lost with them, until its heartbeat times out (8 s), and registers with
    /// the new JobManager after that. Killed and started afresh at once, it boots beside the new
    /// JobManager and registers as soon as that is up: `kill -9` of the JobManager to the job
    /// RUNNING again, 7.96 s with the TaskManager kept (the build before), 4.68 s with it
    /// restarted (benches/rto.py, medians of 3, class-data sharing on). Its restart is the
    /// JobManager's failure, not its own: it spends none of the TaskManager's budget.
    async fn restart_taskmanager_with_jobmanager(&mut self) {
        log::info!("restarting the taskmanager with the jobmanager, which ended");
        self.stop(Kind::TaskManager, Stop::Kill).await;
        self.launch(
            Kind::TaskManager,
            Some("restarted with the JobManager, which ended"),
        )
        .await;
    }

    /// Carries out the policy's kill decisions (launches happen in `step`).
    fn act(&mut self, kind: Kind, action: Action) {
        let slot = self.slot(kind);
        if matches!(action, Action::Kill | Action::GiveUp) {
            if let Some(live) = &slot.live {
                process::signal_group(live.pid, Signal::SIGKILL);
            }
        }
        if action == Action::Kill {
            // A hung process or one past its start timeout: the exit that follows is taken
            // with the restart, so this is the journal's one line about it.
            let reason = slot.machine.reason().unwrap_or_default();
            log::warn!("{} killed: {reason}", kind.name());
        }
        if action == Action::GiveUp {
            let reason = slot.machine.reason().unwrap_or_default().to_string();
            log::error!("{}: {reason}", kind.name());
            self.emit(SupervisorEvent::ProcessFailed {
                name: kind.name(),
                reason,
            });
        }
    }

    /// Timers and health probes.
    async fn step(&mut self) {
        let now = Instant::now();
        for kind in kinds(&self.spec) {
            if self.slot(kind).machine.state() == ProcessState::Waiting {
                self.launch(kind, None).await;
                continue;
            }
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
        self.probe_zookeeper().await;
        self.probe_jobmanager().await;
        self.probe_taskmanager().await;
    }

    /// The ZooKeeper server is healthy while it answers `ruok`; serving is the ensemble's
    /// business (a server without a quorum is not restarted for it). The first time it serves,
    /// the shared storage learns that the cluster's ensemble has formed.
    async fn probe_zookeeper(&mut self) {
        let Some(zk) = self
            .spec
            .zookeeper
            .as_ref()
            .filter(|_| self.zk.machine.is_live())
        else {
            return;
        };
        let server = zk.server.clone();
        match zkserver::probe(&server).await {
            Ok(role) => {
                let was = self.zk.machine.state();
                self.zk.machine.healthy(Instant::now());
                if was == ProcessState::Starting {
                    log::info!("zookeeper answers ({})", role.name());
                    self.proved_healthy(Kind::ZooKeeper).await;
                }
                if role.serving() && !self.formed {
                    match tokio::task::spawn_blocking(move || zkserver::mark_formed(&server)).await {
                        Ok(Ok(())) => self.formed = true,
                        Ok(Err(e)) => log::warn!("cannot record on the shared storage that the ZooKeeper ensemble formed: {e}"),
                        Err(e) => log::warn!("{e}"),
                    }
                }
            }
            Err(e) => {
                let action = self.zk.machine.probe_failed(Instant::now(), &e);
                self.act(Kind::ZooKeeper, action);
            }
        }
    }

    async fn probe_jobmanager(&mut self) {
        let (Some(rest), true) = (&self.rest, self.jm.machine.is_live()) else {
            return;
        };
        // With HA a JobManager answers 503 while no leader is known (no quorum, an election):
        // it runs, and restarting it would not help.
        let result = match rest.overview().await {
            Ok(_) => Ok(()),
            Err(crate::flinkrest::FlinkRestError::Refused { .. })
                if self.spec.ha_cluster_id.is_some() =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        };
        let now = Instant::now();
        match result {
            Ok(()) => {
                let was = self.jm.machine.state();
                self.jm.machine.healthy(Instant::now());
                if was == ProcessState::Starting {
                    log::info!("jobmanager healthy (generation {})", self.generation);
                    self.emit(SupervisorEvent::JobManagerHealthy {
                        generation: self.generation,
                    });
                    self.proved_healthy(Kind::JobManager).await;
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
        // A failed listing is the JobManager's problem, judged by its own probe (with HA: no
        // leader right now, which is not the TaskManager's fault either).
        let Ok(list) = rest.taskmanagers().await else {
            if self.spec.ha_cluster_id.is_some() {
                self.tm.machine.hold(Instant::now());
            }
            return;
        };
        let id = self.tm.resource_id.clone().unwrap_or_default();
        let ours = list.iter().find(|t| t.id == id);
        self.tm.heap_bytes = ours
            .and_then(|t| t.memory_configuration.as_ref())
            .map(|m| m.task_heap);
        let registered = ours.is_some_and(|t| t.slots_number == self.spec.expected_slots);
        if registered {
            let was = self.tm.machine.state();
            self.tm.machine.healthy(Instant::now());
            if was == ProcessState::Starting {
                log::info!(
                    "taskmanager {id} registered with {} slots",
                    self.spec.expected_slots
                );
                self.emit(SupervisorEvent::TaskManagerHealthy);
                self.proved_healthy(Kind::TaskManager).await;
            }
        } else {
            let why = format!(
                "TaskManager {id} is not registered with {} slots",
                self.spec.expected_slots
            );
            let action = self.tm.machine.probe_failed(Instant::now(), &why);
            self.act(Kind::TaskManager, action);
        }
    }

    /// When to step next: the probe period, or earlier for a deadline.
    fn next_wake(&self) -> Instant {
        let machines = [&self.zk.machine, &self.jm.machine, &self.tm.machine];
        let period = if machines.iter().any(|m| m.state() == ProcessState::Starting) {
            STARTING_PROBE
        } else if machines.iter().any(|m| m.state() == ProcessState::Waiting) {
            WAITING_RECHECK.min(Duration::from_millis(self.spec.settings.health_interval_ms))
        } else {
            Duration::from_millis(self.spec.settings.health_interval_ms)
        };
        machines
            .iter()
            .filter_map(|m| m.deadline())
            .fold(Instant::now() + period, Instant::min)
    }

    /// Stops one process and waits until its group is gone.
    async fn stop(&mut self, kind: Kind, how: Stop) {
        let grace = Duration::from_secs(self.spec.settings.stop_grace_secs);
        self.slot(kind).machine.stopping();
        self.publish();
        if let Some(live) = self.slot(kind).live.take() {
            log::info!("stopping {} (pid {})", kind.name(), live.pid);
            let how = match how {
                Stop::Graceful => process::terminate(live, grace).await,
                Stop::Kill => process::kill(live).await,
            };
            let slot = self.slot(kind);
            slot.ended = Some(Instant::now());
            slot.machine.exited(Instant::now(), &how);
            let _ = self.save();
            self.emit(SupervisorEvent::ProcessExited {
                name: kind.name(),
                how,
                expected: true,
            });
        }
        self.slot(kind).machine.stopped();
    }

    /// Deliberate restart in a controlled order: TaskManager down, JobManager down and up,
    /// TaskManager up. Each restarted process gets a fresh failure budget.
    async fn restart(&mut self, target: Target, why: &str) {
        if target == Target::ZooKeeper {
            self.stop(Kind::ZooKeeper, Stop::Graceful).await;
            self.zk.machine.reset_budget();
            self.launch(Kind::ZooKeeper, Some(why)).await;
            return;
        }
        if target.includes_taskmanager() {
            self.stop(Kind::TaskManager, Stop::Graceful).await;
        }
        if target.includes_jobmanager() {
            self.stop(Kind::JobManager, Stop::Graceful).await;
            self.jm.machine.reset_budget();
            self.launch(Kind::JobManager, Some(why)).await;
            if self.spec.ha_cluster_id.is_none() {
                self.tm.machine.revalidate(
                    Instant::now(),
                    "waiting for the TaskManager to re-register with the restarted JobManager",
                );
            }
        }
        if target.includes_taskmanager() {
            self.tm.machine.reset_budget();
            self.launch(Kind::TaskManager, Some(why)).await;
        }
    }

    async fn apply(&mut self, spec: LaunchSpec) -> Vec<&'static str> {
        if spec.endpoint != self.spec.endpoint {
            self.rest = rest_client(&spec).or(self.rest.take());
        }
        for slot in [&mut self.zk, &mut self.jm, &mut self.tm] {
            slot.machine.set_settings(spec.settings.clone());
        }
        self.spec = spec;
        self.reconcile("configuration changed").await
    }

    async fn end(&mut self, how: Ending) {
        match how {
            Ending::StopFlink => {
                self.stop(Kind::TaskManager, Stop::Graceful).await;
                self.stop(Kind::JobManager, Stop::Graceful).await;
                self.stop(Kind::ZooKeeper, Stop::Graceful).await;
            }
            Ending::Detach => {
                let running: Vec<String> = [&self.zk, &self.jm, &self.tm]
                    .iter()
                    .filter_map(|s| {
                        s.live
                            .as_ref()
                            .map(|l| format!("{} (pid {})", s.kind.name(), l.pid))
                    })
                    .collect();
                if !running.is_empty() {
                    log::info!(
                        "leaving {} running for the next agent to adopt",
                        running.join(" and ")
                    );
                }
            }
        }
        let _ = self.save();
        self.publish();
    }

    fn publish(&self) {
        let statuses: Vec<ProcessStatus> = [&self.zk, &self.jm, &self.tm]
            .into_iter()
            .filter(|slot| slot.kind != Kind::ZooKeeper || self.spec.zookeeper.is_some())
            .map(|slot| ProcessStatus {
                name: slot.kind.name().into(),
                state: slot.machine.state(),
                pid: slot.live.as_ref().map(|l| l.pid),
                restarts: slot.machine.restarts(),
                started_at: slot.live.as_ref().and_then(|l| l.identity.started_at()),
                uptime_secs: None,
                adopted: slot.live.as_ref().is_some_and(|l| l.adopted),
                last_exit: slot.machine.last_exit().map(str::to_string),
                reason: slot.machine.reason().map(str::to_string),
                budget_remaining: slot.machine.budget_remaining(Instant::now()),
                heap_bytes: slot.live.as_ref().and(slot.heap_bytes),
            })
            .collect();
        self.out.statuses.send_replace(statuses);
        let ready = self.jm.machine.state() == ProcessState::Running
            && self.tm.machine.state() == ProcessState::Running
            && (self.spec.zookeeper.is_none() || self.zk.machine.state() == ProcessState::Running);
        self.out
            .ready
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }
}

/// A TaskManager's resource id, unique in the cluster: Flink takes a second TaskManager with
/// the same id for the first one restarted and keeps only one of them. Three agents started
/// together once gave their third launches the same launch count and millisecond, so the node
/// is part of it.
fn resource_id(node_id: &str, launch: u64, unix_millis: u128) -> String {
    format!("flink-agent-{node_id}-tm-{launch}-{unix_millis:x}")
}

/// Dynamic properties of one launch: the process's own options, then the TaskManager's
/// resource id, unique per launch.
fn launch_args(spec: &LaunchSpec, kind: Kind, resource_id: Option<&str>) -> Vec<String> {
    let mut args = spec.properties.args(kind);
    if let Some(id) = resource_id {
        args.extend(["-D".to_string(), format!("taskmanager.resource-id={id}")]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taskmanagers_of_two_nodes_launched_in_the_same_millisecond_have_distinct_ids() {
        let (a, b) = (resource_id("node-1", 3, 7), resource_id("node-2", 3, 7));
        assert_ne!(a, b);
        assert_eq!(a, "flink-agent-node-1-tm-3-7");
    }
}
