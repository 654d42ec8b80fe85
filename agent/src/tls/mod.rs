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
pub mod issue;
pub mod keystore;
pub mod material;
pub mod pem;
pub mod pkcs8;
pub mod plan;

pub use flink::{flink_keys, is_secret_key, Protocol, Stores, TlsSettings, PROTECTED_KEYS};
