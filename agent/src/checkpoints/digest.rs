//! The content hashes of a checkpoint's files: an upload records SHA-256 and BLAKE3 of each in
//! the manifest, a restore checks BLAKE3, the cheaper, where the manifest has it.
//!
//! Why two: a restore verifies every byte it downloads, and SHA-256 cost 0.74 CPU s/GiB here
//! even with the CPU's SHA instructions, BLAKE3 0.17 (AVX-512), on a machine whose cores the
//! download shares. Agents before BLAKE3 verify `sha256`, and treat a manifest without it as
//! damaged: they would delete the checkpoint. So the upload keeps writing SHA-256 as long as an
//! agent a node may be rolled back to reads only that; a restore checks BLAKE3 where the
//! manifest has it and SHA-256 where it was written by such an agent. BLAKE3 also lets a file
//! fetched as ranges be hashed range by range as they arrive, in any order ([`Subtree`]).

use super::manifest::ManifestFile;
use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

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

    /// Whether this check needs the content in order (SHA-256, of an older agent's manifest)
    /// rather than taking a ranged file's [`Subtrees`] (BLAKE3).
    pub(crate) fn in_order(&self) -> bool {
        matches!(self.hasher, Hasher::Sha256(_))
    }

    /// Hashes the next bytes of the content, in order.
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
        match self.hasher {
            Hasher::Blake3(h) => differs("BLAKE3", h.finalize().to_hex().as_str(), &self.expected),
            Hasher::Sha256(h) => differs("SHA-256", &hex::encode(h.finalize()), &self.expected),
        }
    }

    /// As [`Check::mismatch`], for a file of `len` bytes fetched as ranges: from `subtrees`
    /// unless the check is [`Check::in_order`] (then from what it was given in order). An error
    /// when a range is missing from `subtrees`: a fault of the fetch, which says nothing of the
    /// content (a restore must not take it for damage and delete the checkpoint).
    pub(crate) fn mismatch_in_ranges(
        self,
        subtrees: &Subtrees,
        len: u64,
    ) -> Result<Option<String>, String> {
        if self.in_order() {
            return Ok(self.mismatch());
        }
        match subtrees.root(len) {
            Some(root) => Ok(differs("BLAKE3", root.to_hex().as_str(), &self.expected)),
            None => Err(format!("{len} bytes were not all hashed in ranges")),
        }
    }
}

/// How hash `name` of the content, `got` in hex, differs from the manifest's `expected`.
fn differs(name: &str, got: &str, expected: &str) -> Option<String> {
    (got != expected).then(|| format!("has {name} {got}, the manifest says {expected}"))
}

/// The BLAKE3 of one range of a file, hashed on its own as its bytes arrive, in whatever order
/// the ranges complete.
///
/// Why this is the file's hash: BLAKE3 is a tree of 1 KiB chunks whose every left subtree is a
/// power of two of them. A range that starts at a multiple of a power-of-two length (of at least a
/// chunk) and has that length, or is the file's last, is one whole subtree of that tree; its
/// chaining value is hashed alone (`set_input_offset`), and [`Subtrees`] merges them into the
/// root exactly as the one-pass hash would. So a ranged restore need not read the file back to
/// hash it in order (a copy of every byte from the page cache).
pub(crate) struct Subtree(Box<blake3::Hasher>);

impl Subtree {
    /// The subtree of the range starting at byte `start` (a multiple of the ranges' length).
    pub(crate) fn at(start: u64) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(start);
        Subtree(Box::new(hasher))
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Its chaining value, once every byte of the range was given.
    pub(crate) fn finish(&self) -> ChainingValue {
        self.0.finalize_non_root()
    }
}

/// The [`Subtree`]s of one file fetched as ranges of one power-of-two length, by start.
pub(crate) struct Subtrees {
    range_len: u64,
    done: BTreeMap<u64, (u64, ChainingValue)>,
}

impl Subtrees {
    /// For ranges of `range_len` bytes: a power of two of at least BLAKE3's 1 KiB chunk.
    pub(crate) fn new(range_len: u64) -> Self {
        assert!(
            range_len.is_power_of_two() && range_len >= blake3::CHUNK_LEN as u64,
            "ranges of {range_len} bytes are not subtrees of BLAKE3's tree"
        );
        Subtrees {
            range_len,
            done: BTreeMap::new(),
        }
    }

    /// Records the range of `len` bytes at `start` as hashed.
    pub(crate) fn insert(&mut self, start: u64, len: u64, subtree: &Subtree) {
        self.done.insert(start, (len, subtree.finish()));
    }

