//! What each command does. Client commands are one request each; the answer is printed for
//! people (or as JSON with `--json`) and mapped to an [`Exit`].

use super::output::print;
use super::progress::Progress;
use super::{generate, Command, Exit, FirewallAction, Globals, JobsAction, TlsAction};
use anyhow::{Context, Result};
use flink_agent::api::client::Client;
use flink_agent::config::{self, ConfigError};
use flink_agent::jobs::{self, Answer, DeployRequest};
use flink_agent::{daemon, desired, firewall, flinkconf, logging, tls};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

pub fn execute(command: Command, g: &Globals) -> Result<Exit> {
    match command {
        Command::Run => {
            anyhow::ensure!(
                !g.json,
                "`run` is the daemon and prints no answer; --json applies to the other commands"
            );
            logging::init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(daemon::run(&g.config_path()))?;
            Ok(Exit::Ok)
        }
        Command::Validate => validate(&g.config_path(), g.json),
        Command::Render => {
            let loaded = desired::load(&g.config_path(), None, tls::Access::Inspect, false)?;
            let flink = &loaded.desired.flink;
            let file = flink.conf_dir.join(flink.rendered.file_name);
            let value = json!({
                "file": file,
                "flink_version": flink.version.to_string(),
                "entries": flinkconf::redacted(&flink.rendered.entries),
            });
            print(g.json, &value, || {
                format!(
                    "# {} for Flink {}\n{}",
                    file.display(),
                    flink.version,
                    flink.rendered.content
                )
            })?;
            Ok(Exit::Ok)
        }
        Command::Plan => plan(&g.config_path(), g.json),
        Command::Status { watch } => block_on(status(g, watch)),
        Command::Reload => block_on(async {
            let report = g.client(None)?.reload().await?;
            print(g.json, &report, || {
                let mut out = format!("configuration revision {} in force\n", report.revision);
                if !report.changed_keys.is_empty() {
                    out.push_str(&format!("changed: {}\n", report.changed_keys.join(", ")));
                }
                for concern in &report.concerns {
                    out.push_str(&format!("  {}\n", concern.line()));
                }
                out
            })?;
            Ok(if report.complete() {
                Exit::Ok
            } else {
                Exit::Failed
            })
        }),
        Command::Restart { process } => block_on(async {
            g.client(None)?.restart(process.into()).await?;
            let names = flink_agent::supervisor::Target::from(process).names();
            print(g.json, &json!({ "restarted": names }), || {
                format!("restarted {}\n", names.join(" and "))
            })?;
            Ok(Exit::Ok)
        }),
        Command::Shutdown => block_on(async {
            // Longer than the agent waits for Flink to stop, so its answer arrives first.
            let wait =
                flink_agent::api::Limits::default().shutdown_timeout + Duration::from_secs(10);
            let client = g.client(Some(wait))?;
            let progress = (!g.json)
                .then(|| Progress::start("stopping the TaskManager, then the JobManager".into()));
            client.shutdown().await?;
            drop(progress);
            print(
                g.json,
                &json!({ "stopped": ["taskmanager", "jobmanager", "agent"] }),
                || "Flink is stopped on this node and the agent has stopped\n".into(),
            )?;
            Ok(Exit::Ok)
        }),
        Command::Jobs { action } => block_on(jobs_command(g, action)),
        Command::Restore { dry_run } => {
            anyhow::ensure!(
                dry_run,
                "the agent restores declared jobs by itself after every JobManager start; \
                 `restore --dry-run` shows what it would do"
            );
            block_on(restore_plan(&g.config_path(), g.json))
        }
        Command::Firewall { action } => firewall_command(action, g),
        Command::Tls { action } => tls_command(action, g),
        Command::Config => block_on(async {
            let view = g.client(None)?.config().await?;
            print(g.json, &view, || {
                let mut out = format!(
                    "# {} for Flink {}, configuration revision {} (secrets redacted)\n",
                    view.file, view.flink_version, view.revision
                );
                for (k, v) in &view.entries {
                    out.push_str(&format!("{k}: {v}\n"));
                }
                out
            })?;
            Ok(Exit::Ok)
        }),
        Command::Generate { what } => {
            generate::run(what)?;
            Ok(Exit::Ok)
        }
    }
}

