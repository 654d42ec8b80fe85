//! This node's ZooKeeper server as a supervised process (three-node clusters): its files, its
//! command line, the guard before it starts, and its health.
//!
//! **The empty-data-dir guard.** A server whose data dir is empty joins an election with
//! nothing; two such servers are a majority of three and would elect an empty leader, which
//! then wipes the third server's data (and with it Flink's HA records) when it rejoins. So a
//! server that has never been part of a serving ensemble (no `version-2/currentEpoch`, which
//! ZooKeeper writes once it has joined an epoch) starts only when another server already serves
//! (it then syncs from that quorum), or when the cluster is new: the ensemble has never served,
//! which the shared storage remembers (`<shared dir>/<cluster>/zookeeper.formed`, written the
//! first time this agent sees its server serve).

use super::{LaunchSpec, SupervisorError};
use crate::zookeeper::{four, ServerSpec};
use std::path::Path;
use std::time::Duration;

/// The JVM's main class.
pub const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// How long a four-letter word may take on the node's own address.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Writes `zoo.cfg` (agent-owned, 0644: no secrets) and, in the data dir (the Flink user's),
/// `myid`. Idempotent.
pub fn write_files(
    server: &ServerSpec,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&server.conf_dir)?;
    std::fs::set_permissions(&server.conf_dir, std::fs::Permissions::from_mode(0o755))?;
    crate::fsutil::write_atomic_if_changed(
        &server.zoo_cfg_path(),
        server.zoo_cfg().as_bytes(),
        0o644,
    )?;
    std::fs::create_dir_all(&server.data_dir)?;
    let myid = server.data_dir.join("myid");
    crate::fsutil::write_atomic_if_changed(&myid, format!("{}\n", server.myid).as_bytes(), 0o644)?;
    if let Some((uid, gid)) = owner {
        for path in [&server.data_dir, &myid] {
            nix::unistd::chown(path, Some(uid), Some(gid)).map_err(std::io::Error::from)?;
        }
    }
    Ok(())
}

/// Program, arguments and environment of the server's JVM.
pub fn command(
    spec: &LaunchSpec,
    server: &ServerSpec,
    home: &str,
    user: &str,
) -> (String, Vec<String>, Vec<(String, String)>) {
    let classpath = server
        .classpath
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let args = vec![
        format!("-Xms{}m", server.heap_mib),
        format!("-Xmx{}m", server.heap_mib),
        // A small heap: the serial collector's pauses are short and it needs no extra threads.
        "-XX:+UseSerialGC".into(),
        "-Dorg.slf4j.simpleLogger.showDateTime=true".into(),
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss,SSS".into(),
        "-cp".into(),
        classpath,
        MAIN_CLASS.into(),
        server.zoo_cfg_path().display().to_string(),
    ];
    let env = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
        ("HOME", home.to_string()),
        ("USER", user.to_string()),
        ("LOGNAME", user.to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("JAVA_HOME", spec.java_home.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (server.java.display().to_string(), args, env)
}

/// Whether the server has ever been part of an ensemble that served (see the module docs).
pub fn has_data(data_dir: &Path) -> bool {
    data_dir.join("version-2/currentEpoch").is_file()
}

/// The guard: `Ok` when the server may start now, else why it waits (shown in `status`).
pub async fn may_start(server: &ServerSpec) -> Result<(), String> {
    if has_data(&server.data_dir) || !server.formed_marker.exists() {
        return Ok(());
    }
    for (host, port) in server.peers() {
        if four::role(&host, port, PROBE_TIMEOUT).await.serving() {
            return Ok(());
        }
    }
    Err(format!(
        "its data dir {} is empty and no other ZooKeeper server of the cluster serves: started now, it could form a majority with another empty server and wipe the cluster's HA records. Start the nodes that still have their data; only if none can come back, remove {} (the cluster then starts over: Flink's HA records are lost and the jobs are restored from the object store)",
        server.data_dir.display(),
        server.formed_marker.display()
    ))
}

/// Remembers on the shared storage that this cluster's ensemble has served (idempotent).
pub fn mark_formed(server: &ServerSpec) -> std::io::Result<()> {
    if server.formed_marker.exists() {
        return Ok(());
    }
    if let Some(dir) = server.formed_marker.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::fsutil::write_atomic(
        &server.formed_marker,
        b"the ZooKeeper ensemble of this cluster has served\n",
        0o644,
    )
}

/// Health: the process answers `ruok`.
pub async fn probe(server: &ServerSpec) -> Result<four::Role, String> {
    four::runs(&server.address, server.ensemble.client_port, PROBE_TIMEOUT).await?;
    Ok(four::role(&server.address, server.ensemble.client_port, PROBE_TIMEOUT).await)
}

/// Why a server could not be prepared.
pub fn prepare_error(server: &ServerSpec, source: std::io::Error) -> SupervisorError {
    SupervisorError::Prepare {
        what: format!(
            "ZooKeeper's files ({} and {})",
            server.zoo_cfg_path().display(),
            server.data_dir.display()
        ),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    fn server(dir: &Path) -> ServerSpec {
        let mut c = AgentConfig::default();
        c.cluster.nodes = vec!["127.0.0.1".into(), "127.0.0.2".into(), "127.0.0.3".into()];
        c.agent.state_dir = dir.join("state");
        c.flink.data_dir = dir.join("data");
        // Nothing listens on these ports of 127.0.0.2/3.
        c.ports.zookeeper_client = 1;
        crate::zookeeper::render::server_spec(&c, &dir.join("shared")).expect("spec")
    }

    #[tokio::test]
    async fn an_empty_server_starts_only_in_a_new_cluster_or_with_a_serving_peer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = server(dir.path());
        write_files(&s, None).expect("files");
        assert_eq!(
            std::fs::read_to_string(s.data_dir.join("myid")).expect("myid"),
            "1\n"
        );
        assert!(std::fs::read_to_string(s.zoo_cfg_path())
            .expect("cfg")
            .contains("server.3=127.0.0.3:2888:3888"));
        assert_eq!(may_start(&s).await, Ok(()), "a new cluster");
        mark_formed(&s).expect("marker");
        let why = may_start(&s)
            .await
            .expect_err("an empty server of a formed ensemble waits");
        assert!(
            why.contains("no other ZooKeeper server of the cluster serves"),
            "{why}"
        );
        assert!(why.contains("zookeeper.formed"), "{why}");
        std::fs::create_dir_all(s.data_dir.join("version-2")).expect("dir");
        std::fs::write(s.data_dir.join("version-2/currentEpoch"), b"1").expect("epoch");
        assert_eq!(
            may_start(&s).await,
            Ok(()),
            "it has served before: its data counts"
        );
    }
}
