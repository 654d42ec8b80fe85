//! A real S3-compatible server for tests: moto's `moto_server` on 127.0.0.1 (installed by
//! `tests/setup/moto.sh`), behind a small TCP proxy the test can take down and bring back to
//! simulate an outage without losing the server's (in-memory) objects. Both are stopped when
//! their guard drops, also when the test fails: moto by PID, the proxy with the runtime.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a different part

use flink_agent::checkpoints::Remote;
use flink_agent::config::ObjectStoreSection;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs a setup script of the repo (`tests/setup/moto.sh`, …), which installs a tool into the
/// cache on first use, and returns what it prints: the paths of what it installed.
pub fn run_setup(script: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(script);
    let out = Command::new("bash")
        .arg(&path)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Path of `moto_server`, installing it into the cache on first use.
fn moto_server_path() -> PathBuf {
    PathBuf::from(run_setup("tests/setup/moto.sh").trim())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `moto_server`; killed by PID on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// A server that checks credentials like AWS: `bucket` is created with its one free
    /// unsigned request, then every request needs a key moto knows (none are known, so every
    /// signed request is refused with `InvalidAccessKeyId`).
    pub fn start_authenticating(bucket: &str) -> Self {
        let moto = Self::spawn(Some(1));
        moto.create_bucket(bucket);
        moto
    }

    /// `free_requests`: moto's `INITIAL_NO_AUTH_ACTION_COUNT`; None = never check.
    fn spawn(free_requests: Option<u32>) -> Self {
        let port = free_port();
        let mut command = Command::new(moto_server_path());
        if let Some(n) = free_requests {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, port };
        wait_listening(port, Duration::from_secs(30));
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` with a plain PUT (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let status = raw_http(self.port, "PUT", &format!("/{bucket}"), "").0;
        assert_eq!(status, 200, "creating bucket {bucket}");
    }

    /// Turns on versioning, so every PUT of a key is kept and can be counted.
    pub fn enable_versioning(&self, bucket: &str) {
        let body = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
        let (status, answer) = raw_http(self.port, "PUT", &format!("/{bucket}?versioning"), body);
        assert_eq!(status, 200, "{answer}");
    }

    /// How many times `key` was written (`ListObjectVersions`; needs versioning).
    pub fn versions_of(&self, bucket: &str, key: &str) -> usize {
        let (status, body) = raw_http(
            self.port,
            "GET",
            &format!("/{bucket}?versions&prefix={key}"),
            "",
        );
        assert_eq!(status, 200, "{body}");
        body.matches("<Version>").count()
    }

    /// Multipart uploads in progress in `bucket` (`ListMultipartUploads`): their keys.
    pub fn open_multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let (status, body) = raw_http(self.port, "GET", &format!("/{bucket}?uploads"), "");
        assert_eq!(status, 200, "{body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `s3s-fs` (installed by `benches/setup-s3s.sh`) serving the directory `root`, with
/// the credentials [`s3_section`] writes; killed by PID on drop. The throughput benchmark's
/// server: it is not the bottleneck moto is.
#[derive(Debug)]
pub struct S3sFs {
    child: Child,
    pub port: u16,
    root: PathBuf,
}

impl S3sFs {
    pub fn start(root: &std::path::Path) -> Self {
        let binary = PathBuf::from(run_setup("benches/setup-s3s.sh").trim());
        std::fs::create_dir_all(root).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "testing", "--secret-key", "testing"])
            .arg(root)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = S3sFs {
            child,
            port,
            root: root.to_path_buf(),
        };
        wait_listening(port, Duration::from_secs(30));
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A bucket is a directory of the root.
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.root.join(bucket)).unwrap();
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raw_http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let len = body.len();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len}\r\n\r\n{body}"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

/// `[object_store]` for `s3://bucket/prefix` at `endpoint`, with throw-away credentials.
pub fn s3_section(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    creds_dir: &std::path::Path,
) -> ObjectStoreSection {
    use std::os::unix::fs::PermissionsExt;
    let creds = creds_dir.join("s3-credentials.toml");
    std::fs::write(
        &creds,
        "aws_access_key_id = \"testing\"\naws_secret_access_key = \"testing\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    ObjectStoreSection {
        url: format!("s3://{bucket}/{prefix}"),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.to_string()),
        allow_http: true,
        credentials_file: Some(creds),
    }
}

pub fn s3_remote(endpoint: &str, bucket: &str, dir: &std::path::Path) -> Remote {
    Remote::build(&s3_section(endpoint, bucket, "flink", dir), "test-cluster").unwrap()
}

/// A TCP proxy on its own port in front of `upstream`; `down()` closes the listener and every
/// connection (clients then get "connection refused"), `up()` listens again on the same port.
/// `stall()` holds every request byte until `resume()`: requests hang as on a congested link.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    upstream: u16,
    tasks: Arc<Mutex<tokio::task::JoinSet<()>>>,
    stalled: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Self {
        let proxy = Proxy {
            port: free_port(),
            upstream,
            tasks: Arc::new(Mutex::new(tokio::task::JoinSet::new())),
            stalled: tokio::sync::watch::channel(false).0,
        };
        proxy.up().await;
        proxy
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        let stalled = self.stalled.subscribe();
        self.tasks.lock().unwrap().spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let gate = stalled.clone();
                tasks.lock().unwrap().spawn(async move {
                    if let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = pump(client, server, gate).await;
                    }
                });
            }
        });
    }

    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    pub fn down(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

/// Copies both ways; request bytes wait while `gate` says stalled.
async fn pump(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    mut gate: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let requests = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = client_rx.read(&mut buf).await?;
            if n == 0 {
                return server_tx.shutdown().await;
            }
            let _ = gate.wait_for(|stalled| !*stalled).await;
            server_tx.write_all(&buf[..n]).await?;
        }
    };
    let answers = tokio::io::copy(&mut server_rx, &mut client_tx);
    tokio::try_join!(requests, answers).map(drop)
}

