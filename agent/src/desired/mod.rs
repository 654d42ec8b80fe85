//! One desired state, derived by one pure function from a config revision (and the Flink
//! version found at `flink.home`, and the TLS generation the TLS concern prepared). Every
//! concern gets its part from here and only from here: TLS, the Flink files, the launch of the
//! processes, the firewall, checkpoint sync, the jobs, and the endpoint everything dials. So the REST address is derived once, a reload reaches every
//! concern by comparing two `Desired`s, and a config field that no concern reads is caught by a
//! test (`every_config_field_reaches_a_concern`).
//!
//! Problems that only show when the parts are put together (firewall rules that cannot be
//! planned, a `#` a legacy Flink would cut, a cluster shape this agent cannot run) are reported
//! here, in the same form and pass as the config's own problems.
//!
//! Three nodes are one highly available cluster ([`Mode::ThreeNode`]): every node runs a
//! ZooKeeper server, a JobManager (one leads, two stand by) and a TaskManager; Flink's
//! ZooKeeper HA elects the leader and recovers the jobs, on storage all nodes share.

mod load;

pub use load::{load, resolve_plan, Loaded, Started};

use crate::checkpoints::SyncSettings;
use crate::config::{AgentConfig, FieldError};
use crate::firewall;
use crate::flinkconf::{self, FlinkVersion};
use crate::flinkrest::Endpoint;
use crate::jobs;
use crate::supervisor::{Fingerprint, LaunchSpec, ProcessProperties, ZooKeeperLaunch};
use crate::tls;
use crate::zookeeper::{self, CoordinationSpec};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What kind of cluster this node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One node: no high availability; the agent re-submits jobs after a JobManager restart.
    SingleNode,
    /// One of three nodes: Flink's ZooKeeper HA on the agents' ZooKeeper ensemble; Flink
    /// recovers its jobs after a JobManager failover, the agents do not re-submit them.
    ThreeNode,
}

/// Who this node is, for status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub node_id: String,
    pub cluster_id: String,
}

/// The agent's own files: fixed for the life of an agent process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFiles {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub socket_group: Option<String>,
}

/// Everything the config asks of this node, per concern.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub mode: Mode,
    pub identity: Identity,
    pub agent: AgentFiles,
    /// Flink's REST endpoint as the agent dials it.
    pub endpoint: Endpoint,
    /// Flink's directories and rendered configuration.
    pub flink: flinkconf::Files,
    /// How the JobManager and the TaskManager run.
    pub launch: LaunchSpec,
    pub firewall: firewall::Settings,
    /// TLS: its settings and the generation of stores Flink runs with.
    pub tls: tls::Spec,
    pub sync: SyncSettings,
    pub jobs: jobs::Settings,
    /// The agent's Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// The plan Flink's memory was derived from, for `status` and `/metrics`.
    pub plan: Plan,
    /// Flink's web UI as people on the network reach it (`node.address`).
    pub web_ui: Endpoint,
    /// Three nodes: the agent's ZooKeeper session (incarnation, registration, owner).
    pub coordination: Option<CoordinationSpec>,
}

/// The agent's `GET /metrics` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// None: off.
    pub listen: Option<SocketAddr>,
}

/// The VM plan in force, `"auto"` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub memory_mib: u32,
    pub vcpus: u32,
    /// What an `"auto"` value was read from (None: both were set in the file).
    pub auto: Option<String>,
    pub checkpoint_interval_ms: u64,
}

