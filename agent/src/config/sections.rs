//! The typed agent configuration (`/etc/flink-agent/agent.toml`). Every field has a default
//! that matches the product description, so a minimal file names only the node and Flink's home.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole agent configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    pub agent: AgentSection,
    pub node: NodeSection,
    pub cluster: ClusterSection,
    pub flink: FlinkSection,
    pub ports: PortsSection,
    pub plan: PlanSection,
    pub advanced: AdvancedSection,
    pub supervisor: SupervisorSection,
    pub object_store: super::ObjectStoreSection,
    pub checkpoints: super::CheckpointsSection,
    pub firewall: super::FirewallSection,
    pub tls: super::TlsSection,
    pub metrics: MetricsSection,
    pub ha: super::HaSection,
}

/// The agent's own files: state, socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentSection {
    /// Agent state (rendered Flink conf, job records, staging). Survives restarts.
    pub state_dir: PathBuf,
    /// Unix socket of the local API.
    pub socket: PathBuf,
    /// Group that owns the socket (mode 0660); members may use the CLI. None = agent's group.
    pub socket_group: Option<String>,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/flink-agent"),
            socket: PathBuf::from("/run/flink-agent/agent.sock"),
            socket_group: None,
        }
    }
}

/// This node's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeSection {
    /// Stable node id, unique in the cluster.
    pub id: String,
    /// Address the cluster peers and clients use to reach this node's Flink processes.
    pub address: String,
    /// Address Flink's sockets bind to.
    pub bind_address: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            id: "node-1".into(),
            address: "127.0.0.1".into(),
            bind_address: "127.0.0.1".into(),
        }
    }
}

/// The cluster this node belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSection {
    /// Cluster id; names the cluster's prefix in object storage.
    pub id: String,
    /// Addresses of every node of the cluster, this one included: one (single-node) or three.
    pub nodes: Vec<String>,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            id: "flink".into(),
            nodes: vec!["127.0.0.1".into()],
        }
    }
}

/// Where Flink is and how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlinkSection {
    /// Flink distribution: holds `bin/jobmanager.sh` and `lib/flink-dist-*.jar`.
    pub home: PathBuf,
    /// JAVA_HOME for Flink; must contain `bin/java`.
    pub java_home: PathBuf,
    /// Unix user the Flink processes run as. None = the agent's own user.
    pub user: Option<String>,
    /// Flink's working data: local checkpoints, temp dirs, blobs.
    pub data_dir: PathBuf,
    /// Flink's log files (the JVMs also log to the journal via the agent).
    pub log_dir: PathBuf,
}

impl Default for FlinkSection {
    fn default() -> Self {
        Self {
            home: PathBuf::from("/opt/flink"),
            java_home: PathBuf::from("/usr/lib/jvm/java-17-openjdk-amd64"),
            user: None,
            data_dir: PathBuf::from("/var/lib/flink"),
            log_dir: PathBuf::from("/var/log/flink"),
        }
    }
}

/// Flink's ports, pinned so the firewall can name them. Owned by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortsSection {
    /// REST API and web UI (`rest.port`).
    pub rest: u16,
    /// JobManager RPC (`jobmanager.rpc.port`).
    pub jobmanager_rpc: u16,
    /// Blob server: jars and large RPC payloads (`blob.server.port`).
    pub blob: u16,
    /// TaskManager RPC (`taskmanager.rpc.port`).
    pub taskmanager_rpc: u16,
    /// TaskManager data exchange between tasks (`taskmanager.data.port`).
    pub taskmanager_data: u16,
    /// Results of `collect()` queries, fetched by the JobManager from the TaskManager
    /// (`taskmanager.collect-sink.port`, Flink >= 1.19).
    pub taskmanager_collect: u16,
    /// First of two consecutive ports for the metric query services: the JobManager's is P, the
    /// TaskManager's P+1, each passed to its process alone as `-D
    /// metrics.internal.query-service.port` (the shared file holds the range `"P-P+1"`).
    pub metrics_query: u16,
    /// The JobManager's Prometheus reporter (`metrics.flink_reporter = true`), passed to that
    /// process alone as `-D metrics.reporter.prom.port`.
    pub prometheus_jobmanager: u16,
    /// The TaskManager's Prometheus reporter, likewise.
    pub prometheus_taskmanager: u16,
    /// ZooKeeper's client port, where Flink and the agent talk to this node's ZooKeeper server
    /// (three-node clusters only).
    pub zookeeper_client: u16,
    /// ZooKeeper's quorum port: followers talk to the ZooKeeper leader here.
    pub zookeeper_quorum: u16,
    /// ZooKeeper's leader-election port.
    pub zookeeper_election: u16,
}

