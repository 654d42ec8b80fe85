//! `[ha]`: what a three-node (highly available) cluster needs beyond a single node — the
//! storage every node shares, Flink's ZooKeeper session timeout, and how the agent runs this
//! node's ZooKeeper server. Ignored by a single node. The schema, value and machine checks live
//! here; the cluster shape (how many nodes, which storage) is judged by `crate::desired`.

use super::{AgentConfig, Errors};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[ha]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HaSection {
    /// A directory every node of the cluster mounts at this same path (NFS, EFS, Filestore,
    /// Azure Files, GlusterFS): Flink's HA store, checkpoints and savepoints. A new leader
    /// reads what the old one wrote, and TaskManagers read each other's state files, by path.
    pub shared_dir: Option<PathBuf>,
    /// Flink's ZooKeeper session timeout: how long a dead JobManager keeps its leadership
    /// (`high-availability.zookeeper.client.session-timeout`). Shorter fails over sooner;
    /// too short turns a GC pause into a failover.
    pub session_timeout_ms: u64,
    /// Class path of the ZooKeeper server the agent runs on this node: Debian's `zookeeper`
    /// package and an SLF4J binding that writes its log to standard error (the journal).
    pub zookeeper_classpath: Vec<PathBuf>,
    /// Heap of the ZooKeeper server (`-Xmx`); it holds pointers only, so it stays small.
    pub zookeeper_heap_mib: u32,
}

impl Default for HaSection {
    fn default() -> Self {
        Self {
            shared_dir: None,
            session_timeout_ms: 6_000,
            zookeeper_classpath: vec![
                PathBuf::from("/usr/share/java/zookeeper.jar"),
                PathBuf::from("/usr/share/java/slf4j-simple.jar"),
            ],
            zookeeper_heap_mib: 128,
        }
    }
}

impl HaSection {
    /// This cluster's directory on the shared storage: `<shared_dir>/<cluster.id>`.
    pub fn cluster_dir(&self, cluster_id: &str) -> Option<PathBuf> {
        self.shared_dir.as_ref().map(|d| d.join(cluster_id))
    }
}

/// ZooKeeper's tick (zoo.cfg `tickTime`): it allows session timeouts of 2 to 20 ticks.
pub const ZOOKEEPER_TICK_MS: u64 = 1_000;

/// One ZooKeeper server of a three-node cluster's ensemble. `myid` is the node's place among
/// the *sorted* addresses of `cluster.nodes`, so nodes whose files list the same addresses in
/// another order still agree on who is who.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub myid: u32,
    pub address: String,
}

/// The three ZooKeeper servers: who they are and where their client ports answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensemble {
    pub members: Vec<Member>,
    pub client_port: u16,
}

impl Ensemble {
    pub fn of(config: &AgentConfig) -> Ensemble {
        let mut addresses = config.cluster.nodes.clone();
        addresses.sort();
        Ensemble {
            members: addresses
                .into_iter()
                .enumerate()
                .map(|(i, address)| Member {
                    myid: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    address,
                })
                .collect(),
            client_port: config.ports.zookeeper_client,
        }
    }

