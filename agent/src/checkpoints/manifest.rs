//! The manifest: the one object whose presence makes a remote checkpoint exist. It lists every
//! file with size, SHA-256 and BLAKE3 so a restore can prove it got exactly what Flink wrote.

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
    /// Lower-case hex SHA-256 of the content: what agents before BLAKE3 verify ([`super::digest`]).
    pub sha256: String,
    /// Lower-case hex BLAKE3 of the content: what a restore verifies when it is there (absent
    /// from manifests of agents before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

impl ManifestFile {
    /// The same file with the same content, by every hash both entries have.
    fn same_content(&self, other: &ManifestFile) -> bool {
        let blake3 = match (&self.blake3, &other.blake3) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.path == other.path && self.size == other.size && self.sha256 == other.sha256 && blake3
    }
}

impl Manifest {
    /// Two manifests describe the same checkpoint content (upload time aside; one of an agent
    /// before BLAKE3 lacks it).
    pub fn same_content(&self, other: &Manifest) -> bool {
        self.job == other.job
            && self.flink_job_id == other.flink_job_id
            && self.checkpoint_id == other.checkpoint_id
            && self.files.len() == other.files.len()
            && self
                .files
                .iter()
                .zip(&other.files)
                .all(|(a, b)| a.same_content(b))
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(sha256: &str, blake3: Option<&str>) -> Manifest {
        Manifest {
            format: FORMAT,
            cluster_id: "c1".into(),
            job: "j".into(),
            flink_job_id: "f0".into(),
            checkpoint_id: 1,
            flink_version: "2.3.0".into(),
            completed_at: 0,
            files: vec![ManifestFile {
                path: "_metadata".into(),
                size: 1,
                sha256: sha256.into(),
                blake3: blake3.map(str::to_string),
            }],
        }
    }

    /// A retried upload whose manifest an agent before BLAKE3 published finds it the same.
    #[test]
    fn a_manifest_without_blake3_is_compared_by_its_sha256() {
        let new = manifest("aa", Some("bb"));
        assert!(new.same_content(&manifest("aa", None)));
        assert!(manifest("aa", None).same_content(&new));
        assert!(!new.same_content(&manifest("ab", None)));
        assert!(!new.same_content(&manifest("aa", Some("bc"))));
    }
}
