use super::*;
use crate::supervisor::{restart_set, RestartSet};
use serde_json::{json, Value};

const V2: FlinkVersion = FlinkVersion::new(2, 3, 0);

fn desired(c: &AgentConfig) -> Desired {
    derive(c, V2, None).expect("derives")
}

/// Every leaf of `v` with its dotted path; empty arrays and maps, and nulls, are leaves too
/// (a field whose default is "nothing" must still reach a concern once set).
fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, child, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), child, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// A different value of the same shape that the derivation still accepts.
fn mutated(path: &str, v: &Value) -> Value {
    match (path, v) {
        (_, Value::Bool(b)) => json!(!b),
        (_, Value::Number(n)) if n.is_f64() => json!(n.as_f64().unwrap_or(0.0) / 2.0),
        // Flink's memory comes in 64 MiB granules: a plan one size up.
        ("plan.memory_mib", Value::Number(n)) => json!(n.as_u64().unwrap_or(0) * 2),
        (_, Value::Number(n)) => json!(n.as_u64().unwrap_or(0) + 1),
        ("object_store.url", _) => json!("s3://other-bucket/flink"),
        (p, Value::String(_))
            if p.starts_with("cluster.nodes") || p.starts_with("node.") && p != "node.id" =>
        {
            json!("127.0.0.2")
        }
        ("tls.mode", _) => json!("ca"),
        ("tls.protocol", _) => json!("TLSv1.3"),
        (p, Value::Null) if p.starts_with("tls.") && p.ends_with("_file") => {
            json!("/etc/flink-agent/tls/x.pem")
        }
        (p, Value::String(s)) if p.ends_with("restart_strategy.type") => {
            assert_eq!(s, "failure-rate", "the default strategy changed");
            json!("none")
        }
        ("metrics.listen", _) => json!("0.0.0.0:9248"),
        (_, Value::String(s)) => json!(format!("{s}x")),
        ("agent.socket_group", Value::Null) => json!("flink-agent"),
        ("flink.user", Value::Null) => json!("flink"),
        ("object_store.region", Value::Null) => json!("eu-west-1"),
        ("object_store.endpoint", Value::Null) => json!("http://127.0.0.1:9000"),
        ("object_store.credentials_file", Value::Null) => json!("/etc/flink-agent/s3.env"),
        ("advanced.flink_config", _) => json!({"pipeline.object-reuse": "true"}),
        ("firewall.extra_peers" | "firewall.rest_clients", _) => json!(["10.0.0.0/8"]),
        ("firewall.management.cidrs", _) => json!(["192.0.2.0/24"]),
        ("metrics.scrape_clients", _) => json!(["198.51.100.0/24"]),
        ("ha.shared_dir", Value::Null) => json!("/mnt/flink-shared"),
        (p, other) => panic!("no mutation for {p} = {other}: teach the test this field"),
    }
}

fn set(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        node = &mut node[key];
        if let Some(i) = index {
            node = &mut node[i];
        }
    }
    *node = value;
}

/// A restart strategy whose type changes drops the old type's options (the config refuses
/// options of another type).
fn without_strategy_options(root: &mut Value) {
    if root["advanced"]["restart_strategy"]["type"] == "none" {
        root["advanced"]["restart_strategy"] = json!({"type": "none"});
    }
}

/// The defaults with every optional feature on, so that each field matters (the reporter's
/// ports, say, reach Flink only while the reporter is on).
fn everything_on() -> AgentConfig {
    let mut c = AgentConfig::default();
    c.metrics.flink_reporter = true;
    c
}

/// A three-node cluster's node 1: what `[ha]` and ZooKeeper's ports are read in.
fn three_nodes() -> AgentConfig {
    let mut c = AgentConfig::default();
    c.cluster.nodes = vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.3".into()];
    c.node.address = "10.0.0.1".into();
    c.node.bind_address = "10.0.0.1".into();
    c.ha.shared_dir = Some("/mnt/flink-shared".into());
    c
}

