//! Writing a file into its partial file on a blocking thread, hashing what is
//! written, then making it durable and final.
//!
//! A fresh copy (`Delta::full`) and a plain resume (no patches) are hashed
//! as they are written, the kept prefix being read once at open. A resume
//! that patches blocks inside the kept prefix is hashed by reading the whole
//! file back at the end, so the final hash always covers the whole file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};

use super::direct::{PartialFile, ALIGNMENT, DIRECT_MIN};
use super::durability::DirSyncer;
use super::exclusive::PartialClaim;
use super::root::FilePaths;
use crate::model::{ByteRange, Delta, Hash, RelPath};
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::{FileWriter, ServiceError};

/// Chunks queued for the writing thread.
const WRITE_BEHIND: usize = 2;

enum Command {
    Data(Bytes),
    Finish(Hash, oneshot::Sender<Result<Hash, RealizeError>>),
}

/// What a [`LocalWriter`] writes and how it completes.
pub struct WriteTarget {
    /// The file's paths on disk.
    pub paths: FilePaths,
    /// The path as the client named it, for messages.
    pub display: RelPath,
    /// The complete file's size.
    pub size: u64,
    /// Which bytes arrive, in order.
    pub delta: Delta,
}

/// A partial file being written by a blocking thread, which holds the
/// file's [`PartialClaim`] until it exits.
pub struct LocalWriter {
    commands: mpsc::Sender<Command>,
    display: RelPath,
    superseded: Arc<Notify>,
}

impl LocalWriter {
    /// Opens the partial file (creating it, keeping the bytes before the
    /// delta's offset, dropping any after) and starts the writing thread.
    pub async fn open(
        target: WriteTarget,
        claim: PartialClaim,
        syncer: Arc<DirSyncer>,
    ) -> Result<Self, RealizeError> {
        let display = target.display.clone();
        let (target, file, hasher) = tokio::task::spawn_blocking(move || {
            let (file, hasher) = prepare(&target)?;
            Ok::<_, RealizeError>((target, file, hasher))
        })
        .await
        .map_err(|e| RealizeError::new(ErrorKind::Io, e.to_string()))??;
        let (commands, rx) = mpsc::channel(WRITE_BEHIND);
        let superseded = claim.superseded_signal();
        tokio::task::spawn_blocking(move || {
            write_loop(file, hasher, target, rx, &syncer);
            drop(claim); // Only now may another writer open the file.
        });
        Ok(Self {
            commands,
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

/// Opens the partial file; returns it with the running hash of its kept
/// prefix, or `None` when the whole file will be hashed at the end.
fn prepare(target: &WriteTarget) -> Result<(File, Option<blake3::Hasher>), RealizeError> {
    let (paths, display, delta) = (&target.paths, &target.display, &target.delta);
    if let Ok(m) = fs::symlink_metadata(&paths.final_path) {
        if !m.is_file() {
            return Err(RealizeError::new(
                ErrorKind::NotAFile,
                format!("{display}: something other than a regular file stands at the destination"),
            ));
        }
    }
    let io = |e| RealizeError::io(display, &e);
    let mut file = open_exclusive(&paths.partial_path, display)?;
    let kept = file.metadata().map_err(io)?.len();
    if kept < delta.offset {
        return Err(RealizeError::new(
            ErrorKind::Protocol,
            format!(
                "{display}: cannot resume at {}, the partial file has {kept} bytes",
                delta.offset
            ),
        ));
    }
    file.set_len(delta.offset).map_err(io)?;
    if !delta.patches.is_empty() {
        return Ok((file, None));
    }
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut (&mut file).take(delta.offset), &mut hasher).map_err(io)?;
    Ok((file, Some(hasher)))
}

/// Opens (creating) the partial file and locks it against writers in other
/// processes (another command, a daemon serving the same directory). The
/// lock lasts as long as the file stays open, until the writer is done.
fn open_exclusive(path: &std::path::Path, display: &RelPath) -> Result<File, RealizeError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let io = |e| RealizeError::io(display, &e);
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let message =
                format!("{display}: another process is writing this file; run again later");
            return Err(RealizeError::new(ErrorKind::Superseded, message));
        }
        // The other writer may have finished and renamed the file away
        // between our open and our lock: then start over on the new path.
        let still_there = fs::symlink_metadata(path).is_ok_and(|m| {
            file.metadata()
                .is_ok_and(|f| (f.dev(), f.ino()) == (m.dev(), m.ino()))
        });
        if still_there {
            return Ok(file);
        }
    }
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

fn write_loop(
    file: File,
    mut hasher: Option<blake3::Hasher>,
    target: WriteTarget,
    mut rx: mpsc::Receiver<Command>,
    syncer: &DirSyncer,
) {
    let display = &target.display;
    let expected_len = target.delta.payload_len(target.size);
    let mut file = PartialFile::new(file, direct_from(&target));
    let mut cursor = Cursor::new(&target.delta, target.size);
    let mut written = 0u64;
    // After the first failure, data is drained unwritten and the failure is
    // the answer to `Finish`. The partial file keeps what was written.
    let mut failure: Option<RealizeError> = None;
    while let Some(command) = rx.blocking_recv() {
        match command {
            Command::Data(_) if failure.is_some() => {}
            Command::Data(chunk) => {
                written += chunk.len() as u64;
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&chunk);
                }
                if let Err(e) = cursor.write(&mut file, &chunk, display) {
                    failure = Some(e);
                }
            }
            Command::Finish(expected, reply) => {
                let result = match failure {
                    Some(failure) => Err(failure),
                    None if written != expected_len => Err(RealizeError::new(
                        ErrorKind::Protocol,
                        format!("{display}: expected {expected_len} bytes, received {written}"),
                    )),
                    None => file
                        .finish_writes()
                        .map_err(|e| RealizeError::io(display, &e))
                        .and_then(|()| whole_hash(file.file(), hasher, target.size, display))
                        .and_then(|actual| {
                            complete(file.file(), &target, expected, actual, syncer)
                        }),
                };
                let _ = reply.send(result);
                return;
            }
        }
    }
    // The sender went away without finishing: the partial file keeps what
    // arrived, for a later resume.
    if let Err(e) = file.finish_writes() {
        tracing::warn!(path = %target.display, "partial file may be missing its last bytes: {e}");
    }
}

