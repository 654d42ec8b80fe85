//! The cluster as `status` shows it on any node: every node's ZooKeeper role (asked directly
//! with `srvr`), which JobManager leads (Flink's own record in ZooKeeper), which TaskManagers
//! are registered (Flink's REST API), the quorum's health, and who copies checkpoints.

use super::coordination::Coordination;
use super::four::{self, Role};
use super::leader::host_of;
use super::render::Ensemble;
use crate::flinkrest::{Endpoint, FlinkRest};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;

const PERIOD: Duration = Duration::from_secs(2);
const PROBE: Duration = Duration::from_millis(800);

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its `node.id`, once its agent registered.
    pub id: Option<String>,
    pub address: String,
    pub zookeeper: Role,
    /// `leader`, `standby`, or the state its agent reports (`starting`, `backing-off`, ...),
    /// `unknown` without an agent.
    pub jobmanager: String,
    /// Registered with the leading JobManager.
    pub taskmanager_registered: bool,
}

/// The whole cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Flink's `high-availability.cluster-id` in force.
    pub flink_cluster_id: Option<String>,
    /// A majority of the ZooKeeper servers serves, one of them as leader.
    pub quorum_healthy: bool,
    /// `healthy: 3 of 3 ZooKeeper servers serving`, `degraded: ...`, `NO QUORUM: ...`.
    pub quorum: String,
    /// The node whose JobManager leads (its id, else its address).
    pub leader: Option<String>,
    /// The node whose agent copies checkpoints to the object store.
    pub owner: Option<String>,
    pub nodes: Vec<NodeStatus>,
    /// What keeps this agent from coordinating (no session, a node id used twice).
    pub problem: Option<String>,
}

/// Puts the pieces together (pure).
pub fn view(
    ensemble: &Ensemble,
    cluster_id: &str,
    coordination: &Coordination,
    roles: &[Role],
    taskmanager_hosts: &[String],
) -> ClusterStatus {
    let leader_host = coordination.leader.as_deref().and_then(host_of);
    let nodes: Vec<NodeStatus> = ensemble
        .members
        .iter()
        .zip(
            roles
                .iter()
                .copied()
                .chain(std::iter::repeat(Role::Unreachable)),
        )
        .map(|(m, zookeeper)| {
            let registered = coordination
                .nodes
                .iter()
                .find(|(_, info)| info.address == m.address);
            let jobmanager = if leader_host.as_deref() == Some(m.address.as_str()) {
                "leader".to_string()
            } else {
                match registered.and_then(|(_, i)| i.processes.get("jobmanager")) {
                    Some(state) if state == "running" => "standby".to_string(),
                    Some(state) => state.clone(),
                    None => "unknown".to_string(),
                }
            };
            NodeStatus {
                id: registered.map(|(id, _)| id.clone()),
                address: m.address.clone(),
                zookeeper,
                jobmanager,
                taskmanager_registered: taskmanager_hosts.contains(&m.address),
            }
        })
        .collect();
    let total = nodes.len();
    let serving = nodes.iter().filter(|n| n.zookeeper.serving()).count();
    let has_leader = nodes.iter().any(|n| n.zookeeper == Role::Leader);
    let quorum_healthy = has_leader && serving * 2 > total;
    let down: Vec<String> = nodes
        .iter()
        .filter(|n| !n.zookeeper.serving())
        .map(|n| {
            format!(
                "{} {}",
                n.id.as_deref().unwrap_or(&n.address),
                n.zookeeper.name()
            )
        })
        .collect();
    let quorum = match (quorum_healthy, serving == total) {
        (true, true) => format!("healthy: {serving} of {total} ZooKeeper servers serving"),
        (true, false) => format!(
            "degraded: {serving} of {total} ZooKeeper servers serving ({}); one more loss stops the cluster",
            down.join(", ")
        ),
        (false, _) => format!(
            "NO QUORUM: {serving} of {total} ZooKeeper servers serving ({}); Flink cannot elect a leader or complete checkpoints until a majority is back",
            down.join(", ")
        ),
    };
    let name_of = |address: &str| {
        nodes
            .iter()
            .find(|n| n.address == address)
            .map(|n| n.id.clone().unwrap_or_else(|| n.address.clone()))
    };
    ClusterStatus {
        flink_cluster_id: coordination
            .incarnation
            .as_deref()
            .map(|i| super::coordination::flink_cluster_id(cluster_id, i)),
        quorum_healthy,
        quorum,
        leader: leader_host.as_deref().and_then(name_of),
        owner: coordination.owner.clone(),
        nodes,
        problem: coordination.problem.clone(),
    }
}

