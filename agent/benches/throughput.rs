//! Checkpoint-sync throughput (issue #5): the agent's own upload (`checkpoints::publish`) and
//! restore (`checkpoints::restore_newest`) against the best peer tools, each in its fast
//! settings, on the same local S3 server with the same data: s5cmd, rclone and `aws s3 sync`.
//! Shapes: one large file, and many small files (a checkpoint of many subtasks). Prints the
//! median MiB/s of each tool per shape and direction (downloads also until the files are on
//! disk, [`Bench::run`]), then the agent's ratio to the best peer and to the best figure of any
//! tool (what the server can take). Nothing is asserted: timings depend on the machine.
//!
//! The server: `s3s-fs` (a Rust S3 server over a directory, many threads) by default; `--server
//! moto` for moto, which answers about 140 requests/s on one core and so caps every tool on
//! small files. object_store's conformance suite runs against the server first and its result
//! is printed: s3s-fs 0.14.1 fails two of its checks (a GET of a key that is only a prefix of
//! others answers 500, not 404; `If-Unmodified-Since` is not honoured), neither of which a
//! measured transfer relies on; it honours the create-only PUT the agent's manifests use. Every
//! measured transfer is checked besides: a download must bring back every byte, and the agent's
//! restore verifies each file's hash. So it serves for speed, never for correctness (the
//! tests keep moto, which passes them all).
//!
//! `cargo bench -p flink-agent --bench throughput [-- --runs N --quick --tools agent,rclone
//! --server s3s-fs|moto]`; peers are installed by `benches/setup-peers.sh` (run here), the
//! servers by `benches/setup-s3s.sh` and `tests/setup/moto.sh`. `--quick` uses 1/8 of the
//! sizes, for development; `--tools` measures only the tools named, `--shapes large,small` and
//! `--directions upload,download` only those.
//!
//! Beside each figure it prints the CPU seconds per GiB the tool and the server spent (user and
//! system, medians): on a machine of few cores the two share them, so a client that spends more
//! CPU per byte leaves the server less.
#![allow(clippy::unwrap_used)]

#[path = "../tests/s3/mod.rs"]
mod s3;

#[path = "../tests/common/mod.rs"]
mod common;

use flink_agent::checkpoints::{
    publish, restore_newest, stage, LocalCheckpoint, Origin, Remote, UploadSettings, Withdrawn,
    CONCURRENCY,
};
use futures::{StreamExt, TryStreamExt};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeVal;
use object_store::path::Path as ObjectPath;
use s3::{print_conformance, Server};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "bench";
const JOB: &str = "bench-job";
const FLINK_JOB_ID: &str = "0123456789abcdef0123456789abcdef";
const CLUSTER: &str = "bench";
const TOOLS: [&str; 4] = ["agent", "s5cmd", "rclone", "aws"];

/// The row of downloads timed until the files are on disk ([`Bench::run`]).
const ON_DISK: &str = "on disk";

/// One transfer by one tool: MiB/s until the tool was done and until its files were on disk
/// (the same for uploads and the agent's restore), and its CPU.
struct Run {
    mib_s: f64,
    on_disk: f64,
    cpu: Cpu,
}

/// CPU seconds (user and system) one transfer cost the tool and the server.
#[derive(Clone, Copy, Default)]
struct Cpu {
    tool: f64,
    server: f64,
}

/// CPU seconds so far of this process (`RUSAGE_SELF`: the agent runs in it) or of its waited-for
/// children (`RUSAGE_CHILDREN`: the peers).
fn rusage_secs(who: UsageWho) -> f64 {
    let usage = getrusage(who).unwrap();
    let secs = |t: TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

/// CPU seconds so far of process `pid` (the server: a child not waited for until the end).
fn process_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name (which may hold spaces): the state is field 3, utime and stime
    // fields 14 and 15, in USER_HZ ticks (100 per second on every Linux this runs on).
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|t| t.parse::<u64>().unwrap())
        .sum();
    ticks as f64 / 100.0
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Upload,
    Download,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// A checkpoint dir as Flink writes it (`<flink job id>/chk-1/`, `_metadata` included), which
/// every tool uploads whole.
struct Shape {
    key: &'static str,
    name: String,
    dir: PathBuf,
    bytes: u64,
}

