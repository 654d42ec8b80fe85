//! Checkpoints a restore found damaged in the store and withdrew (deleted), on their way from
//! the jobs, which restore, to the sync engine, which counts what is durable.
//!
//! The engine learns what is durable from listings, after each upload. Without word from the
//! restore it would go on counting a withdrawn checkpoint N durable until its job's next upload:
//! `status` would show the damaged N as the newest durable checkpoint, and the restored job's
//! own checkpoint N (a job restored from N-1 makes one) would be dropped unuploaded as "durable
//! already". Like [`super::JobNames`], one value outlives engine reloads: the sync hands it to
//! every engine it starts, and the jobs get it from the sync.

use super::plan::Key;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

/// Withdrawn checkpoints not yet taken by the engine. Cheap to clone; clones share the set.
#[derive(Debug, Clone, Default)]
pub struct Withdrawn(Arc<Mutex<BTreeSet<Key>>>);

impl Withdrawn {
    /// Checkpoint `id` of `job` is no longer in the store.
    pub fn record(&self, job: &str, id: u64) {
        self.lock().insert((job.to_string(), id));
    }

    /// Everything recorded since the last call.
    pub(super) fn take(&self) -> BTreeSet<Key> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Key>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
