//! `[firewall]`: the node's nftables rules for Flink. The schema and the value checks live here;
//! what the values mean together (peer and client sets, ports) is decided by the firewall's own
//! policy when the desired state is derived, which also reports its problems, so the check and
//! the rules can never disagree.

use super::{AgentConfig, Errors};
use serde::{Deserialize, Serialize};

/// The agent's own nftables table and who may reach Flink's ports.
///
/// Peers are `cluster.nodes` plus `extra_peers`. Node addresses must be IP addresses when the
/// firewall is enabled: resolving host names would make the rules depend on DNS answers that
/// may change, or fail, between reconciles, so a host name is refused instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FirewallSection {
    /// Whether the agent owns a firewall table. Turning it off removes the agent's table.
    pub enabled: bool,
    /// Name of the agent's table (family `inet`). The agent never touches any other table.
    pub table: String,
    /// Addresses or CIDRs allowed to reach the REST port (the peers always are).
    pub rest_clients: Vec<String>,
    /// More peer addresses or CIDRs, e.g. the peers' IPv6 addresses on a dual-stack network.
    pub extra_peers: Vec<String>,
    /// Drop all other inbound traffic too, except loopback, replies, essential ICMP and
    /// `management`. Off: only Flink's ports are filtered.
    pub default_drop: bool,
    /// Who may still reach the node when `default_drop` is on (SSH).
    pub management: ManagementSection,
    /// How often the live table is compared with the desired one and repaired.
    pub reconcile_interval_secs: u64,
}

impl Default for FirewallSection {
    fn default() -> Self {
        Self {
            enabled: true,
            table: "flink_agent".into(),
            rest_clients: Vec::new(),
            extra_peers: Vec::new(),
            default_drop: false,
            management: ManagementSection::default(),
            reconcile_interval_secs: 5,
        }
    }
}

/// `[firewall.management]`: operator access that survives `default_drop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManagementSection {
    /// Addresses or CIDRs allowed to the management ports.
    pub cidrs: Vec<String>,
    /// TCP ports open to `cidrs` (SSH by default).
    pub ports: Vec<u16>,
}

impl Default for ManagementSection {
    fn default() -> Self {
        Self {
            cidrs: Vec::new(),
            ports: vec![22],
        }
    }
}

/// Checks `[firewall]` by building the policy the rules are planned from.
pub fn validate(c: &AgentConfig, e: &mut Errors) {
    let f = &c.firewall;
    e.range(
        "firewall.reconcile_interval_secs",
        f.reconcile_interval_secs,
        1,
        3_600,
        "drift is repaired within this period",
    );
    let name_ok = f.table.len() <= 63
        && f.table.starts_with(|ch: char| ch.is_ascii_lowercase())
        && f.table
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
    if !name_ok {
        e.push(
            "firewall.table",
            format!(
                "must be 1-63 characters of a-z, 0-9 or '_', starting with a letter (got {:?})",
                f.table
            ),
        );
    }
}
