//! The Flink 2.3 options that turn TLS on, as a pure function of the keystore paths and
//! passwords. Facts behind each choice (shared/notes/tls.md §1): `security.ssl.protocol` takes one
//! value (Pekko passes it to `SSLContext.getInstance`); Flink's default suites are ECDHE_RSA only,
//! so our ECDSA keys need ECDHE_ECDSA suites, and TLSv1.3 needs TLS 1.3 suites in the list; the
//! per-component switches default to on but the agent pins them, so the pass-through cannot turn
//! one component's TLS off.

use super::keystore::StorePassword;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The single protocol every Flink TLS endpoint uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Safe everywhere (Flink's default).
    #[default]
    Tls12,
    /// Only TLS 1.3 handshakes; TLS 1.2 peers are refused.
    Tls13,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tls12 => "TLSv1.2",
            Protocol::Tls13 => "TLSv1.3",
        }
    }

    /// `security.ssl.algorithms`: the JDK suite names Flink enables.
    pub fn suites(self) -> Vec<&'static str> {
        match self {
            Protocol::Tls12 => TLS12_SUITES.to_vec(),
            Protocol::Tls13 => TLS13_SUITES.iter().chain(TLS12_SUITES).copied().collect(),
        }
    }
}

/// AEAD suites with forward secrecy for EC (ECDSA) and RSA keys: the agent issues EC keys,
/// operators may supply RSA ones.
pub const TLS12_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
];
/// TLS 1.3 suites (key-type independent); without them a TLSv1.3-only handshake fails.
pub const TLS13_SUITES: &[&str] = &["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"];

/// One value per store Flink loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stores<T> {
    pub internal_keystore: T,
    pub internal_truststore: T,
    pub rest_keystore: T,
    pub rest_truststore: T,
}

/// Choices an operator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSettings {
    pub protocol: Protocol,
    /// Mutual TLS on REST (the REST server also applies protocol and suites only then).
    pub rest_client_auth: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            protocol: Protocol::Tls12,
            rest_client_auth: true,
        }
    }
}

/// Whether a key rendered here holds a password (to be redacted wherever it is shown).
pub fn is_secret_key(key: &str) -> bool {
    key.starts_with("security.ssl.") && key.ends_with("password")
}

