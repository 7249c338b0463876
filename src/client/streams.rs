//! Data streams: one QUIC stream per listing or file transfer.

use async_trait::async_trait;
use bytes::Bytes;
use quinn::{Connection, ReadError, RecvStream, SendStream, VarInt, WriteError};

use super::listing::{Gathering, ListingBounds};
use crate::model::{Delta, DirectoryId, FileStamp, Hash, RelPath, WritePlan};
use crate::protocol::{
    code, read_frame, write_frame, ErrorKind, FrameError, ListItem, ReadHeader, ReadTrailer,
    RealizeError, StreamRequest, WriteResult, WriteTrailer,
};
use crate::service::{FileReader, FileWriter, Listing, ReadEvent, ReadSummary, ServiceError};
use crate::transport::stream::{read_piece, PieceError, RECEIVE_PIECE};
use crate::transport::TransportError;

/// Opens a data stream and sends its request.
pub(super) async fn open(
    connection: &Connection,
    request: &StreamRequest,
) -> Result<(SendStream, RecvStream), TransportError> {
    let (mut send, recv) = connection.open_bi().await?;
    write_frame(&mut send, request).await?;
    Ok((send, recv))
}

/// Lists `dir` on its own stream.
pub(super) async fn list(
    connection: &Connection,
    dir: &DirectoryId,
) -> Result<Listing, ServiceError> {
    let (mut send, mut recv) = open(connection, &StreamRequest::List { dir: dir.clone() }).await?;
    send.finish().map_err(TransportError::from)?;
    let mut gathering = Gathering::new(ListingBounds::COMMAND);
    loop {
        let item: ListItem = read_frame(&mut recv).await.map_err(TransportError::from)?;
        if let Some(listing) = gathering.add(item)? {
            return Ok(listing);
        }
    }
}

/// A file read from a daemon: header, raw bytes, trailer on one stream.
pub(super) struct RemoteReader {
    recv: RecvStream,
    stamp: FileStamp,
    remaining: u64,
    path: RelPath,
}

impl RemoteReader {
    /// Asks for the bytes of `path` that `delta` names and waits for the
    /// header.
    pub(super) async fn open(
        connection: &Connection,
        dir: &DirectoryId,
        path: &RelPath,
        delta: &Delta,
    ) -> Result<Self, ServiceError> {
        let request = StreamRequest::Read {
            dir: dir.clone(),
            path: path.clone(),
            delta: delta.clone(),
        };
        let (mut send, mut recv) = open(connection, &request).await?;
        send.finish().map_err(TransportError::from)?;
        let header: ReadHeader = read_frame(&mut recv).await.map_err(TransportError::from)?;
        let stamp = header.stamp?;
        Ok(Self {
            recv,
            stamp,
            remaining: delta.payload_len(stamp.size),
            path: path.clone(),
        })
    }

    fn read_error(&self, err: ReadError) -> ServiceError {
        match err {
            ReadError::Reset(code) if code == VarInt::from_u32(code::READ_FAILED) => {
                RealizeError::new(
                    ErrorKind::Io,
                    format!(
                        "{}: the daemon could not read the file to the end (it changed, or \
                         a disk error; see the daemon's log)",
                        self.path
                    ),
                )
                .into()
            }
            other => TransportError::from(other).into(),
        }
    }
}

#[async_trait]
impl FileReader for RemoteReader {
    fn stamp(&self) -> FileStamp {
        self.stamp
    }

    async fn next(&mut self) -> Result<ReadEvent, ServiceError> {
        if self.remaining == 0 {
            let trailer: ReadTrailer = read_frame(&mut self.recv)
                .await
                .map_err(TransportError::from)?;
            return Ok(ReadEvent::Done(ReadSummary {
                hash: trailer.hash,
                stamp: trailer.stamp,
            }));
        }
        let want = RECEIVE_PIECE.min(self.remaining as usize);
        match read_piece(&mut self.recv, want, None).await {
            Ok(Some(piece)) => {
                self.remaining -= piece.len() as u64;
                Ok(ReadEvent::Data(piece))
            }
            Ok(None) => Err(TransportError::Protocol(format!(
                "{}: the stream ended {} bytes early",
                self.path, self.remaining
            ))
            .into()),
            Err(PieceError::Read(e)) => Err(self.read_error(e)),
            Err(stalled @ PieceError::Stalled { .. }) => {
                Err(TransportError::Connection(stalled.to_string()).into())
            }
        }
    }
}

/// A file written to a daemon: header, raw bytes, trailer, then the result
/// comes back on the same stream.
pub(super) struct RemoteWriter {
    send: SendStream,
    recv: RecvStream,
    finished: bool,
}

impl RemoteWriter {
    /// Opens the stream and sends the header; data may follow at once.
    pub(super) async fn open(
        connection: &Connection,
        dir: &DirectoryId,
        path: &RelPath,
        plan: &WritePlan,
    ) -> Result<Self, ServiceError> {
        let request = StreamRequest::Write {
            dir: dir.clone(),
            path: path.clone(),
            plan: plan.clone(),
        };
        let (send, recv) = open(connection, &request).await?;
        Ok(Self {
            send,
            recv,
            finished: false,
        })
    }

    /// The daemon's verdict, once it has stopped reading or answered.
    async fn result(&mut self) -> Result<Hash, ServiceError> {
        let result: WriteResult = match read_frame(&mut self.recv).await {
            Ok(result) => result,
            Err(FrameError::Io(e)) if is_cancelled(&e) => return Err(superseded()),
            Err(e) => return Err(TransportError::from(e).into()),
        };
        Ok(result.result?)
    }
}

#[async_trait]
impl FileWriter for RemoteWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ServiceError> {
        match self.send.write_chunk(chunk).await {
            Ok(()) => Ok(()),
            Err(WriteError::Stopped(code)) if code == VarInt::from_u32(code::CANCELLED) => {
                self.finished = true;
                Err(superseded())
            }
            // The daemon refused the file; its reason follows on the stream.
            Err(WriteError::Stopped(_)) => {
                self.finished = true;
                Err(self.result().await.err().unwrap_or_else(|| {
                    TransportError::Protocol("daemon stopped the stream without a reason".into())
                        .into()
                }))
            }
            Err(e) => Err(TransportError::from(e).into()),
        }
    }

    async fn finish(mut self: Box<Self>, expected: Hash) -> Result<Hash, ServiceError> {
        let trailer = WriteTrailer { expected };
        let sent = write_frame(&mut self.send, &trailer).await;
        self.finished = true;
        match sent {
            Ok(()) => {
                self.send.finish().ok();
                self.result().await
            }
            // Stopped early: the daemon has answered why.
            Err(_) => self.result().await,
        }
    }
}

/// A write the daemon cancelled because a newer transfer of the same file
/// took over: not a connection failure, so not retried.
fn superseded() -> ServiceError {
    let message = "a newer transfer of this file took over on the daemon";
    RealizeError::new(ErrorKind::Superseded, message).into()
}

/// Whether a stream error is the daemon's reset with [`code::CANCELLED`].
fn is_cancelled(err: &std::io::Error) -> bool {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<ReadError>())
        .is_some_and(
            |e| matches!(e, ReadError::Reset(c) if *c == VarInt::from_u32(code::CANCELLED)),
        )
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned: tell the daemon so it keeps the partial file and
            // does not wait for more.
            let _ = self.send.reset(VarInt::from_u32(code::CANCELLED));
        }
    }
}
