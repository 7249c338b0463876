//! Gathering a daemon's listing, within bounds no honest listing reaches,
//! so a daemon cannot make the command hold unbounded memory.

use crate::model::MAX_PATH_LEN;
use crate::protocol::ListItem;
use crate::service::{Listing, ServiceError};
use crate::transport::TransportError;

/// What the command accepts from one daemon's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListingBounds {
    /// Entries, files and skipped together.
    pub entries: usize,
    /// Path bytes of all entries together.
    pub path_bytes: usize,
    /// Bytes of one path.
    pub path_len: usize,
}

impl ListingBounds {
    /// The bounds of every listing the command gathers from a daemon:
    /// 10,000,000 entries, 1 GiB of paths, 4096 bytes a path.
    pub(super) const COMMAND: Self = Self {
        entries: 10_000_000,
        path_bytes: 1 << 30,
        path_len: MAX_PATH_LEN,
    };
}

/// A listing being received, frame by frame.
#[derive(Debug)]
pub(super) struct Gathering {
    listing: Listing,
    entries: usize,
    path_bytes: usize,
    bounds: ListingBounds,
}

impl Gathering {
    /// Nothing received yet.
    pub(super) fn new(bounds: ListingBounds) -> Self {
        Self {
            listing: Listing::default(),
            entries: 0,
            path_bytes: 0,
            bounds,
        }
    }

    /// Takes in one frame: the whole listing, in path order, once it ends;
    /// `None` while more is to come; an error when the daemon failed the
    /// listing or went beyond the bounds. A frame is checked before it is
    /// kept.
    pub(super) fn add(&mut self, item: ListItem) -> Result<Option<Listing>, ServiceError> {
        match item {
            ListItem::Files(files) => {
                self.admit(files.iter().map(|f| f.path.as_str().len()))?;
                self.listing.files.extend(files);
            }
            ListItem::Skipped(skipped) => {
                self.admit(skipped.iter().map(|s| s.path.len()))?;
                self.listing.skipped.extend(skipped);
            }
            ListItem::End(result) => {
                result?;
                let mut listing = std::mem::take(&mut self.listing);
                listing.sort();
                return Ok(Some(listing));
            }
        }
        Ok(None)
    }

    /// Counts the entries of one frame, given their path lengths.
    fn admit(&mut self, path_lens: impl Iterator<Item = usize>) -> Result<(), ServiceError> {
        let bounds = self.bounds;
        for len in path_lens {
            if len > bounds.path_len {
                return Err(refused(format!(
                    "a path of {len} bytes; a path has at most {}",
                    bounds.path_len
                )));
            }
            self.entries += 1;
            self.path_bytes += len;
            if self.entries > bounds.entries {
                return Err(refused(format!("more than {} entries", bounds.entries)));
            }
            if self.path_bytes > bounds.path_bytes {
                return Err(refused(format!(
                    "more than {} bytes of paths",
                    bounds.path_bytes
                )));
            }
        }
        Ok(())
    }
}

/// The error of a listing beyond the bounds.
fn refused(what: String) -> ServiceError {
    let message =
        format!("the daemon's listing holds {what}, beyond what the command accepts from a daemon");
    TransportError::Protocol(message).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FileEntry, FileStamp, FileState, Owner, RelPath, SkipReason, Skipped};
    use crate::protocol::{ErrorKind, RealizeError};

    fn file(path: &str) -> FileEntry {
        FileEntry {
            path: RelPath::new(path).unwrap(),
            state: FileState::Final,
            stamp: FileStamp {
                size: 1,
                modified_ns: 0,
                inode: 1,
                changed_ns: 0,
                mode: 0o644,
                owner: Owner { uid: 0, gid: 0 },
            },
        }
    }

    fn skipped(path: String) -> Skipped {
        Skipped {
            path,
            reason: SkipReason::Symlink,
        }
    }

    /// The error the frames end in, as the user reads it.
    fn refusal(bounds: ListingBounds, frames: Vec<ListItem>) -> String {
        let mut gathering = Gathering::new(bounds);
        for frame in frames {
            match gathering.add(frame) {
                Ok(None) => {}
                Ok(Some(listing)) => panic!("accepted: {} files", listing.files.len()),
                Err(e) => return e.to_string(),
            }
        }
        panic!("no error and no end")
    }

    const SMALL: ListingBounds = ListingBounds {
        entries: 5,
        path_bytes: 40,
        path_len: 10,
    };

    #[test]
    fn an_honest_listing_is_gathered_whole_and_a_failed_one_fails() {
        let mut gathering = Gathering::new(SMALL);
        let frames = [
            ListItem::Files(vec![file("d"), file("b/c")]),
            ListItem::Skipped(vec![skipped("link".into())]),
            ListItem::Files(vec![file("a")]),
        ];
        for frame in frames {
            assert!(gathering.add(frame).unwrap().is_none());
        }
        let listing = gathering.add(ListItem::End(Ok(()))).unwrap().unwrap();
        let paths: Vec<_> = listing.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a", "b/c", "d"], "in path order");
        assert_eq!(listing.skipped.len(), 1);
        let failed = RealizeError::new(ErrorKind::UnknownDirectory, "no such directory");
        let mut gathering = Gathering::new(SMALL);
        let err = gathering.add(ListItem::End(Err(failed))).unwrap_err();
        assert!(err.to_string().contains("no such directory"), "{err}");
    }

    #[test]
    fn more_entries_than_the_bound_are_refused() {
        let frames = vec![
            ListItem::Files(vec![file("a"), file("b"), file("c")]),
            ListItem::Skipped(vec![skipped("d".into()), skipped("e".into())]),
            ListItem::Files(vec![file("f")]),
        ];
        let err = refusal(SMALL, frames);
        assert!(err.contains("more than 5 entries"), "{err}");
    }

    #[test]
    fn more_path_bytes_than_the_bound_are_refused() {
        let frames = vec![
            ListItem::Files(vec![file("aaaaaaaaa"), file("bbbbbbbbb")]),
            ListItem::Skipped(vec![skipped("ccccccccc".into())]),
            ListItem::Files(vec![file("ddddddddd"), file("eeeee")]),
        ];
        let err = refusal(SMALL, frames);
        assert!(err.contains("more than 40 bytes of paths"), "{err}");
    }

    #[test]
    fn a_skipped_path_longer_than_a_path_can_be_is_refused() {
        let long = "x".repeat(MAX_PATH_LEN + 1);
        let err = refusal(
            ListingBounds::COMMAND,
            vec![ListItem::Skipped(vec![skipped(long)])],
        );
        assert!(err.contains("a path of 4097 bytes"), "{err}");
        assert!(err.contains("at most 4096"), "{err}");
    }
}
