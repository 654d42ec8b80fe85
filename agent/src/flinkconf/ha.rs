//! Flink's ZooKeeper HA in a three-node cluster (pure): the quorum of the agents' ZooKeeper
//! servers, the shared storage for the HA records, checkpoints and savepoints, and timeouts
//! that fail over in seconds. `high-availability.cluster-id` is not here: it names the
//! cluster's incarnation, which the ensemble decides, so the supervisor passes it at launch.

use crate::config::AgentConfig;
use std::collections::BTreeMap;

/// `high-availability.zookeeper.client.tolerate-suspended-connections`: what a process does
/// when its ZooKeeper connection is SUSPENDED (its server died, or its node is cut off) while
/// its session may still live.
///
/// The JobManager (and anything else reading the shared file) does not tolerate it: a leader
/// gives its leadership up at once. Tolerating it keeps the leadership until Curator declares
/// the session LOST, a whole session timeout *after* the suspension, while the majority's
/// ZooKeeper expires the session a session timeout after the leader *last reached it*, which is
/// earlier: a cut-off leader then ran the job for seconds beside the new leader's copy (the
/// three-node fault runner saw two running copies; the three-node test measured the cut-off
/// leader still running 7.8 s after the cut). The price: the death of the ZooKeeper server the
/// leader uses is a fail-over, not a reconnect.
const JOBMANAGER_TOLERATES_SUSPENDED: bool = false;

/// The TaskManager tolerates it (given on its command line, see [`taskmanager_entries`]): a
/// TaskManager that lost its ZooKeeper server keeps its tasks and reconnects to another server,
/// instead of failing every job running on it. Its tasks cannot outlive their leader: a
/// JobManager that gives up its leadership cancels them, and one that dies stops heartbeating.
const TASKMANAGER_TOLERATES_SUSPENDED: bool = true;

const TOLERATE_KEY: &str = "high-availability.zookeeper.client.tolerate-suspended-connections";

/// `high-availability.zookeeper.path.root`.
pub const FLINK_HA_ROOT: &str = "/flink";

/// How long Flink's ZooKeeper client waits for a connection, and between retries.
pub const CONNECTION_TIMEOUT_MS: u64 = 3_000;
pub const RETRY_WAIT_MS: u64 = 1_000;

/// The keys a three-node cluster adds (and the checkpoint directories it moves to the shared
/// storage); nothing for a single node.
pub fn entries(
    cfg: &AgentConfig,
    checkpoint_dir_key: &str,
    savepoint_dir_key: &str,
) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    let Some(dir) = cfg
        .ha
        .cluster_dir(&cfg.cluster.id)
        .filter(|_| cfg.cluster.nodes.len() >= 3)
    else {
        return e;
    };
    let mut put = |k: &str, v: String| {
        e.insert(k.to_string(), v);
    };
    let quorum = crate::config::Ensemble::of(cfg).connect_string();
    put("high-availability.type", "zookeeper".into());
    put("high-availability.zookeeper.quorum", quorum);
    put(
        "high-availability.zookeeper.path.root",
        FLINK_HA_ROOT.into(),
    );
    put("high-availability.storageDir", file_uri(&dir.join("ha")));
    // In HA the JobManager's RPC port comes from here (jobmanager.rpc.port is not used); its
    // default is a random port, which the firewall could not name.
    put(
        "high-availability.jobmanager.port",
        cfg.ports.jobmanager_rpc.to_string(),
    );
    let p = "high-availability.zookeeper.client";
    put(
        &format!("{p}.session-timeout"),
        cfg.ha.session_timeout_ms.to_string(),
    );
    put(
        &format!("{p}.connection-timeout"),
        CONNECTION_TIMEOUT_MS
            .min(cfg.ha.session_timeout_ms)
            .to_string(),
    );
    put(&format!("{p}.retry-wait"), RETRY_WAIT_MS.to_string());
    put(TOLERATE_KEY, JOBMANAGER_TOLERATES_SUSPENDED.to_string());
    // Every JobManager and TaskManager reads what the others wrote, by the same path.
    put(checkpoint_dir_key, file_uri(&dir.join("checkpoints")));
    put(savepoint_dir_key, file_uri(&dir.join("savepoints")));
    e
}

/// The options a three-node cluster's TaskManager takes on its command line, over the shared
/// file; nothing for a single node.
pub fn taskmanager_entries(cfg: &AgentConfig) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    if cfg.cluster.nodes.len() >= 3 {
        e.insert(
            TOLERATE_KEY.to_string(),
            TASKMANAGER_TOLERATES_SUSPENDED.to_string(),
        );
    }
    e
}

fn file_uri(p: &std::path::Path) -> String {
    format!("file://{}", p.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_get_zookeeper_ha_on_the_shared_storage_and_one_node_nothing() {
        let mut c = AgentConfig::default();
        assert!(entries(&c, "d", "s").is_empty());
        c.cluster.id = "prod".into();
        c.cluster.nodes = vec!["10.0.0.3".into(), "10.0.0.1".into(), "10.0.0.2".into()];
        c.node.address = "10.0.0.1".into();
        c.ha.shared_dir = Some("/mnt/flink".into());
        let e = entries(
            &c,
            "execution.checkpointing.dir",
            "execution.checkpointing.savepoint-dir",
        );
        assert_eq!(
            e["high-availability.zookeeper.quorum"],
            "10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181"
        );
        assert_eq!(
            e["high-availability.storageDir"],
            "file:///mnt/flink/prod/ha"
        );
        assert_eq!(e["high-availability.jobmanager.port"], "6123");
        assert_eq!(
            e["high-availability.zookeeper.client.session-timeout"],
            "6000"
        );
        assert_eq!(
            e["execution.checkpointing.dir"],
            "file:///mnt/flink/prod/checkpoints"
        );
        assert!(!e.contains_key("high-availability.cluster-id"));
        assert_eq!(
            e[TOLERATE_KEY], "false",
            "a cut-off leader steps down at once"
        );
        assert_eq!(taskmanager_entries(&c)[TOLERATE_KEY], "true");
        c.cluster.nodes.truncate(1);
        assert!(taskmanager_entries(&c).is_empty());
    }
}
