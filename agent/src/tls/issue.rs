//! Issuing certificates (rcgen, ring backend) for the `ca` and `self-signed` modes: a cluster CA,
//! node certificates for both ends of Flink's mutual TLS, and the operator's REST client
//! certificate (`curl --cert`, a browser). ECDSA P-256 throughout: fast to make, and negotiated
//! by Java 17 with the ECDHE_ECDSA suites we render.

use super::material::CaKey;
use super::pkcs8::PrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

const DAY: u64 = 86_400;
/// Node and client certificates: short-lived, renewed at 2/3 (see [`super::plan`]).
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(90 * DAY);
/// The cluster CA of `self-signed` mode.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(3650 * DAY);
/// Certificates start this much before "now", so a peer whose clock lags a little accepts them.
pub const BACKDATE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("generating a key failed: {0}")]
    KeyGen(String),
    #[error("the CA's private key cannot sign ({0}); give an unencrypted EC or RSA key")]
    CaKey(String),
    #[error("the CA certificate cannot be used for issuing ({0})")]
    CaCert(String),
    #[error("{name:?} is not a valid DNS name for a certificate ({reason})")]
    BadName { name: String, reason: String },
    #[error("signing the certificate failed: {0}")]
    Sign(String),
    #[error("the system random generator failed")]
    Random,
}

/// A certificate chain (leaf first, then its CA) and the leaf's new private key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKey,
}

impl Issued {
    /// The chain as PEM (leaf first).
    pub fn chain_pem(&self) -> String {
        super::pem::certificates_pem(&self.chain)
    }
}

/// What a node certificate must name. Loopback (127.0.0.1, ::1, localhost) is always added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRequest {
    pub common_name: String,
    pub ips: Vec<IpAddr>,
    pub dns_names: Vec<String>,
    pub lifetime: Duration,
}

/// A new self-signed CA (`self-signed` mode), constrained to sign end-entity certificates only.
pub fn new_ca(
    common_name: &str,
    now: SystemTime,
    lifetime: Duration,
) -> Result<Issued, IssueError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| IssueError::KeyGen(e.to_string()))?;
    let mut params = base_params(common_name, now, lifetime)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|e| IssueError::Sign(e.to_string()))?;
    Ok(Issued {
        chain: vec![cert.der().clone()],
        key: PrivateKey::from_pkcs8_der(key.serialize_der()),
    })
}

/// A CA ready to sign: its certificate and key, loaded once.
pub struct Signer {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Signer {
    /// From a CA checked by [`super::material::load_ca_key`] (`ca` mode, or the state dir's CA).
    pub fn new(ca: &CaKey) -> Result<Self, IssueError> {
        Self::from_parts(ca.cert.clone(), &ca.key)
    }

    /// From a CA this module just made.
    pub fn from_issued(ca: &Issued) -> Result<Self, IssueError> {
        let cert = ca
            .chain
            .first()
            .ok_or_else(|| IssueError::CaCert("empty chain".to_string()))?;
        Self::from_parts(cert.clone(), &ca.key)
    }

    fn from_parts(cert: CertificateDer<'static>, key: &PrivateKey) -> Result<Self, IssueError> {
        let key =
            KeyPair::try_from(key.pkcs8_der()).map_err(|e| IssueError::CaKey(e.to_string()))?;
        let issuer =
            Issuer::from_ca_cert_der(&cert, key).map_err(|e| IssueError::CaCert(e.to_string()))?;
        Ok(Self { cert, issuer })
    }

    /// A node certificate: serverAuth + clientAuth, SANs = the request's + loopback.
    pub fn issue_node(&self, req: &NodeRequest, now: SystemTime) -> Result<Issued, IssueError> {
        let mut params = base_params(&req.common_name, now, req.lifetime)?;
        let mut ips = req.ips.clone();
        for lo in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            if !ips.contains(&lo) {
                ips.push(lo);
            }
        }
        let mut names = req.dns_names.clone();
        if !names.iter().any(|n| n.eq_ignore_ascii_case("localhost")) {
            names.push("localhost".to_string());
        }
        for name in names {
            params.subject_alt_names.push(dns(&name)?);
        }
        params
            .subject_alt_names
            .extend(ips.into_iter().map(SanType::IpAddress));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign_leaf(params)
    }

    /// A REST client certificate (clientAuth only), e.g. for an operator's `curl --cert`.
    pub fn issue_client(
        &self,
        common_name: &str,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<Issued, IssueError> {
        let mut params = base_params(common_name, now, lifetime)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params)
    }

    fn sign_leaf(&self, mut params: CertificateParams) -> Result<Issued, IssueError> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IssueError::KeyGen(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| IssueError::Sign(e.to_string()))?;
        Ok(Issued {
            chain: vec![cert.der().clone(), self.cert.clone()],
            key: PrivateKey::from_pkcs8_der(key.serialize_der()),
        })
    }
}