impl Shape {
    /// `files` incompressible files of `size` bytes each, plus a small `_metadata`.
    fn generate(root: &Path, name: &'static str, files: usize, size: usize) -> Self {
        let dir = root.join(name).join(FLINK_JOB_ID).join("chk-1");
        std::fs::create_dir_all(&dir).unwrap();
        let mut random = std::fs::File::open("/dev/urandom").unwrap();
        for i in 0..files {
            let mut out = std::fs::File::create(dir.join(format!("state-{i:05}"))).unwrap();
            let copied =
                std::io::copy(&mut std::io::Read::take(&mut random, size as u64), &mut out);
            assert_eq!(copied.unwrap(), size as u64);
        }
        std::fs::write(dir.join("_metadata"), vec![7u8; 4096]).unwrap();
        Shape {
            key: name,
            name: format!("{name}: {files} x {}", human(size)),
            dir,
            bytes: files as u64 * size as u64 + 4096,
        }
    }
}

fn human(size: usize) -> String {
    if size >= 1 << 30 {
        format!("{} GiB", size >> 30)
    } else if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else {
        format!("{} KiB", size >> 10)
    }
}

/// Paths of the peer tools, installed (once) by `benches/setup-peers.sh`.
struct Peers {
    s5cmd: PathBuf,
    aws: PathBuf,
    rclone: PathBuf,
}

impl Peers {
    fn install() -> Self {
        let text = s3::run_setup("benches/setup-peers.sh");
        let mut paths = text.lines().map(PathBuf::from);
        Peers {
            s5cmd: paths.next().unwrap(),
            aws: paths.next().unwrap(),
            rclone: paths.next().unwrap(),
        }
    }
}

/// Everything a run needs: the server, the peers and their config files (in a temp dir, never
/// in `~/.aws` or `~/.config`), and the agent's runtime.
struct Bench {
    server: Server,
    peers: Peers,
    tmp: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    /// Bucket-wide client for clean-up between runs.
    admin: Remote,
    runs: u32,
    /// Per shape, the most the agent's upload added to this process's resident memory.
    upload_rss_growth_kib: std::cell::RefCell<BTreeMap<&'static str, u64>>,
}

impl Bench {
    fn remote(&self, prefix: &str) -> Remote {
        let section = s3::s3_section(&self.server.endpoint(), BUCKET, prefix, self.tmp.path());
        Remote::build(&section, CLUSTER).unwrap()
    }

