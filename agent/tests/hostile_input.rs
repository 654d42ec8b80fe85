//! Bad input and hostile clients (issue #13, "Bad input, hostile clients"), as corpora rather
//! than single cases:
//!
//! - every leaf key of the reference config (`config/agent.toml`), mutated every way a value
//!   can be wrong, must be refused with an error at that key's dotted path; the few mutations
//!   that are valid by design are listed with the reason;
//! - requests a hostile or broken local client can send to the real API server (malformed
//!   HTTP, huge bodies, bad JSON, job names and jar paths with `..`, NUL, newlines or shell
//!   metacharacters) must each get a 4xx, the server must keep serving, and nothing on disk may
//!   change; the daemon side is a stand-in except for jobs, which go to the real jobs service
//!   (where names and jars are validated) on a temp-dir state dir and `file://` store;
//! - a user outside the socket's group (`nobody`) cannot connect at all.
//!
//! Each corpus prints its figures (tried, refused) so a run shows what was covered.
#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap fails the test with the error it carries"
)]

use flink_agent::api::{self, ApiRequest, Client, ConfigView, Limits, ReloadReport};
use flink_agent::checkpoints::{JobNames, Sync, SyncSettings};
use flink_agent::config::{self, CheckpointsSection, ConfigError, FieldError, ObjectStoreSection};
use flink_agent::flinkrest::Endpoint;
use flink_agent::jobs::{self, JobRecord, RunState};
use flink_agent::status::AgentStatus;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use toml::{Table, Value};

// ------------------------------------------------------------------------------------------
// Config corpus
// ------------------------------------------------------------------------------------------

/// One way to break a config: `value` at the dotted `key`, described by `what`.
struct Mutation {
    /// TOML path segments of the key (a new key for an unknown-key mutation).
    segments: Vec<String>,
    what: &'static str,
    value: Value,
}

impl Mutation {
    fn key(&self) -> String {
        self.segments.join(".")
    }

    /// `base` with this mutation applied.
    fn apply(&self, base: &Table) -> Table {
        let mut table = base.clone();
        let (last, parents) = self.segments.split_last().unwrap();
        let mut at = &mut table;
        for segment in parents {
            at = at.get_mut(segment).and_then(Value::as_table_mut).unwrap();
        }
        at.insert(last.clone(), self.value.clone());
        table
    }
}

/// Mutations a value may be valid under, by design: (key, mutation, why it is accepted).
/// Each entry must still be accepted, or the test fails and the entry goes.
const VALID_BY_DESIGN: &[(&str, &str, &str)] = &[
    (
        "advanced.restart_strategy.delay_secs",
        "zero",
        "0 to 3600: restarting without a pause is a legitimate choice",
    ),
    (
        "advanced.flink_config.bogus_key",
        "unknown key",
        "the pass-through of Flink options: any well-formed option name is allowed",
    ),
];

/// The reference config, parsed as plain TOML.
fn reference() -> Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent.toml");
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

/// A path-like value: an absolute path, or a `file://` URL.
fn is_path_like(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.starts_with('/') || s.starts_with("file://"))
}

fn table_of(key: &str, value: Value) -> Value {
    Value::Table(Table::from_iter([(key.to_string(), value)]))
}

/// 1 MiB: far beyond any sensible value, small enough to parse quickly.
fn huge_string() -> Value {
    Value::String("a".repeat(1 << 20))
}

