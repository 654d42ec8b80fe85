//! Restoring a job's newest durable checkpoint: candidates are the complete remote checkpoints,
//! newest first; each is downloaded into `<restore root>/<job>/chk-N/` and every file is checked
//! against the manifest (size and SHA-256). A corrupt or incomplete one is skipped with its
//! reason and the next older one is tried. The directory is built as `.chk-N.partial` and
//! renamed only when every file verified, so Flink is never pointed at a half-written restore.
//! A re-submission that also has a local checkpoint tries only the remote ones newer than it
//! ([`restore_first`]): once those fail, the local one is the next newest.

use super::layout::{data_path, group_checkpoints, job_prefix, manifest_path};
use super::manifest::{Manifest, ManifestFile};
use super::plan::restore_order;
use super::remote::Remote;
use super::upload::read_manifest;
use crate::events::{CheckpointDownloaded, Event};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Files downloaded at once by a restore.
pub const CONCURRENCY: usize = 8;

/// Why a restore could not even look for candidates.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot list the checkpoints of job `{job}` in {url}: {source}")]
    List {
        job: String,
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot prepare the restore dir {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A verified local copy of a remote checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub checkpoint_id: u64,
    /// The `chk-N` dir to pass to Flink as `savepointPath`.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Newer checkpoints that were skipped, with the reason.
    pub skipped: Vec<(u64, String)>,
}

/// What a restore would use, without downloading (for `restore --dry-run`).
pub async fn candidates(remote: &Remote, job: &str) -> Result<Vec<u64>, RestoreError> {
    let prefix = job_prefix(&remote.root, job);
    let listing: Vec<_> = remote
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| RestoreError::List {
            job: job.to_string(),
            url: remote.url.clone(),
            source,
        })?;
    Ok(restore_order(&group_checkpoints(&prefix, &listing)))
}

/// Downloads and verifies the newest usable checkpoint of `job`; `None` if there is none.
pub async fn restore_newest(
    remote: &Remote,
    job: &str,
    restore_root: &Path,
    concurrency: usize,
) -> Result<Option<Restored>, RestoreError> {
    let ids = candidates(remote, job).await?;
    restore_first(remote, job, &ids, restore_root, concurrency).await
}

/// Downloads and verifies the first usable of the remote checkpoints `ids`, tried in the given
/// order (newest first); `None` if every one is corrupt or incomplete. The caller decides which
/// ids are worth a download: a re-submission passes only those newer than its local checkpoint.
pub async fn restore_first(
    remote: &Remote,
    job: &str,
    ids: &[u64],
    restore_root: &Path,
    concurrency: usize,
) -> Result<Option<Restored>, RestoreError> {
    let mut skipped = Vec::new();
    for &id in ids {
        let dir = restore_root.join(job).join(format!("chk-{id}"));
        let partial = restore_root.join(job).join(format!(".chk-{id}.partial"));
        for d in [&dir, &partial] {
            remove_dir_if_exists(d).map_err(|source| RestoreError::Io {
                path: d.display().to_string(),
                source,
            })?;
        }
        let started = std::time::Instant::now();
        match fetch_verified(remote, job, id, &partial, concurrency).await {
            Ok(manifest) => {
                std::fs::rename(&partial, &dir).map_err(|source| RestoreError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                CheckpointDownloaded {
                    job,
                    checkpoint_id: id,
                    url: &remote.url,
                    dir: &dir,
                    bytes: manifest.total_bytes(),
                    took: started.elapsed(),
                }
                .emit();
                return Ok(Some(Restored {
                    checkpoint_id: id,
                    dir,
                    manifest,
                    skipped,
                }));
            }
            Err(reason) => {
                log::warn!("job {job}: skipping remote checkpoint {id}: {reason}");
                let _ = remove_dir_if_exists(&partial);
                skipped.push((id, reason));
            }
        }
    }
    Ok(None)
}

/// Frees what earlier restores of `job` downloaded, except `keep` (the checkpoint a job is
/// starting from); `None` frees all of it. Safe because HashMap-backend checkpoints are
/// self-contained: neither a running job nor its later checkpoints refer into another one.
pub fn prune_restored(restore_root: &Path, job: &str, keep: Option<&Path>) -> std::io::Result<()> {
    let dir = restore_root.join(job);
    let Some(keep) = keep else {
        return remove_dir_if_exists(&dir);
    };
    let entries = match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let path = entry?.path();
        if path != keep {
            remove_dir_if_exists(&path)?;
        }
    }
    Ok(())
}

fn remove_dir_if_exists(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Downloads checkpoint `id` into `into`; the reason it is unusable otherwise.
async fn fetch_verified(
    remote: &Remote,
    job: &str,
    id: u64,
    into: &Path,
    concurrency: usize,
) -> Result<Manifest, String> {
    let key = manifest_path(&remote.root, job, id);
    let manifest = match read_manifest(remote, &key).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err("its manifest disappeared".into()),
        Err(e) => return Err(format!("its manifest is unreadable: {e}")),
    };
    if manifest.checkpoint_id != id || manifest.job != job {
        return Err(format!(
            "its manifest describes job {} checkpoint {}",
            manifest.job, manifest.checkpoint_id
        ));
    }
    if !manifest.files.iter().any(|f| f.path == "_metadata") {
        return Err("its manifest lists no _metadata".into());
    }
    let downloads: Vec<_> = manifest
        .files
        .iter()
        .map(|f| fetch_file(remote, job, id, f, into))
        .collect();
    futures::stream::iter(downloads)
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(manifest)
}

async fn fetch_file(
    remote: &Remote,
    job: &str,
    id: u64,
    file: &ManifestFile,
    into: &Path,
) -> Result<(), String> {
    if file
        .path
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(format!("the manifest names an unsafe path `{}`", file.path));
    }
    let key = data_path(&remote.root, job, id, &file.path);
    let target = into.join(&file.path);
    let got = remote
        .store
        .get(&key)
        .await
        .map_err(|e| format!("{} cannot be read: {e}", file.path))?;
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut out = tokio::fs::File::create(&target)
        .await
        .map_err(|e| format!("{}: {e}", target.display()))?;
    let mut stream = got.into_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| format!("{} download failed: {e}", file.path))?
    {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk)
            .await
            .map_err(|e| format!("{}: {e}", target.display()))?;
    }
    out.sync_all()
        .await
        .map_err(|e| format!("{}: {e}", target.display()))?;
    if size != file.size {
        return Err(format!(
            "{} is {size} bytes, the manifest says {}",
            file.path, file.size
        ));
    }
    let sha = hex::encode(hasher.finalize());
    if sha != file.sha256 {
        return Err(format!(
            "{} has SHA-256 {sha}, the manifest says {}",
            file.path, file.sha256
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_only_the_checkpoint_in_use() {
        let root = tempfile::tempdir().unwrap();
        let job = root.path().join("counter");
        for d in ["chk-3", "chk-5", ".chk-6.partial"] {
            std::fs::create_dir_all(job.join(d)).unwrap();
            std::fs::write(job.join(d).join("_metadata"), b"m").unwrap();
        }
        prune_restored(root.path(), "counter", Some(&job.join("chk-5"))).unwrap();
        let left: Vec<_> = std::fs::read_dir(&job)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["chk-5"]);
        prune_restored(root.path(), "counter", None).unwrap();
        assert!(!job.exists());
        // Nothing restored yet (or already pruned) is not an error.
        prune_restored(root.path(), "counter", Some(&job.join("chk-5"))).unwrap();
        prune_restored(root.path(), "other", None).unwrap();
    }
}
