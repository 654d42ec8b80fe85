//! Keystore tests: round trips through p12-keystore, file modes, and the real consumers: Java 17's
//! keytool and a Java mutual-TLS handshake (agent/tests/tls/Handshake.java) with our stores.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::tls::flink::Protocol;
use crate::tls::issue::{
    new_ca, Issued, NodeRequest, Signer, DEFAULT_CA_LIFETIME, DEFAULT_LEAF_LIFETIME,
};
use p12_keystore::Pkcs12ImportPolicy;
use std::process::Command;
use std::time::{Instant, SystemTime};

fn ca(name: &str) -> Issued {
    new_ca(name, SystemTime::now(), DEFAULT_CA_LIFETIME).unwrap()
}

fn node(ca: &Issued, name: &str) -> Issued {
    Signer::from_issued(ca)
        .unwrap()
        .issue_node(
            &NodeRequest {
                common_name: name.to_string(),
                ips: vec![],
                dns_names: vec![],
                lifetime: DEFAULT_LEAF_LIFETIME,
            },
            SystemTime::now(),
        )
        .unwrap()
}

#[test]
fn a_keystore_reads_back_with_its_key_and_whole_chain() {
    let a = ca("A");
    let n = node(&a, "n1");
    let pw = StorePassword::generate().unwrap();
    let t = Instant::now();
    let bytes = keystore_pkcs12(&n.chain, &n.key, &pw).unwrap();
    eprintln!("timing: one PKCS12 keystore {:?}", t.elapsed());
    let store = KeyStore::from_pkcs12(&bytes, pw.expose(), Pkcs12ImportPolicy::Strict).unwrap();
    let (alias, chain) = store.private_key_chain().unwrap();
    assert_eq!(alias, KEY_ALIAS);
    assert_eq!(chain.key().as_der(), n.key.pkcs8_der());
    let ders: Vec<&[u8]> = chain.certs().iter().map(|c| c.as_der()).collect();
    assert_eq!(ders, vec![n.chain[0].as_ref(), a.chain[0].as_ref()]);
}

#[test]
fn a_store_does_not_open_with_another_password() {
    let a = ca("A");
    let bytes = truststore_pkcs12(&a.chain, &StorePassword::generate().unwrap()).unwrap();
    let other = StorePassword::generate().unwrap();
    assert!(KeyStore::from_pkcs12(&bytes, other.expose(), Pkcs12ImportPolicy::Strict).is_err());
}

#[test]
fn a_truststore_holds_every_ca_and_no_key() {
    let (a, b) = (ca("A"), ca("B"));
    let pw = StorePassword::generate().unwrap();
    let cas = [a.chain[0].clone(), b.chain[0].clone()];
    let bytes = truststore_pkcs12(&cas, &pw).unwrap();
    let store = KeyStore::from_pkcs12(&bytes, pw.expose(), Pkcs12ImportPolicy::Strict).unwrap();
    assert!(store.private_key_chain().is_none());
    assert_eq!(store.entries_len(), 2);
    assert!(matches!(
        store.entry("ca-2"),
        Some(KeyStoreEntry::Certificate(_))
    ));
}

#[test]
fn empty_stores_are_refused() {
    let pw = StorePassword::generate().unwrap();
    assert!(matches!(
        truststore_pkcs12(&[], &pw),
        Err(KeystoreError::Empty)
    ));
    let a = ca("A");
    assert!(matches!(
        keystore_pkcs12(&[], &a.key, &pw),
        Err(KeystoreError::Empty)
    ));
}

#[test]
fn passwords_are_random_hex_and_never_shown_by_debug_or_display() {
    let a = StorePassword::generate().unwrap();
    let b = StorePassword::generate().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.expose().len(), 64);
    assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
    let shown = format!("{a:?} {a} {:?}", Some(&a));
    assert!(!shown.contains(a.expose()), "{shown}");
    assert!(shown.contains("redacted"));
}

#[test]
fn store_files_are_replaced_atomically_with_mode_0640_and_the_flink_group() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tls/internal-truststore.1.p12");
    // Root may give any group; others only their own.
    let gid = if nix::unistd::geteuid().is_root() {
        Gid::from_raw(4242)
    } else {
        nix::unistd::getegid()
    };
    write_store(&path, b"old", Some(gid)).unwrap();
    write_store(&path, b"new", Some(gid)).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), gid.as_raw());
    assert_eq!(fs::read(&path).unwrap(), b"new");
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["internal-truststore.1.p12"]);
}

#[test]
fn a_write_into_an_unwritable_place_names_the_path() {
    let err = write_store(Path::new("/proc/flink-agent-test/ks.p12"), b"x", None).unwrap_err();
    assert!(
        err.to_string().contains("/proc/flink-agent-test/ks.p12"),
        "{err}"
    );
}

// --- Java 17, the real consumer ----------------------------------------------------------------

/// A JDK tool from $JAVA_HOME, Debian's Java 17, or PATH.
fn jdk_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin"))
        .into_iter()
        .collect();
    dirs.push(PathBuf::from("/usr/lib/jvm/java-17-openjdk-amd64/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The tool, or `None` after saying the test is skipped; under CI a missing tool fails the test.
fn require(name: &str) -> Option<PathBuf> {
    let tool = jdk_tool(name);
    if tool.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} (Java 17 JDK) is missing and CI is set: install openjdk-17-jdk-headless"
        );
        eprintln!("SKIPPED: {name} not found (install openjdk-17-jdk-headless); the Java check did not run");
    }
    tool
}

