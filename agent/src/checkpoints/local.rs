//! Flink's local checkpoint dir and the agent's staging dir.
//!
//! Flink writes `<checkpoints>/<flink job id>/chk-<N>/` and writes `_metadata` last, after every
//! task acknowledged: its presence means complete. As soon as one is seen, its files are
//! hard-linked into `<staging>/<job>/chk-<N>/files/` (same filesystem, so this is instant and
//! copies nothing); when Flink later deletes the subsumed checkpoint, the staged links keep the
//! data alive until the upload has finished. A staged checkpoint is complete once its
//! `staged.json` exists: it is built in a `.partial` sibling and renamed into place.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

const METADATA: &str = "_metadata";
const STAGED_INFO: &str = "staged.json";
const FILES: &str = "files";
/// Marker: an upload of this checkpoint was started.
const ATTEMPTED: &str = "attempted";
/// Journal of open multipart uploads (one file per upload), aborted after a crash.
pub const MULTIPART_JOURNAL: &str = "multipart";

/// A complete checkpoint in Flink's local dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCheckpoint {
    pub flink_job_id: String,
    pub id: u64,
    pub dir: PathBuf,
}

/// Complete checkpoints under `root` (`<flink job id>/chk-N/_metadata`), in no particular order.
/// A missing root is simply empty: Flink creates it with the first checkpoint.
pub fn scan_complete(root: &Path) -> io::Result<Vec<LocalCheckpoint>> {
    let mut out = Vec::new();
    for job in read_dir_or_empty(root)? {
        let job = job?;
        let flink_job_id = job.file_name().to_string_lossy().into_owned();
        for chk in read_dir_or_empty(&job.path())? {
            let chk = chk?;
            let Some(id) = super::layout::parse_chk(&chk.file_name().to_string_lossy()) else {
                continue;
            };
            if chk.path().join(METADATA).is_file() {
                out.push(LocalCheckpoint {
                    flink_job_id: flink_job_id.clone(),
                    id,
                    dir: chk.path(),
                });
            }
        }
    }
    Ok(out)
}

fn read_dir_or_empty(dir: &Path) -> io::Result<Vec<io::Result<fs::DirEntry>>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Where staging lives: under the agent's state dir when a file of Flink's data dir can be
/// hard-linked there, else `<flink data dir>/.staging`. The state dir is preferred because Flink
/// never touches it.
///
/// The same filesystem is not enough: links cannot cross mount points, and under the packaged
/// unit (`ProtectSystem=strict`) `ReadWritePaths=/var/lib/flink` and `StateDirectory=` are two
/// bind mounts of one filesystem, where `link(2)` fails with EXDEV although both report the same
/// device. So this tries a link.
pub fn staging_root(state_dir: &Path, flink_data_dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(state_dir)?;
    fs::create_dir_all(flink_data_dir)?;
    let same_device = fs::metadata(state_dir)?.dev() == fs::metadata(flink_data_dir)?.dev();
    if same_device && can_link(flink_data_dir, state_dir)? {
        Ok(state_dir.join("staging"))
    } else {
        Ok(flink_data_dir.join(".staging"))
    }
}

/// Whether a file created in `from` can be hard-linked into `to` (false on EXDEV).
fn can_link(from: &Path, to: &Path) -> io::Result<bool> {
    let name = format!(".flink-agent-link-probe-{}", std::process::id());
    let (source, target) = (from.join(&name), to.join(&name));
    let _ = fs::remove_file(&target);
    fs::write(&source, b"")?;
    let linked = fs::hard_link(&source, &target);
    let _ = fs::remove_file(&source);
    let _ = fs::remove_file(&target);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a staged checkpoint is, written once staging is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedInfo {
    pub job: String,
    pub flink_job_id: String,
    pub checkpoint_id: u64,
    /// Unix seconds of `_metadata`'s mtime.
    pub completed_at: u64,
}

/// A checkpoint snapshotted into staging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub info: StagedInfo,
    pub dir: PathBuf,
}

/// One file of a staged checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// `/`-separated path inside `chk-N`.
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
}

/// Why a checkpoint could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("checkpoint {dir} vanished before it could be staged (Flink subsumed it); a newer one will be staged")]
    Vanished { dir: String },
    #[error("cannot stage {dir} into {staging}: {source}; staging must be on the same filesystem as flink.data_dir")]
    Io {
        dir: String,
        staging: String,
        #[source]
        source: io::Error,
    },
}

impl Staged {
    /// Staging dir of checkpoint `id` of `job`.
    pub fn dir_for(staging_root: &Path, job: &str, id: u64) -> PathBuf {
        staging_root.join(job).join(format!("chk-{id}"))
    }

