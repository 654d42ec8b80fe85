//! The shipped monitoring files (`monitoring/`): the alert rules pass `promtool check rules` and
//! their unit tests (`promtool test rules`, one case per alert), and the dashboard is a Grafana
//! dashboard whose every panel queries Prometheus. That every metric they name exists is checked
//! against a live scrape in `metrics_scrape.rs`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .expect("promtool (Debian's prometheus package; tests/setup/deps.sh installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_rules_are_valid_and_every_alert_has_a_passing_unit_test() {
    let (ok, out) = promtool(&["check", "rules", "prometheus-rules.yaml"]);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "prometheus-rules.test.yaml"]);
    assert!(ok, "{out}");
    let rules = std::fs::read_to_string(monitoring().join("prometheus-rules.yaml")).unwrap();
    let tests = std::fs::read_to_string(monitoring().join("prometheus-rules.test.yaml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 13, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels"
            )),
            "no unit test fires {alert}"
        );
    }
}

#[test]
fn the_dashboard_queries_prometheus_in_every_panel() {
    let text = std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["uid"], "flink-agent");
    let panels = dashboard["panels"].as_array().unwrap();
    let queries: Vec<&serde_json::Value> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(queries.len() >= 10);
    for panel in queries {
        assert_eq!(
            panel["datasource"]["type"], "prometheus",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            assert!(
                t["expr"].as_str().unwrap().contains("flink_agent_"),
                "{}",
                panel["title"]
            );
        }
    }
}