fn keytool_list(keytool: &Path, store: &Path, pw: &StorePassword) -> String {
    let out = Command::new(keytool)
        .args(["-list", "-storetype", "PKCS12", "-keystore"])
        .arg(store)
        .args(["-storepass", pw.expose()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "keytool failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn java_17_keytool_lists_one_private_key_entry_and_every_trusted_ca() {
    let Some(keytool) = require("keytool") else {
        return;
    };
    let (a, b) = (ca("A"), ca("B"));
    let n = node(&a, "n1");
    let dir = tempfile::tempdir().unwrap();
    let (ks, ts) = (dir.path().join("ks.p12"), dir.path().join("ts.p12"));
    let (ks_pw, ts_pw) = (
        StorePassword::generate().unwrap(),
        StorePassword::generate().unwrap(),
    );
    write_store(
        &ks,
        &keystore_pkcs12(&n.chain, &n.key, &ks_pw).unwrap(),
        None,
    )
    .unwrap();
    let cas = [a.chain[0].clone(), b.chain[0].clone()];
    write_store(&ts, &truststore_pkcs12(&cas, &ts_pw).unwrap(), None).unwrap();

    let listed = keytool_list(&keytool, &ks, &ks_pw);
    assert!(
        listed.contains("Your keystore contains 1 entry"),
        "{listed}"
    );
    assert_eq!(listed.matches("PrivateKeyEntry").count(), 1, "{listed}");
    let listed = keytool_list(&keytool, &ts, &ts_pw);
    assert!(
        listed.contains("Your keystore contains 2 entries"),
        "{listed}"
    );
    assert_eq!(listed.matches("trustedCertEntry").count(), 2, "{listed}");
}

struct NodeStores {
    keystore: PathBuf,
    truststore: PathBuf,
    ks_pw: StorePassword,
    ts_pw: StorePassword,
}

fn node_stores(dir: &Path, name: &str, leaf: &Issued, trusted: &[&Issued]) -> NodeStores {
    let s = NodeStores {
        keystore: dir.join(format!("{name}-keystore.p12")),
        truststore: dir.join(format!("{name}-truststore.p12")),
        ks_pw: StorePassword::generate().unwrap(),
        ts_pw: StorePassword::generate().unwrap(),
    };
    let cas: Vec<CertificateDer<'static>> = trusted.iter().map(|c| c.chain[0].clone()).collect();
    write_store(
        &s.keystore,
        &keystore_pkcs12(&leaf.chain, &leaf.key, &s.ks_pw).unwrap(),
        None,
    )
    .unwrap();
    write_store(
        &s.truststore,
        &truststore_pkcs12(&cas, &s.ts_pw).unwrap(),
        None,
    )
    .unwrap();
    s
}

/// Runs Handshake.java; returns its one line ("OK <protocol> <suite>" or "FAIL ...").
fn handshake(
    java: &Path,
    classes: &Path,
    protocol: Protocol,
    server: &NodeStores,
    client: &NodeStores,
) -> String {
    let out = Command::new(java)
        .arg("-cp")
        .arg(classes)
        .arg("Handshake")
        .arg(protocol.as_str())
        .arg(protocol.suites().join(","))
        .args([
            &server.keystore,
            &server.truststore,
            &client.keystore,
            &client.truststore,
        ])
        .args([
            server.ks_pw.expose(),
            server.ts_pw.expose(),
            client.ks_pw.expose(),
            client.ts_pw.expose(),
        ])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("java handshake {}: {line}", protocol.as_str());
    assert_eq!(
        out.status.success(),
        line.starts_with("OK"),
        "{line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    line
}

#[test]
fn java_17_does_mutual_tls_with_our_stores_and_refuses_a_peer_it_does_not_trust() {
    let (Some(javac), Some(java)) = (require("javac"), require("java")) else {
        return;
    };
    let classes = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/Handshake.java");
    let status = Command::new(javac)
        .arg("-d")
        .arg(classes.path())
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "javac {}", source.display());

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (ca("A"), ca("B"));
    let server = node_stores(dir.path(), "server", &node(&a, "n1"), &[&a]);
    let client = node_stores(dir.path(), "client", &node(&a, "n2"), &[&a]);

    // Same CA: TLS 1.2 with an ECDSA suite from the rendered list, and TLS 1.3.
    let line = handshake(&java, classes.path(), Protocol::Tls12, &server, &client);
    let suite = line.split(' ').nth(2).unwrap_or_default();
    assert!(line.starts_with("OK TLSv1.2 TLS_ECDHE_ECDSA_"), "{line}");
    assert!(Protocol::Tls12.suites().contains(&suite), "{line}");
    let line = handshake(&java, classes.path(), Protocol::Tls13, &server, &client);
    assert!(line.starts_with("OK TLSv1.3 TLS_AES_"), "{line}");

    // A client whose certificate comes from another CA is refused by the server. (Java's client
    // offers no certificate whose issuer the server did not list, so the server sees none.)
    let foreign = node_stores(dir.path(), "foreign", &node(&b, "x"), &[&a, &b]);
    let line = handshake(&java, classes.path(), Protocol::Tls12, &server, &foreign);
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(
        line.contains("server: javax.net.ssl.SSLHandshakeException"),
        "{line}"
    );
    // And a server with another CA's certificate is refused by the client.
    let line = handshake(&java, classes.path(), Protocol::Tls12, &foreign, &server);
    assert!(
        line.contains("client: javax.net.ssl.SSLHandshakeException: PKIX path"),
        "{line}"
    );

    // CA rotation, phase 1: a server trusting old and new CAs accepts the new CA's node.
    let widened = node_stores(dir.path(), "widened", &node(&a, "n1"), &[&a, &b]);
    let line = handshake(&java, classes.path(), Protocol::Tls12, &widened, &foreign);
    assert!(line.starts_with("OK TLSv1.2"), "{line}");
}
