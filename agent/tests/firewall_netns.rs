//! The firewall proven with real packets: a "node" namespace gets the agent's rules and plain
//! TCP listeners on Flink's ports; "peer", "client", "intruder" and "mgmt" namespaces connect
//! to it over IPv4 and IPv6. A dropped connection is one that times out (1 s). All probes of a
//! check run in parallel, so a check costs about one timeout.
//!
//! Needs root (CI runs as root); elsewhere each test prints why it skips.

#[path = "support/netns.rs"]
mod netns;

use flink_agent::config::{self, AgentConfig};
use flink_agent::firewall::{self, FirewallHandle, Policy, Swap};
use netns::{v4, v6, Net, Reach};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODE: u8 = 1;
const PEER: u8 = 2;
const CLIENT: u8 = 3;
const INTRUDER: u8 = 4;
const MGMT: u8 = 5;
/// A cluster member that does not exist: clusters list one or three nodes.
const ABSENT: u8 = 6;

const INTERNAL: [u16; 7] = [6121, 6122, 6123, 6124, 6125, 6126, 6127];
const REST: u16 = 8081;
const SSH: u16 = 22;
const OTHER: u16 = 9999;

fn net_or_skip(test: &str) -> Option<Net> {
    let hosts = [
        ("node", NODE),
        ("peer", PEER),
        ("client", CLIENT),
        ("intruder", INTRUDER),
        ("mgmt", MGMT),
    ];
    match Net::new(&hosts) {
        Ok(net) => Some(net),
        // CI runs as root: there a test that cannot run is a failure, not a pass.
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("{test} cannot run on CI: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason} (run as root to include it; CI does)");
            None
        }
    }
}

fn role(host: u8) -> &'static str {
    match host {
        NODE => "node",
        PEER => "peer",
        CLIENT => "client",
        INTRUDER => "intruder",
        MGMT => "mgmt",
        _ => unreachable!("no namespace for host {host}"),
    }
}

/// A validated config for a cluster of `nodes` (host numbers), plus `firewall` lines.
fn config(nodes: [u8; 3], firewall: &str) -> AgentConfig {
    config::parse(&config_text(nodes, firewall), "test.toml")
        .unwrap_or_else(|e| panic!("test config refused: {e}"))
}

fn config_text(nodes: [u8; 3], firewall: &str) -> String {
    let nodes: Vec<String> = nodes.iter().map(|h| format!("\"{}\"", v4(*h))).collect();
    format!(
        "node.address = \"{}\"\ncluster.nodes = [{}]\n[firewall]\nreconcile_interval_secs = 1\nextra_peers = [\"{}\"]\nrest_clients = [\"{}\", \"{}\"]\n{firewall}",
        v4(NODE),
        nodes.join(", "),
        v6(PEER),
        v4(CLIENT),
        v6(CLIENT),
    )
}

/// Plain listeners on `ports` in the node namespace, IPv4 and IPv6 (one dual-stack socket
/// each), accepting and dropping connections so a full backlog never looks like a drop.
fn listen(net: &Net, ports: &[u16]) -> Listeners {
    let ports = ports.to_vec();
    let sockets: Vec<TcpListener> = net.run_in("node", move || {
        ports
            .iter()
            .map(|p| TcpListener::bind(("::", *p)).unwrap_or_else(|e| panic!("listen on {p}: {e}")))
            .collect()
    });
    let accepting = sockets
        .into_iter()
        .map(|l| {
            let l = Arc::new(l);
            let acceptor = Arc::clone(&l);
            (
                l,
                std::thread::spawn(move || while acceptor.accept().is_ok() {}),
            )
        })
        .collect();
    Listeners(accepting)
}

/// The listeners and their accept threads; dropping shuts the sockets down and joins.
struct Listeners(Vec<(Arc<TcpListener>, std::thread::JoinHandle<()>)>);

impl Drop for Listeners {
    fn drop(&mut self) {
        for (listener, thread) in self.0.drain(..) {
            // Shutting a listening socket down makes the blocked accept() return an error.
            let _ =
                nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
            let _ = thread.join();
        }
    }
}

/// Starts the firewall loop inside the node namespace and waits until its table is in force
/// and matches the plan exactly (the plan round-trips through `nft`).
fn start(net: &Net, config: &AgentConfig) -> FirewallHandle {
    let c = config.clone();
    let settings = firewall::Settings::from_config(&c).expect("valid firewall settings");
    let (handle, _applied) = net.run_in("node", move || firewall::spawn(settings));
    await_status(&handle, "the first apply", |s| {
        s.in_sync && s.last_applied.is_some()
    });
    assert_matches_plan(net, config);
    handle
}

