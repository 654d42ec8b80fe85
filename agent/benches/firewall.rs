//! Firewall figures: time to plan and to apply the agent's table with 1, 3 and 1000 peers and
//! 1000 client CIDRs (and a typical 3 + 3), median of several runs, and how long drift takes
//! to be found and repaired. Everything runs in a network namespace made for the run and removed after it.
//!
//! `cargo bench --bench firewall` (root; elsewhere it says why it cannot run).

#[path = "../tests/support/netns.rs"]
mod netns;

use flink_agent::config::AgentConfig;
use flink_agent::firewall::{self, plan, Policy};
use netns::Net;
use std::time::{Duration, Instant};

const RUNS: usize = 9;

fn main() {
    let net = match Net::new(&[("node", 1)]) {
        Ok(net) => net,
        Err(reason) => {
            println!("firewall benchmark skipped: {reason}");
            return;
        }
    };
    println!(
        "firewall: median of {RUNS} runs, in namespace {}",
        net.ns("node")
    );
    println!(
        "{:>6} {:>8} {:>8} {:>12} {:>12} {:>12} {:>10} {:>6}",
        "peers", "clients", "plan", "first apply", "re-apply", "replace", "check", "json"
    );
    for (peers, clients) in [(1, 1000), (3, 1000), (1000, 1000), (3, 3)] {
        let policy =
            Policy::from_config(&config(peers, clients)).expect("benchmark config is valid");
        let plan_time = median(|| {
            let t = Instant::now();
            let json = serde_json::to_string(&plan::plan(&policy, plan::Swap::InPlace))
                .expect("serializes");
            std::hint::black_box(json);
            t.elapsed()
        });
        let size = serde_json::to_string(&plan::plan(&policy, plan::Swap::InPlace))
            .expect("serializes")
            .len();
        let p = policy.clone();
        let (first, again, replace, check) = net.run_in("node", move || {
            let first = median(|| {
                firewall::apply::remove(&p.table).expect("remove");
                timed(|| firewall::apply::apply(&p, plan::Swap::InPlace).expect("apply"))
            });
            let again = median(|| {
                timed(|| firewall::apply::apply(&p, plan::Swap::InPlace).expect("apply"))
            });
            let replace = median(|| {
                timed(|| firewall::apply::apply(&p, plan::Swap::Replace).expect("apply"))
            });
            let check = median(|| {
                timed(|| assert!(firewall::apply::compare(&p).expect("compare").in_sync))
            });
            firewall::apply::remove(&p.table).expect("remove");
            (first, again, replace, check)
        });
        println!(
            "{peers:>6} {clients:>8} {:>8} {:>12} {:>12} {:>12} {:>10} {:>5}K",
            ms(plan_time),
            ms(first),
            ms(again),
            ms(replace),
            ms(check),
            size / 1024
        );
    }
    drift(&net);
}

/// Flushes the namespace's ruleset under a running loop (reconcile period 1 s) and measures
/// until the loop has put the table back, several times.
fn drift(net: &Net) {
    let mut cfg = config(3, 3);
    cfg.firewall.reconcile_interval_secs = 1;
    let settings = firewall::Settings::from_config(&cfg).expect("valid settings");
    let (handle, _applied) = net.run_in("node", move || firewall::spawn(settings));
    wait(&handle, |s| s.in_sync && s.last_applied.is_some());
    let mut times = Vec::new();
    for round in 1..=5u64 {
        net.nft("node", &["flush", "ruleset"]).expect("flush");
        let t = Instant::now();
        wait(&handle, |s| s.repairs == round && s.in_sync);
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "drift (nft flush ruleset) found and repaired with a 1 s reconcile period: median {}, max {} over {} rounds",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

fn wait(handle: &firewall::FirewallHandle, done: impl Fn(&firewall::FirewallStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&handle.status()) {
        assert!(
            Instant::now() < deadline,
            "firewall loop stuck: {:#?}",
            handle.status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `peers` peers (up to 3 cluster nodes, the rest as extra peers) and `clients` client
/// networks, spaced so none merge into a larger prefix.
fn config(peers: usize, clients: usize) -> AgentConfig {
    let mut c = AgentConfig::default();
    let nodes: Vec<String> = (1..=peers.min(3)).map(|i| format!("192.0.2.{i}")).collect();
    c.node.address = nodes[0].clone();
    c.cluster.nodes = nodes;
    c.firewall.extra_peers = (3..peers)
        .map(|i| format!("10.{}.{}.1", i / 200, i % 200 + 1))
        .collect();
    c.firewall.rest_clients = (0..clients)
        .map(|i| format!("100.{}.{}.0/24", 64 + i / 100, (i % 100) * 2))
        .collect();
    c
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut runs: Vec<Duration> = (0..RUNS).map(|_| f()).collect();
    runs.sort();
    runs[RUNS / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