    /// The BLAKE3 of a file of `len` bytes, more than one range (one alone would need the root's
    /// finalization, not a chaining value); `None` when a range is missing.
    fn root(&self, len: u64) -> Option<blake3::Hash> {
        if len <= self.range_len {
            return None;
        }
        let left = hazmat::left_subtree_len(len);
        let (l, r) = (self.value(0, left)?, self.value(left, len - left)?);
        Some(hazmat::merge_subtrees_root(&l, &r, Mode::Hash))
    }

    /// The chaining value of the `len` bytes at `start`: a range, or the parent of the halves
    /// BLAKE3 splits them into (whose boundary is a range's, the left half being a power of two
    /// of at least one range).
    fn value(&self, start: u64, len: u64) -> Option<ChainingValue> {
        if len <= self.range_len {
            return match self.done.get(&start) {
                Some((hashed, cv)) if *hashed == len => Some(*cv),
                _ => None,
            };
        }
        let left = hazmat::left_subtree_len(len);
        let (l, r) = (
            self.value(start, left)?,
            self.value(start + left, len - left)?,
        );
        Some(hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash))
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

    /// `content` hashed as ranges of `range_len` completing last to first, as a ranged restore
    /// checks it.
    fn check_in_ranges(
        file: &ManifestFile,
        content: &[u8],
        range_len: usize,
    ) -> Result<Option<String>, String> {
        let mut subtrees = Subtrees::new(range_len as u64);
        let starts: Vec<usize> = (0..content.len()).step_by(range_len).collect();
        for &start in starts.iter().rev() {
            let bytes = &content[start..(start + range_len).min(content.len())];
            let mut s = Subtree::at(start as u64);
            // In pieces, as a range's body arrives.
            for piece in bytes.chunks(1000) {
                s.update(piece);
            }
            subtrees.insert(start as u64, bytes.len() as u64, &s);
        }
        Check::for_file(file).mismatch_in_ranges(&subtrees, content.len() as u64)
    }

    /// Files of one range and a byte up to many, ending anywhere in a range: ranges hashed alone
    /// in any order give BLAKE3's hash of the whole.
    #[test]
    fn ranges_hashed_alone_give_the_hash_of_the_whole() {
        let range = 2048;
        let content: Vec<u8> = (0..40 * range).map(|i| (i * 7 + i / 251) as u8).collect();
        for len in [
            range + 1,
            2 * range,
            3 * range - 1,
            3 * range,
            5 * range + 1023,
            40 * range,
        ] {
            let whole = &content[..len];
            let file = hashed(whole);
            assert_eq!(
                check_in_ranges(&file, whole, range),
                Ok(None),
                "{len} bytes"
            );
            for at in [0, len / 2, len - 1] {
                let mut changed = whole.to_vec();
                changed[at] ^= 1;
                let wrong = check_in_ranges(&file, &changed, range).unwrap().unwrap();
                assert!(
                    wrong.starts_with("has BLAKE3 "),
                    "{len} bytes, {at}: {wrong}"
                );
            }
        }
    }

    /// A missing range, or one of another length, is an error, never a pass.
    #[test]
    fn a_range_not_hashed_is_a_mismatch() {
        let content = vec![5u8; 3 * 2048];
        let file = hashed(&content);
        let mut subtrees = Subtrees::new(2048);
        for start in [0u64, 4096] {
            let mut s = Subtree::at(start);
            s.update(&content[..2048]);
            subtrees.insert(start, 2048, &s);
        }
        let check = |s: &Subtrees| Check::for_file(&file).mismatch_in_ranges(s, 3 * 2048);
        assert!(check(&subtrees).unwrap_err().contains("not all hashed"));
        let mut short = Subtree::at(2048);
        short.update(&content[..1024]);
        subtrees.insert(2048, 1024, &short);
        assert!(check(&subtrees).unwrap_err().contains("not all hashed"));
        let mut s = Subtree::at(2048);
        s.update(&content[..2048]);
        subtrees.insert(2048, 2048, &s);
        assert_eq!(check(&subtrees), Ok(None));
        // One range alone is never merged into a root: the fetch gives a file two at least.
        let mut one = Subtrees::new(8192);
        one.insert(0, 3 * 2048, &s);
        assert!(Check::for_file(&file)
            .mismatch_in_ranges(&one, 3 * 2048)
            .is_err());
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
