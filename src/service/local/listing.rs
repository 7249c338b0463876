//! Walking a root: regular files (final and partial) and what is skipped.
//!
//! The walk is iterative and works on directory descriptors opened from the
//! root down, never through a symlink (see `root`). A tree that changes
//! while it is listed does not fail the listing: an entry that vanishes
//! between the directory read and its stat (a concurrent move deletes
//! files) is reported as vanished, and a subdirectory that cannot be read
//! (`lost+found` for an unprivileged daemon) as unreadable; only an
//! unreadable root fails the whole listing.

use std::ffi::CStr;
use std::fs::File;
use std::sync::Arc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::names::{kind_of, NameKind};
use super::root::Root;
use crate::model::{FileEntry, FileStamp, FileState, RelPath, SkipReason, Skipped};
use crate::protocol::RealizeError;
use crate::service::Listing;

/// Lists every regular file under `root`, never following symlinks.
pub fn list(root: &Root) -> Result<Listing, RealizeError> {
    let mut listing = Listing::default();
    let top = Opened {
        fd: root.open_dir([], ".")?,
        prefix: String::new(),
    };
    let mut pending = Vec::new();
    list_dir(top, &mut listing, &mut pending);
    while let Some(found) = pending.pop() {
        if let Some(dir) = open_subdir(found, &mut listing) {
            list_dir(dir, &mut listing, &mut pending);
        }
    }
    listing.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

/// A directory open for reading.
struct Opened {
    fd: Arc<File>,
    /// Its path under the root (empty for the root).
    prefix: String,
}

/// A subdirectory found and not yet opened. Only its parent stays open
/// meanwhile, so the descriptors a walk holds grow with the depth of the
/// tree, not its width.
struct Found {
    parent: Arc<File>,
    name: String,
    /// Its path under the root.
    prefix: String,
}

/// Reads one directory: files and skipped entries go to `listing`,
/// subdirectories to `pending`.
fn list_dir(dir: Opened, listing: &mut Listing, pending: &mut Vec<Found>) {
    let mut entries = match Dir::read_from(&*dir.fd) {
        Ok(entries) => entries,
        Err(e) => return unreadable(listing, dir.prefix, e),
    };
    let mut empty = true;
    while let Some(entry) = entries.read() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return unreadable(listing, dir.prefix, e),
        };
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        empty = false;
        list_entry(&dir, name, listing, pending);
    }
    if empty && !dir.prefix.is_empty() {
        listing
            .skipped
            .push(skip(dir.prefix, SkipReason::EmptyDirectory));
    }
}

/// Sorts one directory entry into files, skipped entries or pending
/// directories.
fn list_entry(dir: &Opened, name: &CStr, listing: &mut Listing, pending: &mut Vec<Found>) {
    let Ok(name) = name.to_str() else {
        let path = join(&dir.prefix, &name.to_string_lossy());
        return listing
            .skipped
            .push(skip(path, SkipReason::UnsupportedName));
    };
    let path = join(&dir.prefix, name);
    let stat = match rustix::fs::statat(&*dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return listing.skipped.push(skip(path, SkipReason::Vanished)),
        Err(e) => return unreadable(listing, path, e),
    };
    let file_type = FileType::from_raw_mode(stat.st_mode);
    match (file_type, kind_of(name)) {
        (FileType::Symlink, _) => listing.skipped.push(skip(path, SkipReason::Symlink)),
        (_, NameKind::Reserved) | (FileType::Directory, NameKind::Partial(_)) => {
            listing.skipped.push(skip(path, SkipReason::ReservedName))
        }
        (FileType::Directory, NameKind::User) => pending.push(Found {
            parent: dir.fd.clone(),
            name: name.to_string(),
            prefix: path,
        }),
        (FileType::RegularFile, kind) => {
            let (final_path, state) = match kind {
                NameKind::Partial(final_name) => {
                    (join(&dir.prefix, final_name), FileState::Partial)
                }
                _ => (path, FileState::Final),
            };
            match RelPath::new(final_path.clone()) {
                Ok(path) => listing.files.push(FileEntry {
                    path,
                    state,
                    stamp: FileStamp::from_stat(&stat),
                }),
                Err(_) => listing
                    .skipped
                    .push(skip(final_path, SkipReason::UnsupportedName)),
            }
        }
        _ => listing.skipped.push(skip(path, SkipReason::Special)),
    }
}

