//! Collecting abandoned partial files, and putting back the files whose
//! delete a crash interrupted.
//!
//! A transfer that stops before its end keeps its partial file, so that a
//! later run resumes it instead of sending every byte again. A partial file
//! that no run resumes would stay for good: a peer whose write streams
//! stall leaves one each time. [`collect`] walks a root as a listing does
//! (from directory descriptors, never through a symlink) and removes each
//! partial file that no writer holds and that has not changed for long;
//! [`Place::collect_abandoned`](super::place::Place::collect_abandoned)
//! says how one is removed without ever removing another file.
//!
//! A process killed between the two steps of a delete (rename to a private
//! name, unlink) leaves the file under its private name, which a listing
//! skips. The same walk puts each such file back under its name
//! ([`Place::put_back_interrupted_delete`](super::place::Place::put_back_interrupted_delete)),
//! so the next move finds it again: a delete is finished by a later move,
//! never by guessing that the file is the one verified.

use std::ops::AddAssign;
use std::time::SystemTime;

use super::listing::{BatchLimit, Walk};
use super::names::{self, NameKind};
use super::place::Place;
use super::root::Root;
use crate::model::{FileEntry, FileState, RelPath, SkipReason, Skipped};
use crate::protocol::{ErrorKind, RealizeError};

/// What a collection removed and put back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Partial files removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files put back whose delete a crash interrupted.
    pub put_back: u64,
}

impl AddAssign for Collected {
    fn add_assign(&mut self, other: Self) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.put_back += other.put_back;
    }
}

/// The most a batch of the walk holds: a collection holds one at a time.
const BATCH: BatchLimit = BatchLimit {
    entries: 1024,
    bytes: 1 << 20,
};

/// Puts back every file under `root`, at most `depth` components deep,
/// whose delete a crash interrupted, and, given `partials_changed_before`,
/// removes every partial file that no writer holds and that has not
/// changed since then. A file that cannot be removed or put back is logged
/// and left; only an unreadable root fails the collection.
pub(super) fn collect(
    root: &Root,
    depth: usize,
    partials_changed_before: Option<SystemTime>,
) -> Result<Collected, RealizeError> {
    let mut walk = Walk::start(root, depth)?;
    let mut collected = Collected::default();
    while let Some(batch) = walk.next_batch(BATCH) {
        collected += put_back_batch(root, &batch.skipped);
        if let Some(changed_before) = partials_changed_before {
            collected += collect_batch(root, &batch.files, changed_before);
        }
    }
    Ok(collected)
}

/// Puts back the files among `skipped` whose delete a crash interrupted.
fn put_back_batch(root: &Root, skipped: &[Skipped]) -> Collected {
    let mut collected = Collected::default();
    let reserved = skipped
        .iter()
        .filter(|s| s.reason == SkipReason::ReservedName);
    for (entry, private, place) in reserved.filter_map(|s| interrupted_delete(root, s)) {
        match place.and_then(|place| place.put_back_interrupted_delete(private)) {
            Ok(true) => {
                tracing::info!(path = %entry, "put back a file whose delete was interrupted");
                collected.put_back += 1;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                path = %entry,
                "cannot put back a file whose delete was interrupted: {e}"
            ),
        }
    }
    collected
}

/// The private name of `skipped`, and the place of the name it was made
/// for, if `skipped` is a file a crash left during its delete.
fn interrupted_delete<'a>(
    root: &Root,
    skipped: &'a Skipped,
) -> Option<(&'a str, &'a str, Result<Place, RealizeError>)> {
    let (parent, private) = match skipped.path.rsplit_once('/') {
        Some((parent, private)) => (Some(parent), private),
        None => (None, skipped.path.as_str()),
    };
    let deleted = names::deleted_name(private)?;
    let user_name = match names::kind_of(deleted) {
        NameKind::Partial(final_name) => final_name,
        _ => deleted,
    };
    let path = parent.map_or(user_name.to_string(), |p| format!("{p}/{user_name}"));
    let place = RelPath::new(path)
        .map_err(|e| RealizeError::new(ErrorKind::InvalidPath, e.to_string()))
        .and_then(|path| root.resolve(&path));
    Some((skipped.path.as_str(), private, place))
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
            Ok(Some(bytes)) => {
                collected.files += 1;
                collected.bytes += bytes;
            }
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
            collect(&root, DEFAULT_LISTING_DEPTH, Some(later)).unwrap(),
            Collected {
                files: 2,
                bytes: 8,
                put_back: 0
            }
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
            collect(&root, DEFAULT_LISTING_DEPTH, Some(later)).unwrap(),
            Collected::default()
        );
    }

    #[test]
    fn files_whose_delete_was_interrupted_are_put_back_anywhere_in_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        let top = names::deleting_name(1, "top.txt");
        let deep = format!("a/b/{}", names::deleting_name(2, "deep.txt"));
        let partial = format!("a/{}", names::deleting_name(3, ".realize~part.p"));
        for (path, data) in [(&top, "top"), (&deep, "deep"), (&partial, "part")] {
            fs::write(r.join(path), data).unwrap();
        }
        let root = Root::open(r).unwrap();
        let collected = collect(&root, DEFAULT_LISTING_DEPTH, None).unwrap();
        assert_eq!(collected.put_back, 3, "{collected:?}");
        assert_eq!(fs::read(r.join("top.txt")).unwrap(), b"top");
        assert_eq!(fs::read(r.join("a/b/deep.txt")).unwrap(), b"deep");
        assert_eq!(
            fs::read(r.join("a/.realize~part.p")).unwrap(),
            b"part",
            "not collected"
        );
        assert_eq!(fs::read_dir(r).unwrap().count(), 2, "top.txt and a");
    }
}
