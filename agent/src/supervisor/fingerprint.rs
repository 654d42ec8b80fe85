//! What a process was started with, and which processes a new desired state must restart.
//!
//! Every launch records the [`Fingerprint`] of the config it used. Reconciling is then one rule
//! for every occasion: a reload, an agent start that adopts processes an earlier agent started
//! under another config (an upgrade, an edit while the agent was down), an operator restart.
//! A process restarts when its own fingerprint and the desired one differ in a way it reads.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How a process was (or is to be) launched. Values are kept as short hashes: enough to tell
/// what changed, and the agent's state file never holds a secret from Flink's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Hash of how the process is started: distribution, Java, user, conf and log dirs.
    pub launch: String,
    /// The rendered config file's name (`config.yaml` or legacy `flink-conf.yaml`).
    pub file: String,
    /// Each rendered Flink key with a hash of its value.
    pub entries: BTreeMap<String, String>,
    /// Options of one process alone (`jobmanager:<key>`, `taskmanager:<key>`), hashed likewise.
    #[serde(default)]
    pub process: BTreeMap<String, String>,
}

impl Fingerprint {
    /// `launch` are the launch inputs in a fixed order; `entries` the rendered Flink keys.
    pub fn new<'a>(
        launch: &[&[u8]],
        file: &str,
        entries: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        let mut h = Sha256::new();
        for part in launch {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Self {
            launch: hex::encode(&h.finalize()[..12]),
            file: file.to_string(),
            entries: hashed(entries),
            process: BTreeMap::new(),
        }
    }

    /// With the options of one process alone (see `ProcessProperties::entries`).
    pub fn with_process<'a>(
        mut self,
        entries: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        self.process = hashed(entries);
        self
    }
}

fn hashed<'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .map(|(k, v)| (k.clone(), hex::encode(&Sha256::digest(v.as_bytes())[..8])))
        .collect()
}

/// Which Flink processes must restart for a new configuration to take effect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RestartSet {
    pub jobmanager: bool,
    pub taskmanager: bool,
}

impl RestartSet {
    pub const NONE: RestartSet = RestartSet {
        jobmanager: false,
        taskmanager: false,
    };
    pub const BOTH: RestartSet = RestartSet {
        jobmanager: true,
        taskmanager: true,
    };

    pub fn is_empty(self) -> bool {
        !self.jobmanager && !self.taskmanager
    }
}

/// Keys only the TaskManager reads: a change restarts the TaskManager alone.
fn taskmanager_only(key: &str) -> bool {
    key.starts_with("taskmanager.")
        || key == "env.java.opts.taskmanager"
        || key == "env.java.default-opts.taskmanager"
}

/// What going from `old` to `new` restarts. Pure.
///
/// A different launch (distribution, Java, user, dirs) or file layout restarts both. A changed,
/// added or removed key that only the TaskManager reads restarts the TaskManager; any other
/// key restarts both (the supervisor orders that: TaskManager down, JobManager restarted,
/// TaskManager up). No change restarts nothing.
pub fn restart_set(old: &Fingerprint, new: &Fingerprint) -> RestartSet {
    if old.launch != new.launch || old.file != new.file {
        return RestartSet::BOTH;
    }
    let mut set = RestartSet::NONE;
    // A process's own options restart that process alone.
    for key in old.process.keys().chain(new.process.keys()) {
        if old.process.get(key) != new.process.get(key) {
            if key.starts_with("taskmanager:") {
                set.taskmanager = true;
            } else {
                set.jobmanager = true;
            }
        }
    }
    for key in old.entries.keys().chain(new.entries.keys()) {
        if old.entries.get(key) == new.entries.get(key) {
            continue;
        }
        if taskmanager_only(key) {
            set.taskmanager = true;
        } else {
            return RestartSet::BOTH;
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(launch: &str, entries: &[(&str, &str)]) -> Fingerprint {
        let map: BTreeMap<String, String> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Fingerprint::new(&[launch.as_bytes()], "config.yaml", &map)
    }

    #[test]
    fn unchanged_config_restarts_nothing() {
        let a = fp("java17", &[("rest.port", "8081")]);
        assert_eq!(restart_set(&a, &a.clone()), RestartSet::NONE);
    }

    #[test]
    fn taskmanager_keys_restart_only_the_taskmanager() {
        let a = fp("java17", &[("taskmanager.numberOfTaskSlots", "1")]);
        let b = fp("java17", &[("taskmanager.numberOfTaskSlots", "2")]);
        let set = restart_set(&a, &b);
        assert!(set.taskmanager && !set.jobmanager);
    }

    #[test]
    fn other_keys_and_launch_changes_restart_both() {
        let a = fp("java17", &[("rest.port", "8081")]);
        assert_eq!(
            restart_set(&a, &fp("java17", &[("rest.port", "8082")])),
            RestartSet::BOTH
        );
        assert_eq!(
            restart_set(&a, &fp("java17", &[("rest.port", "8081"), ("x", "1")])),
            RestartSet::BOTH
        );
        assert_eq!(
            restart_set(&a, &fp("java21", &[("rest.port", "8081")])),
            RestartSet::BOTH
        );
    }

    #[test]
    fn a_process_s_own_options_restart_that_process_alone() {
        let port = |jm: &str, tm: &str| {
            let props: BTreeMap<String, String> = [
                (
                    "jobmanager:metrics.reporter.prom.port".to_string(),
                    jm.to_string(),
                ),
                (
                    "taskmanager:metrics.reporter.prom.port".to_string(),
                    tm.to_string(),
                ),
            ]
            .into();
            fp("java17", &[]).with_process(&props)
        };
        let a = port("9249", "9250");
        let jm_only = restart_set(&a, &port("9251", "9250"));
        assert!(jm_only.jobmanager && !jm_only.taskmanager);
        let tm_only = restart_set(&a, &port("9249", "9251"));
        assert!(tm_only.taskmanager && !tm_only.jobmanager);
        assert_eq!(restart_set(&a, &fp("java17", &[])), RestartSet::BOTH);
    }

    #[test]
    fn values_are_kept_as_hashes_only() {
        let a = fp("j", &[("s3.secret-key", "hunter2")]);
        let text = serde_json::to_string(&a).expect("serializes");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