/// The fields whose mutation leaves `base`'s desired state as it was.
fn unclaimed_in(base: &AgentConfig) -> Vec<String> {
    let before = desired(base);
    let tree = serde_json::to_value(base).expect("config serializes");
    let mut paths = Vec::new();
    leaves("", &tree, &mut paths);
    assert!(paths.len() > 50, "only {} fields found", paths.len());
    let mut unclaimed = Vec::new();
    for path in &paths {
        let mut changed = tree.clone();
        let old = path
            .split('.')
            .fold(&tree, |v, part| match part.split_once('[') {
                Some((k, i)) => &v[k][i.trim_end_matches(']').parse::<usize>().unwrap_or(0)],
                None => &v[part],
            })
            .clone();
        let three = base.cluster.nodes.len() == 3;
        let new = match (three, path.as_str()) {
            // A node that moves takes this node's address with it when it is this node.
            (true, p) if p.starts_with("cluster.nodes") => {
                let moved = json!("10.0.0.9");
                if old == json!(base.node.address) {
                    set(&mut changed, "node.address", moved.clone());
                }
                moved
            }
            (true, "node.address") => json!("10.0.0.2"),
            _ => mutated(path, &old),
        };
        set(&mut changed, path, new);
        without_strategy_options(&mut changed);
        let config: AgentConfig = serde_json::from_value(changed)
            .unwrap_or_else(|e| panic!("{path}: the mutated config does not parse: {e}"));
        let after = derive(&config, V2, None)
            .unwrap_or_else(|e| panic!("{path}: the mutated config does not derive: {e:?}"));
        if before == after {
            unclaimed.push(path.clone());
        }
    }
    unclaimed
}

/// Every field reaches a concern on a single node or on a three-node cluster (`[ha]` and
/// ZooKeeper's ports only matter on three).
#[test]
fn every_config_field_reaches_a_concern() {
    let single = unclaimed_in(&everything_on());
    let three = unclaimed_in(&AgentConfig {
        metrics: everything_on().metrics,
        ..three_nodes()
    });
    let unclaimed: Vec<&String> = single.iter().filter(|p| three.contains(p)).collect();
    assert!(
        unclaimed.is_empty(),
        "config fields no concern reads (a reload would silently skip them): {unclaimed:?}"
    );
    for field in [
        "ha.session_timeout_ms",
        "ports.zookeeper_client",
        "ha.zookeeper_heap_mib",
    ] {
        assert!(
            single.iter().any(|p| p == field),
            "{field} matters on one node?"
        );
    }
}

#[test]
fn the_endpoint_is_where_flink_binds_with_brackets_for_ipv6() {
    let mut c = AgentConfig::default();
    c.node.bind_address = "2001:db8::1".into();
    c.node.address = "2001:db8::1".into();
    c.cluster.nodes = vec!["2001:db8::1".into()];
    let d = desired(&c);
    assert_eq!(d.endpoint.url(), "http://[2001:db8::1]:8081");
    assert_eq!(d.jobs.endpoint, d.endpoint);
    assert_eq!(d.launch.endpoint, d.endpoint);
    c.node.bind_address = "0.0.0.0".into();
    c.ports.rest = 18081;
    assert_eq!(desired(&c).endpoint.url(), "http://127.0.0.1:18081");
}

#[test]
fn three_nodes_run_zookeeper_and_flinks_ha_on_the_shared_storage() {
    let d = desired(&three_nodes());
    assert_eq!(d.mode, Mode::ThreeNode);
    let zk = d.launch.zookeeper.as_ref().expect("a ZooKeeper server");
    assert_eq!(zk.server.myid, 1);
    assert_eq!(d.launch.ha_cluster_id.as_deref(), Some("flink"));
    let tolerate = "high-availability.zookeeper.client.tolerate-suspended-connections";
    assert_eq!(d.launch.properties.taskmanager[tolerate], "true");
    assert!(!d.launch.properties.jobmanager.contains_key(tolerate));
    let e = &d.flink.rendered.entries;
    assert_eq!(e[tolerate], "false");
    assert_eq!(e["high-availability.type"], "zookeeper");
    assert_eq!(
        e["execution.checkpointing.dir"],
        "file:///mnt/flink-shared/flink/checkpoints"
    );
    assert_eq!(
        d.sync.data_dir,
        std::path::Path::new("/mnt/flink-shared/flink")
    );
    assert!(d.sync.shared && d.sync.rest.is_some());
    assert_eq!(
        d.jobs.data_dir, d.sync.data_dir,
        "restores go to the shared storage"
    );
    assert_eq!(
        d.coordination.as_ref().map(|c| c.ensemble.connect_string()),
        Some("10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181".into())
    );
    let single = desired(&AgentConfig::default());
    assert_eq!(single.mode, Mode::SingleNode);
    assert!(single.launch.zookeeper.is_none() && single.coordination.is_none());
    assert!(!single
        .flink
        .rendered
        .entries
        .contains_key("high-availability.type"));
}

