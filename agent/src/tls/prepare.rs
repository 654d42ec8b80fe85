//! Which generation Flink must run with now: the material the config names is read and checked,
//! [`super::plan::decide`] picks the step from what is in force, and the step's generation is
//! written (never over the files in force). Called when a config is loaded (start, reload,
//! `validate`, `render`) and by the periodic check; the result feeds the desired state.

use super::cert::Fingerprint;
use super::generation::{Facts, Generation, UNREAD_PASSWORD};
use super::issue::{NodeRequest, Signer};
use super::keystore::StorePassword;
use super::material::{
    check_node_leaf, check_separate_cas, check_server_leaf, check_validity, load_ca_bundle,
    load_ca_key, load_leaf, CaBundle, CaKey, Leaf, MaterialError, SubjectName,
};
use super::pem::{certificates_pem, PemFile};
use super::plan::{self, decide, InForce, LeafState, Step, Window};
use super::settings::Settings;
use super::store::{Composition, Layout, StoreError, Stored};
use crate::config::{FieldError, TlsMode};
use crate::flinkrest::ClientTls;
use rustls_pki_types::CertificateDer;
use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

/// What the caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and check only (`validate`, `render`): nothing is written, passwords are not read.
    Inspect,
    /// Check, issue and write; refused material is an error (a reload is refused).
    Apply,
    /// Like `Apply`, but refused material keeps the generation in force, if there is one, and
    /// comes back as `refused` (the agent's start, the periodic check: Flink keeps running).
    ApplyOrKeep,
}

/// The generation to run with, and the material refused while keeping the one in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub generation: Generation,
    pub refused: Vec<FieldError>,
}

/// Where the node certificate comes from, as read now.
enum Internal {
    /// `ca` and `self-signed`: the agent issues from this CA.
    Issuer(CaKey),
    /// `files`: the checked leaf, its bundle, and the bundle's CA it chains to.
    Files {
        leaf: Leaf,
        bundle: CaBundle,
        anchor: Fingerprint,
    },
}

/// The REST side, as read now.
struct Rest {
    /// The agent's own REST-client CA.
    own_clients: CaKey,
    /// `rest_client_ca_file`.
    extra_clients: Option<CaBundle>,
    /// `files` mode's REST certificate and the bundle it chains to.
    cert: Option<(Leaf, CaBundle)>,
}

/// Prepares the generation for `settings` at `now`. With `hold`, the node's certificate and
/// trust stay as in force (a rotation step was just applied and Flink is not healthy again for
/// long enough): only the REST side may change; the held step comes with a later check.
pub fn prepare(
    s: &Settings,
    now: SystemTime,
    access: Access,
    hold: bool,
) -> Result<Prepared, Vec<FieldError>> {
    let layout = Layout::new(&s.dir);
    let secrets = access != Access::Inspect;
    let in_force = layout
        .in_force()
        .and_then(|r| match layout.load(&r.id, secrets) {
            Ok(stored) => Some(stored),
            Err(e) => {
                log::warn!(
                    "TLS generation {} in force cannot be read ({e}); making a new one",
                    r.id
                );
                None
            }
        });
    match next(s, &layout, in_force.as_ref(), now, access, hold) {
        Ok(generation) => Ok(Prepared {
            generation,
            refused: Vec::new(),
        }),
        Err(errors) => match (access, in_force) {
            (Access::ApplyOrKeep, Some(stored)) => {
                let generation = keep(s, &layout, &stored, now).map_err(|e| vec![own(e)])?;
                Ok(Prepared {
                    generation,
                    refused: errors,
                })
            }
            _ => Err(errors),
        },
    }
}

/// The generation in force, unchanged (its material refused now).
fn keep(
    s: &Settings,
    layout: &Layout,
    stored: &Stored,
    now: SystemTime,
) -> Result<Generation, StoreError> {
    let (_, client) = own_client(s, layout, now, true)?;
    generation(stored, client.as_ref(), None, false)
}

