//! Supervises the local JobManager and TaskManager: adopt what an earlier agent started, start
//! what is missing, probe health, restart with back-off and a failure budget, stop on request.
//!
//! - [`policy`]: the per-process state machine and the back-off/budget arithmetic (pure);
//! - `fingerprint`: what a process was launched with, and which change restarts which process;
//! - `placement`: each process in its own session (and, under systemd, its own scope), so it
//!   outlives the agent;
//! - `process`: the gated launch, signals, graceful stop;
//! - `persist`: the state file that lets the next agent adopt the processes;
//! - `adopt`: recognising those processes again, and strays that must go;
//! - `jvm_command`: the JVM command line the scripts compute, learned once per rendered config
//!   so that restarts skip the scripts' seconds of helper JVMs;
//! - `cds`: class-data sharing archives of the JobManager and TaskManager JVMs, so that a
//!   restarted JVM maps its classes instead of loading them;
//! - `jit`: JIT thresholds that keep a JVM's start from spending half its CPU compiling;
//! - `driver`: the task that owns both processes and runs the reconcile loop;
//! - [`SupervisorHandle`]: how the daemon and the API talk to that task.
//!
//! Reconciling is one rule for every occasion (start, reload, restart of the agent): each process
//! runs with the desired [`Fingerprint`], or is (re)started in a controlled order (TaskManager
//! down, JobManager restarted, TaskManager up). An agent that stops (SIGTERM, crash, upgrade)
//! leaves Flink running; only [`SupervisorHandle::stop`] stops it.

mod adopt;
mod cds;
mod driver;
mod fingerprint;
mod jit;
mod jvm_command;
mod persist;
mod placement;
pub mod policy;
mod process;
mod report;
mod scratch;
mod zkserver;

pub use fingerprint::{restart_set, Fingerprint, RestartSet};

pub use placement::{Placement, SLICE};
pub use report::{summary, ProcessState, ProcessStatus};

use crate::config::SupervisorSection;
use crate::flinkrest::Endpoint;
use std::path::{Path, PathBuf};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// The supervised processes: Flink's two, and in a three-node cluster the node's ZooKeeper
/// server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ZooKeeper,
    JobManager,
    TaskManager,
}

impl Kind {
    /// Name in status, logs and CLI arguments.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ZooKeeper => "zookeeper",
            Kind::JobManager => "jobmanager",
            Kind::TaskManager => "taskmanager",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::ZooKeeper => "ZooKeeper",
            Kind::JobManager => "JobManager",
            Kind::TaskManager => "TaskManager",
        }
    }

    /// Flink's launcher script (ZooKeeper's JVM is started directly).
    fn script(self) -> Option<&'static str> {
        match self {
            Kind::ZooKeeper => None,
            Kind::JobManager => Some("bin/jobmanager.sh"),
            Kind::TaskManager => Some("bin/taskmanager.sh"),
        }
    }

    /// The JVM's main class (session mode), as on its command line.
    fn main_class(self) -> &'static str {
        match self {
            Kind::ZooKeeper => zkserver::MAIN_CLASS,
            Kind::JobManager => {
                "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
            }
            Kind::TaskManager => "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
        }
    }
}

/// Which processes an operation applies to. `All` is Flink's two processes; a three-node
/// cluster's ZooKeeper server is restarted on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    JobManager,
    TaskManager,
    All,
    ZooKeeper,
}

impl Target {
    fn includes_jobmanager(self) -> bool {
        matches!(self, Target::JobManager | Target::All)
    }
    fn includes_taskmanager(self) -> bool {
        matches!(self, Target::TaskManager | Target::All)
    }

    /// The target that restarts `set` (None when it restarts nothing).
    pub fn of(set: RestartSet) -> Option<Target> {
        match (set.jobmanager, set.taskmanager) {
            (true, true) => Some(Target::All),
            (true, false) => Some(Target::JobManager),
            (false, true) => Some(Target::TaskManager),
            (false, false) => None,
        }
    }