/// Every way to get the value `value` wrong, whatever its key.
fn wrong_values(value: &Value) -> Vec<(&'static str, Value)> {
    let table = ("table for scalar", table_of("x", Value::Integer(1)));
    let array = ("array for scalar", Value::Array(vec![Value::Integer(1)]));
    let mut out = match value {
        Value::String(_) => vec![
            ("number for string", Value::Integer(1)),
            table,
            array,
            ("empty string", Value::String(String::new())),
            ("huge string", huge_string()),
        ],
        Value::Integer(_) | Value::Float(_) => vec![
            ("string for number", Value::String("x".into())),
            table,
            array,
            ("negative", Value::Integer(-1)),
            ("zero", Value::Integer(0)),
            ("1e18", Value::Integer(1_000_000_000_000_000_000)),
            ("i64::MAX", Value::Integer(i64::MAX)),
        ],
        Value::Boolean(_) => vec![
            ("string for bool", Value::String("yes".into())),
            ("number for bool", Value::Integer(1)),
            table,
            array,
        ],
        Value::Array(items) => {
            let mut out = vec![
                ("string for array", Value::String("x".into())),
                ("table for array", table_of("x", Value::Integer(1))),
                (
                    "table in array",
                    Value::Array(vec![table_of("x", Value::Integer(1))]),
                ),
            ];
            if items.first().is_some_and(is_path_like) {
                out.extend(traversals().map(|(what, v)| (what, Value::Array(vec![v]))));
            }
            out
        }
        Value::Datetime(_) | Value::Table(_) => Vec::new(),
    };
    if is_path_like(value) {
        out.extend(traversals());
    }
    out
}

/// Paths that climb out of where they are meant to be, or depend on the working directory.
fn traversals() -> impl Iterator<Item = (&'static str, Value)> {
    [
        ("path traversal", "../../etc/passwd"),
        ("relative path", "relative/dir"),
    ]
    .into_iter()
    .map(|(what, path)| (what, Value::String(path.into())))
}

/// Every mutation of `table` (at `prefix`): each leaf's wrong values, a scalar in place of
/// each sub-table, and an unknown key in each table.
fn mutations(table: &Table, prefix: &[String]) -> Vec<Mutation> {
    let at = |key: &str| [prefix, &[key.to_string()]].concat();
    let mut out = vec![Mutation {
        segments: at(if prefix.is_empty() {
            "bogus_section"
        } else {
            "bogus_key"
        }),
        what: "unknown key",
        value: if prefix.is_empty() {
            table_of("x", Value::Integer(1))
        } else {
            Value::String("x".into())
        },
    }];
    for (key, value) in table {
        match value {
            Value::Table(inner) => {
                out.push(Mutation {
                    segments: at(key),
                    what: "scalar for table",
                    value: Value::String("x".into()),
                });
                out.extend(mutations(inner, &at(key)));
            }
            leaf => out.extend(
                wrong_values(leaf)
                    .into_iter()
                    .map(|(what, value)| Mutation {
                        segments: at(key),
                        what,
                        value,
                    }),
            ),
        }
    }
    out
}

/// Whether an error sits at `key` (or inside it: an array element, a sub-key).
fn names_key(errors: &[FieldError], key: &str) -> bool {
    errors.iter().any(|e| {
        e.path == key
            || e.path.starts_with(&format!("{key}."))
            || e.path.starts_with(&format!("{key}["))
    })
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
        None => text.to_string(),
    }
}

/// What the library made of one mutated config.
enum Verdict {
    RefusedNamingKey,
    ValidByDesign,
    Wrong(String),
}

fn judge(mutation: &Mutation, base: &Table) -> Verdict {
    let text = toml::to_string(&mutation.apply(base)).unwrap();
    let key = mutation.key();
    let allowed = VALID_BY_DESIGN
        .iter()
        .any(|(k, what, _)| *k == key && *what == mutation.what);
    match config::parse(&text, "mutated.toml") {
        Ok(_) if allowed => Verdict::ValidByDesign,
        Ok(_) => Verdict::Wrong("accepted".into()),
        Err(_) if allowed => Verdict::Wrong("refused, but listed as valid by design".into()),
        Err(ConfigError::Invalid { errors, .. }) if names_key(&errors, &key) => {
            Verdict::RefusedNamingKey
        }
        Err(e) => Verdict::Wrong(format!(
            "refused without naming it: {}",
            shorten(&e.to_string())
        )),
    }
}

