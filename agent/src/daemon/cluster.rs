//! The three-node side of the daemon: the agent's ZooKeeper session (a concern: a reload that
//! changes its settings opens a new session), and what it feeds — the supervisor's wait for
//! the cluster's incarnation, the checkpoint sync that only the owner runs, the jobs, the
//! node's registration and the cluster view of `status`.

use super::concerns::Concern;
use crate::checkpoints::Sync;
use crate::desired::Desired;
use crate::flinkrest::Endpoint;
use crate::reconcile::Outcome;
use crate::supervisor::ProcessStatus;
use crate::zookeeper::{
    self, ClusterStatus, Coordination, CoordinationSpec, Coordinator, NodeInfo,
};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{watch, Mutex};

/// The session and its readers. Cheap to clone; clones share.
#[derive(Debug, Clone)]
pub(super) struct Cluster {
    /// Where every session publishes: readers subscribe once and survive a new session.
    state: Arc<watch::Sender<Coordination>>,
    info: Arc<watch::Sender<NodeInfo>>,
    /// When this node's JobManager was last seen to crash: the session hands its leadership over.
    crashes: Arc<watch::Sender<Option<Instant>>>,
    coordinator: Arc<Mutex<Option<Coordinator>>>,
    view: watch::Receiver<ClusterStatus>,
}

impl Cluster {
    /// Opens the session and starts what reads it: the incarnation for the supervisor, the
    /// owner role for the checkpoint sync, the cluster view.
    pub(super) fn start(spec: &CoordinationSpec, address: &str, endpoint: Endpoint) -> Cluster {
        let state = Arc::new(watch::channel(Coordination::default()).0);
        let info = Arc::new(
            watch::channel(NodeInfo {
                address: address.to_string(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                processes: Default::default(),
            })
            .0,
        );
        let crashes = Arc::new(watch::channel(None).0);
        let coordinator = Coordinator::spawn(
            spec.clone(),
            info.subscribe(),
            crashes.subscribe(),
            state.clone(),
        );
        let view = zookeeper::cluster::spawn_view(
            spec.ensemble.clone(),
            spec.cluster_id.clone(),
            state.subscribe(),
            endpoint,
        );
        Cluster {
            state,
            info,
            crashes,
            coordinator: Arc::new(Mutex::new(Some(coordinator))),
            view,
        }
    }

    pub(super) fn coordination(&self) -> watch::Receiver<Coordination> {
        self.state.subscribe()
    }

    /// The incarnation alone, for the supervisor.
    pub(super) fn incarnation(&self) -> watch::Receiver<Option<String>> {
        let mut state = self.state.subscribe();
        let (tx, rx) = watch::channel(state.borrow().incarnation.clone());
        tokio::spawn(async move {
            while state.changed().await.is_ok() {
                let now = state.borrow_and_update().incarnation.clone();
                // Known once, it stays for the agent's life: a session that is down does not
                // make Flink's cluster id unknown.
                if now.is_some() {
                    tx.send_if_modified(|v| std::mem::replace(v, now.clone()) != now);
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        rx
    }

    /// Runs the checkpoint sync while this agent is the owner.
    pub(super) fn drive_sync(&self, sync: Sync) {
        let mut state = self.state.subscribe();
        tokio::spawn(async move {
            loop {
                let owner = state.borrow_and_update().is_owner;
                sync.set_active(owner).await;
                if state.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Tells the other nodes how this node's processes are.
    pub(super) fn publish(&self, processes: &[ProcessStatus]) {
        let processes = processes
            .iter()
            .map(|p| (p.name.clone(), p.state.name().to_string()))
            .collect();
        self.info.send_if_modified(|i| {
            let changed = i.processes != processes;
            i.processes = processes;
            changed
        });
    }

    /// This node's JobManager crashed (not stopped by the agent): if it led, a standby should
    /// lead now.
    pub(super) fn jobmanager_crashed(&self) {
        self.crashes.send_replace(Some(Instant::now()));
    }

    pub(super) fn view(&self) -> ClusterStatus {
        self.view.borrow().clone()
    }

    /// Closes the session (the agent stops): another agent becomes the owner at once.
    pub(super) async fn close(&self) {
        if let Some(c) = self.coordinator.lock().await.take() {
            c.close(&self.state).await;
        }
    }
}

/// The session as a concern: new settings (a node's address, the session timeout) open a new
/// session; readers keep their channels.
pub(super) struct Session {
    pub cluster: Cluster,
    pub running: CoordinationSpec,
}

impl Concern for Session {
    fn name(&self) -> &'static str {
        "zookeeper-session"
    }
    fn reconfigure<'a>(&'a mut self, desired: &'a Desired) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(spec) = desired.coordination.as_ref() else {
                return Outcome::Unchanged;
            };
            if *spec == self.running {
                return Outcome::Unchanged;
            }
            let mut slot = self.cluster.coordinator.lock().await;
            if let Some(old) = slot.take() {
                old.close(&self.cluster.state).await;
            }
            *slot = Some(Coordinator::spawn(
                spec.clone(),
                self.cluster.info.subscribe(),
                self.cluster.crashes.subscribe(),
                self.cluster.state.clone(),
            ));
            self.running = spec.clone();
            Outcome::Applied {
                what: format!(
                    "a new ZooKeeper session with {} as node {}",
                    spec.ensemble.connect_string(),
                    spec.node_id
                ),
            }
        })
    }
}
