//! Collecting abandoned partial files.
//!
//! A transfer that stops before its end keeps its partial file, so that a
//! later run resumes it instead of sending every byte again. A partial file
//! that no run resumes would stay for good: a peer whose write streams
//! stall leaves one each time. [`collect`] walks a root as a listing does
//! (from directory descriptors, never through a symlink) and removes each
//! partial file that no writer holds and that has not changed for long;
//! [`Place::collect_abandoned`](super::place::Place::collect_abandoned)
//! says how one is removed without ever removing another file.

use std::ops::AddAssign;
use std::time::SystemTime;

use super::listing::{BatchLimit, Walk};
use super::root::Root;
use crate::model::{FileEntry, FileState};
use crate::protocol::RealizeError;

/// What a collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Partial files removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl AddAssign for Collected {
    fn add_assign(&mut self, other: Self) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// The most a batch of the walk holds: a collection holds one at a time.
const BATCH: BatchLimit = BatchLimit {
    entries: 1024,
    bytes: 1 << 20,
};

/// Removes every partial file under `root`, at most `depth` components
/// deep, that no writer holds and that has not changed since
/// `changed_before`. A file that cannot be removed is logged and left; only
/// an unreadable root fails the collection.
pub(super) fn collect(
    root: &Root,
    depth: usize,
    changed_before: SystemTime,
) -> Result<Collected, RealizeError> {
    let mut walk = Walk::start(root, depth)?;
    let mut collected = Collected::default();
    while let Some(batch) = walk.next_batch(BATCH) {
        collected += collect_batch(root, &batch.files, changed_before);
    }
    Ok(collected)
}

/// Removes the abandoned partial files among `files`.
fn collect_batch(root: &Root, files: &[FileEntry], changed_before: SystemTime) -> Collected {
    let mut collected = Collected::default();
    let partials = files.iter().filter(|f| f.state == FileState::Partial);
    for entry in partials {
        let removed = root
            .resolve(&entry.path)
            .and_then(|place| place.collect_abandoned(changed_before));
        match removed {
            Ok(Some(bytes)) => collected += Collected { files: 1, bytes },
            Ok(None) => {}
            Err(e) => tracing::warn!(
                path = %entry.path,
                "cannot collect the abandoned partial file: {e}"
            ),
        }
    }
    collected
}

#[cfg(test)]
mod tests {
    use super::super::listing::DEFAULT_LISTING_DEPTH;
    use super::*;
    use std::fs;
    use std::time::Duration;

    #[test]
    fn partial_files_anywhere_in_the_tree_are_collected_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("a/b/.realize~part.dir")).unwrap();
        fs::write(r.join(".realize~part.top"), b"12345").unwrap();
        fs::write(r.join("a/b/.realize~part.deep"), b"123").unwrap();
        fs::write(r.join("a/b/.realize~part.dir/inside"), b"kept").unwrap();
        fs::write(r.join("a/b/deep"), b"a user's file").unwrap();
        fs::write(r.join("a/.x.part"), b"a user's file").unwrap();
        fs::write(r.join("a/.realize~del.01"), b"reserved").unwrap();
        let root = Root::open(r).unwrap();
        let later = SystemTime::now() + Duration::from_secs(1);
        assert_eq!(
            collect(&root, DEFAULT_LISTING_DEPTH, later).unwrap(),
            Collected { files: 2, bytes: 8 }
        );
        assert!(!r.join(".realize~part.top").exists());
        assert!(!r.join("a/b/.realize~part.deep").exists());
        for kept in [
            "a/b/.realize~part.dir/inside",
            "a/b/deep",
            "a/.x.part",
            "a/.realize~del.01",
        ] {
            assert!(r.join(kept).exists(), "{kept}");
        }
        assert_eq!(
            collect(&root, DEFAULT_LISTING_DEPTH, later).unwrap(),
            Collected::default()
        );
    }
}
