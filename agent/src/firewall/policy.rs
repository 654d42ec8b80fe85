//! What the firewall must enforce, in typed form: who the peers, REST clients and management
//! hosts are, and which ports are whose. Built from the config once; both validation and
//! planning use it, so a config that validates always plans.

use crate::config::{AgentConfig, FieldError};
use ipnet::IpNet;
use std::net::IpAddr;

/// The firewall's view of the config: networks are parsed, deduplicated and merged (nftables
/// refuses overlapping intervals in one set), ports are sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub table: String,
    pub default_drop: bool,
    /// `cluster.nodes` and `firewall.extra_peers`: may reach every Flink port.
    pub peers: Vec<IpNet>,
    /// `firewall.rest_clients`: may reach the REST port.
    pub clients: Vec<IpNet>,
    /// `firewall.management.cidrs`: may reach `management_ports` under `default_drop`.
    pub management: Vec<IpNet>,
    pub management_ports: Vec<u16>,
    /// Every other pinned Flink port (RPC, blob, data, collect, metrics) and, in a three-node
    /// cluster, ZooKeeper's (client, quorum, election): peers only. In HA the JobManager's RPC
    /// port is `high-availability.jobmanager.port`, pinned to `ports.jobmanager_rpc`.
    pub internal_ports: Vec<u16>,
    /// Flink's REST port: clients and peers.
    pub rest_port: u16,
    /// `metrics.scrape_clients`: may reach `metrics_ports`.
    pub scrape: Vec<IpNet>,
    /// The agent's metrics listener (unless on loopback) and Flink's reporter ports (with
    /// `metrics.flink_reporter`): scrape clients and peers.
    pub metrics_ports: Vec<u16>,
}

