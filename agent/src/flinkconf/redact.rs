//! What `GET /v1/config` may show: Flink's rendered keys with secret values redacted.

use std::collections::BTreeMap;

/// Placeholder shown instead of a secret value.
pub const REDACTED: &str = "<redacted>";

/// Fragments of keys whose values are secret: Flink's own list
/// (`GlobalConfiguration.SENSITIVE_KEYS` in Flink 2.x) plus credentials and private keys.
const SENSITIVE_FRAGMENTS: &[&str] = &[
    "password",
    "secret",
    "fs.azure.account.key",
    "apikey",
    "api-key",
    "auth-params",
    "service-key",
    "token",
    "basic-auth",
    "jaas.config",
    "http-headers",
    "credential",
    "private-key",
];

/// Whether `key`'s value must not be shown.
pub fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with(".key") || SENSITIVE_FRAGMENTS.iter().any(|f| k.contains(f))
}

/// The entries with secret values replaced by `"<redacted>"`, for `GET /v1/config`.
pub fn redacted(entries: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| {
            let v = if is_sensitive(k) {
                REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_looking_keys_only() {
        let mut e = BTreeMap::new();
        for k in [
            "s3.secret-key",
            "s3.access-key",
            "security.ssl.rest.keystore-password",
            "security.ssl.internal.truststore-password",
            "fs.azure.account.key.acct.blob.core.windows.net",
            "metrics.reporter.dd.apikey",
            "security.ssl.internal.key",
            "gs.auth.service.account.json.credentials",
            "kafka.sasl.jaas.config",
            "rest.auth.token",
            "taskmanager.numberOfTaskSlots",
            "security.ssl.rest.keystore",
        ] {
            e.insert(k.to_string(), "v".to_string());
        }
        let red = redacted(&e);
        let shown: Vec<&str> = red
            .iter()
            .filter(|(_, v)| v.as_str() == "v")
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            shown,
            vec![
                "s3.access-key",
                "security.ssl.rest.keystore",
                "taskmanager.numberOfTaskSlots"
            ]
        );
        assert_eq!(red["s3.secret-key"], REDACTED);
    }
}