/// Opens a subdirectory found earlier; `None` (and a skipped entry) if it
/// is gone or cannot be opened.
fn open_subdir(found: Found, listing: &mut Listing) -> Option<Opened> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(&*found.parent, found.name.as_str(), flags, Mode::empty()) {
        Ok(fd) => Some(Opened {
            fd: Arc::new(File::from(fd)),
            prefix: found.prefix,
        }),
        // Gone, or swapped for a symlink or a file since it was read.
        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => {
            listing
                .skipped
                .push(skip(found.prefix, SkipReason::Vanished));
            None
        }
        Err(e) => {
            unreadable(listing, found.prefix, e);
            None
        }
    }
}

/// Records that `path` could not be read, and why in the log.
fn unreadable(listing: &mut Listing, path: String, error: Errno) {
    let shown = if path.is_empty() { "." } else { &path };
    tracing::warn!(path = shown, "cannot list: {}", std::io::Error::from(error));
    listing
        .skipped
        .push(skip(shown.to_string(), SkipReason::Unreadable));
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn skip(mut path: String, reason: SkipReason) -> Skipped {
    if path.len() > crate::model::MAX_PATH_LEN {
        let mut end = crate::model::MAX_PATH_LEN;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        path.truncate(end);
    }
    Skipped { path, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    type Files = Vec<(String, FileState, u64)>;
    type Skips = Vec<(String, SkipReason)>;

    fn listed(root: &std::path::Path) -> (Files, Skips) {
        let listing = list(&Root::open(root).unwrap()).unwrap();
        let files = listing
            .files
            .iter()
            .map(|f| (f.path.to_string(), f.state, f.stamp.size))
            .collect();
        let mut skipped: Vec<_> = listing
            .skipped
            .into_iter()
            .map(|s| (s.path, s.reason))
            .collect();
        skipped.sort();
        (files, skipped)
    }

    #[test]
    fn lists_files_partials_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::write(root.join("a/b/one"), b"1").unwrap();
        fs::write(root.join("a/.realize~part.two"), b"22").unwrap();
        fs::write(root.join("a/.old.part"), b"333").unwrap();
        fs::write(root.join(".realize~del.0123"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let (files, skipped) = listed(root);
        assert_eq!(
            files,
            vec![
                ("a/.old.part".into(), FileState::Final, 3),
                ("a/b/one".into(), FileState::Final, 1),
                ("a/two".into(), FileState::Partial, 2)
            ],
            "an old-style partial name is a user's file"
        );
        assert_eq!(
            skipped,
            vec![
                (".realize~del.0123".into(), SkipReason::ReservedName),
                ("empty".into(), SkipReason::EmptyDirectory),
                ("link".into(), SkipReason::Symlink)
            ]
        );
    }

    #[test]
    fn an_entry_gone_between_the_read_and_the_stat_is_reported_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let parent = Opened {
            fd: root.open_dir([], ".").unwrap(),
            prefix: "sub".into(),
        };
        // What the directory read returned, deleted before its stat.
        let (mut listing, mut pending) = (Listing::default(), Vec::new());
        list_entry(&parent, c"gone", &mut listing, &mut pending);
        assert!(listing.files.is_empty() && pending.is_empty());
        let reasons: Vec<_> = listing
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason))
            .collect();
        assert_eq!(reasons, [("sub/gone", SkipReason::Vanished)]);
        assert!(!SkipReason::Vanished.leaves_data_behind());
    }

    #[test]
    fn a_directory_gone_before_it_is_opened_is_reported_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let found = Found {
            parent: root.open_dir([], ".").unwrap(),
            name: "gone".into(),
            prefix: "gone".into(),
        };
        let mut listing = Listing::default();
        assert!(open_subdir(found, &mut listing).is_none());
        assert_eq!(listing.skipped[0].reason, SkipReason::Vanished);
    }
}
