//! The object store the checkpoints go to, built from `[object_store]`. Secrets come from the
//! credentials file or the environment and never reach a log line: [`Remote`]'s `Debug` shows
//! only the URL.

use crate::config::{credentials_file_problem, parse_store_url, ObjectStoreSection, StoreUrl};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Why the object store could not be set up or reached.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("object_store.url: {0}")]
    Url(String),
    #[error("object_store.credentials_file: {0}")]
    Credentials(String),
    #[error("object_store: cannot set up {url}: {source}")]
    Build {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("object_store: cannot create the local store directory {path}: {source}")]
    LocalDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object_store: {url} is not usable: {advice} ({source})")]
    Unreachable {
        url: String,
        advice: &'static str,
        #[source]
        source: object_store::Error,
    },
}

/// A configured object store, rooted at `<url prefix>/<cluster id>`.
#[derive(Clone)]
pub struct Remote {
    pub store: Arc<dyn ObjectStore>,
    /// Present for stores with explicit multipart uploads (S3, GCS, Azure): their upload ids can
    /// be journaled and aborted after a crash. `file://` has none (its temp files are local).
    pub multipart: Option<Arc<dyn MultipartStore>>,
    /// Key prefix of this cluster: `<url prefix>/<cluster id>`.
    pub root: Path,
    /// The URL, for messages.
    pub url: String,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("root", &self.root.as_ref())
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Builds the store for `section`, for the cluster `cluster_id`. Does not touch the network.
    pub fn build(section: &ObjectStoreSection, cluster_id: &str) -> Result<Self, RemoteError> {
        let url = parse_store_url(&section.url).map_err(RemoteError::Url)?;
        let build_err = |source| RemoteError::Build {
            url: section.url.clone(),
            source,
        };
        let (store, multipart): (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>) =
            match url.scheme.as_str() {
                "s3" => {
                    // Client options first: `with_allow_http` writes into them.
                    let mut b = AmazonS3Builder::from_env()
                        .with_retry(retry())
                        .with_client_options(client_options())
                        .with_bucket_name(&url.bucket)
                        .with_allow_http(section.allow_http);
                    if let Some(region) = &section.region {
                        b = b.with_region(region);
                    }
                    if let Some(endpoint) = &section.endpoint {
                        b = b.with_endpoint(endpoint);
                    }
                    for (key, value) in credential_options::<AmazonS3ConfigKey>(
                        section,
                        "S3",
                        "aws_access_key_id, aws_secret_access_key, aws_session_token",
                    )? {
                        b = b.with_config(key, value);
                    }
                    let s3 = Arc::new(b.build().map_err(build_err)?);
                    (s3.clone(), Some(s3))
                }
                "gs" => {
                    let mut b = GoogleCloudStorageBuilder::from_env()
                        .with_retry(retry())
                        .with_client_options(client_options())
                        .with_bucket_name(&url.bucket);
                    if let Some(path) = &section.credentials_file {
                        check_credentials_file(path)?;
                        b = b.with_service_account_path(path.display().to_string());
                    }
                    let gcs = Arc::new(b.build().map_err(build_err)?);
                    (gcs.clone(), Some(gcs))
                }
                "az" => {
                    // Client options first: `with_allow_http` writes into them.
                    let mut b = MicrosoftAzureBuilder::from_env()
                        .with_retry(retry())
                        .with_client_options(client_options())
                        .with_container_name(&url.bucket)
                        .with_allow_http(section.allow_http);
                    // The account URL, for sovereign clouds and emulators (Azurite).
                    if let Some(endpoint) = &section.endpoint {
                        b = b.with_endpoint(endpoint.clone());
                    }
                    for (key, value) in credential_options::<AzureConfigKey>(
                        section,
                        "Azure",
                        "azure_storage_account_name, azure_storage_account_key",
                    )? {
                        b = b.with_config(key, value);
                    }
                    let az = Arc::new(b.build().map_err(build_err)?);
                    (az.clone(), Some(az))
                }
                _ => (Arc::new(local_store(&url)?), None),
            };
        let root = Path::from_iter(
            url.prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .chain(std::iter::once(cluster_id)),
        );
        Ok(Self {
            store,
            multipart,
            root,
            url: section.url.clone(),
        })
    }

    /// Lists the cluster's prefix once, so a missing bucket or rejected credentials surface at
    /// start-up with advice instead of as an upload that retries forever.
    pub async fn probe(&self) -> Result<(), RemoteError> {
        // The first page of a listing is enough to prove access.
        let first = self.store.list(Some(&self.root)).try_next().await;
        first.map(drop).map_err(|source| RemoteError::Unreachable {
            url: self.url.clone(),
            advice: advice(&source).unwrap_or("check object_store.url, endpoint and the network"),
            source,
        })
    }
}