    fn fresh_dir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Times one transfer of `shape` by `tool` and the CPU it cost; the data goes to (or comes
    /// from) `prefix`. A download is timed twice: until the tool is done, and until its files
    /// are on disk. The agent's restore is done only then (it `fsync`s every file: a restore
    /// is to survive a crash of the node); a peer's files are flushed after it by one
    /// `syncfs(2)` of their file system, the cheapest way there is.
    fn run(
        &self,
        tool: &str,
        direction: Direction,
        shape: &Shape,
        prefix: &str,
    ) -> (Duration, Duration, Cpu) {
        let local = self.fresh_dir("download");
        // Nothing written before is left for the timed flush.
        nix::unistd::sync();
        let url = format!("s3://{BUCKET}/{prefix}/");
        let src = format!("{}/", shape.dir.display());
        let dst = format!("{}/", local.display());
        let (from, to) = match direction {
            Direction::Upload => (src.as_str(), url.as_str()),
            Direction::Download => (url.as_str(), dst.as_str()),
        };
        let who = match tool {
            "agent" => UsageWho::RUSAGE_SELF,
            _ => UsageWho::RUSAGE_CHILDREN,
        };
        let cpu_before = (rusage_secs(who), process_cpu_secs(self.server.pid()));
        let took = match tool {
            "agent" => self.agent(direction, shape, prefix, &local),
            "s5cmd" => {
                let from = format!("{from}*");
                self.peer(
                    Command::new(&self.peers.s5cmd)
                        .args(["--endpoint-url", &self.server.endpoint()])
                        .args(["--numworkers", "256", "cp", "--concurrency", "16"])
                        .args([&from, to]),
                )
            }
            "rclone" => {
                let remote = |p: &str| p.replacen(&format!("s3://{BUCKET}"), ":s3:bench", 1);
                // The sandbox's CA bundle makes rclone fail to start (LoadCustomCABundleError);
                // the endpoint is plain HTTP anyway.
                self.peer(
                    Command::new(&self.peers.rclone)
                        .env_remove("AWS_CA_BUNDLE")
                        .env("RCLONE_CONFIG", self.tmp.path().join("rclone.conf"))
                        .env("RCLONE_S3_PROVIDER", "Other")
                        .env("RCLONE_S3_ENDPOINT", self.server.endpoint())
                        .env("RCLONE_S3_ACCESS_KEY_ID", "testing")
                        .env("RCLONE_S3_SECRET_ACCESS_KEY", "testing")
                        .env("RCLONE_S3_REGION", "us-east-1")
                        .env("RCLONE_S3_FORCE_PATH_STYLE", "true")
                        .args(["copy", &remote(from), &remote(to)])
                        .args(["--transfers", "32", "--s3-upload-concurrency", "8"])
                        .args(["--s3-chunk-size", "16Mi", "--s3-disable-checksum"]),
                )
            }
            "aws" => self.peer(
                Command::new(&self.peers.aws)
                    .env("AWS_CONFIG_FILE", self.tmp.path().join("aws.conf"))
                    .env(
                        "AWS_SHARED_CREDENTIALS_FILE",
                        self.tmp.path().join("aws.creds"),
                    )
                    .args(["s3", "sync", "--only-show-errors"])
                    .args(["--endpoint-url", &self.server.endpoint(), from, to]),
            ),
            _ => unreachable!("unknown tool {tool}"),
        };
        let on_disk = match (tool, direction) {
            ("agent", _) | (_, Direction::Upload) => took,
            _ => {
                let started = Instant::now();
                let dir = std::fs::File::open(&local).unwrap();
                nix::unistd::syncfs(&dir).unwrap();
                took + started.elapsed()
            }
        };
        let cpu = Cpu {
            tool: rusage_secs(who) - cpu_before.0,
            server: process_cpu_secs(self.server.pid()) - cpu_before.1,
        };
        if direction == Direction::Download {
            assert_eq!(du(&local), shape.bytes, "{tool} downloaded everything");
        }
        (took, on_disk, cpu)
    }

    /// The agent's production paths: stage (hard links, untimed: it happens when Flink
    /// completes the checkpoint) and `publish`; or `restore_newest` into a fresh dir.
    fn agent(&self, direction: Direction, shape: &Shape, prefix: &str, into: &Path) -> Duration {
        let remote = self.remote(prefix);
        let started;
        match direction {
            Direction::Upload => {
                let local = LocalCheckpoint {
                    flink_job_id: FLINK_JOB_ID.into(),
                    id: 1,
                    dir: shape.dir.clone(),
                };
                let staged = stage(&local, JOB, &self.fresh_dir("staging")).unwrap();
                let origin = Origin {
                    cluster_id: CLUSTER.into(),
                    flink_version: "2.3.0".into(),
                };
                // Peak RSS from here on: writing 5 to clear_refs resets VmHWM (Linux).
                let _ = std::fs::write("/proc/self/clear_refs", "5");
                let before = common::status_kib("self", "VmRSS:");
                started = Instant::now();
                self.rt
                    .block_on(publish(
                        &remote,
                        &staged,
                        &origin,
                        UploadSettings::default(),
                    ))
                    .unwrap();
                let growth = common::status_kib("self", "VmHWM:").saturating_sub(before);
                let mut most = self.upload_rss_growth_kib.borrow_mut();
                let entry = most.entry(shape.key).or_default();
                *entry = (*entry).max(growth);
            }
            Direction::Download => {
                started = Instant::now();
                let restored = self
                    .rt
                    .block_on(restore_newest(
                        &remote,
                        JOB,
                        into,
                        CONCURRENCY,
                        &Withdrawn::default(),
                    ))
                    .unwrap()
                    .expect("the agent's upload is there");
                assert_eq!(restored.checkpoint_id, 1);
            }
        }
        started.elapsed()
    }

    fn peer(&self, cmd: &mut Command) -> Duration {
        let started = Instant::now();
        let out = cmd
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    }

    /// Deletes everything under `prefix`: moto keeps objects in memory, s3s-fs on disk. The
    /// listing is complete before the first delete: s3s-fs answers 500 to a listing page whose
    /// continuation token names a key deleted meanwhile.
    fn clear(&self, prefix: &str) {
        let store = &self.admin.store;
        let prefix = ObjectPath::from(prefix);
        self.rt.block_on(async {
            let keys: Vec<_> = store
                .list(Some(&prefix))
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .unwrap();
            store
                .delete_stream(futures::stream::iter(keys.into_iter().map(Ok)).boxed())
                .try_collect::<Vec<_>>()
                .await
                .unwrap();
        });
    }
}

/// Bytes in the files under `dir`.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                du(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Args {
    runs: u32,
    quick: bool,
    tools: Vec<String>,
    shapes: Vec<String>,
    directions: Vec<String>,
    server: String,
}

