//! The local API as a user of the socket sees it: the real server on a temp-dir socket, the real
//! client, and hand-written HTTP where a client would misbehave. The daemon side is a small
//! task answering the API's own `ApiRequest` channel.
#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap fails the test with the error it carries"
)]

use flink_agent::api::{
    self, ApiRequest, Client, ClientError, ConfigView, Limits, ReloadError, ReloadReport,
};
use flink_agent::config::{ConfigError, FieldError};
use flink_agent::firewall::FirewallStatus;
use flink_agent::jobs::{self, Answer, JobError};
use flink_agent::reconcile::{Outcome, Report};
use flink_agent::status::AgentStatus;
use flink_agent::supervisor::Target;
use nix::unistd::{getegid, geteuid, getgroups, Gid, Group};
use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Upper bound for any single step; a step that takes longer is a hang, i.e. a failure.
const STEP: Duration = Duration::from_secs(10);

const REFUSAL: &str = "advanced.number_of_task_slots: 0 is out of range, use 1 to 64";

/// What the stand-in daemon answers to a reload.
#[derive(Clone)]
enum Reload {
    Applied(ReloadReport),
    Refused,
}

impl Reload {
    fn answer(&self) -> Result<ReloadReport, ReloadError> {
        match self {
            Reload::Applied(report) => Ok(report.clone()),
            Reload::Refused => Err(ReloadError::Refused(ConfigError::Invalid {
                path: "agent.toml".into(),
                errors: vec![FieldError::new(
                    "advanced.number_of_task_slots",
                    "0 is out of range, use 1 to 64",
                )],
            })),
        }
    }
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {STEP:?}"),
    }
}

fn sample_status() -> AgentStatus {
    AgentStatus {
        node_id: "node-7".into(),
        cluster_id: "test".into(),
        agent_version: "0.1.0".into(),
        ready: true,
        ..AgentStatus::default()
    }
}

fn sample_firewall() -> FirewallStatus {
    FirewallStatus {
        enabled: true,
        table: "flink_agent".into(),
        repairs: 2,
        last_drift: vec!["table inet flink_agent does not exist".into()],
        ..FirewallStatus::default()
    }
}

/// A served socket plus the stand-in daemon loop behind it.
struct Served {
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    /// Ends when the server drops its sender; yields the restart targets it was asked for.
    daemon: JoinHandle<Vec<Target>>,
}

impl Served {
    async fn start(reload: Reload, limits: Limits) -> Served {
        let dir = tempfile::tempdir().unwrap();
        // A missing parent directory is created by `bind`.
        let path = dir.path().join("run/agent.sock");
        let listener = api::bind(&path, None).await.unwrap().with_limits(limits);
        let (tx, rx) = mpsc::channel(8);
        let daemon = tokio::spawn(answer(rx, reload));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, tx, async {
            let _ = stopped.await;
        }));
        Served {
            _dir: dir,
            path,
            stop,
            server,
            daemon,
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.path)
    }

    /// Stops the server, checks it removed its socket, and returns the restarts it forwarded.
    async fn stop(self) -> Vec<Target> {
        let _ = self.stop.send(());
        within("server shutdown", self.server).await.unwrap();
        assert!(!self.path.exists(), "the socket file outlived the server");
        within("daemon end", self.daemon).await.unwrap()
    }
}