impl Policy {
    /// Reads the firewall policy from a config, or every problem with it, each naming its key.
    pub fn from_config(c: &AgentConfig) -> Result<Policy, Vec<FieldError>> {
        let f = &c.firewall;
        let mut errors = Vec::new();
        let mut peers = Vec::new();
        for (i, node) in c.cluster.nodes.iter().enumerate() {
            match node.parse::<IpAddr>() {
                Ok(ip) => peers.push(IpNet::from(ip)),
                Err(_) => errors.push(FieldError::new(
                    format!("cluster.nodes[{i}]"),
                    format!(
                        "{node:?} is a host name, but the firewall needs IP addresses (it does not resolve names, so the rules never depend on DNS); list the node's IP address, or set firewall.enabled = false"
                    ),
                )),
            }
        }
        let others = c.cluster.nodes.iter().filter(|n| **n != c.node.address);
        if c.cluster.nodes.len() > 1 && others.count() == 0 {
            errors.push(FieldError::new(
                "cluster.nodes",
                "a multi-node cluster needs its peers' addresses for the firewall, but every entry is this node's own address; list the other nodes' addresses",
            ));
        }
        peers.extend(networks(
            "firewall.extra_peers",
            &f.extra_peers,
            &mut errors,
        ));
        let clients = networks("firewall.rest_clients", &f.rest_clients, &mut errors);
        let scrape = networks(
            "metrics.scrape_clients",
            &c.metrics.scrape_clients,
            &mut errors,
        );
        let mut metrics_ports: Vec<u16> = c
            .metrics
            .listen_addr()
            .filter(|a| !a.ip().is_loopback())
            .map(|a| a.port())
            .into_iter()
            .collect();
        if c.metrics.flink_reporter {
            metrics_ports.extend(c.ports.reporter().map(|(_, port)| port));
        }
        metrics_ports.sort_unstable();
        metrics_ports.dedup();
        let management = networks(
            "firewall.management.cidrs",
            &f.management.cidrs,
            &mut errors,
        );

        let flink_ports = c.ports.named();
        let all_ports: Vec<(&str, u16)> = flink_ports
            .iter()
            .copied()
            .chain(c.ports.zookeeper())
            .collect();
        for (i, port) in f.management.ports.iter().enumerate() {
            let path = format!("firewall.management.ports[{i}]");
            if *port == 0 {
                errors.push(FieldError::new(path, "must be between 1 and 65535 (got 0)"));
            } else if let Some((name, _)) = all_ports.iter().find(|(_, p)| p == port) {
                errors.push(FieldError::new(
                    path,
                    format!("port {port} is ports.{name}, which only peers and REST clients may reach; remove it from the management ports"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut management_ports = f.management.ports.clone();
        management_ports.sort_unstable();
        management_ports.dedup();
        let zookeeper = c.ports.zookeeper();
        let zookeeper = if c.cluster.nodes.len() == 3 {
            &zookeeper[..]
        } else {
            &[]
        };
        let mut internal_ports: Vec<u16> = flink_ports
            .iter()
            .filter(|(name, _)| *name != "rest")
            .chain(zookeeper)
            .map(|(_, port)| *port)
            .collect();
        internal_ports.sort_unstable();
        Ok(Policy {
            table: f.table.clone(),
            default_drop: f.default_drop,
            peers: IpNet::aggregate(&peers),
            clients: IpNet::aggregate(&clients),
            management: IpNet::aggregate(&management),
            management_ports,
            internal_ports,
            rest_port: c.ports.rest,
            scrape: IpNet::aggregate(&scrape),
            metrics_ports,
        })
    }
}

/// Parses a list of addresses or CIDRs (`192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`).
/// A CIDR with host bits set is refused rather than silently widened or narrowed: `10.0.0.1/8`
/// is more likely a typo than a wish to open a /8.
fn networks(path: &str, values: &[String], errors: &mut Vec<FieldError>) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let parsed = v
            .parse::<IpNet>()
            .or_else(|_| v.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) if net.trunc() != net => errors.push(FieldError::new(
                at,
                format!("{v:?} has host bits set; write the network address, e.g. {:?}", net.trunc().to_string()),
            )),
            Ok(net) => out.push(net),
            Err(_) => errors.push(FieldError::new(
                at,
                format!("{v:?} is not an IP address or CIDR; write e.g. \"192.0.2.0/24\" or \"2001:db8::/32\""),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> AgentConfig {
        let mut c: AgentConfig = toml::from_str(toml).expect("test config parses");
        c.node.address = c.cluster.nodes[0].clone();
        c
    }

    fn problems(c: &AgentConfig) -> Vec<String> {
        Policy::from_config(c)
            .expect_err("config should be refused")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn peers_and_clients_are_merged_and_sorted() {
        let c = config(
            r#"
            cluster.nodes = ["192.0.2.3", "192.0.2.1", "2001:db8::1"]
            [firewall]
            extra_peers = ["192.0.2.0/30"]
            rest_clients = ["198.51.100.0/25", "198.51.100.128/25", "198.51.100.7"]
            "#,
        );
        let p = Policy::from_config(&c).expect("valid");
        let show = |v: &[IpNet]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(show(&p.peers), ["192.0.2.0/30", "2001:db8::1/128"]);
        assert_eq!(show(&p.clients), ["198.51.100.0/24"]);
        assert_eq!(
            p.internal_ports,
            [2181, 2888, 3888, 6121, 6122, 6123, 6124, 6125, 6126, 6127],
            "three nodes: ZooKeeper's ports too, to peers only"
        );
        assert_eq!(p.rest_port, 8081);
        let single = config(r#"cluster.nodes = ["192.0.2.3"]"#);
        assert_eq!(
            Policy::from_config(&single).expect("valid").internal_ports,
            [6121, 6122, 6123, 6124, 6125, 6126, 6127]
        );
        assert!(p.metrics_ports.is_empty(), "loopback metrics, no reporter");
    }

    #[test]
    fn metrics_ports_open_when_reachable_from_the_network() {
        let c = config(
            r#"
            cluster.nodes = ["192.0.2.1"]
            [metrics]
            listen = "0.0.0.0:9248"
            scrape_clients = ["198.51.100.0/24"]
            flink_reporter = true
            "#,
        );
        let p = Policy::from_config(&c).expect("valid");
        assert_eq!(p.metrics_ports, [9248, 9249, 9250]);
        assert_eq!(p.scrape[0].to_string(), "198.51.100.0/24");
    }

    #[test]
    fn bad_values_name_their_field_and_the_fix() {
        let c = config(
            r#"
            cluster.nodes = ["192.0.2.1", "flink-2.internal", "192.0.2.3"]
            [firewall]
            rest_clients = ["10.0.0.1/8", "not-a-net"]
            management = { cidrs = ["2001:db8::/129"], ports = [0, 8081] }
            "#,
        );
        let p = problems(&c);
        let expect = [
            "cluster.nodes[1]: \"flink-2.internal\" is a host name",
            "firewall.rest_clients[0]: \"10.0.0.1/8\" has host bits set; write the network address, e.g. \"10.0.0.0/8\"",
            "firewall.rest_clients[1]: \"not-a-net\" is not an IP address or CIDR",
            "firewall.management.cidrs[0]: \"2001:db8::/129\" is not an IP address or CIDR",
            "firewall.management.ports[0]: must be between 1 and 65535",
            "firewall.management.ports[1]: port 8081 is ports.rest",
        ];
        assert_eq!(p.len(), expect.len(), "{p:#?}");
        for (got, want) in p.iter().zip(expect) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn a_multi_node_cluster_without_other_nodes_is_refused() {
        let c = config(r#"cluster.nodes = ["192.0.2.1", "192.0.2.1", "192.0.2.1"]"#);
        assert_eq!(problems(&c).len(), 1);
        assert!(problems(&c)[0].starts_with("cluster.nodes: a multi-node cluster needs its peers"));
    }
}