/// Derives the desired state of `config` for Flink `version`, with TLS `generation` (None:
/// TLS off, or a placeholder where no generation was prepared). Pure: reads nothing but its
/// arguments. Every problem is returned, each naming its key.
pub fn derive(
    config: &AgentConfig,
    version: FlinkVersion,
    generation: Option<&tls::Generation>,
) -> Result<Desired, Vec<FieldError>> {
    let (firewall, mut errors) = shape(config);
    for (key, value) in [
        ("plan.memory_mib", config.plan.memory_mib),
        ("plan.vcpus", config.plan.vcpus),
    ] {
        if value.fixed().is_none() {
            errors.push(FieldError::new(
                key,
                "\"auto\" must be read from the machine first (`desired::load` does it); set a number",
            ));
        }
    }
    if !version.uses_config_yaml() {
        // flink-conf.yaml (Flink <= 1.18) has no quoting: a '#' starts a comment anywhere.
        for (key, value) in &config.advanced.flink_config {
            if value.contains('#') {
                errors.push(FieldError::new(
                    format!("advanced.flink_config.\"{key}\""),
                    format!("Flink {version} reads flink-conf.yaml, where '#' starts a comment and would cut this value short; remove the '#' or use Flink 1.19 or later"),
                ));
            }
        }
    }
    let host = rest_host(&config.node.bind_address);
    let tls_settings = tls_settings(config);
    let generation = tls_settings.enabled.then(|| {
        generation
            .cloned()
            .unwrap_or_else(|| tls::Generation::pending(&tls_settings.dir))
    });
    let owned: BTreeMap<String, String> = generation
        .as_ref()
        .map(|g| tls::flink_keys(&g.store_paths(), &g.passwords, &tls_settings.flink))
        .unwrap_or_default();
    let rendered = flinkconf::render(config, version, &owned)
        .map_err(|e| errors.push(FieldError::new("advanced.flink_config", e.to_string())));
    let (Some(firewall), Ok(rendered), true) = (firewall, rendered, errors.is_empty()) else {
        return Err(errors);
    };
    let conf_dir = flinkconf::conf_dir(config);
    let mut endpoint = Endpoint::new(&host, config.ports.rest);
    if let Some(g) = &generation {
        endpoint = endpoint.with_tls(g.client.clone());
    }
    let f = &config.flink;
    let mode = if config.cluster.nodes.len() == 3 {
        Mode::ThreeNode
    } else {
        Mode::SingleNode
    };
    // Three nodes keep Flink's checkpoints, savepoints and restores on the shared storage.
    let shared = match mode {
        Mode::ThreeNode => config.ha.cluster_dir(&config.cluster.id),
        Mode::SingleNode => None,
    };
    let flink_data = shared.clone().unwrap_or_else(|| f.data_dir.clone());
    let zookeeper = shared
        .as_deref()
        .and_then(|dir| zookeeper::render::server_spec(config, dir))
        .map(|server| ZooKeeperLaunch {
            fingerprint: Fingerprint::new(
                &[
                    server.java.as_os_str().as_encoded_bytes(),
                    server
                        .classpath
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                        .as_bytes(),
                    server.heap_mib.to_string().as_bytes(),
                    f.user.as_deref().unwrap_or("").as_bytes(),
                    f.log_dir.as_os_str().as_encoded_bytes(),
                ],
                "zoo.cfg",
                &server.entries,
            ),
            server,
        });
    let mut properties = ProcessProperties::default();
    // Each process its own metric query port (P and P+1). From the shared range both took the
    // first free one, and the loser of that race (every start of the pair: a TaskManager is
    // restarted with its JobManager) logged an ERROR (a failed bind) and started its metrics
    // actor system a second time, 0.12 s of the JobManager's start when it lost.
    let query = config.ports.metrics_query;
    for (kind, options, query_port) in [
        ("jobmanager", &mut properties.jobmanager, query),
        (
            "taskmanager",
            &mut properties.taskmanager,
            query.saturating_add(1),
        ),
    ] {
        let dir = flinkconf::scratch_dir(&f.data_dir, kind)
            .to_string_lossy()
            .into_owned();
        if kind == "jobmanager" {
            // The REST server's upload dir (`flink-web-<uuid>/`, uploaded jars among it)
            // defaults to /tmp, and a JobManager that is killed leaves it behind: 604 of them
            // in /tmp after a few days of tests. In the scratch dir, the next launch clears
            // what the last one left.
            options.insert(flinkconf::WEB_TMP_DIR_KEY.to_string(), dir.clone());
        }
        options.insert(flinkconf::TMP_DIRS_KEY.to_string(), dir);
        let key = flinkconf::METRICS_QUERY_PORT_KEY.to_string();
        options.insert(key, query_port.to_string());
    }
    properties
        .taskmanager
        .extend(flinkconf::ha_taskmanager_entries(config));
    if config.metrics.flink_reporter {
        let key = flinkconf::PROMETHEUS_PORT_KEY.to_string();
        let ports = &config.ports;
        properties
            .jobmanager
            .insert(key.clone(), ports.prometheus_jobmanager.to_string());
        properties
            .taskmanager
            .insert(key, ports.prometheus_taskmanager.to_string());
    }
    let mut launch_inputs = vec![
        f.home.as_os_str().as_encoded_bytes(),
        f.java_home.as_os_str().as_encoded_bytes(),
        f.user.as_deref().unwrap_or("").as_bytes(),
        conf_dir.as_os_str().as_encoded_bytes(),
        f.log_dir.as_os_str().as_encoded_bytes(),
    ];
    // The stores' certificates (their digest): new material restarts both processes. Only with
    // TLS on, so processes started before TLS existed keep their fingerprint.
    if let Some(g) = &generation {
        launch_inputs.push(g.id.as_bytes());
    }
    let fingerprint = Fingerprint::new(&launch_inputs, rendered.file_name, &rendered.entries)
        .with_process(&properties.entries());
    let launch = LaunchSpec {
        flink_home: f.home.clone(),
        java_home: f.java_home.clone(),
        conf_dir: conf_dir.clone(),
        log_dir: f.log_dir.clone(),
        user: f.user.clone(),
        node_id: config.node.id.clone(),
        endpoint: endpoint.clone(),
        expected_slots: config.advanced.number_of_task_slots,
        settings: config.supervisor.clone(),
        properties,
        fingerprint,
        ha_cluster_id: (mode == Mode::ThreeNode).then(|| config.cluster.id.clone()),
        zookeeper,
    };
    let coordination = (mode == Mode::ThreeNode).then(|| CoordinationSpec {
        ensemble: zookeeper::Ensemble::of(config),
        session_timeout: Duration::from_millis(config.ha.session_timeout_ms),
        cluster_id: config.cluster.id.clone(),
        node_id: config.node.id.clone(),
        node_address: config.node.address.clone(),
    });
    Ok(Desired {
        mode,
        identity: Identity {
            node_id: config.node.id.clone(),
            cluster_id: config.cluster.id.clone(),
        },
        agent: AgentFiles {
            state_dir: config.agent.state_dir.clone(),
            socket: config.agent.socket.clone(),
            socket_group: config.agent.socket_group.clone(),
        },
        endpoint: endpoint.clone(),
        flink: flinkconf::Files {
            version,
            rendered,
            conf_dir,
            flink_home: f.home.clone(),
            data_dir: f.data_dir.clone(),
            log_dir: f.log_dir.clone(),
            user: f.user.clone(),
        },
        launch,
        firewall,
        tls: tls::Spec {
            settings: tls_settings,
            generation,
        },
        sync: SyncSettings {
            store: config.object_store.clone(),
            cluster_id: config.cluster.id.clone(),
            flink_version: version.to_string(),
            state_dir: config.agent.state_dir.clone(),
            data_dir: flink_data.clone(),
            checkpoints: config.checkpoints.clone(),
            shared: shared.is_some(),
            rest: shared.is_some().then(|| endpoint.clone()),
        },
        jobs: jobs::Settings {
            state_dir: config.agent.state_dir.clone(),
            data_dir: flink_data,
            endpoint,
            ha_cluster_id: (mode == Mode::ThreeNode).then(|| config.cluster.id.clone()),
        },
        metrics: MetricsSettings {
            listen: config.metrics.listen_addr(),
        },
        plan: Plan {
            memory_mib: config.plan.memory_mib.fixed().unwrap_or_default(),
            vcpus: config.plan.vcpus.fixed().unwrap_or_default(),
            auto: None,
            checkpoint_interval_ms: config.advanced.checkpoint_interval_ms,
        },
        web_ui: {
            let ui = Endpoint::new(&config.node.address, config.ports.rest);
            // People reach it over https too (with a client certificate, `tls client-cert`).
            if config.tls.enabled {
                ui.with_tls(Default::default())
            } else {
                ui
            }
        },
        coordination,
    })
}

