//! Writing a file into its partial file on a blocking thread, hashing what is
//! written, then making it durable and final.
//!
//! A large file (whatever it receives: a resume hashes its kept prefix too)
//! gets a thread of its own that writes the pieces as they arrive. A small
//! one is gathered in memory and handed whole to the [`Finisher`] when it
//! finishes, which completes small files in batches: with thousands of
//! small files, per-file hand-offs between threads and per-file journal
//! commits would cost more than the writing.
//!
//! A fresh copy (`Delta::full`) and a plain resume (no patches) are hashed
//! as they are written, the kept prefix being read once at open. A resume
//! that patches blocks inside the kept prefix is hashed by reading the whole
//! file back at the end, so the final hash always covers the whole file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};

use super::direct::{PartialFile, ALIGNMENT, DIRECT_MIN};
use super::durability::DirSyncer;
use super::exclusive::PartialClaim;
use super::finisher::Finisher;
use super::on_blocking_thread;
use super::place::{apply_attributes, Partial, Place};
use crate::model::{ByteRange, Delta, Hash, RelPath, WritePlan};
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::{FileWriter, ServiceError};

/// Chunks queued for the writing thread.
const WRITE_BEHIND: usize = 2;

/// Files of at most this many bytes are gathered in memory and handed to
/// the shared [`Finisher`] when they finish. The finisher hashes the whole
/// file, a resume's kept prefix included, so the bound is on the file's
/// size, not on the bytes it receives: a resume of a large partial file
/// that receives a few bytes hashes its whole prefix on a thread of its
/// own, and never holds up the small files of every peer.
const GATHERED_MAX: u64 = 64 * 1024;

enum Command {
    Data(Bytes),
    Finish(Hash, oneshot::Sender<Result<Hash, RealizeError>>),
}

/// What a [`LocalWriter`] writes and how it completes.
#[derive(Clone)]
pub struct WriteTarget {
    /// Where the file goes.
    pub place: Arc<Place>,
    /// What arrives, what it may replace, and the final file's metadata.
    pub plan: WritePlan,
}

impl WriteTarget {
    /// The path as the client named it, for messages.
    pub fn display(&self) -> &RelPath {
        self.place.display()
    }

    /// Which bytes arrive, in order.
    fn delta(&self) -> &Delta {
        &self.plan.delta
    }

    /// The complete file's size.
    fn size(&self) -> u64 {
        self.plan.size
    }
}

/// A partial file being written, which holds the file's [`PartialClaim`]
/// until it is written and closed.
pub struct LocalWriter {
    sink: Sink,
    display: RelPath,
    superseded: Arc<Notify>,
}

/// Where a [`LocalWriter`]'s pieces go.
enum Sink {
    /// To the blocking thread that writes them as they arrive.
    Thread(mpsc::Sender<Command>),
    /// Into memory, written when the file finishes.
    Gathered(Box<Gathered>),
}

/// A small file's pieces, gathered until it finishes.
struct Gathered {
    target: WriteTarget,
    /// Taken when the file is finished or abandoned.
    claim: Option<PartialClaim>,
    finisher: Finisher,
    pieces: Vec<Bytes>,
    len: u64,
}

impl LocalWriter {
    /// Opens the partial file (creating it, keeping the bytes before the
    /// delta's offset, dropping any after) and starts the writing thread,
    /// which makes it final through `syncer`; for a small file, only gets
    /// ready to gather its pieces for `finisher`.
    pub async fn open(
        target: WriteTarget,
        claim: PartialClaim,
        syncer: Arc<DirSyncer>,
        finisher: &Finisher,
    ) -> Result<Self, RealizeError> {
        let display = target.display().clone();
        let superseded = claim.superseded_signal();
        let sink = if target.size() <= GATHERED_MAX {
            Sink::Gathered(Box::new(Gathered {
                target,
                claim: Some(claim),
                finisher: finisher.clone(),
                pieces: Vec::new(),
                len: 0,
            }))
        } else {
            Sink::Thread(start_thread(target, claim, syncer).await?)
        };
        Ok(Self {
            sink,
            display,
            superseded,
        })
    }

    /// Completes when a newer transfer of the same file wants it; the caller
    /// should then drop this writer (the partial file keeps what was written).
    pub async fn superseded(&self) {
        self.superseded.notified().await;
    }
}