fn assert_matches_plan(net: &Net, config: &AgentConfig) {
    let policy = Policy::from_config(config).expect("valid policy");
    let comparison = net
        .run_in("node", move || firewall::apply::compare(&policy))
        .expect("nft lists the table");
    assert!(
        comparison.in_sync,
        "live table differs from the plan: {:#?}",
        comparison.differences
    );
}

fn await_status(
    handle: &FirewallHandle,
    what: &str,
    done: impl Fn(&firewall::FirewallStatus) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&handle.status()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {:#?}",
            handle.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One connection attempt and whether it must get through.
type Case = (u8, IpAddr, u16, bool);

/// Runs all cases in parallel and lists every one that came out wrong.
fn check(net: &Net, cases: &[Case]) {
    std::thread::scope(|s| {
        let results: Vec<_> = cases
            .iter()
            .map(|&(from, to, port, _)| {
                s.spawn(move || {
                    net.connect(
                        role(from),
                        SocketAddr::new(to, port),
                        Duration::from_secs(1),
                    )
                })
            })
            .collect();
        let wrong: Vec<String> = cases
            .iter()
            .zip(results)
            .filter_map(|(&(from, to, port, pass), r)| {
                let reach = r.join().expect("probe thread");
                let ok = if pass {
                    reach == Reach::Connected
                } else {
                    reach == Reach::TimedOut
                };
                (!ok).then(|| {
                    format!(
                        "{} -> [{to}]:{port}: {reach:?}, wanted {}",
                        role(from),
                        if pass { "connected" } else { "dropped" }
                    )
                })
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "unexpected reachability:\n{}",
            wrong.join("\n")
        );
    });
}

/// `from` → every `port` on the node over both families, all expected to `pass` or not.
fn cases(from: u8, ports: &[u16], pass: bool) -> Vec<Case> {
    ports
        .iter()
        .flat_map(|&p| [(from, v4(NODE), p, pass), (from, v6(NODE), p, pass)])
        .collect()
}

#[test]
fn peers_reach_internal_ports_clients_reach_rest_and_intruders_nothing() {
    let Some(net) = net_or_skip("peers_reach_internal_ports…") else {
        return;
    };
    let _listeners = listen(&net, &[&INTERNAL[..], &[REST, OTHER]].concat());
    let _fw = start(&net, &config([NODE, PEER, ABSENT], ""));
    let mut all = cases(PEER, &INTERNAL, true);
    all.extend(cases(PEER, &[REST], true));
    all.extend(cases(INTRUDER, &INTERNAL, false));
    all.extend(cases(INTRUDER, &[REST], false));
    all.extend(cases(CLIENT, &[REST], true));
    all.extend(cases(CLIENT, &INTERNAL, false));
    // Without default_drop, ports that are not Flink's stay open.
    all.extend(cases(INTRUDER, &[OTHER], true));
    check(&net, &all);
}

#[test]
fn default_drop_leaves_only_management_and_flink_rules_open() {
    let Some(net) = net_or_skip("default_drop…") else {
        return;
    };
    let _listeners = listen(&net, &[6123, REST, SSH, OTHER]);
    let management = format!(
        "default_drop = true\n[firewall.management]\ncidrs = [\"{}\", \"{}\"]\nports = [{SSH}]",
        v4(MGMT),
        v6(MGMT)
    );
    // Applied before any IPv6 traffic: the IPv6 probes need neighbour discovery to pass.
    let _fw = start(&net, &config([NODE, PEER, ABSENT], &management));
    let mut all = cases(MGMT, &[SSH], true);
    all.extend(cases(INTRUDER, &[SSH, OTHER, 6123, REST], false));
    all.extend(cases(PEER, &[6123, REST], true));
    all.extend(cases(PEER, &[SSH, OTHER], false));
    all.extend(cases(CLIENT, &[REST], true));
    all.extend(cases(CLIENT, &[OTHER], false));
    check(&net, &all);
}

#[test]
fn changing_peers_swaps_the_rules_atomically() {
    let Some(net) = net_or_skip("changing_peers…") else {
        return;
    };
    let _listeners = listen(&net, &[6123]);
    let before = config([NODE, PEER, MGMT], "");
    let after = config([NODE, CLIENT, MGMT], "");
    let fw = start(&net, &before);
    check(
        &net,
        &[
            (PEER, v4(NODE), 6123, true),
            (CLIENT, v4(NODE), 6123, false),
        ],
    );

    // While the config flips back and forth, a peer in both configs is never cut off and the
    // intruder never gets through: there is no moment without the table or its sets.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let target = SocketAddr::new(v4(NODE), 6123);
    let (kept, leaked) = std::thread::scope(|s| {
        let kept = s.spawn(|| {
            let mut failures = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match net.connect("mgmt", target, Duration::from_secs(1)) {
                    Reach::Connected => {}
                    other => failures.push(other),
                }
            }
            failures
        });
        let leaked = s.spawn(|| {
            let mut leaks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if net.connect("intruder", target, Duration::from_millis(100)) == Reach::Connected {
                    leaks += 1;
                }
            }
            leaks
        });
        let (a, b) = (
            Policy::from_config(&before).expect("valid"),
            Policy::from_config(&after).expect("valid"),
        );
        net.run_in("node", move || {
            for i in 0..40 {
                firewall::apply::apply(if i % 2 == 0 { &b } else { &a }, Swap::InPlace)
                    .expect("apply");
            }
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (kept.join().expect("prober"), leaked.join().expect("prober"))
    });
    assert_eq!(
        kept,
        Vec::<Reach>::new(),
        "the peer in both configs was cut off"
    );
    assert_eq!(leaked, 0, "the intruder got through during a swap");

    // A reload through the loop changes who gets through.
    let _applied = fw.update(firewall::Settings::from_config(&after).expect("valid"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while net.connect("client", target, Duration::from_millis(300)) != Reach::Connected {
        assert!(
            Instant::now() < deadline,
            "the new peer never got through; status: {:#?}",
            fw.status()
        );
    }
    check(
        &net,
        &[
            (CLIENT, v4(NODE), 6123, true),
            (PEER, v4(NODE), 6123, false),
        ],
    );
    assert_matches_plan(&net, &after);
}

#[test]
fn a_flushed_ruleset_is_restored_within_the_reconcile_period() {
    let Some(net) = net_or_skip("a_flushed_ruleset…") else {
        return;
    };
    let _listeners = listen(&net, &[6123]);
    let fw = start(&net, &config([NODE, PEER, ABSENT], ""));
    // Steady state first: checks pass without repairs (the plan reads back unchanged).
    await_status(&fw, "two clean checks", |s| s.checks >= 2);
    assert_eq!(fw.status().repairs, 0, "{:#?}", fw.status());

    let flushed = Instant::now();
    net.nft("node", &["flush", "ruleset"])
        .expect("flush inside the node namespace");
    await_status(&fw, "the repair", |s| s.repairs == 1 && s.in_sync);
    let took = flushed.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "repair took {took:?} with a 1 s reconcile period"
    );
    let status = fw.status();
    assert!(
        status
            .last_drift
            .iter()
            .any(|d| d.contains("does not exist")),
        "{status:#?}"
    );
    check(
        &net,
        &[
            (INTRUDER, v4(NODE), 6123, false),
            (PEER, v4(NODE), 6123, true),
        ],
    );

    // Tampering inside our table (an extra element, a foreign chain) is drift too.
    let tamper = format!(
        "add element inet flink_agent peers_v4 {{ {} }}; add chain inet flink_agent sneaky",
        v4(INTRUDER)
    );
    net.nft("node", &[&tamper]).expect("tamper");
    await_status(&fw, "the second repair", |s| s.repairs == 2 && s.in_sync);
    let drift = fw.status().last_drift.join("\n");
    assert!(
        drift.contains(&format!("unexpected [{}]", v4(INTRUDER))),
        "{drift}"
    );
    assert!(drift.contains("chain sneaky"), "{drift}");
    check(&net, &[(INTRUDER, v4(NODE), 6123, false)]);
    assert_matches_plan(&net, &config([NODE, PEER, ABSENT], ""));
}

/// Runs `flink-agent firewall <action> --config <file with text>` inside the node namespace,
/// behind `wrapper` (e.g. `env PATH=...`); returns (exit code, stdout, stderr).
fn cli(net: &Net, wrapper: &[&str], action: &str, config_text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Readable by an unprivileged wrapper user too.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config_text).expect("write config");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &net.ns("node")])
        .args(wrapper)
        .args([
            env!("CARGO_BIN_EXE_flink-agent"),
            "firewall",
            action,
            "--config",
        ])
        .arg(&path)
        .output()
        .expect("run flink-agent");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn the_cli_shows_applies_and_removes_only_its_own_table() {
    let Some(net) = net_or_skip("the_cli…") else {
        return;
    };
    let _listeners = listen(&net, &[6123]);
    net.nft("node", &["add table inet someone_else; add chain inet someone_else c { type filter hook input priority 10; }"])
        .expect("other table");
    let good = config_text([NODE, PEER, ABSENT], "");

    let (code, out, _) = cli(&net, &[], "show", &good);
    // Exit 5: the live table differs (README, "Exit codes").
    assert_eq!((code, out.as_str()), (5, "table inet flink_agent: differs from the config:\n  - table inet flink_agent does not exist\n"));
    let (code, out, err) = cli(&net, &[], "apply", &good);
    assert_eq!(
        (code, out.as_str()),
        (0, "table inet flink_agent: in force, matches the config\n"),
        "{err}"
    );
    check(
        &net,
        &[
            (INTRUDER, v4(NODE), 6123, false),
            (PEER, v4(NODE), 6123, true),
        ],
    );
    assert_eq!(cli(&net, &[], "show", &good).0, 0);

    // A bad config is refused with the field named; the rules in force stay.
    let before = net
        .nft("node", &["-j", "list", "table", "inet", "flink_agent"])
        .expect("list");
    let bad = good.replace("rest_clients = [", "rest_clients = [\"192.0.2.9/24\", ");
    let (code, _, err) = cli(&net, &[], "apply", &bad);
    assert_ne!(code, 0);
    assert!(
        err.contains("firewall.rest_clients[0]: \"192.0.2.9/24\" has host bits set"),
        "{err}"
    );
    assert_eq!(
        net.nft("node", &["-j", "list", "table", "inet", "flink_agent"])
            .expect("list"),
        before
    );

    let (code, out, err) = cli(&net, &[], "remove", &good);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "table inet flink_agent removed (no other table touched)\n"
        ),
        "{err}"
    );
    let tables = net.nft("node", &["list", "tables"]).expect("list tables");
    assert_eq!(tables.trim(), "table inet someone_else");
    check(&net, &[(INTRUDER, v4(NODE), 6123, true)]);
    // Removing again is not an error.
    assert_eq!(cli(&net, &[], "remove", &good).0, 0);
}

