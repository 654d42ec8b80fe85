//! Writing the PKCS12 keystores and truststores Flink's JVM loads (p12-keystore: PBES2 with
//! AES-256-CBC and an HMAC-SHA256 MAC, Java 17's own defaults, and Java's trusted-certificate
//! attribute on truststore entries, without which Java lists a truststore as empty). Files are
//! replaced atomically, mode 0640, group = the Flink user's, so Flink can read but not replace
//! them. Passwords are random and never printed.

use super::cert::Fingerprint;
use super::pkcs8::PrivateKey;
use nix::unistd::Gid;
use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Mode of keystore files: root writes, the Flink group reads.
pub const STORE_MODE: u32 = 0o640;
/// Alias of the key entry in a keystore.
pub const KEY_ALIAS: &str = "flink";

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("the system random generator failed; cannot make a keystore password")]
    Random,
    #[error("PKCS12 encoding failed ({0})")]
    Encode(String),
    #[error("a keystore needs at least one certificate")]
    Empty,
    #[error(
        "writing {path} failed ({reason}); check that the agent's state dir is writable by root"
    )]
    Write { path: PathBuf, reason: String },
}

/// A keystore password: 32 random bytes as 64 hex characters (safe unquoted in YAML).
/// `Debug` and `Display` are redacted; [`StorePassword::expose`] is the only way to the value.
#[derive(Clone, PartialEq, Eq)]
pub struct StorePassword(String);

impl StorePassword {
    pub fn generate() -> Result<Self, KeystoreError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeystoreError::Random)?;
        Ok(Self(hex::encode(bytes)))
    }

    /// A password kept from an earlier run (the agent's 0600 passwords file).
    pub fn from_secret(s: String) -> Self {
        Self(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StorePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorePassword(<redacted>)")
    }
}

impl fmt::Display for StorePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn encode_err(e: impl fmt::Display) -> KeystoreError {
    KeystoreError::Encode(e.to_string())
}

fn certificate(der: &CertificateDer<'_>) -> Result<Certificate, KeystoreError> {
    Certificate::from_der(der.as_ref()).map_err(encode_err)
}

/// A keystore: one private key entry with its chain (leaf first).
pub fn keystore_pkcs12(
    chain: &[CertificateDer<'_>],
    key: &PrivateKey,
    password: &StorePassword,
) -> Result<Vec<u8>, KeystoreError> {
    let leaf = chain.first().ok_or(KeystoreError::Empty)?;
    let certs = chain
        .iter()
        .map(certificate)
        .collect::<Result<Vec<_>, _>>()?;
    let key = p12_keystore::PrivateKey::from_der(key.pkcs8_der()).map_err(encode_err)?;
    // The local key id ties the key bag to its certificate bag; the leaf's fingerprint is unique.
    let local_key_id = Fingerprint::of(leaf.as_ref()).0.into_bytes();
    let mut store = KeyStore::new();
    store.add_entry(
        KEY_ALIAS,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    store.writer(password.expose()).write().map_err(encode_err)
}

/// A truststore: each CA as a trusted certificate entry (`ca-1`, `ca-2`, … in bundle order).
pub fn truststore_pkcs12(
    cas: &[CertificateDer<'_>],
    password: &StorePassword,
) -> Result<Vec<u8>, KeystoreError> {
    if cas.is_empty() {
        return Err(KeystoreError::Empty);
    }
    let mut store = KeyStore::new();
    for (i, ca) in cas.iter().enumerate() {
        store.add_entry(
            &format!("ca-{}", i + 1),
            KeyStoreEntry::Certificate(certificate(ca)?),
        );
    }
    store.writer(password.expose()).write().map_err(encode_err)
}

/// Writes a store atomically (temp file, fsync, rename), mode 0640, group `group` if given.
/// The group is set after the rename, so for an instant the file is root's alone, never wider.
pub fn write_store(path: &Path, bytes: &[u8], group: Option<Gid>) -> Result<(), KeystoreError> {
    let err = |e: &dyn fmt::Display| KeystoreError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    crate::fsutil::write_atomic(path, bytes, STORE_MODE).map_err(|e| err(&e))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| err(&e))?;
    }
    // The umask may have narrowed the mode at creation; the group must be able to read.
    fs::set_permissions(path, fs::Permissions::from_mode(STORE_MODE)).map_err(|e| err(&e))
}

#[cfg(test)]
#[path = "keystore_tests.rs"]
mod tests;
