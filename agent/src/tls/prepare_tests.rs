//! Preparing generations on a real state dir, with fixed times: first start, idempotence, what
//! `Inspect` may touch, renewal at 2/3, a CA rotation in three steps, files from a control plane
//! (good, bad, out of order), and keeping the generation in force when material is refused.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{AgentConfig, TlsMode};
use crate::tls::issue::{new_ca, Issued, DEFAULT_CA_LIFETIME};
use crate::tls::pem::write_private;
use crate::tls::{apply, Spec};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

const DAY: Duration = Duration::from_secs(86_400);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

fn settings(dir: &Path, mode: TlsMode) -> Settings {
    let mut c = AgentConfig::default();
    c.agent.state_dir = dir.join("state");
    c.tls.enabled = true;
    c.tls.mode = mode;
    c.tls.cert_file = Some(dir.join("node.pem"));
    c.tls.key_file = Some(dir.join("node.key"));
    c.tls.ca_file = Some(dir.join("ca.pem"));
    c.tls.ca_cert_file = Some(dir.join("op-ca.pem"));
    c.tls.ca_key_file = Some(dir.join("op-ca.key"));
    Settings::new(&c, "127.0.0.1")
}

/// Prepares and puts in force, as a reload does.
fn step(s: &Settings, now: SystemTime) -> Generation {
    let g = prepare(s, now, Access::Apply, false).unwrap().generation;
    apply(
        &Spec {
            settings: s.clone(),
            generation: Some(g.clone()),
        },
        now,
    )
    .unwrap();
    g
}

fn facts(g: &Generation) -> &Facts {
    g.facts.as_ref().unwrap()
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn ca(name: &str) -> Issued {
    new_ca(name, t0() - DAY, DEFAULT_CA_LIFETIME).unwrap()
}

fn node_from(ca: &Issued, ips: &[&str], now: SystemTime, days: u64) -> Issued {
    Signer::from_issued(ca)
        .unwrap()
        .issue_node(
            &NodeRequest {
                common_name: "node-1".into(),
                ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
                dns_names: vec![],
                lifetime: DAY * days as u32,
            },
            now,
        )
        .unwrap()
}

/// Writes what a control plane delivers in `files` mode.
fn deliver(dir: &Path, node: &Issued, cas: &[&Issued]) {
    fs::write(dir.join("node.pem"), node.chain_pem()).unwrap();
    write_private(&dir.join("node.key"), node.key.to_pem().as_bytes()).unwrap();
    let bundle: String = cas.iter().map(|c| c.chain_pem()).collect();
    fs::write(dir.join("ca.pem"), bundle).unwrap();
}

fn give_ca(dir: &Path, ca: &Issued) {
    fs::write(dir.join("op-ca.pem"), ca.chain_pem()).unwrap();
    write_private(&dir.join("op-ca.key"), ca.key.to_pem().as_bytes()).unwrap();
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn the_first_start_makes_cas_and_a_generation_readable_by_flink_only_where_needed() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path(), TlsMode::SelfSigned);
    let g = step(&s, t0());
    let f = facts(&g);
    assert_eq!(f.step, "initial");
    assert_eq!(f.next_step, None);
    assert_eq!(f.trusted.len(), 1);
    assert!(f.trusted[0]
        .subject
        .contains("flink-agent cluster CA (node-1)"));
    assert_eq!(f.node.issuer, f.trusted[0].subject);
    assert!(f.node.ip_addresses.contains(&"127.0.0.1".parse().unwrap()));
    assert_eq!(
        f.node.not_after.duration_since(t0()).unwrap(),
        90 * DAY,
        "tls.cert_lifetime_days"
    );
    assert!(f
        .agent_client
        .as_ref()
        .unwrap()
        .issuer
        .contains("REST client CA"));
    let tls = d.path().join("state/tls");
    assert_eq!(mode_of(&tls.join("private")), 0o700);
    for key in ["internal-ca.key", "rest-client-ca.key", "agent-client.key"] {
        assert_eq!(mode_of(&tls.join("private").join(key)), 0o600, "{key}");
    }
    for store in [
        &g.store_paths().internal_keystore,
        &g.store_paths().internal_truststore,
        &g.store_paths().rest_keystore,
        &g.store_paths().rest_truststore,
    ] {
        assert_eq!(mode_of(store), 0o640, "{}", store.display());
    }
    assert_eq!(mode_of(&g.dir.join("passwords.json")), 0o600);
    assert_eq!(mode_of(&g.dir.join("node.key")), 0o600);
    assert_ne!(g.passwords.internal_keystore, g.passwords.rest_keystore);
    assert!(!g.client.identity_pem.is_empty());

    // Again, later: the same generation, the same passwords (no restart after an agent restart).
    let again = step(&s, t0() + DAY);
    assert_eq!(again.id, g.id);
    assert_eq!(again.passwords, g.passwords);
}

