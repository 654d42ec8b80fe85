//! Checking operator-supplied TLS material before it can replace what Flink runs on: a bad file
//! is refused with the field, the problem and the fix, and the cluster keeps its old keystores.
//! The checks are the ones a TLS peer would make later, made now: parse, key matches
//! certificate, chain verifies to the CA bundle (rustls-webpki, the verifier rustls uses),
//! validity, SANs for every address a peer dials (Flink's data-plane client checks host names),
//! serverAuth+clientAuth, key strength; plus the trust-domain rule (internal CA ≠ REST client CA).

use super::cert::{format_time, CertInfo, Fingerprint};
use super::pem::{read_certificates, read_private_key, PemFile};
use super::pkcs8::PrivateKey;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why material was refused. Each message names the config field, the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("{field}: {path} does not exist; put the PEM file there or correct {field}")]
    Missing { field: String, path: PathBuf },
    #[error("{field}: cannot read {path} ({reason}); make it readable by root")]
    Unreadable {
        field: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{field}: {path} is not valid PEM ({reason}); give a PEM file with -----BEGIN ...----- blocks")]
    Pem {
        field: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{field}: {path} holds no {what} block; give a PEM file with one (an unencrypted key for PRIVATE KEY)")]
    NoPemBlock {
        field: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{field}: certificate #{index} in {path} cannot be parsed ({reason}); give DER-valid X.509 certificates")]
    BadCertificate {
        field: String,
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{field}: the private key in {path} cannot be used ({reason}); give an unencrypted EC P-256/P-384 or RSA (>= 2048 bits) key")]
    BadKey {
        field: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{field}: {path} has mode {mode:04o}, so other users can read or replace a private key; chmod 600 {path} (owner root)")]
    KeyFileOpen {
        field: String,
        path: PathBuf,
        mode: u32,
    },
    #[error("{field}: {subject} has {key}; use EC P-256/P-384 or RSA of at least 2048 bits")]
    WeakKey {
        field: String,
        subject: String,
        key: String,
    },
    #[error("{key_field}: this private key does not belong to the certificate {subject} in {cert_field}; give the key the certificate was issued for")]
    KeyMismatch {
        key_field: String,
        cert_field: String,
        subject: String,
    },
    #[error("{field}: {subject} is not a CA certificate (no basicConstraints cA=true); give the issuing CA's certificate")]
    NotCa { field: String, subject: String },
    #[error("{field}: {subject} expired at {not_after}; install a renewed certificate")]
    Expired {
        field: String,
        subject: String,
        not_after: String,
    },
    #[error("{field}: {subject} is valid only from {not_before}; check this machine's clock (NTP) or reissue the certificate")]
    NotYetValid {
        field: String,
        subject: String,
        not_before: String,
    },
    #[error("{field}: {subject} does not chain to a CA in {ca_field} ({reason}); append the intermediate certificates after the leaf in {field}, or put its issuing CA in {ca_field}")]
    Untrusted {
        field: String,
        ca_field: String,
        subject: String,
        reason: String,
    },
    #[error("{field}: {subject} has no subjectAltName for {missing} (it has: {present}); Flink's peers dial these, so reissue the certificate with them")]
    SanMissing {
        field: String,
        subject: String,
        missing: String,
        present: String,
    },
    #[error("{field}: {subject} lacks extended key usage {missing}; node certificates act as TLS server and client, so reissue with serverAuth and clientAuth")]
    EkuMissing {
        field: String,
        subject: String,
        missing: String,
    },
    #[error("{rest_field} and {internal_field} share the CA {subject}: any REST client certificate it signs would be accepted by Flink's RPC, blob and data ports; sign REST client certificates with a separate CA")]
    SameCa {
        internal_field: String,
        rest_field: String,
        subject: String,
    },
}

impl MaterialError {
    /// The config field to fix (for a key that does not match its certificate: the key's).
    pub fn field(&self) -> &str {
        use MaterialError::*;
        match self {
            Missing { field, .. }
            | Unreadable { field, .. }
            | Pem { field, .. }
            | NoPemBlock { field, .. }
            | BadCertificate { field, .. }
            | BadKey { field, .. }
            | KeyFileOpen { field, .. }
            | WeakKey { field, .. }
            | NotCa { field, .. }
            | Expired { field, .. }
            | NotYetValid { field, .. }
            | Untrusted { field, .. }
            | SanMissing { field, .. }
            | EkuMissing { field, .. } => field,
            KeyMismatch { key_field, .. } => key_field,
            SameCa { rest_field, .. } => rest_field,
        }
    }

    /// As a config problem: the field, and the sentence without the field in front.
    pub fn to_field_error(&self) -> crate::config::FieldError {
        let text = self.to_string();
        let field = self.field();
        let message = text
            .strip_prefix(&format!("{field}: "))
            .unwrap_or(&text)
            .to_string();
        crate::config::FieldError::new(field, message)
    }
}

/// An address or host name a peer uses to reach this node; its certificate must name each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubjectName {
    Ip(IpAddr),
    Dns(String),
}

impl SubjectName {
    /// An IP address if it parses as one, a DNS name otherwise.
    pub fn parse(s: &str) -> Self {
        match s.parse::<IpAddr>() {
            Ok(ip) => SubjectName::Ip(ip),
            Err(_) => SubjectName::Dns(s.to_ascii_lowercase()),
        }
    }

    fn covered_by(&self, info: &CertInfo) -> bool {
        match self {
            SubjectName::Ip(ip) => info.ip_addresses.contains(ip),
            SubjectName::Dns(name) => info.dns_names.iter().any(|san| dns_matches(san, name)),
        }
    }
}

impl fmt::Display for SubjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectName::Ip(ip) => write!(f, "{ip}"),
            SubjectName::Dns(n) => f.write_str(n),
        }
    }
}

