//! What one X.509 certificate says, parsed once (x509-parser) into plain values: the checks in
//! [`super::material`], the decisions in [`super::plan`] and `flink-agent tls show` all read
//! these fields rather than re-parsing DER.

use ring::digest;
use rustls_pki_types::CertificateDer;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// The key inside a certificate, as far as TLS with Java cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// An EC key on the curve of that many bits (256 = P-256, 384 = P-384).
    Ec {
        bits: usize,
    },
    Rsa {
        bits: usize,
    },
    Other {
        algorithm: String,
    },
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Ec { bits } => write!(f, "an EC key of {bits} bits"),
            KeyKind::Rsa { bits } => write!(f, "an RSA key of {bits} bits"),
            KeyKind::Other { algorithm } => write!(f, "a key of algorithm {algorithm}"),
        }
    }
}

impl KeyKind {
    /// Keys Flink's JVM negotiates with the suites we render: EC P-256/P-384, RSA ≥ 2048.
    pub fn is_acceptable(&self) -> bool {
        match self {
            KeyKind::Ec { bits } => *bits == 256 || *bits == 384,
            KeyKind::Rsa { bits } => *bits >= 2048,
            KeyKind::Other { .. } => false,
        }
    }
}

/// The SHA-256 fingerprint of a certificate's DER: the identity of a CA in a trust set (a CA
/// re-issued with the same key is still another certificate Java must be given).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Self {
        Fingerprint(hex::encode(digest::digest(&digest::SHA256, der)))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Extended key usage as the certificate states it (`None` when the extension is absent, which
/// TLS stacks treat as "any use").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eku {
    pub server_auth: bool,
    pub client_auth: bool,
}

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Hex, colon-separated, as `openssl x509 -serial` shows it.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub is_ca: bool,
    pub eku: Option<Eku>,
    pub key: KeyKind,
    pub fingerprint: Fingerprint,
    /// The subjectPublicKey bits (EC point, or RSAPublicKey DER): compared with a private key's.
    pub public_key: Vec<u8>,
}

impl CertInfo {
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, x) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Some(san) = x.subject_alternative_name().map_err(|e| e.to_string())? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns_names.push(n.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_from_bytes(b) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let eku = x
            .extended_key_usage()
            .map_err(|e| e.to_string())?
            .map(|e| Eku {
                server_auth: e.value.server_auth || e.value.any,
                client_auth: e.value.client_auth || e.value.any,
            });
        let spki = x.public_key();
        let key = match spki.parsed() {
            Ok(PublicKey::EC(point)) => KeyKind::Ec {
                bits: point.key_size(),
            },
            Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa {
                bits: rsa_bits(rsa.modulus),
            },
            _ => KeyKind::Other {
                algorithm: spki.algorithm.algorithm.to_id_string(),
            },
        };
        Ok(CertInfo {
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            serial: x.raw_serial_as_string(),
            not_before: to_system_time(x.validity().not_before.timestamp()),
            not_after: to_system_time(x.validity().not_after.timestamp()),
            dns_names,
            ip_addresses,
            is_ca: x.is_ca(),
            eku,
            key,
            fingerprint: Fingerprint::of(der.as_ref()),
            public_key: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Days (rounded down) until not-after; negative once expired.
    pub fn days_left(&self, now: SystemTime) -> i64 {
        days_between(now, self.not_after)
    }
}

/// Whole days from `from` to `to`, negative when `to` is earlier.
pub fn days_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => (d.as_secs() / 86_400) as i64,
        Err(e) => -(e.duration().as_secs().div_ceil(86_400) as i64),
    }
}

/// RFC 3339 in UTC, for messages.
pub fn format_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

fn to_system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Bits of a big-endian unsigned modulus (DER may prefix a zero byte).
fn rsa_bits(modulus: &[u8]) -> usize {
    let m: Vec<u8> = modulus.iter().copied().skip_while(|b| *b == 0).collect();
    match m.first() {
        Some(first) => m.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, SanType};

    #[test]
    fn reads_sans_eku_key_and_validity_of_a_certificate() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["node-1.example".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("10.0.0.5".parse().unwrap()));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = rcgen::date_time_ymd(2026, 1, 1);
        p.not_after = rcgen::date_time_ymd(2026, 4, 1);
        let cert = p.self_signed(&key).unwrap();
        let info = CertInfo::parse(cert.der()).unwrap();
        assert_eq!(info.dns_names, vec!["node-1.example"]);
        assert_eq!(
            info.ip_addresses,
            vec!["10.0.0.5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            info.eku,
            Some(Eku {
                server_auth: true,
                client_auth: false
            })
        );
        assert_eq!(info.key, KeyKind::Ec { bits: 256 });
        assert_eq!(format_time(info.not_before), "2026-01-01T00:00:00Z");
        assert_eq!(info.public_key, key.public_key_raw());
        assert!(!info.is_ca);
        assert_eq!(info.fingerprint.0.len(), 64);
    }

    #[test]
    fn counts_days_left_down_and_negative_after_expiry() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000 * 86_400);
        assert_eq!(days_between(t, t + Duration::from_secs(86_400 * 3 - 1)), 2);
        assert_eq!(days_between(t, t - Duration::from_secs(1)), -1);
    }

    #[test]
    fn measures_rsa_moduli_without_the_sign_byte() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(rsa_bits(&[0x01, 0, 0]), 17);
        assert!(KeyKind::Rsa { bits: 2048 }.is_acceptable());
        assert!(!KeyKind::Rsa { bits: 1024 }.is_acceptable());
        assert!(!KeyKind::Ec { bits: 521 }.is_acceptable());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(CertInfo::parse(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