async fn answer(mut rx: mpsc::Receiver<ApiRequest>, reload: Reload) -> Vec<Target> {
    let mut restarts = Vec::new();
    while let Some(request) = rx.recv().await {
        match request {
            ApiRequest::Status(reply) => drop(reply.send(sample_status())),
            ApiRequest::Config(reply) => drop(reply.send(ConfigView {
                revision: "abc123".into(),
                file: "config.yaml".into(),
                flink_version: "2.3.0".into(),
                entries: [("taskmanager.numberOfTaskSlots".to_string(), "1".to_string())].into(),
            })),
            ApiRequest::Reload(reply) => drop(reply.send(reload.answer())),
            ApiRequest::Firewall(reply) => drop(reply.send(sample_firewall())),
            ApiRequest::Tls(reply) => drop(reply.send(Default::default())),
            ApiRequest::Restart(target, reply) => {
                restarts.push(target);
                drop(reply.send(Ok(())));
            }
            ApiRequest::Jobs(command, reply) => drop(reply.send(match command {
                jobs::Command::List => Ok(Answer::List(Vec::new())),
                jobs::Command::Deploy(req) => Err(JobError::InvalidName(format!(
                    "`{}` is not a valid job name",
                    req.name
                ))),
                jobs::Command::Stop(name) | jobs::Command::Start(name) => {
                    Err(JobError::Unknown { name })
                }
                jobs::Command::Delete(name) => Err(JobError::Exists { name }),
            })),
            ApiRequest::Shutdown(reply) => drop(reply.send(())),
        }
    }
    restarts
}

/// Sends `request` as is (it should say `Connection: close`) and returns the status code and
/// body of the answer.
async fn raw(path: &Path, request: &[u8]) -> (u16, String) {
    within("raw exchange", async {
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer).to_string();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        (status, body)
    })
    .await
}

fn error_sentence(body: &str) -> String {
    let parsed: api::ErrorBody =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON error ({e}): {body:?}"));
    parsed.error
}

/// A group `bind` can give the socket that differs from the one the socket gets anyway, so the
/// assertion shows `bind` applied it; the caller's primary group when there is no other.
fn group_to_apply() -> Group {
    let egid = getegid();
    let candidates: Vec<Gid> = if geteuid().is_root() {
        (1..1000).map(Gid::from_raw).collect()
    } else {
        getgroups().unwrap_or_default()
    };
    candidates
        .into_iter()
        .filter(|gid| *gid != egid)
        .chain([egid])
        .find_map(|gid| Group::from_gid(gid).ok().flatten())
        .unwrap()
}

