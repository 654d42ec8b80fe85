//! The desired ruleset, planned purely from a [`Policy`]: one nftables transaction that
//! brings the agent's table to the desired content. The kernel commits a transaction
//! atomically, so packets see the old rules or the new ones, never none.
//!
//! The normal transaction ([`Swap::InPlace`]) keeps the table, its sets and its base chain and
//! refills them: `add table; add set; flush set; add element; add chain; flush chain; add
//! rule`. `flush table` alone would not do: it empties chains but keeps set elements, so a
//! removed peer would stay allowed. Deleting and re-creating the table in one transaction
//! ([`Swap::Replace`]) is also atomic for the rules, but re-registers the base chain's hook:
//! measured in a namespace, about one in a thousand SYNs of a peer allowed before and after
//! was dropped during such swaps, while in-place swaps dropped none. Replace is kept for a
//! live table that holds objects the plan does not know (left by another version, or added by
//! hand), which an in-place swap would leave behind.
//!
//! Addresses live in named interval sets (one per family and role), so a long allow-list is
//! still one rule. The planner emits expressions in the form `nft` lists them back (a single
//! port as a value, not a one-element set), which keeps desired and live comparable.

use super::rules::{rules, text, Role};
use super::Policy;
use ipnet::IpNet;
use nftables::expr::{Expression, NamedExpression, Prefix};
use nftables::schema::{
    Chain, Element, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Rule, Set, SetFlag,
    SetType, SetTypeValue, Table,
};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;

/// The one base chain, on the input hook.
pub const CHAIN: &str = "input";

/// How a transaction turns the live table into the desired one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// Flush and refill the existing sets and chain (or create them).
    InPlace,
    /// Delete the table and create it anew.
    Replace,
}

/// Plans the whole transaction for `policy`.
pub fn plan(policy: &Policy, swap: Swap) -> Nftables<'static> {
    let table = || NfListObject::Table(table_object(&policy.table));
    let mut cmds = vec![NfCmd::Add(table())];
    match swap {
        Swap::Replace => {
            cmds.push(NfCmd::Delete(table()));
            cmds.extend(objects(policy).into_iter().map(NfCmd::Add));
        }
        Swap::InPlace => {
            let mut fill = Vec::new();
            for object in objects(policy) {
                match object {
                    NfListObject::Set(mut set) => {
                        let elements = set.elem.take();
                        cmds.push(NfCmd::Add(NfListObject::Set(set.clone())));
                        cmds.push(NfCmd::Flush(FlushObject::Set(set.clone())));
                        if let Some(elem) = elements {
                            fill.push(NfCmd::Add(NfListObject::Element(Element {
                                family: set.family,
                                table: set.table,
                                name: set.name,
                                elem,
                            })));
                        }
                    }
                    NfListObject::Chain(chain) => {
                        fill.push(NfCmd::Add(NfListObject::Chain(chain.clone())));
                        fill.push(NfCmd::Flush(FlushObject::Chain(chain)));
                    }
                    NfListObject::Table(_) => {}
                    other => fill.push(NfCmd::Add(other)),
                }
            }
            cmds.extend(fill);
        }
    }
    Nftables {
        objects: Cow::Owned(cmds.into_iter().map(NfObject::CmdObject).collect()),
    }
}

/// The transaction that deletes the agent's table, whether or not it exists, and nothing else.
pub fn removal(table: &str) -> Nftables<'static> {
    let cmds = [
        NfCmd::Add(NfListObject::Table(table_object(table))),
        NfCmd::Delete(NfListObject::Table(table_object(table))),
    ];
    Nftables {
        objects: Cow::Owned(cmds.into_iter().map(NfObject::CmdObject).collect()),
    }
}

/// The table's content as it should be listed: table, sets, chain, rules.
pub fn objects(policy: &Policy) -> Vec<NfListObject<'static>> {
    let t = policy.table.as_str();
    let mut out = vec![NfListObject::Table(table_object(t))];
    // The scrape sets exist only while a metrics port is open (the rules name them).
    let scrape = (!policy.metrics_ports.is_empty()).then_some(Role::Scrape);
    for role in [Role::Peers, Role::Clients, Role::Management]
        .into_iter()
        .chain(scrape)
    {
        let nets = match role {
            Role::Peers => &policy.peers,
            Role::Clients => &policy.clients,
            Role::Management => &policy.management,
            Role::Scrape => &policy.scrape,
        };
        for v6 in [false, true] {
            out.push(set(t, role, v6, nets));
        }
    }
    out.push(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: t.to_string().into(),
        name: CHAIN.into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Input),
        prio: Some(0),
        policy: Some(if policy.default_drop {
            NfChainPolicy::Drop
        } else {
            NfChainPolicy::Accept
        }),
        ..Chain::default()
    }));
    out.extend(rules(policy).into_iter().map(|(comment, expr)| {
        NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: t.to_string().into(),
            chain: CHAIN.into(),
            expr: expr.into(),
            comment: Some(comment.into()),
            ..Rule::default()
        })
    }));
    out
}

