//! A real Azure Blob endpoint for tests: Azurite, Microsoft's storage emulator (installed by
//! `tests/setup/azurite.sh`), on 127.0.0.1 with a free port and in-memory storage. Killed by
//! PID when the guard drops, also when the test fails.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a different part

use base64::Engine as _;
use flink_agent::config::ObjectStoreSection;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's fixed development account key, published by Microsoft: not a secret.
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service; killed by PID on drop.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    pub port: u16,
    _workspace: tempfile::TempDir,
}

fn azurite_path() -> PathBuf {
    PathBuf::from(crate::s3::run_setup("tests/setup/azurite.sh").trim())
}

impl Azurite {
    pub fn start() -> Self {
        let port = crate::s3::free_port();
        let workspace = tempfile::tempdir().unwrap();
        let child = Command::new(azurite_path())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--silent"])
            // Its debug log and temp files, if any, stay out of the working directory.
            .current_dir(workspace.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let azurite = Azurite {
            child,
            port,
            _workspace: workspace,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Azurite did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        azurite
    }

    /// The account URL (path style, as the emulator serves it).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Creates `container` (object_store cannot): a Create Container request signed with the
    /// account key (SharedKey), as the Azure CLI would send it.
    pub fn create_container(&self, container: &str) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(KEY)
            .unwrap();
        let signature =
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{ACCOUNT}/{container}?restype=container HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 201") || answer.starts_with("HTTP/1.0 201"),
            "creating container {container}: {answer}"
        );
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// RFC 2104 over SHA-256 (the one MAC this helper needs; no extra crate for it).
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// `[object_store]` for `az://container/prefix` on `azurite`, with the account in a
/// credentials file as an operator would write it.
pub fn az_section(
    azurite: &Azurite,
    container: &str,
    prefix: &str,
    creds_dir: &Path,
) -> ObjectStoreSection {
    use std::os::unix::fs::PermissionsExt;
    let creds = creds_dir.join("azure-credentials.toml");
    std::fs::write(
        &creds,
        format!(
            "azure_storage_account_name = \"{ACCOUNT}\"\nazure_storage_account_key = \"{KEY}\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    ObjectStoreSection {
        url: format!("az://{container}/{prefix}"),
        region: None,
        endpoint: Some(azurite.endpoint()),
        allow_http: true,
        credentials_file: Some(creds),
    }
}

#[test]
fn hmac_matches_rfc_4231_case_2() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
