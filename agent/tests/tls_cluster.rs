//! End-to-end TLS on a real Flink 2.3 cluster run by the real agent, probed from outside with
//! `openssl s_client` and `curl` the way an attacker or an operator would. One cluster serves
//! the scenarios in sequence (each changes what the next one starts from):
//!
//! 1. `ca` mode: every internal port speaks only mutual TLS 1.2 with a node certificate of the
//!    cluster's CA (plaintext gets no data; TLS 1.0/1.1, no client certificate, a certificate of
//!    another CA and a REST client certificate are refused); REST answers plain http with a
//!    redirect only and https with a client certificate of the REST client CA (the agent's own,
//!    an operator's from `flink-agent tls client-cert`). No password in `ps`, logs, status, the
//!    config view or the supervisor's state file.
//! 2. A job over TLS: checkpoints become durable, `kill -9` of the JobManager recovers.
//! 3. Leaf rotation: the same CA's certificate delivered as files; one restart, the job back
//!    from its newest checkpoint, the ports presenting the new certificate.
//! 4. Bad material, each refused by the reload with its field while the cluster runs on.
//! 5. CA rotation to a new CA in `ca` mode: trust both → new certificate → drop the old CA, three
//!    restarts the agent paces by itself; after each the job is back from its newest checkpoint
//!    and checkpoints keep completing; in the end the old CA's certificates are refused.
//!
//! A second test runs a second TaskManager in another network namespace so that data between
//! TaskManagers crosses the TLS data plane, whose client checks host names against the peer's
//! real address: with a certificate naming it the job runs, without one it fails visibly.
//!
//! Needs root (network namespaces), openssl and curl; run it under
//! `flock /tmp/fa-flink-tests.lock` like every test that starts Flink.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/netns.rs"]
mod netns;

use common::{build_test_jobs, cli, flink_home, java_home, wait_for, AgentDir, RunningAgent};
use flink_agent::tls::cert::CertInfo;
use flink_agent::tls::issue::{new_ca, Issued, NodeRequest, Signer};
use flink_agent::tls::keystore::{keystore_pkcs12, StorePassword};
use flink_agent::tls::pem::write_private;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

const START: Duration = Duration::from_secs(180);
const DAY: Duration = Duration::from_secs(86_400);
/// The two tests start JVMs: one at a time on the shared cores.
static FLINK: Mutex<()> = Mutex::new(());

fn ca(name: &str) -> Issued {
    new_ca(name, SystemTime::now() - DAY, 3650 * DAY).unwrap()
}

/// A node certificate of `ca` for `ips` (plus loopback), valid from `from` for `days`.
fn node(ca: &Issued, ips: &[&str], from: SystemTime, days: u32) -> Issued {
    Signer::from_issued(ca)
        .unwrap()
        .issue_node(
            &NodeRequest {
                common_name: "node-test".into(),
                ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
                dns_names: vec![],
                lifetime: DAY * days,
            },
            from,
        )
        .unwrap()
}

/// A client certificate of `ca` (clientAuth only).
fn client(ca: &Issued, name: &str) -> Issued {
    Signer::from_issued(ca)
        .unwrap()
        .issue_client(name, SystemTime::now(), DAY)
        .unwrap()
}

/// A node certificate of `ca` that names only `other.example`: no address of the node.
fn node_without_addresses(ca: &Issued) -> Issued {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["other.example".to_string()]).unwrap();
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let issuer = rcgen::Issuer::from_ca_cert_der(
        &ca.chain[0],
        rcgen::KeyPair::try_from(ca.key.pkcs8_der()).unwrap(),
    )
    .unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    Issued {
        chain: vec![cert.der().clone(), ca.chain[0].clone()],
        key: flink_agent::tls::pkcs8::PrivateKey::from_pkcs8_der(key.serialize_der()),
    }
}

/// Writes certificate chain and key as `<name>.pem` / `<name>.key` (0600) in `dir`.
fn write_pair(dir: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, issued.chain_pem()).unwrap();
    write_private(&key, issued.key.to_pem().as_bytes()).unwrap();
    (cert, key)
}

fn write_config(dir: &AgentDir, tls: &str) {
    let d = dir.path().display();
    dir.write_config(&format!(
        "[advanced]\ncheckpoint_interval_ms = 1000\n\n[object_store]\nurl = \"file://{d}/store\"\n\n[checkpoints]\nrescan_interval_secs = 1\n\n[tls]\nenabled = true\nrotation_step_pause_secs = 30\n{tls}"
    ));
}