fn table_object(name: &str) -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: name.to_string().into(),
        handle: None,
    }
}

fn set(table: &str, role: Role, v6: bool, nets: &[IpNet]) -> NfListObject<'static> {
    let elems: Vec<Expression<'static>> = nets
        .iter()
        .filter(|n| matches!(n, IpNet::V6(_)) == v6)
        .map(|n| {
            if n.prefix_len() == n.max_prefix_len() {
                text(&n.addr().to_string())
            } else {
                Expression::Named(NamedExpression::Prefix(Prefix {
                    addr: Box::new(text(&n.addr().to_string())),
                    len: u32::from(n.prefix_len()),
                }))
            }
        })
        .collect();
    NfListObject::Set(Box::new(Set {
        family: NfFamily::INet,
        table: table.to_string().into(),
        name: role.set_name(v6).into(),
        set_type: SetTypeValue::Single(if v6 {
            SetType::Ipv6Addr
        } else {
            SetType::Ipv4Addr
        }),
        flags: Some([SetFlag::Interval].into_iter().collect()),
        elem: (!elems.is_empty()).then(|| elems.into()),
        ..Set::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn policy(toml: &str) -> Policy {
        let c = crate::config::parse(toml, "test.toml").expect("test config is valid");
        Policy::from_config(&c).expect("test policy is valid")
    }

    /// Compares the planned transaction with `tests/golden/firewall_<name>.json`;
    /// `UPDATE_GOLDEN=1` rewrites the file instead.
    fn golden(name: &str, toml: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/golden/firewall_{name}.json"));
        let json = serde_json::to_string_pretty(&plan(&policy(toml), Swap::InPlace))
            .expect("serializes")
            + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            crate::fsutil::write_atomic(&path, json.as_bytes(), 0o644)
                .expect("golden file written");
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            json,
            want,
            "{} is out of date; review the diff, then run with UPDATE_GOLDEN=1",
            path.display()
        );
    }

    const NODE: &str = "node.address = \"192.0.2.1\"\n";

    #[test]
    fn single_node() {
        golden(
            "single_node",
            &format!("{NODE}cluster.nodes = [\"192.0.2.1\"]"),
        );
    }

    #[test]
    fn three_nodes_with_rest_clients() {
        golden(
            "three_node",
            &format!("{NODE}cluster.nodes = [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\"]\n[firewall]\nrest_clients = [\"198.51.100.0/24\", \"203.0.113.7\"]"),
        );
    }

    #[test]
    fn ipv6() {
        golden(
            "ipv6",
            "node.address = \"2001:db8::1\"\ncluster.nodes = [\"2001:db8::1\", \"2001:db8::2\", \"2001:db8::3\"]\n[firewall]\nrest_clients = [\"2001:db8:100::/48\"]",
        );
    }

    #[test]
    fn default_drop_with_management() {
        golden(
            "default_drop",
            &format!(
                "{NODE}cluster.nodes = [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\"]\n[firewall]\ndefault_drop = true\nextra_peers = [\"2001:db8::/64\"]\n[firewall.management]\ncidrs = [\"203.0.113.0/24\", \"2001:db8:ffff::/48\"]\nports = [22, 2222]"
            ),
        );
    }

    #[test]
    fn every_command_names_only_the_agents_table() {
        let p = policy(&format!(
            "{NODE}cluster.nodes = [\"192.0.2.1\"]\n[firewall]\ntable = \"mine\""
        ));
        for swap in [Swap::InPlace, Swap::Replace] {
            let json = serde_json::to_value(plan(&p, swap)).expect("serializes");
            let commands = json["nftables"].as_array().expect("array");
            for command in commands {
                let (_verb, object) = command
                    .as_object()
                    .and_then(|c| c.iter().next())
                    .expect("command");
                let (kind, body) = object
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .expect("object");
                let table = if kind == "table" {
                    &body["name"]
                } else {
                    &body["table"]
                };
                assert_eq!(table, "mine", "{swap:?}: {command}");
            }
            let verbs: Vec<&str> = commands
                .iter()
                .take(2)
                .map(|c| {
                    c.as_object()
                        .expect("command")
                        .keys()
                        .next()
                        .expect("verb")
                        .as_str()
                })
                .collect();
            let expected = if swap == Swap::Replace {
                ["add", "delete"]
            } else {
                ["add", "add"]
            };
            assert_eq!(verbs, expected, "{swap:?}");
        }
    }
}
