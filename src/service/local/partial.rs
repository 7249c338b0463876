//! The bottom layer of writing: a transfer's partial file, opened for its
//! delta and written where the delta says.
//!
//! Opening checks that a resume still fits the file it was planned on,
//! drops any bytes past the delta's offset, and hashes the kept prefix once
//! (a plain resume), or leaves the whole file to be hashed at the end (a
//! resume that patches blocks inside the prefix). The streaming writer, the
//! gathering of small files and the finisher all write through a
//! [`PartialWrite`]; completing it is `completion`'s concern.
//!
//! A partial file is written only while it can become final. When another
//! transfer has already put a file at the final name that the plan does
//! not replace (the stream of a killed run finished after the next run
//! listed the destination), the bytes go nowhere: a partial file written
//! then could never be committed, and a crash before its removal would
//! leave it beside a moved file, where no later run looks.

use std::sync::Arc;

use bytes::Bytes;

use super::direct::{PartialFile, ALIGNMENT, DIRECT_MIN};
use super::place::{Partial, Place};
use crate::model::{ByteRange, Delta, FileStamp, RelPath, WritePlan};
use crate::protocol::{ErrorKind, RealizeError};

/// What a writer writes and how it completes.
#[derive(Clone)]
pub(super) struct WriteTarget {
    /// Where the file goes.
    pub place: Arc<Place>,
    /// What arrives, what it may replace, and the final file's metadata.
    pub plan: WritePlan,
}

impl WriteTarget {
    /// The path as the client named it, for messages.
    pub(super) fn display(&self) -> &RelPath {
        self.place.display()
    }

    /// Which bytes arrive, in order.
    pub(super) fn delta(&self) -> &Delta {
        &self.plan.delta
    }

    /// The complete file's size.
    pub(super) fn size(&self) -> u64 {
        self.plan.size
    }

    /// Whether a partial file of this transfer could still become final:
    /// not once another transfer has put a file there that the plan does
    /// not replace (which happens when the stream of a killed run outlives
    /// the run that moved the file), since committing it would then fail.
    pub(super) fn resumable(&self) -> bool {
        self.place
            .final_stamp()
            .is_ok_and(|there| self.may_replace(there.as_ref()))
    }

    /// Whether [`Place::commit`] would put this transfer's file over
    /// `there`, what the final name holds: nothing, or the file the plan
    /// replaces (nothing any more counts too).
    fn may_replace(&self, there: Option<&FileStamp>) -> bool {
        match (there, self.plan.replaces.as_ref()) {
            (None, _) => true,
            (Some(there), Some(listed)) => there == listed,
            (Some(_), None) => false,
        }
    }
}

/// Opens the partial file; returns it with the running hash of its kept
/// prefix, or `None` when the whole file will be hashed at the end.
fn prepare(target: &WriteTarget) -> Result<(Partial, Option<blake3::Hasher>), RealizeError> {
    use std::io::Read;
    let (place, display, delta) = (&target.place, target.display(), target.delta());
    let io = |e| RealizeError::io(display, &e);
    let file = place.open_partial_for_write()?;
    let kept = file.opened_len();
    if kept < delta.offset {
        // The file this resume was planned on is gone (an older transfer
        // made it final meanwhile): an empty one made by this open is not
        // left behind.
        if kept == 0 {
            place.remove_partial(&file)?;
        }
        return Err(RealizeError::new(
            ErrorKind::Protocol,
            format!(
                "{display}: cannot resume at {}, the partial file has {kept} bytes",
                delta.offset
            ),
        ));
    }
    if kept > delta.offset {
        file.set_len(delta.offset).map_err(io)?;
    }
    if !delta.patches.is_empty() {
        return Ok((file, None));
    }
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut (&*file).take(delta.offset), &mut hasher).map_err(io)?;
    Ok((file, Some(hasher)))
}

/// Where the next received byte goes: the patches, then the tail.
struct Cursor {
    segments: std::vec::IntoIter<ByteRange>,
    current: Option<ByteRange>,
}

impl Cursor {
    fn new(delta: &Delta, size: u64) -> Self {
        let tail = ByteRange {
            start: delta.offset,
            len: size - delta.offset,
        };
        let mut segments: Vec<_> = delta.patches.clone();
        segments.push(tail);
        let mut segments = segments.into_iter();
        let current = segments.next();
        Self { segments, current }
    }

    /// Writes `data` at the cursor and advances it. Fails if more arrives
    /// than the delta announced.
    fn write(
        &mut self,
        file: &mut PartialFile,
        mut data: &[u8],
        display: &RelPath,
    ) -> Result<(), RealizeError> {
        while !data.is_empty() {
            let Some(segment) = self.current.as_mut().filter(|s| s.len > 0) else {
                self.current = self.segments.next();
                if self.current.is_none() {
                    let message = format!("{display}: received more than the announced bytes");
                    return Err(RealizeError::new(ErrorKind::Protocol, message));
                }
                continue;
            };
            let n = (segment.len as usize).min(data.len());
            file.write_all_at(&data[..n], segment.start)
                .map_err(|e| RealizeError::io(display, &e))?;
            segment.start += n as u64;
            segment.len -= n as u64;
            data = &data[n..];
        }
        Ok(())
    }
}

