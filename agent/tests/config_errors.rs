//! Bad configurations, through the public entry points `config::parse` (values) and
//! `config::load` (values + environment). Each case names the key path the operator must fix and
//! a fragment of the advice; every problem of a file is reported at once.

#![allow(clippy::unwrap_used)]

use flink_agent::config::{self, ConfigError, FieldError};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Parses `text` and returns its field errors (panics when it parses fine).
fn errors_of(text: &str) -> Vec<FieldError> {
    match config::parse(text, "test.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e @ ConfigError::Invalid { .. }) => e.field_errors().to_vec(),
        Err(e) => panic!("expected field errors, got: {e}"),
    }
}

fn show(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that one error sits at `path` and its message contains `fragment`.
fn assert_has(errors: &[FieldError], path: &str, fragment: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.path == path && e.message.contains(fragment)),
        "no error at {path:?} containing {fragment:?}; got:\n{}",
        show(errors)
    );
}

#[test]
fn the_empty_file_is_valid() {
    config::parse("", "empty.toml").unwrap();
}

#[test]
fn value_errors_name_the_key_and_the_fix() {
    // (config text, key path, fragment of the message)
    let cases: &[(&str, &str, &str)] = &[
        // Unknown keys and sections, with their full path.
        ("[node]\nidd = \"a\"\n", "node.idd", "unknown key"),
        ("[node]\nidd = \"a\"\n", "node.idd", "config/agent.toml"),
        ("[nodes]\nid = \"a\"\n", "nodes", "valid sections are agent, node"),
        ("[supervisor]\nmax_restart = 3\n", "supervisor.max_restart", "unknown key"),
        // [metrics] and the reporter: ports only through the agent, which firewalls them.
        ("[metrics]\nlisten = \"localhost\"\n", "metrics.listen", "\"127.0.0.1:9248\", \"[::]:9248\" or \"off\""),
        ("[metrics]\nlisten = \"0.0.0.0:8081\"\n", "metrics.listen", "port 8081 is Flink's ports.rest"),
        ("[ports]\nprometheus_taskmanager = 9249\n", "ports.prometheus_taskmanager", "already used by ports.prometheus_jobmanager"),
        (
            "[advanced.flink_config]\n\"metrics.reporter.prom.port\" = \"9249\"\n",
            "advanced.flink_config.\"metrics.reporter.prom.port\"",
            "set metrics.flink_reporter = true",
        ),
        (
            "[advanced.flink_config]\n\"metrics.reporter.jmx.port\" = \"8789\"\n",
            "advanced.flink_config.\"metrics.reporter.jmx.port\"",
            "outside the agent's firewall",
        ),
        (
            "[advanced.flink_config]\n\"metrics.reporter.p.factory.class\" = \"org.apache.flink.metrics.prometheus.PrometheusReporterFactory\"\n",
            "advanced.flink_config.\"metrics.reporter.p.factory.class\"",
            "pin ports.prometheus_jobmanager",
        ),
        ("[plan]\nmemory_mib = \"lots\"\n", "plan.memory_mib", "neither a whole number nor \"auto\""),
        (
            "[advanced.restart_strategy]\ntype = \"fixed-delay\"\nattemps = 3\n",
            "advanced.restart_strategy.attemps",
            "unknown key",
        ),
        (
            "[advanced.restart_strategy]\ntype = \"failure-rate\"\nattempts = 3\n",
            "advanced.restart_strategy",
            "attempts do(es) not apply to type = \"failure-rate\"; its options are max_failures_per_interval",
        ),
        (
            "[advanced.restart_strategy]\nattempts = 3\n",
            "advanced.restart_strategy",
            "missing field `type`",
        ),
        (
            "[advanced.restart_strategy]\ntype = \"sometimes\"\n",
            "advanced.restart_strategy.type",
            "use one of the listed values",
        ),
        // TLS: a mode's files, and only them.
        ("[tls]\nmode = \"pki\"\n", "tls.mode", "use one of the listed values"),
        (
            "[tls]\nenabled = true\nmode = \"files\"\n",
            "tls.cert_file",
            "is required with mode = \"files\"",
        ),
        (
            "[tls]\ncert_file = \"/etc/node.pem\"\n",
            "tls.cert_file",
            "applies to mode = \"files\" only",
        ),
        (
            "[tls]\nmode = \"ca\"\nca_cert_file = \"/t/ca.pem\"\nrest_client_ca_file = \"/t/ca.pem\"\n",
            "tls.rest_client_ca_file",
            "the internal CA",
        ),
        (
            "[advanced.flink_config]\n\"pekko.ssl.enabled\" = \"false\"\n",
            "advanced.flink_config.\"pekko.ssl.enabled\"",
            "TLS is managed by the agent; see [tls]",
        ),
        (
            "[advanced.flink_config]\n\"taskmanager.data.ssl.enabled\" = \"false\"\n",
            "advanced.flink_config.\"taskmanager.data.ssl.enabled\"",
            "see [tls]",
        ),
        // Wrong types.
        (
            "[advanced]\nnumber_of_task_slots = \"two\"\n",
            "advanced.number_of_task_slots",
            "invalid type",
        ),
        ("[cluster]\nnodes = \"127.0.0.1\"\n", "cluster.nodes", "invalid type"),
        ("[ports]\nrest = 70000\n", "ports.rest", "70000"),
        // Ranges.
        ("[advanced]\nnumber_of_task_slots = 0\n", "advanced.number_of_task_slots", "between 1 and 256"),
        ("[advanced]\nnumber_of_task_slots = 10000\n", "advanced.number_of_task_slots", "(got 10000)"),
        ("[advanced]\ncheckpoint_interval_ms = -5\n", "advanced.checkpoint_interval_ms", "cannot be negative"),
        ("[advanced]\ncheckpoint_interval_ms = 10\n", "advanced.checkpoint_interval_ms", "at least 100 ms"),
        (
            "[advanced.restart_strategy]\ntype = \"failure-rate\"\ndelay_secs = -1\n",
            "advanced.restart_strategy.delay_secs",
            "cannot be negative",
        ),
        (
            "[advanced.restart_strategy]\ntype = \"exponential-delay\"\ninitial_backoff_ms = 5000\nmax_backoff_ms = 1000\n",
            "advanced.restart_strategy.max_backoff_ms",
            "at least initial_backoff_ms",
        ),
        ("[plan]\nmemory_mib = 2048\n", "plan.memory_mib", "4 GiB to 32 GiB"),
        // Ports.
        ("[ports]\nblob = 0\n", "ports.blob", "0 (random) would defeat the firewall"),
        ("[ports]\nblob = 8081\n", "ports.blob", "already used by ports.rest"),
        (
            "[ports]\nmetrics_query = 6121\n",
            "ports.metrics_query",
            "already used by ports.taskmanager_data",
        ),
        (
            "[ports]\nmetrics_query = 6120\n",
            "ports.metrics_query",
            "second metric query port",
        ),
        // Owned keys in the pass-through say who owns them and what to set instead.
        (
            "[advanced.flink_config]\n\"taskmanager.numberOfTaskSlots\" = \"4\"\n",
            "advanced.flink_config.\"taskmanager.numberOfTaskSlots\"",
            "the agent owns Flink keys starting with \"taskmanager.numberOfTaskSlots\" and cannot pass them through; set advanced.number_of_task_slots",
        ),
        (
            "[advanced.flink_config]\n\"rest.port\" = \"9999\"\n",
            "advanced.flink_config.\"rest.port\"",
            "set ports.rest",
        ),
        (
            "[advanced.flink_config]\n\"taskmanager.memory.process.size\" = \"8g\"\n",
            "advanced.flink_config.\"taskmanager.memory.process.size\"",
            "derived from plan.memory_mib",
        ),
        (
            "[advanced.flink_config]\n\"security.ssl.internal.enabled\" = \"true\"\n",
            "advanced.flink_config.\"security.ssl.internal.enabled\"",
            "TLS is managed by the agent",
        ),
        (
            "[advanced.flink_config]\n\"execution.checkpointing.num-retained\" = \"10\"\n",
            "advanced.flink_config.\"execution.checkpointing.num-retained\"",
            "retention is managed by the agent",
        ),
        (
            "[advanced.flink_config]\n\"env.java.home\" = \"/opt/jdk\"\n",
            "advanced.flink_config.\"env.java.home\"",
            "set flink.java_home",
        ),
        (
            "[advanced.flink_config]\n\"pipeline name\" = \"x\"\n",
            "advanced.flink_config.\"pipeline name\"",
            "not a Flink option name",
        ),
        // Identity and paths.
        ("[node]\nid = \"Node 1\"\n", "node.id", "a-z, 0-9"),
        ("[cluster]\nnodes = [\"a\", \"b\"]\n", "cluster.nodes", "1 node (single-node) or 3 nodes"),
        ("[flink]\ndata_dir = \"data\"\n", "flink.data_dir", "absolute path"),
    ];
    for (text, path, fragment) in cases {
        let errors = errors_of(text);
        assert_has(&errors, path, fragment);
    }
}