    /// `host:port,host:port,...` as ZooKeeper clients take it (Flink's quorum, the agent's own
    /// session); IPv6 addresses in brackets.
    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| host_port(&m.address, self.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn myid_of(&self, address: &str) -> Option<u32> {
        self.members
            .iter()
            .find(|m| m.address == address)
            .map(|m| m.myid)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Value checks (no filesystem).
pub fn validate(c: &AgentConfig, e: &mut Errors) {
    let h = &c.ha;
    e.range(
        "ha.session_timeout_ms",
        h.session_timeout_ms,
        2 * ZOOKEEPER_TICK_MS,
        20 * ZOOKEEPER_TICK_MS,
        "ZooKeeper grants sessions of 2 to 20 ticks of 1 s; a dead JobManager keeps leading this long",
    );
    e.range(
        "ha.zookeeper_heap_mib",
        h.zookeeper_heap_mib,
        64,
        4096,
        "ZooKeeper holds only Flink's pointers; 128 MiB is plenty",
    );
    if let Some(dir) = &h.shared_dir {
        if !dir.is_absolute() {
            e.push(
                "ha.shared_dir",
                format!("must be an absolute path, the same on every node (got {dir:?})"),
            );
        }
    }
    if h.zookeeper_classpath.is_empty() {
        e.push(
            "ha.zookeeper_classpath",
            "must name ZooKeeper's jar (Debian: /usr/share/java/zookeeper.jar)",
        );
    }
    for (i, jar) in h.zookeeper_classpath.iter().enumerate() {
        if !jar.is_absolute() {
            e.push(
                format!("ha.zookeeper_classpath[{i}]"),
                format!("must be an absolute path (got {jar:?})"),
            );
        }
    }
}

/// Checks against the machine, for a three-node cluster only: the shared dir is there and
/// writable, ZooKeeper is installed.
pub fn check_machine(c: &AgentConfig, e: &mut Errors) {
    if c.cluster.nodes.len() < 3 {
        return;
    }
    if let Some(dir) = c.ha.shared_dir.as_ref().filter(|d| d.is_absolute()) {
        match writable_dir(dir) {
            Ok(()) => {}
            Err(why) => e.push(
                "ha.shared_dir",
                format!("{} {why}; mount the cluster's shared storage there (the same on every node) before starting the agent", dir.display()),
            ),
        }
    }
    for (i, jar) in c.ha.zookeeper_classpath.iter().enumerate() {
        if jar.is_absolute() && !jar.is_file() {
            e.push(
                format!("ha.zookeeper_classpath[{i}]"),
                format!(
                    "{} is missing; install Debian's `zookeeper` and `libslf4j-java` packages (the server is not started as a system service), or point this at ZooKeeper 3.5+ jars",
                    jar.display()
                ),
            );
        }
    }
}

/// Whether `dir` is a directory the agent can create files in (tried, then removed).
fn writable_dir(dir: &std::path::Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("is not a directory".into());
    }
    let probe = dir.join(format!(".flink-agent-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("is not writable by the agent ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_nodes() -> AgentConfig {
        let mut c = AgentConfig::default();
        c.cluster.nodes = vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.3".into()];
        c.node.address = "10.0.0.1".into();
        c
    }

    #[test]
    fn values_name_their_key() {
        let mut c = three_nodes();
        c.ha.session_timeout_ms = 500;
        c.ha.shared_dir = Some("relative/dir".into());
        c.ha.zookeeper_classpath = vec!["zk.jar".into()];
        let mut e = Errors::default();
        validate(&c, &mut e);
        let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ha.session_timeout_ms",
                "ha.shared_dir",
                "ha.zookeeper_classpath[0]"
            ]
        );
    }

    #[test]
    fn the_machine_must_have_the_shared_dir_and_zookeeper() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = three_nodes();
        c.ha.shared_dir = Some(dir.path().join("not-mounted"));
        c.ha.zookeeper_classpath = vec![dir.path().join("zookeeper.jar")];
        let mut e = Errors::default();
        check_machine(&c, &mut e);
        assert_eq!(e.0.len(), 2, "{:?}", e.0);
        assert!(e.0[0].message.contains("is not a directory"), "{:?}", e.0);
        assert!(e.0[1].message.contains("install Debian's `zookeeper`"));
        std::fs::create_dir(dir.path().join("not-mounted")).expect("dir");
        std::fs::write(dir.path().join("zookeeper.jar"), b"PK").expect("jar");
        let mut e = Errors::default();
        check_machine(&c, &mut e);
        assert!(e.0.is_empty(), "{:?}", e.0);
        // A single node needs none of it.
        c.cluster.nodes.truncate(1);
        c.ha.shared_dir = Some("/nowhere".into());
        let mut e = Errors::default();
        check_machine(&c, &mut e);
        assert!(e.0.is_empty());
    }
}
