//! The CLI's exit codes: one table, no two meanings per code (README, "Exit codes").
//! Scripts branch on these, so a code never changes meaning.

use flink_agent::api::ClientError;
use flink_agent::config::ConfigError;
use std::process::ExitCode;

/// Why the CLI exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok,
    /// The agent (or the system) refused or failed the request; the message says why.
    Failed,
    /// The command line itself is wrong (clap's own code).
    Usage,
    /// No agent answers on the socket (LSB: "program is not running").
    NotRunning,
    /// `status`: the agent answers, but the JobManager and TaskManager are not both healthy.
    NotReady,
    /// `firewall show`: the live table differs from the config's rules.
    Differs,
    /// The agent did not answer in time (sysexits EX_TEMPFAIL: try again).
    Timeout,
    /// The configuration file is invalid (sysexits EX_CONFIG).
    Config,
}

impl Exit {
    pub const TABLE: [Exit; 8] = [
        Exit::Ok,
        Exit::Failed,
        Exit::Usage,
        Exit::NotRunning,
        Exit::NotReady,
        Exit::Differs,
        Exit::Timeout,
        Exit::Config,
    ];

    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::NotRunning => 3,
            Exit::NotReady => 4,
            Exit::Differs => 5,
            Exit::Timeout => 75,
            Exit::Config => 78,
        }
    }

    /// The code for an error that ends a command.
    pub fn of(error: &anyhow::Error) -> Exit {
        for cause in error.chain() {
            if let Some(e) = cause.downcast_ref::<ClientError>() {
                return match e {
                    ClientError::NotRunning { .. } | ClientError::Stale { .. } => Exit::NotRunning,
                    ClientError::Timeout { .. } => Exit::Timeout,
                    ClientError::PermissionDenied { .. }
                    | ClientError::Connect { .. }
                    | ClientError::Transport { .. }
                    | ClientError::Api { .. }
                    | ClientError::Request { .. }
                    | ClientError::UnexpectedBody { .. } => Exit::Failed,
                };
            }
            if cause.downcast_ref::<ConfigError>().is_some() {
                return Exit::Config;
            }
        }
        Exit::Failed
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_meanings_share_a_code_and_usage_is_clap_s() {
        let mut codes: Vec<u8> = Exit::TABLE.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Exit::TABLE.len());
        // clap exits 2 on a usage error; nothing else may.
        assert_eq!(Exit::Usage.code(), 2);
    }

    #[test]
    fn errors_map_to_their_codes() {
        let not_running = anyhow::Error::new(ClientError::NotRunning {
            path: "/run/x.sock".into(),
        })
        .context("asking for status");
        assert_eq!(Exit::of(&not_running), Exit::NotRunning);
        let config = anyhow::Error::new(ConfigError::Syntax {
            path: "agent.toml".into(),
            message: "bad".into(),
        });
        assert_eq!(Exit::of(&config), Exit::Config);
        assert_eq!(Exit::of(&anyhow::anyhow!("other")), Exit::Failed);
    }
}