/// Refreshes the view every 2 s.
pub fn spawn_view(
    ensemble: Ensemble,
    cluster_id: String,
    coordination: watch::Receiver<Coordination>,
    endpoint: Endpoint,
) -> watch::Receiver<ClusterStatus> {
    let (tx, rx) = watch::channel(ClusterStatus::default());
    tokio::spawn(async move {
        let rest = FlinkRest::new(&endpoint).ok();
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let roles = futures::future::join_all(
                ensemble
                    .members
                    .iter()
                    .map(|m| four::role(&m.address, ensemble.client_port, PROBE)),
            )
            .await;
            let hosts = match &rest {
                Some(rest) => rest
                    .taskmanagers()
                    .await
                    .map(|tms| tms.iter().filter_map(|t| host_of(&t.path)).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let next = view(
                &ensemble,
                &cluster_id,
                &coordination.borrow(),
                &roles,
                &hosts,
            );
            tx.send_replace(next);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::super::coordination::NodeInfo;
    use super::*;
    use crate::zookeeper::render::Member;

    fn ensemble() -> Ensemble {
        Ensemble {
            members: (1..=3)
                .map(|i| Member {
                    myid: i,
                    address: format!("10.0.0.{i}"),
                })
                .collect(),
            client_port: 2181,
        }
    }

    fn coordination() -> Coordination {
        let node = |i: u32, jm: &str| {
            (
                format!("node-{i}"),
                NodeInfo {
                    address: format!("10.0.0.{i}"),
                    agent_version: "0.1.0".into(),
                    processes: [("jobmanager".to_string(), jm.to_string())].into(),
                },
            )
        };
        Coordination {
            connected: true,
            incarnation: Some("abc".into()),
            is_owner: false,
            owner: Some("node-3".into()),
            leader: Some("http://10.0.0.2:8081".into()),
            nodes: [
                node(1, "running"),
                node(2, "running"),
                node(3, "backing-off"),
            ]
            .into(),
            problem: None,
        }
    }

    #[test]
    fn a_healthy_cluster_names_its_leader_standbys_and_registered_taskmanagers() {
        let v = view(
            &ensemble(),
            "prod",
            &coordination(),
            &[Role::Follower, Role::Leader, Role::Follower],
            &["10.0.0.1".into(), "10.0.0.2".into()],
        );
        assert!(v.quorum_healthy);
        assert_eq!(v.quorum, "healthy: 3 of 3 ZooKeeper servers serving");
        assert_eq!(v.leader.as_deref(), Some("node-2"));
        assert_eq!(v.flink_cluster_id.as_deref(), Some("/prod-abc"));
        let jms: Vec<&str> = v.nodes.iter().map(|n| n.jobmanager.as_str()).collect();
        assert_eq!(jms, ["standby", "leader", "backing-off"]);
        let tms: Vec<bool> = v.nodes.iter().map(|n| n.taskmanager_registered).collect();
        assert_eq!(tms, [true, true, false]);
    }

    #[test]
    fn losing_servers_degrades_then_loses_the_quorum() {
        let c = coordination();
        let v = view(
            &ensemble(),
            "prod",
            &c,
            &[Role::Leader, Role::Follower, Role::Unreachable],
            &[],
        );
        assert!(v.quorum_healthy);
        assert!(
            v.quorum
                .starts_with("degraded: 2 of 3 ZooKeeper servers serving (node-3 unreachable)"),
            "{}",
            v.quorum
        );
        let v = view(
            &ensemble(),
            "prod",
            &c,
            &[Role::NotServing, Role::Unreachable, Role::Unreachable],
            &[],
        );
        assert!(!v.quorum_healthy);
        assert!(v.quorum.starts_with("NO QUORUM: 0 of 3"), "{}", v.quorum);
    }
}