#[test]
fn inspect_writes_nothing_and_never_shows_passwords() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path(), TlsMode::SelfSigned);
    let pending = prepare(&s, t0(), Access::Inspect, false)
        .unwrap()
        .generation;
    assert_eq!(pending.id, "pending");
    assert!(!d.path().join("state").exists(), "Inspect made files");
    let g = step(&s, t0());
    let seen = prepare(&s, t0(), Access::Inspect, false)
        .unwrap()
        .generation;
    assert_eq!(seen.id, g.id);
    assert_eq!(seen.passwords.internal_keystore.expose(), UNREAD_PASSWORD);
}

#[test]
fn the_node_certificate_is_renewed_at_two_thirds_of_its_life() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path(), TlsMode::SelfSigned);
    let first = step(&s, t0());
    assert_eq!(step(&s, t0() + 59 * DAY).id, first.id, "not yet at 2/3");
    let renewed = step(&s, t0() + 61 * DAY);
    assert_ne!(renewed.id, first.id);
    assert_eq!(facts(&renewed).step, "renew-leaf");
    assert_eq!(facts(&renewed).trusted, facts(&first).trusted, "same CA");
    assert_ne!(facts(&renewed).node.serial, facts(&first).node.serial);
    // The previous generation stays (the JVMs may still run on it), older ones go.
    assert!(first.dir.is_dir());
    let third = step(&s, t0() + 122 * DAY);
    assert!(renewed.dir.is_dir() && third.dir.is_dir());
    assert!(!first.dir.exists(), "two generations back is removed");
}

#[test]
fn a_new_ca_is_trusted_first_then_signs_the_leaf_then_the_old_one_goes() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path(), TlsMode::Ca);
    let (a, b) = (ca("A"), ca("B"));
    give_ca(d.path(), &a);
    let initial = step(&s, t0());
    let fp = |c: &Issued| crate::tls::cert::Fingerprint::of(c.chain[0].as_ref());
    give_ca(d.path(), &b);
    let one = step(&s, t0() + DAY);
    assert_eq!(facts(&one).step, "trust-new-ca");
    assert_eq!(facts(&one).next_step.as_deref(), Some("leaf-under-new-ca"));
    assert_eq!(facts(&one).node, facts(&initial).node, "the leaf stays");
    let trusted: Vec<_> = facts(&one)
        .trusted
        .iter()
        .map(|c| c.fingerprint.clone())
        .collect();
    assert!(trusted.contains(&fp(&a)) && trusted.contains(&fp(&b)));
    let held = prepare(&s, t0() + DAY, Access::Apply, true).unwrap();
    assert_eq!(
        held.generation.id, one.id,
        "held while Flink recovers from step 1"
    );
    let two = step(&s, t0() + DAY);
    assert_eq!(facts(&two).step, "leaf-under-new-ca");
    assert_eq!(facts(&two).next_step.as_deref(), Some("drop-old-ca"));
    assert!(facts(&two).node.issuer.contains("CN=B"));
    assert_eq!(facts(&two).trusted.len(), 2, "old peers still trusted");
    let three = step(&s, t0() + DAY);
    assert_eq!(facts(&three).step, "drop-old-ca");
    assert_eq!(facts(&three).next_step, None);
    assert_eq!(facts(&three).trusted.len(), 1);
    assert_eq!(facts(&three).trusted[0].fingerprint, fp(&b));
    assert_eq!(step(&s, t0() + DAY).id, three.id, "done");
}

