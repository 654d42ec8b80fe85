//! Declared jobs: what was deployed (the record) and what the agent last did with it (the run
//! state). Records live in `<agent.state_dir>/jobs/NAME.json` (+ `NAME.jar`), written
//! atomically, and in object storage next to the job's checkpoints, so a node that lost its
//! disk finds them again. The run state is local only: it names Flink job ids of this node.

use crate::checkpoints::layout::job_prefix;
use crate::checkpoints::Remote;
use object_store::path::Path as ObjectPath;
use object_store::PutPayload;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A deployment as the operator declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    /// File name of the jar as uploaded (shown to Flink).
    pub jar_name: String,
    pub jar_sha256: String,
    pub entry_class: Option<String>,
    pub parallelism: Option<u32>,
    pub args: Vec<String>,
    /// Per-job Flink configuration (`flinkConfiguration` of the run request).
    #[serde(default)]
    pub flink_config: BTreeMap<String, String>,
    pub deployed_at: u64,
    /// Three-node clusters: bumped by each `jobs start` after a stop, so the job's next run has
    /// its own deterministic Flink job id.
    #[serde(default)]
    pub generation: u64,
}

/// Where a submission restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredFrom {
    pub checkpoint_id: u64,
    /// `local` (Flink's own checkpoint dir) or `remote` (downloaded and verified).
    pub source: String,
    pub path: String,
}

/// What the agent last did with a job on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// Flink job ids this job ran under, oldest first (their checkpoint dirs hold its
    /// checkpoints). The last one is current.
    pub flink_job_ids: Vec<String>,
    pub restored_from: Option<RestoredFrom>,
    /// Stopped on purpose: not re-submitted.
    pub stopped: bool,
    pub savepoint: Option<String>,
}

/// Job names become directory and object key names: keep them boring.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "job name `{name}` is invalid: use 1 to 63 lower-case letters, digits, `-` or `_`, starting with a letter or digit"
        ))
    }
}

/// The local files of declared jobs.
#[derive(Debug, Clone)]
pub struct LocalRecords {
    dir: PathBuf,
}

impl LocalRecords {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("jobs"),
        }
    }

    /// Where the records, jars and run states live.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub fn jar_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.jar"))
    }

    pub(crate) fn run_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.run.json"))
    }

    pub fn names(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries {
                    let file = e?.file_name().to_string_lossy().into_owned();
                    if let Some(name) = file.strip_suffix(".json").filter(|n| !n.ends_with(".run"))
                    {
                        names.push(name.to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        names.sort();
        Ok(names)
    }

    pub fn read(&self, name: &str) -> std::io::Result<Option<JobRecord>> {
        read_json(&self.record_path(name))
    }

    pub fn run_state(&self, name: &str) -> std::io::Result<RunState> {
        Ok(read_json(&self.run_path(name))?.unwrap_or_default())
    }

    /// Writes jar then record (a record always has its jar).
    pub fn write(&self, record: &JobRecord, jar: &[u8]) -> std::io::Result<()> {
        crate::fsutil::write_atomic(&self.jar_path(&record.name), jar, 0o640)?;
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&self.record_path(&record.name), &json, 0o640)
    }

    pub fn write_run_state(&self, name: &str, state: &RunState) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&self.run_path(name), &json, 0o640)
    }

    /// Removes record first (so a crash leaves no record without its jar), then the rest.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        for p in [
            self.record_path(name),
            self.jar_path(name),
            self.run_path(name),
        ] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Keys of a job's record and jar in object storage.
pub fn remote_record(remote: &Remote, name: &str) -> ObjectPath {
    crate::checkpoints::layout::job_record(&remote.root, name)
}

pub fn remote_jar(remote: &Remote, name: &str) -> ObjectPath {
    job_prefix(&remote.root, name).child("job.jar")
}

/// Uploads jar then record: a remote record always has its jar.
pub async fn put_remote(
    remote: &Remote,
    record: &JobRecord,
    jar: Vec<u8>,
) -> object_store::Result<()> {
    remote
        .store
        .put(&remote_jar(remote, &record.name), PutPayload::from(jar))
        .await?;
    let json = serde_json::to_vec_pretty(record).map_err(|e| object_store::Error::Generic {
        store: "json",
        source: Box::new(e),
    })?;
    remote
        .store
        .put(&remote_record(remote, &record.name), PutPayload::from(json))
        .await?;
    Ok(())
}

/// Record first, then jar, so an interrupted delete never leaves a record without its jar.
pub async fn delete_remote(remote: &Remote, name: &str) -> object_store::Result<()> {
    for key in [
        remote_record(remote, name),
        remote_jar(remote, name),
        remote_stopped(remote, name),
    ] {
        delete_if_exists(remote, &key).await?;
    }
    Ok(())
}

