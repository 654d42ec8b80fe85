//! Material checks: each kind of bad material an operator can supply is refused with its field.
//! Fixtures are made with rcgen, except two keys in OpenSSL's default formats
//! (agent/tests/tls/*.key.pem, test-only keys made by `openssl genrsa -traditional` and
//! `openssl ecparam -genkey -noout`).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::tls::pem::write_private;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ED25519,
};
use std::fs;
use std::path::Path;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = (now() - 365 * DAY).into();
    p.not_after = (now() + 3650 * DAY).into();
    p
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let p = ca_params(name);
    let der = p.self_signed(&key).unwrap().der().clone();
    Ca {
        der,
        issuer: Issuer::new(p, key),
    }
}

/// An intermediate CA signed by `parent`.
fn intermediate(parent: &Ca, name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let p = ca_params(name);
    let der = p.signed_by(&key, &parent.issuer).unwrap().der().clone();
    Ca {
        der,
        issuer: Issuer::new(p, key),
    }
}

fn leaf_params(sans: &[&str]) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "node-1");
    for s in sans {
        p.subject_alt_names.push(match s.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*s).try_into().unwrap()),
        });
    }
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = (now() - DAY).into();
    p.not_after = (now() + 89 * DAY).into();
    p
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn certs(&self, name: &str, certs: &[&CertificateDer<'_>]) -> PemFile {
        let owned: Vec<CertificateDer<'_>> = certs.iter().map(|c| (*c).clone()).collect();
        fs::write(self.path(name), crate::tls::pem::certificates_pem(&owned)).unwrap();
        PemFile::new(format!("tls.{name}"), self.path(name))
    }

    fn key(&self, name: &str, pem: &str) -> PemFile {
        write_private(&self.path(name), pem.as_bytes()).unwrap();
        PemFile::new(format!("tls.{name}"), self.path(name))
    }

    /// A leaf signed by `ca` with `params` and `key`, written with `extra` chain certificates.
    fn leaf(
        &self,
        ca: &Ca,
        params: CertificateParams,
        key: &KeyPair,
        extra: &[&CertificateDer<'_>],
    ) -> (PemFile, PemFile) {
        let cert = params.signed_by(key, &ca.issuer).unwrap().der().clone();
        let mut chain = vec![&cert];
        chain.extend_from_slice(extra);
        (
            self.certs("cert_file", &chain),
            self.key("key_file", &key.serialize_pem()),
        )
    }

    fn bundle(&self, cas: &[&Ca]) -> CaBundle {
        let ders: Vec<&CertificateDer<'_>> = cas.iter().map(|c| &c.der).collect();
        load_ca_bundle(&self.certs("ca_file", &ders)).unwrap()
    }
}

fn names(list: &[&str]) -> Vec<SubjectName> {
    list.iter().map(|s| SubjectName::parse(s)).collect()
}

fn check(leaf: &Leaf, bundle: &CaBundle, required: &[&str]) -> Result<Fingerprint, MaterialError> {
    check_node_leaf(leaf, bundle, now(), &names(required))
}

#[test]
fn good_material_passes_and_names_the_ca_it_chains_to() {
    let f = Files::new();
    let (a, b) = (new_ca("A"), new_ca("B"));
    let key = KeyPair::generate().unwrap();
    let (c, k) = f.leaf(
        &b,
        leaf_params(&["10.0.0.1", "node-1.example", "127.0.0.1"]),
        &key,
        &[],
    );
    let leaf = load_leaf(&c, &k).unwrap();
    let bundle = f.bundle(&[&a, &b]);
    let anchor = check(&leaf, &bundle, &["10.0.0.1", "NODE-1.example", "127.0.0.1"]).unwrap();
    assert_eq!(anchor, bundle.infos[1].fingerprint);
}

#[test]
fn a_chain_through_an_intermediate_verifies_only_with_the_intermediate_included() {
    let f = Files::new();
    let root = new_ca("root");
    let mid = intermediate(&root, "intermediate");
    let key = KeyPair::generate().unwrap();
    let bundle = f.bundle(&[&root]);

    let (c, k) = f.leaf(&mid, leaf_params(&["10.0.0.1"]), &key, &[&mid.der]);
    let leaf = load_leaf(&c, &k).unwrap();
    assert_eq!(leaf.chain.len(), 2);
    assert_eq!(
        check(&leaf, &bundle, &["10.0.0.1"]).unwrap(),
        bundle.infos[0].fingerprint
    );

    let (c, k) = f.leaf(&mid, leaf_params(&["10.0.0.1"]), &key, &[]);
    let err = check(&load_leaf(&c, &k).unwrap(), &bundle, &["10.0.0.1"]).unwrap_err();
    assert!(matches!(err, MaterialError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("append the intermediate"), "{err}");
}

#[test]
fn a_leaf_from_another_ca_is_untrusted() {
    let f = Files::new();
    let (a, b) = (new_ca("A"), new_ca("B"));
    let key = KeyPair::generate().unwrap();
    let (c, k) = f.leaf(&b, leaf_params(&["10.0.0.1"]), &key, &[]);
    let err = check(&load_leaf(&c, &k).unwrap(), &f.bundle(&[&a]), &[]).unwrap_err();
    assert!(matches!(err, MaterialError::Untrusted { .. }));
    assert!(
        err.to_string()
            .starts_with("tls.cert_file: CN=node-1 does not chain to a CA in tls.ca_file"),
        "{err}"
    );
}

#[test]
fn a_key_that_is_not_the_certificate_s_is_refused() {
    let f = Files::new();
    let a = new_ca("A");
    let (c, _) = f.leaf(&a, leaf_params(&[]), &KeyPair::generate().unwrap(), &[]);
    let other = f.key("other_key", &KeyPair::generate().unwrap().serialize_pem());
    let err = load_leaf(&c, &other).unwrap_err();
    assert!(matches!(err, MaterialError::KeyMismatch { .. }));
    assert!(
        err.to_string()
            .starts_with("tls.other_key: this private key does not belong"),
        "{err}"
    );
}

#[test]
fn an_expired_certificate_is_refused_with_its_end_date() {
    let f = Files::new();
    let a = new_ca("A");
    let mut p = leaf_params(&[]);
    p.not_before = (now() - 100 * DAY).into();
    p.not_after = (now() - 10 * DAY).into();
    let (c, k) = f.leaf(&a, p, &KeyPair::generate().unwrap(), &[]);
    let err = check(&load_leaf(&c, &k).unwrap(), &f.bundle(&[&a]), &[]).unwrap_err();
    assert!(matches!(err, MaterialError::Expired { .. }));
    assert!(err.to_string().contains("expired at 2026-05-18T"), "{err}");
}

#[test]
fn a_certificate_not_yet_valid_is_refused() {
    let f = Files::new();
    let a = new_ca("A");
    let mut p = leaf_params(&[]);
    p.not_before = (now() + DAY).into();
    let (c, k) = f.leaf(&a, p, &KeyPair::generate().unwrap(), &[]);
    let err = check(&load_leaf(&c, &k).unwrap(), &f.bundle(&[&a]), &[]).unwrap_err();
    assert!(matches!(err, MaterialError::NotYetValid { .. }));
    assert!(err.to_string().contains("clock"), "{err}");
}

#[test]
fn missing_sans_are_listed_with_the_ones_present() {
    let f = Files::new();
    let a = new_ca("A");
    let (c, k) = f.leaf(
        &a,
        leaf_params(&["10.0.0.1", "*.flink.internal"]),
        &KeyPair::generate().unwrap(),
        &[],
    );
    let leaf = load_leaf(&c, &k).unwrap();
    let bundle = f.bundle(&[&a]);
    // A wildcard covers exactly one label.
    assert!(check(&leaf, &bundle, &["node-2.flink.internal"]).is_ok());
    let err = check(
        &leaf,
        &bundle,
        &["10.0.0.2", "a.b.flink.internal", "10.0.0.1"],
    )
    .unwrap_err();
    match &err {
        MaterialError::SanMissing {
            missing, present, ..
        } => {
            assert_eq!(missing, "10.0.0.2, a.b.flink.internal");
            assert_eq!(present, "*.flink.internal, 10.0.0.1");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_server_only_certificate_lacks_client_auth() {
    let f = Files::new();
    let a = new_ca("A");
    let mut p = leaf_params(&[]);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (c, k) = f.leaf(&a, p, &KeyPair::generate().unwrap(), &[]);
    let err = check(&load_leaf(&c, &k).unwrap(), &f.bundle(&[&a]), &[]).unwrap_err();
    match &err {
        MaterialError::EkuMissing { missing, .. } => assert_eq!(missing, "clientAuth"),
        other => panic!("{other}"),
    }
}

#[test]
fn an_ed25519_key_is_refused_as_unsupported_by_the_rendered_suites() {
    let f = Files::new();
    let a = new_ca("A");
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let (c, k) = f.leaf(&a, leaf_params(&[]), &key, &[]);
    let err = load_leaf(&c, &k).unwrap_err();
    assert!(matches!(err, MaterialError::WeakKey { .. }), "{err}");
    assert!(err.to_string().contains("P-256"), "{err}");
}

#[test]
fn openssl_style_rsa_and_ec_keys_load_and_match_their_certificates() {
    let f = Files::new();
    let a = new_ca("A");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    for (name, kind) in [
        (
            "rsa2048-pkcs1.key.pem",
            crate::tls::cert::KeyKind::Rsa { bits: 2048 },
        ),
        (
            "ec-p256-sec1.key.pem",
            crate::tls::cert::KeyKind::Ec { bits: 256 },
        ),
    ] {
        let pem_text = fs::read_to_string(fixtures.join(name)).unwrap();
        let key_file = f.key(name, &pem_text);
        let pkcs8 = crate::tls::pem::read_private_key(&key_file).unwrap();
        let key = KeyPair::try_from(pkcs8.pkcs8_der()).unwrap();
        let cert = leaf_params(&["10.0.0.1"])
            .signed_by(&key, &a.issuer)
            .unwrap();
        let cert_file = f.certs("cert_file", &[cert.der()]);
        let leaf = load_leaf(&cert_file, &key_file).unwrap();
        assert_eq!(leaf.info.key, kind);
        check(&leaf, &f.bundle(&[&a]), &["10.0.0.1"]).unwrap();
    }
}

#[test]
fn a_leaf_in_the_ca_bundle_is_refused() {
    let f = Files::new();
    let a = new_ca("A");
    let leaf = leaf_params(&[])
        .signed_by(&KeyPair::generate().unwrap(), &a.issuer)
        .unwrap();
    let err = load_ca_bundle(&f.certs("ca_file", &[&a.der, leaf.der()])).unwrap_err();
    assert!(matches!(err, MaterialError::NotCa { .. }));
}

#[test]
fn a_missing_chain_file_is_named() {
    let f = Files::new();
    let k = f.key("key_file", &KeyPair::generate().unwrap().serialize_pem());
    let err = load_leaf(&PemFile::new("tls.cert_file", f.path("absent.pem")), &k).unwrap_err();
    assert!(matches!(err, MaterialError::Missing { ref field, .. } if field == "tls.cert_file"));
}

#[test]
fn a_ca_key_loads_with_its_certificate_and_must_be_private() {
    let f = Files::new();
    let key = KeyPair::generate().unwrap();
    let der = ca_params("A").self_signed(&key).unwrap().der().clone();
    let cert = f.certs("ca_cert_file", &[&der]);
    let key_file = f.key("ca_key_file", &key.serialize_pem());
    let ca = load_ca_key(&cert, &key_file).unwrap();
    assert!(ca.info.is_ca);
    // The same key, world-readable, is refused with its mode.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key_file.path, fs::Permissions::from_mode(0o604)).unwrap();
    }
    let err = load_ca_key(&cert, &key_file).unwrap_err();
    assert!(
        matches!(err, MaterialError::KeyFileOpen { mode: 0o604, .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("tls.ca_key_file: "), "{err}");
}

#[test]
fn the_internal_ca_may_not_also_be_the_rest_client_ca() {
    let f = Files::new();
    let (a, b) = (new_ca("A"), new_ca("B"));
    let internal = f.bundle(&[&a]);
    let mut rest = load_ca_bundle(&f.certs("rest_client_ca_file", &[&b.der, &a.der])).unwrap();
    let err = check_separate_cas(&internal, &rest).unwrap_err();
    assert!(matches!(err, MaterialError::SameCa { .. }));
    assert!(err.to_string().contains("separate CA"), "{err}");
    rest.certs.truncate(1);
    rest.infos.truncate(1);
    assert!(check_separate_cas(&internal, &rest).is_ok());
}

#[test]
fn a_ca_reissued_with_the_same_key_still_counts_as_the_same_ca() {
    let f = Files::new();
    let key = KeyPair::generate().unwrap();
    let first = ca_params("A").self_signed(&key).unwrap().der().clone();
    let mut p = ca_params("A again");
    p.not_after = (now() + 7000 * DAY).into();
    let second = p.self_signed(&key).unwrap().der().clone();
    let internal = load_ca_bundle(&f.certs("ca_file", &[&first])).unwrap();
    let rest = load_ca_bundle(&f.certs("rest_client_ca_file", &[&second])).unwrap();
    assert!(matches!(
        check_separate_cas(&internal, &rest),
        Err(MaterialError::SameCa { .. })
    ));
}
