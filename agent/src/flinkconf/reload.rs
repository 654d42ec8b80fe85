//! What a reload means for the running processes, and what `GET /v1/config` may show.

use super::render::RenderedConf;
use std::collections::BTreeMap;

/// Which Flink processes must restart for a new configuration to take effect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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

    /// The supervisor's target for this set (None when nothing restarts).
    pub fn target(self) -> Option<crate::supervisor::Target> {
        use crate::supervisor::Target;
        match (self.jobmanager, self.taskmanager) {
            (true, true) => Some(Target::All),
            (true, false) => Some(Target::JobManager),
            (false, true) => Some(Target::TaskManager),
            (false, false) => None,
        }
    }
}

/// Keys only the TaskManager reads: a change restarts the TaskManager alone.
fn taskmanager_only(key: &str) -> bool {
    key.starts_with("taskmanager.")
        || key == "env.java.opts.taskmanager"
        || key == "env.java.default-opts.taskmanager"
}

/// Which processes must restart when the rendered config goes from `old` to `new`. Pure.
///
/// A changed, added or removed key that only the TaskManager reads (`taskmanager.*`,
/// `env.java.opts.taskmanager`) restarts the TaskManager; any other change restarts both (the
/// supervisor orders that: stop TaskManager, restart JobManager, start TaskManager). A change of
/// file layout (Flink upgrade) restarts both. No change restarts nothing.
pub fn affected(old: &RenderedConf, new: &RenderedConf) -> RestartSet {
    if old.file_name != new.file_name {
        return RestartSet::BOTH;
    }
    let mut set = RestartSet::NONE;
    let keys = old.entries.keys().chain(new.entries.keys());
    for key in keys {
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

/// Placeholder shown instead of a secret value.
pub const REDACTED: &str = "<redacted>";

/// Fragments of keys whose values are secret: Flink's own list
/// (`GlobalConfiguration.SENSITIVE_KEYS` in Flink 2.x) plus credentials and private keys.
const SENSITIVE_FRAGMENTS: &[&str] = &[
    "password",
    "secret",
    "fs.azure.account.key",
    "apikey",
    "api-key",
    "auth-params",
    "service-key",
    "token",
    "basic-auth",
    "jaas.config",
    "http-headers",
    "credential",
    "private-key",
];

/// Whether `key`'s value must not be shown.
pub fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with(".key") || SENSITIVE_FRAGMENTS.iter().any(|f| k.contains(f))
}

/// The entries with secret values replaced by `"<redacted>"`, for `GET /v1/config`.
pub fn redacted(entries: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| {
            let v = if is_sensitive(k) {
                REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use crate::flinkconf::{render, FlinkVersion};

    fn r(cfg: &AgentConfig) -> RenderedConf {
        render(cfg, FlinkVersion::new(2, 3, 0))
    }

    #[test]
    fn no_change_restarts_nothing() {
        let c = AgentConfig::default();
        assert_eq!(affected(&r(&c), &r(&c)), RestartSet::NONE);
        assert_eq!(RestartSet::NONE.target(), None);
    }

    #[test]
    fn slot_change_restarts_only_the_taskmanager() {
        let a = AgentConfig::default();
        let mut b = a.clone();
        b.advanced.number_of_task_slots = 2;
        let set = affected(&r(&a), &r(&b));
        assert_eq!(
            set,
            RestartSet {
                jobmanager: false,
                taskmanager: true
            }
        );
        assert_eq!(set.target(), Some(crate::supervisor::Target::TaskManager));
    }

    #[test]
    fn taskmanager_jvm_options_restart_only_the_taskmanager() {
        let a = AgentConfig::default();
        let mut b = a.clone();
        b.advanced
            .flink_config
            .insert("env.java.opts.taskmanager".into(), "-XX:+UseG1GC".into());
        assert_eq!(
            affected(&r(&a), &r(&b)).target(),
            Some(crate::supervisor::Target::TaskManager)
        );
    }

    #[test]
    fn shared_keys_restart_both() {
        let a = AgentConfig::default();
        let mut b = a.clone();
        b.advanced.checkpoint_interval_ms = 5_000;
        assert_eq!(affected(&r(&a), &r(&b)), RestartSet::BOTH);
        let mut c = a.clone();
        c.advanced.number_of_task_slots = 4;
        c.advanced.default_parallelism = 4;
        assert_eq!(affected(&r(&a), &r(&c)), RestartSet::BOTH);
        // A removed pass-through key counts as a change.
        let mut d = a.clone();
        d.advanced
            .flink_config
            .insert("pipeline.object-reuse".into(), "true".into());
        assert_eq!(affected(&r(&d), &r(&a)), RestartSet::BOTH);
    }

    #[test]
    fn layout_change_restarts_both() {
        let c = AgentConfig::default();
        let old = render(&c, FlinkVersion::new(1, 18, 1));
        assert_eq!(affected(&old, &r(&c)), RestartSet::BOTH);
    }

    #[test]
    fn redacts_secret_looking_keys_only() {
        let mut e = BTreeMap::new();
        for k in [
            "s3.secret-key",
            "s3.access-key",
            "security.ssl.rest.keystore-password",
            "security.ssl.internal.truststore-password",
            "fs.azure.account.key.acct.blob.core.windows.net",
            "metrics.reporter.dd.apikey",
            "security.ssl.internal.key",
            "gs.auth.service.account.json.credentials",
            "kafka.sasl.jaas.config",
            "rest.auth.token",
            "taskmanager.numberOfTaskSlots",
            "security.ssl.rest.keystore",
        ] {
            e.insert(k.to_string(), "v".to_string());
        }
        let red = redacted(&e);
        let shown: Vec<&str> = red
            .iter()
            .filter(|(_, v)| v.as_str() == "v")
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            shown,
            vec![
                "s3.access-key",
                "security.ssl.rest.keystore",
                "taskmanager.numberOfTaskSlots"
            ]
        );
        assert_eq!(red["s3.secret-key"], REDACTED);
    }
}
