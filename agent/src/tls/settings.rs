//! The TLS concern's settings, derived purely from the config: every `[tls]` key, plus what the
//! node certificate must name (peers dial `node.address`; the agent dials its REST endpoint).

use super::flink::{Protocol, TlsSettings};
use super::material::SubjectName;
use crate::config::{AgentConfig, TlsMode, TlsProtocol};
use std::path::PathBuf;
use std::time::Duration;

const DAY: u64 = 86_400;

/// `[tls]` as the concern runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub enabled: bool,
    pub mode: TlsMode,
    /// Where the agent keeps its CAs, its client identity and the generations of stores:
    /// `<agent.state_dir>/tls`.
    pub dir: PathBuf,
    /// The operator's files, as configured (which ones a mode reads is checked by the config).
    pub files: Files,
    pub flink: TlsSettings,
    /// Lifetime of the node certificates the agent issues.
    pub lifetime: Duration,
    pub check_interval: Duration,
    pub step_pause: Duration,
    /// Names every node certificate (and the REST certificate) must carry.
    pub names: Vec<SubjectName>,
    /// The node's id: the common name of the certificates the agent issues.
    pub node_id: String,
    /// The Flink user, whose group may read the stores.
    pub flink_user: Option<String>,
}

/// The PEM files of `[tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub rest_cert: Option<PathBuf>,
    pub rest_key: Option<PathBuf>,
    pub rest_ca: Option<PathBuf>,
    pub rest_client_ca: Option<PathBuf>,
}

impl Settings {
    /// From the config; `rest_host` is the host the agent dials Flink's REST API at.
    pub fn new(config: &AgentConfig, rest_host: &str) -> Self {
        let t = &config.tls;
        let mut names = vec![SubjectName::parse(&config.node.address)];
        for host in [config.node.bind_address.as_str(), rest_host] {
            let name = SubjectName::parse(host.trim_start_matches('[').trim_end_matches(']'));
            let wildcard = matches!(host, "0.0.0.0" | "::");
            if !wildcard && !names.contains(&name) {
                names.push(name);
            }
        }
        Settings {
            enabled: t.enabled,
            mode: t.mode,
            dir: config.agent.state_dir.join("tls"),
            files: Files {
                ca_cert: t.ca_cert_file.clone(),
                ca_key: t.ca_key_file.clone(),
                cert: t.cert_file.clone(),
                key: t.key_file.clone(),
                ca: t.ca_file.clone(),
                rest_cert: t.rest_cert_file.clone(),
                rest_key: t.rest_key_file.clone(),
                rest_ca: t.rest_ca_file.clone(),
                rest_client_ca: t.rest_client_ca_file.clone(),
            },
            flink: TlsSettings {
                protocol: match t.protocol {
                    TlsProtocol::Tls12 => Protocol::Tls12,
                    TlsProtocol::Tls13 => Protocol::Tls13,
                },
                rest_client_auth: t.rest_client_auth,
            },
            lifetime: Duration::from_secs(u64::from(t.cert_lifetime_days) * DAY),
            check_interval: Duration::from_secs(t.check_interval_secs),
            step_pause: Duration::from_secs(t.rotation_step_pause_secs),
            names,
            node_id: config.node.id.clone(),
            flink_user: config.flink.user.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_must_name_the_node_address_the_bind_address_and_the_rest_host() {
        let mut c = AgentConfig::default();
        c.node.address = "10.0.0.5".into();
        c.node.bind_address = "0.0.0.0".into();
        let s = Settings::new(&c, "127.0.0.1");
        assert_eq!(
            s.names,
            vec![
                SubjectName::parse("10.0.0.5"),
                SubjectName::parse("127.0.0.1")
            ]
        );
        c.node.bind_address = "2001:db8::5".into();
        let s = Settings::new(&c, "[2001:db8::5]");
        assert_eq!(
            s.names,
            vec![
                SubjectName::parse("10.0.0.5"),
                SubjectName::parse("2001:db8::5")
            ]
        );
        assert_eq!(s.dir, c.agent.state_dir.join("tls"));
    }
}
