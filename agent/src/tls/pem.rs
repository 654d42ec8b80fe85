//! Reading the PEM files an operator points the agent at: certificates and private keys, with
//! rustls-pki-types' PEM parser (the one rustls itself uses; rustls-pemfile is archived). Each
//! file is read once, so the checks and the keystore see the same bytes, and private keys are
//! refused when other users could read or replace them.

use super::material::MaterialError;
use super::pkcs8::PrivateKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A PEM file and the config field that named it (every error quotes the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile {
    pub field: String,
    pub path: PathBuf,
}

impl PemFile {
    pub fn new(field: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            field: field.into(),
            path: path.into(),
        }
    }
}

/// Every `CERTIFICATE` block of the file, in order (leaf first for a chain).
pub fn read_certificates(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let bytes = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MaterialError::Pem {
            field: file.field.clone(),
            path: file.path.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(MaterialError::NoPemBlock {
            field: file.field.clone(),
            path: file.path.clone(),
            what: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// The file's private key (PKCS#8, SEC1 or PKCS#1, unencrypted) as PKCS#8, after checking that
/// only its owner can read or write the file.
pub fn read_private_key(file: &PemFile) -> Result<PrivateKey, MaterialError> {
    check_private_mode(file)?;
    let bytes = read(file)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => MaterialError::NoPemBlock {
            field: file.field.clone(),
            path: file.path.clone(),
            what: "PRIVATE KEY",
        },
        e => MaterialError::Pem {
            field: file.field.clone(),
            path: file.path.clone(),
            reason: e.to_string(),
        },
    })?;
    PrivateKey::from_key_der(&key).map_err(|reason| MaterialError::BadKey {
        field: file.field.clone(),
        path: file.path.clone(),
        reason,
    })
}

/// Refuses a private key file that its group or other users may read or write.
pub fn check_private_mode(file: &PemFile) -> Result<(), MaterialError> {
    let meta = fs::metadata(&file.path).map_err(|e| io_error(file, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o066 != 0 {
        return Err(MaterialError::KeyFileOpen {
            field: file.field.clone(),
            path: file.path.clone(),
            mode,
        });
    }
    Ok(())
}

fn read(file: &PemFile) -> Result<Vec<u8>, MaterialError> {
    fs::read(&file.path).map_err(|e| io_error(file, e))
}

fn io_error(file: &PemFile, e: io::Error) -> MaterialError {
    if e.kind() == io::ErrorKind::NotFound {
        MaterialError::Missing {
            field: file.field.clone(),
            path: file.path.clone(),
        }
    } else {
        MaterialError::Unreadable {
            field: file.field.clone(),
            path: file.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// PEM text of certificates, in order (a chain or a bundle).
pub fn certificates_pem(certs: &[CertificateDer<'_>]) -> String {
    let blocks: Vec<pem::Pem> = certs
        .iter()
        .map(|c| pem::Pem::new("CERTIFICATE", c.as_ref().to_vec()))
        .collect();
    pem::encode_many_config(&blocks, PEM_LF)
}

/// PEM with Unix line endings (the `pem` crate defaults to CRLF).
pub(super) const PEM_LF: pem::EncodeConfig =
    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);

/// Writes `content` at `path` with mode 0600, for tests and for the state dir's own keys.
pub fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    crate::fsutil::write_atomic(path, content, 0o600)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn files() -> (tempfile::TempDir, PemFile, PemFile, KeyPair) {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["a.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let c = dir.path().join("node.pem");
        let k = dir.path().join("node.key");
        fs::write(&c, format!("{}{}", cert.pem(), cert.pem())).unwrap();
        write_private(&k, key.serialize_pem().as_bytes()).unwrap();
        (
            dir,
            PemFile::new("tls.cert_file", c),
            PemFile::new("tls.key_file", k),
            key,
        )
    }

    #[test]
    fn reads_every_certificate_of_a_chain_and_the_key_as_pkcs8() {
        let (_d, c, k, kp) = files();
        assert_eq!(read_certificates(&c).unwrap().len(), 2);
        assert_eq!(
            read_private_key(&k).unwrap().pkcs8_der(),
            kp.serialized_der()
        );
    }

    #[test]
    fn a_missing_file_is_named_with_its_field() {
        let f = PemFile::new("tls.ca_file", "/nonexistent/ca.pem");
        let err = read_certificates(&f).unwrap_err();
        assert!(matches!(err, MaterialError::Missing { .. }));
        assert!(err
            .to_string()
            .starts_with("tls.ca_file: /nonexistent/ca.pem does not exist"));
    }

    #[test]
    fn a_world_readable_key_is_refused_with_its_mode() {
        let (_d, _c, k, _) = files();
        fs::set_permissions(&k.path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_key(&k).unwrap_err();
        assert!(matches!(
            err,
            MaterialError::KeyFileOpen { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("mode 0644"), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_group_readable_key_is_refused_too() {
        let (_d, _c, k, _) = files();
        fs::set_permissions(&k.path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_private_key(&k),
            Err(MaterialError::KeyFileOpen { mode: 0o640, .. })
        ));
    }

    #[test]
    fn a_file_without_the_expected_block_says_which_block() {
        let (_d, c, k, _) = files();
        // A certificate file where the key should be, and a key where certificates should be.
        write_private(&k.path, &fs::read(&c.path).unwrap()).unwrap();
        let err = read_private_key(&k).unwrap_err();
        assert!(err.to_string().contains("no PRIVATE KEY block"), "{err}");
        fs::write(&c.path, "hello\n").unwrap();
        let err = read_certificates(&c).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE block"), "{err}");
    }

    #[test]
    fn pem_written_back_reads_the_same() {
        let (_d, c, _k, _) = files();
        let certs = read_certificates(&c).unwrap();
        fs::write(&c.path, certificates_pem(&certs)).unwrap();
        assert_eq!(read_certificates(&c).unwrap(), certs);
    }
}
