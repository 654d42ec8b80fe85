//! Why a job operation failed: each message names the job or file and says what to do.

use crate::checkpoints::RestoreError;
use crate::flinkrest::FlinkRestError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    InvalidName(String),
    #[error("jar {path} cannot be read: {source}; give the path of an existing .jar file")]
    JarUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a jar (no zip header); build the job with `jar` or Maven and pass the .jar"
    )]
    NotAJar { path: String },
    #[error("a job named `{name}` is already deployed; `flink-agent jobs delete {name}` first or choose another name")]
    Exists { name: String },
    #[error("no job named `{name}` is deployed; `flink-agent jobs` lists them")]
    Unknown { name: String },
    #[error("job `{name}` is not stopped; `flink-agent jobs` shows its state")]
    NotStopped { name: String },
    /// Three-node clusters: jobs are submitted under an id that needs the cluster's
    /// incarnation, which only the ZooKeeper quorum tells.
    #[error("the cluster cannot take jobs yet ({why}); retry once `flink-agent status` shows a healthy ZooKeeper quorum")]
    NotReady { why: String },
    #[error(transparent)]
    Rest(#[from] FlinkRestError),
    #[error("{what} in object storage failed: {source}")]
    Store {
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A deleted job's objects that the store kept refusing to delete, after every retry. The
    /// job is gone from this node; its record, if among them, would let a replacement node
    /// bring it back, so the operator is told to finish the delete.
    #[error(
        "job `{name}` is deleted on this node, but {} could not be deleted from {url} after {attempts} attempts ({source}); run `flink-agent jobs delete {name}` again once the store is reachable: it deletes only what is left",
        left_summary(.left)
    )]
    RemoteLeft {
        name: String,
        url: String,
        /// The keys left, or the job's prefix (ending in `/`) when they cannot be listed.
        left: Vec<String>,
        attempts: u32,
        /// The last failure (boxed: it would make every `JobError` larger).
        #[source]
        source: Box<object_store::Error>,
    },
}

/// "2 objects (a, b)", at most five named.
fn left_summary(left: &[String]) -> String {
    const NAMED: usize = 5;
    let mut names = left
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if left.len() > NAMED {
        names.push_str(&format!(" and {} more", left.len() - NAMED));
    }
    let noun = if left.len() == 1 { "object" } else { "objects" };
    format!("{} {noun} ({names})", left.len())
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> JobError {
    let what = what.into();
    move |source| JobError::Io { what, source }
}

pub(super) fn store(what: impl Into<String>) -> impl FnOnce(object_store::Error) -> JobError {
    let what = what.into();
    move |source| JobError::Store { what, source }
}