/// What an operator should do about a store error that configuration can fix: a missing
/// bucket or rejected credentials never heal by retrying, so `status` and start-up say so.
pub fn advice(error: &object_store::Error) -> Option<&'static str> {
    let text = error.to_string();
    if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") {
        Some("the bucket does not exist; create it or fix object_store.url")
    } else if text.contains("403")
        || text.contains("InvalidAccessKeyId")
        || text.contains("SignatureDoesNotMatch")
        || text.contains("AccessDenied")
    {
        Some("the credentials were rejected; fix object_store.credentials_file or the environment")
    } else {
        None
    }
}

/// Short request-level retries: the sync engine retries failed uploads forever with its own
/// back-off and alerting, so a request should fail within seconds instead of the client's
/// default of minutes, or an outage would stay invisible in `status`.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
    }
}

/// A refused connection is noticed in seconds. The whole-request timeout leaves a slow 8 MiB
/// part (16 in flight) minutes; object_store has no idle timeout, so a connection that went
/// silent is given up sooner by deadlines sized to each request (`upload::within`), and a
/// restore with a local checkpoint does not wait for the store (`jobs::resubmit`).
fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120))
}

fn local_store(url: &StoreUrl) -> Result<LocalFileSystem, RemoteError> {
    std::fs::create_dir_all(&url.bucket).map_err(|source| RemoteError::LocalDir {
        path: url.bucket.clone(),
        source,
    })?;
    LocalFileSystem::new_with_prefix(&url.bucket).map_err(|source| RemoteError::Build {
        url: format!("file://{}", url.bucket),
        source,
    })
}

fn check_credentials_file(path: &std::path::Path) -> Result<(), RemoteError> {
    credentials_file_problem(path).map_err(RemoteError::Credentials)
}

