//! Semantic validation. Every rule appends to [`Errors`]; nothing stops at the first problem.

use super::{AgentConfig, Errors, RestartStrategy};
use std::net::IpAddr;
use std::path::Path;

/// Flink key prefixes the agent owns: ports, addresses, TLS, state backend, checkpoint paths,
/// memory, HA, and the keys that have their own `advanced` field. Passing them through would let
/// an override silently break the firewall, recovery or the plan's memory budget.
pub const OWNED_KEY_PREFIXES: &[(&str, &str)] = &[
    ("rest.port", "set ports.rest"),
    ("rest.bind-port", "set ports.rest"),
    ("rest.address", "set node.address"),
    ("rest.bind-address", "set node.bind_address"),
    ("jobmanager.rpc.", "set ports.jobmanager_rpc and node.address"),
    ("jobmanager.bind-host", "set node.bind_address"),
    ("taskmanager.bind-host", "set node.bind_address"),
    ("taskmanager.host", "set node.address"),
    ("blob.server.port", "set ports.blob"),
    ("taskmanager.rpc.", "set ports.taskmanager_rpc"),
    ("taskmanager.data.port", "set ports.taskmanager_data"),
    ("taskmanager.data.bind-port", "set ports.taskmanager_data"),
    ("taskmanager.collect-sink.port", "set ports.taskmanager_collect"),
    ("metrics.internal.query-service.port", "set ports.metrics_query"),
    ("web.port", "set ports.rest"),
    ("web.address", "set node.bind_address"),
    ("jobmanager.web.", "set ports.rest and node.bind_address"),
    ("security.ssl.", "TLS is managed by the agent; see [tls]"),
    ("pekko.ssl.", "TLS is managed by the agent; see [tls]"),
    ("akka.ssl.", "TLS is managed by the agent; see [tls]"),
    ("blob.service.ssl.", "TLS is managed by the agent; see [tls]"),
    ("taskmanager.data.ssl.", "TLS is managed by the agent; see [tls]"),
    ("state.backend", "the agent runs the HashMap state backend"),
    ("state.checkpoints.", "checkpoint storage is managed by the agent"),
    ("state.savepoints.", "savepoint storage is managed by the agent"),
    ("state.checkpoint-storage", "checkpoint storage is managed by the agent"),
    ("savepoints.state.backend.", "savepoint storage is managed by the agent"),
    ("execution.checkpointing.storage", "checkpoint storage is managed by the agent"),
    ("execution.checkpointing.num-retained", "retention is managed by the agent"),
    ("execution.checkpointing.dir", "checkpoint storage is managed by the agent"),
    ("execution.checkpointing.savepoint-dir", "savepoint storage is managed by the agent"),
    ("execution.checkpointing.interval", "set advanced.checkpoint_interval_ms"),
    ("execution.checkpointing.externalized-checkpoint-retention", "retention is managed by the agent"),
    ("execution.checkpointing.incremental", "the agent needs self-contained checkpoints"),
    ("jobmanager.memory.", "memory is derived from plan.memory_mib"),
    ("taskmanager.memory.", "memory is derived from plan.memory_mib"),
    ("taskmanager.cpu.cores", "set plan.vcpus"),
    ("heartbeat.timeout", "the agent sets it so TaskManagers re-register quickly after a JobManager restart"),
    ("heartbeat.interval", "the agent sets it so TaskManagers re-register quickly after a JobManager restart"),
    ("cluster.registration.error-delay", "the agent sets it so TaskManagers re-register quickly after a JobManager restart"),
    ("high-availability", "HA is managed by the agent"),
    ("rest.cache.execution-graph.", "the agent's job status needs Flink's REST uncached"),
    ("taskmanager.numberOfTaskSlots", "set advanced.number_of_task_slots"),
    ("parallelism.default", "set advanced.default_parallelism"),
    ("restart-strategy", "set advanced.restart_strategy"),
    ("env.java.opts.all", "the agent sets the JVM options Java 17 needs; use env.java.opts.jobmanager or env.java.opts.taskmanager"),
    ("io.tmp.dirs", "set flink.data_dir"),
    ("web.tmpdir", "set flink.data_dir"),
    ("taskmanager.tmp.dirs", "set flink.data_dir"),
    ("env.java.home", "set flink.java_home"),
    ("env.log.dir", "set flink.log_dir"),
    ("metrics.reporter.prom.", "set metrics.flink_reporter = true; its ports are ports.prometheus_jobmanager and ports.prometheus_taskmanager"),
    ("metrics.reporters", "the agent enables the reporters configured under metrics.reporter.<name>; remove the ones you do not want"),
];