    /// The processes, in the order a restart of them reports them.
    pub fn names(self) -> Vec<&'static str> {
        [Kind::ZooKeeper, Kind::JobManager, Kind::TaskManager]
            .into_iter()
            .filter(|k| match k {
                Kind::ZooKeeper => self == Target::ZooKeeper,
                Kind::JobManager => self.includes_jobmanager(),
                Kind::TaskManager => self.includes_taskmanager(),
            })
            .map(Kind::name)
            .collect()
    }
}

/// Everything needed to run the processes as desired; derived from the config by
/// `crate::desired`.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub flink_home: PathBuf,
    pub java_home: PathBuf,
    /// Becomes `FLINK_CONF_DIR`: the agent-rendered conf dir.
    pub conf_dir: PathBuf,
    /// Becomes `FLINK_LOG_DIR` (and the scripts' pid dir); must be writable by `user`.
    pub log_dir: PathBuf,
    /// Run the processes as this user (with its groups); None = as the agent.
    pub user: Option<String>,
    /// `node.id`: part of the TaskManager's resource id, which must be unique in the cluster.
    pub node_id: String,
    /// Flink's REST endpoint, for the health probes.
    pub endpoint: Endpoint,
    /// The TaskManager is healthy once registered with this many slots.
    pub expected_slots: u32,
    pub settings: SupervisorSection,
    /// Flink options of one process alone (the Prometheus reporter's port), passed to it as
    /// `-D key=value` at each launch; part of [`Self::fingerprint`].
    pub properties: ProcessProperties,
    /// What a process started now would run with.
    pub fingerprint: Fingerprint,
    /// Three-node clusters: `cluster.id`. The JobManager and the TaskManager then start only
    /// once the ensemble's incarnation is known, with `-D high-availability.cluster-id=/<id>-<incarnation>`.
    pub ha_cluster_id: Option<String>,
    /// Three-node clusters: this node's ZooKeeper server.
    pub zookeeper: Option<ZooKeeperLaunch>,
}

/// This node's ZooKeeper server and what it is started with.
#[derive(Debug, Clone, PartialEq)]
pub struct ZooKeeperLaunch {
    pub server: crate::zookeeper::ServerSpec,
    /// Java, class path, heap, user, log dir and every zoo.cfg key: any change restarts the
    /// ZooKeeper server, and only it.
    pub fingerprint: Fingerprint,
}

/// Flink options that differ between the JobManager and the TaskManager, which read one
/// configuration file: given on each process's command line instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessProperties {
    pub jobmanager: std::collections::BTreeMap<String, String>,
    pub taskmanager: std::collections::BTreeMap<String, String>,
}

impl ProcessProperties {
    /// The options of `kind` alone; none for ZooKeeper (Flink's options only).
    fn of(&self, kind: Kind) -> Option<&std::collections::BTreeMap<String, String>> {
        match kind {
            Kind::JobManager => Some(&self.jobmanager),
            Kind::TaskManager => Some(&self.taskmanager),
            Kind::ZooKeeper => None,
        }
    }

    /// `-D key=value` for each option of `kind`.
    fn args(&self, kind: Kind) -> Vec<String> {
        self.of(kind)
            .into_iter()
            .flatten()
            .flat_map(|(k, v)| ["-D".to_string(), format!("{k}={v}")])
            .collect()
    }

    /// The process's own scratch dir (`io.tmp.dirs`), which it leaves behind when it crashes.
    fn scratch_dir(&self, kind: Kind) -> Option<PathBuf> {
        self.of(kind)?
            .get(crate::flinkconf::TMP_DIRS_KEY)
            .map(PathBuf::from)
    }