/// `openssl s_client` to a loopback port: (handshake done, everything it printed).
fn s_client(port: u16, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-brief",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("CONNECTION ESTABLISHED"), text)
}

/// The serial of the certificate the port presents, as `openssl x509 -serial` prints it.
fn served_serial(port: u16, cert: &Path, key: &Path) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            cert.display(),
            key.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

fn serial_of(info: &CertInfo) -> String {
    info.serial.replace(':', "").to_uppercase()
}

/// `curl` with `args`: (exit code, HTTP code, body).
fn curl(args: &[&str]) -> (i32, String, String) {
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{redirect_url}",
        ])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        o.status.code().unwrap_or(-1),
        code.to_string(),
        format!("{body}{}", String::from_utf8_lossy(&o.stderr)),
    )
}

/// What a port answers to a plaintext HTTP request: its bytes within 3 s.
fn plaintext_answer(port: u16) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"GET /overview HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// `flink-agent <args>` as given: (success, stdout, stderr).
fn agent_cli(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(common::agent_bin())
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn status(agent: &mut RunningAgent) -> serde_json::Value {
    wait_for("status", START, || agent.status())
}

fn job(socket: &Path) -> Option<serde_json::Value> {
    let (ok, out, _) = cli(socket, &["jobs", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    list.as_array()?.first().cloned()
}

/// The newest complete checkpoint Flink wrote for job `id`.
fn newest_checkpoint(data: &Path, id: &str) -> u64 {
    std::fs::read_dir(data.join("checkpoints").join(id))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            e.path().join("_metadata").is_file().then_some(())?;
            e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()
        })
        .max()
        .unwrap()
}

/// After a restart: the job RUNNING under a new id, restored from the newest checkpoint of
/// `before`, with checkpoints completing again. Returns the new id.
fn back_from_newest_checkpoint(socket: &Path, data: &Path, before: &str, what: &str) -> String {
    let t = Instant::now();
    let back = wait_for(
        &format!("the job RUNNING again after {what}"),
        START,
        || {
            job(socket).filter(|j| {
                j["state"] == "RUNNING"
                    && j["flink_job_id"] != before
                    && j["restored_from"].is_object()
            })
        },
    );
    let restored = back["restored_from"]["checkpoint_id"].as_u64().unwrap();
    assert_eq!(
        restored,
        newest_checkpoint(data, before),
        "{what}: not restored from the newest checkpoint: {back}"
    );
    let id = back["flink_job_id"].as_str().unwrap().to_string();
    wait_for(
        &format!("checkpoints completing after {what}"),
        START,
        || {
            job(socket).filter(|j| {
                j["flink_job_id"] == id.as_str()
                    && j["last_completed_checkpoint"]
                        .as_u64()
                        .is_some_and(|c| c > restored)
            })
        },
    );
    eprintln!(
        "{what}: job {id} RUNNING from checkpoint {restored}, checkpointing again {:.1} s after the restart was seen",
        t.elapsed().as_secs_f64()
    );
    id
}

fn reload(socket: &Path) -> serde_json::Value {
    let (ok, out, err) = cli(socket, &["reload", "--json"]);
    assert!(ok, "reload failed: {out}{err}");
    serde_json::from_str(&out).unwrap()
}

fn outcome<'a>(report: &'a serde_json::Value, concern: &str) -> &'a serde_json::Value {
    report["concerns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["concern"] == concern)
        .unwrap()
}

fn generation_dir(state: &Path, agent: &mut RunningAgent) -> PathBuf {
    let id = status(agent)["tls"]["generation"]
        .as_str()
        .unwrap()
        .to_string();
    state.join("tls").join(format!("gen-{id}"))
}

