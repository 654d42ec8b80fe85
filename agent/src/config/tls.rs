//! `[tls]`: end-to-end TLS for Flink's internal traffic (RPC, blob, data plane) and its REST API.
//! The schema and the value checks live here; the files themselves (present, parseable, keys
//! private, chains, SANs, validity) are checked by the TLS concern when the desired state is
//! derived, so `validate`, a reload and the periodic check refuse bad material the same way.

use super::{AgentConfig, Errors};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the node's certificate comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// The agent makes a cluster CA once in its state dir and issues from it (one node, demo).
    #[default]
    SelfSigned,
    /// The operator gives a CA certificate and key; the agent issues its node certificate.
    Ca,
    /// The control plane supplies the node certificate chain, key and CA bundle as PEM files.
    Files,
}

impl TlsMode {
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::SelfSigned => "self-signed",
            TlsMode::Ca => "ca",
            TlsMode::Files => "files",
        }
    }
}

/// The one protocol every Flink TLS endpoint speaks (`security.ssl.protocol` takes one value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsProtocol {
    #[default]
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// `[tls]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSection {
    /// Internal mutual TLS and REST over TLS. Turning it on or off restarts Flink.
    pub enabled: bool,
    pub mode: TlsMode,
    pub protocol: TlsProtocol,
    /// REST clients must present a certificate (mutual TLS on the REST port).
    pub rest_client_auth: bool,
    /// Lifetime of the node certificates the agent issues (`ca`, `self-signed`); renewed at 2/3.
    pub cert_lifetime_days: u32,
    /// Period of the check of certificates and files (expiry, renewal, new files).
    pub check_interval_secs: u64,
    /// Pause between the steps of a CA rotation, counted from when Flink is healthy again.
    pub rotation_step_pause_secs: u64,
    /// `ca` mode: the CA that signs node certificates, and its key.
    pub ca_cert_file: Option<PathBuf>,
    pub ca_key_file: Option<PathBuf>,
    /// `files` mode: the node certificate (leaf first, then intermediates), its key, and the
    /// bundle of CAs that sign node certificates (old and new during a CA rotation).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// `files` mode, optional: another certificate for the REST port (e.g. publicly trusted),
    /// its key, and the CAs it chains to (default `ca_file`).
    pub rest_cert_file: Option<PathBuf>,
    pub rest_key_file: Option<PathBuf>,
    pub rest_ca_file: Option<PathBuf>,
    /// Any mode, optional: a CA bundle whose client certificates the REST port accepts too (the
    /// control plane's). Never an internal CA.
    pub rest_client_ca_file: Option<PathBuf>,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: TlsMode::SelfSigned,
            protocol: TlsProtocol::Tls12,
            rest_client_auth: true,
            cert_lifetime_days: 90,
            check_interval_secs: 3_600,
            rotation_step_pause_secs: 120,
            ca_cert_file: None,
            ca_key_file: None,
            cert_file: None,
            key_file: None,
            ca_file: None,
            rest_cert_file: None,
            rest_key_file: None,
            rest_ca_file: None,
            rest_client_ca_file: None,
        }
    }
}

impl TlsSection {
    /// Every file path, for resolving relative ones against the config file's directory.
    pub fn files_mut(&mut self) -> [&mut Option<PathBuf>; 9] {
        [
            &mut self.ca_cert_file,
            &mut self.ca_key_file,
            &mut self.cert_file,
            &mut self.key_file,
            &mut self.ca_file,
            &mut self.rest_cert_file,
            &mut self.rest_key_file,
            &mut self.rest_ca_file,
            &mut self.rest_client_ca_file,
        ]
    }

