//! Walking a root: regular files (final and partial) and what is skipped.
//!
//! The walk is depth first and hands out what it finds in batches, so a
//! listing of any size is sent as it is found: it holds only the directories
//! open from the root down to the one being read (one descriptor and one
//! read buffer each) and the batch being filled. It descends at most
//! `depth` levels: a directory whose files would lie deeper is reported as
//! [`SkipReason::TooDeep`], never entered, so descriptors and memory are
//! bounded by the depth cap whatever a tree holds.
//!
//! Directories are opened from the root down, never through a symlink (see
//! `root`). A tree that changes while it is listed does not fail the
//! listing: an entry that vanishes between the directory read and its stat
//! (a concurrent move deletes files) is reported as vanished, and a
//! subdirectory that cannot be read (`lost+found` for an unprivileged
//! daemon) as unreadable; only an unreadable root fails the whole listing.

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::names::{kind_of, NameKind};
use super::root::Root;
use super::threads::on_blocking_thread;
use crate::model::{FileEntry, FileStamp, FileState, RelPath, SkipReason, Skipped, MAX_PATH_LEN};
use crate::protocol::RealizeError;
use crate::service::Listing;

/// Directory levels a listing descends by default (`listing_depth`): files
/// at most this many components deep are listed.
pub const DEFAULT_LISTING_DEPTH: usize = 64;

/// The deepest `listing_depth` there is: a path of at most
/// [`MAX_PATH_LEN`] bytes has at most this many components.
pub const MAX_LISTING_DEPTH: usize = MAX_PATH_LEN / 2;

/// The most one batch of a walk holds.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimit {
    /// Entries, files and skipped together.
    pub entries: usize,
    /// Path bytes plus [`ENTRY_OVERHEAD`] per entry; a batch ends with the
    /// entry that reaches it.
    pub bytes: usize,
}

/// What an entry costs a batch besides its path: more than the rest of an
/// encoded [`FileEntry`] or [`Skipped`].
pub const ENTRY_OVERHEAD: usize = 64;

/// A walk of a root, handing out what it finds batch by batch.
pub struct Walk {
    /// The directories open from the root down to the one being read.
    open: Vec<Level>,
    /// Components a listed file may have at most.
    depth: usize,
}

/// One directory open for reading.
struct Level {
    entries: Dir,
    /// Its path under the root (empty for the root).
    prefix: String,
    /// Components of `prefix`.
    depth: usize,
    /// Whether no entry has been read from it yet.
    empty: bool,
}

impl Walk {
    /// Starts walking `root`, listing files at most `depth` components
    /// deep. Fails only if the root cannot be read.
    pub fn start(root: &Root, depth: usize) -> Result<Self, RealizeError> {
        let entries = Dir::read_from(root.fd()).map_err(|e| RealizeError::io(".", &e.into()))?;
        let top = Level {
            entries,
            prefix: String::new(),
            depth: 0,
            empty: true,
        };
        Ok(Self {
            open: vec![top],
            depth,
        })
    }

    /// The next batch, or `None` when the walk is over.
    pub fn next_batch(&mut self, limit: BatchLimit) -> Option<Listing> {
        let mut batch = Batch::new(limit);
        while !batch.is_full() {
            let Some(level) = self.open.last_mut() else {
                break;
            };
            match level.entries.read() {
                Some(Ok(entry)) if matches!(entry.file_name().to_bytes(), b"." | b"..") => {}
                Some(Ok(entry)) => {
                    level.empty = false;
                    self.visit(entry.file_name(), &mut batch);
                }
                Some(Err(e)) => {
                    let done = self.open.pop().expect("a level was read");
                    batch.skip(unreadable(done.prefix, e));
                }
                None => {
                    let done = self.open.pop().expect("a level was read");
                    if done.empty && done.depth > 0 {
                        batch.skip(skip(done.prefix, SkipReason::EmptyDirectory));
                    }
                }
            }
        }
        (!batch.is_empty()).then_some(batch.listing)
    }

    /// Lists one entry of the deepest open directory, or opens it.
    fn visit(&mut self, name: &CStr, batch: &mut Batch) {
        let parent = self.open.last().expect("an open directory");
        let parent_fd = match parent.entries.fd() {
            Ok(fd) => fd,
            Err(e) => return batch.skip(unreadable(parent.prefix.clone(), e)),
        };
        let depth = parent.depth + 1;
        match sort_entry(parent_fd, &parent.prefix, name) {
            Sorted::File(file) => batch.file(file),
            Sorted::Skipped(skipped) => batch.skip(skipped),
            Sorted::Directory { .. } if depth >= self.depth => {
                let path = join(&parent.prefix, &name.to_string_lossy());
                batch.skip(skip(path, SkipReason::TooDeep));
            }
            Sorted::Directory { name, path } => match open_subdir(parent_fd, &name, path) {
                Ok(level) => self.open.push(Level { depth, ..level }),
                Err(skipped) => batch.skip(skipped),
            },
        }
    }
}