/// Why a reporter of the pass-through is refused: its port would open on every interface
/// outside the agent's firewall rules.
const REPORTER_PORT_FIX: &str = "a reporter port would open on every interface, outside the agent's firewall; set metrics.flink_reporter = true and pin ports.prometheus_jobmanager and ports.prometheus_taskmanager";

/// Value checks that need no filesystem: ranges, cross-field rules, owned keys.
pub fn validate_values(c: &AgentConfig, e: &mut Errors) {
    validate_identity(c, e);
    validate_ports(c, e);
    validate_metrics(c, e);
    if let Some(memory) = c.plan.memory_mib.fixed() {
        e.range(
            "plan.memory_mib",
            memory,
            4096,
            32768,
            "plans range from 4 GiB to 32 GiB; \"auto\" reads the machine's memory",
        );
    }
    if let Some(vcpus) = c.plan.vcpus.fixed() {
        e.range(
            "plan.vcpus",
            vcpus,
            2,
            8,
            "plans range from 2 to 8 vCPUs; \"auto\" counts the machine's CPUs",
        );
    }
    e.range(
        "advanced.number_of_task_slots",
        c.advanced.number_of_task_slots,
        1,
        256,
        "one slot runs one pipeline; raise it for more concurrent jobs per TaskManager",
    );
    e.range(
        "advanced.default_parallelism",
        c.advanced.default_parallelism,
        1,
        1024,
        "jobs may still set their own parallelism",
    );
    e.range(
        "advanced.checkpoint_interval_ms",
        c.advanced.checkpoint_interval_ms,
        100,
        86_400_000,
        "use at least 100 ms and at most one day",
    );
    validate_restart_strategy(&c.advanced.restart_strategy, e);
    validate_passthrough(c, e);
    validate_supervisor(c, e);
    super::firewall::validate(c, e);
    super::tls::validate(c, e);
    super::ha::validate(c, e);
    for (path, p) in [
        ("agent.state_dir", &c.agent.state_dir),
        ("agent.socket", &c.agent.socket),
        ("flink.home", &c.flink.home),
        ("flink.java_home", &c.flink.java_home),
        ("flink.data_dir", &c.flink.data_dir),
        ("flink.log_dir", &c.flink.log_dir),
    ] {
        if !p.is_absolute() {
            e.push(path, format!("must be an absolute path (got {:?})", p));
        }
    }
}

fn validate_identity(c: &AgentConfig, e: &mut Errors) {
    for (path, v) in [("node.id", &c.node.id), ("cluster.id", &c.cluster.id)] {
        let ok = !v.is_empty()
            && v.len() <= 63
            && v.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
        if !ok {
            e.push(
                path,
                format!("must be 1-63 characters of a-z, 0-9, '-' or '_' (got {v:?}); it names paths in object storage"),
            );
        }
    }
    for (path, v) in [
        ("node.address", &c.node.address),
        ("node.bind_address", &c.node.bind_address),
    ] {
        if !is_host(v) {
            e.push(
                path,
                format!("must be an IP address or host name (got {v:?})"),
            );
        }
    }
    match c.cluster.nodes.len() {
        1 | 3 => {}
        n => e.push(
            "cluster.nodes",
            format!("must list 1 node (single-node) or 3 nodes (highly available), got {n}"),
        ),
    }
    for (i, n) in c.cluster.nodes.iter().enumerate() {
        if !is_host(n) {
            e.push(
                format!("cluster.nodes[{i}]"),
                format!("must be an IP address or host name (got {n:?})"),
            );
        }
    }
    if !c.cluster.nodes.is_empty() && !c.cluster.nodes.contains(&c.node.address) {
        e.push(
            "cluster.nodes",
            format!(
                "must include this node's address node.address = {:?}",
                c.node.address
            ),
        );
    }
}

fn is_host(v: &str) -> bool {
    v.parse::<IpAddr>().is_ok()
        || (!v.is_empty()
            && v.len() <= 253
            && v.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
            }))
}