/// What a transfer writes into, and what is known of it so far.
pub(super) struct PartialWrite {
    /// The partial file, or `None` when the bytes go nowhere (see the
    /// module's documentation).
    sink: Option<Sink>,
    /// Bytes received so far.
    written: u64,
    /// After the first failure, data is dropped unwritten and the failure
    /// is the answer to `finish`. The partial file keeps what was written.
    failure: Option<RealizeError>,
}

/// The partial file being written.
struct Sink {
    file: PartialFile,
    /// The running hash, or `None` when the whole file is hashed at the end.
    hasher: Option<blake3::Hasher>,
    cursor: Cursor,
}

/// A transfer that received every announced byte.
pub(super) enum Written {
    /// Each byte is in the partial file (boxed: its hasher is large).
    Partial(Box<WrittenPartial>),
    /// The bytes went nowhere: another transfer's file stands at the final
    /// name (see the module's documentation).
    Nowhere,
}

/// A partial file that received every announced byte, each written.
pub(super) struct WrittenPartial {
    /// The file, holding every byte written.
    pub file: Partial,
    /// The running hash, or `None` when the whole file is hashed at the end.
    pub hasher: Option<blake3::Hasher>,
}

impl PartialWrite {
    /// Opens the partial file of `target`: creates it or checks that a
    /// resume fits it, cuts it to the delta's offset and hashes what it
    /// keeps (unless patches make the whole file be hashed at the end).
    /// Writes nowhere if the partial file could never be committed (see
    /// [`WriteTarget::resumable`]).
    pub(super) fn open(target: &WriteTarget) -> Result<Self, RealizeError> {
        // Fails early when something other than a regular file stands there.
        let there = target.place.final_stamp()?;
        let sink = if target.may_replace(there.as_ref()) {
            let (file, hasher) = prepare(target)?;
            Some(Sink {
                file: PartialFile::new(file, direct_from(target)),
                hasher,
                cursor: Cursor::new(target.delta(), target.size()),
            })
        } else {
            None
        };
        Ok(Self {
            sink,
            written: 0,
            failure: None,
        })
    }

    /// Opens the partial file of `target` and writes `pieces` into it.
    pub(super) fn of_pieces(
        target: &WriteTarget,
        pieces: Vec<Bytes>,
    ) -> Result<Self, RealizeError> {
        let mut progress = Self::open(target)?;
        for piece in pieces {
            progress.write(&piece, target.display());
        }
        Ok(progress)
    }

    /// Hashes and writes the next received bytes, unless a write failed.
    pub(super) fn write(&mut self, chunk: &[u8], display: &RelPath) {
        if self.failure.is_some() {
            return;
        }
        self.written += chunk.len() as u64;
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        if let Some(hasher) = sink.hasher.as_mut() {
            hasher.update(chunk);
        }
        if let Err(e) = sink.cursor.write(&mut sink.file, chunk, display) {
            self.failure = Some(e);
        }
    }

    /// Ends the writing: fails with the first write failure, or if other
    /// than the announced bytes arrived; else returns the file holding
    /// every byte written, or says they went nowhere.
    pub(super) fn written(self, target: &WriteTarget) -> Result<Written, RealizeError> {
        let display = target.display();
        let expected_len = target.delta().payload_len(target.size());
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        if self.written != expected_len {
            return Err(RealizeError::new(
                ErrorKind::Protocol,
                format!(
                    "{display}: expected {expected_len} bytes, received {}",
                    self.written
                ),
            ));
        }
        let Some(mut sink) = self.sink else {
            return Ok(Written::Nowhere);
        };
        sink.file
            .finish_writes()
            .map_err(|e| RealizeError::io(display, &e))?;
        Ok(Written::Partial(Box::new(WrittenPartial {
            file: sink.file.into_partial(),
            hasher: sink.hasher,
        })))
    }

    /// Leaves the partial file with what arrived, for a later resume; or
    /// removes it if no run can resume it (see [`WriteTarget::resumable`]).
    pub(super) fn abandon(self, target: &WriteTarget) {
        let path = target.display();
        let Some(mut sink) = self.sink else {
            return;
        };
        if !target.resumable() {
            // No run can resume it: the name holds another file now.
            if let Err(e) = target.place.remove_partial(&sink.file.discard_staged()) {
                tracing::warn!(%path, "cannot remove a partial file no run can resume: {e}");
            }
            return;
        }
        if let Err(e) = sink.file.finish_writes() {
            tracing::warn!(%path, "partial file may be missing its last bytes: {e}");
        }
    }
}

/// Where to start writing past the page cache, if at all: a plain copy or
/// resume whose bytes to come are many and start at an aligned offset.
fn direct_from(target: &WriteTarget) -> Option<u64> {
    let delta = target.delta();
    let wanted = delta.patches.is_empty()
        && delta.offset.is_multiple_of(ALIGNMENT as u64)
        && target.size() - delta.offset >= DIRECT_MIN;
    wanted.then_some(delta.offset)
}