/// Opens the partial file and starts the thread that writes it.
async fn start_thread(
    target: WriteTarget,
    claim: PartialClaim,
    syncer: Arc<DirSyncer>,
) -> Result<mpsc::Sender<Command>, RealizeError> {
    let (target, progress) = on_blocking_thread(move || {
        let progress = Progress::open(&target)?;
        Ok((target, progress))
    })
    .await?;
    let (commands, rx) = mpsc::channel(WRITE_BEHIND);
    tokio::task::spawn_blocking(move || {
        write_loop(progress, &target, rx, &syncer);
        drop(claim); // Only now may another writer open the file.
    });
    Ok(commands)
}

impl Gathered {
    /// Keeps `chunk`; fails if more arrives than the delta announced.
    fn push(&mut self, chunk: Bytes) -> Result<(), RealizeError> {
        self.len += chunk.len() as u64;
        if self.len > self.target.delta().payload_len(self.target.size()) {
            let message = format!(
                "{}: received more than the announced bytes",
                self.target.display()
            );
            return Err(RealizeError::new(ErrorKind::Protocol, message));
        }
        self.pieces.push(chunk);
        Ok(())
    }

    /// Has the finisher write the gathered pieces and complete the file.
    async fn finish(mut self: Box<Self>, expected: Hash) -> Result<Hash, RealizeError> {
        let pieces = std::mem::take(&mut self.pieces);
        let claim = self.claim.take().expect("a gathered file is finished once");
        let target = self.target.clone();
        self.finisher.finish(target, pieces, expected, claim).await
    }
}

impl Drop for Gathered {
    /// A transfer that stops before its end leaves what arrived in the
    /// partial file for a later resume, as a large file's thread does.
    fn drop(&mut self) {
        if self.pieces.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (target, pieces, claim) = (
            self.target.clone(),
            std::mem::take(&mut self.pieces),
            self.claim.take(),
        );
        runtime.spawn_blocking(move || {
            match write_pieces(&target, pieces) {
                Ok(progress) => progress.abandon(target.display()),
                Err(e) => {
                    tracing::warn!(path = %target.display(), "the bytes that arrived are lost: {e}")
                }
            }
            drop(claim);
        });
    }
}

/// Opens the partial file of `target` and writes `pieces` into it.
fn write_pieces(target: &WriteTarget, pieces: Vec<Bytes>) -> Result<Progress, RealizeError> {
    let mut progress = Progress::open(target)?;
    for piece in pieces {
        progress.write(&piece, target.display());
    }
    Ok(progress)
}

/// Opens the partial file; returns it with the running hash of its kept
/// prefix, or `None` when the whole file will be hashed at the end.
fn prepare(target: &WriteTarget) -> Result<(Partial, Option<blake3::Hasher>), RealizeError> {
    let (place, display, delta) = (&target.place, target.display(), target.delta());
    // Fails early when something other than a regular file stands there.
    place.final_stamp()?;
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

/// The partial file being written, and what is known of it so far.
struct Progress {
    file: PartialFile,
    /// The running hash, or `None` when the whole file is hashed at the end.
    hasher: Option<blake3::Hasher>,
    cursor: Cursor,
    written: u64,
    /// After the first failure, data is dropped unwritten and the failure
    /// is the answer to `finish`. The partial file keeps what was written.
    failure: Option<RealizeError>,
}

impl Progress {
    /// Opens the partial file of `target`: see [`prepare`].
    fn open(target: &WriteTarget) -> Result<Self, RealizeError> {
        let (file, hasher) = prepare(target)?;
        Ok(Self {
            file: PartialFile::new(file, direct_from(target)),
            hasher,
            cursor: Cursor::new(target.delta(), target.size()),
            written: 0,
            failure: None,
        })
    }

    /// Hashes and writes the next received bytes, unless a write failed.
    fn write(&mut self, chunk: &[u8], display: &RelPath) {
        if self.failure.is_some() {
            return;
        }
        self.written += chunk.len() as u64;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(chunk);
        }
        if let Err(e) = self.cursor.write(&mut self.file, chunk, display) {
            self.failure = Some(e);
        }
    }

    /// Checks that every announced byte arrived and that the whole file
    /// hashes to `expected`; returns the file, written but not yet durable.
    fn verified(mut self, target: &WriteTarget, expected: Hash) -> Result<Partial, RealizeError> {
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
        self.file
            .finish_writes()
            .map_err(|e| RealizeError::io(display, &e))?;
        let actual = whole_hash(self.file.file(), self.hasher, target.size(), display)?;
        if actual != expected {
            return Err(RealizeError::new(
                ErrorKind::HashMismatch,
                format!("{display}: received data hashes to {actual}, the source to {expected}"),
            ));
        }
        let file = self.file.into_partial();
        apply_attributes(&file, &target.plan.attributes)
            .map_err(|e| RealizeError::io(display, &e))?;
        Ok(file)
    }

    /// Verifies the file (see [`Progress::verified`]), makes it durable and
    /// renames it into place, and makes the rename durable.
    fn finish(
        self,
        target: &WriteTarget,
        expected: Hash,
        syncer: &DirSyncer,
    ) -> Result<Hash, RealizeError> {
        let file = self.verified(target, expected)?;
        sync_and_rename(&file, target, &expected)?;
        syncer
            .rename_done(target.place.dir())
            .map_err(|e| RealizeError::io(target.display(), &e))?;
        Ok(expected)
    }

    /// Leaves the partial file with what arrived, for a later resume.
    fn abandon(mut self, path: &RelPath) {
        if let Err(e) = self.file.finish_writes() {
            tracing::warn!(%path, "partial file may be missing its last bytes: {e}");
        }
    }
}