/// A walk read batch by batch, each batch on a blocking thread, so the
/// walk holds no thread while its batches wait to be sent.
pub struct Batches {
    walk: Option<Walk>,
    limit: BatchLimit,
}

impl Batches {
    /// Reads `walk` in batches of at most `limit`.
    pub fn new(walk: Walk, limit: BatchLimit) -> Self {
        Self {
            walk: Some(walk),
            limit,
        }
    }

    /// The next batch, or `None` when the walk is over.
    pub async fn next(&mut self) -> Result<Option<Listing>, RealizeError> {
        let Some(mut walk) = self.walk.take() else {
            return Ok(None);
        };
        let limit = self.limit;
        let (walk, batch) = on_blocking_thread(move || {
            let batch = walk.next_batch(limit);
            Ok((walk, batch))
        })
        .await?;
        if batch.is_some() {
            self.walk = Some(walk);
        }
        Ok(batch)
    }
}

/// Lists every regular file under `root` at most `depth` components deep,
/// never following symlinks.
pub(super) fn list(root: &Root, depth: usize) -> Result<Listing, RealizeError> {
    let mut walk = Walk::start(root, depth)?;
    let mut listing = Listing::default();
    let unbounded = BatchLimit {
        entries: usize::MAX,
        bytes: usize::MAX,
    };
    while let Some(batch) = walk.next_batch(unbounded) {
        listing.files.extend(batch.files);
        listing.skipped.extend(batch.skipped);
    }
    Ok(listing)
}

/// A batch being filled, and what it holds so far.
struct Batch {
    listing: Listing,
    entries: usize,
    bytes: usize,
    limit: BatchLimit,
}

impl Batch {
    fn new(limit: BatchLimit) -> Self {
        Self {
            listing: Listing::default(),
            entries: 0,
            bytes: 0,
            limit,
        }
    }

    fn is_full(&self) -> bool {
        self.entries >= self.limit.entries || self.bytes >= self.limit.bytes
    }

    fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn count(&mut self, path_len: usize) {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(path_len + ENTRY_OVERHEAD);
    }

    fn file(&mut self, file: FileEntry) {
        self.count(file.path.as_str().len());
        self.listing.files.push(file);
    }

    fn skip(&mut self, skipped: Skipped) {
        self.count(skipped.path.len());
        self.listing.skipped.push(skipped);
    }
}

/// What one directory entry is to a listing.
enum Sorted {
    File(FileEntry),
    Skipped(Skipped),
    /// A subdirectory to enter: its name and its path under the root.
    Directory {
        name: String,
        path: String,
    },
}

/// Sorts the entry `name` of the directory `parent` (at `prefix` under the
/// root) into a file, a skipped entry or a subdirectory.
fn sort_entry(parent: BorrowedFd<'_>, prefix: &str, name: &CStr) -> Sorted {
    let Ok(name) = name.to_str() else {
        let path = join(prefix, &name.to_string_lossy());
        return Sorted::Skipped(skip(path, SkipReason::UnsupportedName));
    };
    let path = join(prefix, name);
    let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Sorted::Skipped(skip(path, SkipReason::Vanished)),
        Err(e) => return Sorted::Skipped(unreadable(path, e)),
    };
    let file_type = FileType::from_raw_mode(stat.st_mode);
    let reason = match (file_type, kind_of(name)) {
        (FileType::Symlink, _) => SkipReason::Symlink,
        (_, NameKind::Reserved) | (FileType::Directory, NameKind::Partial(_)) => {
            SkipReason::ReservedName
        }
        // No file under it could be named: its paths would be too long.
        (FileType::Directory, NameKind::User) if path.len() >= MAX_PATH_LEN => {
            SkipReason::UnsupportedName
        }
        (FileType::Directory, NameKind::User) => {
            let name = name.to_string();
            return Sorted::Directory { name, path };
        }
        (FileType::RegularFile, kind) => {
            let (final_path, state) = match kind {
                NameKind::Partial(final_name) => (join(prefix, final_name), FileState::Partial),
                _ => (path, FileState::Final),
            };
            return match RelPath::new(final_path.clone()) {
                Ok(path) => Sorted::File(FileEntry {
                    path,
                    state,
                    stamp: FileStamp::from_stat(&stat),
                }),
                Err(_) => Sorted::Skipped(skip(final_path, SkipReason::UnsupportedName)),
            };
        }
        _ => SkipReason::Special,
    };
    Sorted::Skipped(skip(path, reason))
}

/// Opens the subdirectory `name` of `parent` for reading; the skipped entry
/// instead if it is gone or cannot be opened. Its depth is the caller's.
fn open_subdir(parent: BorrowedFd<'_>, name: &str, path: String) -> Result<Level, Skipped> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let opened = rustix::fs::openat(parent, name, flags, Mode::empty()).and_then(Dir::new);
    match opened {
        Ok(entries) => Ok(Level {
            entries,
            prefix: path,
            depth: 0,
            empty: true,
        }),
        // Gone, or swapped for a symlink or a file since it was read.
        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => Err(skip(path, SkipReason::Vanished)),
        Err(e) => Err(unreadable(path, e)),
    }
}

