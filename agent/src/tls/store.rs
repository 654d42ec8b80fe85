//! The agent's TLS files under `<agent.state_dir>/tls/`:
//!
//! - `private/` (0700 root): the CAs the agent made (`internal-ca` in `self-signed` mode, and
//!   always `rest-client-ca`, which signs the agent's own REST client certificate and the
//!   operators' ones), and the agent's client identity `agent-client`. Keys 0600.
//! - `gen-<id>/` (0750, group = the Flink user's): one generation of the stores Flink loads,
//!   named by a digest of its certificates, written whole into a temporary directory and renamed
//!   into place, never changed afterwards. The PKCS12 files are 0640 (Flink reads them); the
//!   passwords (`passwords.json`) and keys (`*.key`) are 0600 root.
//! - `in-force.json`: which generation Flink runs with, and the one before it.
//!
//! A new generation never touches the files the running JVMs loaded; older generations are
//! removed once a newer one is in force, keeping the previous one.

use super::cert::{CertInfo, Fingerprint};
use super::flink::Stores;
use super::issue::{new_ca, Issued, Signer, DEFAULT_CA_LIFETIME};
use super::keystore::{keystore_pkcs12, truststore_pkcs12, write_store, StorePassword};
use super::material::{load_ca_key, load_leaf, CaKey, Leaf, MaterialError};
use super::pem::{certificates_pem, read_certificates, write_private, PemFile};
use super::pkcs8::PrivateKey;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The field named in problems with the agent's own files.
const OWN_FIELD: &str = "agent.state_dir";
/// The agent's client certificate: a year, renewed at 2/3 like the node's.
pub const AGENT_CLIENT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// Why the agent's TLS files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{what} {path}: {source}; check free space and that agent.state_dir is writable by root"
    )]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Material(#[from] MaterialError),
    #[error("{0}; check agent.state_dir")]
    Keystore(#[from] super::keystore::KeystoreError),
    #[error("issuing a certificate failed: {0}")]
    Issue(#[from] super::issue::IssueError),
    #[error("TLS is not set up in {dir} yet; start the agent with [tls] enabled = true first")]
    NotSetUp { dir: PathBuf },
    #[error("{path} is not what the agent wrote ({reason}); remove the directory, the agent writes a new generation")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The layout of `<state_dir>/tls`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

/// Which generation is in force (`in-force.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InForceRecord {
    pub id: String,
    /// The generation before, kept until a newer one is in force.
    pub previous: Option<String>,
    /// Unix seconds.
    pub applied_at: u64,
}

/// What a generation is made of: the certificates and keys behind its four stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composition {
    /// The node certificate chain (leaf first) and its key: internal keystore, and the REST
    /// keystore unless `rest` is set.
    pub node: Vec<CertificateDer<'static>>,
    pub node_key: PrivateKey,
    /// The CA of `trusted` that the node certificate chains to.
    pub node_issuer: Fingerprint,
    /// Internal truststore: the CAs whose node certificates peers may present.
    pub trusted: Vec<CertificateDer<'static>>,
    /// A separate REST certificate chain and key (`files` mode).
    pub rest: Option<(Vec<CertificateDer<'static>>, PrivateKey)>,
    /// REST truststore: the CAs of REST client certificates.
    pub rest_clients: Vec<CertificateDer<'static>>,
    /// What a REST client verifies the REST port's certificate with.
    pub rest_roots: Vec<CertificateDer<'static>>,
}

/// Public facts of a generation (`generation.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The rotation step that made it (`initial`, `renew-leaf`, ...).
    pub step: String,
    pub node_issuer: String,
    pub created_at: u64,
}

/// A generation on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    pub dir: PathBuf,
    pub composition: Composition,
    pub meta: Meta,
    /// None when read without access to the passwords file (`Inspect`).
    pub passwords: Option<Stores<StorePassword>>,
}

impl Composition {
    /// A digest of every certificate of the four stores: equal material, equal id; any change
    /// (a leaf, a CA more or less) gives another id, hence other file names, so Flink's rendered
    /// configuration and the processes' fingerprint change with it.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut part = |label: &str, certs: &[CertificateDer<'_>]| {
            h.update(label.as_bytes());
            h.update((certs.len() as u64).to_le_bytes());
            for c in certs {
                h.update((c.len() as u64).to_le_bytes());
                h.update(c.as_ref());
            }
        };
        part("node", &self.node);
        part("trusted", &self.trusted);
        part("rest", self.rest.as_ref().map_or(&[][..], |(c, _)| c));
        part("rest-clients", &self.rest_clients);
        part("rest-roots", &self.rest_roots);
        hex::encode(&h.finalize()[..6])
    }

    pub fn rest_chain(&self) -> &[CertificateDer<'static>] {
        self.rest.as_ref().map_or(&self.node, |(c, _)| c)
    }
}

