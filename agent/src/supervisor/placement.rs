//! Where a Flink process lives, so that it outlives the agent.
//!
//! The agent may restart at any moment (upgrade, `systemctl restart`, watchdog abort, crash) and
//! Flink must not notice. So no Flink process may be in the agent's kill scope:
//!
//! - **Session** (always): each process leads a new session and process group (`setsid`), so a
//!   terminal's Ctrl-C, a signal to the agent's group, or the agent's death reaches none of them.
//! - **Scope** (when systemd runs the agent): the process also gets a transient scope unit of its
//!   own in `flink.slice` (`systemd-run --scope`), outside the agent's cgroup, so stopping or
//!   restarting `flink-agent.service` (whatever its `KillMode=`) leaves it running. Its output
//!   goes straight to the journal through `systemd-cat` (identifier `flink-jobmanager` /
//!   `flink-taskmanager`), so it outlives the agent too; a pipe to the agent would break with it.
//!
//! Outside systemd (the demo, tests) the output goes to `<flink.log_dir>/<process>.out`, truncated
//! at each launch as Flink's own daemon scripts do (Flink's rotated log file is beside it).
//!
//! Either way the process stays the agent's child while the agent lives (every step of the
//! chain `exec`s), so its exit status is seen; a later agent adopts it (see `adopt`).

use super::Kind;
use std::path::Path;

/// The slice every Flink scope is placed in: `systemctl stop flink.slice` stops all of Flink on
/// the node, with or without an agent (package removal uses it as a safety net).
pub const SLICE: &str = "flink.slice";

/// How processes are placed on this machine; decided once at agent start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A new session only.
    Session,
    /// A new session in a transient systemd scope, output to the journal.
    Scope,
}

impl Placement {
    /// `Scope` when systemd started the agent as a service on a systemd machine and
    /// `systemd-run` can create a scope here (checked once with a no-op), else `Session`.
    pub async fn detect() -> Placement {
        let under_systemd = std::env::var_os("INVOCATION_ID").is_some()
            && Path::new("/run/systemd/system").is_dir();
        if !under_systemd {
            return Placement::Session;
        }
        let probe = tokio::process::Command::new("systemd-run")
            .args(["--scope", "--quiet", "--collect", "--slice", SLICE, "--"])
            .arg("true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .output()
            .await;
        match probe {
            Ok(out) if out.status.success() => Placement::Scope,
            Ok(out) => {
                log::error!(
                    "systemd-run cannot create a scope here ({}): Flink processes stay in the agent's unit, so stopping or restarting flink-agent.service stops them too",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                Placement::Session
            }
            Err(e) => {
                log::error!(
                    "cannot run systemd-run ({e}): Flink processes stay in the agent's unit, so stopping or restarting flink-agent.service stops them too"
                );
                Placement::Session
            }
        }
    }

    /// The commands that go before the program: for a scope, `systemd-run` (which switches to
    /// `user` itself, since it must talk to systemd as root) and `systemd-cat`.
    /// `launch` numbers the scope unit: names must be unique while an old scope is collected.
    pub fn prefix(self, kind: Kind, launch: u64, user: Option<&str>) -> Vec<String> {
        match self {
            Placement::Session => Vec::new(),
            Placement::Scope => {
                let mut argv = vec![
                    "systemd-run".to_string(),
                    "--scope".into(),
                    "--quiet".into(),
                    "--collect".into(),
                    format!("--unit=flink-{}-{launch}", kind.name()),
                    format!("--slice={SLICE}"),
                    format!("--description=Apache Flink {} (flink-agent)", kind.title()),
                ];
                if let Some(user) = user {
                    argv.push(format!("--uid={user}"));
                    argv.push(format!("--gid={user}"));
                }
                argv.extend([
                    "--".into(),
                    "systemd-cat".into(),
                    format!("--identifier=flink-{}", kind.name()),
                    "--stderr-priority=warning".into(),
                    "--level-prefix=false".into(),
                    "--".into(),
                ]);
                argv
            }
        }
    }

    /// Whether the agent must switch to the Flink user itself (before exec) rather than leave it
    /// to `systemd-run`.
    pub fn agent_switches_user(self) -> bool {
        self == Placement::Session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_runs_as_the_flink_user_with_its_output_in_the_journal() {
        let argv = Placement::Scope.prefix(Kind::TaskManager, 7, Some("flink"));
        let text = argv.join(" ");
        assert!(
            text.starts_with("systemd-run --scope --quiet --collect --unit=flink-taskmanager-7 --slice=flink.slice"),
            "{text}"
        );
        assert!(text.contains("--uid=flink --gid=flink"), "{text}");
        assert!(
            text.ends_with("-- systemd-cat --identifier=flink-taskmanager --stderr-priority=warning --level-prefix=false --"),
            "{text}"
        );
        assert!(!Placement::Scope.agent_switches_user());
    }

    #[test]
    fn a_session_needs_no_prefix() {
        assert!(Placement::Session
            .prefix(Kind::JobManager, 1, Some("flink"))
            .is_empty());
        assert!(Placement::Session.agent_switches_user());
    }
}