fn own(e: StoreError) -> FieldError {
    match e {
        StoreError::Material(m) => m.to_field_error(),
        e => FieldError::new("agent.state_dir", e.to_string()),
    }
}

/// The config requires the files of a mode; one left unset is reported as missing.
fn file(field: &str, path: &Option<std::path::PathBuf>) -> PemFile {
    PemFile::new(field, path.clone().unwrap_or_default())
}

fn read_internal(
    s: &Settings,
    layout: &Layout,
    now: SystemTime,
    create: bool,
) -> Result<Option<Internal>, FieldError> {
    let f = &s.files;
    match s.mode {
        TlsMode::SelfSigned => layout
            .own_ca(
                "internal-ca",
                &format!("flink-agent cluster CA ({})", s.node_id),
                now,
                create,
            )
            .map(|ca| ca.map(Internal::Issuer))
            .map_err(own),
        TlsMode::Ca => {
            let cert = file("tls.ca_cert_file", &f.ca_cert);
            let key = file("tls.ca_key_file", &f.ca_key);
            let ca = load_ca_key(&cert, &key).map_err(|e| e.to_field_error())?;
            check_validity("tls.ca_cert_file", &ca.info, now).map_err(|e| e.to_field_error())?;
            Ok(Some(Internal::Issuer(ca)))
        }
        TlsMode::Files => {
            let checked = (|| {
                let leaf = load_leaf(
                    &file("tls.cert_file", &f.cert),
                    &file("tls.key_file", &f.key),
                )?;
                let bundle = load_ca_bundle(&file("tls.ca_file", &f.ca))?;
                let anchor = check_node_leaf(&leaf, &bundle, now, &s.names)?;
                Ok::<_, MaterialError>(Internal::Files {
                    leaf,
                    bundle,
                    anchor,
                })
            })();
            checked.map(Some).map_err(|e| e.to_field_error())
        }
    }
}

fn read_rest(
    s: &Settings,
    layout: &Layout,
    internal: Option<&Internal>,
    now: SystemTime,
    create: bool,
    errors: &mut Vec<FieldError>,
) -> Option<Rest> {
    let f = &s.files;
    let own_clients = match layout.own_ca(
        "rest-client-ca",
        &format!("flink-agent REST client CA ({})", s.node_id),
        now,
        create,
    ) {
        Ok(ca) => ca,
        Err(e) => {
            errors.push(own(e));
            None
        }
    };
    let extra_clients = f.rest_client_ca.as_ref().and_then(|p| {
        let bundle = load_ca_bundle(&PemFile::new("tls.rest_client_ca_file", p));
        bundle.map_err(|e| errors.push(e.to_field_error())).ok()
    });
    if let (Some(extra), Some(internal)) = (&extra_clients, internal) {
        let internal_cas = match internal {
            Internal::Issuer(ca) => CaBundle {
                certs: vec![ca.cert.clone()],
                infos: vec![ca.info.clone()],
                field: match s.mode {
                    TlsMode::Ca => "tls.ca_cert_file".into(),
                    _ => "the agent's cluster CA".into(),
                },
            },
            Internal::Files { bundle, .. } => bundle.clone(),
        };
        if let Err(e) = check_separate_cas(&internal_cas, extra) {
            errors.push(e.to_field_error());
        }
    }
    let cert = match (&f.rest_cert, s.mode) {
        (Some(_), TlsMode::Files) => {
            let checked = (|| {
                let leaf = load_leaf(
                    &file("tls.rest_cert_file", &f.rest_cert),
                    &file("tls.rest_key_file", &f.rest_key),
                )?;
                let roots = match &f.rest_ca {
                    Some(p) => load_ca_bundle(&PemFile::new("tls.rest_ca_file", p))?,
                    None => load_ca_bundle(&file("tls.ca_file", &f.ca))?,
                };
                check_server_leaf(&leaf, &roots, now, &s.names)?;
                Ok::<_, MaterialError>((leaf, roots))
            })();
            checked.map_err(|e| errors.push(e.to_field_error())).ok()
        }
        _ => None,
    };
    own_clients.map(|own_clients| Rest {
        own_clients,
        extra_clients,
        cert,
    })
}