#[test]
fn a_bad_cluster_shape_is_refused_with_the_field_named() {
    let problems = |c: &AgentConfig| -> Vec<String> {
        derive(c, V2, None)
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let mut even = three_nodes();
    even.cluster.nodes.push("10.0.0.4".into());
    assert!(
        problems(&even)[0].starts_with("cluster.nodes: must list 1 node (single-node) or 3 nodes"),
        "{:?}",
        problems(&even)
    );
    let mut twice = three_nodes();
    twice.cluster.nodes[2] = "10.0.0.1".into();
    assert!(
        problems(&twice)
            .iter()
            .any(|p| p.starts_with("cluster.nodes[2]: \"10.0.0.1\" is listed twice")),
        "{:?}",
        problems(&twice)
    );
    let mut stranger = three_nodes();
    stranger.node.address = "10.0.0.7".into();
    assert!(
        problems(&stranger)
            .iter()
            .any(|p| p.starts_with("node.address: \"10.0.0.7\" is not one of cluster.nodes")),
        "{:?}",
        problems(&stranger)
    );
    let mut no_storage = three_nodes();
    no_storage.ha.shared_dir = None;
    assert!(
        problems(&no_storage)
            .iter()
            .any(|p| p
                .starts_with("ha.shared_dir: three-node clusters need storage every node mounts")),
        "{:?}",
        problems(&no_storage)
    );
}

#[test]
fn a_zoo_cfg_change_restarts_only_zookeeper() {
    let a = three_nodes();
    let mut b = a.clone();
    b.ports.zookeeper_election = 3999;
    let (da, db) = (desired(&a), desired(&b));
    assert_eq!(
        restart_set(&da.launch.fingerprint, &db.launch.fingerprint),
        RestartSet::NONE
    );
    let (za, zb) = (
        da.launch.zookeeper.expect("zk"),
        db.launch.zookeeper.expect("zk"),
    );
    assert_ne!(za.fingerprint, zb.fingerprint);
    let mut c = a.clone();
    c.ha.session_timeout_ms = 10_000;
    let dc = desired(&c);
    assert_eq!(
        restart_set(&da.launch.fingerprint, &dc.launch.fingerprint),
        RestartSet::BOTH,
        "Flink's session timeout"
    );
    assert_eq!(za.fingerprint, dc.launch.zookeeper.expect("zk").fingerprint);
}

#[test]
fn firewall_problems_are_reported_with_their_key() {
    let mut c = AgentConfig::default();
    c.firewall.rest_clients = vec!["10.0.0.300/8".into()];
    let errors = derive(&c, V2, None).expect_err("refused");
    assert!(
        errors.iter().any(|e| e.path == "firewall.rest_clients[0]"),
        "{errors:?}"
    );
    c.firewall.enabled = false;
    assert_eq!(desired(&c).firewall.policy, None, "off: no rules to plan");
}

#[test]
fn a_hash_in_a_pass_through_value_is_refused_for_legacy_flink_only() {
    let mut c = AgentConfig::default();
    c.advanced
        .flink_config
        .insert("pipeline.name".into(), "a#b".into());
    assert!(derive(&c, V2, None).is_ok());
    let errors = derive(&c, FlinkVersion::new(1, 18, 1), None).expect_err("refused");
    assert_eq!(errors[0].path, "advanced.flink_config.\"pipeline.name\"");
}

fn restarts(a: &AgentConfig, b: &AgentConfig) -> RestartSet {
    restart_set(
        &desired(a).launch.fingerprint,
        &desired(b).launch.fingerprint,
    )
}

#[test]
fn a_slot_change_restarts_only_the_taskmanager() {
    let a = AgentConfig::default();
    let mut b = a.clone();
    b.advanced.number_of_task_slots = 2;
    assert_eq!(
        restarts(&a, &b),
        RestartSet {
            jobmanager: false,
            taskmanager: true
        }
    );
    let mut c = a.clone();
    c.advanced
        .flink_config
        .insert("env.java.opts.taskmanager".into(), "-XX:+UseG1GC".into());
    assert!(!restarts(&a, &c).jobmanager);
}

#[test]
fn shared_keys_and_launch_changes_restart_both_and_nothing_else_restarts_nothing() {
    let a = AgentConfig::default();
    assert_eq!(restarts(&a, &a.clone()), RestartSet::NONE);
    let mut b = a.clone();
    b.advanced.checkpoint_interval_ms = 5_000;
    assert_eq!(restarts(&a, &b), RestartSet::BOTH);
    let mut c = a.clone();
    c.flink.java_home = "/opt/java21".into();
    assert_eq!(restarts(&a, &c), RestartSet::BOTH);
    let mut d = a.clone();
    d.checkpoints.retain = 5;
    d.supervisor.health_interval_ms = 500;
    assert_eq!(restarts(&a, &d), RestartSet::NONE, "not Flink's business");
    let legacy = derive(&a, FlinkVersion::new(1, 18, 1), None).expect("derives");
    assert_eq!(
        restart_set(&legacy.launch.fingerprint, &desired(&a).launch.fingerprint),
        RestartSet::BOTH,
        "another file layout"
    );
}

fn tls_on() -> AgentConfig {
    let mut c = AgentConfig::default();
    c.tls.enabled = true;
    c
}

fn generation(id: &str) -> tls::Generation {
    let mut g = tls::Generation::pending(std::path::Path::new("/var/lib/flink-agent/tls"));
    g.id = id.to_string();
    g.dir = format!("/var/lib/flink-agent/tls/gen-{id}").into();
    g.client = crate::flinkrest::ClientTls {
        roots_pem: b"roots".to_vec(),
        identity_pem: b"identity".to_vec(),
    };
    g
}

#[test]
fn tls_renders_its_stores_speaks_https_and_new_material_restarts_both() {
    let c = tls_on();
    let a = derive(&c, V2, Some(&generation("aaaaaaaaaaaa"))).expect("derives");
    assert_eq!(a.endpoint.url(), "https://127.0.0.1:8081");
    assert_eq!(a.jobs.endpoint, a.endpoint);
    assert_eq!(a.launch.endpoint, a.endpoint);
    let e = &a.flink.rendered.entries;
    assert_eq!(
        e["security.ssl.internal.keystore"],
        "/var/lib/flink-agent/tls/gen-aaaaaaaaaaaa/internal-keystore.p12"
    );
    assert_eq!(e["security.ssl.rest.authentication-enabled"], "true");
    // Every rendered key is one the pass-through refuses (TLS keys included).
    for key in e.keys() {
        let mut probe = AgentConfig::default();
        probe.advanced.flink_config.insert(key.clone(), "x".into());
        let mut errors = crate::config::Errors::default();
        crate::config::validate_values(&probe, &mut errors);
        assert!(!errors.0.is_empty(), "{key} can be passed through");
    }
    let b = derive(&c, V2, Some(&generation("bbbbbbbbbbbb"))).expect("derives");
    assert_eq!(
        restart_set(&a.launch.fingerprint, &b.launch.fingerprint),
        RestartSet::BOTH
    );
    let same = derive(&c, V2, Some(&generation("aaaaaaaaaaaa"))).expect("derives");
    assert_eq!(same, a, "the same generation changes nothing");
    // Turning TLS on restarts both; processes started without TLS keep their fingerprint.
    let off = desired(&AgentConfig::default());
    assert_eq!(
        restart_set(&off.launch.fingerprint, &a.launch.fingerprint),
        RestartSet::BOTH
    );
    assert_eq!(off.endpoint.url(), "http://127.0.0.1:8081");
    assert_eq!(off.tls.generation, None);
}

#[test]
fn store_passwords_are_hashed_in_the_fingerprint_and_redacted_in_the_config_view() {
    let c = tls_on();
    let mut g = generation("aaaaaaaaaaaa");
    g.passwords.internal_keystore =
        tls::keystore::StorePassword::from_secret("s3cret-internal-keystore".into());
    let d = derive(&c, V2, Some(&g)).expect("derives");
    let state = serde_json::to_string(&d.launch.fingerprint).expect("serializes");
    assert!(!state.contains("s3cret"), "{state}");
    let shown = crate::flinkconf::redacted(&d.flink.rendered.entries);
    assert!(shown.values().all(|v| !v.contains("s3cret")));
    assert!(d
        .flink
        .rendered
        .content
        .contains("s3cret-internal-keystore"));
}

#[test]
fn auto_plans_take_the_machine_and_a_too_small_one_is_refused_with_the_fix() {
    use crate::config::Sizing;
    use crate::machine::Machine;
    let machine = |memory_mib| Machine {
        memory_mib,
        memory_source: "cgroup /system.slice memory.max".into(),
        vcpus: 4,
    };
    let mut c = AgentConfig::default();
    c.plan.memory_mib = Sizing::Auto;
    c.plan.vcpus = Sizing::Auto;
    assert!(
        derive(&c, V2, None).is_err(),
        "derive never guesses what auto means"
    );
    assert!(resolve_plan(&mut c, &machine(16_000)).is_empty());
    assert_eq!(
        (c.plan.memory_mib, c.plan.vcpus),
        (Sizing::Fixed(16_000), Sizing::Fixed(4))
    );
    let d = desired(&c);
    assert_eq!(
        d.flink.rendered.entries["taskmanager.cpu.cores"], "4",
        "the vCPUs found"
    );
    assert_eq!(
        d.flink.rendered.entries["taskmanager.memory.process.size"],
        format!("{}m", crate::flinkconf::memory_plan(16_000).taskmanager_mib)
    );
    let mut small = AgentConfig::default();
    small.plan.memory_mib = Sizing::Auto;
    let errors = resolve_plan(&mut small, &machine(2_000));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "plan.memory_mib");
    assert!(
        errors[0]
            .message
            .contains("found 2000 MiB (cgroup /system.slice memory.max)")
            && errors[0].message.contains("set plan.memory_mib"),
        "{}",
        errors[0].message
    );
}

#[test]
fn the_reporter_port_of_one_process_restarts_that_process_alone() {
    let a = everything_on();
    let mut b = a.clone();
    b.ports.prometheus_taskmanager = 9999;
    assert_eq!(
        restarts(&a, &b),
        RestartSet {
            jobmanager: false,
            taskmanager: true
        }
    );
    let d = desired(&a);
    assert_eq!(
        d.launch.properties.jobmanager["metrics.reporter.prom.port"],
        "9249"
    );
    assert_eq!(
        d.flink.rendered.entries["metrics.reporter.prom.factory.class"],
        crate::flinkconf::PROMETHEUS_REPORTER
    );
    assert!(
        !d.flink
            .rendered
            .entries
            .contains_key("metrics.reporter.prom.port"),
        "one shared file cannot hold two processes' ports"
    );
}

#[test]
fn each_process_gets_its_own_metric_query_port() {
    let d = desired(&everything_on());
    let key = "metrics.internal.query-service.port";
    assert_eq!(d.launch.properties.jobmanager[key], "6126");
    assert_eq!(d.launch.properties.taskmanager[key], "6127");
    // Flink's clients read the shared file: the range of both.
    assert_eq!(d.flink.rendered.entries[key], "6126-6127");
}