/// The `key = "value"` pairs of a TOML credentials file (S3 and Azure), as the store's option
/// keys `K`; an unknown key is named with `examples` of valid ones.
fn credential_options<K: FromStr>(
    section: &ObjectStoreSection,
    store: &str,
    examples: &str,
) -> Result<Vec<(K, String)>, RemoteError> {
    let Some(path) = &section.credentials_file else {
        return Ok(Vec::new());
    };
    check_credentials_file(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| RemoteError::Credentials(format!("cannot read {}: {e}", path.display())))?;
    // The parser's message may quote the offending line, i.e. a secret: report only the path.
    let table: toml::Table = text.parse().map_err(|_| {
        RemoteError::Credentials(format!(
            "{} is not a TOML table of `option = \"value\"` lines",
            path.display()
        ))
    })?;
    table
        .into_iter()
        .map(|(key, value)| {
            let toml::Value::String(value) = value else {
                return Err(RemoteError::Credentials(format!(
                    "{}: `{key}` must be a string",
                    path.display()
                )));
            };
            let option = K::from_str(&key).map_err(|_| {
                RemoteError::Credentials(format!(
                    "unknown {store} option `{key}`; use e.g. {examples}"
                ))
            })?;
            Ok((option, value))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn s3_section(creds: Option<std::path::PathBuf>) -> ObjectStoreSection {
        ObjectStoreSection {
            url: "s3://bkt/pre/fix".into(),
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            allow_http: true,
            credentials_file: creds,
        }
    }

    #[test]
    fn roots_at_prefix_and_cluster() {
        let r = Remote::build(&s3_section(None), "c1").unwrap();
        assert_eq!(r.root.as_ref(), "pre/fix/c1");
        assert!(r.multipart.is_some());
    }

    #[test]
    fn secrets_are_not_in_debug_or_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("creds.toml");
        std::fs::write(
            &p,
            "aws_access_key_id = \"AKIA\"\naws_secret_access_key = \"TOPSECRET\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let r = Remote::build(&s3_section(Some(p.clone())), "c1").unwrap();
        assert!(!format!("{r:?}").contains("TOPSECRET"));

        std::fs::write(&p, "aws_secret_access_key = TOPSECRET\n").unwrap();
        let err = Remote::build(&s3_section(Some(p.clone())), "c1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("TOPSECRET"), "{err}");
        assert!(err.contains("not a TOML table"), "{err}");

        std::fs::write(&p, "aws_secret_acces_key = \"x\"\n").unwrap();
        let err = Remote::build(&s3_section(Some(p.clone())), "c1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown S3 option `aws_secret_acces_key`"),
            "{err}"
        );

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Remote::build(&s3_section(Some(p)), "c1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn unknown_scheme_is_refused() {
        let s = ObjectStoreSection {
            url: "hdfs://nn/x".into(),
            ..Default::default()
        };
        let err = Remote::build(&s, "c").unwrap_err().to_string();
        assert!(
            err.contains("unknown storage URL scheme `hdfs://`"),
            "{err}"
        );
    }
}

/// Stores that fail on purpose, for tests of what the agent does when the store misbehaves:
/// object_store has no fault injection of its own.
#[cfg(test)]
pub(crate) mod testing {
    use super::Remote;
    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    type Hook = Box<dyn Fn(&Path) + Send + Sync>;

    /// Which of the next requests of one kind fail.
    #[derive(Default)]
    struct Failing {
        /// How many of the next requests for matching keys fail (`usize::MAX`: all of them).
        count: AtomicUsize,
        /// Requests for keys containing this text are the ones that fail (`""`: any key).
        matching: Mutex<String>,
    }

    impl Failing {
        fn set(&self, matching: &str, count: usize) {
            *self.matching.lock().unwrap_or_else(|e| e.into_inner()) = matching.into();
            self.count.store(count, Ordering::SeqCst);
        }

        /// The error for a request for `location` that is to fail, counting it.
        fn check(&self, op: &str, location: &Path) -> Result<()> {
            let matches = location.as_ref().contains(
                self.matching
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_str(),
            );
            let failing = matches
                && self
                    .count
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                        0 => None,
                        usize::MAX => Some(n),
                        n => Some(n - 1),
                    })
                    .is_ok();
            if failing {
                return Err(object_store::Error::Generic {
                    store: "faulty",
                    source: format!("injected failure {op} {location}").into(),
                });
            }
            Ok(())
        }
    }

    /// Wraps a real store; deletes and gets fail on request, and a hook runs before every put.
    pub(crate) struct FaultyStore {
        inner: Arc<dyn ObjectStore>,
        deletes: Failing,
        gets: Failing,
        before_put: Mutex<Option<Hook>>,
        /// How long a get of a range from byte 0 waits before it is answered.
        first_range_delay: Mutex<std::time::Duration>,
    }

    impl FaultyStore {
        pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> Self {
            Self {
                inner,
                deletes: Failing::default(),
                gets: Failing::default(),
                before_put: Mutex::new(None),
                first_range_delay: Mutex::default(),
            }
        }

        /// Over a local directory (made if missing), the tests' real store.
        pub(crate) fn local(dir: &std::path::Path) -> Arc<Self> {
            std::fs::create_dir_all(dir).unwrap();
            let local = object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap();
            Arc::new(Self::new(Arc::new(local)))
        }

        /// The next `count` deletes of keys containing `matching` fail.
        pub(crate) fn fail_deletes(&self, matching: &str, count: usize) {
            self.deletes.set(matching, count);
        }

        /// The next `count` gets of keys containing `matching` fail (as a store that does not
        /// answer would: not with "not found").
        pub(crate) fn fail_gets(&self, matching: &str, count: usize) {
            self.gets.set(matching, count);
        }

        /// Gets of a range from byte 0 wait `delay` before they are answered: the ranges after
        /// it finish first.
        pub(crate) fn delay_first_ranges(&self, delay: std::time::Duration) {
            *self
                .first_range_delay
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = delay;
        }

        /// Runs `hook` with the key of every put, before the put.
        pub(crate) fn before_put(&self, hook: impl Fn(&Path) + Send + Sync + 'static) {
            *self.before_put.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
        }

        /// A [`Remote`] rooted at `c1` over this store.
        pub(crate) fn remote(self: &Arc<Self>) -> Remote {
            Remote {
                store: self.clone(),
                multipart: None,
                root: Path::from("c1"),
                url: "faulty://test".into(),
            }
        }
    }

    impl std::fmt::Debug for FaultyStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FaultyStore").finish_non_exhaustive()
        }
    }

    impl std::fmt::Display for FaultyStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FaultyStore({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FaultyStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> Result<PutResult> {
            if let Some(hook) = &*self.before_put.lock().unwrap_or_else(|e| e.into_inner()) {
                hook(location);
            }
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.gets.check("reading", location)?;
            if let Some(object_store::GetRange::Bounded(r)) = &options.range {
                let delay = *self
                    .first_range_delay
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if r.start == 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            self.inner.get_opts(location, options).await
        }

        async fn delete(&self, location: &Path) -> Result<()> {
            self.deletes.check("deleting", location)?;
            self.inner.delete(location).await
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
            self.inner.copy(from, to).await
        }

        async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }
}