/// The agent's REST-client CA and its own client certificate.
fn own_client(
    s: &Settings,
    layout: &Layout,
    now: SystemTime,
    create: bool,
) -> Result<(Option<CaKey>, Option<Leaf>), StoreError> {
    let Some(ca) = layout.own_ca(
        "rest-client-ca",
        &format!("flink-agent REST client CA ({})", s.node_id),
        now,
        create,
    )?
    else {
        return Ok((None, None));
    };
    let client = layout.agent_client(&ca, &format!("flink-agent ({})", s.node_id), now, create)?;
    Ok((Some(ca), client))
}

fn leaf_state(chain: &[CertificateDer<'_>], issuer: &Fingerprint) -> Option<LeafState> {
    let info = super::cert::CertInfo::parse(chain.first()?).ok()?;
    Some(LeafState {
        fingerprint: info.fingerprint,
        issuer: issuer.clone(),
        window: Window {
            not_before: info.not_before,
            not_after: info.not_after,
        },
    })
}

fn fingerprints(certs: &[CertificateDer<'_>]) -> BTreeSet<Fingerprint> {
    certs.iter().map(|c| Fingerprint::of(c.as_ref())).collect()
}

/// Whether the certificate names every entry of `names`.
fn names_all(chain: &[CertificateDer<'_>], names: &[SubjectName]) -> bool {
    let Some(info) = chain
        .first()
        .and_then(|c| super::cert::CertInfo::parse(c).ok())
    else {
        return false;
    };
    names.iter().all(|n| match n {
        SubjectName::Ip(ip) => info.ip_addresses.contains(ip),
        SubjectName::Dns(d) => info.dns_names.iter().any(|s| s.eq_ignore_ascii_case(d)),
    })
}

fn label(step: &Step) -> &'static str {
    match step {
        Step::Nothing => "rest-material",
        Step::RenewLeaf => "renew-leaf",
        Step::ApplyNewLeaf => "new-leaf",
        Step::TrustNewCa => "trust-new-ca",
        Step::LeafUnderNewCa => "leaf-under-new-ca",
        Step::DropOldCa => "drop-old-ca",
        Step::Refuse(_) => "refused",
    }
}

/// Where the node certificate of the next generation comes from.
enum Node<'a> {
    Keep(&'a Stored),
    Issue(&'a CaKey),
    Files(&'a Leaf, &'a Fingerprint),
}

fn next(
    s: &Settings,
    layout: &Layout,
    in_force: Option<&Stored>,
    now: SystemTime,
    access: Access,
    hold: bool,
) -> Result<Generation, Vec<FieldError>> {
    let create = access != Access::Inspect;
    let mut errors = Vec::new();
    let internal = read_internal(s, layout, now, create)
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let rest = read_rest(s, layout, internal.as_ref(), now, create, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(internal), Some(rest)) = (internal, rest) else {
        // `Inspect` before the agent made its CAs: nothing to show but the placeholder.
        return Ok(inspected(layout, in_force));
    };
    let desired = match &internal {
        Internal::Issuer(ca) => plan::Desired::Issuer {
            ca: ca.info.fingerprint.clone(),
        },
        Internal::Files {
            leaf,
            bundle,
            anchor,
        } => plan::Desired::Files {
            leaf: LeafState {
                fingerprint: leaf.info.fingerprint.clone(),
                issuer: anchor.clone(),
                window: Window {
                    not_before: leaf.info.not_before,
                    not_after: leaf.info.not_after,
                },
            },
            trusted: bundle.infos.iter().map(|i| i.fingerprint.clone()).collect(),
        },
    };
    // Every CA a truststore may need: those in force and those asked for now.
    let mut pool: BTreeMap<Fingerprint, CertificateDer<'static>> = BTreeMap::new();
    if let Some(f) = in_force {
        for c in &f.composition.trusted {
            pool.insert(Fingerprint::of(c.as_ref()), c.clone());
        }
    }
    match &internal {
        Internal::Issuer(ca) => {
            pool.insert(ca.info.fingerprint.clone(), ca.cert.clone());
        }
        Internal::Files { bundle, .. } => {
            for (c, i) in bundle.certs.iter().zip(&bundle.infos) {
                pool.insert(i.fingerprint.clone(), c.clone());
            }
        }
    }
    let current = in_force.and_then(|f| {
        let state = InForce {
            leaf: leaf_state(&f.composition.node, &f.composition.node_issuer)?,
            trusted: fingerprints(&f.composition.trusted),
        };
        Some((f, state))
    });
    let (step, node, trusted) = match (current, &internal) {
        (None, Internal::Issuer(ca)) => (
            "initial",
            Node::Issue(ca),
            BTreeSet::from([ca.info.fingerprint.clone()]),
        ),
        (
            None,
            Internal::Files {
                leaf,
                anchor,
                bundle,
            },
        ) => (
            "initial",
            Node::Files(leaf, anchor),
            fingerprints(&bundle.certs),
        ),
        (Some((f, state)), _) => {
            let mut d = decide(&state, &desired, now);
            if let (Step::Nothing, Internal::Issuer(ca)) = (&d.step, &internal) {
                if !names_all(&f.composition.node, &s.names) {
                    // The node's addresses changed: a certificate naming them, now.
                    d.step = Step::RenewLeaf;
                    d.trusted = BTreeSet::from([ca.info.fingerprint.clone()]);
                }
            }
            if hold && !matches!(d.step, Step::Refuse(_)) {
                d.step = Step::Nothing;
                d.trusted = state.trusted.clone();
            }
            let node = match (&d.step, &internal) {
                (Step::Refuse(r), _) => {
                    let field = match r {
                        plan::Refusal::TrustDropsLeafInForce { .. } => "tls.ca_file",
                        plan::Refusal::LeafNotYetTrusted { .. } => "tls.cert_file",
                    };
                    return Err(vec![FieldError::new(field, r.to_string())]);
                }
                (Step::RenewLeaf | Step::LeafUnderNewCa, Internal::Issuer(ca)) => Node::Issue(ca),
                (
                    Step::ApplyNewLeaf | Step::LeafUnderNewCa,
                    Internal::Files { leaf, anchor, .. },
                ) => Node::Files(leaf, anchor),
                _ => Node::Keep(f),
            };
            (label(&d.step), node, d.trusted)
        }
    };
    if access == Access::Inspect {
        return Ok(inspected(layout, in_force));
    }
    let trusted: Vec<CertificateDer<'static>> = trusted
        .iter()
        .filter_map(|fp| pool.get(fp).cloned())
        .collect();
    let (node_chain, node_key, node_issuer) = match node {
        Node::Keep(f) => (
            f.composition.node.clone(),
            f.composition.node_key.clone(),
            f.composition.node_issuer.clone(),
        ),
        Node::Files(leaf, anchor) => (leaf.chain.clone(), leaf.key.clone(), anchor.clone()),
        Node::Issue(ca) => {
            let issued = issue_node(s, ca, now).map_err(|e| vec![own(e)])?;
            (issued.chain, issued.key, ca.info.fingerprint.clone())
        }
    };
    let mut rest_clients = vec![rest.own_clients.cert.clone()];
    for c in rest.extra_clients.iter().flat_map(|b| &b.certs) {
        if !rest_clients.contains(c) {
            rest_clients.push(c.clone());
        }
    }
    let (rest_cert, rest_roots) = match rest.cert {
        Some((leaf, roots)) => (Some((leaf.chain, leaf.key)), roots.certs),
        None => (None, trusted.clone()),
    };
    let composition = Composition {
        node: node_chain,
        node_key,
        node_issuer,
        trusted,
        rest: rest_cert,
        rest_clients,
        rest_roots,
    };
    let id = composition.id();
    let stored = match in_force.filter(|f| f.id == id) {
        Some(f) => f.clone(),
        None => layout
            .write(&composition, step, flink_gid(s), now)
            .map_err(|e| vec![own(e)])?,
    };
    // What would follow once this generation is in force: a CA rotation goes on by itself.
    let after = InForce {
        leaf: leaf_state(&stored.composition.node, &stored.composition.node_issuer).ok_or_else(
            || {
                vec![FieldError::new(
                    "agent.state_dir",
                    "the node certificate written cannot be read back",
                )]
            },
        )?,
        trusted: fingerprints(&stored.composition.trusted),
    };
    let following = decide(&after, &desired, now);
    let next_step = match following.step {
        Step::TrustNewCa | Step::LeafUnderNewCa | Step::DropOldCa | Step::ApplyNewLeaf => {
            Some(label(&following.step).to_string())
        }
        _ => None,
    };
    let (_, client) = own_client(s, layout, now, true).map_err(|e| vec![own(e)])?;
    generation(&stored, client.as_ref(), next_step, false).map_err(|e| vec![own(e)])
}

fn issue_node(
    s: &Settings,
    ca: &CaKey,
    now: SystemTime,
) -> Result<super::issue::Issued, StoreError> {
    let mut ips = Vec::new();
    let mut dns_names = Vec::new();
    for name in &s.names {
        match name {
            SubjectName::Ip(ip) => ips.push(*ip),
            SubjectName::Dns(d) => dns_names.push(d.clone()),
        }
    }
    // The host name too, so a browser pointed at it finds it in the certificate.
    if let Some(host) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| is_dns_name(h))
    {
        let host = host.to_ascii_lowercase();
        if !dns_names.contains(&host) {
            dns_names.push(host);
        }
    }
    let issued = Signer::new(ca)?.issue_node(
        &NodeRequest {
            common_name: s.node_id.clone(),
            ips,
            dns_names,
            lifetime: s.lifetime,
        },
        now,
    )?;
    log::info!(
        "issued the node certificate of {} from {} for {} days",
        s.node_id,
        ca.info.subject,
        s.lifetime.as_secs() / 86_400
    );
    Ok(issued)
}

fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn flink_gid(s: &Settings) -> Option<nix::unistd::Gid> {
    let user = s.flink_user.as_deref()?;
    nix::unistd::User::from_name(user).ok()?.map(|u| u.gid)
}

/// `Inspect`: the generation in force as it is (passwords unread), or the placeholder.
fn inspected(layout: &Layout, in_force: Option<&Stored>) -> Generation {
    in_force
        .and_then(|f| generation(f, None, None, true).ok())
        .unwrap_or_else(|| Generation::pending(&layout.root))
}

fn generation(
    stored: &Stored,
    client: Option<&Leaf>,
    next_step: Option<String>,
    unread: bool,
) -> Result<Generation, StoreError> {
    let infos = stored.infos()?;
    let passwords = match (&stored.passwords, unread) {
        (Some(p), false) => p.clone(),
        _ => {
            let unread = || StorePassword::from_secret(UNREAD_PASSWORD.to_string());
            super::flink::Stores {
                internal_keystore: unread(),
                internal_truststore: unread(),
                rest_keystore: unread(),
                rest_truststore: unread(),
            }
        }
    };
    let client_tls = ClientTls {
        roots_pem: certificates_pem(&stored.composition.rest_roots).into_bytes(),
        identity_pem: client
            .map(|c| format!("{}{}", certificates_pem(&c.chain), c.key.to_pem()).into_bytes())
            .unwrap_or_default(),
    };
    Ok(Generation {
        id: stored.id.clone(),
        dir: stored.dir.clone(),
        passwords,
        client: client_tls,
        facts: Some(Facts {
            step: stored.meta.step.clone(),
            next_step,
            node: infos.node,
            trusted: infos.trusted,
            rest: infos.rest,
            rest_clients: infos.rest_clients,
            agent_client: client.map(|c| c.info.clone()),
        }),
    })
}

#[cfg(test)]
#[path = "prepare_tests.rs"]
mod tests;