fn args() -> Args {
    let mut args = Args {
        runs: 3,
        quick: false,
        tools: TOOLS.iter().map(|t| t.to_string()).collect(),
        shapes: vec!["large".into(), "small".into()],
        directions: vec!["upload".into(), "download".into()],
        server: "s3s-fs".into(),
    };
    let list = |v: Option<String>, what| -> Vec<String> {
        v.expect(what).split(',').map(str::to_string).collect()
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => args.runs = it.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--quick" => args.quick = true,
            "--server" => args.server = it.next().expect("--server s3s-fs|moto"),
            "--tools" => args.tools = list(it.next(), "--tools agent,s5cmd,rclone,aws"),
            "--shapes" => args.shapes = list(it.next(), "--shapes large,small"),
            "--directions" => args.directions = list(it.next(), "--directions upload,download"),
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    args
}

fn main() {
    let args = args();
    let peers = Peers::install();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&args.server, tmp.path());
    server.create_bucket(BUCKET);
    server.create_bucket("conformance");
    std::fs::write(tmp.path().join("rclone.conf"), "").unwrap();
    std::fs::write(
        tmp.path().join("aws.conf"),
        "[default]\nregion = us-east-1\n\
         request_checksum_calculation = when_required\n\
         response_checksum_validation = when_required\n\
         s3 =\n  max_concurrent_requests = 64\n  max_queue_size = 10000\n  \
         multipart_chunksize = 16MB\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("aws.creds"),
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = Remote::build(
        &s3::s3_section(&server.endpoint(), BUCKET, "", tmp.path()),
        CLUSTER,
    )
    .unwrap();
    let checked = Remote::build(
        &s3::s3_section(&server.endpoint(), "conformance", "", tmp.path()),
        CLUSTER,
    )
    .unwrap();
    rt.block_on(print_conformance(&server, &checked));
    let bench = Bench {
        server,
        peers,
        tmp,
        rt,
        admin,
        runs: args.runs,
        upload_rss_growth_kib: Default::default(),
    };

    let scale = if args.quick { 8 } else { 1 };
    let data = bench.fresh_dir("data");
    let wanted = |name: &str| args.shapes.iter().any(|s| s == name);
    let mut shapes = Vec::new();
    if wanted("large") {
        shapes.push(Shape::generate(&data, "large", 1, (1 << 30) / scale));
    }
    if wanted("small") {
        shapes.push(Shape::generate(&data, "small", 2000 / scale, 64 << 10));
    }
    let directions: Vec<Direction> = [Direction::Upload, Direction::Download]
        .into_iter()
        .filter(|d| args.directions.iter().any(|a| a == d.name()))
        .collect();
    println!(
        "checkpoint-sync throughput against {} at {}, median of {} runs, MiB/s",
        bench.server.name(),
        bench.server.endpoint(),
        bench.runs
    );
    let tools: Vec<&str> = TOOLS
        .into_iter()
        .filter(|t| args.tools.iter().any(|a| a == t))
        .collect();
    let mut results: BTreeMap<(usize, &str, &str), f64> = BTreeMap::new();
    for (s, shape) in shapes.iter().enumerate() {
        for &direction in &directions {
            for (tool, runs) in measure(&bench, &tools, direction, shape) {
                let figure = median(runs.iter().map(|r| r.mib_s).collect());
                let gib = shape.bytes as f64 / (1u64 << 30) as f64;
                let cpu =
                    |side: fn(&Cpu) -> f64| median(runs.iter().map(|r| side(&r.cpu)).collect());
                let each = |f: fn(&Run) -> f64| {
                    let v: Vec<_> = runs.iter().map(|r| format!("{:.1}", f(r))).collect();
                    v.join(" ")
                };
                println!(
                    "  {:<8} {:<22} {:<9} {figure:>8.1}   runs: {}   CPU s/GiB: tool {:.2}, server {:.2}",
                    tool,
                    shape.name,
                    direction.name(),
                    each(|r| r.mib_s),
                    cpu(|c| c.tool) / gib,
                    cpu(|c| c.server) / gib,
                );
                results.insert((s, direction.name(), tool), figure);
                if direction == Direction::Download {
                    let on_disk = median(runs.iter().map(|r| r.on_disk).collect());
                    println!(
                        "  {:<8} {:<22} {:<9} {on_disk:>8.1}   runs: {}   (files on disk)",
                        tool,
                        shape.name,
                        ON_DISK,
                        each(|r| r.on_disk),
                    );
                    results.insert((s, ON_DISK, tool), on_disk);
                }
            }
            let _ = std::io::stdout().flush();
        }
    }
    println!();
    println!(
        "{:<22} {:<9} {:>8} {:>8} {:>8} {:>8} {:>12} {:>12}",
        "shape", "direction", "agent", "s5cmd", "rclone", "aws", "agent/peer", "agent/best"
    );
    let rows: Vec<&str> = directions
        .iter()
        .flat_map(|&d| match d {
            Direction::Upload => vec![d.name()],
            Direction::Download => vec![d.name(), ON_DISK],
        })
        .collect();
    for (s, shape) in shapes.iter().enumerate() {
        for &row in &rows {
            let fig = |tool| results.get(&(s, row, tool)).copied().unwrap_or(f64::NAN);
            let best_peer = TOOLS[1..].iter().map(|t| fig(t)).fold(f64::NAN, f64::max);
            let best = best_peer.max(fig("agent"));
            println!(
                "{:<22} {:<9} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>12.2} {:>12.2}",
                shape.name,
                row,
                fig("agent"),
                fig("s5cmd"),
                fig("rclone"),
                fig("aws"),
                fig("agent") / best_peer,
                fig("agent") / best
            );
        }
    }
    println!();
    for shape in &shapes {
        if let Some(kib) = bench.upload_rss_growth_kib.borrow().get(shape.key) {
            println!(
                "agent upload of {}: resident memory grew by at most {:.1} MiB (peak over the runs)",
                shape.name,
                *kib as f64 / 1024.0
            );
        }
    }
}

/// MiB/s of each tool in each run, and its CPU. The tools take turns within a run, so a change
/// of load on the machine hits them alike. Each upload goes to a fresh prefix, deleted after it;
/// downloads read one upload of the tool's own (the agent restores from its manifest).
fn measure<'t>(
    bench: &Bench,
    tools: &[&'t str],
    direction: Direction,
    shape: &Shape,
) -> BTreeMap<&'t str, Vec<Run>> {
    let source = |tool: &str| format!("{tool}-{}-source", shape.key);
    if direction == Direction::Download {
        for tool in tools {
            bench.run(tool, Direction::Upload, shape, &source(tool));
        }
    }
    let mut figures: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for run in 0..bench.runs {
        for &tool in tools {
            let prefix = match direction {
                Direction::Upload => format!("{tool}-{}-up-{run}", shape.key),
                Direction::Download => source(tool),
            };
            let (took, on_disk, cpu) = bench.run(tool, direction, shape, &prefix);
            if direction == Direction::Upload {
                bench.clear(&prefix);
            }
            let mib_s = |d: Duration| shape.bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
            figures.entry(tool).or_default().push(Run {
                mib_s: mib_s(took),
                on_disk: mib_s(on_disk),
                cpu,
            });
        }
    }
    if direction == Direction::Download {
        for tool in tools {
            bench.clear(&source(tool));
        }
    }
    figures
}
