//! Publishing one staged checkpoint: data files first (in parallel, large ones as multipart
//! uploads), `_metadata` after them, a listing that proves every file is present with its size,
//! and the manifest last with `PutMode::Create`. Any failure leaves no manifest, so nothing
//! partial ever exists remotely; a retry (or an agent restart) skips files already present.
//!
//! Multipart uploads of stores that have explicit upload ids are journaled in the staging dir
//! before the first part is sent; a crash leaves the journal behind and the next attempt aborts
//! those uploads, so no orphaned parts accumulate in the bucket.

use super::digest::Hashes;
use super::layout::{checkpoint_prefix, data_path, manifest_path};
use super::local::{Staged, StagedFile};
use super::manifest::{Manifest, ManifestFile, FORMAT};
use super::remote::Remote;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectMeta, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Why publishing a checkpoint failed (it is retried; nothing partial was published).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{op} {path} failed: {source}")]
    Store {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot read staged file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "after upload, {path} is {found:?} bytes in the store instead of {expected}; retrying"
    )]
    Missing {
        path: String,
        expected: u64,
        found: Option<u64>,
    },
    #[error("{path} already exists with different content (a job with this name started over without restoring?); delete that checkpoint or rename the job")]
    Conflict { path: String },
    #[error("{path} is a manifest of format {format}, written by a newer agent (this one reads formats up to {FORMAT}); upgrade this agent")]
    NewerFormat { path: String, format: u32 },
}

/// Tuning of uploads.
#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    /// Requests (files or parts) in flight at once.
    pub concurrency: usize,
    /// Files larger than this use multipart uploads with parts of this size (S3's minimum
    /// part size is 5 MiB).
    pub part_size: usize,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            part_size: 8 << 20,
        }
    }
}

/// What the manifest says besides the files.
#[derive(Debug, Clone)]
pub struct Origin {
    pub cluster_id: String,
    pub flink_version: String,
}

/// A request that gets no answer within this plus [`DEADLINE_RATE`] for its body fails (and
/// the attempt is retried). object_store has only a whole-request timeout, sized for the largest
/// part on a slow link (2 minutes, `remote.rs`): on a connection that went silent it held a
/// 6 KiB checkpoint for those 2 minutes (`benches/chaos.py`, fault `s3-blackhole`).
const DEADLINE_BASE: std::time::Duration = std::time::Duration::from_secs(10);
/// The slowest transfer a request may make before it is given up: 256 KiB/s (16 requests in
/// flight: 4 MiB/s together).
const DEADLINE_RATE: f64 = 256.0 * 1024.0;

/// `request`, given up once [`DEADLINE_BASE`] plus `bytes` at [`DEADLINE_RATE`] have passed.
pub(super) async fn within<T>(
    bytes: usize,
    request: impl std::future::Future<Output = Result<T, object_store::Error>>,
) -> Result<T, object_store::Error> {
    let deadline = DEADLINE_BASE + std::time::Duration::from_secs_f64(bytes as f64 / DEADLINE_RATE);
    tokio::time::timeout(deadline, request)
        .await
        .unwrap_or_else(|_| {
            Err(object_store::Error::Generic {
                store: "object store",
                source: Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {:.0} s", deadline.as_secs_f64()),
                )),
            })
        })
}

/// Deletes `paths` in as few requests as the store allows (S3: one per 1000 keys), each
/// answer within the request deadline; a missing object counts as deleted. A checkpoint of 2000
/// small files deleted one request at a time held the uploader, and so the next checkpoint's
/// upload, for seconds.
pub(super) async fn delete_all(remote: &Remote, paths: Vec<Path>) -> Result<(), UploadError> {
    let what = match paths.as_slice() {
        [one] => one.to_string(),
        [first, ..] => format!("{} objects ({first}, ...)", paths.len()),
        [] => return Ok(()),
    };
    let requests = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
    let mut answers = remote.store.delete_stream(requests);
    loop {
        match within(0, async { answers.next().await.transpose() }).await {
            Ok(Some(_)) | Err(object_store::Error::NotFound { .. }) => {}
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(UploadError::Store {
                    op: "deleting",
                    path: what,
                    source,
                })
            }
        }
    }
}