/// The reference config's every key, mutated: each refused with its key named, or valid by
/// design (listed above, with why).
#[test]
fn every_config_mutation_is_refused_naming_its_key() {
    let base = reference();
    config::parse(&toml::to_string(&base).unwrap(), "agent.toml").unwrap();
    let corpus = mutations(&base, &[]);
    let (mut refused, mut valid, mut wrong) = (0, Vec::new(), Vec::new());
    for mutation in &corpus {
        match judge(mutation, &base) {
            Verdict::RefusedNamingKey => refused += 1,
            Verdict::ValidByDesign => valid.push((mutation.key(), mutation.what)),
            Verdict::Wrong(why) => {
                wrong.push(format!("{} ({}): {why}", mutation.key(), mutation.what))
            }
        }
    }
    eprintln!(
        "config corpus: {} mutations, {refused} refused naming the field, {} valid by design",
        corpus.len(),
        valid.len()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    for (key, what, _) in VALID_BY_DESIGN {
        assert!(
            valid.iter().any(|(k, w)| k == key && w == what),
            "{key} ({what}) is listed as valid by design but was not tried"
        );
    }
    assert!(corpus.len() > 300, "the corpus shrank to {}", corpus.len());
}

/// A machine in a temp dir the reference config validates on: a (file-level) Flink
/// distribution and Java home, state and data dirs, a `file://` store.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for exe in [
            "flink/bin/jobmanager.sh",
            "flink/bin/taskmanager.sh",
            "jdk/bin/java",
        ] {
            executable(&d.join(exe));
        }
        std::fs::create_dir_all(d.join("flink/lib")).unwrap();
        std::fs::write(d.join("flink/lib/flink-dist-2.3.0.jar"), b"").unwrap();
        Machine { dir }
    }

    /// The reference config with every path on this machine.
    fn config(&self) -> Table {
        let d = self.dir.path().display();
        let mut base = reference();
        let mut set = |section: &str, key: &str, value: String| {
            base[section]
                .as_table_mut()
                .unwrap()
                .insert(key.into(), Value::String(value));
        };
        set("agent", "state_dir", format!("{d}/state"));
        set("agent", "socket", format!("{d}/agent.sock"));
        set("flink", "home", format!("{d}/flink"));
        set("flink", "java_home", format!("{d}/jdk"));
        set("flink", "data_dir", format!("{d}/data"));
        set("flink", "log_dir", format!("{d}/log"));
        set("object_store", "url", format!("file://{d}/store"));
        base
    }

    /// `flink-agent validate --config` on `table`: exit code and output.
    fn validate(&self, table: &Table) -> (i32, String) {
        let path = self.dir.path().join("agent.toml");
        std::fs::write(&path, toml::to_string(table).unwrap()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_flink-agent"))
            .arg("validate")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }
}

fn executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Mutation kinds whose refusal is the library's (`config::parse` wants absolute paths): in a
/// file, relative paths are taken relative to the file's directory, as the reference says.
const RELATIVE_IN_A_FILE: &[&str] = &["path traversal", "relative path"];

/// The binary refuses mutated files with exit 78 naming the key: one mutation of each kind
/// (the whole corpus through a process each would be slow), on a machine where the unmutated
/// file is valid, so the refusal is the mutation's.
#[test]
fn validate_exits_78_naming_the_key_for_a_sample() {
    let machine = Machine::new();
    let base = machine.config();
    let (code, out) = machine.validate(&base);
    assert_eq!(code, 0, "the unmutated config must be valid here: {out}");
    let mut kinds = Vec::new();
    for mutation in mutations(&base, &[]) {
        if kinds.contains(&mutation.what) || RELATIVE_IN_A_FILE.contains(&mutation.what) {
            continue;
        }
        if !matches!(judge(&mutation, &base), Verdict::RefusedNamingKey) {
            continue;
        }
        kinds.push(mutation.what);
        let (code, out) = machine.validate(&mutation.apply(&base));
        let key = mutation.key();
        assert_eq!(code, 78, "{key} ({}): {}", mutation.what, shorten(&out));
        assert!(out.contains(&key), "{key} not named: {}", shorten(&out));
    }
    eprintln!(
        "validate: {} mutated files, each exit 78 naming its key",
        kinds.len()
    );
    assert!(kinds.len() >= 12, "only {kinds:?}");
}

