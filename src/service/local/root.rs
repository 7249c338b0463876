//! Resolving relative paths under a root without ever leaving it, even
//! while the tree changes under the request.
//!
//! A [`RelPath`] has no `..` and is not absolute; what is left is the disk.
//! Every lookup starts at the root's directory descriptor and opens one
//! component at a time with `O_NOFOLLOW | O_DIRECTORY`, so a symlink, or a
//! directory swapped for one mid-request, is refused by the kernel rather
//! than followed. What a lookup finds is a [`Place`]: the open parent
//! directory and a name in it. Every later operation on the file (open,
//! stat, rename, unlink) is relative to that descriptor, so no check is
//! ever separated from its use by a path lookup.
//!
//! The root's own descriptor is shared, never reopened: a walk starts from
//! it, and a file at the top of the root gets it as its parent. Only
//! `*at` calls and syncs use a directory descriptor here (a listing reads
//! through a descriptor of its own), so sharing one changes nothing but the
//! system calls saved on every request.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::names::{self, is_user_name};
use super::place::Place;
use crate::model::RelPath;
use crate::protocol::{ErrorKind, RealizeError};

/// One served directory: its canonical path and an open descriptor of it.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    dir: Arc<File>,
}

/// Flags of every directory this module opens.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Root {
    /// Opens `path` as a root: it must exist and be a directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = std::fs::canonicalize(path)?;
        let dir = rustix::fs::open(&path, DIR_FLAGS, Mode::empty()).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "{} is not a directory that can be opened: {e}",
                    path.display()
                ),
            )
        })?;
        Ok(Self {
            path,
            dir: Arc::new(File::from(dir)),
        })
    }

    /// The canonical path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's own descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Resolves `path` through existing directories, refusing symlinks,
    /// non-directories and reserved names on the way. The file itself need
    /// not exist.
    pub fn resolve(&self, path: &RelPath) -> Result<Place, RealizeError> {
        self.walk_parents(path, false)
    }

    /// Like [`Root::resolve`], creating the missing parent directories; each
    /// new one is durable before this returns, so files renamed into it
    /// survive a crash.
    pub fn resolve_creating(&self, path: &RelPath) -> Result<Place, RealizeError> {
        self.walk_parents(path, true)
    }

    /// Opens the directory at `components` (empty: the root itself, whose
    /// descriptor is shared).
    pub fn open_dir<'a>(
        &self,
        components: impl IntoIterator<Item = &'a str>,
        display: &str,
    ) -> Result<Arc<File>, RealizeError> {
        self.walk(components, display, false)
    }

    /// Removes the parent directories of `path`, deepest first, while they
    /// are empty. Stops at the first that is not (another file may still be
    /// moving into it) and never removes the root.
    pub fn remove_empty_parents(&self, path: &RelPath) {
        let components: Vec<&str> = path.components().collect();
        for depth in (1..components.len()).rev() {
            let parent = self.open_dir(components[..depth - 1].iter().copied(), path.as_str());
            let removed =
                parent.map(|p| rustix::fs::unlinkat(&p, components[depth - 1], AtFlags::REMOVEDIR));
            if !matches!(removed, Ok(Ok(()))) {
                return;
            }
        }
    }

    /// Opens the directories of `components` one below the other, from the
    /// root's own descriptor.
    fn walk<'a>(
        &self,
        components: impl IntoIterator<Item = &'a str>,
        display: &str,
        create: bool,
    ) -> Result<Arc<File>, RealizeError> {
        let mut dir = self.dir.clone();
        for component in components {
            let child = open_child_dir(dir.as_fd(), component, display, create)?;
            dir = Arc::new(File::from(child));
        }
        Ok(dir)
    }

    fn walk_parents(&self, path: &RelPath, create: bool) -> Result<Place, RealizeError> {
        if let Some(reserved) = path.components().find(|c| !is_user_name(c)) {
            let message = format!(
                "{path}: '{reserved}' is a name realize reserves for its own files \
                 (names beginning with '{}')",
                names::RESERVED_PREFIX
            );
            return Err(RealizeError::new(ErrorKind::InvalidPath, message));
        }
        let parents = path.parent().into_iter().flat_map(|p| p.split('/'));
        let dir = self.walk(parents, path.as_str(), create)?;
        Ok(Place::new(dir, path.clone()))
    }
}

/// Opens directory `name` in `parent`, never through a symlink; with
/// `create`, makes it first if missing and syncs `parent` so the new entry
/// is durable.
fn open_child_dir(
    parent: BorrowedFd<'_>,
    name: &str,
    display: &str,
    create: bool,
) -> Result<OwnedFd, RealizeError> {
    match rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Ok(dir) => Ok(dir),
        Err(Errno::NOENT) if create => {
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o777)) {
                Ok(()) => {
                    rustix::fs::fsync(parent).map_err(|e| RealizeError::io(display, &e.into()))?
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(RealizeError::io(display, &e.into())),
            }
            open_child_dir(parent, name, display, false)
        }
        Err(Errno::LOOP) => Err(through_symlink(display)),
        Err(Errno::NOTDIR) => {
            let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW);
            if stat.is_ok_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_symlink()) {
                return Err(through_symlink(display));
            }
            let message = format!("{display}: a parent is not a directory");
            Err(RealizeError::new(ErrorKind::NotAFile, message))
        }
        Err(e) => Err(RealizeError::io(display, &e.into())),
    }
}

fn through_symlink(display: &str) -> RealizeError {
    RealizeError::new(
        ErrorKind::InvalidPath,
        format!("{display}: leads through a symbolic link, which is never followed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_directory_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.path().join("out")).unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        let path = RelPath::new("out/x").unwrap();
        let err = root.resolve_creating(&path).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidPath);
        assert!(err.message.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_parents_are_created_inside_root() {
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        let place = root
            .resolve_creating(&RelPath::new("a/b/c").unwrap())
            .unwrap();
        assert!(root_dir.path().join("a/b").is_dir());
        assert_eq!(place.partial_name().unwrap(), ".realize~part.c");
    }

    #[test]
    fn reserved_names_are_refused_anywhere_in_a_path() {
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        for path in [".realize~part.x", "d/.realize~part.x", ".realize~del.1/x"] {
            let err = root
                .resolve_creating(&RelPath::new(path).unwrap())
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidPath, "{path}");
            assert!(err.message.contains("reserves"), "{err}");
        }
        assert_eq!(std::fs::read_dir(root_dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn empty_parents_are_removed_up_to_the_first_that_is_not() {
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root_dir.path().join("a/b/c")).unwrap();
        std::fs::write(root_dir.path().join("a/keep"), b"").unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        root.remove_empty_parents(&RelPath::new("a/b/c/x").unwrap());
        assert!(!root_dir.path().join("a/b").exists());
        assert!(root_dir.path().join("a/keep").exists());
    }
}
