//! The input chain's rules, in order, as `nftables` statements: loopback and replies first,
//! essential ICMP under `default_drop`, then Flink's ports by source set, then the drop for
//! everyone else on those ports, then management access.

use super::Policy;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, CT};
use nftables::stmt::{Match, Operator, Statement};

/// ICMP types a host needs to work: errors (path MTU discovery) and ping.
const ICMP_TYPES: &[&str] = &[
    "echo-request",
    "destination-unreachable",
    "time-exceeded",
    "parameter-problem",
];

/// ICMPv6 types a host needs: the same errors, and neighbour/router discovery and multicast
/// listener queries, without which IPv6 stops resolving neighbours within minutes.
const ICMPV6_TYPES: &[&str] = &[
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
    "echo-request",
    "mld-listener-query",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
];

/// Which addresses a set holds.
#[derive(Clone, Copy)]
pub(super) enum Role {
    Peers,
    Clients,
    Management,
    Scrape,
}

impl Role {
    pub(super) fn set_name(self, v6: bool) -> String {
        let role = match self {
            Role::Peers => "peers",
            Role::Clients => "clients",
            Role::Management => "management",
            Role::Scrape => "scrape",
        };
        format!("{role}_v{}", if v6 { 6 } else { 4 })
    }
}

/// The chain's rules in order, each with the comment `nft list` shows next to it.
pub(super) fn rules(p: &Policy) -> Vec<(&'static str, Vec<Statement<'static>>)> {
    let mut flink_ports = p.internal_ports.clone();
    flink_ports.push(p.rest_port);
    flink_ports.extend(&p.metrics_ports);
    flink_ports.sort_unstable();
    let mut r = vec![
        (
            "loopback",
            vec![is(meta(MetaKey::Iifname), text("lo")), accept()],
        ),
        (
            "replies and established connections",
            vec![
                matches(
                    Expression::Named(NamedExpression::CT(CT {
                        key: "state".into(),
                        family: None,
                        dir: None,
                    })),
                    Operator::IN,
                    Expression::List(vec![text("established"), text("related")]),
                ),
                accept(),
            ],
        ),
    ];
    if p.default_drop {
        r.push((
            "essential icmp",
            vec![
                is(
                    payload("icmp", "type"),
                    one_or_set(ICMP_TYPES.iter().map(|t| text(t))),
                ),
                accept(),
            ],
        ));
        r.push((
            "essential icmpv6",
            vec![
                is(
                    payload("icmpv6", "type"),
                    one_or_set(ICMPV6_TYPES.iter().map(|t| text(t))),
                ),
                accept(),
            ],
        ));
    }
    for v6 in [false, true] {
        r.push((
            "flink ports from peers",
            vec![
                from_set(Role::Peers, v6),
                is(payload("tcp", "dport"), ports(&flink_ports)),
                accept(),
            ],
        ));
    }
    for v6 in [false, true] {
        r.push((
            "flink rest from clients",
            vec![
                from_set(Role::Clients, v6),
                is(payload("tcp", "dport"), ports(&[p.rest_port])),
                accept(),
            ],
        ));
    }
    if !p.metrics_ports.is_empty() {
        for v6 in [false, true] {
            r.push((
                "metrics from scrape clients",
                vec![
                    from_set(Role::Scrape, v6),
                    is(payload("tcp", "dport"), ports(&p.metrics_ports)),
                    accept(),
                ],
            ));
        }
    }
    r.push((
        "flink ports from anyone else",
        vec![is(payload("tcp", "dport"), ports(&flink_ports)), drop()],
    ));
    if p.default_drop && !p.management_ports.is_empty() {
        for v6 in [false, true] {
            r.push((
                "management",
                vec![
                    from_set(Role::Management, v6),
                    is(payload("tcp", "dport"), ports(&p.management_ports)),
                    accept(),
                ],
            ));
        }
    }
    r
}

/// `ip saddr @peers_v4` / `ip6 saddr @peers_v6`.
fn from_set(role: Role, v6: bool) -> Statement<'static> {
    let proto = if v6 { "ip6" } else { "ip" };
    is(
        payload(proto, "saddr"),
        text(&format!("@{}", role.set_name(v6))),
    )
}

fn ports(ports: &[u16]) -> Expression<'static> {
    one_or_set(ports.iter().map(|p| Expression::Number(u32::from(*p))))
}

/// A single value stays a value; several become an anonymous set (as `nft` lists them).
fn one_or_set(values: impl Iterator<Item = Expression<'static>>) -> Expression<'static> {
    let mut values: Vec<_> = values.collect();
    if values.len() == 1 {
        values.remove(0)
    } else {
        Expression::Named(NamedExpression::Set(
            values
                .into_iter()
                .map(nftables::expr::SetItem::Element)
                .collect(),
        ))
    }
}

pub(super) fn text(s: &str) -> Expression<'static> {
    Expression::String(s.to_string().into())
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &str, field: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.to_string().into(),
            field: field.to_string().into(),
        },
    )))
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn drop() -> Statement<'static> {
    Statement::Drop(None)
}