// ------------------------------------------------------------------------------------------
// Socket corpus
// ------------------------------------------------------------------------------------------

/// Upper bound for any single exchange; longer is a hang, i.e. a failure.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {STEP:?}"),
    }
}

/// The real API server on a temp-dir socket. Behind it, job commands go to the real jobs
/// service (no Flink: its REST endpoint is a closed port); every other request is answered by
/// a stand-in that records the ones that would change something.
struct Agent {
    dir: tempfile::TempDir,
    socket: PathBuf,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    /// Ends when the server drops its sender; yields the actions that reached it.
    daemon: JoinHandle<Vec<&'static str>>,
}

impl Agent {
    async fn start(limits: Limits, group: Option<&str>) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/agent.sock");
        seed_victim(&dir.path().join("state"));
        let jobs = jobs_service(dir.path());
        let listener = api::bind(&socket, group).await.unwrap().with_limits(limits);
        let (tx, rx) = mpsc::channel(8);
        let daemon = tokio::spawn(stand_in(rx, jobs));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, tx, async {
            let _ = stopped.await;
        }));
        Agent {
            dir,
            socket,
            stop,
            server,
            daemon,
        }
    }

    /// Stops the server; returns the actions (reload, restart, shutdown) that reached it.
    async fn stop(self) -> Vec<&'static str> {
        let _ = self.stop.send(());
        within("server shutdown", self.server).await.unwrap();
        within("daemon end", self.daemon).await.unwrap()
    }

    /// Every file under the agent's dirs (state, Flink data, store) with its content.
    fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out.retain(|(path, _)| !path.starts_with(self.dir.path().join("run")));
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.push((path.clone(), Vec::new()));
            walk(&path, out);
        } else {
            let content = std::fs::read(&path).unwrap_or_default();
            out.push((path, content));
        }
    }
}

/// A deployed, stopped job `victim`: the target of names that climb out of the jobs dir.
fn seed_victim(state_dir: &Path) {
    let jobs = state_dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let record = JobRecord {
        name: "victim".into(),
        jar_name: "victim.jar".into(),
        jar_sha256: "00".into(),
        entry_class: None,
        parallelism: None,
        args: Vec::new(),
        flink_config: Default::default(),
        deployed_at: 0,
        generation: 0,
    };
    let run = RunState {
        flink_job_ids: vec!["0".repeat(32)],
        stopped: true,
        ..RunState::default()
    };
    std::fs::write(
        jobs.join("victim.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    std::fs::write(
        jobs.join("victim.run.json"),
        serde_json::to_vec(&run).unwrap(),
    )
    .unwrap();
    std::fs::write(jobs.join("victim.jar"), b"PK\x03\x04").unwrap();
}

/// The daemon's jobs service on `root`, with a `file://` store and no Flink.
fn jobs_service(root: &Path) -> jobs::Service {
    let (state_dir, data_dir) = (root.join("state"), root.join("data"));
    std::fs::create_dir_all(root.join("store")).unwrap();
    let sync = Sync::start(
        SyncSettings {
            store: ObjectStoreSection {
                url: format!("file://{}/store", root.display()),
                ..ObjectStoreSection::default()
            },
            cluster_id: "test".into(),
            flink_version: "2.3.0".into(),
            state_dir: state_dir.clone(),
            data_dir: data_dir.clone(),
            checkpoints: CheckpointsSection::default(),
            shared: false,
            rest: None,
        },
        JobNames::default(),
        false,
    )
    .unwrap();
    let settings = jobs::Settings {
        state_dir,
        data_dir,
        endpoint: Endpoint::new("127.0.0.1", 1),
        ha_cluster_id: None,
    };
    jobs::Service::start(settings, sync, None).unwrap()
}

/// The daemon loop: jobs to the real service, the rest answered here; what would change
/// something is recorded.
async fn stand_in(mut rx: mpsc::Receiver<ApiRequest>, jobs: jobs::Service) -> Vec<&'static str> {
    let mut actions = Vec::new();
    while let Some(request) = rx.recv().await {
        match request {
            ApiRequest::Status(reply) => drop(reply.send(AgentStatus {
                node_id: "node-7".into(),
                ready: true,
                ..AgentStatus::default()
            })),
            ApiRequest::Config(reply) => drop(reply.send(ConfigView {
                revision: "abc123".into(),
                file: "config.yaml".into(),
                flink_version: "2.3.0".into(),
                entries: Default::default(),
            })),
            ApiRequest::Firewall(reply) => drop(reply.send(Default::default())),
            ApiRequest::Tls(reply) => drop(reply.send(Default::default())),
            ApiRequest::Reload(reply) => {
                actions.push("reload");
                drop(reply.send(Ok(ReloadReport::default())));
            }
            ApiRequest::Restart(_, reply) => {
                actions.push("restart");
                drop(reply.send(Ok(())));
            }
            ApiRequest::Shutdown(reply) => {
                actions.push("shutdown");
                let _ = reply.send(());
            }
            ApiRequest::Jobs(command, reply) => {
                let jobs = jobs.clone();
                tokio::spawn(async move { drop(reply.send(jobs.handle(command).await)) });
            }
        }
    }
    jobs.shutdown();
    actions
}