#[tokio::test]
async fn socket_is_0660_and_owned_by_the_configured_group() {
    let dir = tempfile::tempdir().unwrap();

    let plain = dir.path().join("plain.sock");
    let listener = api::bind(&plain, None).await.unwrap();
    let meta = std::fs::metadata(&plain).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), getegid().as_raw());
    drop(listener);
    assert!(!plain.exists(), "dropping the listener removes its socket");

    let group = group_to_apply();
    let grouped = dir.path().join("grouped.sock");
    let _listener = api::bind(&grouped, Some(&group.name)).await.unwrap();
    let meta = std::fs::metadata(&grouped).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), group.gid.as_raw(), "group {}", group.name);
    // Only the socket is left in the directory: no staging leftovers.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["grouped.sock"]);

    let err = api::bind(&dir.path().join("x.sock"), Some("no-such-group-here"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`no-such-group-here` does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn a_second_agent_refuses_a_live_socket_and_replaces_a_stale_one() {
    let served = Served::start(Reload::Applied(ReloadReport::default()), Limits::default()).await;

    let err = api::bind(&served.path, None).await.unwrap_err();
    let pid = std::process::id();
    assert_eq!(
        err.to_string(),
        format!(
            "another flink-agent is already serving on {} (pid {pid}); stop it first",
            served.path.display()
        )
    );
    // The refused attempt did not disturb the live agent.
    within("status", served.client().status()).await.unwrap();
    served.stop().await;

    // A socket left by a crashed agent: the file exists, nobody listens.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("agent.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = within("status", Client::new(&stale).status())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Stale { .. }), "{err}");
    let listener = api::bind(&stale, None).await.unwrap();
    assert!(within("probe", UnixStream::connect(&stale)).await.is_ok());
    drop(listener);

    // Something that is not a socket is never deleted.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let err = api::bind(&file, None).await.unwrap_err();
    assert!(err.to_string().contains("it is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[tokio::test]
async fn bad_requests_get_4xx_json_errors_and_serving_goes_on() {
    let limits = Limits::default();
    let served = Served::start(Reload::Applied(ReloadReport::default()), limits).await;
    let oversize = "x".repeat(limits.max_body_bytes + 1);
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: l\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let cases = [
        (
            "GET /v1/nothing HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n".to_string(),
            404,
            "no route for GET /v1/nothing",
        ),
        (
            "DELETE /v1/status HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n".to_string(),
            405,
            "DELETE is not allowed on /v1/status",
        ),
        (
            post("/v1/processes/datanode/restart", ""),
            404,
            "unknown process `datanode`; valid names are jobmanager, taskmanager, all",
        ),
        (post("/v1/reload", "{not json"), 400, "malformed request"),
        (
            post("/v1/reload", r#"{"force": true}"#),
            400,
            "unknown field `force`",
        ),
        (
            post("/v1/reload", &oversize),
            413,
            "larger than the limit of 65536 bytes",
        ),
    ];
    for (request, status, sentence) in cases {
        let (got, body) = raw(&served.path, request.as_bytes()).await;
        let first_line = request.lines().next().unwrap_or_default();
        assert_eq!(got, status, "{first_line}: {body}");
        let error = error_sentence(&body);
        assert!(error.contains(sentence), "{first_line}: {error}");
        within("status", served.client().status()).await.unwrap();
    }

    // Not HTTP at all: hyper answers 400 itself (there is no request to attach JSON to).
    let (got, _) = raw(&served.path, b"HELLO THERE\r\n\r\n").await;
    assert_eq!(got, 400);
    let status = within("status", served.client().status()).await.unwrap();
    assert_eq!(status, sample_status());

    assert!(
        served.stop().await.is_empty(),
        "no bad request reached the daemon"
    );
}

#[tokio::test]
async fn a_silent_client_does_not_stop_others_from_being_served() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let served = Served::start(Reload::Applied(ReloadReport::default()), limits).await;
    // Silent clients take every connection slot.
    let mut silent = Vec::new();
    for _ in 0..limits.max_connections {
        silent.push(UnixStream::connect(&served.path).await.unwrap());
    }
    // Served once the header timeout frees a slot.
    let status = within("status", served.client().status()).await.unwrap();
    assert_eq!(status.node_id, "node-7");
    // The server hung up on the silent clients, without an answer as there was no request.
    for mut stream in silent {
        let mut buf = Vec::new();
        let read = within("silent read", stream.read_to_end(&mut buf)).await;
        assert_eq!(read.unwrap(), 0, "{}", String::from_utf8_lossy(&buf));
    }
    served.stop().await;
}

#[tokio::test]
async fn a_refused_reload_is_422_with_every_problem() {
    let served = Served::start(Reload::Refused, Limits::default()).await;

    let request =
        "POST /v1/reload HTTP/1.1\r\nHost: l\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let (status, body) = raw(&served.path, request.as_bytes()).await;
    assert_eq!(status, 422);
    assert!(error_sentence(&body).contains(REFUSAL), "{body}");

    let err = within("reload", served.client().reload())
        .await
        .unwrap_err();
    match &err {
        ClientError::Api { status, message } => {
            assert_eq!(*status, 422);
            assert!(message.contains(REFUSAL), "{message}");
        }
        other => panic!("expected the agent's refusal, got {other:?}"),
    }
    assert!(err.to_string().contains(REFUSAL));
    served.stop().await;
}

#[tokio::test]
async fn reload_restart_and_config_reach_the_daemon() {
    let report = ReloadReport {
        revision: "abc123".into(),
        changed_keys: vec!["advanced.number_of_task_slots".into()],
        concerns: vec![Report::new(
            "supervisor",
            Outcome::Restarted {
                processes: vec!["taskmanager".into()],
            },
        )],
        restarted: vec!["taskmanager".into()],
        flink_config_changed: true,
    };
    let served = Served::start(Reload::Applied(report.clone()), Limits::default()).await;
    let client = served.client();
    assert_eq!(within("reload", client.reload()).await.unwrap(), report);
    within("restart", client.restart(Target::TaskManager))
        .await
        .unwrap();
    within("restart", client.restart(Target::All))
        .await
        .unwrap();
    let config = within("config", client.config()).await.unwrap();
    assert_eq!(config.entries["taskmanager.numberOfTaskSlots"], "1");
    let firewall: FirewallStatus = within("firewall", client.get_json("/v1/firewall"))
        .await
        .unwrap();
    assert_eq!(firewall, sample_firewall());
    assert_eq!(served.stop().await, [Target::TaskManager, Target::All]);
}

/// Every route the API lists is served (no 404 or 405), and typed errors of the daemon reach
/// the client with their documented status.
#[tokio::test]
async fn every_route_is_served_and_each_error_gets_its_status() {
    let report = ReloadReport::default();
    let served = Served::start(Reload::Applied(report), Limits::default()).await;
    let cases: [(&str, &str, &str, u16); 12] = [
        ("GET", "/v1/status", "", 200),
        ("GET", "/v1/config", "", 200),
        ("GET", "/v1/firewall", "", 200),
        ("GET", "/v1/tls", "", 200),
        ("POST", "/v1/reload", "{}", 200),
        ("POST", "/v1/processes/taskmanager/restart", "{}", 200),
        ("GET", "/v1/jobs", "", 200),
        ("POST", "/v1/jobs", r#"{"name":"a b","jar":"/x.jar"}"#, 400),
        ("POST", "/v1/jobs/nope/stop", "{}", 404),
        ("POST", "/v1/jobs/nope/start", "{}", 404),
        ("POST", "/v1/jobs/taken/delete", "{}", 409),
        ("POST", "/v1/shutdown", "{}", 200),
    ];
    for (method, path, body, want) in cases {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: l\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, answer) = raw(&served.path, request.as_bytes()).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
    }
    let (status, body) = raw(
        &served.path,
        b"GET /v1/nope HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    for (method, path, _, _) in cases {
        let listed = format!(
            "{method} {}",
            path.replace("taskmanager", "{jobmanager|taskmanager|all|zookeeper}")
                .replace("/nope/", "/{name}/")
                .replace("/taken/", "/{name}/")
        );
        assert!(body.contains(&listed), "{listed} missing from {body}");
    }
    served.stop().await;
}

#[tokio::test]
async fn an_unanswered_request_is_503_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let limits = Limits {
        query_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let listener = api::bind(&path, None).await.unwrap().with_limits(limits);
    let (tx, mut rx) = mpsc::channel(8);
    // A daemon loop that is stuck: it takes requests but never answers.
    let stuck = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(request) = rx.recv().await {
            held.push(request);
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, tx, async {
        let _ = stopped.await;
    }));

    let err = within("status", Client::new(&path).status())
        .await
        .unwrap_err();
    match &err {
        ClientError::Api { status, message } => {
            assert_eq!(*status, 503);
            assert!(message.contains("did not answer within 200ms"), "{message}");
        }
        other => panic!("expected 503, got {other:?}"),
    }

    let _ = stop.send(());
    within("server shutdown", server).await.unwrap();
    within("daemon end", stuck).await.unwrap();
}

#[tokio::test]
async fn the_client_says_what_to_do_when_no_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let err = within("status", Client::new(&path).status())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no agent is running (no socket at {}); start it with `systemctl start flink-agent`",
            path.display()
        )
    );
}

/// A listener that accepts but never answers: the client gives up after its timeout (job
/// operations get a longer one) and says where to look, instead of hanging.
#[tokio::test]
async fn the_client_gives_up_on_a_silent_agent_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn);
        }
    });
    let timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = within("status", Client::new(&path).with_timeout(timeout).status())
        .await
        .unwrap_err();
    assert!(started.elapsed() >= timeout);
    assert_eq!(
        err.to_string(),
        format!(
            "the agent on {} did not answer within 300ms; see `systemctl status flink-agent`",
            path.display()
        )
    );
}