fn validate_ports(c: &AgentConfig, e: &mut Errors) {
    let mut named = c.ports.named().to_vec();
    named.extend(c.ports.reporter());
    named.extend(c.ports.zookeeper());
    // `metrics_query` stands for two ports (P and P+1); the second one's label is not a key.
    let key = |name: &str| format!("ports.{}", name.trim_end_matches(" + 1"));
    if c.ports.metrics_query == u16::MAX {
        e.push(
            "ports.metrics_query",
            "must be at most 65534: the TaskManager's metric query service takes the next port",
        );
    }
    for (i, (name, port)) in named.iter().enumerate() {
        if *port == 0 {
            if name.ends_with(" + 1") {
                continue; // reported for metrics_query itself
            }
            e.push(
                key(name),
                "must be a fixed port from 1 to 65535; 0 (random) would defeat the firewall",
            );
        }
        if let Some((other, _)) = named[..i].iter().find(|(_, p)| p == port) {
            let what = if name.ends_with(" + 1") {
                format!("port {port} (the second metric query port, metrics_query + 1)")
            } else {
                format!("port {port}")
            };
            e.push(
                key(name),
                format!(
                    "{what} is already used by {}; every port must differ",
                    key(other)
                ),
            );
        }
    }
}

/// `[metrics]`: the listener's address and its port against Flink's; `scrape_clients` are
/// parsed by the firewall policy, which reports them with their index.
fn validate_metrics(c: &AgentConfig, e: &mut Errors) {
    let m = &c.metrics;
    if m.listen == "off" {
        return;
    }
    let Ok(addr) = m.listen.parse::<std::net::SocketAddr>() else {
        e.push(
            "metrics.listen",
            format!(
                "{:?} is not an address with a port; write e.g. \"127.0.0.1:9248\", \"[::]:9248\" or \"off\"",
                m.listen
            ),
        );
        return;
    };
    if addr.port() == 0 {
        e.push(
            "metrics.listen",
            "needs a fixed port (not 0): Prometheus scrapes a fixed target",
        );
    }
    let mut flink = c.ports.named().to_vec();
    flink.extend(c.ports.reporter());
    if let Some((name, _)) = flink.iter().find(|(_, p)| *p == addr.port()) {
        e.push(
            "metrics.listen",
            format!(
                "port {} is Flink's ports.{}; pick another port for the agent's metrics",
                addr.port(),
                name.trim_end_matches(" + 1")
            ),
        );
    }
}

fn validate_restart_strategy(s: &RestartStrategy, e: &mut Errors) {
    let p = "advanced.restart_strategy";
    match s {
        RestartStrategy::FailureRate {
            max_failures_per_interval,
            failure_rate_interval_secs,
            delay_secs,
        } => {
            e.range(
                &format!("{p}.max_failures_per_interval"),
                *max_failures_per_interval,
                1,
                10_000,
                "it is how many job failures within the interval are tolerated",
            );
            e.range(
                &format!("{p}.failure_rate_interval_secs"),
                *failure_rate_interval_secs,
                1,
                86_400,
                "use at least one second",
            );
            e.range(
                &format!("{p}.delay_secs"),
                *delay_secs,
                0,
                3_600,
                "use at most one hour",
            );
        }
        RestartStrategy::FixedDelay {
            attempts,
            delay_secs,
        } => {
            e.range(
                &format!("{p}.attempts"),
                *attempts,
                1,
                1_000_000,
                "use at least 1",
            );
            e.range(
                &format!("{p}.delay_secs"),
                *delay_secs,
                0,
                3_600,
                "use at most one hour",
            );
        }
        RestartStrategy::ExponentialDelay {
            initial_backoff_ms,
            max_backoff_ms,
            backoff_multiplier,
            reset_backoff_threshold_ms,
            jitter_factor,
        } => {
            e.range(
                &format!("{p}.initial_backoff_ms"),
                *initial_backoff_ms,
                1,
                3_600_000,
                "use at least 1 ms",
            );
            if max_backoff_ms < initial_backoff_ms {
                e.push(
                    format!("{p}.max_backoff_ms"),
                    format!("must be at least initial_backoff_ms ({initial_backoff_ms})"),
                );
            }
            if !(*backoff_multiplier >= 1.0 && *backoff_multiplier <= 100.0) {
                e.push(
                    format!("{p}.backoff_multiplier"),
                    format!("must be between 1.0 and 100.0 (got {backoff_multiplier})"),
                );
            }
            e.range(
                &format!("{p}.reset_backoff_threshold_ms"),
                *reset_backoff_threshold_ms,
                1,
                u64::MAX,
                "use at least 1 ms",
            );
            if !(0.0..=1.0).contains(jitter_factor) {
                e.push(
                    format!("{p}.jitter_factor"),
                    format!("must be between 0.0 and 1.0 (got {jitter_factor})"),
                );
            }
        }
        RestartStrategy::None => {}
    }
}