/// Sends `request` and reads until the server closes: `None` when it closed without answering.
/// The write runs on its own, so a server that answers before reading a huge body is seen.
async fn exchange(socket: &Path, request: Vec<u8>) -> Option<(u16, String)> {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may hang up mid-body once it has answered: not an error here.
        let _ = write.write_all(&request).await;
        write
    });
    let mut answer = Vec::new();
    let _ = within("reading the answer", read.read_to_end(&mut answer)).await;
    drop(writer.await);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: l\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Percent-encodes everything but `[a-z0-9]`, as a client putting `name` in a URL would.
fn encoded(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'0'..=b'9' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Job names no job may have: each would name a path outside the jobs dir, confuse a shell or
/// a log line, or simply break the naming rule.
fn hostile_names() -> Vec<(&'static str, String)> {
    vec![
        ("dot-dot", "..".into()),
        ("dot-dot to another job", "../jobs/victim".into()),
        ("absolute path", "/etc/passwd".into()),
        ("NUL", "victim\0x".into()),
        ("newline", "victim\nINFO forged log line".into()),
        ("semicolon", "a;rm -rf /".into()),
        ("command substitution", "$(reboot)".into()),
        ("backticks", "`reboot`".into()),
        ("upper case", "Victim".into()),
        ("64 characters", "a".repeat(64)),
        ("10 KiB", "a".repeat(10 * 1024)),
    ]
}

/// Jar paths the agent must refuse to deploy (none is a readable jar).
fn hostile_jars() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("jar traversal", "../../../../etc/passwd", "is not a jar"),
        ("jar not a jar", "/etc/passwd", "is not a jar"),
        ("jar relative", "job.jar", "cannot be read"),
        ("jar empty", "", "cannot be read"),
        ("jar NUL", "/tmp/x\0.jar", "cannot be read"),
        ("jar newline", "/tmp/x\n.jar", "cannot be read"),
        ("jar semicolon", "/tmp/x.jar; rm -rf /", "cannot be read"),
        (
            "jar command substitution",
            "/tmp/$(reboot).jar",
            "cannot be read",
        ),
        ("jar backticks", "/tmp/`reboot`.jar", "cannot be read"),
        ("jar a directory", "/tmp", "cannot be read"),
    ]
}

/// What a request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The API's own refusal: this status and a JSON error whose sentence contains the
    /// fragment (the field, or what is wrong).
    Refusal(u16, &'static str),
    /// Bytes hyper cannot parse as a request never reach a route: hyper answers a bare 4xx
    /// (no JSON: there is no request to answer in the API's terms) and closes.
    Unparsable,
}

struct Case {
    what: String,
    request: Vec<u8>,
    expect: Expect,
}

fn case(what: impl Into<String>, request: Vec<u8>, expect: Expect) -> Case {
    Case {
        what: what.into(),
        request,
        expect,
    }
}