/// The store files of a generation directory.
pub fn store_paths(dir: &Path) -> Stores<PathBuf> {
    Stores {
        internal_keystore: dir.join("internal-keystore.p12"),
        internal_truststore: dir.join("internal-truststore.p12"),
        rest_keystore: dir.join("rest-keystore.p12"),
        rest_truststore: dir.join("rest-truststore.p12"),
    }
}

#[derive(Serialize, Deserialize)]
struct PasswordsFile {
    internal_keystore: String,
    internal_truststore: String,
    rest_keystore: String,
    rest_truststore: String,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn infos(certs: &[CertificateDer<'_>], path: &Path) -> Result<Vec<CertInfo>, StoreError> {
    certs
        .iter()
        .map(|c| {
            CertInfo::parse(c).map_err(|reason| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason,
            })
        })
        .collect()
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn private(&self) -> PathBuf {
        self.root.join("private")
    }

    pub fn generation_dir(&self, id: &str) -> PathBuf {
        self.root.join(format!("gen-{id}"))
    }

    fn in_force_file(&self) -> PathBuf {
        self.root.join("in-force.json")
    }

    /// `private/`, root's alone.
    fn ensure_private(&self) -> Result<(), StoreError> {
        fs::create_dir_all(self.private()).map_err(io_err("creating", &self.private()))?;
        set_mode(&self.private(), 0o700)
    }

    pub fn in_force(&self) -> Option<InForceRecord> {
        let text = fs::read(self.in_force_file()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Records `id` in force; the one in force before becomes `previous`.
    pub fn record_in_force(&self, id: &str, now: SystemTime) -> Result<(), StoreError> {
        let current = self.in_force();
        if current.as_ref().is_some_and(|r| r.id == id) {
            return Ok(());
        }
        let previous = current.map(|r| r.id);
        let record = InForceRecord {
            id: id.to_string(),
            previous,
            applied_at: unix(now),
        };
        let path = self.in_force_file();
        let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        crate::fsutil::write_atomic(&path, &bytes, 0o644).map_err(io_err("writing", &path))
    }

    /// TLS is off: nothing is in force (turning it on again starts from fresh material).
    pub fn clear_in_force(&self) -> Result<(), StoreError> {
        let path = self.in_force_file();
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes every generation but the one in force and the one before it.
    pub fn remove_old_generations(&self) -> Result<Vec<String>, StoreError> {
        let Some(record) = self.in_force() else {
            return Ok(Vec::new());
        };
        let keep = [Some(record.id), record.previous];
        let mut removed = Vec::new();
        let entries = fs::read_dir(&self.root).map_err(io_err("listing", &self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".gen-") {
                // A generation an agent died writing.
                fs::remove_dir_all(&path).map_err(io_err("removing", &path))?;
                continue;
            }
            let Some(id) = name.strip_prefix("gen-") else {
                continue;
            };
            if keep.iter().flatten().any(|k| k == id) {
                continue;
            }
            fs::remove_dir_all(&path).map_err(io_err("removing", &path))?;
            removed.push(id.to_string());
        }
        Ok(removed)
    }

    /// A CA the agent keeps in `private/<name>.{pem,key}`; made now if missing and `create`.
    pub fn own_ca(
        &self,
        name: &str,
        common_name: &str,
        now: SystemTime,
        create: bool,
    ) -> Result<Option<CaKey>, StoreError> {
        let (cert, key) = self.private_pair(name);
        if cert.is_file() && key.is_file() {
            let ca = load_ca_key(
                &PemFile::new(OWN_FIELD, &cert),
                &PemFile::new(OWN_FIELD, &key),
            )?;
            return Ok(Some(ca));
        }
        if !create {
            return Ok(None);
        }
        self.ensure_private()?;
        let issued = new_ca(common_name, now, DEFAULT_CA_LIFETIME)?;
        self.write_pair(&cert, &key, &issued)?;
        let ca = load_ca_key(
            &PemFile::new(OWN_FIELD, &cert),
            &PemFile::new(OWN_FIELD, &key),
        )?;
        log::info!(
            "made {common_name} ({}), valid until {}",
            cert.display(),
            super::cert::format_time(ca.info.not_after)
        );
        Ok(Some(ca))
    }

    /// The agent's REST client identity (`private/agent-client`), issued by `ca`; renewed at 2/3
    /// of its life or when `ca` did not issue it, if `create`.
    pub fn agent_client(
        &self,
        ca: &CaKey,
        common_name: &str,
        now: SystemTime,
        create: bool,
    ) -> Result<Option<Leaf>, StoreError> {
        let (cert, key) = self.private_pair("agent-client");
        let current = if cert.is_file() && key.is_file() {
            Some(load_leaf(
                &PemFile::new(OWN_FIELD, &cert),
                &PemFile::new(OWN_FIELD, &key),
            )?)
        } else {
            None
        };
        let fresh = current.as_ref().is_some_and(|leaf| {
            let window = super::plan::Window {
                not_before: leaf.info.not_before,
                not_after: leaf.info.not_after,
            };
            leaf.chain.get(1) == Some(&ca.cert) && now < window.renew_at()
        });
        if fresh || !create {
            return Ok(current);
        }
        let issued = Signer::new(ca)?.issue_client(common_name, now, AGENT_CLIENT_LIFETIME)?;
        self.write_pair(&cert, &key, &issued)?;
        Ok(Some(load_leaf(
            &PemFile::new(OWN_FIELD, &cert),
            &PemFile::new(OWN_FIELD, &key),
        )?))
    }

    fn private_pair(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.private();
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }

    /// Key first, then the certificate: a pair is complete only once its certificate exists.
    fn write_pair(&self, cert: &Path, key: &Path, issued: &Issued) -> Result<(), StoreError> {
        write_private(key, issued.key.to_pem().as_bytes()).map_err(io_err("writing", key))?;
        crate::fsutil::write_atomic(cert, issued.chain_pem().as_bytes(), 0o644)
            .map_err(io_err("writing", cert))
    }

    /// Reads generation `id` (its passwords too if `secrets`).
    pub fn load(&self, id: &str, secrets: bool) -> Result<Stored, StoreError> {
        let dir = self.generation_dir(id);
        let certs = |name: &str| read_certificates(&PemFile::new(OWN_FIELD, dir.join(name)));
        let key =
            |name: &str| super::pem::read_private_key(&PemFile::new(OWN_FIELD, dir.join(name)));
        let meta_path = dir.join("generation.json");
        let meta: Meta =
            serde_json::from_slice(&fs::read(&meta_path).map_err(io_err("reading", &meta_path))?)
                .map_err(|e| StoreError::Corrupt {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        let secret_key = |name: &str| {
            if secrets {
                key(name)
            } else {
                Ok(PrivateKey::from_pkcs8_der(Vec::new()))
            }
        };
        let rest = if dir.join("rest.pem").is_file() {
            Some((certs("rest.pem")?, secret_key("rest.key")?))
        } else {
            None
        };
        let composition = Composition {
            node: certs("node.pem")?,
            node_key: secret_key("node.key")?,
            node_issuer: Fingerprint(meta.node_issuer.clone()),
            trusted: certs("trusted.pem")?,
            rest,
            rest_clients: certs("rest-clients.pem")?,
            rest_roots: certs("rest-roots.pem")?,
        };
        if composition.id() != id {
            return Err(StoreError::Corrupt {
                path: dir,
                reason: "its certificates do not match its name".into(),
            });
        }
        let passwords = if secrets {
            let path = dir.join("passwords.json");
            let p: PasswordsFile =
                serde_json::from_slice(&fs::read(&path).map_err(io_err("reading", &path))?)
                    .map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            Some(Stores {
                internal_keystore: StorePassword::from_secret(p.internal_keystore),
                internal_truststore: StorePassword::from_secret(p.internal_truststore),
                rest_keystore: StorePassword::from_secret(p.rest_keystore),
                rest_truststore: StorePassword::from_secret(p.rest_truststore),
            })
        } else {
            None
        };
        Ok(Stored {
            id: id.to_string(),
            dir,
            composition,
            meta,
            passwords,
        })
    }

    /// Writes `composition` as a new generation (or returns the one with the same id), with
    /// fresh passwords. The directory appears whole or not at all.
    pub fn write(
        &self,
        composition: &Composition,
        step: &str,
        group: Option<nix::unistd::Gid>,
        now: SystemTime,
    ) -> Result<Stored, StoreError> {
        let id = composition.id();
        let dir = self.generation_dir(&id);
        if dir.join("passwords.json").is_file() {
            return self.load(&id, true);
        }
        self.ensure_private()?;
        share(&self.root, group)?;
        let tmp = self
            .root
            .join(format!(".gen-{id}.tmp.{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
        let written = self.fill(&tmp, composition, step, group, now);
        let renamed = written.and_then(|passwords| {
            share(&tmp, group)?;
            fs::rename(&tmp, &dir).map_err(io_err("renaming into place", &dir))?;
            fs::File::open(&self.root)
                .and_then(|d| d.sync_all())
                .map_err(io_err("syncing", &self.root))?;
            Ok(passwords)
        });
        if renamed.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        let passwords = renamed?;
        Ok(Stored {
            id,
            dir,
            composition: composition.clone(),
            meta: Meta {
                step: step.to_string(),
                node_issuer: composition.node_issuer.0.clone(),
                created_at: unix(now),
            },
            passwords: Some(passwords),
        })
    }

    fn fill(
        &self,
        dir: &Path,
        c: &Composition,
        step: &str,
        group: Option<nix::unistd::Gid>,
        now: SystemTime,
    ) -> Result<Stores<StorePassword>, StoreError> {
        let public = |name: &str, certs: &[CertificateDer<'_>]| {
            let path = dir.join(name);
            crate::fsutil::write_atomic(&path, certificates_pem(certs).as_bytes(), 0o644)
                .map_err(io_err("writing", &path))
        };
        let private = |name: &str, key: &PrivateKey| {
            let path = dir.join(name);
            write_private(&path, key.to_pem().as_bytes()).map_err(io_err("writing", &path))
        };
        public("node.pem", &c.node)?;
        private("node.key", &c.node_key)?;
        public("trusted.pem", &c.trusted)?;
        if let Some((chain, key)) = &c.rest {
            public("rest.pem", chain)?;
            private("rest.key", key)?;
        }
        public("rest-clients.pem", &c.rest_clients)?;
        public("rest-roots.pem", &c.rest_roots)?;
        let passwords = Stores {
            internal_keystore: StorePassword::generate()?,
            internal_truststore: StorePassword::generate()?,
            rest_keystore: StorePassword::generate()?,
            rest_truststore: StorePassword::generate()?,
        };
        let paths = store_paths(dir);
        let rest_key = c.rest.as_ref().map_or(&c.node_key, |(_, k)| k);
        write_store(
            &paths.internal_keystore,
            &keystore_pkcs12(&c.node, &c.node_key, &passwords.internal_keystore)?,
            group,
        )?;
        write_store(
            &paths.internal_truststore,
            &truststore_pkcs12(&c.trusted, &passwords.internal_truststore)?,
            group,
        )?;
        write_store(
            &paths.rest_keystore,
            &keystore_pkcs12(c.rest_chain(), rest_key, &passwords.rest_keystore)?,
            group,
        )?;
        write_store(
            &paths.rest_truststore,
            &truststore_pkcs12(&c.rest_clients, &passwords.rest_truststore)?,
            group,
        )?;
        let file = PasswordsFile {
            internal_keystore: passwords.internal_keystore.expose().into(),
            internal_truststore: passwords.internal_truststore.expose().into(),
            rest_keystore: passwords.rest_keystore.expose().into(),
            rest_truststore: passwords.rest_truststore.expose().into(),
        };
        let path = dir.join("passwords.json");
        write_private(&path, &serde_json::to_vec(&file).unwrap_or_default())
            .map_err(io_err("writing", &path))?;
        let meta = Meta {
            step: step.to_string(),
            node_issuer: c.node_issuer.0.clone(),
            created_at: unix(now),
        };
        let path = dir.join("generation.json");
        crate::fsutil::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&meta).unwrap_or_default(),
            0o644,
        )
        .map_err(io_err("writing", &path))?;
        Ok(passwords)
    }
}

impl Stored {
    /// Facts of every certificate, for status.
    pub fn infos(&self) -> Result<StoredInfos, StoreError> {
        let c = &self.composition;
        Ok(StoredInfos {
            node: infos(&c.node[..1], &self.dir)?.remove(0),
            trusted: infos(&c.trusted, &self.dir)?,
            rest: match &c.rest {
                Some((chain, _)) => Some(infos(&chain[..1], &self.dir)?.remove(0)),
                None => None,
            },
            rest_clients: infos(&c.rest_clients, &self.dir)?,
        })
    }
}

/// The parsed certificates of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInfos {
    pub node: CertInfo,
    pub trusted: Vec<CertInfo>,
    pub rest: Option<CertInfo>,
    pub rest_clients: Vec<CertInfo>,
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

/// A directory the Flink group may enter and read (0750, its group), or root's alone (0700)
/// when Flink runs as the agent's user.
fn share(dir: &Path, group: Option<nix::unistd::Gid>) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    match group {
        Some(gid) => {
            nix::unistd::chown(dir, None, Some(gid))
                .map_err(|e| io_err("chown", dir)(io::Error::from(e)))?;
            set_mode(dir, 0o750)
        }
        None => set_mode(dir, 0o700),
    }
}