#[test]
fn files_from_the_control_plane_are_checked_and_a_new_leaf_is_applied() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path(), TlsMode::Files);
    let a = ca("A");
    deliver(d.path(), &node_from(&a, &["127.0.0.1"], t0(), 30), &[&a]);
    let first = step(&s, t0());
    assert_eq!(facts(&first).step, "initial");
    deliver(d.path(), &node_from(&a, &["127.0.0.1"], t0(), 30), &[&a]);
    let next = step(&s, t0() + DAY);
    assert_eq!(facts(&next).step, "new-leaf");
    assert_ne!(next.id, first.id);
}

#[test]
fn bad_files_are_refused_with_their_field() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path(), TlsMode::Files);
    let (a, b) = (ca("A"), ca("B"));
    let refused = |deliver_: &dyn Fn()| {
        deliver_();
        prepare(&s, t0(), Access::Apply, false).unwrap_err()
    };
    // Expired, not yet valid.
    let e = refused(&|| {
        deliver(
            d.path(),
            &node_from(&a, &["127.0.0.1"], t0() - 40 * DAY, 30),
            &[&a],
        )
    });
    assert_eq!(fields(&e), ["tls.cert_file"]);
    assert!(e[0].message.contains("expired"), "{e:?}");
    let e = refused(&|| {
        deliver(
            d.path(),
            &node_from(&a, &["127.0.0.1"], t0() + 2 * DAY, 30),
            &[&a],
        )
    });
    assert!(e[0].message.contains("valid only from"), "{e:?}");
    // No SAN for the node's address.
    let mut elsewhere = s.clone();
    elsewhere.names = vec![SubjectName::parse("192.0.2.10")];
    deliver(d.path(), &node_from(&a, &["192.0.2.99"], t0(), 30), &[&a]);
    let e = prepare(&elsewhere, t0(), Access::Apply, false).unwrap_err();
    assert_eq!(fields(&e), ["tls.cert_file"]);
    assert!(
        e[0].message.contains("no subjectAltName for 192.0.2.10"),
        "{e:?}"
    );
    // A key that is not the certificate's.
    let e = refused(&|| {
        deliver(d.path(), &node_from(&a, &["127.0.0.1"], t0(), 30), &[&a]);
        let other = node_from(&a, &["127.0.0.1"], t0(), 30);
        write_private(&d.path().join("node.key"), other.key.to_pem().as_bytes()).unwrap();
    });
    assert_eq!(fields(&e), ["tls.key_file"]);
    // A key others may read.
    let e = refused(&|| {
        deliver(d.path(), &node_from(&a, &["127.0.0.1"], t0(), 30), &[&a]);
        fs::set_permissions(d.path().join("node.key"), fs::Permissions::from_mode(0o644)).unwrap();
    });
    assert!(e[0].message.contains("mode 0644"), "{e:?}");
    // A missing bundle.
    let e = refused(&|| {
        deliver(d.path(), &node_from(&a, &["127.0.0.1"], t0(), 30), &[&a]);
        fs::remove_file(d.path().join("ca.pem")).unwrap();
    });
    assert_eq!(fields(&e), ["tls.ca_file"]);
    assert!(e[0].message.contains("does not exist"), "{e:?}");
    // A leaf from a CA the bundle lacks.
    let e = refused(&|| deliver(d.path(), &node_from(&b, &["127.0.0.1"], t0(), 30), &[&a]));
    assert!(e[0].message.contains("does not chain"), "{e:?}");
    // The internal CA as the REST client CA, by content (another file with the same CA).
    let mut s2 = s.clone();
    fs::write(d.path().join("clients.pem"), a.chain_pem()).unwrap();
    s2.files.rest_client_ca = Some(d.path().join("clients.pem"));
    deliver(d.path(), &node_from(&a, &["127.0.0.1"], t0(), 30), &[&a]);
    let e = prepare(&s2, t0(), Access::Apply, false).unwrap_err();
    assert_eq!(fields(&e), ["tls.rest_client_ca_file"]);
    assert!(e[0].message.contains("share the CA"), "{e:?}");
    assert!(
        !d.path().join("state/tls/in-force.json").exists(),
        "nothing in force"
    );
}

