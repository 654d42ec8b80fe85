//! ZooKeeper in a three-node cluster: the agents run the ensemble (one server per node, supervised
//! like the JobManager and the TaskManager) and Flink's ZooKeeper HA runs on it.
//!
//! - [`render`]: the server's `zoo.cfg` and `myid`, and the ensemble's addresses (pure);
//! - [`four`]: the four-letter words (`ruok`, `srvr`) that tell whether a server runs and serves;
//! - [`leader`]: reading the leading JobManager's address from Flink's own records;
//! - [`coordination`]: the agent's session: the cluster's incarnation, node registrations, the
//!   owner of the cluster-wide duties;
//! - [`handover`]: a crashed leading JobManager's leadership released at once, not after its
//!   session expires;
//! - [`cluster`]: the whole cluster as `status` shows it.

pub mod cluster;
pub mod coordination;
pub mod four;
pub mod handover;
pub mod leader;
pub mod render;

pub use cluster::{ClusterStatus, NodeStatus};
pub use coordination::{Coordination, CoordinationSpec, Coordinator, NodeInfo};
pub use four::Role;
pub use render::{host_port, Ensemble, ServerSpec};
