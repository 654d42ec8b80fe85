//! The agent's own ZooKeeper session (three-node clusters): what the three agents agree on
//! through the ensemble they run.
//!
//! - **The incarnation** of the cluster: created once, by whichever agent gets there first, when
//!   the ensemble is new (`/flink-agent/<cluster>/incarnation`). Flink's `high-availability.cluster-id`
//!   is `/<cluster.id>-<incarnation>`, so a cluster re-created with the same id (new ZooKeeper
//!   data) never finds the HA records, jars and job results an earlier incarnation left in the
//!   shared storage, and the deterministic Flink job ids change with it.
//! - **Who this node is**: an ephemeral `/flink-agent/<cluster>/nodes/<node.id>` holds the
//!   node's address and its processes' states, for every agent's `status`. A second node with
//!   the same `node.id` (another address) is refused: it is reported and does not register.
//! - **The owner**: one agent at a time (an ephemeral `/flink-agent/<cluster>/owner`, held by its
//!   session) copies checkpoints from the shared storage to the object store and submits
//!   declared jobs Flink's HA does not know. An agent that loses its session, or only its
//!   connection, stops acting as owner at once; another one takes over once ZooKeeper expires
//!   the session (`ha.session_timeout_ms`).
//! - **The leading JobManager**, as Flink publishes it.
//! - **A crashed leader's hand-over** ([`super::handover`]): when this node's JobManager dies,
//!   the session releases its leadership at once if it led.
//!
//! Everything is polled once a second: three agents, a handful of small reads.

use super::handover::{self, Release};
use super::leader;
use crate::events::{Event, HandOver, JobManagerHandOver};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use zookeeper_client as zk;

const POLL: Duration = Duration::from_secs(1);

/// What the agent needs for its session; derived from the config by `crate::desired` (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinationSpec {
    /// The ZooKeeper servers the session may use.
    pub ensemble: super::Ensemble,
    pub session_timeout: Duration,
    pub cluster_id: String,
    pub node_id: String,
    pub node_address: String,
}

impl CoordinationSpec {
    fn root(&self) -> String {
        format!("/flink-agent/{}", self.cluster_id)
    }

    /// Flink's `high-availability.cluster-id` for an incarnation.
    pub fn flink_cluster_id(&self, incarnation: &str) -> String {
        flink_cluster_id(&self.cluster_id, incarnation)
    }

    /// Flink's namespace in ZooKeeper for an incarnation (`/flink/<cluster-id>`).
    fn flink_path(&self, incarnation: &str) -> String {
        format!(
            "{}{}",
            crate::flinkconf::FLINK_HA_ROOT,
            self.flink_cluster_id(incarnation)
        )
    }
}

/// `/<cluster.id>-<incarnation>`.
pub fn flink_cluster_id(cluster_id: &str, incarnation: &str) -> String {
    format!("/{cluster_id}-{incarnation}")
}

/// What a node tells the others about itself (the data of its ephemeral node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub address: String,
    pub agent_version: String,
    /// Process name → state (`running`, `backing-off`, ...).
    pub processes: BTreeMap<String, String>,
}

/// What the session knows, as of its last poll.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coordination {
    /// The session is established (else the values below are the last known ones).
    pub connected: bool,
    pub incarnation: Option<String>,
    /// This agent holds the owner node with its current session.
    pub is_owner: bool,
    /// The node id of the owner.
    pub owner: Option<String>,
    /// The leading JobManager's REST address (`http://10.0.0.2:8081`).
    pub leader: Option<String>,
    /// Registered nodes by id.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Why this node is not registered, or the session not established.
    pub problem: Option<String>,
}

/// The running session task. It publishes into a channel that outlives it, so a new session
/// (another spec after a reload) replaces it without its readers noticing.
#[derive(Debug)]
pub struct Coordinator {
    task: tokio::task::JoinHandle<()>,
}

impl Coordinator {
    /// Starts the session; `info` is what this node publishes about itself, `crashes` when
    /// this node's JobManager was last seen to crash, `out` where the session's view goes.
    pub fn spawn(
        spec: CoordinationSpec,
        info: watch::Receiver<NodeInfo>,
        crashes: watch::Receiver<Option<Instant>>,
        out: Arc<watch::Sender<Coordination>>,
    ) -> Coordinator {
        Coordinator {
            task: tokio::spawn(run(spec, out, info, crashes)),
        }
    }

    /// Ends the session: its client is dropped, which closes the session, so the owner node
    /// and the registration go at once and another agent takes over without waiting for the
    /// session to expire.
    pub async fn close(self, out: &watch::Sender<Coordination>) {
        self.task.abort();
        let _ = self.task.await;
        // The client's own task sends the close request.
        tokio::time::sleep(Duration::from_millis(200)).await;
        out.send_modify(|s| {
            s.connected = false;
            s.is_owner = false;
        });
    }
}