impl Default for PortsSection {
    fn default() -> Self {
        Self {
            rest: 8081,
            jobmanager_rpc: 6123,
            blob: 6124,
            taskmanager_rpc: 6122,
            taskmanager_data: 6121,
            taskmanager_collect: 6125,
            metrics_query: 6126,
            prometheus_jobmanager: 9249,
            prometheus_taskmanager: 9250,
            zookeeper_client: 2181,
            zookeeper_quorum: 2888,
            zookeeper_election: 3888,
        }
    }
}

impl PortsSection {
    /// Every pinned port with its key name, for duplicate checks and the firewall. The metric
    /// query services use two ports, `metrics_query` and the one after it.
    pub fn named(&self) -> [(&'static str, u16); 8] {
        [
            ("rest", self.rest),
            ("jobmanager_rpc", self.jobmanager_rpc),
            ("blob", self.blob),
            ("taskmanager_rpc", self.taskmanager_rpc),
            ("taskmanager_data", self.taskmanager_data),
            ("taskmanager_collect", self.taskmanager_collect),
            ("metrics_query", self.metrics_query),
            ("metrics_query + 1", self.metrics_query.wrapping_add(1)),
        ]
    }

    /// The Prometheus reporter ports, per process: open only while `metrics.flink_reporter`.
    pub fn reporter(&self) -> [(&'static str, u16); 2] {
        [
            ("prometheus_jobmanager", self.prometheus_jobmanager),
            ("prometheus_taskmanager", self.prometheus_taskmanager),
        ]
    }

    /// The ZooKeeper server's ports (used, and opened to peers, in three-node clusters only).
    pub fn zookeeper(&self) -> [(&'static str, u16); 3] {
        [
            ("zookeeper_client", self.zookeeper_client),
            ("zookeeper_quorum", self.zookeeper_quorum),
            ("zookeeper_election", self.zookeeper_election),
        ]
    }
}

/// The VM plan: Flink's memory is derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanSection {
    /// VM memory in MiB (plans: 4096 to 32768), or `"auto"`: the machine's memory (the
    /// smaller of `MemTotal` and the agent's cgroup limit), read when the agent starts.
    pub memory_mib: Sizing,
    /// VM vCPUs (plans: 2 to 8): the TaskManager's CPU resource (`taskmanager.cpu.cores`), or
    /// `"auto"`: the CPUs this process may use (affinity and cgroup quota), read at start.
    pub vcpus: Sizing,
}

impl Default for PlanSection {
    fn default() -> Self {
        Self {
            memory_mib: Sizing::Fixed(4096),
            vcpus: Sizing::Fixed(2),
        }
    }
}

/// A plan value: a number, or `"auto"` (read from the machine at start, so a VM that was
/// scaled up gets its Flink memory re-derived when the agent next starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    Fixed(u32),
    Auto,
}

impl Sizing {
    /// The number, once `"auto"` is resolved (`crate::desired::load` resolves it).
    pub fn fixed(self) -> Option<u32> {
        match self {
            Sizing::Fixed(n) => Some(n),
            Sizing::Auto => None,
        }
    }
}

impl Serialize for Sizing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Sizing::Fixed(n) => s.serialize_u32(*n),
            Sizing::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Sizing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Sizing;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Sizing, E> {
                u32::try_from(n)
                    .map(Sizing::Fixed)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Sizing, E> {
                u64::try_from(n)
                    .map_err(|_| {
                        E::custom(format!("{n} is negative; use a whole number or \"auto\""))
                    })
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sizing, E> {
                match v {
                    "auto" => Ok(Sizing::Auto),
                    other => Err(E::custom(format!(
                        "{other:?} is neither a whole number nor \"auto\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `[metrics]`: the agent's Prometheus endpoint and Flink's own reporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSection {
    /// `host:port` of `GET /metrics` (Prometheus text), or `"off"`. On loopback by default;
    /// any other address is opened in the firewall to `scrape_clients` and the peers only.
    pub listen: String,
    /// Addresses or CIDRs allowed to scrape the agent's listener and Flink's reporter ports.
    pub scrape_clients: Vec<String>,
    /// Render Flink's Prometheus reporter, one pinned port per process
    /// (`ports.prometheus_jobmanager`, `ports.prometheus_taskmanager`).
    pub flink_reporter: bool,
}

/// The agent's metrics port when none is configured (next to Flink's reporter default 9249).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9248";

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_METRICS_LISTEN.into(),
            scrape_clients: Vec::new(),
            flink_reporter: false,
        }
    }
}

impl MetricsSection {
    /// The listener's address; None when `listen = "off"` (or invalid: validation says so).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        if self.listen == "off" {
            return None;
        }
        self.listen.parse().ok()
    }
}

/// Operator-facing overrides ("Advanced configuration" in the console).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdvancedSection {
    /// Task slots per TaskManager. Changing it restarts the TaskManager.
    pub number_of_task_slots: u32,
    /// Default parallelism of submitted jobs.
    pub default_parallelism: u32,
    /// Periodic checkpoint interval in milliseconds.
    pub checkpoint_interval_ms: u64,
    /// How Flink restarts failing jobs.
    pub restart_strategy: RestartStrategy,
    /// Other Flink keys passed through verbatim. Keys the agent owns are refused.
    pub flink_config: BTreeMap<String, String>,
}

impl Default for AdvancedSection {
    fn default() -> Self {
        Self {
            number_of_task_slots: 1,
            default_parallelism: 1,
            checkpoint_interval_ms: 10_000,
            restart_strategy: RestartStrategy::default(),
            flink_config: BTreeMap::new(),
        }
    }
}

/// Flink's job restart strategy (`restart-strategy.type` and its options).
///
/// Deserialized through [`RawRestartStrategy`] (a flat struct) rather than serde's internally
/// tagged enum, which buffers its content and so loses the key path of a bad value
/// (`advanced.restart_strategy` instead of `advanced.restart_strategy.delay_secs`) and turns
/// typos into hard errors instead of reported unknown keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    try_from = "RawRestartStrategy"
)]
pub enum RestartStrategy {
    FailureRate {
        #[serde(default = "default_max_failures")]
        max_failures_per_interval: u32,
        #[serde(default = "default_failure_interval")]
        failure_rate_interval_secs: u64,
        #[serde(default = "default_delay")]
        delay_secs: u64,
    },
    FixedDelay {
        #[serde(default = "default_max_failures")]
        attempts: u32,
        #[serde(default = "default_delay")]
        delay_secs: u64,
    },
    ExponentialDelay {
        #[serde(default = "default_initial_backoff")]
        initial_backoff_ms: u64,
        #[serde(default = "default_max_backoff")]
        max_backoff_ms: u64,
        #[serde(default = "default_multiplier")]
        backoff_multiplier: f64,
        #[serde(default = "default_reset_threshold")]
        reset_backoff_threshold_ms: u64,
        #[serde(default = "default_jitter")]
        jitter_factor: f64,
    },
    None,
}

