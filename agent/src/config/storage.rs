//! `[object_store]` and `[checkpoints]`: where checkpoints become durable and how the sync
//! engine keeps them. Value rules live here (not in `validate.rs`) so the checkpoint feature's
//! config stays in one file; the credentials file's permissions are an environment check.

use super::Errors;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The object store checkpoints and job records are copied to.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectStoreSection {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or `file:///path`.
    /// The embedded default is a local directory, for the single-VM demo.
    pub url: String,
    /// S3 region (S3 and S3-compatible only).
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`, or the Azure
    /// account URL (sovereign clouds, the Azurite emulator).
    pub endpoint: Option<String>,
    /// Allow plain-HTTP endpoints (servers on a private network, emulators).
    pub allow_http: bool,
    /// Secrets: for `gs://` a service-account JSON key; otherwise a TOML table of the store's
    /// option keys (e.g. `aws_access_key_id`, `aws_secret_access_key`,
    /// `azure_storage_account_name`, `azure_storage_account_key`). Must be mode 0600 or
    /// stricter. Without it, credentials come from the environment.
    pub credentials_file: Option<PathBuf>,
}

impl Default for ObjectStoreSection {
    fn default() -> Self {
        Self {
            url: "file:///var/lib/flink-agent/object-store".into(),
            region: None,
            endpoint: None,
            allow_http: false,
            credentials_file: None,
        }
    }
}

/// No secret is stored here (the credentials file is read only when the store is built), but an
/// endpoint may embed user info, so it is redacted before it can reach a log line.
impl fmt::Debug for ObjectStoreSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreSection")
            .field("url", &self.url)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_deref().map(redact_userinfo))
            .field("allow_http", &self.allow_http)
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

/// `http://user:pass@host` → `http://***@host`, so a pasted secret in a URL is never logged.
pub fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

/// How the checkpoint sync engine behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointsSection {
    /// Complete checkpoints kept per job in object storage; the newest is never deleted.
    pub retain: u32,
    /// Periodic rescan of the local checkpoint dir, in case inotify missed or dropped events.
    pub rescan_interval_secs: u64,
    /// Files (and multipart parts) uploaded in parallel.
    pub upload_concurrency: usize,
    /// Age after which files of an upload that never got its manifest are deleted.
    pub orphan_grace_secs: u64,
    /// Consecutive failed upload attempts after which `status` shows an alert.
    pub alert_after_failures: u32,
}

impl Default for CheckpointsSection {
    fn default() -> Self {
        Self {
            retain: 3,
            rescan_interval_secs: 10,
            upload_concurrency: 16,
            orphan_grace_secs: 3600,
            alert_after_failures: 3,
        }
    }
}

/// Object store schemes the agent supports, with the name of their top-level container.
pub const SCHEMES: &[(&str, &str)] = &[
    ("s3", "bucket"),
    ("gs", "bucket"),
    ("az", "container"),
    ("file", ""),
];

/// A parsed `object_store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    pub scheme: String,
    /// Bucket or container; for `file` the absolute directory.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), empty for none.
    pub prefix: String,
}

/// Parses `object_store.url`, explaining what a valid one looks like.
pub fn parse_store_url(url: &str) -> Result<StoreUrl, String> {
    let known = SCHEMES
        .iter()
        .map(|(s, _)| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(", ");
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`{url}` is not a URL; use one of {known} (e.g. s3://my-bucket/flink)"
        ));
    };
    let Some((_, container)) = SCHEMES.iter().find(|(s, _)| *s == scheme) else {
        return Err(format!(
            "unknown storage URL scheme `{scheme}://`; supported are {known}"
        ));
    };
    if scheme == "file" {
        if !rest.starts_with('/') || rest.len() < 2 {
            return Err(format!(
                "`{url}` needs an absolute directory, e.g. file:///var/lib/flink-agent/object-store"
            ));
        }
        return Ok(StoreUrl {
            scheme: scheme.into(),
            bucket: rest.trim_end_matches('/').into(),
            prefix: String::new(),
        });
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "`{url}` names no {container}; write {scheme}://<{container}>/<prefix>"
        ));
    }
    Ok(StoreUrl {
        scheme: scheme.into(),
        bucket: bucket.into(),
        prefix: prefix.trim_matches('/').into(),
    })
}

