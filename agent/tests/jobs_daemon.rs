//! Declared jobs through the product surface: the real `flink-agent run` daemon (which runs the
//! checkpoint sync and re-submits jobs after every JobManager start), the CLI, a real Flink, a
//! real stateful job (`tests/jobs`, compiled here) and moto as S3. Issue tests 1 (durable
//! checkpoints equal Flink's files byte for byte), 2 (`kill -9` of the JobManager) and 3 (node
//! loss) end with the job RUNNING again, restored from a checkpoint, with nobody calling
//! anything; 8 (bad deploys) leave nothing behind.
#![allow(clippy::unwrap_used)]

mod common;
mod s3;

use common::{agent_bin, build_test_jobs, cli, http_get, wait_for, AgentDir};
use flink_agent::checkpoints::layout::{data_path, manifest_path};
use flink_agent::checkpoints::{self, candidates, Manifest, Remote};
use s3::Moto;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn jobs_json(socket: &Path) -> Option<serde_json::Value> {
    let (ok, out, _) = cli(socket, &["jobs", "--json"]);
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

/// The job's entry while it RUNS under a Flink id other than `not`, restored from a checkpoint.
fn restored_running(socket: &Path, not: &str) -> Option<serde_json::Value> {
    let jobs = jobs_json(socket)?;
    let job = jobs.as_array()?.first()?.clone();
    (job["state"] == "RUNNING" && job["flink_job_id"] != not && job["restored_from"].is_object())
        .then_some(job)
}

/// Counts per key continue after a restore: from line `skip` on, `want` lines, none at 1.
fn assert_output_continues(path: &Path, skip: usize, want: usize) {
    let lines: Vec<Vec<u64>> = wait_for(
        "new output after the restore",
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let l: Vec<Vec<u64>> = text
                .lines()
                .skip(skip)
                .map(|l| {
                    l.split(' ')
                        .filter_map(|x| x.parse().ok())
                        .collect::<Vec<u64>>()
                })
                .filter(|v| v.len() == 3)
                .collect();
            (l.len() >= want).then_some(l)
        },
    );
    assert!(
        lines.iter().all(|v| v[1] > 1 && v[2] >= 4),
        "output started over: {:?}",
        &lines[..want]
    );
}

/// For the newest durable checkpoint of `counter` whose local `chk-N` still exists: asserts every
/// remote file equals the local one and returns (N, file count). None while there is none.
async fn same_bytes(remote: &Remote, local_dir: &Path) -> Option<(u64, usize)> {
    let ids = candidates(remote, "counter").await.ok()?;
    for id in ids {
        let chk = local_dir.join(format!("chk-{id}"));
        let key = manifest_path(&remote.root, "counter", id);
        let manifest: Manifest =
            serde_json::from_slice(&remote.store.get(&key).await.ok()?.bytes().await.ok()?).ok()?;
        let Some(local) = manifest
            .files
            .iter()
            .map(|f| std::fs::read(chk.join(&f.path)).ok())
            .collect::<Option<Vec<_>>>()
        else {
            continue; // Flink already subsumed it locally
        };
        for (f, bytes) in manifest.files.iter().zip(local) {
            let key = data_path(&remote.root, "counter", id, &f.path);
            let got = remote.store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(
                got.as_ref(),
                bytes.as_slice(),
                "chk-{id}/{} differs",
                f.path
            );
        }
        assert_eq!(manifest.flink_version, "2.3.0");
        return Some((id, manifest.files.len()));
    }
    None
}