/// The TLS concern's settings of `config`: they name the host the agent dials.
pub fn tls_settings(config: &AgentConfig) -> tls::Settings {
    tls::Settings::new(config, &rest_host(&config.node.bind_address))
}

/// What can be checked without knowing Flink's version: the cluster shape and the firewall's
/// rules. (Reported even when `flink.home` holds no Flink, so all problems come at once.)
pub fn shape(config: &AgentConfig) -> (Option<firewall::Settings>, Vec<FieldError>) {
    let mut errors = three_node_problems(config);
    let firewall = firewall::Settings::from_config(config)
        .map_err(|e| errors.extend(e))
        .ok();
    (firewall, errors)
}

/// What a three-node cluster needs that a single node does not: an odd number of nodes (one, or
/// three: a ZooKeeper quorum survives the loss of one of three), each listed once, this node
/// among them, and storage every node shares.
fn three_node_problems(config: &AgentConfig) -> Vec<FieldError> {
    let nodes = &config.cluster.nodes;
    let mut errors = Vec::new();
    if !matches!(nodes.len(), 1 | 3) {
        errors.push(FieldError::new(
            "cluster.nodes",
            format!("must list 1 node (single-node) or 3 nodes (highly available: ZooKeeper keeps a majority when any one is lost), got {}", nodes.len()),
        ));
        return errors;
    }
    if nodes.len() == 1 {
        return errors;
    }
    for (i, node) in nodes.iter().enumerate() {
        if let Some(first) = nodes[..i].iter().position(|n| n == node) {
            errors.push(FieldError::new(
                format!("cluster.nodes[{i}]"),
                format!("{node:?} is listed twice (also cluster.nodes[{first}]); list each of the three nodes once"),
            ));
        }
    }
    if !nodes.contains(&config.node.address) {
        errors.push(FieldError::new(
            "node.address",
            format!("{:?} is not one of cluster.nodes; set it to this node's address as the other nodes list it", config.node.address),
        ));
    }
    if config.ha.shared_dir.is_none() {
        errors.push(FieldError::new(
            "ha.shared_dir",
            "three-node clusters need storage every node mounts at the same path (NFS, EFS, Filestore, Azure Files, GlusterFS): Flink's new leader reads the job graphs and checkpoints the old one wrote, and TaskManagers read each other's state; set ha.shared_dir to that mount",
        ));
    }
    errors
}

/// The agent talks to its local REST endpoint where Flink binds it: loopback when Flink binds
/// to every address.
fn rest_host(bind_address: &str) -> String {
    match bind_address {
        "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        a => a.to_string(),
    }
}

#[cfg(test)]
mod tests;