/// Where to start writing past the page cache, if at all: a plain copy or
/// resume whose bytes to come are many and start at an aligned offset.
fn direct_from(target: &WriteTarget) -> Option<u64> {
    let delta = &target.delta;
    let wanted = delta.patches.is_empty()
        && delta.offset % ALIGNMENT as u64 == 0
        && target.size - delta.offset >= DIRECT_MIN;
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

/// Verifies, fsyncs, renames into place and makes the rename durable.
fn complete(
    file: &File,
    target: &WriteTarget,
    expected: Hash,
    actual: Hash,
    syncer: &DirSyncer,
) -> Result<Hash, RealizeError> {
    let display = &target.display;
    if actual != expected {
        return Err(RealizeError::new(
            ErrorKind::HashMismatch,
            format!("{display}: received data hashes to {actual}, the source to {expected}"),
        ));
    }
    let io = |e| RealizeError::io(display, &e);
    file.sync_data().map_err(io)?;
    fs::rename(&target.paths.partial_path, &target.paths.final_path).map_err(io)?;
    syncer.rename_done(&target.paths.parent).map_err(io)?;
    Ok(actual)
}

#[async_trait]
impl FileWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ServiceError> {
        self.commands
            .send(Command::Data(chunk))
            .await
            .map_err(|_| self.stopped())
    }

    async fn finish(self: Box<Self>, expected: Hash) -> Result<Hash, ServiceError> {
        let (reply, result) = oneshot::channel();
        self.commands
            .send(Command::Finish(expected, reply))
            .await
            .map_err(|_| self.stopped())?;
        Ok(result.await.map_err(|_| self.stopped())??)
    }
}

impl LocalWriter {
    fn stopped(&self) -> ServiceError {
        RealizeError::new(
            ErrorKind::Io,
            format!("{}: the writing thread stopped", self.display),
        )
        .into()
    }
}
