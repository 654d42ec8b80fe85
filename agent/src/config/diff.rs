//! Which config keys differ between two revisions, by dotted path: the reload answer names them
//! (never their values, some of which are secrets).

use super::AgentConfig;
use serde_json::Value;

/// The dotted paths (`checkpoints.retain`, `cluster.nodes[0]`) whose values differ.
pub fn changed_keys(old: &AgentConfig, new: &AgentConfig) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    diff("", &a, &b, &mut out);
    out
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff(
                    &child(k),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), p, q, out);
            }
        }
        (x, y) if x != y => out.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_changed_leaf_and_nothing_else() {
        let a = AgentConfig::default();
        let mut b = a.clone();
        assert!(changed_keys(&a, &b).is_empty());
        b.checkpoints.retain = 7;
        b.cluster.nodes[0] = "10.0.0.1".into();
        b.object_store.credentials_file = Some("/etc/s3.env".into());
        b.advanced
            .flink_config
            .insert("pipeline.object-reuse".into(), "true".into());
        b.firewall.rest_clients.push("10.0.0.0/8".into());
        assert_eq!(
            changed_keys(&a, &b),
            [
                "advanced.flink_config.pipeline.object-reuse",
                "checkpoints.retain",
                "cluster.nodes[0]",
                "firewall.rest_clients",
                "object_store.credentials_file",
            ]
        );
    }
}
