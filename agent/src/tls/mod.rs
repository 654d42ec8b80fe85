//! End-to-end TLS for Flink's internal traffic (RPC, blob, data plane) and its REST API: the
//! pure, self-contained core. Nothing here touches the daemon; the config, render and supervisor
//! wire it in (issue #10; facts in shared/notes/tls.md).
//!
//! # Model
//!
//! Where the node's certificate comes from (`[tls] mode`):
//! - `files`: the control plane supplies PEM files (leaf chain, key, CA bundle; optionally a REST
//!   certificate and a separate REST-client CA). The agent checks them ([`material`]) and never
//!   sees a CA key. A new leaf or bundle appearing on disk is a [`plan`] decision.
//! - `ca`: the operator gives a CA certificate and key; the agent issues its own short-lived node
//!   certificate from it ([`issue`], 90 days, renewed at 2/3 of its life).
//! - `self-signed`: a single node or the demo; the agent makes a cluster CA once in its state dir.
//!
//! The internal CA must sign nothing but node certificates: internal TLS is always mutual and
//! trusts any certificate of that CA, so a REST client certificate from it would open RPC, blob
//! and shuffle ports. [`material::check_separate_cas`] refuses such a configuration.
//!
//! # Why PKCS12
//!
//! Flink reads no PEM, only Java keystores. PKCS12 is Java's default type; we write it ourselves
//! ([`keystore`]) because Debian 12's OpenSSL 3.0 writes truststores without Java's
//! trusted-certificate attribute, which Java 17 then lists as empty. PBES2/AES-256 with an
//! HMAC-SHA256 MAC is what Java 17 writes by default, and reads.
//!
//! # Why rotation means restarts
//!
//! Flink 2.3 builds every SSL context once per process (Pekko, Netty, blob server; FLIP-523 for
//! reloading is still open), and validity is checked only at handshake. So new material takes
//! effect only through a JobManager + TaskManager restart: leaf renewal is one restart; a CA change
//! is three (trust old+new, new leaf, drop old), so that no peer ever meets a certificate it does
//! not trust. Each new generation goes to new file names; the running JVMs keep theirs.
//!
//! # What is rendered
//!
//! [`flink_keys`]: internal and REST TLS on, REST with client authentication, one protocol
//! (`security.ssl.protocol` takes a single value), suites for both ECDSA and RSA keys, and the
//! per-component switches forced on. Password values are marked by [`is_secret_key`].

pub mod cert;
mod flink;
mod generation;
pub mod issue;
pub mod keystore;
pub mod material;
pub mod pem;
pub mod pkcs8;
pub mod plan;
mod prepare;
mod report;
mod settings;
mod store;

pub use flink::{flink_keys, is_secret_key, Protocol, Stores, TlsSettings};
pub use generation::{Facts, Generation, UNREAD_PASSWORD};
pub use prepare::{prepare, Access, Prepared};
pub use report::{CertificateView, Checks, TlsStatus};
pub use settings::{Files, Settings};
pub use store::StoreError;

use std::time::{Duration, SystemTime};

/// The TLS concern's part of the desired state: its settings, and the generation Flink runs
/// with (None while TLS is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub settings: Settings,
    pub generation: Option<Generation>,
}

/// Puts `spec`'s generation in force on disk (`in-force.json`) and removes the generations
/// older than the one before it; with TLS off, records that nothing is in force. Answers what
/// was done. The stores themselves were written when the generation was prepared.
pub fn apply(spec: &Spec, now: SystemTime) -> Result<String, StoreError> {
    let layout = store::Layout::new(&spec.settings.dir);
    let Some(g) = &spec.generation else {
        layout.clear_in_force()?;
        return Ok("TLS off: Flink runs without it".to_string());
    };
    let dir = layout.generation_dir(&g.id);
    if !dir.join("passwords.json").is_file() {
        return Err(StoreError::Corrupt {
            path: dir,
            reason: "the generation to put in force is incomplete".into(),
        });
    }
    layout.record_in_force(&g.id, now)?;
    let removed = layout.remove_old_generations()?;
    let step = g.facts.as_ref().map_or("?", |f| f.step.as_str());
    let mut what = format!("generation {} in force ({step})", g.id);
    if let Some(next) = g.facts.as_ref().and_then(|f| f.next_step.as_ref()) {
        what.push_str(&format!("; {next} follows"));
    }
    if !removed.is_empty() {
        what.push_str(&format!(
            "; removed old generation(s) {}",
            removed.join(", ")
        ));
    }
    Ok(what)
}

/// A REST client certificate for an operator (`curl --cert`, a browser), issued by this node's
/// REST-client CA.
#[derive(Debug)]
pub struct OperatorCertificate {
    /// The certificate and its CA, PEM.
    pub chain_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// What verifies the REST port's certificate (`curl --cacert`).
    pub server_ca_pem: String,
    /// The certificate and key as PKCS12 for browsers, and its password.
    pub pkcs12: Vec<u8>,
    pub pkcs12_password: keystore::StorePassword,
    pub not_after: SystemTime,
}

/// Issues an operator's REST client certificate named `name`, valid `lifetime`.
pub fn issue_operator_certificate(
    settings: &Settings,
    name: &str,
    lifetime: Duration,
    now: SystemTime,
) -> Result<OperatorCertificate, StoreError> {
    let layout = store::Layout::new(&settings.dir);
    let not_set_up = || StoreError::NotSetUp {
        dir: settings.dir.clone(),
    };
    let ca = layout
        .own_ca("rest-client-ca", "", now, false)?
        .ok_or_else(not_set_up)?;
    let in_force = layout.in_force().ok_or_else(not_set_up)?;
    let stored = layout.load(&in_force.id, false)?;
    let issued = issue::Signer::new(&ca)?.issue_client(name, now, lifetime)?;
    let not_after = issued
        .chain
        .first()
        .and_then(|c| cert::CertInfo::parse(c).ok())
        .map_or(now + lifetime, |i| i.not_after);
    let password = keystore::StorePassword::generate()?;
    Ok(OperatorCertificate {
        chain_pem: issued.chain_pem(),
        key_pem: issued.key.to_pem(),
        server_ca_pem: pem::certificates_pem(&stored.composition.rest_roots),
        pkcs12: keystore::keystore_pkcs12(&issued.chain, &issued.key, &password)?,
        pkcs12_password: password,
        not_after,
    })
}
