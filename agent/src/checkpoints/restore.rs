//! Restoring a job's newest durable checkpoint: candidates are the complete remote checkpoints,
//! newest first; each is downloaded into `<restore root>/<job>/chk-N/` and every file is checked
//! against the manifest (size and content hash, [`super::digest`]). A corrupt or incomplete one
//! is skipped with its reason and the next older one is tried. One the store holds damaged (a
//! file missing, of another size or content) is also withdrawn: deleted, so the store stops
//! claiming it and the restored job's own checkpoint of that id is uploaded in its place (see
//! [`Withdrawn`]); one that merely cannot be read now stays, and so does one whose manifest is of
//! a newer format than this agent knows. The directory is built as `.chk-N.partial` and
//! renamed only when every file verified, so Flink is never pointed at a half-written restore.
//! A re-submission that also has a local checkpoint tries only the remote ones newer than it
//! ([`restore_first`]): once those fail, the local one is the next newest.

use super::digest::Check;
use super::layout::{checkpoint_prefix, data_path, group_checkpoints, job_prefix, manifest_path};
use super::manifest::{Manifest, ManifestFile};
use super::plan::restore_order;
use super::remote::Remote;
use super::upload::{delete_all, list_all, read_manifest, UploadError};
use super::withdrawn::Withdrawn;
use crate::events::{CheckpointDownloaded, CheckpointWithdrawn, Event};
use futures::{StreamExt, TryStreamExt};
use std::io::Write;
use std::path::{Path, PathBuf};

mod ranged;

/// Files a restore downloads at once, and ranges of one large file it fetches at once. 8 rather
/// than s5cmd's 5 parts: on the 1 GiB download with 64 MiB ranges, 5 made 0.81–0.87× s5cmd where
/// 8 made 1.01–1.08× (alternating, 3 rounds); 16 no better, 32 worse (16 MiB ranges).
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
    withdrawn: &Withdrawn,
) -> Result<Option<Restored>, RestoreError> {
    let ids = candidates(remote, job).await?;
    restore_first(remote, job, &ids, restore_root, concurrency, withdrawn).await
}