fn validate_passthrough(c: &AgentConfig, e: &mut Errors) {
    for (key, value) in &c.advanced.flink_config {
        let path = format!("advanced.flink_config.\"{key}\"");
        if key.is_empty()
            || !key
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'))
        {
            e.push(
                &path,
                "is not a Flink option name (letters, digits, '.', '-', '_')",
            );
            continue;
        }
        if let Some((prefix, fix)) = OWNED_KEY_PREFIXES
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix))
        {
            e.push(
                &path,
                format!("the agent owns Flink keys starting with {prefix:?} and cannot pass them through; {fix}"),
            );
        } else if key.starts_with("metrics.reporter.")
            && (key.ends_with(".port")
                || (key.ends_with(".factory.class") && value.contains("PrometheusReporter")))
        {
            e.push(&path, REPORTER_PORT_FIX);
        }
        if value.contains('\n') {
            e.push(&path, "must be a single line");
        }
    }
}

fn validate_supervisor(c: &AgentConfig, e: &mut Errors) {
    let s = &c.supervisor;
    let p = "supervisor";
    e.range(
        &format!("{p}.start_timeout_secs"),
        s.start_timeout_secs,
        5,
        3_600,
        "Flink needs a few seconds to start",
    );
    e.range(
        &format!("{p}.health_interval_ms"),
        s.health_interval_ms,
        100,
        60_000,
        "probe at least once a minute",
    );
    e.range(
        &format!("{p}.backoff_initial_ms"),
        s.backoff_initial_ms,
        10,
        600_000,
        "use 10 ms to 10 minutes",
    );
    if s.backoff_max_ms < s.backoff_initial_ms {
        e.push(
            format!("{p}.backoff_max_ms"),
            format!(
                "must be at least backoff_initial_ms ({})",
                s.backoff_initial_ms
            ),
        );
    } else {
        // Unbounded, a crash-looping process would wait years between restarts.
        e.range(
            &format!("{p}.backoff_max_ms"),
            s.backoff_max_ms,
            10,
            3_600_000,
            "use at most one hour",
        );
    }
    e.range(
        &format!("{p}.max_restarts"),
        s.max_restarts,
        1,
        1_000,
        "use at least 1",
    );
    e.range(
        &format!("{p}.restart_window_secs"),
        s.restart_window_secs,
        1,
        86_400,
        "use at least one second",
    );
    e.range(
        &format!("{p}.stop_grace_secs"),
        s.stop_grace_secs,
        1,
        600,
        "use 1 to 600 seconds",
    );
}

/// Checks against the machine: Flink and Java installed, the run-as user exists. A key that
/// already has a value error (e.g. a wrong type, so its default was used) is not checked again.
pub fn check_environment(c: &AgentConfig, e: &mut Errors) {
    let mut found = Errors::default();
    check_machine(c, &mut found);
    e.extend_fresh(found.0);
}

fn check_machine(c: &AgentConfig, e: &mut Errors) {
    let home = &c.flink.home;
    if !home.join("bin/jobmanager.sh").is_file() || !home.join("bin/taskmanager.sh").is_file() {
        e.push(
            "flink.home",
            format!(
                "{} does not hold a Flink distribution (bin/jobmanager.sh and bin/taskmanager.sh are missing); point it at the unpacked Flink directory",
                home.display()
            ),
        );
    }
    if !is_executable(&c.flink.java_home.join("bin/java")) {
        e.push(
            "flink.java_home",
            format!(
                "{}/bin/java is missing or not executable; install openjdk-17-jre-headless or point it at a Java 17 home",
                c.flink.java_home.display()
            ),
        );
    }
    if let Some(user) = &c.flink.user {
        match nix::unistd::User::from_name(user) {
            Ok(Some(_)) => {}
            _ => e.push(
                "flink.user",
                format!("user {user:?} does not exist; create it or leave flink.user unset to run Flink as the agent's user"),
            ),
        }
    }
    if let Some(group) = &c.agent.socket_group {
        match nix::unistd::Group::from_name(group) {
            Ok(Some(_)) => {}
            _ => e.push(
                "agent.socket_group",
                format!(
                    "group {group:?} does not exist; create it or leave agent.socket_group unset"
                ),
            ),
        }
    }
    super::ha::check_machine(c, e);
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
