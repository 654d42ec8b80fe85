//! The manifest: the one object whose presence makes a remote checkpoint exist. It lists every
//! file with size and SHA-256 so a restore can prove it got exactly what Flink wrote.

use serde::{Deserialize, Serialize};

/// Current manifest format; bumped on incompatible changes.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub cluster_id: String,
    /// The declared job name (remote directory), or Flink's job id for undeclared jobs.
    pub job: String,
    pub flink_job_id: String,
    pub checkpoint_id: u64,
    pub flink_version: String,
    /// Unix seconds when Flink completed it (`_metadata`'s mtime).
    pub completed_at: u64,
    /// Files relative to Flink's `chk-N` dir, sorted by path.
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// `/`-separated path inside `chk-N`, e.g. `_metadata`.
    pub path: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

impl Manifest {
    /// Two manifests describe the same checkpoint content (upload time aside).
    pub fn same_content(&self, other: &Manifest) -> bool {
        self.job == other.job
            && self.flink_job_id == other.flink_job_id
            && self.checkpoint_id == other.checkpoint_id
            && self.files == other.files
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}