fn default_max_failures() -> u32 {
    3
}
fn default_failure_interval() -> u64 {
    60
}
fn default_delay() -> u64 {
    10
}
fn default_initial_backoff() -> u64 {
    1_000
}
fn default_max_backoff() -> u64 {
    60_000
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_reset_threshold() -> u64 {
    3_600_000
}
fn default_jitter() -> f64 {
    0.1
}

/// The `type` of a restart strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartStrategyType {
    FailureRate,
    FixedDelay,
    ExponentialDelay,
    None,
}

/// `[advanced.restart_strategy]` as written: the type and any option of any type.
#[derive(Debug, Deserialize)]
pub struct RawRestartStrategy {
    #[serde(rename = "type")]
    kind: RestartStrategyType,
    max_failures_per_interval: Option<u32>,
    failure_rate_interval_secs: Option<u64>,
    delay_secs: Option<u64>,
    attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    backoff_multiplier: Option<f64>,
    reset_backoff_threshold_ms: Option<u64>,
    jitter_factor: Option<f64>,
}

impl TryFrom<RawRestartStrategy> for RestartStrategy {
    type Error = String;

    fn try_from(r: RawRestartStrategy) -> Result<Self, String> {
        let given = [
            (
                "max_failures_per_interval",
                r.max_failures_per_interval.is_some(),
            ),
            (
                "failure_rate_interval_secs",
                r.failure_rate_interval_secs.is_some(),
            ),
            ("delay_secs", r.delay_secs.is_some()),
            ("attempts", r.attempts.is_some()),
            ("initial_backoff_ms", r.initial_backoff_ms.is_some()),
            ("max_backoff_ms", r.max_backoff_ms.is_some()),
            ("backoff_multiplier", r.backoff_multiplier.is_some()),
            (
                "reset_backoff_threshold_ms",
                r.reset_backoff_threshold_ms.is_some(),
            ),
            ("jitter_factor", r.jitter_factor.is_some()),
        ];
        let (name, allowed): (&str, &[&str]) = match r.kind {
            RestartStrategyType::FailureRate => (
                "failure-rate",
                &[
                    "max_failures_per_interval",
                    "failure_rate_interval_secs",
                    "delay_secs",
                ],
            ),
            RestartStrategyType::FixedDelay => ("fixed-delay", &["attempts", "delay_secs"]),
            RestartStrategyType::ExponentialDelay => (
                "exponential-delay",
                &[
                    "initial_backoff_ms",
                    "max_backoff_ms",
                    "backoff_multiplier",
                    "reset_backoff_threshold_ms",
                    "jitter_factor",
                ],
            ),
            RestartStrategyType::None => ("none", &[]),
        };
        let stray: Vec<&str> = given
            .iter()
            .filter(|(k, set)| *set && !allowed.contains(k))
            .map(|(k, _)| *k)
            .collect();
        if !stray.is_empty() {
            let options = if allowed.is_empty() {
                "it takes no options".to_string()
            } else {
                format!("its options are {}", allowed.join(", "))
            };
            return Err(format!(
                "{} do(es) not apply to type = \"{name}\"; {options}",
                stray.join(", ")
            ));
        }
        Ok(match r.kind {
            RestartStrategyType::FailureRate => RestartStrategy::FailureRate {
                max_failures_per_interval: r
                    .max_failures_per_interval
                    .unwrap_or_else(default_max_failures),
                failure_rate_interval_secs: r
                    .failure_rate_interval_secs
                    .unwrap_or_else(default_failure_interval),
                delay_secs: r.delay_secs.unwrap_or_else(default_delay),
            },
            RestartStrategyType::FixedDelay => RestartStrategy::FixedDelay {
                attempts: r.attempts.unwrap_or_else(default_max_failures),
                delay_secs: r.delay_secs.unwrap_or_else(default_delay),
            },
            RestartStrategyType::ExponentialDelay => RestartStrategy::ExponentialDelay {
                initial_backoff_ms: r.initial_backoff_ms.unwrap_or_else(default_initial_backoff),
                max_backoff_ms: r.max_backoff_ms.unwrap_or_else(default_max_backoff),
                backoff_multiplier: r.backoff_multiplier.unwrap_or_else(default_multiplier),
                reset_backoff_threshold_ms: r
                    .reset_backoff_threshold_ms
                    .unwrap_or_else(default_reset_threshold),
                jitter_factor: r.jitter_factor.unwrap_or_else(default_jitter),
            },
            RestartStrategyType::None => RestartStrategy::None,
        })
    }
}

