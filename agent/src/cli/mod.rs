//! The command line: the daemon (`run`) and a thin client of its Unix-socket API, plus the few
//! commands that act on a config file directly (`validate`, `render`, `firewall`, `restore`).

mod commands;
mod exit;

pub use exit::Exit;

use clap::{Parser, Subcommand};
use flink_agent::api::client::Client;
use flink_agent::config;
use flink_agent::supervisor::Target;
use std::path::PathBuf;

/// Where packages install the configuration.
pub const DEFAULT_CONFIG: &str = "/etc/flink-agent/agent.toml";

#[derive(Parser, Debug)]
#[command(
    name = "flink-agent",
    version,
    about = "Node agent for a managed Apache Flink service",
    after_help = "Exit codes: 0 done, 1 refused or failed, 2 usage, 3 no agent running, \
                  4 not ready (status), 5 firewall differs (firewall show), 75 no answer in time, \
                  78 invalid configuration."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent: render Flink's config, supervise JobManager and TaskManager, serve the API.
    /// SIGTERM stops the agent and leaves Flink running (the next agent adopts it); SIGINT
    /// (Ctrl-C) stops Flink too.
    Run(ConfigArg),
    /// Check a configuration file; prints every problem and exits 78 if there is any.
    Validate(ConfigArg),
    /// Print the Flink configuration the agent would write for a configuration file.
    Render(ConfigArg),
    /// Show the node: processes, Flink's figures, config revision, last error.
    Status {
        #[command(flatten)]
        at: SocketArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration (like SIGHUP); prints what each concern did.
    Reload {
        #[command(flatten)]
        at: SocketArg,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restart a Flink process (or, on a three-node cluster, the node's ZooKeeper server) and
    /// reset its failure budget.
    Restart {
        #[arg(value_enum)]
        process: ProcessArg,
        #[command(flatten)]
        at: SocketArg,
    },
    /// Stop Flink on this node (TaskManager, then JobManager), then the agent. Under systemd the
    /// unit then stays stopped until `systemctl start flink-agent`.
    Shutdown(SocketArg),
    /// Print the rendered Flink configuration in force (secrets redacted).
    Config(SocketArg),
    /// Show where each declared job would be restored from (the agent restores by itself
    /// after every JobManager start; this only plans).
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// Required: only show the plan.
        #[arg(long)]
        dry_run: bool,
    },
    /// Declared jobs: list them (default), or deploy, stop, start, delete one.
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
        #[command(flatten)]
        at: SocketArg,
        /// Print JSON instead of a table or a sentence.
        #[arg(long)]
        json: bool,
    },
    /// The node's nftables firewall, from a config file, acting directly (needs root).
    Firewall {
        #[command(subcommand)]
        action: FirewallAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobsAction {
    /// Upload a jar to Flink, run it, and record it so it comes back after any restart.
    Deploy {
        name: String,
        #[arg(long)]
        jar: PathBuf,
        #[arg(long)]
        entry_class: Option<String>,
        #[arg(long)]
        parallelism: Option<u32>,
        /// Program arguments, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Stop with a savepoint (falls back to cancel); the job is no longer re-submitted.
    Stop { name: String },
    /// Run a stopped job again: from the savepoint its stop took, else its newest checkpoint.
    Start { name: String },
    /// Forget the job: cancel it, remove its records and its checkpoints in object storage.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum FirewallAction {
    /// Compare the live table with the config's rules; exits 5 when they differ.
    Show {
        #[command(flatten)]
        arg: ConfigArg,
        /// Print desired and live rulesets as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the config's rules now, in one atomic transaction.
    Apply(ConfigArg),
    /// Delete the agent's table, and only it. A running agent with the firewall enabled
    /// restores it; set firewall.enabled = false and reload to turn the firewall off.
    Remove(ConfigArg),
}

#[derive(clap::Args, Debug)]
pub struct ConfigArg {
    /// Agent configuration file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct SocketArg {
    /// The agent's API socket (default: from --config, else /run/flink-agent/agent.sock).
    #[arg(long, env = "FLINK_AGENT_SOCKET")]
    socket: Option<PathBuf>,
    /// Read the socket path from this agent configuration.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ProcessArg {
    Jobmanager,
    Taskmanager,
    /// The JobManager and the TaskManager.
    All,
    /// The node's ZooKeeper server (three-node clusters).
    Zookeeper,
}

impl From<ProcessArg> for Target {
    fn from(p: ProcessArg) -> Self {
        match p {
            ProcessArg::Jobmanager => Target::JobManager,
            ProcessArg::Taskmanager => Target::TaskManager,
            ProcessArg::All => Target::All,
            ProcessArg::Zookeeper => Target::ZooKeeper,
        }
    }
}

impl SocketArg {
    /// `--socket`, else the config's `agent.socket`, else the packaged default.
    fn client(&self) -> anyhow::Result<Client> {
        use anyhow::Context;
        if let Some(path) = &self.socket {
            return Ok(Client::new(path));
        }
        let config_path = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let socket = if config_path.exists() {
            config::socket_path(&config_path).with_context(|| {
                format!("reading the socket path from {}", config_path.display())
            })?
        } else {
            config::AgentConfig::default().agent.socket
        };
        Ok(Client::new(&socket))
    }
}

/// Runs a command; the exit code says how it went (see [`Exit`]).
pub fn execute(command: Command) -> anyhow::Result<Exit> {
    commands::execute(command)
}
