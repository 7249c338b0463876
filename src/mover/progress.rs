//! How [`super::move_files`] reports what it does, for a display or a test.
//!
//! The mover calls [`Progress`] once per run and hands each file its own
//! [`FileProgress`]. Files move in parallel, so several `FileProgress` are
//! live at once; each receives its calls in order:
//!
//! ```text
//! for_file ─┬─ verifying ─┬─ deleting ─ success          (identical copy there)
//!           │             └─ moving ─ inc… ─ verifying ─ deleting ─ success
//!           ├─ resuming ─ moving ─ inc… ─ verifying ─ deleting ─ success
//!           └─ moving ─ inc… ─ verifying ─ deleting ─ success
//!  (`replacing` comes before `moving` when a different file is replaced)
//!  (any step may end in `error` instead; exactly one of success/error ends a file)
//! ```

use super::{LeftOut, MoveFileError, Plan};
use crate::model::{RelPath, Skipped};

/// Receives the progress of a whole move.
pub(crate) trait Progress: Send {
    /// Once the source is listed: how many files and bytes will be moved.
    fn set_length(&mut self, total_files: usize, total_bytes: u64);

    /// Something in the source is not moved (symlink, special file, empty
    /// directory, unreadable directory, reserved name).
    fn skipped(&mut self, entry: &Skipped);

    /// A source entry is left out by the user's choice (`--exclude`,
    /// `--min-age`): it is neither moved nor deleted.
    fn left_out(&mut self, path: &str, why: LeftOut);

    /// A file starts; the returned handle follows it to its end.
    fn for_file(&mut self, path: &RelPath, bytes: u64) -> Box<dyn FileProgress>;

    /// An error not tied to a file (listing failed, connection lost).
    fn error(&mut self, err: &MoveFileError);

    /// Something the user should know before files move (names that clash
    /// on some destinations).
    fn warn(&mut self, message: &str);

    /// A dry run: what a move would do with the file at `path` of `bytes`
    /// bytes. A dry run calls this instead of [`Progress::set_length`] and
    /// [`Progress::for_file`].
    fn planned(&mut self, path: &RelPath, bytes: u64, plan: Plan);

    /// A dry run could not tell what a move would do with the file at
    /// `path` (a hash failed): a move would fail there too.
    fn plan_failed(&mut self, path: &RelPath, err: &MoveFileError);
}

/// Receives the progress of one file.
pub(crate) trait FileProgress: Send {
    /// Hashing to compare an existing destination copy, or waiting for the
    /// destination to verify and make the file durable.
    fn verifying(&mut self);

    /// A partial file at the destination is being verified block by block;
    /// `kept` of its bytes are already there and need not all be sent again.
    fn resuming(&mut self, kept: u64);

    /// The destination holds a different file at this name, which the move
    /// replaces (as `rsync` and `rclone` do); a display says so.
    fn replacing(&mut self) {}

    /// File data is being sent.
    fn moving(&mut self);

    /// `bytes` more bytes of this file crossed to the destination.
    fn inc(&mut self, bytes: u64);

    /// The destination copy is final; the source copy is being deleted.
    fn deleting(&mut self);

    /// The file is at the destination, durable and verified, and the source
    /// copy is gone.
    fn success(&mut self);

    /// Moving the file failed; the source copy is kept.
    fn error(&mut self, err: &MoveFileError);
}

/// Progress that shows nothing, for tests without a display.
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NoProgress;

#[cfg(test)]
impl Progress for NoProgress {
    fn set_length(&mut self, _total_files: usize, _total_bytes: u64) {}
    fn skipped(&mut self, _entry: &Skipped) {}
    fn left_out(&mut self, _path: &str, _why: LeftOut) {}
    fn for_file(&mut self, _path: &RelPath, _bytes: u64) -> Box<dyn FileProgress> {
        Box::new(NoProgress)
    }
    fn error(&mut self, _err: &MoveFileError) {}
    fn warn(&mut self, _message: &str) {}
    fn planned(&mut self, _path: &RelPath, _bytes: u64, _plan: Plan) {}
    fn plan_failed(&mut self, _path: &RelPath, _err: &MoveFileError) {}
}

#[cfg(test)]
impl FileProgress for NoProgress {
    fn verifying(&mut self) {}
    fn resuming(&mut self, _kept: u64) {}
    fn moving(&mut self) {}
    fn inc(&mut self, _bytes: u64) {}
    fn deleting(&mut self) {}
    fn success(&mut self) {}
    fn error(&mut self, _err: &MoveFileError) {}
}