fn malformed_http() -> Vec<Case> {
    let raw = |what: &str, text: &[u8]| case(what, text.to_vec(), Expect::Unparsable);
    let huge_header = format!(
        "GET /v1/status HTTP/1.1\r\nHost: l\r\nX-Junk: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let huge_uri = format!(
        "GET /v1/{} HTTP/1.1\r\nHost: l\r\n\r\n",
        "a".repeat(1 << 20)
    );
    vec![
        raw("method only", b"GET\r\n\r\n"),
        raw("no version", b"GET /v1/status\r\n\r\n"),
        raw("HTTP/9.9", b"GET /v1/status HTTP/9.9\r\nHost: l\r\n\r\n"),
        raw("header without colon", b"GET /v1/status HTTP/1.1\r\nHost l\r\n\r\n"),
        raw("space in header name", b"GET /v1/status HTTP/1.1\r\nBad Header: x\r\n\r\n"),
        raw("NUL in header", b"GET /v1/status HTTP/1.1\r\nHost: l\0x\r\n\r\n"),
        raw("raw NUL in path", b"POST /v1/jobs/a\0b/stop HTTP/1.1\r\nHost: l\r\n\r\n"),
        raw("raw newline in path", b"POST /v1/jobs/a\nb/stop HTTP/1.1\r\nHost: l\r\n\r\n"),
        raw(
            "Content-Length not a number",
            b"POST /v1/reload HTTP/1.1\r\nHost: l\r\nContent-Length: abc\r\n\r\n",
        ),
        raw(
            "two Content-Lengths",
            b"POST /v1/reload HTTP/1.1\r\nHost: l\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        ),
        raw("1 MiB header", huge_header.as_bytes()),
        raw("1 MiB URI", huge_uri.as_bytes()),
        raw("binary garbage", &[0xff; 4096]),
    ]
}

fn bodies() -> Vec<Case> {
    let big = vec![b'x'; 10 << 20];
    let mut chunked =
        b"POST /v1/jobs HTTP/1.1\r\nHost: l\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..160 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend_from_slice(&[b'x'; 0x10000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let bad_chunk = b"POST /v1/jobs HTTP/1.1\r\nHost: l\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n".to_vec();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let jobs = |what: &str, body: &str, fragment| {
        case(
            what,
            post("/v1/jobs", body.as_bytes()),
            Expect::Refusal(400, fragment),
        )
    };
    vec![
        case(
            "10 MiB body",
            post("/v1/jobs", &big),
            Expect::Refusal(413, "larger than the limit"),
        ),
        case(
            "10 MiB chunked body",
            chunked,
            Expect::Refusal(413, "larger than the limit"),
        ),
        case(
            "broken chunked body",
            bad_chunk,
            Expect::Refusal(400, "malformed request"),
        ),
        case(
            "not UTF-8",
            post("/v1/jobs", &[0xff, 0xfe, 0x00]),
            Expect::Refusal(400, "malformed request"),
        ),
        jobs("invalid JSON", "{not json", "malformed request"),
        jobs("nested 10000 deep", &deep, "malformed request"),
        jobs("array body", "[]", "malformed request"),
        jobs("string body", "\"victim\"", "malformed request"),
        jobs("name a number", r#"{"name": 5, "jar": "/x.jar"}"#, "`name`"),
        jobs("no jar", r#"{"name": "fresh"}"#, "`jar`"),
        jobs(
            "negative parallelism",
            r#"{"name": "fresh", "jar": "/x.jar", "parallelism": -1}"#,
            "`parallelism`",
        ),
        jobs(
            "args a string",
            r#"{"name": "fresh", "jar": "/x.jar", "args": "--rm"}"#,
            "`args`",
        ),
        jobs(
            "unknown field",
            r#"{"name": "fresh", "jar": "/x.jar", "paralelism": 4}"#,
            "unknown field `paralelism`",
        ),
        jobs(
            "duplicate name",
            r#"{"name": "fresh", "name": "victim", "jar": "/x.jar"}"#,
            "`name`",
        ),
    ]
}

fn routes() -> Vec<Case> {
    let refusal = |what: &str, request, status, fragment| {
        case(what, request, Expect::Refusal(status, fragment))
    };
    let method = |m: &str, path: &str| {
        format!("{m} {path} HTTP/1.1\r\nHost: l\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    };
    vec![
        refusal(
            "unknown route",
            get("/v1/jobs/victim"),
            404,
            "no route for GET /v1/jobs/victim",
        ),
        refusal("traversal route", get("/../../etc/passwd"), 404, "no route"),
        refusal(
            "dot-dot in route",
            get("/v1/status/../config"),
            404,
            "no route",
        ),
        refusal(
            "unknown job action",
            post("/v1/jobs/victim/explode", b""),
            400,
            "unknown job action `explode`",
        ),
        refusal(
            "PUT",
            method("PUT", "/v1/jobs"),
            405,
            "PUT is not allowed on /v1/jobs",
        ),
        refusal(
            "invented method",
            method("BREW", "/v1/status"),
            405,
            "BREW is not allowed",
        ),
        refusal(
            "process traversal",
            post(
                &format!("/v1/processes/{}/restart", encoded("../../bin/sh")),
                b"",
            ),
            404,
            "unknown process `../../bin/sh`",
        ),
    ]
}

/// Hostile names in every place a job name goes, and hostile jar paths.
fn names_and_jars() -> Vec<Case> {
    let mut out = Vec::new();
    for (what, name) in hostile_names() {
        for action in ["stop", "start", "delete"] {
            let path = format!("/v1/jobs/{}/{action}", encoded(&name));
            out.push(case(
                format!("{action}: {what}"),
                post(&path, b""),
                Expect::Refusal(400, "job name"),
            ));
        }
        let body = serde_json::json!({ "name": name, "jar": "/x.jar" }).to_string();
        out.push(case(
            format!("deploy: {what}"),
            post("/v1/jobs", body.as_bytes()),
            Expect::Refusal(400, "job name"),
        ));
    }
    out.push(case(
        "deploy: empty name",
        post("/v1/jobs", br#"{"name": "", "jar": "/x.jar"}"#),
        Expect::Refusal(400, "job name"),
    ));
    out.push(case(
        "stop: raw dot-dot",
        post("/v1/jobs/../stop", b""),
        Expect::Refusal(400, "job name"),
    ));
    for (what, jar, fragment) in hostile_jars() {
        let body = serde_json::json!({ "name": "fresh", "jar": jar }).to_string();
        out.push(case(
            what,
            post("/v1/jobs", body.as_bytes()),
            Expect::Refusal(400, fragment),
        ));
    }
    out
}

/// Checks one answer against what was expected; the problem, if any.
fn check(case: &Case, answer: Option<(u16, String)>) -> Result<(), String> {
    let Some((status, body)) = answer else {
        return Err("the connection closed without an answer".into());
    };
    match case.expect {
        Expect::Unparsable if (400..500).contains(&status) => Ok(()),
        Expect::Unparsable => Err(format!("{status}, not a 4xx: {}", shorten(&body))),
        Expect::Refusal(want, fragment) => {
            let error = serde_json::from_str::<api::ErrorBody>(&body)
                .map_err(|e| format!("{status}, not a JSON error ({e}): {}", shorten(&body)))?
                .error;
            if status == want && error.contains(fragment) {
                Ok(())
            } else {
                Err(format!(
                    "{status} (want {want} naming {fragment:?}): {}",
                    shorten(&error)
                ))
            }
        }
    }
}

/// Every hostile request gets its 4xx, the agent answers a normal request after each, nothing
/// on disk changes, and no bad request reaches the daemon as an action.
#[tokio::test]
async fn every_hostile_request_is_refused_and_serving_goes_on() {
    let agent = Agent::start(Limits::default(), None).await;
    let client = Client::new(&agent.socket);
    let before = agent.files();
    let corpus: Vec<Case> = [malformed_http(), bodies(), routes(), names_and_jars()]
        .into_iter()
        .flatten()
        .collect();
    let (mut wrong, mut json, mut bare) = (Vec::new(), 0, 0);
    for case in &corpus {
        let answer = exchange(&agent.socket, case.request.clone()).await;
        match check(case, answer) {
            Ok(()) if matches!(case.expect, Expect::Unparsable) => bare += 1,
            Ok(()) => json += 1,
            Err(why) => wrong.push(format!("{}: {why}", case.what)),
        }
        within("status after a hostile request", client.status())
            .await
            .unwrap_or_else(|e| panic!("not serving after {}: {e}", case.what));
    }
    eprintln!(
        "socket corpus: {} requests, {} refused with 4xx ({json} with the API's JSON error naming the field, {bare} unparsable, answered by hyper)",
        corpus.len(),
        json + bare
    );
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let listed: serde_json::Value = within("jobs", client.get_json("/v1/jobs")).await.unwrap();
    assert_eq!(listed[0]["name"], "victim", "{listed}");
    assert!(
        agent.files() == before,
        "a refused request changed files on disk"
    );
    assert_eq!(
        agent.stop().await,
        Vec::<&str>::new(),
        "no bad request may act"
    );
}

/// A client that sends its request one byte per 200 ms holds one connection, not the server:
/// others are served meanwhile, and it is cut off once the header read timeout is over (a
/// closed connection is the documented answer to headers that never complete).
#[tokio::test]
async fn a_slow_client_does_not_hold_up_others() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let agent = Agent::start(limits, None).await;
    let mut slow = UnixStream::connect(&agent.socket).await.unwrap();
    let dribble = tokio::spawn(async move {
        let started = std::time::Instant::now();
        for byte in get("/v1/status") {
            if slow.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut answer = Vec::new();
        let _ = slow.read_to_end(&mut answer).await;
        (started.elapsed(), answer)
    });
    let client = Client::new(&agent.socket);
    for _ in 0..5 {
        let started = std::time::Instant::now();
        within("status beside a slow client", client.status())
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (took, answer) = within("the slow client's end", dribble).await.unwrap();
    assert!(
        took < limits.header_read_timeout + Duration::from_secs(1),
        "the slow client held its connection for {took:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    let first_line = answer.lines().next().unwrap_or("nothing, closed");
    eprintln!("slow client: cut off after {took:?}, answered: {first_line}");
    assert!(
        !answer.contains(" 200 "),
        "a request that never completed was served: {answer}"
    );
    agent.stop().await;
}

/// `nobody` cannot use the socket: it is not in the socket's group, and the socket is 0660.
/// As a control, the same user given that group gets in, so the refusal is the socket's
/// permissions (its directory is opened up to everyone for the test). Needs root to switch
/// users: skipped otherwise, and a failure on CI, where the suite runs as root.
#[tokio::test]
async fn a_user_outside_the_socket_group_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run this as root");
        eprintln!("skipped: needs root to run a client as nobody");
        return;
    }
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(1))
        .unwrap()
        .unwrap();
    let agent = Agent::start(Limits::default(), Some(&group.name)).await;
    for dir in [agent.dir.path(), agent.socket.parent().unwrap()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let outside = status_as_nobody(&agent.socket, None).await;
    assert_eq!(outside.0, Some(1), "{}", outside.1);
    assert!(
        outside.1.contains("you may not use") && outside.1.contains("join the group"),
        "{}",
        outside.1
    );
    let member = status_as_nobody(&agent.socket, Some(group.gid)).await;
    assert_eq!(
        member.0,
        Some(0),
        "a member of {} is let in: {}",
        group.name,
        member.1
    );
    agent.stop().await;
}

/// `flink-agent status --socket` run as nobody:nogroup, with `group` as its only
/// supplementary group: exit code and output.
async fn status_as_nobody(socket: &Path, group: Option<nix::unistd::Gid>) -> (Option<i32>, String) {
    let groups = match group {
        Some(gid) => format!("--groups={gid}"),
        None => "--clear-groups".into(),
    };
    let out = within(
        "the CLI as nobody",
        tokio::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", &groups, "--"])
            .arg(env!("CARGO_BIN_EXE_flink-agent"))
            .arg("status")
            .arg("--socket")
            .arg(socket)
            .output(),
    )
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