fn store_err(op: &'static str, path: &Path) -> impl FnOnce(object_store::Error) -> UploadError {
    let path = path.to_string();
    move |source| UploadError::Store { op, path, source }
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> UploadError {
    let path = path.display().to_string();
    move |source| UploadError::Io { path, source }
}

/// Publishes `staged`; returns its manifest. Idempotent: an already published identical
/// checkpoint is returned as is.
pub async fn publish(
    remote: &Remote,
    staged: &Staged,
    origin: &Origin,
    settings: UploadSettings,
) -> Result<Manifest, UploadError> {
    let info = &staged.info;
    let manifest_key = manifest_path(&remote.root, &info.job, info.checkpoint_id);
    // A retry (or an agent restart) first cleans up and looks at what already arrived. A first
    // attempt skips those round trips: it is the common case and they cost RPO. Should the
    // marker get lost in a crash, the retry re-uploads and the manifest's create-only PUT still
    // accepts only identical content.
    let retry = staged.attempted();
    let present = if retry {
        abort_journaled(remote, staged).await;
        if let Some(existing) = read_manifest(remote, &manifest_key).await? {
            return if existing.flink_job_id == info.flink_job_id {
                Ok(existing)
            } else {
                Err(UploadError::Conflict {
                    path: manifest_key.to_string(),
                })
            };
        }
        list_sizes(remote, &info.job, info.checkpoint_id).await?
    } else {
        staged.mark_attempted().map_err(io_err(&staged.dir))?;
        BTreeMap::new()
    };
    let files = staged.files().map_err(io_err(&staged.dir))?;
    let limit = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let (metadata, data): (Vec<_>, Vec<_>) = files.iter().partition(|f| f.rel == "_metadata");
    // Futures are built up front (they are lazy): mapping inside the stream trips the
    // compiler's higher-ranked lifetime inference once the loop is spawned.
    let uploads: Vec<_> = data
        .into_iter()
        .map(|f| upload_file(remote, staged, f, &present, &limit, settings))
        .collect();
    let mut entries: Vec<ManifestFile> = futures::stream::iter(uploads)
        .buffer_unordered(settings.concurrency.max(1))
        .try_collect()
        .await?;
    // `_metadata` goes last: Flink's completion marker should be the last file to land.
    for f in metadata {
        entries.push(upload_file(remote, staged, f, &present, &limit, settings).await?);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));

    let now_present = list_sizes(remote, &info.job, info.checkpoint_id).await?;
    for e in &entries {
        let found = now_present.get(&e.path).copied();
        if found != Some(e.size) {
            return Err(UploadError::Missing {
                path: data_path(&remote.root, &info.job, info.checkpoint_id, &e.path).to_string(),
                expected: e.size,
                found,
            });
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        cluster_id: origin.cluster_id.clone(),
        job: info.job.clone(),
        flink_job_id: info.flink_job_id.clone(),
        checkpoint_id: info.checkpoint_id,
        flink_version: origin.flink_version.clone(),
        completed_at: info.completed_at,
        files: entries,
    };
    put_manifest(remote, &manifest_key, &manifest).await?;
    Ok(manifest)
}

/// Publishes the manifest only if none exists; an identical one (a retry after a lost
/// response) counts as success.
async fn put_manifest(remote: &Remote, key: &Path, manifest: &Manifest) -> Result<(), UploadError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| UploadError::Io {
        path: key.to_string(),
        source: std::io::Error::other(e),
    })?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let len = json.len();
    match within(
        len,
        remote.store.put_opts(key, PutPayload::from(json), opts),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            match read_manifest(remote, key).await? {
                Some(existing) if existing.same_content(manifest) => Ok(()),
                _ => Err(UploadError::Conflict {
                    path: key.to_string(),
                }),
            }
        }
        Err(e) => Err(store_err("publishing manifest", key)(e)),
    }
}

