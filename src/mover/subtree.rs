//! Restricting a move to one file or subtree of the directory: both sides
//! are listed whole, then only what lies at or under the subpath is kept, so
//! paths stay relative to the directory's root and a restricted move
//! verifies, resumes and lands exactly as a whole-directory move does.

use super::{Listings, MoveFileError, Side};
use crate::model::{FileEntry, RelPath, Skipped};
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::Listing;

/// Keeps only what lies at or under `under` in both listings: a file
/// outside it is neither moved nor deleted nor reported. The source must
/// hold something there (a file, a folder with files, or an entry it
/// skips), else the subpath is an error that names it.
pub(super) fn restrict(listings: Listings, under: &RelPath) -> Result<Listings, MoveFileError> {
    let (source, destination) = listings;
    let source = existing_under(source, under).map_err(|source| MoveFileError::Service {
        side: Side::Source,
        source,
    })?;
    Ok((source, keep_under(destination, under)))
}

/// What `listing` holds at or under `under`, which must hold something (a
/// file, a folder with files, or an entry the listing skips).
pub(crate) fn existing_under(listing: Listing, under: &RelPath) -> Result<Listing, RealizeError> {
    let kept = keep_under(listing, under);
    match kept.files.is_empty() && kept.skipped.is_empty() {
        true => Err(RealizeError::new(
            ErrorKind::NotFound,
            format!("{under} does not exist in the source directory"),
        )),
        false => Ok(kept),
    }
}

fn keep_under(listing: Listing, under: &RelPath) -> Listing {
    Listing {
        files: listing
            .files
            .into_iter()
            .filter(|file: &FileEntry| is_under(file.path.as_str(), under))
            .collect(),
        skipped: listing
            .skipped
            .into_iter()
            .filter(|skipped: &Skipped| is_under(&skipped.path, under))
            .collect(),
    }
}

/// Whether `path` is `under` itself or lies inside it.
fn is_under(path: &str, under: &RelPath) -> bool {
    path.strip_prefix(under.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subpath_holds_itself_and_what_lies_inside_only() {
        let under = RelPath::new("photos/2024").unwrap();
        assert!(is_under("photos/2024", &under));
        assert!(is_under("photos/2024/a.jpg", &under));
        assert!(!is_under("photos/2024-old/a.jpg", &under));
        assert!(!is_under("photos/202", &under));
        assert!(!is_under("photos", &under));
    }
}