/// The Flink options for internal mutual TLS and REST TLS.
pub fn flink_keys(
    paths: &Stores<PathBuf>,
    passwords: &Stores<StorePassword>,
    settings: &TlsSettings,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    for (scope, keystore, truststore, ks_pw, ts_pw) in [
        (
            "internal",
            &paths.internal_keystore,
            &paths.internal_truststore,
            &passwords.internal_keystore,
            &passwords.internal_truststore,
        ),
        (
            "rest",
            &paths.rest_keystore,
            &paths.rest_truststore,
            &passwords.rest_keystore,
            &passwords.rest_truststore,
        ),
    ] {
        let p = format!("security.ssl.{scope}");
        set(&format!("{p}.enabled"), "true".into());
        set(&format!("{p}.keystore"), keystore.display().to_string());
        set(&format!("{p}.keystore-type"), "PKCS12".into());
        set(&format!("{p}.keystore-password"), ks_pw.expose().into());
        // p12-keystore protects the key with the store password.
        set(&format!("{p}.key-password"), ks_pw.expose().into());
        set(&format!("{p}.truststore"), truststore.display().to_string());
        set(&format!("{p}.truststore-type"), "PKCS12".into());
        set(&format!("{p}.truststore-password"), ts_pw.expose().into());
    }
    set(
        "security.ssl.rest.authentication-enabled",
        settings.rest_client_auth.to_string(),
    );
    set("security.ssl.protocol", settings.protocol.as_str().into());
    set(
        "security.ssl.algorithms",
        settings.protocol.suites().join(","),
    );
    for switch in [
        "pekko.ssl.enabled",
        "blob.service.ssl.enabled",
        "taskmanager.data.ssl.enabled",
    ] {
        set(switch, "true".into());
    }
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn render(settings: TlsSettings) -> (BTreeMap<String, String>, Stores<StorePassword>) {
        let paths = Stores {
            internal_keystore: PathBuf::from("/s/tls/internal-keystore.1.p12"),
            internal_truststore: PathBuf::from("/s/tls/internal-truststore.1.p12"),
            rest_keystore: PathBuf::from("/s/tls/rest-keystore.1.p12"),
            rest_truststore: PathBuf::from("/s/tls/rest-truststore.1.p12"),
        };
        let pw = || StorePassword::generate().unwrap();
        let passwords = Stores {
            internal_keystore: pw(),
            internal_truststore: pw(),
            rest_keystore: pw(),
            rest_truststore: pw(),
        };
        (flink_keys(&paths, &passwords, &settings), passwords)
    }

    #[test]
    fn renders_internal_and_rest_tls_with_client_authentication_and_pkcs12_stores() {
        let (m, pw) = render(TlsSettings::default());
        assert_eq!(m["security.ssl.internal.enabled"], "true");
        assert_eq!(m["security.ssl.rest.enabled"], "true");
        assert_eq!(m["security.ssl.rest.authentication-enabled"], "true");
        assert_eq!(
            m["security.ssl.internal.keystore"],
            "/s/tls/internal-keystore.1.p12"
        );
        assert_eq!(
            m["security.ssl.rest.truststore"],
            "/s/tls/rest-truststore.1.p12"
        );
        assert_eq!(m["security.ssl.rest.keystore-type"], "PKCS12");
        assert_eq!(m["security.ssl.internal.truststore-type"], "PKCS12");
        assert_eq!(
            m["security.ssl.internal.keystore-password"],
            pw.internal_keystore.expose()
        );
        assert_eq!(
            m["security.ssl.internal.key-password"],
            pw.internal_keystore.expose()
        );
        assert_eq!(
            m["security.ssl.rest.truststore-password"],
            pw.rest_truststore.expose()
        );
        for k in [
            "pekko.ssl.enabled",
            "blob.service.ssl.enabled",
            "taskmanager.data.ssl.enabled",
        ] {
            assert_eq!(m[k], "true", "{k}");
        }
    }

    #[test]
    fn tls12_offers_ecdsa_and_rsa_gcm_suites_only() {
        let (m, _) = render(TlsSettings::default());
        assert_eq!(m["security.ssl.protocol"], "TLSv1.2");
        let suites: Vec<&str> = m["security.ssl.algorithms"].split(',').collect();
        assert!(suites.iter().any(|s| s.starts_with("TLS_ECDHE_ECDSA_")));
        assert!(suites.iter().any(|s| s.starts_with("TLS_ECDHE_RSA_")));
        assert!(suites.iter().all(|s| s.contains("_GCM_")));
    }

    #[test]
    fn tls13_is_a_single_protocol_with_tls13_suites_listed() {
        let (m, _) = render(TlsSettings {
            protocol: Protocol::Tls13,
            rest_client_auth: true,
        });
        assert_eq!(m["security.ssl.protocol"], "TLSv1.3");
        assert!(!m["security.ssl.protocol"].contains(','));
        assert!(m["security.ssl.algorithms"]
            .starts_with("TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256,"));
    }

    #[test]
    fn rest_client_authentication_can_be_turned_off() {
        let (m, _) = render(TlsSettings {
            protocol: Protocol::Tls12,
            rest_client_auth: false,
        });
        assert_eq!(m["security.ssl.rest.authentication-enabled"], "false");
    }

    #[test]
    fn every_password_is_marked_secret_and_hidden_by_the_config_redaction() {
        let (m, pw) = render(TlsSettings::default());
        let secrets: Vec<&String> = m.keys().filter(|k| is_secret_key(k)).collect();
        assert_eq!(secrets.len(), 6, "{secrets:?}");
        let redacted = crate::flinkconf::redacted(&m);
        for stored in [
            &pw.internal_keystore,
            &pw.internal_truststore,
            &pw.rest_keystore,
            &pw.rest_truststore,
        ] {
            assert!(redacted.values().all(|v| v != stored.expose()));
        }
        // Only the passwords are secret.
        for (k, v) in &m {
            if !is_secret_key(k) {
                assert_eq!(redacted[k], *v, "{k}");
            }
        }
    }

    #[test]
    fn every_rendered_key_is_one_the_pass_through_refuses() {
        let (m, _) = render(TlsSettings::default());
        for k in m.keys().map(String::as_str).chain(["akka.ssl.enabled"]) {
            let mut probe = crate::config::AgentConfig::default();
            probe
                .advanced
                .flink_config
                .insert(k.to_string(), "false".into());
            let mut errors = crate::config::Errors::default();
            crate::config::validate_values(&probe, &mut errors);
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.message.contains("TLS is managed by the agent")),
                "{k} is rendered but not refused in advanced.flink_config"
            );
        }
    }
}