    fn files(&self) -> [(&'static str, &Option<PathBuf>); 9] {
        [
            ("ca_cert_file", &self.ca_cert_file),
            ("ca_key_file", &self.ca_key_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("ca_file", &self.ca_file),
            ("rest_cert_file", &self.rest_cert_file),
            ("rest_key_file", &self.rest_key_file),
            ("rest_ca_file", &self.rest_ca_file),
            ("rest_client_ca_file", &self.rest_client_ca_file),
        ]
    }
}

/// The modes a file key belongs to (`rest_client_ca_file` belongs to every mode).
fn modes_of(key: &str) -> &'static [TlsMode] {
    match key {
        "ca_cert_file" | "ca_key_file" => &[TlsMode::Ca],
        "rest_client_ca_file" => &[TlsMode::SelfSigned, TlsMode::Ca, TlsMode::Files],
        _ => &[TlsMode::Files],
    }
}

/// Checks `[tls]`: ranges, the files each mode needs and only those, absolute paths, the REST
/// client CA apart from the internal one, and the cluster shape the mode can serve.
pub fn validate(c: &AgentConfig, e: &mut Errors) {
    let t = &c.tls;
    e.range(
        "tls.cert_lifetime_days",
        t.cert_lifetime_days,
        1,
        3_650,
        "certificates are renewed at 2/3 of their life; 90 days is the default",
    );
    e.range(
        "tls.check_interval_secs",
        t.check_interval_secs,
        60,
        86_400,
        "certificates and files are re-checked this often (and on every reload)",
    );
    e.range(
        "tls.rotation_step_pause_secs",
        t.rotation_step_pause_secs,
        10,
        86_400,
        "each CA rotation step waits this long after Flink is healthy again",
    );
    for (key, value) in t.files() {
        let Some(path) = value else { continue };
        if !modes_of(key).contains(&t.mode) {
            let owner = modes_of(key)[0].name();
            e.push(
                format!("tls.{key}"),
                format!(
                    "applies to mode = \"{owner}\" only (mode is \"{}\"); remove it or set tls.mode = \"{owner}\"",
                    t.mode.name()
                ),
            );
        } else if !path.is_absolute() {
            e.push(
                format!("tls.{key}"),
                format!("must be an absolute path (got {path:?})"),
            );
        }
    }
    let required: &[(&str, &Option<PathBuf>)] = match t.mode {
        TlsMode::SelfSigned => &[],
        TlsMode::Ca => &[
            ("ca_cert_file", &t.ca_cert_file),
            ("ca_key_file", &t.ca_key_file),
        ],
        TlsMode::Files => &[
            ("cert_file", &t.cert_file),
            ("key_file", &t.key_file),
            ("ca_file", &t.ca_file),
        ],
    };
    if t.enabled {
        for (key, value) in required {
            if value.is_none() {
                e.push(
                    format!("tls.{key}"),
                    format!(
                        "is required with mode = \"{}\"; give the PEM file's path",
                        t.mode.name()
                    ),
                );
            }
        }
    }
    if t.mode == TlsMode::Files {
        match (&t.rest_cert_file, &t.rest_key_file) {
            (Some(_), None) => e.push(
                "tls.rest_key_file",
                "is required with tls.rest_cert_file; give the REST certificate's key",
            ),
            (None, Some(_)) => e.push(
                "tls.rest_cert_file",
                "is required with tls.rest_key_file; give the REST certificate chain",
            ),
            _ => {}
        }
        if t.rest_ca_file.is_some() && t.rest_cert_file.is_none() {
            e.push(
                "tls.rest_ca_file",
                "applies only with tls.rest_cert_file (the REST port otherwise uses the node certificate, which chains to tls.ca_file); remove it",
            );
        }
    }
    if let Some(rest_clients) = &t.rest_client_ca_file {
        for (key, internal) in [("ca_file", &t.ca_file), ("ca_cert_file", &t.ca_cert_file)] {
            if internal.as_ref() == Some(rest_clients) {
                e.push(
                    "tls.rest_client_ca_file",
                    format!(
                        "is tls.{key}, the internal CA: any REST client certificate it signs would be accepted by Flink's RPC, blob and data ports; sign REST client certificates with a separate CA"
                    ),
                );
            }
        }
    }
    if t.enabled && t.mode == TlsMode::SelfSigned && c.cluster.nodes.len() > 1 {
        e.push(
            "tls.mode",
            "self-signed makes a CA on each node, so the nodes of a three-node cluster would not trust each other; use mode = \"ca\" (the same CA on every node) or \"files\"",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(t: TlsSection, nodes: usize) -> Vec<String> {
        let mut c = AgentConfig {
            tls: t,
            ..AgentConfig::default()
        };
        c.cluster.nodes = (1..=nodes).map(|i| format!("10.0.0.{i}")).collect();
        let mut e = Errors::default();
        validate(&c, &mut e);
        e.0.iter().map(ToString::to_string).collect()
    }

    fn on(mode: TlsMode) -> TlsSection {
        TlsSection {
            enabled: true,
            mode,
            ..TlsSection::default()
        }
    }

    #[test]
    fn each_mode_requires_its_files_when_enabled() {
        assert!(problems(on(TlsMode::SelfSigned), 1).is_empty());
        let p = problems(on(TlsMode::Files), 1);
        for key in ["cert_file", "key_file", "ca_file"] {
            assert!(
                p.iter()
                    .any(|m| m.starts_with(&format!("tls.{key}: is required"))),
                "{p:?}"
            );
        }
        let p = problems(on(TlsMode::Ca), 1);
        assert_eq!(p.len(), 2, "{p:?}");
        let off = TlsSection {
            mode: TlsMode::Files,
            ..TlsSection::default()
        };
        assert!(problems(off, 1).is_empty(), "nothing required while off");
    }

    #[test]
    fn files_of_another_mode_and_relative_paths_are_refused() {
        let t = TlsSection {
            cert_file: Some("/etc/x.pem".into()),
            ca_key_file: Some("ca.key".into()),
            ..on(TlsMode::SelfSigned)
        };
        let p = problems(t, 1);
        assert!(p.iter().any(|m| m.starts_with(
            "tls.cert_file: applies to mode = \"files\" only (mode is \"self-signed\")"
        )));
        assert!(p
            .iter()
            .any(|m| m.starts_with("tls.ca_key_file: applies to mode = \"ca\" only")));
        let t = TlsSection {
            rest_client_ca_file: Some("clients.pem".into()),
            ..on(TlsMode::SelfSigned)
        };
        assert_eq!(
            problems(t, 1),
            ["tls.rest_client_ca_file: must be an absolute path (got \"clients.pem\")"]
        );
    }

    #[test]
    fn the_rest_client_ca_must_not_be_the_internal_ca() {
        let t = TlsSection {
            cert_file: Some("/t/node.pem".into()),
            key_file: Some("/t/node.key".into()),
            ca_file: Some("/t/ca.pem".into()),
            rest_client_ca_file: Some("/t/ca.pem".into()),
            ..on(TlsMode::Files)
        };
        let p = problems(t, 1);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("tls.rest_client_ca_file: is tls.ca_file, the internal CA"));
    }

    #[test]
    fn a_rest_certificate_needs_its_key_and_self_signed_needs_one_node() {
        let t = TlsSection {
            cert_file: Some("/t/node.pem".into()),
            key_file: Some("/t/node.key".into()),
            ca_file: Some("/t/ca.pem".into()),
            rest_cert_file: Some("/t/rest.pem".into()),
            ..on(TlsMode::Files)
        };
        assert_eq!(
            problems(t, 1),
            ["tls.rest_key_file: is required with tls.rest_cert_file; give the REST certificate's key"]
        );
        let p = problems(on(TlsMode::SelfSigned), 3);
        assert!(p[0].starts_with("tls.mode: self-signed makes a CA on each node"));
        assert!(
            problems(on(TlsMode::Ca), 3).len() == 2,
            "ca mode serves three nodes"
        );
    }
}