#[test]
fn a_delivery_that_skips_a_ca_rotation_step_is_refused_and_the_start_keeps_what_runs() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path(), TlsMode::Files);
    let (a, b) = (ca("A"), ca("B"));
    deliver(d.path(), &node_from(&a, &["127.0.0.1"], t0(), 30), &[&a]);
    let first = step(&s, t0());
    // A leaf of B with a bundle of B only: peers on A would refuse it.
    deliver(d.path(), &node_from(&b, &["127.0.0.1"], t0(), 30), &[&b]);
    let e = prepare(&s, t0(), Access::Apply, false).unwrap_err();
    assert_eq!(fields(&e), ["tls.ca_file"]);
    assert!(e[0].message.contains("no longer trusts CA"), "{e:?}");
    // A leaf of B while the bundle holds both: trust first.
    deliver(
        d.path(),
        &node_from(&b, &["127.0.0.1"], t0(), 30),
        &[&a, &b],
    );
    let g = prepare(&s, t0(), Access::Apply, false).unwrap().generation;
    assert_eq!(facts(&g).step, "trust-new-ca");
    assert_eq!(facts(&g).next_step.as_deref(), Some("leaf-under-new-ca"));
    // The start (and the periodic check) keep the generation in force on bad material.
    fs::set_permissions(d.path().join("node.key"), fs::Permissions::from_mode(0o640)).unwrap();
    let kept = prepare(&s, t0(), Access::ApplyOrKeep, false).unwrap();
    assert_eq!(kept.generation.id, first.id);
    assert_eq!(fields(&kept.refused), ["tls.key_file"]);
}

#[test]
fn a_new_node_address_gets_a_certificate_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let mut s = settings(d.path(), TlsMode::SelfSigned);
    let first = step(&s, t0());
    s.names.push(SubjectName::parse("192.0.2.7"));
    let g = step(&s, t0() + DAY);
    assert_eq!(facts(&g).step, "renew-leaf");
    assert!(facts(&g)
        .node
        .ip_addresses
        .contains(&"192.0.2.7".parse().unwrap()));
    assert_eq!(facts(&g).trusted, facts(&first).trusted);
}

#[test]
fn operators_get_client_certificates_the_rest_truststore_holds_the_ca_of() {
    let d = tempfile::tempdir().unwrap();
    let s = settings(d.path(), TlsMode::SelfSigned);
    let err = crate::tls::issue_operator_certificate(&s, "alice", DAY, t0()).unwrap_err();
    assert!(err.to_string().contains("not set up"), "{err}");
    let g = step(&s, t0());
    let cert = crate::tls::issue_operator_certificate(&s, "alice", 30 * DAY, t0()).unwrap();
    let chain = crate::tls::pem::read_certificates(&{
        fs::write(d.path().join("alice.pem"), &cert.chain_pem).unwrap();
        PemFile::new("x", d.path().join("alice.pem"))
    })
    .unwrap();
    let info = crate::tls::cert::CertInfo::parse(&chain[0]).unwrap();
    assert!(info.subject.contains("CN=alice"));
    assert!(facts(&g)
        .rest_clients
        .iter()
        .any(|c| c.subject == info.issuer));
    assert_eq!(
        cert.server_ca_pem,
        fs::read_to_string(g.dir.join("rest-roots.pem")).unwrap(),
        "curl verifies the REST port with the internal CA"
    );
}