/// `path` skipped as unreadable, and why in the log.
fn unreadable(path: String, error: Errno) -> Skipped {
    let shown = if path.is_empty() {
        ".".to_string()
    } else {
        path
    };
    tracing::warn!(path = shown, "cannot list: {}", std::io::Error::from(error));
    skip(shown, SkipReason::Unreadable)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn skip(mut path: String, reason: SkipReason) -> Skipped {
    if path.len() > MAX_PATH_LEN {
        let mut end = MAX_PATH_LEN;
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
        listed_at_most(root, DEFAULT_LISTING_DEPTH)
    }

    fn listed_at_most(root: &std::path::Path, depth: usize) -> (Files, Skips) {
        let listing = list(&Root::open(root).unwrap(), depth).unwrap();
        let mut files: Files = listing
            .files
            .iter()
            .map(|f| (f.path.to_string(), f.state, f.stamp.size))
            .collect();
        files.sort_by(|a: &(String, FileState, u64), b| a.0.cmp(&b.0));
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
    fn directories_deeper_than_the_cap_are_reported_too_deep_and_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b/c/d")).unwrap();
        fs::write(root.join("a/b/ok"), b"1").unwrap();
        fs::write(root.join("a/b/c/deep"), b"22").unwrap();
        fs::write(root.join("a/b/c/d/deeper"), b"333").unwrap();
        fs::create_dir_all(root.join("x/y/empty")).unwrap();
        let (files, skipped) = listed_at_most(root, 3);
        assert_eq!(files, vec![("a/b/ok".into(), FileState::Final, 1)]);
        assert_eq!(
            skipped,
            vec![
                ("a/b/c".into(), SkipReason::TooDeep),
                ("x/y/empty".into(), SkipReason::TooDeep)
            ]
        );
        assert!(SkipReason::TooDeep.leaves_data_behind());
    }

    #[test]
    fn the_walk_hands_out_batches_as_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a", "b"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
            for i in 0..1500 {
                fs::write(dir.path().join(format!("{sub}/{i}")), b"").unwrap();
            }
        }
        let mut walk = Walk::start(&Root::open(dir.path()).unwrap(), 4).unwrap();
        let limit = BatchLimit {
            entries: 100,
            bytes: usize::MAX,
        };
        let first = walk.next_batch(limit).unwrap();
        assert_eq!(first.files.len() + first.skipped.len(), 100);
        let first_dir = first.files[0].path.components().next().unwrap().to_string();
        let other = if first_dir == "a" { "b" } else { "a" };
        // Deleted after the first batch: a walk that read the whole tree
        // before handing it out would still list it.
        fs::remove_dir_all(dir.path().join(other)).unwrap();
        let mut files = first.files;
        while let Some(batch) = walk.next_batch(limit) {
            assert!(batch.files.len() + batch.skipped.len() <= 100);
            files.extend(batch.files);
        }
        let (mine, others): (Vec<_>, Vec<_>) = files
            .iter()
            .partition(|f| f.path.components().next() == Some(first_dir.as_str()));
        assert_eq!(mine.len(), 1500);
        assert!(
            others.is_empty(),
            "{} files of a deleted directory",
            others.len()
        );
    }

    #[test]
    fn batches_stop_at_their_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..50 {
            fs::write(dir.path().join(format!("{i:0>200}")), b"").unwrap();
        }
        let mut walk = Walk::start(&Root::open(dir.path()).unwrap(), 4).unwrap();
        let limit = BatchLimit {
            entries: 1000,
            bytes: 10 * (200 + ENTRY_OVERHEAD),
        };
        let mut sizes = Vec::new();
        while let Some(batch) = walk.next_batch(limit) {
            sizes.push(batch.files.len());
        }
        assert_eq!(sizes, [10, 10, 10, 10, 10]);
    }

    #[test]
    fn an_entry_gone_between_the_read_and_the_stat_is_reported_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        // What the directory read returned, deleted before its stat.
        match sort_entry(root.fd(), "sub", c"gone") {
            Sorted::Skipped(skipped) => {
                assert_eq!(
                    (skipped.path.as_str(), skipped.reason),
                    ("sub/gone", SkipReason::Vanished)
                )
            }
            _ => panic!("listed"),
        }
        assert!(!SkipReason::Vanished.leaves_data_behind());
    }

    #[test]
    fn a_directory_gone_before_it_is_opened_is_reported_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let Err(skipped) = open_subdir(root.fd(), "gone", "gone".into()) else {
            panic!("opened");
        };
        assert_eq!(skipped.reason, SkipReason::Vanished);
    }
}
