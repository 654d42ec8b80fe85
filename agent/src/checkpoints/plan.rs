//! Pure decisions over listings: what to upload, what to drop, what to delete, what to restore.

use super::layout::{RemoteCheckpoint, MANIFEST};
use object_store::path::Path;
use std::collections::{BTreeMap, BTreeSet};

/// A checkpoint of a job, as (job, checkpoint id).
pub type Key = (String, u64);

/// What the uploader does with the staged checkpoints.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UploadPlan {
    /// In upload order: per job oldest first, so retention never sees a gap.
    pub upload: Vec<Key>,
    /// Staged checkpoints that no longer matter: already durable, or older than the newest
    /// `retain` of their job (retention would delete them right after upload).
    pub discard: Vec<Key>,
}

/// Decides which staged checkpoints to upload. `durable` holds the ids known to have a manifest.
pub fn plan_uploads(staged: &[Key], durable: &BTreeSet<Key>, retain: usize) -> UploadPlan {
    let mut per_job: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (job, id) in staged {
        per_job.entry(job).or_default().push(*id);
    }
    let mut plan = UploadPlan::default();
    for (job, mut ids) in per_job {
        ids.sort_unstable();
        ids.dedup();
        // The newest `retain` ids among staged and durable ones are the ones that matter; a
        // staged one older than the newest durable one still counts (it is the fallback if the
        // newest turns out corrupt).
        let mut all: Vec<u64> = ids
            .iter()
            .copied()
            .chain(durable.iter().filter(|(j, _)| j == job).map(|(_, id)| *id))
            .collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.dedup();
        let keep: BTreeSet<u64> = all.into_iter().take(retain).collect();
        for id in ids {
            let key = (job.to_string(), id);
            if keep.contains(&id) && !durable.contains(&key) {
                plan.upload.push(key);
            } else {
                plan.discard.push(key);
            }
        }
    }
    plan
}

/// Objects to delete under one job, in a safe order: manifests of expired checkpoints first
/// (so an interrupted deletion never leaves a manifest pointing at missing files), then their
/// data, then the files of partial uploads older than the grace period.
///
/// Keeps the newest `retain` complete checkpoints (at least one: the newest complete one is
/// never deleted), and never touches `in_flight` checkpoints (being uploaded right now).
pub fn plan_retention(
    checkpoints: &BTreeMap<u64, RemoteCheckpoint>,
    retain: usize,
    now_secs: i64,
    grace_secs: i64,
    in_flight: &BTreeSet<u64>,
) -> Vec<Path> {
    let complete: Vec<u64> = checkpoints
        .iter()
        .rev()
        .filter(|(_, c)| c.has_manifest)
        .map(|(id, _)| *id)
        .collect();
    let expired: Vec<u64> = complete.into_iter().skip(retain.max(1)).collect();
    let mut manifests = Vec::new();
    let mut data = Vec::new();
    for id in &expired {
        for object in &checkpoints[id].objects {
            if object.filename() == Some(MANIFEST) {
                manifests.push(object.clone());
            } else {
                data.push(object.clone());
            }
        }
    }
    for (id, chk) in checkpoints {
        let stale = now_secs - chk.newest_modified > grace_secs;
        if !chk.has_manifest && stale && !in_flight.contains(id) {
            data.extend(chk.objects.iter().cloned());
        }
    }
    manifests.extend(data);
    manifests
}

/// Restore candidates: complete checkpoints, newest first.
pub fn restore_order(checkpoints: &BTreeMap<u64, RemoteCheckpoint>) -> Vec<u64> {
    checkpoints
        .iter()
        .rev()
        .filter(|(_, c)| c.has_manifest)
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(job: &str, id: u64) -> Key {
        (job.to_string(), id)
    }

    #[test]
    fn uploads_only_what_retention_would_keep_oldest_first() {
        let staged: Vec<Key> = (1..=6).map(|i| key("a", i)).chain([key("b", 2)]).collect();
        let durable: BTreeSet<Key> = [key("a", 5)].into();
        let plan = plan_uploads(&staged, &durable, 3);
        assert_eq!(plan.upload, vec![key("a", 4), key("a", 6), key("b", 2)]);
        assert_eq!(
            plan.discard,
            vec![key("a", 1), key("a", 2), key("a", 3), key("a", 5)]
        );
    }

    fn chk(manifest: bool, modified: i64, files: &[&str]) -> RemoteCheckpoint {
        let mut objects: Vec<Path> = files.iter().map(|f| Path::from(*f)).collect();
        if manifest {
            objects.push(Path::from(format!(
                "{}/manifest.json",
                files[0].rsplit_once("/data").unwrap().0
            )));
        }
        RemoteCheckpoint {
            has_manifest: manifest,
            objects,
            newest_modified: modified,
            data_bytes: 0,
        }
    }

    #[test]
    fn retention_keeps_newest_complete_and_deletes_manifests_first() {
        let mut c = BTreeMap::new();
        for id in 1..=5 {
            c.insert(id, chk(true, 100, &[&format!("j/chk-{id}/data/_metadata")]));
        }
        c.insert(6, chk(false, 190, &["j/chk-6/data/_metadata"])); // partial, recent
        c.insert(0, chk(false, 10, &["j/chk-0/data/x"])); // partial, stale
        let del = plan_retention(&c, 2, 200, 60, &BTreeSet::new());
        let shown: Vec<&str> = del.iter().map(|p| p.as_ref()).collect();
        assert_eq!(
            shown,
            vec![
                "j/chk-3/manifest.json",
                "j/chk-2/manifest.json",
                "j/chk-1/manifest.json",
                "j/chk-3/data/_metadata",
                "j/chk-2/data/_metadata",
                "j/chk-1/data/_metadata",
                "j/chk-0/data/x",
            ]
        );
    }

    #[test]
    fn retention_never_deletes_the_newest_complete_or_in_flight() {
        let mut c = BTreeMap::new();
        c.insert(1, chk(true, 0, &["j/chk-1/data/a"]));
        c.insert(2, chk(false, 0, &["j/chk-2/data/a"]));
        assert!(plan_retention(&c, 0, 1000, 60, &[2].into()).is_empty());
        assert_eq!(plan_retention(&c, 1, 1000, 60, &BTreeSet::new()).len(), 1);
    }

    #[test]
    fn restore_tries_complete_newest_first() {
        let mut c = BTreeMap::new();
        c.insert(1, chk(true, 0, &["j/chk-1/data/a"]));
        c.insert(3, chk(false, 0, &["j/chk-3/data/a"]));
        c.insert(2, chk(true, 0, &["j/chk-2/data/a"]));
        assert_eq!(restore_order(&c), vec![2, 1]);
    }
}