    /// The options as fingerprint entries: `jobmanager:<key>`, `taskmanager:<key>`.
    pub fn entries(&self) -> std::collections::BTreeMap<String, String> {
        let jm = self
            .jobmanager
            .iter()
            .map(|(k, v)| (format!("jobmanager:{k}"), v.clone()));
        let tm = self
            .taskmanager
            .iter()
            .map(|(k, v)| (format!("taskmanager:{k}"), v.clone()));
        jm.chain(tm).collect()
    }
}

/// What happened, for the daemon (READY, STATUS=, last error) and the jobs (re-submit after
/// every JobManager start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A JobManager was launched; `generation` counts launches on this node.
    JobManagerStarted { generation: u64 },
    /// The JobManager of this generation answers its REST API (also once after adoption).
    JobManagerHealthy { generation: u64 },
    /// The TaskManager is registered with the expected slots.
    TaskManagerHealthy,
    /// A process ended; `expected` when the agent stopped it on purpose.
    ProcessExited {
        name: &'static str,
        how: String,
        expected: bool,
    },
    /// The failure budget is exhausted: the process is parked until the window has passed (or
    /// an operator restarts it).
    ProcessFailed { name: &'static str, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the supervisor has shut down; restart the agent")]
    ShutDown,
    #[error("cannot start {program}: {source}; check `flink.home` points at a Flink distribution")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Flink's log directory {path} does not exist; create it (writable by the Flink user) or fix `flink.log_dir`")]
    LogDir { path: String },
    #[error("cannot run Flink as user `{user}`: {detail}; fix `flink.user` or create the user")]
    User { user: String, detail: String },
    #[error("cannot prepare {what}: {source}; check the permissions and free space of agent.state_dir and flink.data_dir")]
    Prepare {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("this node runs no {0}; a single-node cluster has no ZooKeeper server")]
    NotRunHere(&'static str),
    #[error("cannot record the launched {kind} in {path}: {source}; it was not started (a later agent could not adopt it); check free space and permissions of agent.state_dir")]
    Record {
        kind: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How the supervisor task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Stop the TaskManager, then the JobManager (SIGTERM to the group, grace, SIGKILL).
    StopFlink,
    /// Leave them running for the next agent to adopt.
    Detach,
}

/// Requests from the handles to the supervisor task.
#[derive(Debug)]
enum Command {
    Restart(Target, oneshot::Sender<Result<(), SupervisorError>>),
    Apply(Box<LaunchSpec>, oneshot::Sender<Vec<&'static str>>),
    HandOver(Option<PathBuf>),
    End(Ending, oneshot::Sender<()>),
}

/// The daemon's and the API's way to the supervisor task. Dropping every handle detaches: the
/// processes keep running for the next agent.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    commands: mpsc::Sender<Command>,
    statuses: watch::Receiver<Vec<ProcessStatus>>,
    ready: watch::Receiver<bool>,
    events: broadcast::Sender<SupervisorEvent>,
}

/// Starts the supervisor task: it adopts the processes `<state_dir>/supervisor.json` names,
/// kills strays, and starts (or restarts) what does not run as `spec` says.
/// Must be called inside a tokio runtime.
///
/// `incarnation`: three-node clusters only, the cluster's incarnation once the ensemble tells
/// it (the JobManager and the TaskManager wait for it).
pub fn spawn(
    spec: LaunchSpec,
    state_dir: &Path,
    placement: Placement,
    incarnation: watch::Receiver<Option<String>>,
) -> SupervisorHandle {
    let (commands, rx) = mpsc::channel(16);
    let (events, _) = broadcast::channel(256);
    let (statuses_tx, statuses) = watch::channel(driver::initial_statuses(&spec));
    let (ready_tx, ready) = watch::channel(false);
    let outputs = driver::Outputs {
        statuses: statuses_tx,
        ready: ready_tx,
        events: events.clone(),
    };
    let state = persist::StateFile::in_dir(state_dir);
    tokio::spawn(driver::run(
        spec,
        state,
        placement,
        incarnation,
        rx,
        outputs,
    ));
    SupervisorHandle {
        commands,
        statuses,
        ready,
        events,
    }
}

impl SupervisorHandle {
    /// The processes as of the supervisor's last step (no round trip), ages as of now.
    pub fn statuses(&self) -> Vec<ProcessStatus> {
        self.statuses
            .borrow()
            .iter()
            .cloned()
            .map(ProcessStatus::aged)
            .collect()
    }

    /// True while both processes are healthy.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    pub fn events(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    /// Restarts `target` now (TaskManager stopped first, JobManager restarted before the
    /// TaskManager starts) and gives it a fresh failure budget, which also revives a `failed`
    /// process. Returns once the processes are launched, not when they are healthy.
    pub async fn restart(&self, target: Target) -> Result<(), SupervisorError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Restart(target, tx))
            .await
            .map_err(|_| SupervisorError::ShutDown)?;
        rx.await.map_err(|_| SupervisorError::ShutDown)?
    }

    /// Takes a new desired spec (a reload) and restarts what runs with another fingerprint, in
    /// the same order as [`Self::restart`] (a changed ZooKeeper server alone, before Flink's);
    /// answers the processes it restarted, in order. The new spec is used for every later
    /// (re)start.
    pub async fn apply(&self, spec: LaunchSpec) -> Result<Vec<&'static str>, SupervisorError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Apply(Box::new(spec), tx))
            .await
            .map_err(|_| SupervisorError::ShutDown)?;
        rx.await.map_err(|_| SupervisorError::ShutDown)
    }

    /// Keeps a copy of the state file in `state_dir` (the one the config asks for, in effect at
    /// the next agent start), so that agent adopts the processes instead of finding strays;
    /// None stops the copy.
    pub async fn hand_over(&self, state_dir: Option<PathBuf>) {
        let _ = self.commands.send(Command::HandOver(state_dir)).await;
    }

    /// Stops the TaskManager, then the JobManager, then the ZooKeeper server (SIGTERM to the
    /// group, `stop_grace_secs`, SIGKILL); returns when no process of any group is left. The
    /// supervisor task ends.
    pub async fn stop(&self) {
        self.end(Ending::StopFlink).await;
    }

    /// Ends supervision and leaves Flink running; the state file names the processes so the
    /// next agent adopts them. The supervisor task ends.
    pub async fn detach(&self) {
        self.end(Ending::Detach).await;
    }

    async fn end(&self, how: Ending) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::End(how, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// A launch spec for unit tests: Flink at `flink_home` with these conf and log dirs, Debian's
/// Java 17, defaults for the rest.
#[cfg(test)]
pub(crate) fn test_spec(flink_home: PathBuf, conf_dir: PathBuf, log_dir: PathBuf) -> LaunchSpec {
    LaunchSpec {
        flink_home,
        java_home: PathBuf::from("/usr/lib/jvm/java-17-openjdk-amd64"),
        conf_dir,
        log_dir,
        user: None,
        endpoint: Endpoint::new("127.0.0.1", 8081),
        expected_slots: 1,
        settings: SupervisorSection::default(),
        properties: ProcessProperties::default(),
        fingerprint: Fingerprint::new(&[], "config.yaml", []),
        ha_cluster_id: None,
        zookeeper: None,
        node_id: "test-node".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_set_becomes_a_target_in_restart_order() {
        assert_eq!(Target::of(RestartSet::NONE), None);
        assert_eq!(Target::of(RestartSet::BOTH), Some(Target::All));
        let tm = RestartSet {
            jobmanager: false,
            taskmanager: true,
        };
        assert_eq!(Target::of(tm), Some(Target::TaskManager));
        assert_eq!(Target::All.names(), ["jobmanager", "taskmanager"]);
        assert_eq!(Target::TaskManager.names(), ["taskmanager"]);
        assert_eq!(Target::ZooKeeper.names(), ["zookeeper"]);
    }
}