#[test]
fn several_unknown_keys_are_all_reported() {
    let errors = errors_of(
        "[node]\nidd = \"a\"\nadress = \"10.0.0.1\"\n\n[advanced]\nslots = 2\n\n[bogus]\nx = 1\n",
    );
    for path in ["node.idd", "node.adress", "advanced.slots", "bogus"] {
        assert!(
            errors.iter().any(|e| e.path == path),
            "{path} missing:\n{}",
            show(&errors)
        );
    }
    assert_eq!(errors.len(), 4, "{}", show(&errors));
}

#[test]
fn three_problems_give_three_errors() {
    let errors = errors_of(
        "[advanced]\nnumber_of_task_slots = 0\ncheckpoint_interval_ms = -5\n\n[advanced.flink_config]\n\"rest.port\" = \"1\"\n",
    );
    assert_eq!(errors.len(), 3, "{}", show(&errors));
    // A type error in one field does not hide range errors in the others.
    assert_has(
        &errors,
        "advanced.checkpoint_interval_ms",
        "cannot be negative",
    );
    assert_has(
        &errors,
        "advanced.number_of_task_slots",
        "between 1 and 256",
    );
    assert_has(
        &errors,
        "advanced.flink_config.\"rest.port\"",
        "set ports.rest",
    );
    let shown = config::parse(
        "[advanced]\nnumber_of_task_slots = 0\n[plan]\nvcpus = 1\n[ports]\nrest = 0\n",
        "three.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(shown.starts_with("three.toml has 3 problem(s):"), "{shown}");
}

#[test]
fn syntax_errors_name_the_file() {
    let err = config::parse("[node\nid = 1", "broken.toml").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(
        err.to_string().starts_with("broken.toml is not valid TOML"),
        "{err}"
    );
}

/// A machine layout in a temp dir: a (file-level) Flink distribution and a Java home, each
/// optional, and the config file pointing at them.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new(flink: Option<&str>, java: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("flink");
        fs::create_dir_all(home.join("bin")).unwrap();
        fs::create_dir_all(home.join("lib")).unwrap();
        if let Some(version) = flink {
            for s in ["jobmanager.sh", "taskmanager.sh"] {
                executable(&home.join("bin").join(s));
            }
            fs::write(home.join(format!("lib/flink-dist-{version}.jar")), b"").unwrap();
        }
        let java_home = dir.path().join("jdk");
        fs::create_dir_all(java_home.join("bin")).unwrap();
        if java {
            executable(&java_home.join("bin/java"));
        }
        Machine { dir }
    }

    /// Loads as the agent and `validate` do: values, the machine, and the desired state.
    fn load(&self, extra: &str) -> Result<flink_agent::desired::Loaded, ConfigError> {
        let d = self.dir.path().display();
        let text = format!(
            "[flink]\nhome = \"{d}/flink\"\njava_home = \"{d}/jdk\"\ndata_dir = \"{d}/data\"\nlog_dir = \"{d}/log\"\n\n[agent]\nstate_dir = \"{d}/state\"\nsocket = \"{d}/agent.sock\"\n{extra}"
        );
        let path = self.dir.path().join("agent.toml");
        fs::write(&path, text).unwrap();
        flink_agent::desired::load(&path, None, flink_agent::tls::Access::Inspect, false)
    }
}

