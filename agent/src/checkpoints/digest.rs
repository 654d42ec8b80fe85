//! The content hashes of a checkpoint's files: an upload records SHA-256 and BLAKE3 of each in
//! the manifest, a restore checks BLAKE3, the cheaper, where the manifest has it.
//!
//! Why two: a restore verifies every byte it downloads, and SHA-256 cost 0.74 CPU s/GiB here
//! even with the CPU's SHA instructions, BLAKE3 0.17 (AVX-512), on a machine whose cores the
//! download shares. Agents before BLAKE3 verify `sha256`, and treat a manifest without it as
//! damaged: they would delete the checkpoint. So the upload keeps writing SHA-256 as long as an
//! agent a node may be rolled back to reads only that; a restore checks BLAKE3 where the
//! manifest has it and SHA-256 where it was written by such an agent.

use super::manifest::ManifestFile;
use sha2::{Digest, Sha256};

/// Both hashes of one file's content as it is uploaded, in order.
pub(crate) struct Hashes {
    sha256: Sha256,
    blake3: Box<blake3::Hasher>,
}

impl Hashes {
    pub(crate) fn new() -> Self {
        Hashes {
            sha256: Sha256::new(),
            blake3: Box::new(blake3::Hasher::new()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.blake3.update(bytes);
    }

    /// The entry of a file at `path` of `size` bytes, hashed by `self` (lower-case hex).
    pub(crate) fn into_file(self, path: String, size: u64) -> ManifestFile {
        ManifestFile {
            path,
            size,
            sha256: hex::encode(self.sha256.finalize()),
            blake3: Some(self.blake3.finalize().to_hex().to_string()),
        }
    }
}

/// What a restore checks one file's content against: the manifest's BLAKE3 when it has one,
/// else its SHA-256.
pub(crate) struct Check {
    hasher: Hasher,
    expected: String,
}

enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl Check {
    pub(crate) fn for_file(file: &ManifestFile) -> Self {
        let (hasher, expected) = match &file.blake3 {
            Some(b) => (Hasher::Blake3(Box::new(blake3::Hasher::new())), b),
            None => (Hasher::Sha256(Sha256::new()), &file.sha256),
        };
        Check {
            hasher,
            expected: expected.clone(),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match &mut self.hasher {
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// How the content hashed differs from the manifest (`has BLAKE3 <hex>, the manifest says
    /// <hex>`), or `None` when it matches.
    pub(crate) fn mismatch(self) -> Option<String> {
        let (name, got) = match self.hasher {
            Hasher::Blake3(h) => ("BLAKE3", h.finalize().to_hex().to_string()),
            Hasher::Sha256(h) => ("SHA-256", hex::encode(h.finalize())),
        };
        (got != self.expected)
            .then(|| format!("has {name} {got}, the manifest says {}", self.expected))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hashed(content: &[u8]) -> ManifestFile {
        let mut h = Hashes::new();
        // In two pieces: the hashes are of the whole, however it arrives.
        let (a, b) = content.split_at(content.len() / 2);
        h.update(a);
        h.update(b);
        h.into_file("_metadata".into(), content.len() as u64)
    }

    fn check(file: &ManifestFile, content: &[u8]) -> Option<String> {
        let mut c = Check::for_file(file);
        c.update(content);
        c.mismatch()
    }

    #[test]
    fn an_upload_records_both_hashes_of_the_content() {
        let f = hashed(b"abc");
        // The published test vectors of "abc".
        assert_eq!(
            f.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            f.blake3.as_deref(),
            Some("6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")
        );
    }

    #[test]
    fn a_restore_checks_blake3_where_the_manifest_has_it() {
        let mut f = hashed(b"state");
        assert_eq!(check(&f, b"state"), None);
        let wrong = check(&f, b"other").unwrap();
        assert!(wrong.starts_with("has BLAKE3 "), "{wrong}");
        // BLAKE3 decides: a SHA-256 that no longer matches is not what is checked.
        f.sha256 = "00".repeat(32);
        assert_eq!(check(&f, b"state"), None);
        f.blake3 = Some("11".repeat(32));
        assert!(check(&f, b"state")
            .unwrap()
            .contains("the manifest says 1111"));
    }

    #[test]
    fn a_manifest_of_an_older_agent_is_checked_by_its_sha256() {
        let mut f = hashed(b"state");
        f.blake3 = None;
        assert_eq!(check(&f, b"state"), None);
        let wrong = check(&f, b"other").unwrap();
        assert!(wrong.starts_with("has SHA-256 "), "{wrong}");
    }
}
