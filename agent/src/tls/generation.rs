//! A generation: the four stores Flink loads, their passwords, and how the agent's own client
//! reaches the REST port. The desired state renders its paths and passwords into Flink's
//! configuration, so a new generation (new file names) changes the processes' fingerprint and
//! the supervisor restarts them; the same generation after an agent restart changes nothing.

use super::cert::CertInfo;
use super::flink::Stores;
use super::keystore::StorePassword;
use super::store::store_paths;
use crate::flinkrest::ClientTls;
use std::path::PathBuf;

/// Shown instead of the passwords where the agent does not read them (`validate`, `render`).
pub const UNREAD_PASSWORD: &str = "<redacted>";

/// What Flink runs with (or is to run with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Digest of its certificates; names its directory. `pending` before the agent first made
    /// one (only `validate` and `render` see that).
    pub id: String,
    pub dir: PathBuf,
    pub passwords: Stores<StorePassword>,
    /// The agent's client: the CAs it verifies the REST port with, and its own certificate.
    pub client: ClientTls,
    /// None for the pending placeholder.
    pub facts: Option<Facts>,
}

/// What a generation holds, for status and `tls show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The rotation step that made it: `initial`, `renew-leaf`, `new-leaf`, `trust-new-ca`,
    /// `leaf-under-new-ca`, `drop-old-ca`, `rest-material`.
    pub step: String,
    /// The step that follows on its own (a CA rotation under way), if any.
    pub next_step: Option<String>,
    pub node: CertInfo,
    pub trusted: Vec<CertInfo>,
    /// The REST port's own certificate when it is not the node certificate.
    pub rest: Option<CertInfo>,
    pub rest_clients: Vec<CertInfo>,
    /// The agent's own REST client certificate.
    pub agent_client: Option<CertInfo>,
}

impl Generation {
    pub fn store_paths(&self) -> Stores<PathBuf> {
        store_paths(&self.dir)
    }

    /// Before the agent made any material: paths in the state dir, no passwords, no client.
    pub fn pending(tls_dir: &std::path::Path) -> Self {
        let unread = || StorePassword::from_secret(UNREAD_PASSWORD.to_string());
        Generation {
            id: "pending".into(),
            dir: tls_dir.join("gen-pending"),
            passwords: Stores {
                internal_keystore: unread(),
                internal_truststore: unread(),
                rest_keystore: unread(),
                rest_truststore: unread(),
            },
            client: ClientTls::default(),
            facts: None,
        }
    }
}