async fn run(
    spec: CoordinationSpec,
    out: Arc<watch::Sender<Coordination>>,
    mut info: watch::Receiver<NodeInfo>,
    mut crashes: watch::Receiver<Option<Instant>>,
) {
    loop {
        let connector = zk::Client::connector()
            .with_session_timeout(spec.session_timeout)
            .with_connection_timeout(spec.session_timeout / 3)
            .with_fail_eagerly();
        match tokio::time::timeout(
            spec.session_timeout * 2,
            connector.connect(&spec.ensemble.connect_string()),
        )
        .await
        {
            Ok(Ok(client)) => {
                let why = serve(&spec, &client, &out, &mut info, &mut crashes).await;
                log::warn!("ZooKeeper session ended: {why}; connecting again");
                out.send_modify(|s| {
                    s.connected = false;
                    s.is_owner = false;
                    s.problem = Some(format!("ZooKeeper session ended: {why}"));
                });
            }
            Ok(Err(e)) => out.send_modify(|s| {
                s.connected = false;
                s.is_owner = false;
                s.problem = Some(format!(
                    "cannot open a ZooKeeper session with {}: {e}",
                    spec.ensemble.connect_string()
                ));
            }),
            Err(_) => out.send_modify(|s| {
                s.connected = false;
                s.is_owner = false;
                s.problem = Some(format!(
                    "no ZooKeeper session with {} within {:?}",
                    spec.ensemble.connect_string(),
                    spec.session_timeout * 2
                ));
            }),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Serves one session until it ends; returns why.
async fn serve(
    spec: &CoordinationSpec,
    client: &zk::Client,
    out: &watch::Sender<Coordination>,
    info: &mut watch::Receiver<NodeInfo>,
    crashes: &mut watch::Receiver<Option<Instant>>,
) -> String {
    let root = spec.root();
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let mut states = client.state_watcher();
    let mut registered = false;
    let mut published: Option<NodeInfo> = None;
    loop {
        let state = states.peek_state();
        if matches!(
            state,
            zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed
        ) {
            return format!("{state:?}");
        }
        let connected = state == zk::SessionState::SyncConnected;
        if !connected {
            // Not sure to hold anything any more: stop acting as owner until connected again.
            out.send_modify(|s| {
                s.connected = false;
                s.is_owner = false;
            });
        } else {
            match poll(
                spec,
                client,
                &root,
                &persistent,
                &ephemeral,
                &mut registered,
                &mut published,
                info,
            )
            .await
            {
                Ok(next) => {
                    out.send_if_modified(|s| {
                        let changed = *s != next;
                        *s = next;
                        changed
                    });
                }
                Err(zk::Error::SessionExpired) => return "session expired".into(),
                Err(e) => out.send_modify(|s| {
                    s.is_owner = false;
                    s.problem = Some(format!("ZooKeeper: {e}"));
                }),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = states.changed() => {}
            Ok(()) = crashes.changed() => {
                let seen = *crashes.borrow_and_update();
                if let (Some(seen), true) = (seen, connected) {
                    hand_over(spec, client, out, seen).await;
                }
            }
        }
    }
}

/// This node's JobManager crashed (seen at `seen`): release its leadership if it led.
async fn hand_over(
    spec: &CoordinationSpec,
    client: &zk::Client,
    out: &watch::Sender<Coordination>,
    seen: Instant,
) {
    let Some(incarnation) = out.borrow().incarnation.clone() else {
        return;
    };
    let flink = spec.flink_path(&incarnation);
    let started = Instant::now();
    // The whole release ends within half a session timeout of the crash: the dead session
    // cannot expire before two thirds of it (its last heartbeat was at most a third before the
    // crash), so every node deleted is still the dead session's.
    let budget = (spec.session_timeout / 2).saturating_sub(seen.elapsed());
    let result = tokio::time::timeout(
        budget,
        handover::release(
            client,
            &flink,
            &spec.node_address,
            seen.elapsed(),
            spec.session_timeout,
        ),
    )
    .await;
    let took = started.elapsed();
    let text;
    let outcome = match &result {
        Ok(Ok(Release::Released { session, nodes })) => HandOver::Released {
            session: *session,
            nodes: *nodes,
        },
        Ok(Ok(Release::Skipped(why))) => {
            text = why.to_string();
            HandOver::Skipped(&text)
        }
        Ok(Err(e)) => {
            text = e.to_string();
            HandOver::Failed(&text)
        }
        Err(_) => HandOver::Failed("not done within half a session timeout of the crash"),
    };
    JobManagerHandOver { outcome, took }.emit();
}

#[allow(clippy::too_many_arguments)]
async fn poll(
    spec: &CoordinationSpec,
    client: &zk::Client,
    root: &str,
    persistent: &zk::CreateOptions<'_>,
    ephemeral: &zk::CreateOptions<'_>,
    registered: &mut bool,
    published: &mut Option<NodeInfo>,
    info: &mut watch::Receiver<NodeInfo>,
) -> Result<Coordination, zk::Error> {
    let me = client.session_id().0;
    client.mkdir(&format!("{root}/nodes"), persistent).await?;
    let incarnation = incarnation(client, root, persistent).await?;
    let mut problem = None;
    // This node's registration, and its data whenever the node's processes change.
    let path = format!("{root}/nodes/{}", spec.node_id);
    let local = info.borrow_and_update().clone();
    if !*registered {
        match client.get_data(&path).await {
            Ok((data, stat)) => {
                let theirs: NodeInfo = serde_json::from_slice(&data).unwrap_or_default();
                if theirs.address != spec.node_address {
                    problem = Some(format!(
                        "node.id: `{}` is also the id of the node at {}; give every node of the cluster its own node.id",
                        spec.node_id, theirs.address
                    ));
                } else if stat.ephemeral_owner != me {
                    // Left by this node's previous agent, whose session has not expired yet.
                    client.delete(&path, None).await.or_else(gone_ok)?;
                }
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        if problem.is_none() {
            let data = serde_json::to_vec(&local).unwrap_or_default();
            match client.create(&path, &data, ephemeral).await {
                Ok(_) => {
                    *registered = true;
                    *published = Some(local.clone());
                }
                Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
    } else if published.as_ref() != Some(&local) {
        let data = serde_json::to_vec(&local).unwrap_or_default();
        client.set_data(&path, &data, None).await?;
        *published = Some(local);
    }
    // The owner.
    let owner_path = format!("{root}/owner");
    if problem.is_none() {
        match client.create(&owner_path, spec.node_id.as_bytes(), ephemeral).await {
            Ok(_) => log::info!("this agent is the owner: it copies checkpoints to the object store and submits jobs Flink's HA does not know"),
            Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    let (owner, is_owner) = match client.get_data(&owner_path).await {
        Ok((data, stat)) => (
            Some(String::from_utf8_lossy(&data).into_owned()),
            stat.ephemeral_owner == me,
        ),
        Err(zk::Error::NoNode) => (None, false),
        Err(e) => return Err(e),
    };
    // Everyone's registrations.
    let mut nodes = BTreeMap::new();
    for id in client.list_children(&format!("{root}/nodes")).await? {
        if let Ok((data, _)) = client.get_data(&format!("{root}/nodes/{id}")).await {
            nodes.insert(id, serde_json::from_slice(&data).unwrap_or_default());
        }
    }
    // The leading JobManager.
    let flink = spec.flink_path(&incarnation);
    let leader = match client.get_data(&leader::rest_leader_path(&flink)).await {
        Ok((data, _)) => leader::parse_address(&data),
        Err(zk::Error::NoNode) => None,
        Err(e) => return Err(e),
    };
    Ok(Coordination {
        connected: true,
        incarnation: Some(incarnation),
        is_owner,
        owner,
        leader,
        nodes,
        problem,
    })
}

/// The cluster's incarnation, created if the ensemble has none yet (the first agent wins; the
/// others read its value).
async fn incarnation(
    client: &zk::Client,
    root: &str,
    persistent: &zk::CreateOptions<'_>,
) -> Result<String, zk::Error> {
    let path = format!("{root}/incarnation");
    match client.get_data(&path).await {
        Ok((data, _)) => return Ok(String::from_utf8_lossy(&data).into_owned()),
        Err(zk::Error::NoNode) => {}
        Err(e) => return Err(e),
    }
    let fresh = new_incarnation();
    match client.create(&path, fresh.as_bytes(), persistent).await {
        Ok(_) => {
            log::info!("a new cluster: incarnation {fresh}");
            Ok(fresh)
        }
        Err(zk::Error::NodeExists) => {
            Ok(String::from_utf8_lossy(&client.get_data(&path).await?.0).into_owned())
        }
        Err(e) => Err(e),
    }
}

/// 48 random bits in hex: unique among the incarnations of one cluster id.
fn new_incarnation() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 6];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No urandom: the clock and the pid still differ between two creations.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mixed = now ^ (u128::from(std::process::id()) << 64);
        bytes.copy_from_slice(&mixed.to_le_bytes()[..6]);
    }
    hex::encode(bytes)
}

fn gone_ok(e: zk::Error) -> Result<(), zk::Error> {
    match e {
        zk::Error::NoNode => Ok(()),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flink_cluster_id_names_the_incarnation() {
        assert_eq!(
            flink_cluster_id("prod", "3f2a9c1d0b7e"),
            "/prod-3f2a9c1d0b7e"
        );
        let a = new_incarnation();
        assert_eq!(a.len(), 12);
        assert_ne!(a, new_incarnation());
    }
}
