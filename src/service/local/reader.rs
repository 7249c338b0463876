//! Reading a file on a blocking thread, hashing as it goes, ahead of the
//! consumer by a few chunks so disk and network overlap.

use std::fs::File;
use std::io::Read;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::model::{Delta, FileStamp, RelPath};
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::{FileReader, ReadEvent, ReadSummary, ServiceError};

/// Size of one read, and of one chunk handed to the network.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Chunks read ahead of the consumer.
const READ_AHEAD: usize = 4;

/// A local file being read by a blocking thread.
pub struct LocalReader {
    stamp: FileStamp,
    events: mpsc::Receiver<Result<ReadEvent, RealizeError>>,
}

impl LocalReader {
    /// Starts reading `file` (whose stamp is `stamp`): every byte is hashed,
    /// the bytes `delta` names are delivered.
    pub fn start(file: File, stamp: FileStamp, delta: Delta, display: RelPath) -> Self {
        let (tx, events) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let result = pump(file, stamp, &delta, &display, &tx);
            if let Err(err) = result {
                let _ = tx.blocking_send(Err(err));
            }
        });
        Self { stamp, events }
    }
}

fn pump(
    mut file: File,
    stamp: FileStamp,
    delta: &Delta,
    display: &RelPath,
    tx: &mpsc::Sender<Result<ReadEvent, RealizeError>>,
) -> Result<(), RealizeError> {
    let mut hasher = blake3::Hasher::new();
    let mut position = 0u64;
    while position < stamp.size {
        let want = CHUNK_SIZE.min((stamp.size - position) as usize);
        let chunk = read_chunk(&mut file, want, display)?;
        hasher.update(&chunk);
        for part in delta.carried(position, want as u64) {
            let from = (part.start - position) as usize;
            let piece = chunk.slice(from..from + part.len as usize);
            if tx.blocking_send(Ok(ReadEvent::Data(piece))).is_err() {
                return Ok(()); // The consumer gave up.
            }
        }
        position += want as u64;
    }
    let after = file.metadata().map_err(|e| RealizeError::io(display, &e))?;
    let summary = ReadSummary {
        hash: hasher.finalize().into(),
        stamp: FileStamp::from_metadata(&after),
    };
    let _ = tx.blocking_send(Ok(ReadEvent::Done(summary)));
    Ok(())
}

/// Reads exactly `want` bytes into a new buffer (not zeroed first: the
/// kernel fills it).
fn read_chunk(file: &mut File, want: usize, display: &RelPath) -> Result<Bytes, RealizeError> {
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
    Ok(Bytes::from(buf))
}

#[async_trait]
impl FileReader for LocalReader {
    fn stamp(&self) -> FileStamp {
        self.stamp
    }

    async fn next(&mut self) -> Result<ReadEvent, ServiceError> {
        match self.events.recv().await {
            Some(event) => Ok(event?),
            None => Err(RealizeError::new(ErrorKind::Io, "the reading thread stopped").into()),
        }
    }
}
