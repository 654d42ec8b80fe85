//! What each command does. Client commands are one request each; the answer is printed for
//! people (or as JSON with `--json`) and mapped to an [`Exit`].

use super::{Command, Exit, FirewallAction, JobsAction};
use anyhow::{Context, Result};
use flink_agent::api::client::Client;
use flink_agent::jobs::{self, Answer, DeployRequest};
use flink_agent::{config, daemon, desired, firewall, logging};
use std::path::Path;
use std::time::Duration;

pub fn execute(command: Command) -> Result<Exit> {
    match command {
        Command::Run(arg) => {
            logging::init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(daemon::run(&arg.config))?;
            Ok(Exit::Ok)
        }
        Command::Validate(arg) => validate(&arg.config),
        Command::Render(arg) => {
            let loaded = desired::load(&arg.config, None)?;
            let flink = &loaded.desired.flink;
            println!(
                "# {} for Flink {}",
                flink.conf_dir.join(flink.rendered.file_name).display(),
                flink.version
            );
            print!("{}", flink.rendered.content);
            Ok(Exit::Ok)
        }
        Command::Status { at, json } => block_on(async {
            let status = at.client()?.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.render_human());
            }
            Ok(if status.ready {
                Exit::Ok
            } else {
                Exit::NotReady
            })
        }),
        Command::Reload { at, json } => block_on(async {
            let report = at.client()?.reload().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("configuration revision {} in force", report.revision);
                if !report.changed_keys.is_empty() {
                    println!("changed: {}", report.changed_keys.join(", "));
                }
                for concern in &report.concerns {
                    println!("  {}", concern.line());
                }
            }
            Ok(if report.complete() {
                Exit::Ok
            } else {
                Exit::Failed
            })
        }),
        Command::Restart { process, at } => block_on(async {
            at.client()?.restart(process.into()).await?;
            println!(
                "restarted {}",
                flink_agent::supervisor::Target::from(process)
                    .names()
                    .join(" and ")
            );
            Ok(Exit::Ok)
        }),
        Command::Shutdown(at) => block_on(async {
            // Longer than the agent waits for Flink to stop, so its answer arrives first.
            let wait =
                flink_agent::api::Limits::default().shutdown_timeout + Duration::from_secs(10);
            let client = at.client()?.with_timeout(wait);
            client.shutdown().await?;
            println!("Flink is stopped on this node and the agent has stopped");
            Ok(Exit::Ok)
        }),
        Command::Jobs { action, at, json } => block_on(async {
            // Longer than the agent's own bound, so its answer (even "did not finish") wins.
            let client = at
                .client()?
                .with_timeout(jobs::OPERATION_TIMEOUT + Duration::from_secs(20));
            let answer = jobs_request(&client, action).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", human(&answer));
            }
            Ok(Exit::Ok)
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
            Ok(Exit::Ok)
        }),
    }
}

async fn jobs_request(client: &Client, action: Option<JobsAction>) -> Result<Answer> {
    let empty = serde_json::json!({});
    Ok(match action {
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
            let request = DeployRequest {
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
                .post_json(&format!("/v1/jobs/{name}/stop"), &empty)
                .await?
        }
        Some(JobsAction::Start { name }) => {
            client
                .post_json(&format!("/v1/jobs/{name}/start"), &empty)
                .await?
        }
        Some(JobsAction::Delete { name }) => {
            client
                .post_json(&format!("/v1/jobs/{name}/delete"), &empty)
                .await?
        }
    })
}