async fn delete_if_exists(remote: &Remote, key: &ObjectPath) -> object_store::Result<()> {
    match remote.store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn remote_stopped(remote: &Remote, name: &str) -> ObjectPath {
    crate::checkpoints::layout::job_stopped(&remote.root, name)
}

/// The stop marker is a few bytes: a store that has not answered in this time is not
/// answering (a silently dead link), and `jobs stop`/`start` say so rather than wait out the
/// client's whole-request timeout (two minutes, longer than the CLI waits).
pub const MARKER_DEADLINE: Duration = Duration::from_secs(10);

/// Declares the job stopped in object storage too, so a node replacing this one leaves it
/// stopped; `false` withdraws that. Fails after [`MARKER_DEADLINE`].
pub async fn set_stopped_remote(
    remote: &Remote,
    name: &str,
    stopped: bool,
) -> object_store::Result<()> {
    let key = remote_stopped(remote, name);
    marker_deadline(async {
        if !stopped {
            return delete_if_exists(remote, &key).await;
        }
        remote
            .store
            .put(&key, PutPayload::from_static(b"{\"stopped\": true}\n"))
            .await
            .map(drop)
    })
    .await
}

/// Whether `jobs stop` declared the job stopped (on whichever node). Fails after
/// [`MARKER_DEADLINE`].
pub async fn is_stopped_remote(remote: &Remote, name: &str) -> object_store::Result<bool> {
    marker_deadline(async {
        match remote.store.head(&remote_stopped(remote, name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
}

async fn marker_deadline<T>(
    op: impl std::future::Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    tokio::time::timeout(MARKER_DEADLINE, op)
        .await
        .unwrap_or_else(|_| {
            Err(object_store::Error::Generic {
                store: "object store",
                source: format!("no answer within {} s", MARKER_DEADLINE.as_secs()).into(),
            })
        })
}

/// A job declared in object storage.
#[derive(Debug)]
pub struct RemoteJob {
    pub record: JobRecord,
    pub jar: Vec<u8>,
    pub stopped: bool,
}

/// Every job record in object storage with its stop marker, without the jars.
pub async fn fetch_remote_records(remote: &Remote) -> object_store::Result<Vec<(JobRecord, bool)>> {
    let jobs = remote.root.child("jobs");
    let listing = remote.store.list_with_delimiter(Some(&jobs)).await?;
    let mut out = Vec::new();
    for prefix in listing.common_prefixes {
        let Some(name) = prefix.filename() else {
            continue;
        };
        let bytes = match remote.store.get(&remote_record(remote, name)).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<JobRecord>(&bytes) {
            Ok(record) => {
                let stopped = is_stopped_remote(remote, name).await?;
                out.push((record, stopped));
            }
            Err(_) => log::warn!(
                "ignoring the unreadable job record of `{name}` in {}",
                remote.url
            ),
        }
    }
    Ok(out)
}

/// A job's jar in object storage.
pub async fn fetch_remote_jar(remote: &Remote, name: &str) -> object_store::Result<Vec<u8>> {
    Ok(remote
        .store
        .get(&remote_jar(remote, name))
        .await?
        .bytes()
        .await?
        .to_vec())
}

/// Every job declared in object storage, with its jar (node loss: the local disk is empty).
pub async fn fetch_remote(remote: &Remote) -> object_store::Result<Vec<RemoteJob>> {
    let mut out = Vec::new();
    for (record, stopped) in fetch_remote_records(remote).await? {
        let jar = fetch_remote_jar(remote, &record.name).await?;
        out.push(RemoteJob {
            record,
            jar,
            stopped,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        validate_name("word-count_2").unwrap();
        for bad in ["", "-x", "Upper", "a/b", "..", &"x".repeat(64)] {
            assert!(
                validate_name(bad).unwrap_err().contains("is invalid"),
                "{bad}"
            );
        }
    }

    #[test]
    fn records_roundtrip_and_list() {
        let tmp = tempfile::tempdir().unwrap();
        let local = LocalRecords::new(tmp.path());
        let record = JobRecord {
            name: "wc".into(),
            jar_name: "wc.jar".into(),
            jar_sha256: "00".into(),
            entry_class: None,
            parallelism: Some(1),
            args: vec!["a".into()],
            flink_config: BTreeMap::new(),
            deployed_at: 1,
            generation: 0,
        };
        local.write(&record, b"PK").unwrap();
        local.write_run_state("wc", &RunState::default()).unwrap();
        assert_eq!(local.names().unwrap(), vec!["wc"]);
        assert_eq!(local.read("wc").unwrap(), Some(record));
        local.remove("wc").unwrap();
        assert!(local.names().unwrap().is_empty());
    }
}