/// Value rules for both sections.
pub fn validate_storage(
    store: &ObjectStoreSection,
    checkpoints: &CheckpointsSection,
    e: &mut Errors,
) {
    match parse_store_url(&store.url) {
        Err(message) => e.push("object_store.url", message),
        Ok(url) => {
            if url.scheme != "s3" && store.region.is_some() {
                e.push(
                    "object_store.region",
                    "applies to s3:// URLs only; remove it",
                );
            }
            if !["s3", "az"].contains(&url.scheme.as_str()) && store.endpoint.is_some() {
                e.push(
                    "object_store.endpoint",
                    "applies to s3:// and az:// URLs only; remove it",
                );
            }
            if let Some(endpoint) = &store.endpoint {
                if endpoint.starts_with("http://") && !store.allow_http {
                    e.push(
                        "object_store.endpoint",
                        "is plain HTTP; set object_store.allow_http = true to allow it",
                    );
                } else if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                    e.push(
                        "object_store.endpoint",
                        format!(
                            "`{}` must start with http:// or https://",
                            redact_userinfo(endpoint)
                        ),
                    );
                }
            }
        }
    }
    e.range(
        "checkpoints.retain",
        checkpoints.retain,
        1,
        1000,
        "the newest complete checkpoint is always kept",
    );
    e.range(
        "checkpoints.rescan_interval_secs",
        checkpoints.rescan_interval_secs,
        1,
        3600,
        "the rescan backs up inotify, which can drop events",
    );
    e.range(
        "checkpoints.upload_concurrency",
        checkpoints.upload_concurrency,
        1,
        256,
        "parallel uploads of files and parts",
    );
    e.range(
        "checkpoints.orphan_grace_secs",
        checkpoints.orphan_grace_secs,
        60,
        30 * 86_400,
        "it must exceed the longest single checkpoint upload",
    );
    e.range(
        "checkpoints.alert_after_failures",
        checkpoints.alert_after_failures,
        1,
        1000,
        "failed uploads are retried forever; this only sets when status raises an alert",
    );
}

/// Environment rule: the credentials file exists and only its owner can read it.
pub fn check_credentials_file(store: &ObjectStoreSection, e: &mut Errors) {
    if let Some(path) = &store.credentials_file {
        if let Err(message) = credentials_file_problem(path) {
            e.push("object_store.credentials_file", message);
        }
    }
}

/// Why a credentials file must not be used, if it must not.
pub fn credentials_file_problem(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_for_s3_and_azure_region_for_s3() {
        let problems = |url: &str, region: Option<&str>, endpoint: Option<&str>| {
            let store = ObjectStoreSection {
                url: url.into(),
                region: region.map(Into::into),
                endpoint: endpoint.map(Into::into),
                ..Default::default()
            };
            let mut e = Errors::default();
            validate_storage(&store, &CheckpointsSection::default(), &mut e);
            e.0.into_iter()
                .map(|f| format!("{}: {}", f.path, f.message))
                .collect::<Vec<_>>()
        };
        let account = Some("https://acct.blob.core.chinacloudapi.cn");
        assert!(problems("az://c/p", None, account).is_empty());
        assert!(problems("s3://b/p", Some("eu-west-1"), account).is_empty());
        assert_eq!(
            problems("az://c/p", Some("eu-west-1"), None),
            ["object_store.region: applies to s3:// URLs only; remove it"]
        );
        assert_eq!(
            problems("gs://b/p", None, account),
            ["object_store.endpoint: applies to s3:// and az:// URLs only; remove it"]
        );
    }

    #[test]
    fn parses_supported_urls() {
        let u = parse_store_url("s3://bkt/a/b/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("bkt", "a/b"));
        let u = parse_store_url("file:///srv/store/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("/srv/store", ""));
        assert_eq!(parse_store_url("az://c").unwrap().prefix, "");
    }

    #[test]
    fn explains_bad_urls() {
        let err = parse_store_url("ftp://x/y").unwrap_err();
        assert!(err.contains("unknown storage URL scheme `ftp://`"), "{err}");
        assert!(err.contains("s3://"), "{err}");
        assert!(parse_store_url("s3:///prefix")
            .unwrap_err()
            .contains("names no bucket"));
        assert!(parse_store_url("file://relative")
            .unwrap_err()
            .contains("absolute"));
        assert!(parse_store_url("bucket").unwrap_err().contains("not a URL"));
    }

    #[test]
    fn refuses_group_readable_credentials() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("creds.toml");
        std::fs::write(&p, "aws_secret_access_key = \"s\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = credentials_file_problem(&p).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        credentials_file_problem(&p).unwrap();
    }

    #[test]
    fn relative_file_urls_and_credentials_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let text = "[object_store]\nurl = \"file://../store\"\ncredentials_file = \"creds.toml\"\n";
        std::fs::write(&path, text).unwrap();
        let c = super::super::load_unchecked(&path).unwrap();
        let parent = dir.path().parent().unwrap();
        assert_eq!(
            c.object_store.url,
            format!("file://{}", parent.join("store").display())
        );
        assert_eq!(
            c.object_store.credentials_file,
            Some(dir.path().join("creds.toml"))
        );
    }

    #[test]
    fn endpoint_userinfo_is_redacted() {
        let s = ObjectStoreSection {
            endpoint: Some("http://key:secret@127.0.0.1:9000".into()),
            ..Default::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("***@127.0.0.1:9000"), "{shown}");
    }
}