fn executable(p: &Path) {
    fs::write(p, b"#!/bin/sh\n").unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
}

fn load_errors(m: &Machine, extra: &str) -> Vec<FieldError> {
    match m.load(extra) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.field_errors().to_vec(),
    }
}

#[test]
fn a_complete_machine_loads() {
    Machine::new(Some("2.3.0"), true).load("").unwrap();
}

#[test]
fn flink_home_without_flink() {
    let errors = load_errors(&Machine::new(None, true), "");
    assert_has(&errors, "flink.home", "does not hold a Flink distribution");
    assert_has(
        &errors,
        "flink.home",
        "point it at the unpacked Flink directory",
    );
    assert_eq!(errors.len(), 1, "{}", show(&errors));
}

#[test]
fn flink_home_without_dist_jar() {
    let m = Machine::new(Some("2.3.0"), true);
    fs::remove_file(m.dir.path().join("flink/lib/flink-dist-2.3.0.jar")).unwrap();
    assert_has(&load_errors(&m, ""), "flink.home", "version cannot be told");
}

#[test]
fn missing_java() {
    let errors = load_errors(&Machine::new(Some("2.3.0"), false), "");
    assert_has(
        &errors,
        "flink.java_home",
        "bin/java is missing or not executable",
    );
    assert_has(&errors, "flink.java_home", "openjdk-17-jre-headless");
}

