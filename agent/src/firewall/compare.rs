//! Desired versus live, by meaning rather than by bytes: handles are dropped, unordered lists
//! (set elements, anonymous sets, flags) are sorted, and a one-element anonymous set counts as
//! its value. Rule order within a chain is kept, because it matters.
//!
//! The live side is read as plain JSON, not through the `nftables` crate's types: whatever
//! someone puts into our table (even an expression the crate does not model) must show up as
//! drift, never as a parse error that hides it.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A table's content in comparable form.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// `table`, `set <name>`, `chain <name>`, ... → normalized object.
    objects: BTreeMap<String, Value>,
    /// Chain name → its rules in order.
    rules: BTreeMap<String, Vec<Value>>,
}

impl Snapshot {
    /// Builds a snapshot from ruleset objects, each `{"<kind>": {...}}` as in `nft -j list`
    /// output (`metainfo` and anything that is not an object are ignored).
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Snapshot {
        let mut s = Snapshot::default();
        for object in objects {
            let Some((kind, body)) = object.as_object().and_then(|m| m.iter().next()) else {
                continue;
            };
            let mut body = normalize(body, false);
            if let Value::Object(m) = &mut body {
                m.remove("handle");
                m.remove("index");
            }
            let name = |key: &str| {
                body.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            match kind.as_str() {
                "metainfo" => {}
                "rule" => s.rules.entry(name("chain")).or_default().push(body),
                "table" => {
                    s.objects.insert("table".into(), body);
                }
                _ => {
                    s.objects.insert(format!("{kind} {}", name("name")), body);
                }
            }
        }
        s
    }

    /// Builds a snapshot from `nft -j list table ...` output.
    pub fn from_listing(listing: &Value) -> Snapshot {
        let objects = listing.get("nftables").and_then(Value::as_array);
        Snapshot::from_objects(objects.into_iter().flatten())
    }

    /// Whether this table holds a set, chain or other object that `desired` does not.
    pub fn has_objects_beyond(&self, desired: &Snapshot) -> bool {
        self.objects
            .keys()
            .any(|k| !desired.objects.contains_key(k))
    }

    /// What differs from `desired`, one sentence each; empty when the two match.
    pub fn differences_from(&self, desired: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let keys: BTreeSet<&String> = desired.objects.keys().chain(self.objects.keys()).collect();
        for key in keys {
            match (desired.objects.get(key), self.objects.get(key)) {
                (Some(_), None) => out.push(format!("{key} is missing")),
                (None, Some(_)) => out.push(format!("{key} is not ours to have (unexpected)")),
                (Some(want), Some(have)) if want != have => {
                    out.push(object_difference(key, want, have))
                }
                _ => {}
            }
        }
        let chains: BTreeSet<&String> = desired.rules.keys().chain(self.rules.keys()).collect();
        let none = Vec::new();
        for chain in chains {
            let want = desired.rules.get(chain).unwrap_or(&none);
            let have = self.rules.get(chain).unwrap_or(&none);
            if want == have {
                continue;
            }
            let first = want
                .iter()
                .zip(have)
                .position(|(w, h)| w != h)
                .unwrap_or(want.len().min(have.len()));
            out.push(format!(
                "chain {chain}: {} rule(s) wanted, {} live; first difference at rule {}: want {}, have {}",
                want.len(),
                have.len(),
                first + 1,
                want.get(first).map_or("nothing".into(), rule_text),
                have.get(first).map_or("nothing".into(), rule_text),
            ));
        }
        out
    }
}

/// Explains a differing object; for sets, which elements are missing or extra.
fn object_difference(key: &str, want: &Value, have: &Value) -> String {
    let elements = |v: &Value| -> BTreeSet<String> {
        v.get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(element_text)
            .collect()
    };
    let (w, h) = (elements(want), elements(have));
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.remove("elem");
        }
        v
    };
    if key.starts_with("set ") && strip(want) == strip(have) {
        let missing: Vec<_> = w.difference(&h).cloned().collect();
        let extra: Vec<_> = h.difference(&w).cloned().collect();
        format!(
            "{key}: missing [{}], unexpected [{}]",
            missing.join(", "),
            extra.join(", ")
        )
    } else {
        format!("{key} differs: want {want}, have {have}")
    }
}

/// A rule as its statements and, when it has one, its comment.
fn rule_text(rule: &Value) -> String {
    match rule.get("comment").and_then(Value::as_str) {
        Some(comment) => format!("{} ({comment})", rule["expr"]),
        None => rule["expr"].to_string(),
    }
}