/// RFC 6125: exact (case-insensitive), or a `*.` wildcard standing for exactly one left label.
fn dns_matches(san: &str, name: &str) -> bool {
    let san = san.to_ascii_lowercase();
    match san.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => san == name,
    }
}

/// A certificate chain (leaf first) and its private key, parsed and matched.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKey,
    /// The leaf's facts (`chain[0]`).
    pub info: CertInfo,
    pub field: String,
}

/// CA certificates trusted for one purpose (internal peers, or REST clients).
#[derive(Debug, Clone)]
pub struct CaBundle {
    pub certs: Vec<CertificateDer<'static>>,
    pub infos: Vec<CertInfo>,
    pub field: String,
}

/// A CA the agent issues from (`ca` mode: the operator's; `self-signed`: its own).
#[derive(Debug, Clone)]
pub struct CaKey {
    pub cert: CertificateDer<'static>,
    pub info: CertInfo,
    pub key: PrivateKey,
}

fn parse_all(file: &PemFile, certs: &[CertificateDer<'_>]) -> Result<Vec<CertInfo>, MaterialError> {
    certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            CertInfo::parse(c).map_err(|reason| MaterialError::BadCertificate {
                field: file.field.clone(),
                path: file.path.clone(),
                index: i + 1,
                reason,
            })
        })
        .collect()
}

/// Reads a certificate chain and its key; checks the key type and that the key is the leaf's.
pub fn load_leaf(cert: &PemFile, key: &PemFile) -> Result<Leaf, MaterialError> {
    let chain = read_certificates(cert)?;
    let info = parse_all(cert, &chain)?.remove(0);
    let private = read_private_key(key)?;
    check_key_pair(&info, cert, &private, key)?;
    Ok(Leaf {
        chain,
        key: private,
        info,
        field: cert.field.clone(),
    })
}

/// Reads a CA bundle; every certificate must be a CA.
pub fn load_ca_bundle(file: &PemFile) -> Result<CaBundle, MaterialError> {
    let certs = read_certificates(file)?;
    let infos = parse_all(file, &certs)?;
    if let Some(not_ca) = infos.iter().find(|i| !i.is_ca) {
        return Err(MaterialError::NotCa {
            field: file.field.clone(),
            subject: not_ca.subject.clone(),
        });
    }
    Ok(CaBundle {
        certs,
        infos,
        field: file.field.clone(),
    })
}

/// Reads a CA certificate (the first of the file) and its key, for issuing.
pub fn load_ca_key(cert: &PemFile, key: &PemFile) -> Result<CaKey, MaterialError> {
    let bundle = load_ca_bundle(cert)?;
    let private = read_private_key(key)?;
    let (cert_der, info) = bundle
        .certs
        .into_iter()
        .zip(bundle.infos)
        .next()
        .ok_or_else(|| MaterialError::NoPemBlock {
            field: cert.field.clone(),
            path: cert.path.clone(),
            what: "CERTIFICATE",
        })?;
    check_key_pair(&info, cert, &private, key)?;
    Ok(CaKey {
        cert: cert_der,
        info,
        key: private,
    })
}

fn check_key_pair(
    info: &CertInfo,
    cert: &PemFile,
    private: &PrivateKey,
    key: &PemFile,
) -> Result<(), MaterialError> {
    if !info.key.is_acceptable() {
        return Err(MaterialError::WeakKey {
            field: cert.field.clone(),
            subject: info.subject.clone(),
            key: info.key.to_string(),
        });
    }
    let pair =
        rcgen::KeyPair::try_from(private.pkcs8_der()).map_err(|e| MaterialError::BadKey {
            field: key.field.clone(),
            path: key.path.clone(),
            reason: e.to_string(),
        })?;
    if pair.public_key_raw() != info.public_key.as_slice() {
        return Err(MaterialError::KeyMismatch {
            key_field: key.field.clone(),
            cert_field: cert.field.clone(),
            subject: info.subject.clone(),
        });
    }
    Ok(())
}