/// `status`, once or every 2 s (`--watch`: the screen is redrawn on a terminal; with `--json`
/// one JSON document per line).
async fn status(g: &Globals, watch: bool) -> Result<Exit> {
    use std::io::IsTerminal;
    let client = g.client(None)?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let status = client.status().await?;
        if watch && g.json {
            println!("{}", serde_json::to_string(&status)?);
        } else {
            if watch && tty {
                print!("\x1b[H\x1b[2J");
            }
            print(g.json, &status, || status.render_human())?;
        }
        if !watch {
            return Ok(if status.ready {
                Exit::Ok
            } else {
                Exit::NotReady
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !(tty || g.json) {
            println!();
        }
    }
}

async fn jobs_command(g: &Globals, action: Option<JobsAction>) -> Result<Exit> {
    // Longer than the agent's own bound, so its answer (even "did not finish") wins.
    let client = g.client(Some(jobs::OPERATION_TIMEOUT + Duration::from_secs(20)))?;
    let what = match &action {
        None => None,
        Some(JobsAction::Deploy { name, .. }) => Some(format!(
            "deploying {name}: uploading the jar, Flink runs its main"
        )),
        Some(JobsAction::Stop { name }) => Some(format!("stopping {name}: taking a savepoint")),
        Some(JobsAction::Start { name }) => Some(format!(
            "starting {name}: restoring from its savepoint or newest checkpoint"
        )),
        Some(JobsAction::Delete { name }) => Some(format!(
            "deleting {name} and its checkpoints in object storage"
        )),
    };
    let progress = what.filter(|_| !g.json).map(Progress::start);
    let request = jobs_request(&client, action);
    tokio::pin!(request);
    let answer = loop {
        tokio::select! {
            answer = &mut request => break answer?,
            // The agent's own phase (a restore's download), shown beside the request's.
            _ = tokio::time::sleep(Duration::from_secs(1)), if progress.is_some() => {
                if let (Some(p), Ok(status)) = (&progress, client.status().await) {
                    p.detail(status.phase);
                }
            }
        }
    };
    drop(progress);
    print(g.json, &answer, || human(&answer))?;
    Ok(Exit::Ok)
}

async fn jobs_request(client: &Client, action: Option<JobsAction>) -> Result<Answer> {
    let empty = json!({});
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
            "deployed {} as Flink job {}; `flink-agent jobs` shows its state and checkpoints\n",
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

async fn restore_plan(path: &Path, json_out: bool) -> Result<Exit> {
    use flink_agent::checkpoints::{JobNames, Remote};
    use flink_agent::flinkrest::FlinkRest;
    use flink_agent::jobs::{Jobs, PlannedRestore, RestoreChoice};
    let loaded = desired::load(path, None, tls::Access::Inspect, false)?;
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
    let rows: Vec<serde_json::Value> = plan
        .iter()
        .map(
            |PlannedRestore {
                 name,
                 stopped,
                 choice,
             }| {
                let (source, id) = match choice {
                    RestoreChoice::Local(id) => ("local", Some(*id)),
                    RestoreChoice::Remote(id) => ("remote", Some(*id)),
                    RestoreChoice::Fresh => ("none", None),
                };
                json!({ "job": name, "stopped": stopped, "source": source, "checkpoint_id": id })
            },
        )
        .collect();
    print(json_out, &rows, || {
        let mut out = String::new();
        if plan.is_empty() {
            out.push_str(&format!("no declared jobs locally or in {url}\n"));
        }
        for PlannedRestore {
            name,
            stopped,
            choice,
        } in &plan
        {
            let what = match choice {
                RestoreChoice::Local(id) => format!("local checkpoint {id}"),
                RestoreChoice::Remote(id) => format!(
                    "checkpoint {id} from {url} (verified first; an older one if it is corrupt)"
                ),
                RestoreChoice::Fresh => "no checkpoint: starts fresh".to_string(),
            };
            if *stopped {
                out.push_str(&format!("{name}: stopped, stays stopped; `flink-agent jobs start {name}` would run it from its savepoint if present here, else {what}\n"));
            } else {
                out.push_str(&format!("{name}: {what}\n"));
            }
        }
        out
    })?;
    Ok(Exit::Ok)
}

fn firewall_command(action: FirewallAction, g: &Globals) -> Result<Exit> {
    let path = g.config_path();
    // Values only: the firewall needs no Flink installation.
    let (cfg, mut errors) = config::read_and_parse(&path)?;
    let invalid = |errors: config::Errors| ConfigError::Invalid {
        path: path.display().to_string(),
        errors: errors.0,
    };
    if let FirewallAction::Remove = action {
        if !errors.0.is_empty() {
            return Err(invalid(errors).into());
        }
        firewall::apply::remove(&cfg.firewall.table)?;
        let table = &cfg.firewall.table;
        print(
            g.json,
            &json!({ "removed": format!("inet {table}") }),
            || format!("table inet {table} removed (no other table touched)\n"),
        )?;
        return Ok(Exit::Ok);
    }
    let policy = firewall::Policy::from_config(&cfg).map_err(|e| errors.extend_fresh(e));
    let policy = match policy {
        Ok(policy) if errors.0.is_empty() => policy,
        _ => return Err(invalid(errors).into()),
    };
    if let FirewallAction::Apply = action {
        let swap = firewall::apply::compare(&policy)?.swap();
        firewall::apply::apply(&policy, swap)?;
    }
    let comparison = firewall::apply::compare(&policy)?;
    print(g.json, &comparison, || comparison.render_human())?;
    Ok(if comparison.in_sync {
        Exit::Ok
    } else {
        Exit::Differs
    })
}

fn tls_command(action: TlsAction, g: &Globals) -> Result<Exit> {
    match action {
        TlsAction::Show => block_on(async {
            let status: tls::TlsStatus = g.client(None)?.get_json("/v1/tls").await?;
            print(g.json, &status, || status.render_human())?;
            Ok(Exit::Ok)
        }),
        TlsAction::ClientCert { name, out, days } => {
            client_cert(&g.config_path(), &name, &out, days)
        }
    }
}

/// `tls client-cert`: files an operator can use at once with curl or import in a browser.
fn client_cert(config_path: &Path, name: &str, out: &Path, days: u32) -> Result<Exit> {
    use std::os::unix::fs::OpenOptionsExt;
    anyhow::ensure!(
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
        "certificate name {name:?} must be 1-64 letters, digits, '.', '-' or '_'"
    );
    anyhow::ensure!(
        (1..=825).contains(&days),
        "--days must be between 1 and 825 (got {days})"
    );
    let (cfg, errors) = config::read_and_parse(config_path)?;
    if !errors.0.is_empty() {
        return Err(config::ConfigError::Invalid {
            path: config_path.display().to_string(),
            errors: errors.0,
        }
        .into());
    }
    let settings = desired::tls_settings(&cfg);
    let cert = tls::issue_operator_certificate(
        &settings,
        name,
        Duration::from_secs(u64::from(days) * 86_400),
        std::time::SystemTime::now(),
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let files: [(String, &[u8], u32); 5] = [
        (format!("{name}.key"), cert.key_pem.as_bytes(), 0o600),
        (format!("{name}.pem"), cert.chain_pem.as_bytes(), 0o644),
        (format!("{name}.p12"), &cert.pkcs12, 0o600),
        (
            format!("{name}.p12.password"),
            cert.pkcs12_password.expose().as_bytes(),
            0o600,
        ),
        (
            "flink-ca.pem".to_string(),
            cert.server_ca_pem.as_bytes(),
            0o644,
        ),
    ];
    for (file, _, _) in &files[..4] {
        let path = out.join(file);
        anyhow::ensure!(
            !path.exists(),
            "{} exists; remove it or choose another name",
            path.display()
        );
    }
    for (file, bytes, mode) in &files {
        let path = out.join(file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(*mode)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::write_all(&mut f, bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let o = out.display();
    let url = flink_agent::flinkrest::Endpoint::new(&cfg.node.address, cfg.ports.rest)
        .with_tls(Default::default());
    println!(
        "issued REST client certificate {name}, valid until {}",
        tls::cert::format_time(cert.not_after)
    );
    println!("  {o}/{name}.pem, {o}/{name}.key: curl --cacert {o}/flink-ca.pem --cert {o}/{name}.pem --key {o}/{name}.key {url}/overview");
    println!("  {o}/{name}.p12: import into a browser (password in {o}/{name}.p12.password)");
    Ok(Exit::Ok)
}

/// `validate`: every problem, `[{key, problem}]` with `--json` (empty when valid).
fn validate(path: &Path, json_out: bool) -> Result<Exit> {
    match desired::load(path, None, tls::Access::Inspect, false) {
        Ok(_) => {
            print(json_out, &Vec::<serde_json::Value>::new(), || {
                format!("{}: configuration is valid\n", path.display())
            })?;
            Ok(Exit::Ok)
        }
        Err(e) => {
            if json_out {
                let problems: Vec<serde_json::Value> = match e.field_errors() {
                    [] => vec![json!({ "key": "", "problem": e.to_string() })],
                    fields => fields
                        .iter()
                        .map(|f| json!({ "key": f.path, "problem": f.message }))
                        .collect(),
                };
                println!("{}", serde_json::to_string_pretty(&problems)?);
            } else {
                eprintln!("{e}");
            }
            Ok(Exit::Config)
        }
    }
}

/// `plan`: the plan a config resolves to on this machine, and Flink's memory split.
fn plan(path: &Path, json_out: bool) -> Result<Exit> {
    let loaded = desired::load(path, None, tls::Access::Inspect, false)?;
    let p = &loaded.desired.plan;
    let split = flinkconf::memory_plan(p.memory_mib);
    let m = &loaded.machine;
    let value = json!({
        "memory_mib": p.memory_mib,
        "vcpus": p.vcpus,
        "auto": p.auto,
        "machine": m,
        "split": split,
    });
    print(json_out, &value, || {
        let from = p
            .auto
            .as_deref()
            .map_or("set in the file".to_string(), str::to_string);
        format!(
            "plan: {} MiB, {} vCPU(s) ({from})\n\
             this machine: {} MiB ({}), {} CPU(s)\n\
             memory: {} MiB JobManager, {} MiB TaskManager, {} MiB left to the OS and the agent\n",
            p.memory_mib,
            p.vcpus,
            m.memory_mib,
            m.memory_source,
            m.vcpus,
            split.jobmanager_mib,
            split.taskmanager_mib,
            split.headroom_mib
        )
    })?;
    Ok(Exit::Ok)
}

/// The CLI commands are one request each: a current-thread runtime is enough.
fn block_on<F: std::future::Future<Output = Result<Exit>>>(f: F) -> Result<Exit> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}
