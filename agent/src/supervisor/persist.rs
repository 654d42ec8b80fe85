//! The supervisor's memory across agent restarts: `<agent.state_dir>/supervisor.json`.
//!
//! It records, for each process, who it is for the kernel and what it was launched with, plus
//! the counters that must not repeat (JobManager generation, launch numbers, the TaskManager's
//! resource id). Written atomically (write, fsync, rename) before a launched process is let
//! through its gate and after every exit, so the file always names every Flink process that may
//! be running. Mode 0600: it holds no secret (values are hashed) but is nobody else's business.

use super::fingerprint::Fingerprint;
use crate::procfs::ProcessIdentity;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// JobManager launches so far; resubmission and status count per generation.
    pub generation: u64,
    /// Launches of either process so far (numbers scope units and TaskManager resource ids).
    pub launches: u64,
    pub jobmanager: Option<Record>,
    pub taskmanager: Option<Record>,
    /// Three-node clusters: the node's ZooKeeper server.
    #[serde(default)]
    pub zookeeper: Option<Record>,
}

/// One process an agent started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub identity: ProcessIdentity,
    /// Started from a learned JVM command.
    pub direct: bool,
    pub fingerprint: Fingerprint,
    /// The TaskManager's `taskmanager.resource-id`: health means *this* one is registered.
    #[serde(default)]
    pub resource_id: Option<String>,
}

/// Where the state lives and how it is read and written.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("supervisor.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last state written, or an empty one (first start). An unreadable file is reported
    /// and treated as empty: every stray Flink process is then found by its command line.
    pub fn load(&self) -> Persisted {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::error!(
                    "{} is not valid ({e}); adopting nothing from it",
                    self.path.display()
                );
                Persisted::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => {
                log::error!(
                    "cannot read {} ({e}); adopting nothing from it",
                    self.path.display()
                );
                Persisted::default()
            }
        }
    }

    pub fn save(&self, state: &Persisted) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        crate::fsutil::write_atomic(&self.path, &json, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_round_trip_and_a_missing_or_broken_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        assert_eq!(file.load(), Persisted::default());
        let state = Persisted {
            generation: 3,
            launches: 7,
            jobmanager: Some(Record {
                identity: ProcessIdentity {
                    pid: 42,
                    boot_id: "b".into(),
                    start_ticks: 99,
                },
                direct: true,
                fingerprint: Fingerprint::new(&[b"x"], "config.yaml", []),
                resource_id: None,
            }),
            taskmanager: None,
            zookeeper: None,
        };
        file.save(&state).expect("save");
        assert_eq!(file.load(), state);
        std::fs::write(file.path(), b"{not json").expect("corrupt");
        assert_eq!(file.load(), Persisted::default());
    }
}