/// Checks a node certificate at `now`: valid, serverAuth+clientAuth, chains to `bundle`, names
/// every entry of `names`. Returns the fingerprint of the bundle CA it chains to.
pub fn check_node_leaf(
    leaf: &Leaf,
    bundle: &CaBundle,
    now: SystemTime,
    names: &[SubjectName],
) -> Result<Fingerprint, MaterialError> {
    check_leaf(leaf, bundle, now, names, true)
}

/// Checks a certificate that only serves (the REST port's own certificate): like
/// [`check_node_leaf`] without clientAuth.
pub fn check_server_leaf(
    leaf: &Leaf,
    bundle: &CaBundle,
    now: SystemTime,
    names: &[SubjectName],
) -> Result<Fingerprint, MaterialError> {
    check_leaf(leaf, bundle, now, names, false)
}

fn check_leaf(
    leaf: &Leaf,
    bundle: &CaBundle,
    now: SystemTime,
    names: &[SubjectName],
    client_too: bool,
) -> Result<Fingerprint, MaterialError> {
    let info = &leaf.info;
    check_validity(&leaf.field, info, now)?;
    let missing: Vec<&str> = match info.eku {
        Some(e) => [
            (!e.server_auth, "serverAuth"),
            (client_too && !e.client_auth, "clientAuth"),
        ]
        .into_iter()
        .filter_map(|(m, n)| m.then_some(n))
        .collect(),
        None => Vec::new(),
    };
    if !missing.is_empty() {
        return Err(MaterialError::EkuMissing {
            field: leaf.field.clone(),
            subject: info.subject.clone(),
            missing: missing.join(" and "),
        });
    }
    let anchor = verify_chain(leaf, bundle, now, client_too)?;
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !n.covered_by(info))
        .map(|n| n.to_string())
        .collect();
    if !missing.is_empty() {
        let present: Vec<String> = info
            .dns_names
            .iter()
            .cloned()
            .chain(info.ip_addresses.iter().map(|ip| ip.to_string()))
            .collect();
        return Err(MaterialError::SanMissing {
            field: leaf.field.clone(),
            subject: info.subject.clone(),
            missing: missing.join(", "),
            present: if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            },
        });
    }
    Ok(anchor)
}

/// not-before ≤ now < not-after.
pub fn check_validity(field: &str, info: &CertInfo, now: SystemTime) -> Result<(), MaterialError> {
    if now < info.not_before {
        return Err(MaterialError::NotYetValid {
            field: field.to_string(),
            subject: info.subject.clone(),
            not_before: format_time(info.not_before),
        });
    }
    if now >= info.not_after {
        return Err(MaterialError::Expired {
            field: field.to_string(),
            subject: info.subject.clone(),
            not_after: format_time(info.not_after),
        });
    }
    Ok(())
}

/// Path validation as a TLS peer does it, for both usages; returns the anchoring CA.
fn verify_chain(
    leaf: &Leaf,
    bundle: &CaBundle,
    now: SystemTime,
    client_too: bool,
) -> Result<Fingerprint, MaterialError> {
    let untrusted = |reason: String| MaterialError::Untrusted {
        field: leaf.field.clone(),
        ca_field: bundle.field.clone(),
        subject: leaf.info.subject.clone(),
        reason,
    };
    let anchors = bundle
        .certs
        .iter()
        .map(webpki::anchor_from_trusted_cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| untrusted(format!("a CA certificate is unusable as trust anchor: {e}")))?;
    let (first, intermediates) = leaf
        .chain
        .split_first()
        .ok_or_else(|| untrusted("the chain is empty".to_string()))?;
    let end_entity =
        webpki::EndEntityCert::try_from(first).map_err(|e| untrusted(format!("leaf: {e}")))?;
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| untrusted("the clock is before 1970".to_string()))?;
    let time = UnixTime::since_unix_epoch(secs);
    let mut anchor = None;
    let usages = [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ];
    for usage in &usages[..if client_too { 2 } else { 1 }] {
        let path = end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                intermediates,
                time,
                *usage,
                None,
                None,
            )
            .map_err(|e| untrusted(e.to_string()))?;
        let used = path.anchor();
        anchor = anchors
            .iter()
            .position(|a| {
                a.subject == used.subject
                    && a.subject_public_key_info == used.subject_public_key_info
            })
            .and_then(|i| bundle.infos.get(i))
            .map(|info| info.fingerprint.clone());
    }
    anchor.ok_or_else(|| untrusted("no anchor found".to_string()))
}

/// Refuses a REST-client CA that is (or shares its key with) an internal CA.
pub fn check_separate_cas(
    internal: &CaBundle,
    rest_clients: &CaBundle,
) -> Result<(), MaterialError> {
    for rest in &rest_clients.infos {
        if internal
            .infos
            .iter()
            .any(|i| i.public_key == rest.public_key)
        {
            return Err(MaterialError::SameCa {
                internal_field: internal.field.clone(),
                rest_field: rest_clients.field.clone(),
                subject: rest.subject.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "material_tests.rs"]
mod tests;
