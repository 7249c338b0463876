//! Reading a file on a blocking thread, hashing as it goes, ahead of the
//! consumer by a few chunks so disk and network overlap. A file of one
//! chunk is read whole by the caller's blocking call instead, sparing a
//! thread hand-off per small file.

use std::fs::File;
use std::io::Read;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::model::{Delta, FileStamp, RelPath};
use crate::protocol::CHUNK_SIZE;
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::{FileReader, ReadEvent, ReadSummary, ServiceError};

mod budget;

use budget::ChunkPermit;
pub use budget::ReadBudget;

/// Chunks read ahead of the consumer.
const READ_AHEAD: usize = 4;

/// A chunk's bytes and its share of the read budget, returned when the last
/// reference to the chunk is dropped.
struct BudgetedChunk {
    bytes: Vec<u8>,
    _permit: ChunkPermit,
}

impl AsRef<[u8]> for BudgetedChunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A local file being read by a blocking thread, or read already.
pub(super) struct LocalReader {
    stamp: FileStamp,
    events: Events,
}

/// Where a [`LocalReader`]'s events come from.
enum Events {
    /// The reading thread, as it reads.
    Thread(mpsc::Receiver<Result<ReadEvent, RealizeError>>),
    /// The whole file, read at once.
    Ready(std::vec::IntoIter<ReadEvent>),
}

impl LocalReader {
    /// Reads `file` (whose stamp is `stamp`) within `budget`: every byte is
    /// hashed, the bytes `delta` names are delivered. Blocking: a file of
    /// one chunk is read before this returns, if the budget has room at
    /// once; a larger one, or one that would wait for the budget, is read
    /// by a blocking thread of `runtime`, so the caller's thread never
    /// waits for other files.
    pub(super) fn open(
        file: File,
        stamp: FileStamp,
        delta: Delta,
        display: RelPath,
        budget: &ReadBudget,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, RealizeError> {
        // A thread that serves many files must not wait for the budget.
        let permit = match budget.try_take() {
            Some(permit) if stamp.size <= CHUNK_SIZE as u64 => permit,
            _ => {
                let budget = budget.clone();
                return Ok(Self::start(file, stamp, delta, display, budget, runtime));
            }
        };
        let mut events = Vec::new();
        let mut permit = Some(permit);
        let budget = || permit.take();
        pump(file, stamp, &delta, &display, budget, |event| {
            events.push(event);
            true
        })?;
        Ok(Self {
            stamp,
            events: Events::Ready(events.into_iter()),
        })
    }

    /// Starts the thread that reads `file`.
    fn start(
        file: File,
        stamp: FileStamp,
        delta: Delta,
        display: RelPath,
        budget: ReadBudget,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (tx, events) = mpsc::channel(READ_AHEAD);
        runtime.spawn_blocking(move || {
            // Waiting for the budget ends when the consumer goes away: the
            // budget may be held by the buffers of the very connection that
            // died, which are freed only once its streams let go.
            let budget = || {
                futures::executor::block_on(async {
                    tokio::select! {
                        permit = budget.take() => Some(permit),
                        () = tx.closed() => None,
                    }
                })
            };
            let emit = |event| tx.blocking_send(Ok(event)).is_ok();
            if let Err(err) = pump(file, stamp, &delta, &display, budget, emit) {
                let _ = tx.blocking_send(Err(err));
            }
        });
        Self {
            stamp,
            events: Events::Thread(events),
        }
    }
}

/// Reads, hashes and hands `emit` the events of `file`, until the end or
/// until the consumer gives up: `emit` returns false, or `budget` gives no
/// share of the read budget for the next chunk.
fn pump(
    mut file: File,
    stamp: FileStamp,
    delta: &Delta,
    display: &RelPath,
    mut budget: impl FnMut() -> Option<ChunkPermit>,
    mut emit: impl FnMut(ReadEvent) -> bool,
) -> Result<(), RealizeError> {
    let mut hasher = blake3::Hasher::new();
    let mut position = 0u64;
    while position < stamp.size {
        let want = CHUNK_SIZE.min((stamp.size - position) as usize);
        let Some(permit) = budget() else {
            return Ok(());
        };
        let chunk = read_chunk(&mut file, want, display, permit)?;
        hasher.update(&chunk);
        for part in delta.carried(position, want as u64) {
            let from = (part.start - position) as usize;
            if !emit(ReadEvent::Data(chunk.slice(from..from + part.len as usize))) {
                return Ok(());
            }
        }
        position += want as u64;
    }
    let after = file.metadata().map_err(|e| RealizeError::io(display, &e))?;
    let summary = ReadSummary {
        hash: hasher.finalize().into(),
        stamp: FileStamp::from_metadata(&after),
    };
    emit(ReadEvent::Done(summary));
    Ok(())
}

/// Reads exactly `want` bytes into a new buffer (not zeroed first: the
/// kernel fills it), which holds `permit` of the read budget.
fn read_chunk(
    file: &mut File,
    want: usize,
    display: &RelPath,
    permit: ChunkPermit,
) -> Result<Bytes, RealizeError> {
    let mut buf = Vec::with_capacity(want);
    file.take(want as u64)
        .read_to_end(&mut buf)
        .map_err(|e| RealizeError::io(display, &e))?;
    if buf.len() < want {
        return Err(RealizeError::new(
            ErrorKind::SourceChanged,
            format!("{display}: the file shrank while it was read"),
        ));
    }
    Ok(Bytes::from_owner(BudgetedChunk {
        bytes: buf,
        _permit: permit,
    }))
}

#[async_trait]
impl FileReader for LocalReader {
    fn stamp(&self) -> FileStamp {
        self.stamp
    }

    async fn next(&mut self) -> Result<ReadEvent, ServiceError> {
        let event = match &mut self.events {
            Events::Thread(events) => events.recv().await,
            Events::Ready(events) => events.next().map(Ok),
        };
        match event {
            Some(event) => Ok(event?),
            None => Err(RealizeError::new(ErrorKind::Io, "the reading thread stopped").into()),
        }
    }
}