/// The S3 server of a benchmark: every tool talks to it.
pub enum Server {
    Moto(Moto),
    S3sFs(S3sFs),
}

impl Server {
    /// `name`: `s3s-fs` (its objects under `dir`) or `moto`.
    pub fn start(name: &str, dir: &std::path::Path) -> Self {
        match name {
            "s3s-fs" => Server::S3sFs(S3sFs::start(&dir.join("s3s-fs"))),
            "moto" => Server::Moto(Moto::start()),
            _ => panic!("--server s3s-fs|moto, not {name}"),
        }
    }

    pub fn create_bucket(&self, bucket: &str) {
        match self {
            Server::Moto(m) => m.create_bucket(bucket),
            Server::S3sFs(s) => s.create_bucket(bucket),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Server::Moto(_) => "moto",
            Server::S3sFs(_) => "s3s-fs",
        }
    }

    pub fn endpoint(&self) -> String {
        match self {
            Server::Moto(m) => m.endpoint(),
            Server::S3sFs(s) => s.endpoint(),
        }
    }

    /// The server's process, for the CPU it spends serving a benchmark.
    pub fn pid(&self) -> u32 {
        match self {
            Server::Moto(m) => m.child.id(),
            Server::S3sFs(s) => s.child.id(),
        }
    }
}

/// object_store's conformance tests of what the agent and the peers do with a store (put, get
/// with ranges, list, delete, copy, streaming, multipart in and out of order, create-only puts),
/// on an empty bucket; each failure by name, with its panic message.
pub async fn conformance(remote: &Remote) -> Vec<(&'static str, String)> {
    use futures::FutureExt;
    use object_store::integration::*;
    let store = &*remote.store;
    let multipart_store = remote.multipart.clone().unwrap();
    let checks: Vec<(&'static str, futures::future::BoxFuture<'_, ()>)> = vec![
        ("put_get_delete_list", put_get_delete_list(store).boxed()),
        ("get_opts", get_opts(store).boxed()),
        (
            "list_uses_directories_correctly",
            list_uses_directories_correctly(store).boxed(),
        ),
        ("list_with_delimiter", list_with_delimiter(store).boxed()),
        ("rename_and_copy", rename_and_copy(store).boxed()),
        ("stream_get", stream_get(store).boxed()),
        ("multipart", multipart(store, &*multipart_store).boxed()),
        (
            "multipart_out_of_order",
            multipart_out_of_order(store).boxed(),
        ),
        ("create-only put", create_only_put(store).boxed()),
    ];
    // The checks assert by panicking: caught here and reported, not printed with a backtrace.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = Vec::new();
    for (name, check) in checks {
        if let Err(panic) = std::panic::AssertUnwindSafe(check).catch_unwind().await {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push((name, message));
        }
    }
    std::panic::set_hook(hook);
    failed
}

/// The agent's manifests are published with `PutMode::Create` (`If-None-Match: *`): a second
/// create of one key must be refused and leave the first content. (object_store's `put_opts`
/// check also covers conditional updates, which the agent does not use.)
pub async fn create_only_put(store: &dyn object_store::ObjectStore) {
    use object_store::{path::Path, PutMode, PutOptions};
    let key = Path::from("create-only.json");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store.put_opts(&key, "a".into(), create()).await.unwrap();
    let again = store.put_opts(&key, "b".into(), create()).await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    let got = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"a");
    store.delete(&key).await.unwrap();
}

/// Runs [`conformance`] on `remote` (an empty bucket of `server`) and prints the result; what
/// a failure means for the benchmarks is said in `agent/benches/throughput.rs`.
pub async fn print_conformance(server: &Server, remote: &Remote) {
    let failed = conformance(remote).await;
    if failed.is_empty() {
        println!("object_store conformance against {}: passed", server.name());
    }
    for (check, message) in &failed {
        let first = message.lines().next().unwrap_or_default();
        println!(
            "object_store conformance against {}: {check} failed: {first:.200}",
            server.name()
        );
    }
}
