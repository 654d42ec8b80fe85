//! Checkpoints made durable in object storage, and restored from it.
//!
//! Flink writes checkpoints to local disk (fast); this module copies each completed one to the
//! object store as soon as it completes, keeps the newest few, and brings the newest verified
//! one back when a node starts empty. The rules, each tested:
//!
//! 1. **Complete means `_metadata`.** `chk-N` is complete when `chk-N/_metadata` exists (Flink
//!    writes it last, after every task acknowledged); `.inprogress` files are ignored
//!    (`local`).
//! 2. **Snapshot at once.** A completed checkpoint is hard-linked into staging on the same
//!    filesystem immediately (`<agent.state_dir>/staging/<job>/chk-N`, or
//!    `<flink.data_dir>/.staging` when the state dir is on another filesystem), so Flink deleting
//!    a subsumed checkpoint cannot race the upload (`local`).
//! 3. **Manifest last.** Data files go first (in parallel, large ones as multipart uploads),
//!    then a listing proves every one is present with its size, then `manifest.json` (files,
//!    sizes, SHA-256 and BLAKE3, Flink version, job, checkpoint id) is published with
//!    `PutMode::Create` (`digest` says why two hashes).
//!    A checkpoint without its manifest does not exist remotely (`upload`).
//! 4. **Never dropped.** Failed uploads are retried forever with exponential back-off; after
//!    `checkpoints.alert_after_failures` consecutive failures `status` shows an alert. Staging
//!    is freed only after the manifest is written, so an agent restarted mid-upload resumes
//!    from staging; open multipart uploads are journaled and aborted on resume (`engine`).
//!    Staged checkpoints older than the newest `retain` of their job are dropped unuploaded:
//!    retention would delete them right away.
//! 5. **Prompt and robust detection.** `notify` (inotify) wakes the detector; a periodic rescan
//!    catches what inotify dropped (`engine`).
//! 6. **Retention.** The newest `checkpoints.retain` complete checkpoints per job are kept, the
//!    newest complete one never deleted; manifests go before their data; files of uploads that
//!    never got a manifest are deleted after `checkpoints.orphan_grace_secs` (`plan`).
//! 7. **Verified restore.** Complete checkpoints are tried newest first; every file is checked
//!    against the manifest's size and hash (BLAKE3, or SHA-256 where an older agent wrote the
//!    manifest); a corrupt or incomplete one is skipped with a logged reason and the next older
//!    one is used (`restore`) — a re-submission orders its
//!    local checkpoint among the remote ones, so that next one may be the local one. One the
//!    store holds damaged is withdrawn (deleted, manifest first) and the engine told
//!    (`withdrawn`), so its id is uploaded again from the restored job; one that merely cannot
//!    be read now is kept, and so is one whose manifest is of a newer format (a newer agent's).
//! 8. **HashMap backend only.** Its `chk-N` dir is self-contained and relocatable (state files
//!    are referenced relative to `_metadata`); the config refuses keys that would make Flink
//!    write incremental state to `shared/` (see `config::OWNED_KEY_PREFIXES`).

mod digest;
mod engine;
pub mod layout;
mod local;
mod manifest;
mod metadata;
mod plan;
mod remote;
mod restore;
mod status;
mod sync;
mod upload;
mod withdrawn;

pub use engine::{JobNames, SyncConfig, SyncEngine};
pub use local::{scan_complete, stage, LocalCheckpoint};
pub use manifest::{Manifest, ManifestFile};
pub use metadata::{checkpoint_id, local_dir};
pub use remote::{Remote, RemoteError};
pub use restore::{
    candidates, prune_restored, restore_first, restore_newest, RestoreError, Restored, CONCURRENCY,
};
pub use status::{JobSync, PendingUpload, SyncStatus};
pub use sync::{Sync, SyncError, SyncSettings};
pub use upload::{publish, Origin, UploadError, UploadSettings};
pub use withdrawn::Withdrawn;

/// What tests of other modules (the jobs' restore choice) build checkpoints with.
#[cfg(test)]
pub(crate) mod testing {
    pub use super::local::tests::fake_checkpoint;
    pub(crate) use super::remote::testing::FaultyStore;
    pub(crate) use super::restore::testing::put_remote_checkpoint;
}
