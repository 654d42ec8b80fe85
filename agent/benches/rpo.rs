//! RPO lag (issue #14, goal 4): how long after Flink completes a checkpoint (its `_metadata`
//! appears) the checkpoint is durable (its manifest is in the store), for the running sync
//! engine as the daemon runs it: inotify wakes the detector, which stages by hard links, and the
//! uploader publishes. Shapes: 10 MiB (4 files), 100 MiB (4 files), 2000 × 64 KiB. Prints the
//! median, minimum and maximum per shape. Nothing is asserted: timings depend on the machine.
//!
//! The manifest is polled every 2 ms with a HEAD request, from this process; what the poll
//! costs the server is part of the figure (about 1 request in 40 for the 10 MiB shape).
//!
//! `cargo bench -p flink-agent --bench rpo [-- --runs N --server s3s-fs|moto]`; the server as
//! in the throughput benchmark (s3s-fs by default: what its conformance result means is said
//! there). The manifest found is the agent's own: `publish` checked every file's size first.
#![allow(clippy::unwrap_used)]

#[path = "../tests/s3/mod.rs"]
mod s3;

use flink_agent::checkpoints::layout::manifest_path;
use flink_agent::checkpoints::{
    JobNames, Origin, Remote, SyncConfig, SyncEngine, UploadSettings, Withdrawn,
};
use s3::{print_conformance, Server};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const BUCKET: &str = "rpo";
const JOB: &str = "rpo-job";
const FLINK_JOB_ID: &str = "0123456789abcdef0123456789abcdef";
const CLUSTER: &str = "bench";
const POLL: Duration = Duration::from_millis(2);

/// One checkpoint shape: `files` files of `size` bytes, plus `_metadata`.
struct Shape {
    name: &'static str,
    files: usize,
    size: usize,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "10 MiB (4 files)",
        files: 4,
        size: 10 << 18,
    },
    Shape {
        name: "100 MiB (4 files)",
        files: 4,
        size: 100 << 18,
    },
    Shape {
        name: "2000 x 64 KiB",
        files: 2000,
        size: 64 << 10,
    },
];

/// Writes checkpoint `id` as Flink does (state files, then `_metadata` renamed into place) and
/// returns the instant `_metadata` appeared.
fn complete_checkpoint(checkpoints: &Path, id: u64, shape: &Shape, random: &[u8]) -> Instant {
    let dir = checkpoints.join(FLINK_JOB_ID).join(format!("chk-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..shape.files {
        let offset = (i * 4099 + id as usize * 131) % (random.len() - shape.size);
        std::fs::write(
            dir.join(format!("state-{i:05}")),
            &random[offset..offset + shape.size],
        )
        .unwrap();
    }
    let tmp = dir.join("_metadata.inprogress");
    std::fs::write(&tmp, format!("checkpoint {id}")).unwrap();
    std::fs::rename(&tmp, dir.join("_metadata")).unwrap();
    Instant::now()
}

fn main() {
    let mut runs = 7;
    let mut server_name = "s3s-fs".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--server" => server_name = it.next().expect("--server s3s-fs|moto"),
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&server_name, tmp.path());
    server.create_bucket(BUCKET);
    server.create_bucket("conformance");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let remote = |bucket: &str, prefix: &str| {
        Remote::build(
            &s3::s3_section(&server.endpoint(), bucket, prefix, tmp.path()),
            CLUSTER,
        )
        .unwrap()
    };
    rt.block_on(print_conformance(&server, &remote("conformance", "")));
    let remote = remote(BUCKET, "flink");
    let checkpoints = tmp.path().join("flink/checkpoints");
    let config = SyncConfig {
        origin: Origin {
            cluster_id: CLUSTER.into(),
            flink_version: "2.3.0".into(),
        },
        checkpoints_dir: checkpoints.clone(),
        staging_root: tmp.path().join("state/staging"),
        retain: 3,
        rescan_interval: Duration::from_secs(10),
        orphan_grace: Duration::from_secs(3600),
        alert_after_failures: 3,
        upload: UploadSettings::default(),
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(30),
        rest: None,
    };
    std::fs::create_dir_all(&checkpoints).unwrap();
    let names = JobNames::default();
    names.set(FLINK_JOB_ID, JOB);
    let engine = SyncEngine::new(remote.clone(), config, names, Withdrawn::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = rt.spawn(engine.run(stopped));
    // Incompressible bytes to cut every file from (no two files of a run alike).
    let mut random = vec![0u8; (100 << 18) + (1 << 20)];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut random,
    )
    .unwrap();

    println!(
        "RPO lag against {} at {}: `_metadata` appears -> manifest durable, {runs} runs each",
        server.name(),
        server.endpoint()
    );
    let mut id = 0;
    for shape in &SHAPES {
        let mut lags = Vec::new();
        // One unmeasured warm-up checkpoint per shape (connections, page cache).
        for run in 0..=runs {
            id += 1;
            let appeared = complete_checkpoint(&checkpoints, id, shape, &random);
            let key = manifest_path(&remote.root, JOB, id);
            let deadline = appeared + Duration::from_secs(120);
            while rt.block_on(remote.store.head(&key)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "checkpoint {id} not durable in 120 s"
                );
                std::thread::sleep(POLL);
            }
            if run > 0 {
                lags.push(appeared.elapsed().as_secs_f64() * 1000.0);
            }
            // Flink keeps only its newest checkpoint; so does this writer.
            let _ = std::fs::remove_dir_all(
                checkpoints
                    .join(FLINK_JOB_ID)
                    .join(format!("chk-{}", id - 1)),
            );
        }
        lags.sort_by(f64::total_cmp);
        let text: Vec<_> = lags.iter().map(|l| format!("{l:.0}")).collect();
        println!(
            "  {:<20} median {:>7.0} ms   min {:>7.0}   max {:>7.0}   runs: {}",
            shape.name,
            lags[lags.len() / 2],
            lags[0],
            lags[lags.len() - 1],
            text.join(" ")
        );
        let _ = std::io::stdout().flush();
    }
    stop.send(true).unwrap();
    rt.block_on(task).unwrap();
}