/// Reads and parses a manifest; `None` if absent. An unparsable one is treated as a conflict,
/// one of a newer format ([`UploadError::NewerFormat`]) is not this agent's to judge: a restore
/// leaves it in the store (a newer agent's checkpoint is not damaged because this one cannot
/// read it, and a rolled-back agent must not delete it).
pub(crate) async fn read_manifest(
    remote: &Remote,
    key: &Path,
) -> Result<Option<Manifest>, UploadError> {
    match within(0, remote.store.get(key)).await {
        Ok(got) => {
            let bytes = within(0, got.bytes())
                .await
                .map_err(store_err("reading", key))?;
            #[derive(serde::Deserialize)]
            struct Format {
                format: u32,
            }
            let newer = |format| UploadError::NewerFormat {
                path: key.to_string(),
                format,
            };
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) if m.format > FORMAT => Err(newer(m.format)),
                Ok(m) => Ok(Some(m)),
                // A newer format need not parse as this one: its `format` still says whose it is.
                Err(_) => match serde_json::from_slice::<Format>(&bytes) {
                    Ok(Format { format }) if format > FORMAT => Err(newer(format)),
                    _ => Err(UploadError::Conflict {
                        path: key.to_string(),
                    }),
                },
            }
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_err("reading", key)(e)),
    }
}

/// Every object under `prefix`, listed within the request deadline.
pub(super) async fn list_all(
    remote: &Remote,
    prefix: &Path,
) -> Result<Vec<ObjectMeta>, UploadError> {
    within(0, remote.store.list(Some(prefix)).try_collect())
        .await
        .map_err(store_err("listing", prefix))
}

/// Sizes of the data files already in the store, by path relative to `chk-N`.
async fn list_sizes(
    remote: &Remote,
    job: &str,
    id: u64,
) -> Result<BTreeMap<String, u64>, UploadError> {
    let prefix = checkpoint_prefix(&remote.root, job, id).child("data");
    Ok(list_all(remote, &prefix)
        .await?
        .into_iter()
        .filter_map(|m| {
            let rel: Vec<String> = m
                .location
                .prefix_match(&prefix)?
                .map(|p| p.as_ref().to_string())
                .collect();
            Some((rel.join("/"), m.size))
        })
        .collect())
}

/// Uploads one file unless it is already present with its size; hashes it either way.
async fn upload_file(
    remote: &Remote,
    staged: &Staged,
    file: &StagedFile,
    present: &BTreeMap<String, u64>,
    limit: &Semaphore,
    settings: UploadSettings,
) -> Result<ManifestFile, UploadError> {
    let info = &staged.info;
    let key = data_path(&remote.root, &info.job, info.checkpoint_id, &file.rel);
    let hashes = if present.get(&file.rel) == Some(&file.size) {
        hash_file(&file.path).await?
    } else if file.size as usize <= settings.part_size {
        let bytes = Bytes::from(
            tokio::fs::read(&file.path)
                .await
                .map_err(io_err(&file.path))?,
        );
        let mut hashes = Hashes::new();
        hashes.update(&bytes);
        let _permit = limit.acquire().await.expect("semaphore is never closed");
        within(bytes.len(), remote.store.put(&key, PutPayload::from(bytes)))
            .await
            .map_err(store_err("uploading", &key))?;
        hashes
    } else if let Some(mp) = &remote.multipart {
        upload_parts(mp.as_ref(), staged, &key, file, limit, settings).await?
    } else {
        upload_streamed(remote, &key, file, settings).await?
    };
    Ok(hashes.into_file(file.rel.clone(), file.size))
}

async fn read_chunk(file: Arc<std::fs::File>, offset: u64, len: usize) -> std::io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn chunks(size: u64, part: usize) -> impl Iterator<Item = (u64, usize)> {
    let part = part as u64;
    (0..size.div_ceil(part)).map(move |i| (i * part, part.min(size - i * part) as usize))
}

