//! Where things live in object storage, and reading a listing back into checkpoints (pure).
//!
//! ```text
//! <url prefix>/<cluster id>/jobs/<job>/job.json                 the job's declaration
//! <url prefix>/<cluster id>/jobs/<job>/stopped.json             while stopped on purpose
//! <url prefix>/<cluster id>/jobs/<job>/chk-<N>/data/<file>      checkpoint files, uploaded first
//! <url prefix>/<cluster id>/jobs/<job>/chk-<N>/manifest.json    published last
//! ```
//! Data files sit under `data/` so no Flink file name can ever collide with `manifest.json`.

use object_store::path::Path;
use object_store::ObjectMeta;
use std::collections::BTreeMap;

pub const MANIFEST: &str = "manifest.json";
pub const JOB_RECORD: &str = "job.json";
pub const STOPPED: &str = "stopped.json";

/// Key prefix of one job.
pub fn job_prefix(root: &Path, job: &str) -> Path {
    root.child("jobs").child(job)
}

/// Key of a job's declaration.
pub fn job_record(root: &Path, job: &str) -> Path {
    job_prefix(root, job).child(JOB_RECORD)
}

/// Key of the marker `jobs stop` leaves: a replacement node must not start the job either.
pub fn job_stopped(root: &Path, job: &str) -> Path {
    job_prefix(root, job).child(STOPPED)
}

/// Key prefix of one checkpoint.
pub fn checkpoint_prefix(root: &Path, job: &str, id: u64) -> Path {
    job_prefix(root, job).child(format!("chk-{id}"))
}

pub fn manifest_path(root: &Path, job: &str, id: u64) -> Path {
    checkpoint_prefix(root, job, id).child(MANIFEST)
}

/// Key of a checkpoint file; `rel` is its `/`-separated path inside Flink's `chk-N` dir.
pub fn data_path(root: &Path, job: &str, id: u64, rel: &str) -> Path {
    rel.split('/')
        .fold(checkpoint_prefix(root, job, id).child("data"), |p, part| {
            p.child(part)
        })
}

/// Parses `chk-<N>`.
pub fn parse_chk(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// One checkpoint as seen in a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteCheckpoint {
    /// Whether `manifest.json` exists: only then does the checkpoint exist remotely.
    pub has_manifest: bool,
    /// Every object under the checkpoint's prefix (data files and the manifest).
    pub objects: Vec<Path>,
    /// Newest modification time of any of its objects, in Unix seconds.
    pub newest_modified: i64,
    /// Total bytes of its data files.
    pub data_bytes: u64,
}

/// Groups a listing of `jobs/<job>/` by checkpoint id; other keys (the job record) are ignored.
pub fn group_checkpoints(
    job_prefix: &Path,
    listing: &[ObjectMeta],
) -> BTreeMap<u64, RemoteCheckpoint> {
    let mut out: BTreeMap<u64, RemoteCheckpoint> = BTreeMap::new();
    for meta in listing {
        let Some(mut parts) = meta.location.prefix_match(job_prefix) else {
            continue;
        };
        let Some(id) = parts.next().and_then(|p| parse_chk(p.as_ref())) else {
            continue;
        };
        let rest: Vec<_> = parts.collect();
        let chk = out.entry(id).or_default();
        match rest.first().map(|p| p.as_ref()) {
            Some(MANIFEST) if rest.len() == 1 => chk.has_manifest = true,
            Some("data") => chk.data_bytes += meta.size,
            _ => {}
        }
        chk.objects.push(meta.location.clone());
        chk.newest_modified = chk.newest_modified.max(meta.last_modified.timestamp());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub fn meta(path: &str, size: u64, secs: i64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(path),
            // The field's chrono type converts from SystemTime, so no chrono dependency is needed.
            last_modified: (std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
                .into(),
            size,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn layout_keys() {
        let root = Path::from("pre/c1");
        assert_eq!(
            data_path(&root, "wc", 7, "a/_metadata").as_ref(),
            "pre/c1/jobs/wc/chk-7/data/a/_metadata"
        );
        assert_eq!(
            manifest_path(&root, "wc", 7).as_ref(),
            "pre/c1/jobs/wc/chk-7/manifest.json"
        );
        assert_eq!(job_record(&root, "wc").as_ref(), "pre/c1/jobs/wc/job.json");
    }

    #[test]
    fn groups_by_checkpoint_and_sees_manifests() {
        let listing = vec![
            meta("r/jobs/wc/job.json", 10, 1),
            meta("r/jobs/wc/chk-3/data/_metadata", 100, 5),
            meta("r/jobs/wc/chk-3/manifest.json", 50, 6),
            meta("r/jobs/wc/chk-4/data/x", 7, 9),
            meta("r/jobs/wc/chk-4/data/_metadata", 3, 8),
            meta("r/jobs/wc/chk-x/data/_metadata", 3, 8),
        ];
        let g = group_checkpoints(&Path::from("r/jobs/wc"), &listing);
        assert_eq!(g.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        assert!(g[&3].has_manifest && !g[&4].has_manifest);
        assert_eq!((g[&4].data_bytes, g[&4].newest_modified), (10, 9));
        assert_eq!(g[&3].objects.len(), 2);
    }
}