/// Downloads and verifies the first usable of the remote checkpoints `ids`, tried in the given
/// order (newest first); `None` if every one is corrupt or incomplete. The caller decides which
/// ids are worth a download: a re-submission passes only those newer than its local checkpoint.
/// The damaged ones are withdrawn from the store and recorded in `withdrawn`.
pub async fn restore_first(
    remote: &Remote,
    job: &str,
    ids: &[u64],
    restore_root: &Path,
    concurrency: usize,
    withdrawn: &Withdrawn,
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
            Err(Unusable::Unreadable(reason)) => {
                log::warn!("job {job}: skipping remote checkpoint {id} for now: {reason}");
                let _ = remove_dir_if_exists(&partial);
                skipped.push((id, reason));
            }
            Err(Unusable::Damaged(reason)) => {
                let _ = remove_dir_if_exists(&partial);
                let failed = withdraw(remote, job, id).await.err().map(|e| e.to_string());
                if failed.is_none() {
                    withdrawn.record(job, id);
                }
                CheckpointWithdrawn {
                    job,
                    checkpoint_id: id,
                    url: &remote.url,
                    reason: &reason,
                    failed: failed.as_deref(),
                }
                .emit();
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

/// Why a remote checkpoint cannot be restored.
#[derive(Debug)]
enum Unusable {
    /// The store holds it damaged: a file missing or of other size or content than the
    /// manifest says, or a manifest that is not one. No later attempt can restore it.
    Damaged(String),
    /// It could not be read or written now (the store, the link, the local disk, or it was
    /// deleted meanwhile): it may well be intact, so it stays in the store.
    Unreadable(String),
}

/// Deletes a damaged checkpoint from the store: the manifest first (from then on the store no
/// longer claims it, and an interrupted withdrawal leaves only data that retention deletes
/// after its grace), then the data, so the restored job's own checkpoint of the same id is
/// uploaded into a clean prefix: a retried upload skips files already present at their size,
/// and a damaged file may have that size.
async fn withdraw(remote: &Remote, job: &str, id: u64) -> Result<(), UploadError> {
    delete_all(remote, vec![manifest_path(&remote.root, job, id)]).await?;
    let prefix = checkpoint_prefix(&remote.root, job, id);
    let objects = list_all(remote, &prefix).await?;
    delete_all(remote, objects.into_iter().map(|o| o.location).collect()).await
}

/// Downloads checkpoint `id` into `into`; why it is unusable otherwise.
async fn fetch_verified(
    remote: &Remote,
    job: &str,
    id: u64,
    into: &Path,
    concurrency: usize,
) -> Result<Manifest, Unusable> {
    use Unusable::{Damaged, Unreadable};
    let key = manifest_path(&remote.root, job, id);
    let manifest = match read_manifest(remote, &key).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(Unreadable("its manifest disappeared".into())),
        Err(e @ UploadError::Conflict { .. }) => {
            return Err(Damaged(format!("its manifest is not one: {e}")))
        }
        Err(e @ UploadError::NewerFormat { .. }) => return Err(Unreadable(e.to_string())),
        Err(e) => return Err(Unreadable(format!("its manifest is unreadable: {e}"))),
    };
    if manifest.checkpoint_id != id || manifest.job != job {
        return Err(Damaged(format!(
            "its manifest describes job {} checkpoint {}",
            manifest.job, manifest.checkpoint_id
        )));
    }
    if !manifest.files.iter().any(|f| f.path == "_metadata") {
        return Err(Damaged("its manifest lists no _metadata".into()));
    }
    // Large files go one at a time, each as `concurrency` ranges in flight, beside the small
    // ones, `SMALL_FILES_PER_RANGE` times as many: at most five times `concurrency` requests.
    let (large, small): (Vec<_>, Vec<_>) = manifest.files.iter().partition(|f| f.size > RANGE_SIZE);
    let small: Vec<_> = small
        .into_iter()
        .map(|f| fetch_file(remote, job, id, f, into, 1))
        .collect();
    let small = futures::stream::iter(small)
        .buffer_unordered(concurrency.max(1) * SMALL_FILES_PER_RANGE)
        .try_collect::<Vec<()>>();
    let large = async {
        for f in large {
            fetch_file(remote, job, id, f, into, concurrency).await?;
        }
        Ok(())
    };
    futures::try_join!(small, large)?;
    Ok(manifest)
}

/// Files larger than this are fetched as ranges of at least this size, several at once
/// ([`ranged`]): one GET stream is bound by one connection (0.30× the best peer tool on a 1 GiB
/// file, the throughput bench), where s5cmd and rclone fetch ranges in parallel. 16 MiB rather
/// than 8: once the restore hashed with BLAKE3, 8 MiB ranges made 296–321 MiB/s, 16 MiB ones
/// 318–361 (how many in flight: [`CONCURRENCY`]).
const RANGE_SIZE: u64 = 16 << 20;

/// The longest range a large file is fetched in, when it is large enough to give every range in
/// flight one this long: the server spends less per byte on fewer requests. On the 1 GiB
/// download, alternating builds (5 rounds of 3 runs, s5cmd side by side): 64 MiB ranges
/// 0.86–1.00× s5cmd (median 0.98), the server 3.25 CPU s/GiB, against 0.84–1.00× (median 0.88)
/// and 3.56 with 16 MiB ones; 32 MiB 0.87–0.89× in 2. rclone takes 64 MiB too, s5cmd 50.
const LARGEST_RANGE: u64 = 64 << 20;

/// Small files at once per range of a large file: a small file's GET is latency-bound, not
/// bandwidth-bound, and the peers fetch 32 (rclone) to 256 (s5cmd) at once.
const SMALL_FILES_PER_RANGE: usize = 4;

/// Chunks of a small file fetched ahead of its writer.
const WRITE_AHEAD: usize = 2;

/// A store error reading `path`: a missing object damages the checkpoint, anything else may
/// pass.
fn read_error(path: &str, e: object_store::Error) -> Unusable {
    match e {
        object_store::Error::NotFound { .. } => {
            Unusable::Damaged(format!("{path} is missing: {e}"))
        }
        e => Unusable::Unreadable(format!("{path} cannot be read: {e}")),
    }
}

/// Downloads one file of checkpoint `id` into `into`, `ranges` ranges at once when it is larger
/// than [`RANGE_SIZE`], and checks its size and content hash against the manifest.
async fn fetch_file(
    remote: &Remote,
    job: &str,
    id: u64,
    file: &ManifestFile,
    into: &Path,
    ranges: usize,
) -> Result<(), Unusable> {
    use Unusable::{Damaged, Unreadable};
    if file
        .path
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(Damaged(format!(
            "the manifest names an unsafe path `{}`",
            file.path
        )));
    }
    let key = data_path(&remote.root, job, id, &file.path);
    let target = into.join(&file.path);
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Unreadable(format!("{}: {e}", parent.display())))?;
    }
    let check = Check::for_file(file);
    let (size, mismatch) = if file.size > RANGE_SIZE {
        // The size first: a shorter object would otherwise fail its last range as unreadable.
        let meta = remote
            .store
            .head(&key)
            .await
            .map_err(|e| read_error(&file.path, e))?;
        if meta.size != file.size {
            return Err(Damaged(format!(
                "{} is {} bytes, the manifest says {}",
                file.path, meta.size, file.size
            )));
        }
        let store = &*remote.store;
        ranged::fetch(store, &key, &file.path, file.size, ranges, &target, check).await?
    } else {
        fetch_whole(remote, &key, &file.path, &target, check).await?
    };
    if size != file.size {
        return Err(Damaged(format!(
            "{} is {size} bytes, the manifest says {}",
            file.path, file.size
        )));
    }
    match mismatch {
        Some(m) => Err(Damaged(format!("{} {m}", file.path))),
        None => Ok(()),
    }
}