/// `"192.0.2.1"` or `{"prefix": {"addr": "192.0.2.0", "len": 24}}` as `192.0.2.0/24`.
fn element_text(v: &Value) -> String {
    match (
        v.as_str(),
        v.pointer("/prefix/addr").and_then(Value::as_str),
        v.pointer("/prefix/len"),
    ) {
        (Some(s), _, _) => s.to_string(),
        (None, Some(addr), Some(len)) => format!("{addr}/{len}"),
        _ => v.to_string(),
    }
}

/// Canonical form: arrays sorted unless `ordered` (a rule's statements, ranges and
/// concatenations keep their order), `{"set": [x]}` collapsed to `x`.
fn normalize(v: &Value, ordered: bool) -> Value {
    match v {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(|i| normalize(i, false)).collect();
            if !ordered {
                items.sort_by_cached_key(Value::to_string);
            }
            Value::Array(items)
        }
        Value::Object(m) => {
            if let Some(Value::Array(single)) = m.get("set").filter(|_| m.len() == 1) {
                if single.len() == 1 {
                    return normalize(&single[0], false);
                }
            }
            let out: Map<String, Value> = m
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        normalize(v, matches!(k.as_str(), "expr" | "range" | "concat")),
                    )
                })
                .collect();
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(objects: Value) -> Snapshot {
        Snapshot::from_listing(&json!({ "nftables": objects }))
    }

    #[test]
    fn handles_order_of_elements_and_one_element_sets_do_not_count() {
        let desired = listing(json!([
            {"set": {"name": "p", "type": "ipv4_addr", "flags": ["interval"], "elem": ["192.0.2.9", {"prefix": {"addr": "192.0.2.0", "len": 25}}]}},
            {"rule": {"chain": "input", "expr": [{"match": {"op": "==", "left": "x", "right": {"set": [22]}}}, {"accept": null}]}}
        ]));
        let live = listing(json!([
            {"metainfo": {"version": "1.0.6"}},
            {"set": {"name": "p", "handle": 7, "type": "ipv4_addr", "flags": ["interval"], "elem": [{"prefix": {"addr": "192.0.2.0", "len": 25}}, "192.0.2.9"]}},
            {"rule": {"chain": "input", "handle": 9, "expr": [{"match": {"op": "==", "left": "x", "right": 22}}, {"accept": null}]}}
        ]));
        assert_eq!(live.differences_from(&desired), Vec::<String>::new());
    }

    #[test]
    fn set_drift_names_the_elements_and_rule_drift_the_position() {
        let desired = listing(json!([
            {"set": {"name": "p", "elem": ["192.0.2.1", {"prefix": {"addr": "198.51.100.0", "len": 24}}]}},
            {"rule": {"chain": "input", "expr": [{"accept": null}]}},
            {"rule": {"chain": "input", "expr": [{"drop": null}]}}
        ]));
        let live = listing(json!([
            {"set": {"name": "p", "elem": ["192.0.2.1", "203.0.113.5"]}},
            {"rule": {"chain": "input", "expr": [{"drop": null}]}},
            {"rule": {"chain": "input", "expr": [{"accept": null}]}}
        ]));
        assert_eq!(
            live.differences_from(&desired),
            [
                "set p: missing [198.51.100.0/24], unexpected [203.0.113.5]".to_string(),
                "chain input: 2 rule(s) wanted, 2 live; first difference at rule 1: want [{\"accept\":null}], have [{\"drop\":null}]".to_string(),
            ]
        );
    }

    #[test]
    fn objects_beyond_the_plan_are_noticed() {
        let desired = listing(json!([{"table": {"name": "t"}}, {"set": {"name": "a"}}]));
        let live = listing(
            json!([{"table": {"name": "t", "handle": 3}}, {"set": {"name": "a", "elem": ["192.0.2.1"]}}]),
        );
        assert!(
            !live.has_objects_beyond(&desired),
            "different content is not a foreign object"
        );
        let foreign = listing(json!([{"set": {"name": "a"}}, {"chain": {"name": "extra"}}]));
        assert!(foreign.has_objects_beyond(&desired));
    }

    #[test]
    fn rule_statement_order_matters() {
        let a = listing(
            json!([{"rule": {"chain": "c", "expr": [{"counter": null}, {"accept": null}]}}]),
        );
        let b = listing(
            json!([{"rule": {"chain": "c", "expr": [{"accept": null}, {"counter": null}]}}]),
        );
        assert_eq!(a.differences_from(&b).len(), 1);
        assert_eq!(listing(json!([])).differences_from(&a).len(), 1);
    }
}