/// The writing thread of a large file: writes pieces until told to finish.
fn write_loop(
    mut progress: Progress,
    target: &WriteTarget,
    mut rx: mpsc::Receiver<Command>,
    syncer: &DirSyncer,
) {
    while let Some(command) = rx.blocking_recv() {
        match command {
            Command::Data(chunk) => progress.write(&chunk, target.display()),
            Command::Finish(expected, reply) => {
                let _ = reply.send(progress.finish(target, expected, syncer));
                return;
            }
        }
    }
    // The sender went away without finishing.
    progress.abandon(target.display());
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

/// The hash of the whole written file: the running hash, or a read-back
/// when blocks inside the file were patched.
fn whole_hash(
    file: &File,
    hasher: Option<blake3::Hasher>,
    size: u64,
    display: &RelPath,
) -> Result<Hash, RealizeError> {
    if let Some(hasher) = hasher {
        return Ok(hasher.finalize().into());
    }
    let io = |e| RealizeError::io(display, &e);
    let mut file = file;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    let mut reader = std::io::BufReader::with_capacity(super::CHUNK_SIZE, file).take(size);
    std::io::copy(&mut reader, &mut hasher).map_err(io)?;
    Ok(hasher.finalize().into())
}

/// Writes `pieces`, all the bytes of a small file, into the partial file of
/// `target` and verifies it (see [`Progress::verified`]).
pub(super) fn write_verified(
    target: &WriteTarget,
    pieces: Vec<Bytes>,
    expected: Hash,
) -> Result<Partial, RealizeError> {
    write_pieces(target, pieces)?.verified(target, expected)
}

/// Makes the verified partial file's data and metadata durable, then
/// renames it into place (see [`Place::commit`]). The rename is durable
/// once its directory is synced.
fn sync_and_rename(
    file: &Partial,
    target: &WriteTarget,
    expected: &Hash,
) -> Result<(), RealizeError> {
    file.sync_all()
        .map_err(|e| RealizeError::io(target.display(), &e))?;
    commit(file, target, expected)
}

/// Renames the partial file into place (see [`Place::commit`]). A name
/// taken meanwhile by the very content verified (an older transfer of the
/// same file, left running by a killed command, finished first) is success
/// too: see [`Place::settle_identical`].
pub(super) fn commit(
    file: &Partial,
    target: &WriteTarget,
    expected: &Hash,
) -> Result<(), RealizeError> {
    let place = &target.place;
    match place.commit(file, target.plan.replaces.as_ref()) {
        Err(e)
            if e.kind == ErrorKind::DestinationChanged
                && place.settle_identical(file, expected, &target.plan.attributes)? =>
        {
            Ok(())
        }
        other => other,
    }
}

#[async_trait]
impl FileWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ServiceError> {
        match &mut self.sink {
            Sink::Thread(commands) => commands
                .send(Command::Data(chunk))
                .await
                .map_err(|_| stopped(&self.display)),
            Sink::Gathered(gathered) => Ok(gathered.push(chunk)?),
        }
    }

    async fn finish(self: Box<Self>, expected: Hash) -> Result<Hash, ServiceError> {
        let commands = match self.sink {
            Sink::Thread(commands) => commands,
            Sink::Gathered(gathered) => return Ok(gathered.finish(expected).await?),
        };
        let (reply, result) = oneshot::channel();
        commands
            .send(Command::Finish(expected, reply))
            .await
            .map_err(|_| stopped(&self.display))?;
        Ok(result.await.map_err(|_| stopped(&self.display))??)
    }
}

/// The error of a writer whose thread is gone.
fn stopped(display: &RelPath) -> ServiceError {
    RealizeError::new(
        ErrorKind::Io,
        format!("{display}: the writing thread stopped"),
    )
    .into()
}