#[test]
fn flink_speaks_only_mutual_tls_and_rotates_under_a_running_job() {
    let _one = FLINK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = AgentDir::new(16);
    let d = dir.path().to_path_buf();
    let state = d.join("state");
    let data = d.join("flink-data");
    let p = dir.ports;
    let (rest, internal) = (
        p.rest,
        [
            ("jobmanager_rpc", p.base + 1),
            ("blob", p.base + 2),
            ("taskmanager_rpc", p.base + 3),
            ("taskmanager_data", p.base + 4),
            ("metrics_query (JobManager)", p.base + 6),
            ("metrics_query (TaskManager)", p.base + 7),
        ],
    );
    let jar = build_test_jobs(&d.join("jobs-build"));
    let (ca_a, ca_b, stranger) = (ca("Cluster CA A"), ca("Cluster CA B"), ca("Stranger CA"));
    let pki = d.join("pki");
    std::fs::create_dir(&pki).unwrap();
    let (ca_a_pem, ca_a_key) = write_pair(&pki, "ca-a", &ca_a);
    let ca_mode = |cert: &Path, key: &Path| {
        format!(
            "mode = \"ca\"\nca_cert_file = \"{}\"\nca_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        )
    };
    write_config(&dir, &ca_mode(&ca_a_pem, &ca_a_key));
    let socket = dir.socket();
    let mut agent = dir.start();
    let ready = Instant::now();
    agent.wait_ready(START);
    eprintln!(
        "TLS cluster ready in {:.1} s",
        ready.elapsed().as_secs_f64()
    );

    // --- 1. What the ports accept ---------------------------------------------------------
    let st = status(&mut agent);
    let tls = &st["tls"];
    assert_eq!(tls["enabled"], true, "{tls}");
    assert_eq!(tls["mode"], "ca");
    assert_eq!(tls["days_left"], 89);
    assert!(tls["alert"].is_null(), "{tls}");
    assert_eq!(
        st["overview"]["taskmanagers"], 1,
        "the agent reads Flink over https: {st}"
    );
    let (_, human, _) = cli(&socket, &["status"]);
    assert!(
        human.contains("tls: ca (TLSv1.2, REST client certificates required), generation "),
        "{human}"
    );
    let gen = generation_dir(&state, &mut agent);
    let (node_pem, node_key) = (gen.join("node.pem"), gen.join("node.key"));
    let (n, k) = (node_pem.to_str().unwrap(), node_key.to_str().unwrap());
    let (stranger_pem, stranger_key) = write_pair(&pki, "stranger", &client(&stranger, "mallory"));
    let (sp, sk) = (
        stranger_pem.to_str().unwrap(),
        stranger_key.to_str().unwrap(),
    );
    let (ok, out, err) = agent_cli(&[
        "tls",
        "client-cert",
        "alice",
        "--config",
        dir.config_path().to_str().unwrap(),
        "--out",
        pki.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("https://127.0.0.1:{rest}/overview")),
        "{out}"
    );
    let (alice, alice_key, flink_ca) = (
        pki.join("alice.pem"),
        pki.join("alice.key"),
        pki.join("flink-ca.pem"),
    );
    assert_eq!(
        std::fs::metadata(&alice_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for (name, port) in internal {
        let (ok, out) = s_client(port, &["-tls1_2", "-cert", n, "-key", k]);
        assert!(ok, "{name} ({port}) refused the node certificate: {out}");
        assert!(out.contains("Protocol version: TLSv1.2"), "{name}: {out}");
        assert!(
            out.contains("Ciphersuite: ECDHE-ECDSA-AES256-GCM-SHA384")
                || out.contains("Ciphersuite: ECDHE-ECDSA-AES128-GCM-SHA256"),
            "{name}: a suite outside the rendered list: {out}"
        );
        let (ok, out) = s_client(port, &["-tls1_2"]);
        assert!(
            !ok && out.contains("alert bad certificate"),
            "{name} without a certificate: {out}"
        );
        let (ok, out) = s_client(port, &["-tls1_2", "-cert", sp, "-key", sk]);
        assert!(
            !ok && out.contains("alert"),
            "{name} with another CA's certificate: {out}"
        );
        let (ok, out) = s_client(
            port,
            &[
                "-cert",
                alice.to_str().unwrap(),
                "-key",
                alice_key.to_str().unwrap(),
            ],
        );
        assert!(
            !ok && out.contains("alert"),
            "{name} with a REST client certificate: {out}"
        );
        for old in ["-tls1", "-tls1_1"] {
            let (ok, out) = s_client(
                port,
                &[old, "-cipher", "DEFAULT:@SECLEVEL=0", "-cert", n, "-key", k],
            );
            assert!(
                !ok && out.contains("alert protocol version"),
                "{name} {old}: {out}"
            );
        }
        let answer = plaintext_answer(port);
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{name} answered plaintext with data: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let overview = format!("https://127.0.0.1:{rest}/overview");
    let (code, http, body) = curl(&[&format!("http://127.0.0.1:{rest}/overview")]);
    assert_eq!(
        (code, http.as_str()),
        (0, format!("301 {overview}").as_str()),
        "{body}"
    );
    assert!(
        !body.contains("taskmanagers"),
        "plain http served data: {body}"
    );
    let ca_arg = flink_ca.to_str().unwrap();
    let (code, http, body) = curl(&[
        "--cacert",
        ca_arg,
        "--cert",
        alice.to_str().unwrap(),
        "--key",
        alice_key.to_str().unwrap(),
        &overview,
    ]);
    assert_eq!((code, http.as_str()), (0, "200 "), "{body}");
    assert!(body.contains("\"taskmanagers\":1"), "{body}");
    let own = state.join("tls/private");
    let (code, http, _) = curl(&[
        "--cacert",
        ca_arg,
        "--cert",
        own.join("agent-client.pem").to_str().unwrap(),
        "--key",
        own.join("agent-client.key").to_str().unwrap(),
        &overview,
    ]);
    assert_eq!(
        (code, http.as_str()),
        (0, "200 "),
        "the agent's own certificate"
    );
    let (code, _, body) = curl(&["--cacert", ca_arg, &overview]);
    assert_ne!(code, 0, "REST without a client certificate: {body}");
    let (code, _, body) = curl(&["--cacert", ca_arg, "--cert", sp, "--key", sk, &overview]);
    assert_ne!(code, 0, "REST with another CA's certificate: {body}");
    let (code, _, body) = curl(&[
        "--cacert",
        ca_arg,
        "--cert",
        n,
        "--key",
        k,
        "--tlsv1.1",
        "--tls-max",
        "1.1",
        &overview,
    ]);
    assert_ne!(code, 0, "REST over TLS 1.1: {body}");
    let (ok, out) = s_client(
        rest,
        &[
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-cert",
            alice.to_str().unwrap(),
            "-key",
            alice_key.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && out.contains("alert protocol version"),
        "REST over TLS 1.1: {out}"
    );

    // Passwords: only in Flink's config file and the agent's 0600 passwords file. The
    // fault-injection runner sweeps the S3 key but runs without TLS: the keystore's are swept here.
    let passwords: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gen.join("passwords.json")).unwrap()).unwrap();
    let password = passwords["internal_keystore"].as_str().unwrap().to_string();
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(&password),
        "a password in ps"
    );
    let (_, config_view, _) = cli(&socket, &["config", "--json"]);
    let (_, config_lines, _) = cli(&socket, &["config"]);
    let (_, tls_show, _) = agent_cli(&[
        "tls",
        "show",
        "--json",
        "--socket",
        socket.to_str().unwrap(),
    ]);
    // The metrics, and the environment of the agent and of both JVMs (`ps` covered their
    // command lines above).
    let metrics = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&socket)
        .arg("http://agent/v1/metrics")
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    assert!(metrics.contains("flink_agent_tls_enabled 1"), "{metrics}");
    let mut environs = String::new();
    let jvms = ["jobmanager", "taskmanager"].map(|p| agent.running_pid(p).expect(p));
    for pid in [agent.pid(), jvms[0], jvms[1]] {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(!env.is_empty(), "no environment read for pid {pid}");
        environs.push_str(&String::from_utf8_lossy(&env));
    }
    for (what, text) in [
        ("the metrics", metrics),
        ("/proc/<pid>/environ of the agent and the JVMs", environs),
        ("status", status(&mut agent).to_string()),
        ("flink-agent config --json", config_view.clone()),
        ("flink-agent config", config_lines.clone()),
        ("tls show", tls_show.clone()),
        ("the agent's log", agent.log_text()),
        (
            "supervisor.json",
            std::fs::read_to_string(state.join("supervisor.json")).unwrap(),
        ),
        ("Flink's logs", read_all(&d.join("flink-log"))),
    ] {
        assert!(!text.contains(&password), "a keystore password in {what}");
    }
    assert!(
        config_view.contains("\"security.ssl.internal.keystore-password\": \"<redacted>\""),
        "{config_view}"
    );
    assert!(
        config_lines.contains("security.ssl.internal.keystore-password: <redacted>"),
        "{config_lines}"
    );
    assert!(
        tls_show.contains("\"role\": \"agent client\""),
        "{tls_show}"
    );

    // --- 2. A job over TLS ------------------------------------------------------------------
    let counts = d.join("counts.txt");
    let (ok, out, err) = cli(
        &socket,
        &[
            "jobs",
            "deploy",
            "counter",
            "--jar",
            jar.to_str().unwrap(),
            "--entry-class",
            "flinkagent.testjobs.KeyedCounter",
            "--parallelism",
            "1",
            "--",
            counts.to_str().unwrap(),
            "20",
        ],
    );
    assert!(ok, "{out}{err}");
    let first = wait_for("a durable checkpoint", START, || {
        job(&socket).filter(|j| j["state"] == "RUNNING" && j["last_durable_checkpoint"].is_u64())
    });
    let mut id = first["flink_job_id"].as_str().unwrap().to_string();
    let jm = agent.running_pid("jobmanager").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(jm),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    id = back_from_newest_checkpoint(&socket, &data, &id, "kill -9 of the JobManager");
    let durable = |id: &str| {
        wait_for("a durable checkpoint of the job", START, || {
            job(&socket)
                .filter(|j| j["flink_job_id"] == id && j["last_durable_checkpoint"].is_u64())
        })
    };
    durable(&id);

    // --- 3. Leaf rotation: the same CA's new certificate, delivered as files ----------------
    let leaf = node(&ca_a, &["127.0.0.1"], SystemTime::now(), 30);
    let (leaf_pem, leaf_key) = write_pair(&pki, "node", &leaf);
    let bundle = pki.join("bundle.pem");
    std::fs::write(&bundle, ca_a.chain_pem()).unwrap();
    let files_mode = |cert: &Path, key: &Path, extra: &str| {
        format!(
            "mode = \"files\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\n{extra}",
            cert.display(),
            key.display(),
            bundle.display()
        )
    };
    write_config(&dir, &files_mode(&leaf_pem, &leaf_key, ""));
    let report = reload(&socket);
    let what = outcome(&report, "tls")["what"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(what.contains("(new-leaf)"), "{report}");
    assert_eq!(
        outcome(&report, "supervisor")["processes"],
        serde_json::json!(["jobmanager", "taskmanager"]),
        "{report}"
    );
    id = back_from_newest_checkpoint(&socket, &data, &id, "the leaf rotation");
    let leaf_info = CertInfo::parse(&leaf.chain[0]).unwrap();
    for (name, port) in [("jobmanager_rpc", p.base + 1), ("rest", rest)] {
        assert_eq!(
            served_serial(port, &leaf_pem, &leaf_key),
            serial_of(&leaf_info),
            "{name}"
        );
    }

    // --- 4. Bad material: refused with its field, the cluster untouched ----------------------
    let pids = |agent: &mut RunningAgent| {
        (
            agent.running_pid("jobmanager").unwrap(),
            agent.running_pid("taskmanager").unwrap(),
        )
    };
    let before = pids(&mut agent);
    let bad = pki.join("bad");
    std::fs::create_dir(&bad).unwrap();
    let (ca_b_pem, ca_b_key) = write_pair(&pki, "ca-b", &ca_b);
    let mut cases: Vec<(&str, String, &str, &str)> = Vec::new();
    let case =
        |name: &'static str, issued: &Issued, field: &'static str, fragment: &'static str| {
            let (c, k) = write_pair(&bad, name, issued);
            (name, files_mode(&c, &k, ""), field, fragment)
        };
    let other_key = node(&ca_a, &["127.0.0.1"], SystemTime::now(), 30);
    cases.push(case(
        "expired",
        &node(&ca_a, &["127.0.0.1"], SystemTime::now() - 40 * DAY, 30),
        "tls.cert_file",
        "expired at",
    ));
    cases.push(case(
        "future",
        &node(&ca_a, &["127.0.0.1"], SystemTime::now() + 2 * DAY, 30),
        "tls.cert_file",
        "valid only from",
    ));
    cases.push(case(
        "no-san",
        &node_without_addresses(&ca_a),
        "tls.cert_file",
        "no subjectAltName for 127.0.0.1",
    ));
    cases.push(case(
        "other-ca",
        &node(&ca_b, &["127.0.0.1"], SystemTime::now(), 30),
        "tls.cert_file",
        "does not chain to a CA in tls.ca_file",
    ));
    let (c, _) = write_pair(&bad, "mismatch", &leaf);
    write_private(&bad.join("mismatch.key"), other_key.key.to_pem().as_bytes()).unwrap();
    cases.push((
        "key mismatch",
        files_mode(&c, &bad.join("mismatch.key"), ""),
        "tls.key_file",
        "does not belong to the certificate",
    ));
    let (c, k) = write_pair(&bad, "world", &leaf);
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    cases.push((
        "world-readable key",
        files_mode(&c, &k, ""),
        "tls.key_file",
        "has mode 0644",
    ));
    cases.push((
        "missing file",
        files_mode(&bad.join("gone.pem"), &leaf_key, ""),
        "tls.cert_file",
        "does not exist",
    ));
    let same = bad.join("clients.pem");
    std::fs::write(&same, ca_a.chain_pem()).unwrap();
    cases.push((
        "internal CA as REST client CA",
        files_mode(
            &leaf_pem,
            &leaf_key,
            &format!("rest_client_ca_file = \"{}\"\n", same.display()),
        ),
        "tls.rest_client_ca_file",
        "share the CA",
    ));
    let skip = bad.join("bundle-b.pem");
    std::fs::write(&skip, ca_b.chain_pem()).unwrap();
    let (c, k) = write_pair(
        &bad,
        "leaf-b",
        &node(&ca_b, &["127.0.0.1"], SystemTime::now(), 30),
    );
    cases.push((
        "a CA change that skips the trust step",
        format!(
            "mode = \"files\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\n",
            c.display(),
            k.display(),
            skip.display()
        ),
        "tls.ca_file",
        "no longer trusts CA",
    ));
    for (name, tls, field, fragment) in &cases {
        write_config(&dir, tls);
        let (ok, out, err) = cli(&socket, &["reload"]);
        assert!(!ok, "{name}: accepted: {out}");
        assert!(
            err.contains(&format!("{field}: ")) && err.contains(fragment),
            "{name}: no {field:?} with {fragment:?} in: {err}"
        );
    }
    assert_eq!(pids(&mut agent), before, "a refused reload restarted Flink");
    let j = job(&socket).unwrap();
    assert_eq!(
        (j["state"].as_str(), j["flink_job_id"].as_str()),
        (Some("RUNNING"), Some(id.as_str()))
    );
    let (ok, out) = s_client(
        p.base + 1,
        &[
            "-cert",
            leaf_pem.to_str().unwrap(),
            "-key",
            leaf_key.to_str().unwrap(),
        ],
    );
    assert!(ok, "the certificate in force changed: {out}");

    // --- 5. CA rotation to CA B, paced by the agent ----------------------------------------
    write_config(&dir, &ca_mode(&ca_b_pem, &ca_b_key));
    let report = reload(&socket);
    let what = outcome(&report, "tls")["what"].as_str().unwrap();
    assert!(
        what.contains("(trust-new-ca); leaf-under-new-ca follows"),
        "{report}"
    );
    id = back_from_newest_checkpoint(&socket, &data, &id, "CA rotation 1/3 (trust A and B)");
    for (step, next) in [("leaf-under-new-ca", "drop-old-ca"), ("drop-old-ca", "")] {
        let st = wait_for(&format!("CA rotation step {step}"), START, || {
            agent.status().filter(|s| {
                s["tls"]["rotation"].as_str().is_some_and(|r| {
                    r.starts_with(step) || r == format!("idle (last step: {step})")
                })
            })
        });
        if !next.is_empty() {
            assert!(
                st["tls"]["rotation"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{next} follows")),
                "{st}"
            );
        }
        id = back_from_newest_checkpoint(&socket, &data, &id, &format!("CA rotation step {step}"));
    }
    let st = status(&mut agent);
    let issuers: Vec<&str> = st["tls"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "internal CA")
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(issuers, ["CN=Cluster CA B, O=flink-agent"], "{st}");
    // Old CA A's node certificate is refused now; B's accepted.
    let (ok, out) = s_client(
        p.base + 1,
        &[
            "-cert",
            leaf_pem.to_str().unwrap(),
            "-key",
            leaf_key.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("alert"), "CA A still trusted: {out}");
    let (b_pem, b_key) = write_pair(
        &pki,
        "node-b",
        &node(&ca_b, &["127.0.0.1"], SystemTime::now(), 30),
    );
    let (ok, out) = s_client(
        p.base + 1,
        &[
            "-cert",
            b_pem.to_str().unwrap(),
            "-key",
            b_key.to_str().unwrap(),
        ],
    );
    assert!(ok, "CA B not trusted: {out}");
    durable(&id);
    drop(agent);
}

fn read_all(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// A TaskManager started with Flink's own script, outside the agent; killed on drop.
struct Taskmanager(std::process::Child);

impl Drop for Taskmanager {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Starts a TaskManager in namespace `ns` with the agent's rendered config, changed to this
/// host's address and its own keystore (`cert` and its key, for the TaskManager's address).
fn second_taskmanager(
    ns: &str,
    agent_conf: &Path,
    dir: &Path,
    address: &str,
    cert: &Issued,
) -> Taskmanager {
    let conf = dir.join("conf");
    let _ = std::fs::remove_dir_all(&conf);
    std::fs::create_dir_all(&conf).unwrap();
    for entry in std::fs::read_dir(agent_conf).unwrap() {
        let e = entry.unwrap();
        std::fs::copy(e.path(), conf.join(e.file_name())).unwrap();
    }
    let password = StorePassword::generate().unwrap();
    let keystore = dir.join("keystore.p12");
    std::fs::write(
        &keystore,
        keystore_pkcs12(&cert.chain, &cert.key, &password).unwrap(),
    )
    .unwrap();
    let text = std::fs::read_to_string(conf.join("config.yaml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split(':').next().unwrap_or("");
        let value = match key {
            "taskmanager.host" | "taskmanager.bind-host" => address.to_string(),
            "security.ssl.internal.keystore" => keystore.display().to_string(),
            "security.ssl.internal.keystore-password" | "security.ssl.internal.key-password" => {
                password.expose().to_string()
            }
            _ => {
                out.push_str(line);
                out.push('\n');
                continue;
            }
        };
        out.push_str(&format!("{key}: {value}\n"));
    }
    std::fs::write(conf.join("config.yaml"), out).unwrap();
    let log = dir.join("log");
    std::fs::create_dir_all(&log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(flink_home().join("bin/taskmanager.sh"))
        .arg("start-foreground")
        .env("FLINK_CONF_DIR", &conf)
        .env("FLINK_LOG_DIR", &log)
        // The scripts' default is /tmp, named by `USER`: the test leaves nothing outside `dir`.
        .env("FLINK_PID_DIR", dir)
        .env("JAVA_HOME", java_home())
        .stdout(std::fs::File::create(dir.join("tm.out")).unwrap())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    Taskmanager(child)
}

/// `curl` of Flink's REST API from inside namespace `ns`, with the agent's client certificate.
fn rest_in(ns: &str, state: &Path, url: &str) -> Option<serde_json::Value> {
    let gen = std::fs::read_to_string(state.join("tls/in-force.json")).ok()?;
    let id: serde_json::Value = serde_json::from_str(&gen).ok()?;
    let tls = state.join("tls");
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
        ])
        .arg(tls.join(format!("gen-{}/rest-roots.pem", id["id"].as_str()?)))
        .arg("--cert")
        .arg(tls.join("private/agent-client.pem"))
        .arg("--key")
        .arg(tls.join("private/agent-client.key"))
        .arg(url)
        .output()
        .ok()?;
    serde_json::from_slice(&o.stdout).ok()
}

#[test]
fn taskmanagers_exchange_data_over_tls_checking_each_other_s_address() {
    let _one = FLINK.lock().unwrap_or_else(|p| p.into_inner());
    let net = match netns::Net::new(&[("a", 1), ("b", 2)]) {
        Ok(net) => net,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let (a, b) = (netns::v4(1).to_string(), netns::v4(2).to_string());
    let dir = AgentDir::new(17);
    let d = dir.path().to_path_buf();
    let state = d.join("state");
    let jar = build_test_jobs(&d.join("jobs-build"));
    let cluster_ca = ca("Cluster CA");
    let (ca_pem, ca_key) = write_pair(&d, "ca", &cluster_ca);
    write_config(
        &dir,
        &format!(
            "mode = \"ca\"\nca_cert_file = \"{}\"\nca_key_file = \"{}\"\n",
            ca_pem.display(),
            ca_key.display()
        ),
    );
    let text = std::fs::read_to_string(dir.config_path())
        .unwrap()
        .replace("address = \"127.0.0.1\"", &format!("address = \"{a}\""))
        .replace(
            "bind_address = \"127.0.0.1\"",
            &format!("bind_address = \"{a}\""),
        )
        .replace("nodes = [\"127.0.0.1\"]", &format!("nodes = [\"{a}\"]"));
    std::fs::write(dir.config_path(), text).unwrap();
    let mut agent = dir.start_with(&["ip", "netns", "exec", &net.ns("a")]);
    agent.wait_ready(START);
    let base = format!("https://{a}:{}", dir.ports.rest);

    // A second TaskManager on host b with a certificate naming b's address.
    let tm_dir = d.join("tm-b");
    let named = node(&cluster_ca, &[b.as_str()], SystemTime::now(), 30);
    let tm = second_taskmanager(&net.ns("b"), &state.join("flink-conf"), &tm_dir, &b, &named);
    wait_for("two TaskManagers", START, || {
        rest_in(&net.ns("a"), &state, &format!("{base}/overview"))
            .filter(|o| o["taskmanagers"] == 2)
    });
    let socket = dir.socket();
    let counts = d.join("counts.txt");
    let (ok, out, err) = cli(
        &socket,
        &[
            "jobs",
            "deploy",
            "counter",
            "--jar",
            jar.to_str().unwrap(),
            "--entry-class",
            "flinkagent.testjobs.KeyedCounter",
            "--parallelism",
            "2",
            "--",
            counts.to_str().unwrap(),
            "200",
        ],
    );
    assert!(ok, "{out}{err}");
    let id = job(&socket).unwrap()["flink_job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Keyed records cross hosts: every source subtask sends each key to the counter subtask
    // that owns it, and the two subtasks of each run on the two TaskManagers.
    let crossing = wait_for("records crossing from one host to the other", START, || {
        let j = rest_in(&net.ns("a"), &state, &format!("{base}/jobs/{id}"))?;
        let mut by_host = Vec::new();
        for v in j["vertices"].as_array()? {
            let subtasks = rest_in(
                &net.ns("a"),
                &state,
                &format!("{base}/jobs/{id}/vertices/{}", v["id"].as_str()?),
            )?;
            let source = v["name"].as_str()?.starts_with("Source");
            for s in subtasks["subtasks"].as_array()? {
                let host = s["endpoint"].as_str()?.split(':').next()?.to_string();
                let metric = if source {
                    "write-records"
                } else {
                    "read-records"
                };
                by_host.push((source, host, s["metrics"][metric].as_u64().unwrap_or(0)));
            }
        }
        let sent: Vec<&String> = by_host
            .iter()
            .filter(|(src, _, n)| *src && *n > 100)
            .map(|x| &x.1)
            .collect();
        let received: Vec<&String> = by_host
            .iter()
            .filter(|(src, _, n)| !*src && *n > 100)
            .map(|x| &x.1)
            .collect();
        let pair = sent.iter().find_map(|from| {
            received
                .iter()
                .find(|to| to != &from)
                .map(|to| (from.to_string(), to.to_string()))
        });
        pair.filter(|_| sent.len() == 2)
    });
    let hosts = crossing;
    eprintln!(
        "keyed records sent from {} and counted on {}",
        hosts.0, hosts.1
    );
    drop(tm);

    // The same TaskManager with a certificate that does not name b's address: TaskManager a's
    // data-plane client refuses it (Flink 2.3's Netty checks host names), the job cannot run.
    let unnamed = node(&cluster_ca, &["192.0.2.99"], SystemTime::now(), 30);
    let _tm = second_taskmanager(
        &net.ns("b"),
        &state.join("flink-conf"),
        &tm_dir,
        &b,
        &unnamed,
    );
    let failure = wait_for("the data-plane host name check failing", START, || {
        let e = rest_in(
            &net.ns("a"),
            &state,
            &format!("{base}/jobs/{id}/exceptions"),
        )?;
        let text = e.to_string();
        text.contains(&format!(
            "No subject alternative names matching IP address {b} found"
        ))
        .then_some(text)
    });
    assert!(
        failure.contains("SSLHandshakeException"),
        "{}",
        &failure[..failure.len().min(2000)]
    );
    drop(agent);
    drop(net);
}