impl Default for RestartStrategy {
    /// The seed: "The cluster's default restart strategy is configured to Failure Rate."
    fn default() -> Self {
        RestartStrategy::FailureRate {
            max_failures_per_interval: default_max_failures(),
            failure_rate_interval_secs: default_failure_interval(),
            delay_secs: default_delay(),
        }
    }
}

/// How the agent supervises the Flink processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SupervisorSection {
    /// How long a process may take to become healthy before it counts as failed.
    pub start_timeout_secs: u64,
    /// Health probe period.
    pub health_interval_ms: u64,
    /// Delay before the second consecutive restart (the first crash of a healthy process
    /// restarts at once); doubles per further failure up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Failure budget: more than `max_restarts` failures within `restart_window_secs` marks the
    /// process `failed`: it is tried again once that window has passed, or at once when an
    /// operator asks (`flink-agent restart`).
    pub max_restarts: u32,
    pub restart_window_secs: u64,
    /// Grace period between SIGTERM and SIGKILL on stop.
    pub stop_grace_secs: u64,
    /// Class-data sharing archives for the JobManager and TaskManager JVMs (made by the agent,
    /// mapped at each start; see `supervisor::cds`). Applies from each process's next start.
    pub class_data_sharing: bool,
    /// The JVMs' optimizing compiler (C2) takes only code that runs ten times as often as by
    /// default, so a start spends its CPU starting (see `supervisor::jit`). Applies from each
    /// process's next start.
    pub delay_c2: bool,
}

impl Default for SupervisorSection {
    fn default() -> Self {
        Self {
            start_timeout_secs: 120,
            health_interval_ms: 1_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 30_000,
            max_restarts: 5,
            restart_window_secs: 300,
            stop_grace_secs: 30,
            class_data_sharing: true,
            delay_c2: true,
        }
    }
}
