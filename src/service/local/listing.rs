//! Walking a root: regular files (final and partial) and what is skipped.

use std::fs;
use std::path::Path;

use super::root::final_name_of_partial;
use crate::model::{FileEntry, FileStamp, FileState, RelPath, SkipReason, Skipped};
use crate::protocol::RealizeError;
use crate::service::Listing;

/// Lists every regular file under `root`, never following symlinks.
pub fn list(root: &Path) -> Result<Listing, RealizeError> {
    let mut listing = Listing::default();
    walk(root, "", &mut listing)?;
    listing.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

fn walk(dir: &Path, prefix: &str, listing: &mut Listing) -> Result<(), RealizeError> {
    let display = if prefix.is_empty() { "." } else { prefix };
    let entries = fs::read_dir(dir).map_err(|e| RealizeError::io(display, &e))?;
    let mut empty = true;
    for entry in entries {
        empty = false;
        let entry = entry.map_err(|e| RealizeError::io(display, &e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            let path = join(prefix, &name.to_string_lossy());
            listing
                .skipped
                .push(skip(path, SkipReason::UnsupportedName));
            continue;
        };
        let path = join(prefix, name);
        let file_type = entry.file_type().map_err(|e| RealizeError::io(&path, &e))?;
        if file_type.is_dir() {
            walk(&entry.path(), &path, listing)?;
        } else if file_type.is_symlink() {
            listing.skipped.push(skip(path, SkipReason::Symlink));
        } else if !file_type.is_file() {
            listing.skipped.push(skip(path, SkipReason::Special));
        } else {
            let (final_path, state) = match final_name_of_partial(name) {
                Some(final_name) => (join(prefix, final_name), FileState::Partial),
                None => (path, FileState::Final),
            };
            let Ok(rel) = RelPath::new(final_path.clone()) else {
                listing
                    .skipped
                    .push(skip(final_path, SkipReason::UnsupportedName));
                continue;
            };
            let metadata = entry.metadata().map_err(|e| RealizeError::io(&rel, &e))?;
            listing.files.push(FileEntry {
                path: rel,
                state,
                stamp: FileStamp::from_metadata(&metadata),
            });
        }
    }
    if empty && !prefix.is_empty() {
        listing
            .skipped
            .push(skip(prefix.to_string(), SkipReason::EmptyDirectory));
    }
    Ok(())
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

    #[test]
    fn lists_files_partials_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::write(root.join("a/b/one"), b"1").unwrap();
        fs::write(root.join("a/.two.part"), b"22").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let listing = list(root).unwrap();
        let files: Vec<_> = listing
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.state, f.stamp.size))
            .collect();
        assert_eq!(
            files,
            vec![
                ("a/b/one", FileState::Final, 1),
                ("a/two", FileState::Partial, 2)
            ]
        );
        let mut skipped: Vec<_> = listing
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason))
            .collect();
        skipped.sort();
        assert_eq!(
            skipped,
            vec![
                ("empty", SkipReason::EmptyDirectory),
                ("link", SkipReason::Symlink)
            ]
        );
    }
}