/// Fetches the object `key` as one stream into a new file `target`, written and hashed on a
/// blocking thread while the next chunks arrive (in this task, every write and hash left the
/// body unread); its size as written and how its content differs from `check`'s.
async fn fetch_whole(
    remote: &Remote,
    key: &object_store::path::Path,
    name: &str,
    target: &Path,
    mut check: Check,
) -> Result<(u64, Option<String>), Unusable> {
    let local = |e: std::io::Error| Unusable::Unreadable(format!("{}: {e}", target.display()));
    let got = remote
        .store
        .get(key)
        .await
        .map_err(|e| read_error(name, e))?;
    let mut chunks = got.into_stream();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_AHEAD);
    let path = target.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, Option<String>)> {
        let mut out = std::fs::File::create(&path)?;
        let mut size = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            check.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk)?;
        }
        out.sync_all()?;
        Ok((size, check.mismatch()))
    });
    let fetched = async {
        while let Some(chunk) = chunks.try_next().await? {
            if tx.send(chunk).await.is_err() {
                // The writer failed; its error says why.
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| local(std::io::Error::other(e)))?
        .map_err(local);
    fetched.map_err(|e: object_store::Error| {
        Unusable::Unreadable(format!("{name} download failed: {e}"))
    })?;
    written
}

/// What tests of restores build remote checkpoints with.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use super::super::digest::Hashes;
    use super::*;

    /// Publishes checkpoint `id` of `job` with a `_metadata` holding `content`; the manifest
    /// describes `described` (a different value makes the checkpoint corrupt).
    pub(crate) async fn put_remote_checkpoint(
        remote: &Remote,
        job: &str,
        id: u64,
        content: &[u8],
        described: &[u8],
    ) {
        put_remote_files(remote, job, id, &[("_metadata", content, described)]).await;
    }

    /// Publishes checkpoint `id` of `job` with `files` as `(path, content, what the manifest
    /// describes)`.
    pub(crate) async fn put_remote_files(
        remote: &Remote,
        job: &str,
        id: u64,
        files: &[(&str, &[u8], &[u8])],
    ) {
        let manifest = Manifest {
            format: super::super::manifest::FORMAT,
            cluster_id: "c1".into(),
            job: job.into(),
            flink_job_id: "f0".into(),
            checkpoint_id: id,
            flink_version: "2.3.0".into(),
            completed_at: 0,
            files: files
                .iter()
                .map(|(path, _, described)| {
                    let mut hashes = Hashes::new();
                    hashes.update(described);
                    hashes.into_file(path.to_string(), described.len() as u64)
                })
                .collect(),
        };
        let store = &remote.store;
        for (path, content, _) in files {
            store
                .put(
                    &data_path(&remote.root, job, id, path),
                    content.to_vec().into(),
                )
                .await
                .unwrap();
        }
        store
            .put(
                &manifest_path(&remote.root, job, id),
                serde_json::to_vec(&manifest).unwrap().into(),
            )
            .await
            .unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use super::testing::{put_remote_checkpoint, put_remote_files};
    use crate::checkpoints::testing::FaultyStore;
    use std::sync::Arc;

    /// A store in a temp dir, faults on request, with intact checkpoints 1 and 2 of `j`.
    async fn store_with_two(dir: &Path) -> (Arc<FaultyStore>, Remote) {
        let store = FaultyStore::local(dir);
        let remote = store.remote();
        for id in [1, 2] {
            let meta = format!("meta {id}");
            put_remote_checkpoint(&remote, "j", id, meta.as_bytes(), meta.as_bytes()).await;
        }
        (store, remote)
    }

    /// A checkpoint the store does not give now may be intact: it is skipped, never deleted.
    #[tokio::test]
    async fn a_checkpoint_that_cannot_be_read_now_stays_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, remote) = store_with_two(&dir.path().join("store")).await;
        let restore_root = dir.path().join("restore");
        let withdrawn = Withdrawn::default();
        store.fail_gets("chk-2/data", 1);
        let restored = restore_newest(&remote, "j", &restore_root, 4, &withdrawn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(restored.checkpoint_id, 1);
        assert!(
            restored.skipped[0].1.contains("cannot be read"),
            "{:?}",
            restored.skipped
        );
        assert!(withdrawn.take().is_empty());
        assert_eq!(candidates(&remote, "j").await.unwrap(), [2, 1]);
        let again = restore_newest(&remote, "j", &restore_root, 4, &withdrawn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.checkpoint_id, 2);
    }

    /// A damaged checkpoint whose withdrawal fails stays claimed by the store, so the engine
    /// is not told; the next restore that meets it withdraws it.
    #[tokio::test]
    async fn a_failed_withdrawal_is_not_reported_and_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, remote) = store_with_two(&dir.path().join("store")).await;
        put_remote_checkpoint(&remote, "j", 3, b"meta 3", b"other").await;
        let restore_root = dir.path().join("restore");
        let withdrawn = Withdrawn::default();
        store.fail_deletes("chk-3", 1);
        let restored = restore_newest(&remote, "j", &restore_root, 4, &withdrawn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(restored.checkpoint_id, 2);
        assert!(withdrawn.take().is_empty());
        assert_eq!(candidates(&remote, "j").await.unwrap(), [3, 2, 1]);

        let again = restore_newest(&remote, "j", &restore_root, 4, &withdrawn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.checkpoint_id, 2);
        assert_eq!(withdrawn.take(), [("j".to_string(), 3)].into());
        assert_eq!(candidates(&remote, "j").await.unwrap(), [2, 1]);
    }

    /// Bytes that differ at every offset a range could start at (a range fetched twice or
    /// out of place changes the hash).
    fn large(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
            .collect()
    }

    /// [`store_with_two`] in `dir` plus checkpoint 3 with a large file `stored`, which its
    /// manifest describes as `described`.
    async fn with_large_third(
        dir: &Path,
        stored: &[u8],
        described: &[u8],
    ) -> (Arc<FaultyStore>, Remote) {
        let (store, remote) = store_with_two(&dir.join("store")).await;
        let files: [(&str, &[u8], &[u8]); 2] =
            [("_metadata", b"m", b"m"), ("op/big", stored, described)];
        put_remote_files(&remote, "j", 3, &files).await;
        (store, remote)
    }

    /// The newest usable checkpoint of `j`, restored under `dir` (two ranges at once).
    async fn restore_in(remote: &Remote, dir: &Path, withdrawn: &Withdrawn) -> Restored {
        restore_newest(remote, "j", &dir.join("restore"), 2, withdrawn)
            .await
            .unwrap()
            .unwrap()
    }

    /// A file larger than a range comes back whole and in order, beside small files: in
    /// ranges of 16 MiB (3 at once), or of 32 MiB and a short last one (1 at once).
    #[tokio::test]
    async fn a_large_file_is_fetched_in_ranges_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = FaultyStore::local(&dir.path().join("store"));
        let remote = store.remote();
        let big = large(4 * RANGE_SIZE as usize + 12345);
        put_remote_files(
            &remote,
            "j",
            1,
            &[("_metadata", b"m", b"m"), ("op/big", &big, &big)],
        )
        .await;
        for ranges in [3, 1] {
            let into = dir.path().join(format!("restore-{ranges}"));
            let restored = restore_newest(&remote, "j", &into, ranges, &Withdrawn::default())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(restored.checkpoint_id, 1, "{:?}", restored.skipped);
            assert!(std::fs::read(restored.dir.join("op/big")).unwrap() == big);
        }
    }

    /// Ranges that finish out of order land at their offsets, and their hashes make the file's.
    #[tokio::test]
    async fn ranges_finishing_out_of_order_are_placed_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let big = large(3 * RANGE_SIZE as usize + 7);
        let (store, remote) = with_large_third(dir.path(), &big, &big).await;
        store.delay_first_ranges(std::time::Duration::from_millis(300));
        let withdrawn = Withdrawn::default();
        let restored = restore_newest(&remote, "j", &dir.path().join("restore"), 4, &withdrawn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(restored.checkpoint_id, 3, "{:?}", restored.skipped);
        assert!(std::fs::read(restored.dir.join("op/big")).unwrap() == big);
    }

    /// A large file of another size or content than its manifest says damages its checkpoint
    /// (found by the size before any range, or by the hash after the last): skipped and
    /// withdrawn, the older one restored.
    #[tokio::test]
    async fn a_damaged_large_file_is_found_before_and_after_its_ranges() {
        for (stored, why) in [
            (large(RANGE_SIZE as usize + 1), "bytes, the manifest says"),
            (large(RANGE_SIZE as usize + 2), "has BLAKE3"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let described = large(RANGE_SIZE as usize + 2);
            let mut stored = stored;
            if stored.len() == described.len() {
                *stored.last_mut().unwrap() ^= 1;
            }
            let (_store, remote) = with_large_third(dir.path(), &stored, &described).await;
            let withdrawn = Withdrawn::default();
            let restored = restore_in(&remote, dir.path(), &withdrawn).await;
            assert_eq!(restored.checkpoint_id, 2);
            assert!(
                restored.skipped[0].1.contains(why),
                "{:?}",
                restored.skipped
            );
            assert_eq!(withdrawn.take(), [("j".to_string(), 3)].into());
        }
    }

    /// Rewrites the manifest of checkpoint `id` of `j` as an agent before BLAKE3 wrote it.
    async fn without_blake3(remote: &Remote, id: u64) {
        let key = manifest_path(&remote.root, "j", id);
        let mut manifest = read_manifest(remote, &key).await.unwrap().unwrap();
        for f in &mut manifest.files {
            f.blake3 = None;
        }
        let json = serde_json::to_vec(&manifest).unwrap();
        assert!(!String::from_utf8_lossy(&json).contains("blake3"));
        remote.store.put(&key, json.into()).await.unwrap();
    }

    /// A checkpoint an agent before BLAKE3 uploaded is checked by its SHA-256: restored when it
    /// matches, withdrawn when it does not.
    #[tokio::test]
    async fn a_checkpoint_of_an_agent_before_blake3_is_checked_by_its_sha256() {
        let big = large(RANGE_SIZE as usize + 2);
        let mut damaged = big.clone();
        *damaged.last_mut().unwrap() ^= 1;
        for (stored, restored_id) in [(&big, 3), (&damaged, 2)] {
            let dir = tempfile::tempdir().unwrap();
            let (_store, remote) = with_large_third(dir.path(), stored, &big).await;
            without_blake3(&remote, 3).await;
            let withdrawn = Withdrawn::default();
            let restored = restore_in(&remote, dir.path(), &withdrawn).await;
            assert_eq!(
                restored.checkpoint_id, restored_id,
                "{:?}",
                restored.skipped
            );
            if restored_id == 2 {
                assert!(restored.skipped[0].1.contains("op/big has SHA-256"));
                assert_eq!(withdrawn.take(), [("j".to_string(), 3)].into());
            }
        }
    }

    /// A manifest of a format this agent does not know is a newer agent's checkpoint, not a
    /// damaged one: skipped and left in the store (a rolled-back agent must not delete it).
    #[tokio::test]
    async fn a_manifest_of_a_newer_format_stays_in_the_store() {
        let newer = super::super::manifest::FORMAT + 1;
        // One this agent cannot parse, and one it could but must not trust.
        for unparsable in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (_store, remote) = store_with_two(&dir.path().join("store")).await;
            put_remote_checkpoint(&remote, "j", 3, b"meta 3", b"meta 3").await;
            let key = manifest_path(&remote.root, "j", 3);
            let mut manifest = read_manifest(&remote, &key).await.unwrap().unwrap();
            manifest.format = newer;
            let mut json = serde_json::to_value(&manifest).unwrap();
            if unparsable {
                json["files"] = "in a layout this agent cannot parse".into();
            }
            let bytes = serde_json::to_vec(&json).unwrap();
            remote.store.put(&key, bytes.into()).await.unwrap();
            let withdrawn = Withdrawn::default();
            let restored = restore_in(&remote, dir.path(), &withdrawn).await;
            assert_eq!(restored.checkpoint_id, 2);
            assert!(
                restored.skipped[0]
                    .1
                    .contains(&format!("format {newer}, written by a newer agent")),
                "{:?}",
                restored.skipped
            );
            assert!(withdrawn.take().is_empty());
            assert_eq!(candidates(&remote, "j").await.unwrap(), [3, 2, 1]);
        }
    }

    /// A large file the store does not give now leaves its checkpoint in the store.
    #[tokio::test]
    async fn a_large_file_that_cannot_be_read_now_stays_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let big = large(RANGE_SIZE as usize + 1);
        let (store, remote) = with_large_third(dir.path(), &big, &big).await;
        store.fail_gets("chk-3/data/op/big", 1);
        let withdrawn = Withdrawn::default();
        let restored = restore_in(&remote, dir.path(), &withdrawn).await;
        assert_eq!(restored.checkpoint_id, 2);
        assert!(withdrawn.take().is_empty());
        assert_eq!(candidates(&remote, "j").await.unwrap(), [3, 2, 1]);
    }

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