#[test]
fn missing_user_and_group() {
    let errors = load_errors(
        &Machine::new(Some("2.3.0"), true),
        "socket_group = \"no-such-group-flink-agent\"\n",
    );
    assert_has(&errors, "agent.socket_group", "does not exist");
    let m = Machine::new(Some("2.3.0"), true);
    let d = m.dir.path().display();
    let path = m.dir.path().join("u.toml");
    fs::write(
        &path,
        format!("[flink]\nhome = \"{d}/flink\"\njava_home = \"{d}/jdk\"\nuser = \"no-such-user-flink-agent\"\n"),
    )
    .unwrap();
    let err = config::load(&path).unwrap_err();
    assert_has(err.field_errors(), "flink.user", "leave flink.user unset");
}

#[test]
fn legacy_flink_cannot_take_hash_in_passthrough_values() {
    let extra = "[advanced.flink_config]\n\"pipeline.name\" = \"orders #2\"\n";
    let errors = load_errors(&Machine::new(Some("1.18.1"), true), extra);
    assert_has(
        &errors,
        "advanced.flink_config.\"pipeline.name\"",
        "'#' starts a comment",
    );
    // Flink >= 1.19 reads standard YAML, where the value is quoted.
    Machine::new(Some("2.3.0"), true).load(extra).unwrap();
}

#[test]
fn value_and_environment_errors_come_together() {
    let errors = load_errors(
        &Machine::new(None, false),
        "[advanced]\nnumber_of_task_slots = 0\n",
    );
    assert_has(
        &errors,
        "advanced.number_of_task_slots",
        "between 1 and 256",
    );
    assert_has(&errors, "flink.home", "does not hold a Flink distribution");
    assert_has(&errors, "flink.java_home", "is missing");
    assert_eq!(errors.len(), 3, "{}", show(&errors));
}

#[test]
fn unreadable_file() {
    let err = config::load(Path::new("/nonexistent/agent.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/agent.toml"), "{err}");
}

/// `config/agent.toml` is the commented reference: valid as is, set exactly to the defaults,
/// and naming every key the code has (optional ones and the other restart strategies as
/// comments).
#[test]
fn reference_config_is_valid_and_complete() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent.toml");
    let text = fs::read_to_string(&path).unwrap();
    let parsed = config::parse(&text, "config/agent.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed,
        config::AgentConfig::default(),
        "the reference must show the defaults"
    );

    // Every key of every section appears as `key =` (uncommented or commented).
    let defaults = toml::Table::try_from(config::AgentConfig::default()).unwrap();
    let mentioned = |key: &str| {
        text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
        })
    };
    for (section, value) in &defaults {
        assert!(
            text.contains(&format!("[{section}]")),
            "[{section}] missing"
        );
        for (key, v) in value.as_table().unwrap() {
            let documented = if v.is_table() {
                text.contains(&format!("[{section}.{key}]"))
            } else {
                mentioned(key)
            };
            assert!(
                documented,
                "{section}.{key} is not documented in config/agent.toml"
            );
        }
    }
    for key in [
        "socket_group",
        "user",
        "ca_cert_file",
        "ca_key_file",
        "cert_file",
        "key_file",
        "ca_file",
        "rest_cert_file",
        "rest_key_file",
        "rest_ca_file",
        "rest_client_ca_file",
        "shared_dir",
        "attempts",
        "initial_backoff_ms",
        "max_backoff_ms",
        "backoff_multiplier",
        "reset_backoff_threshold_ms",
        "jitter_factor",
    ] {
        assert!(
            mentioned(key),
            "{key} is not documented in config/agent.toml"
        );
    }
    for kind in ["failure-rate", "fixed-delay", "exponential-delay", "none"] {
        assert!(
            text.contains(&format!("type = \"{kind}\"")),
            "restart type {kind} not shown"
        );
    }
}

/// `flink-agent status` must still find the agent when the config on disk is broken: that is
/// when an operator needs it most.
#[test]
fn the_socket_is_found_in_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[agent]\nsocket = \"run/agent.sock\"\n[advanced]\nnumber_of_task_slots = 0\nbogus = 1\n",
    )
    .unwrap();
    assert!(flink_agent::config::load_unchecked(&path).is_err());
    let socket = flink_agent::config::socket_path(&path).unwrap();
    assert_eq!(socket, dir.path().join("run/agent.sock"));
    std::fs::write(&path, "[node]\nid = \"x\"\n").unwrap();
    assert_eq!(
        flink_agent::config::socket_path(&path).unwrap(),
        std::path::PathBuf::from("/run/flink-agent/agent.sock")
    );
    // Not even TOML (an edit in progress): `reload` must still reach the agent, which refuses
    // the file with every problem and keeps the config in force.
    std::fs::write(&path, "this is = = not toml\n").unwrap();
    assert_eq!(
        flink_agent::config::socket_path(&path).unwrap(),
        std::path::PathBuf::from("/run/flink-agent/agent.sock")
    );
}