/// Multipart upload with a journaled upload id; parts go in parallel, the hashes are computed in
/// order as the parts come back.
async fn upload_parts(
    mp: &dyn MultipartStore,
    staged: &Staged,
    key: &Path,
    file: &StagedFile,
    limit: &Semaphore,
    settings: UploadSettings,
) -> Result<Hashes, UploadError> {
    let handle = Arc::new(std::fs::File::open(&file.path).map_err(io_err(&file.path))?);
    let id = within(0, mp.create_multipart(key))
        .await
        .map_err(store_err("starting upload of", key))?;
    let journal = journal_entry(staged, &file.rel);
    let record = serde_json::json!({ "path": key.as_ref(), "id": id }).to_string();
    crate::fsutil::write_atomic(&journal, record.as_bytes(), 0o600).map_err(io_err(&journal))?;
    let result = async {
        let mut hashes = Hashes::new();
        let mut parts = Vec::new();
        let parts_in_order: Vec<_> = chunks(file.size, settings.part_size)
            .enumerate()
            .map(|(index, (offset, len))| {
                let handle = handle.clone();
                let id = &id;
                async move {
                    let bytes = read_chunk(handle, offset, len)
                        .await
                        .map_err(io_err(&file.path))?;
                    let _permit = limit.acquire().await.expect("semaphore is never closed");
                    let payload = PutPayload::from(bytes.clone());
                    let part = within(len, mp.put_part(key, id, index, payload))
                        .await
                        .map_err(store_err("uploading a part of", key))?;
                    Ok::<_, UploadError>((part, bytes))
                }
            })
            .collect();
        let mut results =
            futures::stream::iter(parts_in_order).buffered(settings.concurrency.max(1));
        while let Some((part, bytes)) = results.try_next().await? {
            hashes.update(&bytes);
            parts.push(part);
        }
        // S3 may take a while to assemble a large object: as long as an eighth of it takes.
        within(
            file.size as usize / 8,
            mp.complete_multipart(key, &id, parts),
        )
        .await
        .map_err(store_err("completing upload of", key))?;
        Ok(hashes)
    }
    .await;
    if result.is_err() {
        let _ = mp.abort_multipart(key, &id).await;
    }
    let _ = std::fs::remove_file(&journal);
    result
}

/// Large file on a store without explicit upload ids (`file://`): a streamed multipart write.
async fn upload_streamed(
    remote: &Remote,
    key: &Path,
    file: &StagedFile,
    settings: UploadSettings,
) -> Result<Hashes, UploadError> {
    let handle = Arc::new(std::fs::File::open(&file.path).map_err(io_err(&file.path))?);
    let upload = remote
        .store
        .put_multipart(key)
        .await
        .map_err(store_err("starting upload of", key))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, settings.part_size);
    let mut hashes = Hashes::new();
    for (offset, len) in chunks(file.size, settings.part_size) {
        let bytes = match read_chunk(handle.clone(), offset, len).await {
            Ok(b) => b,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(io_err(&file.path)(e));
            }
        };
        hashes.update(&bytes);
        writer
            .wait_for_capacity(settings.concurrency.max(1))
            .await
            .map_err(store_err("uploading", key))?;
        writer.put(bytes);
    }
    writer
        .finish()
        .await
        .map_err(store_err("completing upload of", key))?;
    Ok(hashes)
}

/// Both hashes of the file at `path`, read in 1 MiB pieces (BLAKE3 hashes a large piece on
/// every SIMD lane at once).
async fn hash_file(path: &std::path::Path) -> Result<Hashes, UploadError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&owned)?;
        let mut hashes = Hashes::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) => break Ok(hashes),
                Ok(n) => hashes.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        }
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(io_err(path))
}

fn journal_entry(staged: &Staged, rel: &str) -> std::path::PathBuf {
    let name = hex::encode(&Sha256::digest(rel.as_bytes())[..8]);
    staged.journal_dir().join(format!("{name}.json"))
}

/// Aborts multipart uploads a crashed attempt left open, then forgets them.
async fn abort_journaled(remote: &Remote, staged: &Staged) {
    let (Some(mp), Ok(entries)) = (&remote.multipart, std::fs::read_dir(staged.journal_dir()))
    else {
        return;
    };
    for entry in entries.flatten() {
        let record: Option<serde_json::Value> = std::fs::read(entry.path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some((path, id)) = record
            .as_ref()
            .and_then(|r| Some((r["path"].as_str()?, r["id"].as_str()?)))
        {
            match mp.abort_multipart(&Path::from(path), &id.to_string()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    log::info!(
                        "aborted the multipart upload of {path} left by an interrupted attempt"
                    )
                }
                // Keep the journal entry: the next attempt tries again.
                Err(e) => {
                    log::warn!("could not abort the multipart upload of {path}: {e}");
                    continue;
                }
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_cover_the_file_exactly() {
        let c: Vec<_> = chunks(20, 8).collect();
        assert_eq!(c, vec![(0, 8), (8, 8), (16, 4)]);
        assert_eq!(chunks(0, 8).count(), 0);
        assert_eq!(chunks(16, 8).count(), 2);
    }
}