#[test]
fn a_refused_config_names_the_field_and_leaves_the_rules_in_force() {
    let Some(net) = net_or_skip("a_refused_config…") else {
        return;
    };
    let _listeners = listen(&net, &[6123]);
    let good = config([NODE, PEER, ABSENT], "");
    let fw = start(&net, &good);
    let before = net
        .nft("node", &["-j", "list", "table", "inet", "flink_agent"])
        .expect("list");

    let bad = "node.address = \"192.0.2.1\"\ncluster.nodes = [\"192.0.2.1\", \"flink-2\", \"192.0.2.3\"]\n[firewall]\nrest_clients = [\"192.0.2.300/32\"]\n[firewall.management]\nports = [70000]\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, bad).expect("write");
    let err = flink_agent::desired::load(&path, None)
        .expect_err("bad config refused")
        .to_string();
    for field in [
        "cluster.nodes[1]",
        "firewall.rest_clients[0]",
        "firewall.management.ports[0]",
    ] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }
    // The CLI refuses it the same way and leaves the rules in force.
    let (code, _, stderr) = cli(&net, &[], "apply", bad);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("firewall.rest_clients[0]"), "{stderr}");
    let checks = fw.status().checks;
    await_status(&fw, "a check after the refusal", |s| s.checks > checks);
    assert!(fw.status().in_sync, "{:#?}", fw.status());
    let after = net
        .nft("node", &["-j", "list", "table", "inet", "flink_agent"])
        .expect("list");
    assert_eq!(before, after, "the rules in force changed");
    check(
        &net,
        &[
            (INTRUDER, v4(NODE), 6123, false),
            (PEER, v4(NODE), 6123, true),
        ],
    );
}

#[test]
fn without_nft_or_cap_net_admin_the_error_says_so_plainly() {
    let Some(net) = net_or_skip("without_nft…") else {
        return;
    };
    let good = config_text([NODE, PEER, ABSENT], "");
    let (code, _, err) = cli(&net, &["env", "PATH=/nonexistent"], "apply", &good);
    assert_ne!(code, 0);
    assert!(err.contains("`nft` is not installed"), "{err}");
    assert!(err.contains("the rest of the agent keeps working"), "{err}");

    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let (code, _, err) = cli(&net, &nobody, "apply", &good);
    assert_ne!(code, 0);
    assert!(err.contains("the agent lacks CAP_NET_ADMIN"), "{err}");
    assert_eq!(
        net.nft("node", &["list", "tables"]).expect("list tables"),
        "",
        "nothing was applied"
    );
}
