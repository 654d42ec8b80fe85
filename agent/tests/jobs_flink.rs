//! Declared jobs with a real Flink cluster (supervised by the real agent binary), a real
//! stateful job (`tests/jobs`, compiled here) and moto as S3. Issue tests 1 (sync matches the
//! local files byte for byte), 2 (`kill -9` of the JobManager: the job comes back from the
//! newest checkpoint and its output continues) and 3 (node loss: empty disk, same config: the
//! job comes back from the newest durable checkpoint).
//!
//! The daemon does not run the sync engine or re-submit jobs yet, so this test drives the
//! library exactly where the daemon will: `SyncEngine::run` next to the supervisor, and
//! `Jobs::resubmit_all` after the agent reports the JobManager healthy again.
#![allow(clippy::unwrap_used)]

mod common;
mod s3;

use common::{AgentDir, RunningAgent};
use flink_agent::checkpoints::layout::{data_path, manifest_path};
use flink_agent::checkpoints::{JobNames, Manifest, Remote, SyncConfig, SyncEngine};
use flink_agent::jobs::{DeployRequest, JobError, Jobs, JobsRest};
use s3::Moto;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const JOB: &str = "counter";

fn build_test_jobs(out: &Path) -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/jobs/build.sh");
    let o = std::process::Command::new("bash")
        .arg(script)
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The agent-side pieces the daemon will own: sync engine and job manager.
struct AgentSide {
    engine: SyncEngine,
    jobs: Jobs,
    rest: JobsRest,
    remote: Remote,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AgentSide {
    fn start(config_path: &Path) -> Self {
        let config = flink_agent::config::load(config_path).unwrap();
        let remote = Remote::build(&config.object_store, &config.cluster.id).unwrap();
        let names = JobNames::default();
        let rest = JobsRest::new(&format!("http://127.0.0.1:{}", config.ports.rest)).unwrap();
        let jobs = Jobs::new(
            &config.agent.state_dir,
            &config.flink.data_dir,
            remote.clone(),
            rest.clone(),
            names.clone(),
        );
        let mut sync = SyncConfig::from_agent(&config, "2.3.0").unwrap();
        sync.backoff_max = Duration::from_secs(2);
        let engine = SyncEngine::new(remote.clone(), sync, names);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(engine.clone().run(rx));
        AgentSide {
            engine,
            jobs,
            rest,
            remote,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }

    async fn manifest(&self, id: u64) -> Option<Manifest> {
        let got = self
            .remote
            .store
            .get(&manifest_path(&self.remote.root, JOB, id))
            .await
            .ok()?;
        serde_json::from_slice(&got.bytes().await.ok()?).ok()
    }

    /// Waits until the job runs under a new Flink id and returns it with the checkpoint Flink
    /// says it restored from.
    async fn running_restored(&self) -> (String, Option<u64>) {
        wait_until(
            "the job RUNNING in Flink",
            Duration::from_secs(90),
            || async {
                let jobs = self.rest.jobs().await.ok()?;
                let job = jobs.into_iter().find(|j| j.state == "RUNNING")?;
                let info = self.rest.checkpoints(&job.jid).await.ok()?;
                Some((job.jid, info.restored))
            },
        )
        .await
    }
}

/// `(key, count, n)` lines of the job's output from line `skip` on.
fn output(path: &Path, skip: usize) -> Vec<(u64, u64, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(skip)
        .filter_map(|l| {
            let v: Vec<u64> = l.split(' ').filter_map(|x| x.parse().ok()).collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .collect()
}

/// After a restore the counts continue: no key starts over at 1 and the sequence does not
/// restart at 0. Waits for `want` new lines first.
async fn assert_output_continues(path: &Path, skip: usize, want: usize) {
    let lines = wait_until(
        "new output after the restore",
        Duration::from_secs(60),
        || async {
            let l = output(path, skip);
            (l.len() >= want).then_some(l)
        },
    )
    .await;
    assert!(
        lines.iter().all(|(_, count, _)| *count > 1),
        "a count started over: {:?}",
        &lines[..want]
    );
    assert!(
        lines.iter().all(|(_, _, n)| *n >= 4),
        "the sequence started over: {:?}",
        &lines[..want]
    );
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_come_back_after_jobmanager_kill_and_node_loss() {
    let moto = Moto::start();
    moto.create_bucket("flink");
    let dir = AgentDir::new(7);
    let jar = build_test_jobs(&dir.path().join("jobs-build"));
    let counts = dir.path().join("counts.txt");
    let s3 = s3::s3_section(&moto.endpoint(), "flink", "prod", dir.path());
    dir.write_config(&format!(
        "[advanced]\ncheckpoint_interval_ms = 1000\n\n[object_store]\nurl = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\nallow_http = true\ncredentials_file = \"{}\"\n\n[checkpoints]\nrescan_interval_secs = 1\n",
        s3.url,
        moto.endpoint(),
        s3.credentials_file.unwrap().display()
    ));
    let config = flink_agent::config::load(&dir.config_path()).unwrap();
    let mut agent: RunningAgent = dir.start();
    block(|| agent.wait_ready(Duration::from_secs(120)));
    let side = AgentSide::start(&dir.config_path());

    // Bad input is refused and leaves nothing behind (issue test 8, the job half).
    let deploy = DeployRequest {
        name: JOB.into(),
        jar: jar.clone(),
        entry_class: Some("flinkagent.testjobs.KeyedCounter".into()),
        parallelism: Some(1),
        args: vec![counts.display().to_string(), "20".into()],
    };
    let missing = DeployRequest {
        jar: dir.path().join("nope.jar"),
        ..deploy.clone()
    };
    let err = side.jobs.deploy(&missing).await.unwrap_err();
    assert!(
        matches!(err, JobError::JarUnreadable { .. }) && err.to_string().contains("nope.jar"),
        "{err}"
    );
    let bad_class = DeployRequest {
        entry_class: Some("no.such.Main".into()),
        ..deploy.clone()
    };
    let err = side.jobs.deploy(&bad_class).await.unwrap_err();
    assert!(
        err.to_string().contains("Flink refused running jar"),
        "{err}"
    );
    assert!(
        side.jobs
            .list(&side.engine.status())
            .await
            .unwrap()
            .is_empty(),
        "half-deployed job recorded"
    );
    assert!(
        side.rest.jobs().await.unwrap().is_empty(),
        "half-deployed job in Flink"
    );

    side.jobs.deploy(&deploy).await.unwrap();
    let err = side.jobs.deploy(&deploy).await.unwrap_err();
    assert!(matches!(err, JobError::Exists { .. }), "{err}");

    // Issue test 1: a durable checkpoint matches Flink's local files byte for byte.
    let checkpoints = config.flink.data_dir.join("checkpoints");
    let first_id = side.rest.jobs().await.unwrap()[0].jid.clone();
    let synced = wait_until(
        "a durable checkpoint that still exists locally",
        Duration::from_secs(60),
        || async {
            let id = side.engine.status().jobs.get(JOB)?.last_durable?;
            let m = side.manifest(id).await?;
            let local = checkpoints.join(&first_id).join(format!("chk-{id}"));
            let files: Vec<_> = m
                .files
                .iter()
                .map(|f| std::fs::read(local.join(&f.path)).ok())
                .collect::<Option<_>>()?;
            Some((m, files))
        },
    )
    .await;
    let (m, local_files) = synced;
    for (f, local) in m.files.iter().zip(&local_files) {
        let key = data_path(&side.remote.root, JOB, m.checkpoint_id, &f.path);
        let remote = side
            .remote
            .store
            .get(&key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(remote.as_ref(), local.as_slice(), "{} differs", f.path);
    }
    assert_eq!(m.flink_version, "2.3.0");
    assert_eq!(m.flink_job_id, first_id);

    // Issue test 2: kill -9 the JobManager; the agent restarts it; the job is re-submitted from
    // the newest local checkpoint and its output continues.
    let jm = block(|| agent.running_pid("jobmanager")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(jm),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed_at = Instant::now();
    block(|| {
        common::wait_for("a new healthy JobManager", Duration::from_secs(120), || {
            agent.running_pid("jobmanager").filter(|p| *p != jm)
        })
    });
    wait_until(
        "the JobManager's REST API",
        Duration::from_secs(60),
        || async { side.rest.jobs().await.ok() },
    )
    .await;
    let lines_before = output(&counts, 0).len();
    let results = side.jobs.resubmit_all().await.unwrap();
    let from = results[0]
        .1
        .as_ref()
        .unwrap()
        .clone()
        .expect("restored from a checkpoint");
    assert_eq!(from.source, "local");
    assert!(
        from.checkpoint_id >= m.checkpoint_id,
        "{from:?} older than durable {}",
        m.checkpoint_id
    );
    let (_, restored) = side.running_restored().await;
    let rto = killed_at.elapsed();
    assert_eq!(
        restored,
        Some(from.checkpoint_id),
        "Flink reports another restore"
    );
    assert_output_continues(&counts, lines_before, 40).await;
    let listed = side.jobs.list(&side.engine.status()).await.unwrap();
    assert_eq!(
        listed[0].restored_from.as_ref().map(|r| r.checkpoint_id),
        Some(from.checkpoint_id)
    );
    assert_eq!(listed[0].state, "RUNNING");
    eprintln!(
        "JobManager kill -9 → job RUNNING restored: {:.1}s",
        rto.as_secs_f64()
    );

    // Issue test 3: node loss. Everything stops, the state dir and Flink's data dir are gone;
    // a fresh agent with the same config brings the job back from object storage.
    block(|| {
        agent.signal(nix::sys::signal::Signal::SIGTERM);
        agent.wait_exit(Duration::from_secs(60))
    });
    wait_until("uploads to drain", Duration::from_secs(30), || async {
        side.engine.status().pending.is_empty().then_some(())
    })
    .await;
    let durable = side.engine.status().jobs[JOB].last_durable.unwrap();
    side.stop().await;
    drop(agent);
    std::fs::remove_dir_all(&config.agent.state_dir).unwrap();
    std::fs::remove_dir_all(&config.flink.data_dir).unwrap();

    let mut agent = dir.start();
    block(|| agent.wait_ready(Duration::from_secs(120)));
    let side = AgentSide::start(&dir.config_path());
    let lines_before = output(&counts, 0).len();
    let results = side.jobs.resubmit_all().await.unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    let from = results[0]
        .1
        .as_ref()
        .unwrap()
        .clone()
        .expect("restored from a checkpoint");
    assert_eq!(
        (from.source.as_str(), from.checkpoint_id),
        ("remote", durable)
    );
    let (_, restored) = side.running_restored().await;
    assert_eq!(restored, Some(durable));
    assert_output_continues(&counts, lines_before, 40).await;
    side.stop().await;
    drop(agent);
}