/// A job answer for people: the table for a listing, one sentence for an action.
fn human(answer: &Answer) -> String {
    match answer {
        Answer::List(list) if list.is_empty() => format!("{}\n", jobs::NO_JOBS),
        Answer::List(list) => jobs::render_human(list, None),
        Answer::Deployed(job) => format!(
            "deployed {} as Flink job {}\n",
            job.name,
            job.flink_job_id.as_deref().unwrap_or("-")
        ),
        Answer::Stopped(stop) => {
            let mut line = match (
                &stop.savepoint,
                &stop.cancelled_because,
                stop.already_stopped,
            ) {
                (_, _, true) => format!("already stopped (Flink job {})", stop.flink_job_id),
                (Some(path), _, _) => format!("stopped with a savepoint at {path}"),
                (None, Some(why), _) => {
                    format!("cancelled (the savepoint failed: {why}); its newest checkpoint stays")
                }
                (None, None, _) => "stopped".to_string(),
            };
            if let Some(warning) = &stop.warning {
                line.push_str(&format!("\nwarning: {warning}"));
            }
            line + "\n"
        }
        Answer::Started(Some(from)) => format!(
            "started from checkpoint {} ({})\n",
            from.checkpoint_id, from.source
        ),
        Answer::Started(None) => "started fresh (no savepoint or checkpoint)\n".to_string(),
        Answer::Deleted { deleted } => {
            format!("deleted {deleted}: its records and remote checkpoints are gone\n")
        }
    }
}

async fn restore_plan(path: &Path) -> Result<Exit> {
    use flink_agent::checkpoints::{JobNames, Remote};
    use flink_agent::flinkrest::FlinkRest;
    use flink_agent::jobs::{Jobs, PlannedRestore, RestoreChoice};
    let loaded = desired::load(path, None)?;
    let d = &loaded.desired;
    let remote = Remote::build(&d.sync.store, &d.sync.cluster_id)?;
    remote.probe().await?;
    let jobs = Jobs::new(
        &d.jobs.state_dir,
        &d.jobs.data_dir,
        remote,
        FlinkRest::new(&d.jobs.endpoint)?,
        JobNames::default(),
        None,
    );
    let url = &d.sync.store.url;
    let plan = jobs.plan().await?;
    if plan.is_empty() {
        println!("no declared jobs locally or in {url}");
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
                "checkpoint {id} from {url} (verified first; an older one if it is corrupt)"
            ),
            RestoreChoice::Fresh => "no checkpoint: starts fresh".to_string(),
        };
        if stopped {
            println!("{name}: stopped, stays stopped; `flink-agent jobs start {name}` would run it from its savepoint if present here, else {what}");
        } else {
            println!("{name}: {what}");
        }
    }
    Ok(Exit::Ok)
}

fn firewall_command(action: FirewallAction) -> Result<Exit> {
    let (FirewallAction::Show { arg, .. }
    | FirewallAction::Apply(arg)
    | FirewallAction::Remove(arg)) = &action;
    // Values only: the firewall needs no Flink installation.
    let (cfg, mut errors) = config::read_and_parse(&arg.config)?;
    let invalid = |errors: config::Errors| config::ConfigError::Invalid {
        path: arg.config.display().to_string(),
        errors: errors.0,
    };
    if let FirewallAction::Remove(_) = action {
        if !errors.0.is_empty() {
            return Err(invalid(errors).into());
        }
        firewall::apply::remove(&cfg.firewall.table)?;
        println!(
            "table inet {} removed (no other table touched)",
            cfg.firewall.table
        );
        return Ok(Exit::Ok);
    }
    let policy = firewall::Policy::from_config(&cfg).map_err(|e| errors.extend_fresh(e));
    let policy = match policy {
        Ok(policy) if errors.0.is_empty() => policy,
        _ => return Err(invalid(errors).into()),
    };
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
        Exit::Ok
    } else {
        Exit::Differs
    })
}

fn validate(path: &Path) -> Result<Exit> {
    match desired::load(path, None) {
        Ok(_) => {
            println!("{}: configuration is valid", path.display());
            Ok(Exit::Ok)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(Exit::Config)
        }
    }
}

/// The CLI commands are one request each: a current-thread runtime is enough.
fn block_on<F: std::future::Future<Output = Result<Exit>>>(f: F) -> Result<Exit> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}