fn base_params(
    common_name: &str,
    now: SystemTime,
    lifetime: Duration,
) -> Result<CertificateParams, IssueError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "flink-agent");
    params.distinguished_name = dn;
    let start = now.checked_sub(BACKDATE).unwrap_or(now);
    params.not_before = start.into();
    params.not_after = (now + lifetime).into();
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// 16 random bytes, top bit cleared so the DER INTEGER stays positive and 16 bytes long.
fn random_serial() -> Result<SerialNumber, IssueError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IssueError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn dns(name: &str) -> Result<SanType, IssueError> {
    name.try_into()
        .map(SanType::DnsName)
        .map_err(|e: rcgen::Error| IssueError::BadName {
            name: name.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tls::cert::{CertInfo, Eku};
    use crate::tls::material::{check_node_leaf, CaBundle, Leaf, SubjectName};
    use std::time::Instant;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    fn bundle(ca: &Issued) -> CaBundle {
        CaBundle {
            certs: ca.chain.clone(),
            infos: ca
                .chain
                .iter()
                .map(|c| CertInfo::parse(c).unwrap())
                .collect(),
            field: "ca".to_string(),
        }
    }

    #[test]
    fn a_node_certificate_passes_the_checks_operators_material_must_pass() {
        let t0 = Instant::now();
        let ca = new_ca("test cluster CA", now(), DEFAULT_CA_LIFETIME).unwrap();
        let t_ca = t0.elapsed();
        let signer = Signer::from_issued(&ca).unwrap();
        let t1 = Instant::now();
        let node = signer
            .issue_node(
                &NodeRequest {
                    common_name: "node-1".to_string(),
                    ips: vec!["10.1.2.3".parse().unwrap()],
                    dns_names: vec!["node-1.flink.internal".to_string()],
                    lifetime: DEFAULT_LEAF_LIFETIME,
                },
                now(),
            )
            .unwrap();
        eprintln!("timing: CA {t_ca:?}, node certificate {:?}", t1.elapsed());
        let info = CertInfo::parse(&node.chain[0]).unwrap();
        let leaf = Leaf {
            chain: node.chain.clone(),
            key: node.key.clone(),
            info: info.clone(),
            field: "node".to_string(),
        };
        let names: Vec<SubjectName> = [
            "10.1.2.3",
            "node-1.flink.internal",
            "127.0.0.1",
            "::1",
            "localhost",
        ]
        .iter()
        .map(|s| SubjectName::parse(s))
        .collect();
        let anchor = check_node_leaf(&leaf, &bundle(&ca), now(), &names).unwrap();
        assert_eq!(anchor, CertInfo::parse(&ca.chain[0]).unwrap().fingerprint);
        assert_eq!(
            info.eku,
            Some(Eku {
                server_auth: true,
                client_auth: true
            })
        );
        assert_eq!(
            info.not_after.duration_since(now()).unwrap(),
            DEFAULT_LEAF_LIFETIME
        );
        assert_eq!(now().duration_since(info.not_before).unwrap(), BACKDATE);
        assert_eq!(node.chain.len(), 2);
        // The key is the certificate's.
        let kp = KeyPair::try_from(node.key.pkcs8_der()).unwrap();
        assert_eq!(kp.public_key_raw(), info.public_key.as_slice());
    }

    #[test]
    fn the_ca_is_a_ca_and_leaves_are_not() {
        let ca = new_ca("c", now(), DEFAULT_CA_LIFETIME).unwrap();
        let info = CertInfo::parse(&ca.chain[0]).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.subject, info.issuer);
        let client = Signer::from_issued(&ca)
            .unwrap()
            .issue_client("operator", now(), Duration::from_secs(DAY))
            .unwrap();
        let c = CertInfo::parse(&client.chain[0]).unwrap();
        assert!(!c.is_ca);
        assert_eq!(c.issuer, info.subject);
        assert_eq!(
            c.eku,
            Some(Eku {
                server_auth: false,
                client_auth: true
            })
        );
    }

    #[test]
    fn a_ca_kept_as_pem_files_loads_back_and_issues_like_an_operator_s_ca() {
        use crate::tls::material::load_ca_key;
        use crate::tls::pem::{write_private, PemFile};
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("state-dir CA", now(), DEFAULT_CA_LIFETIME).unwrap();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        std::fs::write(&cert, ca.chain_pem()).unwrap();
        write_private(&key, ca.key.to_pem().as_bytes()).unwrap();
        let loaded = load_ca_key(
            &PemFile::new("tls.ca_cert_file", &cert),
            &PemFile::new("tls.ca_key_file", &key),
        )
        .unwrap();
        assert_eq!(loaded.cert, ca.chain[0]);
        let node = Signer::new(&loaded)
            .unwrap()
            .issue_client("c", now(), Duration::from_secs(DAY))
            .unwrap();
        assert_eq!(node.chain[1], ca.chain[0]);
        assert!(ca.chain_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!ca.chain_pem().contains('\r'));
    }

    #[test]
    fn serial_numbers_differ_between_certificates() {
        let ca = new_ca("c", now(), DEFAULT_CA_LIFETIME).unwrap();
        let s = Signer::from_issued(&ca).unwrap();
        let a = s
            .issue_client("a", now(), Duration::from_secs(DAY))
            .unwrap();
        let b = s
            .issue_client("a", now(), Duration::from_secs(DAY))
            .unwrap();
        assert_ne!(
            CertInfo::parse(&a.chain[0]).unwrap().serial,
            CertInfo::parse(&b.chain[0]).unwrap().serial
        );
    }

    #[test]
    fn an_invalid_dns_name_is_refused_with_the_name() {
        let ca = new_ca("c", now(), DEFAULT_CA_LIFETIME).unwrap();
        let req = NodeRequest {
            common_name: "n".to_string(),
            ips: vec![],
            dns_names: vec!["bad name\u{e9}".to_string()],
            lifetime: DEFAULT_LEAF_LIFETIME,
        };
        let err = Signer::from_issued(&ca)
            .unwrap()
            .issue_node(&req, now())
            .unwrap_err();
        assert!(err.to_string().contains("bad name"), "{err}");
    }
}
