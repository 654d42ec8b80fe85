//! The command line: the daemon (`run`) and a thin client of its Unix-socket API, plus the few
//! commands that act on a config file directly (`validate`, `render`, `plan`, `firewall`,
//! `restore`). `--config`, `--socket` and `--json` are global: accepted before or after any
//! subcommand, and `--json` makes every command print JSON (errors too: `{"error": ...}`).

mod commands;
mod exit;
mod generate;
mod output;
mod progress;

pub use exit::Exit;

use clap::{Parser, Subcommand};
use flink_agent::api::client::Client;
use flink_agent::config;
use flink_agent::supervisor::Target;
use std::path::PathBuf;

/// Where packages install the configuration.
pub const DEFAULT_CONFIG: &str = "/etc/flink-agent/agent.toml";

/// The exit code table, as `--help` and the man page show it.
const EXIT_CODES: &str = "Exit codes: 0 done, 1 refused or failed, 2 usage, 3 no agent running, \
4 not ready (status), 5 firewall differs (firewall show), 75 no answer in time (try again), \
78 invalid configuration.";

#[derive(Parser, Debug)]
#[command(
    name = "flink-agent",
    version,
    about = "Node agent for a managed Apache Flink service",
    long_about = "Node agent for a managed Apache Flink service: renders Flink's configuration, \
                  supervises the local JobManager and TaskManager, keeps checkpoints durable in \
                  object storage, owns the node's nftables table and exposes Prometheus metrics. \
                  `run` is the daemon; the other commands talk to it over its Unix socket or act \
                  on a configuration file.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Agent configuration file (also where client commands find the socket).
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The agent's API socket (default: agent.socket of --config, else
    /// /run/flink-agent/agent.sock).
    #[arg(long, global = true, env = "FLINK_AGENT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of lines for people (every command; errors as {"error": ...}).
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up waiting for the agent after this many seconds (exit 75); by default each
    /// request waits a little longer than the agent's own bound for it.
    #[arg(long, global = true, value_name = "SECS")]
    pub timeout: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent: render Flink's config, supervise JobManager and TaskManager, serve the API.
    /// SIGTERM stops the agent and leaves Flink running (the next agent adopts it); SIGINT
    /// (Ctrl-C) stops Flink too.
    Run,
    /// Check a configuration file; prints every problem and exits 78 if there is any.
    Validate,
    /// Print the Flink configuration the agent would write for a configuration file.
    Render,
    /// Show the VM plan the config resolves to ("auto" read from this machine) and how its
    /// memory is split between the OS, the JobManager and the TaskManager.
    Plan,
    /// Show the node: a verdict, the web UI, what to do when something is wrong, then
    /// processes, Flink's figures, jobs, checkpoints, firewall.
    Status {
        /// Show it again every 2 seconds until interrupted.
        #[arg(long, short)]
        watch: bool,
    },
    /// Re-read the configuration (like SIGHUP); prints what each concern did.
    Reload,
    /// Restart a Flink process (or, on a three-node cluster, the node's ZooKeeper server) and
    /// reset its failure budget.
    Restart {
        #[arg(value_enum)]
        process: ProcessArg,
    },
    /// Stop Flink on this node (TaskManager, then JobManager), then the agent. Under systemd the
    /// unit then stays stopped until `systemctl start flink-agent`.
    Shutdown,
    /// Print the rendered Flink configuration in force (secrets redacted).
    Config,
    /// Show where each declared job would be restored from (the agent restores by itself
    /// after every JobManager start; this only plans).
    Restore {
        /// Required: only show the plan.
        #[arg(long)]
        dry_run: bool,
    },
    /// Declared jobs: list them (default), or deploy, stop, start, delete one.
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
    },
    /// The node's nftables firewall, from a config file, acting directly (needs root).
    Firewall {
        #[command(subcommand)]
        action: FirewallAction,
    },
    /// TLS: the certificates in force, and REST client certificates for operators.
    Tls {
        #[command(subcommand)]
        action: TlsAction,
    },
    /// Write man pages or print shell completions (used by the packages).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: generate::What,
    },
}

#[derive(Subcommand, Debug)]
pub enum TlsAction {
    /// The certificates in force (names, fingerprints, end dates), the rotation under way and
    /// any alert.
    Show,
    /// Issue a REST client certificate for an operator (curl --cert, a browser) from this node's
    /// REST client CA, acting directly on the state dir (needs root). Writes NAME.pem, NAME.key,
    /// NAME.p12 (+ NAME.p12.password) and flink-ca.pem (the REST port's CA) into --out.
    ClientCert {
        /// Common name of the certificate, and the files' name: letters, digits, '.', '-', '_'.
        name: String,
        /// Directory to write the files into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 90)]
        days: u32,
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
    Show,
    /// Apply the config's rules now, in one atomic transaction.
    Apply,
    /// Delete the agent's table, and only it. A running agent with the firewall enabled
    /// restores it; set firewall.enabled = false and reload to turn the firewall off.
    Remove,
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

/// The global options every command sees.
#[derive(Debug, Clone)]
pub struct Globals {
    pub config: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub json: bool,
    pub timeout: Option<std::time::Duration>,
}

impl Globals {
    /// `--config`, else the packaged default.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// A client of `--socket`, else the config's `agent.socket`, else the packaged default;
    /// it waits `--timeout`, else `default` (None: the client's own default).
    pub fn client(&self, default: Option<std::time::Duration>) -> anyhow::Result<Client> {
        let client = self.socket_client()?;
        Ok(match self.timeout.or(default) {
            Some(wait) => client.with_timeout(wait),
            None => client,
        })
    }

    fn socket_client(&self) -> anyhow::Result<Client> {
        use anyhow::Context;
        if let Some(path) = &self.socket {
            return Ok(Client::new(path));
        }
        let config_path = self.config_path();
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

/// Runs the command line; the exit code says how it went (see [`Exit`]).
pub fn main() -> Exit {
    let cli = Cli::parse();
    let globals = Globals {
        config: cli.config,
        socket: cli.socket,
        json: cli.json,
        timeout: cli.timeout.map(std::time::Duration::from_secs),
    };
    match commands::execute(cli.command, &globals) {
        Ok(exit) => exit,
        Err(e) => {
            let exit = Exit::of(&e);
            if globals.json {
                let body = serde_json::json!({ "error": format!("{e:#}"), "exit": exit.code() });
                println!("{body}");
            }
            eprintln!("flink-agent: {e:#}");
            exit
        }
    }
}
