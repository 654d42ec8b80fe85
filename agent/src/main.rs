//! `flink-agent`: the daemon (`run`) and a thin CLI over its Unix-socket API.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use flink_agent::api::client::Client;
use flink_agent::supervisor::Target;
use flink_agent::{config, daemon, firewall, flinkconf, logging};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where packages install the configuration.
const DEFAULT_CONFIG: &str = "/etc/flink-agent/agent.toml";

#[derive(Parser, Debug)]
#[command(
    name = "flink-agent",
    version,
    about = "Node agent for a managed Apache Flink service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent: render Flink's config, supervise JobManager and TaskManager, serve the API.
    Run(ConfigArg),
    /// Check a configuration file; prints every problem and exits non-zero if there is any.
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
    /// Re-read the configuration (like SIGHUP); prints what was restarted.
    Reload(SocketArg),
    /// Restart a Flink process and reset its failure budget.
    Restart {
        #[arg(value_enum)]
        process: ProcessArg,
        #[command(flatten)]
        at: SocketArg,
    },
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
    /// Declared jobs: list them (default), or deploy, stop, delete one.
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
        #[command(flatten)]
        at: SocketArg,
        /// Print JSON instead of a table.
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
enum JobsAction {
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
enum FirewallAction {
    /// Compare the live table with the config's rules; exits 1 when they differ.
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
struct ConfigArg {
    /// Agent configuration file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(clap::Args, Debug)]
struct SocketArg {
    /// The agent's API socket (default: from --config, else /run/flink-agent/agent.sock).
    #[arg(long, env = "FLINK_AGENT_SOCKET")]
    socket: Option<PathBuf>,
    /// Read the socket path from this agent configuration.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ProcessArg {
    Jobmanager,
    Taskmanager,
    All,
}

impl From<ProcessArg> for Target {
    fn from(p: ProcessArg) -> Self {
        match p {
            ProcessArg::Jobmanager => Target::JobManager,
            ProcessArg::Taskmanager => Target::TaskManager,
            ProcessArg::All => Target::All,
        }
    }
}

impl SocketArg {
    /// `--socket`, else the config's `agent.socket`, else the packaged default.
    fn client(&self) -> Result<Client> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flink-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(arg) => {
            logging::init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(daemon::run(&arg.config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(arg) => validate(&arg.config),
        Command::Render(arg) => {
            let cfg = config::load(&arg.config)?;
            let version = flinkconf::detect_version(&cfg.flink.home)?;
            let rendered = flinkconf::render(&cfg, version);
            println!(
                "# {} for Flink {version}",
                flinkconf::conf_dir(&cfg).join(rendered.file_name).display()
            );
            print!("{}", rendered.content);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { at, json } => block_on(async {
            let status = at.client()?.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.render_human());
            }
            Ok(if status.ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }),
        Command::Reload(at) => block_on(async {
            let report = at.client()?.reload().await?;
            let restarted = if report.restarted.is_empty() {
                "nothing".to_string()
            } else {
                report.restarted.join(", ")
            };
            println!(
                "configuration revision {} in force; restarted: {restarted}",
                report.revision
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Restart { process, at } => block_on(async {
            at.client()?.restart(process.into()).await?;
            println!("restarted {process:?}");
            Ok(ExitCode::SUCCESS)
        }),
        Command::Jobs { action, at, json } => block_on(async {
            let client = at
                .client()?
                .with_timeout(flink_agent::jobs::OPERATION_TIMEOUT);
            let answer: serde_json::Value = match action {
                None => client.get_json("/v1/jobs").await?,
                Some(JobsAction::Deploy {
                    name,
                    jar,
                    entry_class,
                    parallelism,
                    args,
                }) => {
                    // The agent reads the jar itself: send an absolute path.
                    let jar = std::path::absolute(&jar).unwrap_or(jar);
                    let request = flink_agent::jobs::DeployRequest {
                        name,
                        jar,
                        entry_class,
                        parallelism,
                        args,
                    };
                    client.post_json("/v1/jobs", &request).await?
                }
                Some(JobsAction::Stop { name }) => {
                    client
                        .post_json(&format!("/v1/jobs/{name}/stop"), &serde_json::json!({}))
                        .await?
                }
                Some(JobsAction::Start { name }) => {
                    client
                        .post_json(&format!("/v1/jobs/{name}/start"), &serde_json::json!({}))
                        .await?
                }
                Some(JobsAction::Delete { name }) => {
                    client
                        .post_json(&format!("/v1/jobs/{name}/delete"), &serde_json::json!({}))
                        .await?
                }
            };
            match serde_json::from_value::<Vec<flink_agent::jobs::JobStatus>>(answer.clone()) {
                Ok(list) if !json && list.is_empty() => println!("{}", flink_agent::jobs::NO_JOBS),
                Ok(list) if !json => print!("{}", flink_agent::jobs::render_human(&list, None)),
                _ => println!("{}", serde_json::to_string_pretty(&answer)?),
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Restore { config, dry_run } => {
            anyhow::ensure!(
                dry_run,
                "the agent restores declared jobs by itself after every JobManager start; \
                 `restore --dry-run` shows what it would do"
            );
            block_on(restore_plan(&config.config))
        }
        Command::Firewall { action } => firewall_command(action),
        Command::Config(at) => block_on(async {
            let value = at.client()?.config().await?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }),
    }
}

async fn restore_plan(path: &Path) -> Result<ExitCode> {
    use flink_agent::jobs::{Jobs, JobsRest, PlannedRestore, RestoreChoice};
    let cfg = config::load_unchecked(path)?;
    let remote = flink_agent::checkpoints::Remote::build(&cfg.object_store, &cfg.cluster.id)?;
    remote.probe().await?;
    let rest = JobsRest::new(&format!("http://{}:{}", cfg.node.address, cfg.ports.rest))?;
    let jobs = Jobs::new(
        &cfg.agent.state_dir,
        &cfg.flink.data_dir,
        remote,
        rest,
        Default::default(),
    );
    let plan = jobs.plan().await?;
    if plan.is_empty() {
        println!("no declared jobs locally or in {}", cfg.object_store.url);
    }
    for PlannedRestore {
        name,
        stopped,
        choice,
    } in plan
    {
        let what = match choice {
            RestoreChoice::Local(id) => format!("local checkpoint {id}"),
            RestoreChoice::Remote(id) => format!(
                "checkpoint {id} from {} (verified first; an older one if it is corrupt)",
                cfg.object_store.url
            ),
            RestoreChoice::Fresh => "no checkpoint: starts fresh".to_string(),
        };
        if stopped {
            println!("{name}: stopped, stays stopped; `flink-agent jobs start {name}` would run it from its savepoint if present here, else {what}");
        } else {
            println!("{name}: {what}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn firewall_command(action: FirewallAction) -> Result<ExitCode> {
    let (FirewallAction::Show { arg, .. }
    | FirewallAction::Apply(arg)
    | FirewallAction::Remove(arg)) = &action;
    // Values only: the firewall needs no Flink installation.
    let cfg = config::load_unchecked(&arg.config)?;
    if let FirewallAction::Remove(_) = action {
        firewall::apply::remove(&cfg.firewall.table)?;
        println!(
            "table inet {} removed (no other table touched)",
            cfg.firewall.table
        );
        return Ok(ExitCode::SUCCESS);
    }
    let policy = firewall::Policy::from_config(&cfg).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
        anyhow::anyhow!(
            "{}: the firewall rules cannot be planned:\n{}",
            arg.config.display(),
            list.join("\n")
        )
    })?;
    if let FirewallAction::Apply(_) = action {
        let swap = firewall::apply::compare(&policy)?.swap();
        firewall::apply::apply(&policy, swap)?;
    }
    let comparison = firewall::apply::compare(&policy)?;
    if matches!(action, FirewallAction::Show { json: true, .. }) {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", comparison.render_human());
    }
    Ok(if comparison.in_sync {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn validate(path: &Path) -> Result<ExitCode> {
    match config::load(path) {
        Ok(_) => {
            println!("{}: configuration is valid", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// The CLI commands are one request each: a current-thread runtime is enough.
fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(f: F) -> Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}
