//! Which processes a reload must restart: a pure decision over the old and new config.

use crate::config::AgentConfig;
use crate::flinkconf::{self, RenderedConf, RestartSet};

/// Rendered-config changes decide per process (slots → TaskManager only); a change of how Flink
/// is launched (distribution, Java, user, log dir) restarts both, because both processes were
/// started from the old one.
pub fn restart_set(
    old: &AgentConfig,
    old_rendered: &RenderedConf,
    new: &AgentConfig,
    new_rendered: &RenderedConf,
) -> RestartSet {
    let launch_changed = old.flink.home != new.flink.home
        || old.flink.java_home != new.flink.java_home
        || old.flink.user != new.flink.user
        || old.flink.log_dir != new.flink.log_dir;
    if launch_changed {
        RestartSet {
            jobmanager: true,
            taskmanager: true,
        }
    } else {
        flinkconf::affected(old_rendered, new_rendered)
    }
}

/// Settings that only take effect when the agent itself restarts, named for the operator.
pub fn needs_agent_restart(old: &AgentConfig, new: &AgentConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.agent.socket != new.agent.socket {
        keys.push("agent.socket");
    }
    if old.agent.socket_group != new.agent.socket_group {
        keys.push("agent.socket_group");
    }
    if old.agent.state_dir != new.agent.state_dir {
        keys.push("agent.state_dir");
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flinkconf::{render, FlinkVersion};

    const V2: FlinkVersion = FlinkVersion::new(2, 3, 0);

    fn both(c: &AgentConfig, d: &AgentConfig) -> RestartSet {
        restart_set(c, &render(c, V2), d, &render(d, V2))
    }

    #[test]
    fn unchanged_config_restarts_nothing() {
        let c = AgentConfig::default();
        let set = both(&c, &c.clone());
        assert!(!set.jobmanager && !set.taskmanager);
    }

    #[test]
    fn slots_restart_only_the_taskmanager() {
        let c = AgentConfig::default();
        let mut d = c.clone();
        d.advanced.number_of_task_slots = 2;
        let set = both(&c, &d);
        assert!(set.taskmanager && !set.jobmanager);
    }

    #[test]
    fn a_new_java_restarts_both() {
        let c = AgentConfig::default();
        let mut d = c.clone();
        d.flink.java_home = "/opt/java21".into();
        let set = both(&c, &d);
        assert!(set.taskmanager && set.jobmanager);
    }

    #[test]
    fn socket_moves_wait_for_an_agent_restart() {
        let c = AgentConfig::default();
        let mut d = c.clone();
        d.agent.socket = "/run/other.sock".into();
        assert_eq!(needs_agent_restart(&c, &d), vec!["agent.socket"]);
    }
}
