//! The supervisor's memory across agent restarts: `<agent.state_dir>/supervisor.json`.
//!
//! It records, for each process, who it is for the kernel and what it was launched with, plus
//! the counters that must not repeat (JobManager generation, launch numbers, the TaskManager's
//! resource id). Written atomically (write, fsync, rename) before a launched process is let
//! through its gate and after every exit, so the file always names every Flink process that may
//! be running. It also keeps each process's failure budget ([`Budget`]), so a restarted agent
//! goes on where the last one stopped. Mode 0600: it holds no secret (values are hashed) but is
//! nobody else's business.

use super::fingerprint::Fingerprint;
use super::policy::History;
use crate::procfs::ProcessIdentity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Each process's failure budget, by process name (files of earlier versions have none).
    #[serde(default)]
    pub budgets: Option<Budgets>,
}

/// The failure budgets as they stood, on the clock of one boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    /// The boot the times are of: `CLOCK_MONOTONIC` starts again at every boot, and a reboot
    /// drops the failures (the restart counts stay).
    pub boot_id: String,
    pub processes: BTreeMap<String, Budget>,
}

/// One process's [`History`], its failures as `CLOCK_MONOTONIC` milliseconds: the clock
/// `Instant` reads on Linux, which no wall-clock step moves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub failures_ms: Vec<u64>,
    pub consecutive: u32,
    pub restarts: u32,
    pub last_exit: Option<String>,
    /// What the process last ran with: a config changed while no agent ran gives a parked
    /// process a new try, as a reload does.
    pub fingerprint: Option<Fingerprint>,
}

impl Budget {
    /// `history` as of `clock_ms` (now on `CLOCK_MONOTONIC`).
    pub fn of(history: History, fingerprint: Option<Fingerprint>, clock_ms: u64) -> Self {
        let failures_ms = history
            .failure_ages
            .iter()
            .map(|age| clock_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
            .collect();
        Budget {
            failures_ms,
            consecutive: history.consecutive,
            restarts: history.restarts,
            last_exit: history.last_exit,
            fingerprint,
        }
    }

    /// The history as of `clock_ms`; `same_boot` false keeps only the restart count and the
    /// last exit.
    pub fn history(&self, clock_ms: u64, same_boot: bool) -> History {
        let failure_ages = if same_boot {
            self.failures_ms
                .iter()
                .map(|t| Duration::from_millis(clock_ms.saturating_sub(*t)))
                .collect()
        } else {
            Vec::new()
        };
        History {
            failure_ages,
            consecutive: if same_boot { self.consecutive } else { 0 },
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
        }
    }
}

/// Now on `CLOCK_MONOTONIC`, in milliseconds (0 if the clock cannot be read, which Linux does
/// not do).
pub fn clock_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        let ms = Duration::from(t).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    })
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
            budgets: Some(Budgets {
                boot_id: "b".into(),
                processes: [("jobmanager".to_string(), Budget::default())].into(),
            }),
        };
        file.save(&state).expect("save");
        assert_eq!(file.load(), state);
        std::fs::write(file.path(), b"{not json").expect("corrupt");
        assert_eq!(file.load(), Persisted::default());
    }

    /// A file written by an agent before budgets were kept still loads, with none.
    #[test]
    fn a_file_without_budgets_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        std::fs::write(
            file.path(),
            br#"{"generation": 2, "launches": 4, "jobmanager": null, "taskmanager": null}"#,
        )
        .expect("write");
        let state = file.load();
        assert_eq!((state.generation, state.budgets), (2, None));
    }

    #[test]
    fn a_budget_keeps_the_ages_of_failures_on_its_boot_and_only_the_counts_after_a_reboot() {
        let history = History {
            failure_ages: vec![Duration::from_secs(30), Duration::from_millis(1500)],
            consecutive: 2,
            restarts: 7,
            last_exit: Some("killed by signal 9".into()),
        };
        let budget = Budget::of(history.clone(), None, 100_000);
        assert_eq!(budget.failures_ms, vec![70_000, 98_500]);
        // 20 s later, read by the next agent.
        let later = budget.history(120_000, true);
        assert_eq!(
            later.failure_ages,
            vec![Duration::from_secs(50), Duration::from_millis(21_500)]
        );
        assert_eq!((later.consecutive, later.restarts), (2, 7));
        let rebooted = budget.history(5_000, false);
        assert_eq!(
            rebooted,
            History {
                failure_ages: Vec::new(),
                consecutive: 0,
                restarts: 7,
                last_exit: Some("killed by signal 9".into()),
            }
        );
        assert!(clock_ms() > 0);
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