    /// The staged files, sorted by path; `_metadata` is listed last so it is uploaded last.
    pub fn files(&self) -> io::Result<Vec<StagedFile>> {
        let mut files = Vec::new();
        walk(&self.dir.join(FILES), "", &mut files)?;
        files.sort_by(|a, b| (a.rel == METADATA, &a.rel).cmp(&(b.rel == METADATA, &b.rel)));
        Ok(files)
    }

    /// Whether an upload was started before (see [`super::upload::publish`]).
    pub fn attempted(&self) -> bool {
        self.dir.join(ATTEMPTED).exists()
    }

    pub fn mark_attempted(&self) -> io::Result<()> {
        fs::write(self.dir.join(ATTEMPTED), b"")
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.dir.join(MULTIPART_JOURNAL)
    }

    /// Frees the staging (after the manifest is durable, or when the checkpoint no longer
    /// matters).
    pub fn remove(&self) -> io::Result<()> {
        remove_dir_all_if_exists(&self.dir)
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<StagedFile>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else if !name.ends_with(".inprogress") {
            out.push(StagedFile {
                rel,
                path: entry.path(),
                size: meta.len(),
            });
        }
    }
    Ok(())
}

/// Hard-links `local` into staging as checkpoint `job`/`chk-N`. Idempotent: an already staged
/// checkpoint is returned as is.
pub fn stage(
    local: &LocalCheckpoint,
    job: &str,
    staging_root: &Path,
) -> Result<Staged, StageError> {
    let dir = Staged::dir_for(staging_root, job, local.id);
    let io_err = |source| StageError::Io {
        dir: local.dir.display().to_string(),
        staging: staging_root.display().to_string(),
        source,
    };
    if let Some(staged) = read_staged(&dir).map_err(io_err)? {
        return Ok(staged);
    }
    let partial = staging_root
        .join(job)
        .join(format!(".chk-{}.partial", local.id));
    remove_dir_all_if_exists(&partial).map_err(io_err)?;
    let result = (|| {
        let metadata = fs::metadata(local.dir.join(METADATA))?;
        link_tree(&local.dir, &partial.join(FILES))?;
        let info = StagedInfo {
            job: job.to_string(),
            flink_job_id: local.flink_job_id.clone(),
            checkpoint_id: local.id,
            completed_at: metadata
                .modified()?
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let json = serde_json::to_vec_pretty(&info).map_err(io::Error::other)?;
        crate::fsutil::write_atomic(&partial.join(STAGED_INFO), &json, 0o600)?;
        fs::rename(&partial, &dir)?;
        Ok(Staged { info, dir })
    })();
    result.map_err(|e: io::Error| {
        let _ = remove_dir_all_if_exists(&partial);
        if e.kind() == io::ErrorKind::NotFound {
            StageError::Vanished {
                dir: local.dir.display().to_string(),
            }
        } else {
            io_err(e)
        }
    })
}

fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".inprogress") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &to.join(&name))?;
        } else {
            fs::hard_link(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

fn read_staged(dir: &Path) -> io::Result<Option<Staged>> {
    match fs::read(dir.join(STAGED_INFO)) {
        Ok(bytes) => {
            let info = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            Ok(Some(Staged {
                info,
                dir: dir.to_path_buf(),
            }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// How old a `.partial` dir must be before [`list_staged`] takes it for a crash's leftover:
/// staging is hard links and one small file, done in well under a second, while a `.partial`
/// this young may be one being staged right now (the detector and `jobs stop`'s savepoint stage
/// while the uploader lists; removing it under them failed the listing with ENOTEMPTY, seen in
/// the booted-Debian test's journal, and would fail the stage).
const STALE_PARTIAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Every complete staged checkpoint. Half-built `.partial` dirs older than [`STALE_PARTIAL`]
/// (a crash while linking) are removed: the checkpoint is re-staged from Flink's dir if it
/// still matters (staging it again also clears its own leftover first).
pub fn list_staged(staging_root: &Path) -> io::Result<Vec<Staged>> {
    let mut out = Vec::new();
    for job in read_dir_or_empty(staging_root)? {
        let job = job?;
        for chk in read_dir_or_empty(&job.path())? {
            let chk = chk?;
            if chk.file_name().to_string_lossy().ends_with(".partial") {
                let stale = chk
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= STALE_PARTIAL);
                if stale {
                    remove_dir_all_if_exists(&chk.path())?;
                }
            } else if let Some(staged) = read_staged(&chk.path())? {
                out.push(staged);
            }
        }
    }
    Ok(out)
}

fn remove_dir_all_if_exists(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// Writes a fake complete Flink checkpoint `root/<job id>/chk-<id>` with `files`.
    pub fn fake_checkpoint(root: &Path, job_id: &str, id: u64, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = root.join(job_id).join(format!("chk-{id}"));
        for (rel, content) in files {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        fs::write(dir.join(METADATA), format!("meta {id}")).unwrap();
        dir
    }

    #[test]
    fn only_checkpoints_with_metadata_are_complete() {
        let tmp = tempfile::tempdir().unwrap();
        fake_checkpoint(tmp.path(), "j1", 4, &[("a", b"x")]);
        fs::create_dir_all(tmp.path().join("j1/chk-5")).unwrap();
        fs::write(tmp.path().join("j1/chk-5/a"), b"y").unwrap();
        fs::create_dir_all(tmp.path().join("j1/shared")).unwrap();
        let found = scan_complete(tmp.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].flink_job_id.as_str(), found[0].id), ("j1", 4));
        assert!(scan_complete(&tmp.path().join("missing"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn staged_files_survive_flink_deleting_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let flink = tmp.path().join("flink");
        let dir = fake_checkpoint(
            &flink,
            "j1",
            7,
            &[("op/state", b"hello"), ("x.inprogress", b"")],
        );
        let local = &scan_complete(&flink).unwrap()[0];
        let staged = stage(local, "wc", &tmp.path().join("staging")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let files = staged.files().unwrap();
        let rels: Vec<_> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, vec!["op/state", "_metadata"]);
        assert_eq!(fs::read(&files[0].path).unwrap(), b"hello");
        assert_eq!(
            list_staged(&tmp.path().join("staging")).unwrap(),
            vec![staged]
        );
    }

    #[test]
    fn staging_is_in_the_state_dir_when_links_work() {
        let tmp = tempfile::tempdir().unwrap();
        let (state, data) = (tmp.path().join("state"), tmp.path().join("data"));
        assert_eq!(staging_root(&state, &data).unwrap(), state.join("staging"));
        // The probe leaves nothing behind.
        assert_eq!(fs::read_dir(&state).unwrap().count(), 0);
        assert_eq!(fs::read_dir(&data).unwrap().count(), 0);
    }

    /// The packaged unit's layout: the state dir is a bind mount of the data dir's filesystem
    /// (as `StateDirectory=` and `ReadWritePaths=` make them), same device, no links between
    /// them. Needs root for the bind mount, made in a private mount namespace (`unshare -m`)
    /// that this test binary re-enters to run [`staging_across_bind_mounts_inner`].
    #[test]
    fn staging_moves_under_the_data_dir_when_the_state_dir_is_another_mount() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        fs::create_dir_all(&state).unwrap();
        let out = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$1\" \"$1\" && exec \"$2\" --exact --ignored --test-threads 1 --nocapture checkpoints::local::tests::staging_across_bind_mounts_inner")
            .arg("sh")
            .arg(&state)
            .arg(std::env::current_exe().unwrap())
            .env("FLINK_AGENT_TEST_BIND_MOUNT_DIR", tmp.path())
            .output();
        let unavailable = match &out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = unavailable {
            let not_root = nix::unistd::geteuid().as_raw() != 0;
            if not_root && std::env::var_os("CI").is_none() {
                eprintln!("SKIPPED staging across bind mounts: needs root for unshare and mount ({reason})");
                return;
            }
            panic!("staging across bind mounts: {reason}");
        }
        let stdout = String::from_utf8_lossy(&out.unwrap().stdout).to_string();
        assert!(
            stdout.contains("1 passed"),
            "the inner test did not run: {stdout}"
        );
    }

    #[test]
    #[ignore = "run by staging_moves_under_the_data_dir_when_the_state_dir_is_another_mount"]
    fn staging_across_bind_mounts_inner() {
        let tmp = PathBuf::from(std::env::var_os("FLINK_AGENT_TEST_BIND_MOUNT_DIR").unwrap());
        let (state, data) = (tmp.join("state"), tmp.join("data"));
        let root = staging_root(&state, &data).unwrap();
        assert_eq!(root, data.join(".staging"));
        let dir = fake_checkpoint(&data.join("checkpoints"), "j1", 1, &[("a", b"x")]);
        let local = &scan_complete(&data.join("checkpoints")).unwrap()[0];
        let staged = stage(local, "wc", &root).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(fs::read(&staged.files().unwrap()[0].path).unwrap(), b"x");
    }

    #[test]
    fn vanished_checkpoint_is_reported_and_leaves_no_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let local = LocalCheckpoint {
            flink_job_id: "j".into(),
            id: 3,
            dir: tmp.path().join("gone/chk-3"),
        };
        let staging = tmp.path().join("staging");
        let err = stage(&local, "wc", &staging).unwrap_err();
        assert!(matches!(err, StageError::Vanished { .. }), "{err}");
        // One being staged right now is left alone; a crash's leftover (old) goes.
        let (young, old) = (
            staging.join("wc/.chk-9.partial"),
            staging.join("wc/.chk-8.partial"),
        );
        fs::create_dir_all(&young).unwrap();
        fs::create_dir_all(&old).unwrap();
        fs::File::open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - STALE_PARTIAL)
            .unwrap();
        assert!(list_staged(&staging).unwrap().is_empty());
        assert!(young.exists() && !old.exists());
    }
}
