//! Private keys as PKCS#8, whatever PEM flavour the operator gave. Java's PKCS12 key bags and
//! ring (through rcgen) take only PKCS#8, while OpenSSL writes `EC PRIVATE KEY` (SEC1) and
//! `RSA PRIVATE KEY` (PKCS#1) by default; both wrap losslessly into PKCS#8 (RFC 5208), so we
//! wrap them here rather than ask operators to convert.

use rustls_pki_types::PrivateKeyDer;
use std::fmt;

/// A private key in PKCS#8 DER. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey {
    der: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PrivateKey {
    /// A key already in PKCS#8 DER (as rcgen produces).
    pub fn from_pkcs8_der(der: Vec<u8>) -> Self {
        Self { der }
    }

    /// Any of the three PEM/DER flavours, converted to PKCS#8.
    pub fn from_key_der(key: &PrivateKeyDer<'_>) -> Result<Self, String> {
        let der = match key {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            PrivateKeyDer::Pkcs1(k) => wrap_pkcs1(k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => wrap_sec1(k.secret_sec1_der())?,
            _ => return Err("unknown private key format".to_string()),
        };
        Ok(Self { der })
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.der
    }

    /// PEM (`PRIVATE KEY`), for files the agent keeps (0600) in its state dir.
    pub fn to_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", self.der.clone()),
            super::pem::PEM_LF,
        )
    }
}

// DER object identifiers, content octets only.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// PKCS#1 RSAPrivateKey → PrivateKeyInfo { 0, rsaEncryption NULL, OCTET STRING }.
fn wrap_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    let alg = tlv(
        0x30,
        &[tlv(0x06, RSA_ENCRYPTION), vec![0x05, 0x00]].concat(),
    );
    private_key_info(&alg, pkcs1)
}

/// SEC1 ECPrivateKey → PrivateKeyInfo { 0, ecPublicKey + curve, OCTET STRING }. The curve comes
/// from the key's own `[0] parameters`, or from the scalar's length when they are absent.
fn wrap_sec1(sec1: &[u8]) -> Result<Vec<u8>, String> {
    let (tag, body, _) = read_tlv(sec1).ok_or("EC key: not DER")?;
    if tag != 0x30 {
        return Err("EC key: not a SEQUENCE".to_string());
    }
    let mut rest = body;
    let mut scalar_len = None;
    let mut curve: Option<&[u8]> = None;
    while !rest.is_empty() {
        let (tag, value, next) = read_tlv(rest).ok_or("EC key: truncated")?;
        match tag {
            0x04 => scalar_len = Some(value.len()),
            0xa0 => {
                let (t, oid, _) = read_tlv(value).ok_or("EC key: bad parameters")?;
                if t == 0x06 {
                    curve = Some(oid);
                }
            }
            _ => {}
        }
        rest = next;
    }
    let curve = match (curve, scalar_len) {
        (Some(c), _) => c,
        (None, Some(32)) => P256,
        (None, Some(48)) => P384,
        _ => return Err("EC key: unknown curve (use P-256 or P-384)".to_string()),
    };
    let alg = tlv(0x30, &[tlv(0x06, EC_PUBLIC_KEY), tlv(0x06, curve)].concat());
    Ok(private_key_info(&alg, sec1))
}

fn private_key_info(alg: &[u8], key: &[u8]) -> Vec<u8> {
    let version = [0x02, 0x01, 0x00];
    tlv(0x30, &[&version[..], alg, &tlv(0x04, key)].concat())
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

/// One DER element: (tag, value, what follows). Single-byte tags only, which is all SEC1 uses.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};
    use rustls_pki_types::{PrivatePkcs1KeyDer, PrivateSec1KeyDer};

    /// The ECPrivateKey inside a PKCS#8 key from rcgen: a real SEC1 key to feed back in.
    fn inner_sec1(pkcs8: &[u8]) -> Vec<u8> {
        let (_, body, _) = read_tlv(pkcs8).unwrap();
        let (_, _, rest) = read_tlv(body).unwrap(); // version
        let (_, _, rest) = read_tlv(rest).unwrap(); // algorithm
        let (_, key, _) = read_tlv(rest).unwrap();
        key.to_vec()
    }

    #[test]
    fn a_sec1_key_becomes_the_same_pkcs8_key_ring_can_use() {
        for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384] {
            let kp = KeyPair::generate_for(alg).unwrap();
            let sec1 = inner_sec1(kp.serialized_der());
            let key = PrivateKey::from_key_der(&PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(
                sec1.as_slice(),
            )))
            .unwrap();
            let again = KeyPair::try_from(key.pkcs8_der()).unwrap();
            assert_eq!(again.public_key_raw(), kp.public_key_raw());
        }
    }

    #[test]
    fn a_pkcs1_key_is_wrapped_with_the_rsa_algorithm() {
        let key = PrivateKey::from_key_der(&PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
            &[0x30, 0x03, 0x02, 0x01, 0x00][..],
        )))
        .unwrap();
        let (tag, body, rest) = read_tlv(key.pkcs8_der()).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (_, _, after_version) = read_tlv(body).unwrap();
        let (_, alg, after_alg) = read_tlv(after_version).unwrap();
        let (_, oid, _) = read_tlv(alg).unwrap();
        assert_eq!(oid, RSA_ENCRYPTION);
        let (tag, inner, _) = read_tlv(after_alg).unwrap();
        assert_eq!((tag, inner), (0x04, &[0x30, 0x03, 0x02, 0x01, 0x00][..]));
    }

    #[test]
    fn long_lengths_round_trip() {
        let value = vec![7u8; 300];
        let encoded = tlv(0x04, &value);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tag, v, rest) = read_tlv(&encoded).unwrap();
        assert_eq!((tag, v, rest.len()), (0x04, &value[..], 0));
    }

    #[test]
    fn garbage_is_refused_not_wrapped() {
        assert!(wrap_sec1(&[0x30, 0x05, 0x01]).is_err());
        assert!(wrap_sec1(&[0x02, 0x01, 0x00]).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = PrivateKey::from_pkcs8_der(vec![0xde, 0xad]);
        assert_eq!(format!("{key:?}"), "PrivateKey(<redacted>)");
    }
}
