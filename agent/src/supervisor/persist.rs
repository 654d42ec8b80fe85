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
    /// The conf dir it was started with (its command line names it): how a later agent, whose
    /// state dir may have moved, still recognises it.
    #[serde(default)]
    pub conf_dir: std::path::PathBuf,
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
    /// A second copy in the state dir the next agent will use (`agent.state_dir` was changed
    /// by a reload): that agent finds and adopts the processes this one runs.
    mirror: Option<PathBuf>,
}

const FILE: &str = "supervisor.json";

impl StateFile {
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(FILE),
            mirror: None,
        }
    }

    /// Also keeps a copy in `state_dir` (None: no copy).
    pub fn mirror_to(&mut self, state_dir: Option<&Path>) {
        self.mirror = state_dir.map(|d| d.join(FILE)).filter(|m| *m != self.path);
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
        crate::fsutil::write_atomic(&self.path, &json, 0o600)?;
        if let Some(mirror) = &self.mirror {
            // The copy only spares the next agent a restart of Flink: not worth failing for.
            if let Err(e) = crate::fsutil::write_atomic(mirror, &json, 0o600) {
                log::warn!("cannot write {}: {e}; the agent started on the new state dir will restart Flink instead of adopting it", mirror.display());
            }
        }
        Ok(())
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
                conf_dir: "/var/lib/flink-agent/flink-conf".into(),
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

    #[test]
    fn a_mirror_gets_every_save_until_it_is_dropped() {
        let (here, there) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let mut file = StateFile::in_dir(here.path());
        file.mirror_to(Some(there.path()));
        let state = Persisted {
            generation: 1,
            ..Persisted::default()
        };
        file.save(&state).expect("save");
        assert_eq!(StateFile::in_dir(there.path()).load(), state);
        file.mirror_to(None);
        file.save(&Persisted::default()).expect("save");
        assert_eq!(
            StateFile::in_dir(there.path()).load(),
            state,
            "no longer mirrored"
        );
    }
}
