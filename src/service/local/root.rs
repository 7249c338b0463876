//! Resolving relative paths under a root without ever leaving it.
//!
//! A [`RelPath`] has no `..` and is not absolute; what is left is symlinks on
//! disk. Every component on the way is checked with `lstat`: a symlink is
//! refused, never followed. Files are then opened with `O_NOFOLLOW`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::RelPath;
use crate::protocol::{ErrorKind, RealizeError};

/// Suffix of partial files: `DIR/.NAME.part` is the partial form of `DIR/NAME`.
pub const PARTIAL_SUFFIX: &str = ".part";

/// One served directory: a canonical absolute path.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
}

/// Where a file lives on disk: its final path and its partial path.
#[derive(Debug, Clone)]
pub struct FilePaths {
    /// `root/dir/NAME`
    pub final_path: PathBuf,
    /// `root/dir/.NAME.part`
    pub partial_path: PathBuf,
    /// `root/dir`
    pub parent: PathBuf,
}

impl Root {
    /// Opens `path` as a root: it must exist and be a directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = fs::canonicalize(path)?;
        if !path.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(Self { path })
    }

    /// The canonical path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves `path` to existing directories, refusing symlinks and
    /// non-directories on the way. The file itself need not exist.
    pub fn resolve(&self, path: &RelPath) -> Result<FilePaths, RealizeError> {
        self.walk_parents(path, false)
    }

    /// Like [`Root::resolve`], creating the missing parent directories.
    pub fn resolve_creating(&self, path: &RelPath) -> Result<FilePaths, RealizeError> {
        self.walk_parents(path, true)
    }

    fn walk_parents(&self, path: &RelPath, create: bool) -> Result<FilePaths, RealizeError> {
        let mut parent = self.path.clone();
        if let Some(dirs) = path.parent() {
            for component in dirs.split('/') {
                parent.push(component);
                check_directory(&parent, path, create)?;
            }
        }
        let name = path.file_name();
        let partial_name = format!(".{name}{PARTIAL_SUFFIX}");
        if partial_name.len() > crate::model::MAX_COMPONENT_LEN {
            return Err(RealizeError::new(
                ErrorKind::InvalidPath,
                format!("{path}: name too long to have a partial file"),
            ));
        }
        Ok(FilePaths {
            final_path: parent.join(name),
            partial_path: parent.join(partial_name),
            parent,
        })
    }
}

fn check_directory(dir: &Path, path: &RelPath, create: bool) -> Result<(), RealizeError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(RealizeError::new(
            ErrorKind::InvalidPath,
            format!("{path}: leads through a symbolic link, which is never followed"),
        )),
        Ok(m) if !m.is_dir() => Err(RealizeError::new(
            ErrorKind::NotAFile,
            format!("{path}: a parent is not a directory"),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => match fs::create_dir(dir) {
            // The new entry must be durable before files renamed into it are.
            Ok(()) => sync_parent(dir).map_err(|e| RealizeError::io(path, &e)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_directory(dir, path, false),
            Err(e) => Err(RealizeError::io(path, &e)),
        },
        Err(e) => Err(RealizeError::io(path, &e)),
    }
}

fn sync_parent(dir: &Path) -> io::Result<()> {
    match dir.parent() {
        Some(parent) => fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Checks that `path` is a regular file (not a symlink) and returns its
/// metadata.
pub fn regular_file(path: &Path, display: &RelPath) -> Result<fs::Metadata, RealizeError> {
    let metadata = fs::symlink_metadata(path).map_err(|e| RealizeError::io(display, &e))?;
    if metadata.file_type().is_symlink() {
        return Err(RealizeError::new(
            ErrorKind::InvalidPath,
            format!("{display}: is a symbolic link, which is never followed"),
        ));
    }
    if !metadata.is_file() {
        return Err(RealizeError::new(
            ErrorKind::NotAFile,
            format!("{display}: not a regular file"),
        ));
    }
    Ok(metadata)
}

/// If `name` is the name of a partial file, the final name it stands for.
pub fn final_name_of_partial(name: &str) -> Option<&str> {
    name.strip_prefix('.')?
        .strip_suffix(PARTIAL_SUFFIX)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names() {
        assert_eq!(final_name_of_partial(".a.txt.part"), Some("a.txt"));
        assert_eq!(final_name_of_partial(".part"), None);
        assert_eq!(final_name_of_partial("..part"), None);
        assert_eq!(final_name_of_partial("a.part"), None);
    }

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
    }

    #[test]
    fn missing_parents_are_created_inside_root() {
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        let paths = root
            .resolve_creating(&RelPath::new("a/b/c").unwrap())
            .unwrap();
        assert!(root_dir.path().join("a/b").is_dir());
        assert!(paths.partial_path.ends_with("a/b/.c.part"));
    }
}