/// The newest checkpoint Flink has triggered for `job` (0 before the first), from its REST API.
fn latest_triggered(rest: u16, job: &str) -> Option<u64> {
    let (status, body) = http_get(rest, &format!("/jobs/{job}/checkpoints"))?;
    let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
    let history = v["history"].as_array().into_iter().flatten();
    let ids = history
        .chain([&v["latest"]["completed"]])
        .filter_map(|c| c["id"].as_u64());
    Some(ids.max().unwrap_or(0))
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn daemon_brings_jobs_back_after_jobmanager_kill_and_node_loss() {
    let moto = Moto::start();
    moto.create_bucket("flink");
    let dir = AgentDir::new(8);
    let jar = build_test_jobs(&dir.path().join("jobs-build"));
    let counts = dir.path().join("counts.txt");
    let s3 = s3::s3_section(&moto.endpoint(), "flink", "prod", dir.path());
    dir.write_config(&format!(
        "[advanced]\ncheckpoint_interval_ms = 1000\n\n[object_store]\nurl = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nallow_http = true\ncredentials_file = \"{}\"\n\n[checkpoints]\nrescan_interval_secs = 1\n",
        s3.url,
        moto.endpoint(),
        s3.credentials_file.unwrap().display()
    ));
    let mut agent = dir.start();
    agent.wait_ready(Duration::from_secs(120));
    let socket = dir.socket();
    let jar_arg = jar.display().to_string();
    let counts_arg = counts.display().to_string();

    // Issue test 8 through the CLI: clear errors, nothing deployed.
    let (ok, _, err) = cli(
        &socket,
        &["jobs", "deploy", "counter", "--jar", "/nonexistent/x.jar"],
    );
    assert!(
        !ok && err.contains("/nonexistent/x.jar") && err.contains("cannot be read"),
        "{err}"
    );
    let (ok, _, err) = cli(&socket, &["jobs", "deploy", "Bad/Name", "--jar", &jar_arg]);
    assert!(!ok && err.contains("is invalid"), "{err}");
    assert_eq!(jobs_json(&socket).unwrap(), serde_json::json!([]));

    let deploy = [
        "jobs",
        "deploy",
        "counter",
        "--jar",
        &jar_arg,
        "--entry-class",
        "flinkagent.testjobs.KeyedCounter",
        "--parallelism",
        "1",
        "--",
        &counts_arg,
        "20",
    ];
    let (ok, out, err) = cli(&socket, &deploy);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = cli(&socket, &deploy);
    assert!(!ok && err.contains("already deployed"), "{err}");

    // Checkpoints become durable and status says so. The one the JobManager is killed after
    // below must hold every key's count (what `assert_output_continues` checks): on a busy
    // machine the first checkpoint can come before the source's first records (a CI run
    // restored from one that held a single record), so it is one Flink triggered after 8
    // records were counted.
    wait_for("8 records counted", Duration::from_secs(60), || {
        (line_count(&counts) >= 8).then_some(())
    });
    let first_id = jobs_json(&socket).unwrap()[0]["flink_job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let triggered = wait_for(
        "Flink's checkpoint statistics",
        Duration::from_secs(30),
        || latest_triggered(dir.ports.rest, &first_id),
    );
    let first_durable = wait_for(
        "a durable checkpoint in status, holding the counted records",
        Duration::from_secs(60),
        || {
            let jobs = jobs_json(&socket)?;
            let job = jobs.as_array()?.first()?.clone();
            let durable = job["last_durable_checkpoint"].as_u64()?;
            (job["state"] == "RUNNING" && durable > triggered).then_some(durable)
        },
    );

    // Issue test 1: a durable checkpoint matches Flink's local files byte for byte.
    let config = flink_agent::config::load_unchecked(&dir.config_path()).unwrap();
    let local_dir = config.flink.data_dir.join("checkpoints").join(&first_id);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let remote = Remote::build(&config.object_store, &config.cluster.id).unwrap();
    // (This job's state is small, so Flink inlines it into `_metadata`: one file per checkpoint.)
    wait_for(
        "a durable checkpoint still present locally",
        Duration::from_secs(60),
        || runtime.block_on(same_bytes(&remote, &local_dir)),
    );
    let (_, human, _) = cli(&socket, &["status"]);
    assert!(
        human.contains("checkpoints → s3://flink/prod") && human.contains("counter"),
        "{human}"
    );

    // Issue test 2: kill -9 the JobManager. The agent restarts it and re-submits the job from
    // its newest checkpoint by itself.
    let jm = agent.running_pid("jobmanager").unwrap();
    let lines_before = line_count(&counts);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(jm),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let job = wait_for(
        "the job RUNNING again, restored",
        Duration::from_secs(120),
        || restored_running(&socket, &first_id),
    );
    eprintln!(
        "JobManager kill -9 → job RUNNING restored: {:.1}s",
        killed.elapsed().as_secs_f64()
    );
    let from = job["restored_from"]["checkpoint_id"].as_u64().unwrap();
    assert!(from >= first_durable, "{job}");
    assert_output_continues(&counts, lines_before, 40);
    let second_id = job["flink_job_id"].as_str().unwrap().to_string();

    // Issue test 3: node loss. Stop everything, delete the state dir and Flink's data dir
    // (local checkpoints), start a fresh agent with the same config.
    let durable = wait_for(
        "a durable checkpoint of the re-submitted job",
        Duration::from_secs(60),
        || {
            let job = jobs_json(&socket)?.as_array()?.first()?.clone();
            job["last_durable_checkpoint"]
                .as_u64()
                .filter(|d| *d > from)
        },
    );
    // SIGINT (Ctrl-C) stops Flink with the agent; SIGTERM would leave it for the next agent.
    agent.signal(nix::sys::signal::Signal::SIGINT);
    agent.wait_exit(Duration::from_secs(60));
    drop(agent);
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    std::fs::remove_dir_all(dir.path().join("flink-data")).unwrap();
    // `restore --dry-run` plans from object storage alone.
    let o = Command::new(agent_bin())
        .args(["restore", "--dry-run", "--config"])
        .arg(dir.config_path())
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{plan}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        plan.starts_with("counter: checkpoint ") && plan.contains("from s3://flink/prod"),
        "{plan}"
    );
    let lines_before = line_count(&counts);
    let mut agent = dir.start();
    agent.wait_ready(Duration::from_secs(120));
    let job = wait_for(
        "the job back after node loss",
        Duration::from_secs(120),
        || restored_running(&socket, &second_id),
    );
    assert_eq!(job["restored_from"]["source"], "remote", "{job}");
    assert!(
        job["restored_from"]["checkpoint_id"].as_u64().unwrap() >= durable,
        "{job}"
    );
    assert_output_continues(&counts, lines_before, 40);
    let restored_dir = PathBuf::from(job["restored_from"]["path"].as_str().unwrap());
    assert!(restored_dir.join("_metadata").is_file(), "{job}");

    // Stop (savepoint), start again from that savepoint: the downloaded checkpoint is freed
    // once the job no longer starts from it.
    let remote_id = job["restored_from"]["checkpoint_id"].as_u64().unwrap();
    let third_id = job["flink_job_id"].as_str().unwrap().to_string();
    let (ok, out, err) = cli(&socket, &["jobs", "--json", "stop", "counter"]);
    assert!(ok && out.contains("savepoint"), "{out}{err}");
    // The savepoint becomes the newest durable checkpoint, for a node that replaces this one.
    let stopped: serde_json::Value = serde_json::from_str(&out).unwrap();
    let location = stopped["savepoint"].as_str().unwrap();
    let savepoint_id = checkpoints::checkpoint_id(checkpoints::local_dir(location)).unwrap();
    wait_for(
        "the savepoint durable in object storage",
        Duration::from_secs(30),
        || {
            let newest = runtime.block_on(candidates(&remote, "counter")).ok()?;
            (newest.first() == Some(&savepoint_id)).then_some(())
        },
    );
    let lines_before = line_count(&counts);
    let (ok, out, err) = cli(&socket, &["jobs", "start", "counter"]);
    assert!(
        ok && out.contains("started from checkpoint") && out.contains("(savepoint)"),
        "{out}{err}"
    );
    let job = wait_for(
        "the job running again from its savepoint",
        Duration::from_secs(60),
        || restored_running(&socket, &third_id),
    );
    assert_eq!(job["restored_from"]["source"], "savepoint", "{job}");
    assert_eq!(job["restored_from"]["checkpoint_id"], savepoint_id, "{job}");
    assert!(
        savepoint_id > remote_id,
        "the savepoint is newer than the checkpoint restored before it: {job}"
    );
    assert_output_continues(&counts, lines_before, 20);
    assert!(!restored_dir.exists(), "{}", restored_dir.display());
    let (ok, out, err) = cli(&socket, &["jobs", "start", "counter"]);
    assert!(!ok && err.contains("is not stopped"), "{out}{err}");

    let (ok, out, err) = cli(&socket, &["jobs", "delete", "counter"]);
    assert!(ok, "{out}{err}");
    assert_eq!(jobs_json(&socket).unwrap(), serde_json::json!([]));
    drop(agent);
}
