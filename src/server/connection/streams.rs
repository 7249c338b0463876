//! The daemon's side of data streams: listings, reads and writes, and the
//! generated data of `realize bench` ([`bench`]).

mod bench;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream, VarInt};

use super::Peer;
use crate::model::{Delta, DirectoryId, Hash, RelPath, WritePlan};
use crate::protocol::{
    code, read_frame, write_frame, FrameError, ListItem, ReadHeader, ReadTrailer, RealizeError,
    StreamRequest, WriteResult, WriteTrailer, MAX_FRAME_LEN, MAX_LIST_CHUNK,
};
use crate::server::listing_gate::ListingGate;
use crate::service::local::{BatchLimit, LocalService, LocalWriter};
use crate::service::{FileWriter, Listing, ReadEvent, Service, ServiceError};
use crate::telemetry;
use crate::transport::stream::{read_piece, PieceError, RECEIVE_PIECE};

/// Serves one data stream to its end; listings take turns at `listings`.
pub(super) async fn serve(
    mut send: SendStream,
    mut recv: RecvStream,
    service: LocalService,
    peer: Peer,
    listings: Arc<ListingGate>,
) {
    let request: StreamRequest = match read_frame(&mut recv).await {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(peer = %peer.id, remote = %peer.address, "bad stream header: {e}");
            let violation = VarInt::from_u32(code::PROTOCOL_VIOLATION);
            let _ = recv.stop(violation);
            let _ = send.reset(violation);
            return;
        }
    };
    let outcome = match request {
        StreamRequest::List { dir } => list(&mut send, &service, &dir, &peer, &listings).await,
        StreamRequest::Read { dir, path, delta } => {
            read(&mut send, &service, &dir, &path, &delta, &peer).await
        }
        StreamRequest::Write { dir, path, plan } => {
            let target = RequestedWrite { dir, path, plan };
            write(&mut send, &mut recv, &service, target, &peer).await
        }
        StreamRequest::Discard => bench::discard(&mut send, &mut recv, &peer).await,
        StreamRequest::Generate { size } => bench::generate(&mut send, size, &peer).await,
    };
    if let Err(e) = outcome {
        tracing::debug!(peer = %peer.id, "stream ended early: {e}");
    }
}

/// What one batch of a listing holds at most: what fits a `Files` frame
/// and a `Skipped` frame (a batch ends with the entry that reaches the byte
/// budget, and an entry is far smaller than the other half of a frame).
const LIST_BATCH: BatchLimit = BatchLimit {
    entries: MAX_LIST_CHUNK,
    bytes: MAX_FRAME_LEN / 2,
};

/// Sends a listing as the walk finds it, once the gate gives it its turn.
async fn list(
    send: &mut SendStream,
    service: &LocalService,
    dir: &DirectoryId,
    peer: &Peer,
    gate: &Arc<ListingGate>,
) -> Result<(), FrameError> {
    let _turn = gate.turn(&peer.id).await;
    let end = match service.list_in_batches(dir, LIST_BATCH).await {
        Ok(mut batches) => loop {
            match batches.next().await {
                Ok(Some(batch)) => send_batch(send, batch, peer).await?,
                Ok(None) => break Ok(()),
                Err(e) => break Err(counted(e, peer)),
            }
        },
        Err(e) => Err(counted(e, peer)),
    };
    send_list_item(send, &ListItem::End(end), peer).await?;
    let _ = send.finish();
    Ok(())
}

/// Sends one batch of a listing: its files, then its skipped entries.
async fn send_batch(send: &mut SendStream, batch: Listing, peer: &Peer) -> Result<(), FrameError> {
    if !batch.files.is_empty() {
        send_list_item(send, &ListItem::Files(batch.files), peer).await?;
    }
    if !batch.skipped.is_empty() {
        send_list_item(send, &ListItem::Skipped(batch.skipped), peer).await?;
    }
    Ok(())
}

/// Sends one frame of a listing; a peer that takes none of it for
/// the peer's stall limit gets the stream reset with `STALLED`, so it cannot hold
/// a listing's turn for good.
async fn send_list_item(
    send: &mut SendStream,
    item: &ListItem,
    peer: &Peer,
) -> Result<(), FrameError> {
    match tokio::time::timeout(peer.stall_limit, write_frame(send, item)).await {
        Ok(sent) => sent,
        Err(_) => {
            tracing::info!(peer = %peer.id, "listing not read for {:?}; stream reset", peer.stall_limit);
            let _ = send.reset(VarInt::from_u32(code::STALLED));
            Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "listing not read",
            )))
        }
    }
}

/// Logs and counts an error the daemon answers a stream with.
fn counted(err: RealizeError, peer: &Peer) -> RealizeError {
    metrics::counter!(telemetry::ERRORS, "kind" => err.kind.label()).increment(1);
    tracing::warn!(peer = %peer.id, kind = ?err.kind, "refused: {err}");
    err
}

/// `copy` for a whole file, `resume` for a transfer that keeps part of a
/// partial file.
fn method(delta: &Delta) -> &'static str {
    if delta.offset > 0 {
        "resume"
    } else {
        "copy"
    }
}

async fn read(
    send: &mut SendStream,
    service: &LocalService,
    dir: &DirectoryId,
    path: &RelPath,
    delta: &Delta,
    peer: &Peer,
) -> Result<(), FrameError> {
    let mut reader = match service.read(dir, path, delta).await {
        Ok(reader) => reader,
        Err(e) => {
            write_frame(
                send,
                &ReadHeader {
                    stamp: Err(counted(e.into_realize(), peer)),
                },
            )
            .await?;
            let _ = send.finish();
            return Ok(());
        }
    };
    write_frame(
        send,
        &ReadHeader {
            stamp: Ok(reader.stamp()),
        },
    )
    .await?;
    // Resolves when the peer stops reading or the connection is gone: the
    // reader then goes, and with it its thread and its read budget.
    let gone = send.stopped();
    tokio::pin!(gone);
    loop {
        let event = tokio::select! {
            event = reader.next() => event,
            _ = &mut gone => {
                tracing::debug!(peer = %peer.id, dir = %dir, path = %path, "read abandoned by the peer");
                return Ok(());
            }
        };
        match event {
            Ok(ReadEvent::Data(chunk)) => {
                for piece in peer.throttle.pieces(chunk) {
                    peer.throttle.wait(piece.len()).await;
                    let len = piece.len() as u64;
                    if !send_unless_stalled(send, piece, peer.stall_limit)
                        .await
                        .map_err(frame_io_error)?
                    {
                        // The peer holds a reader (its thread, its file) without reading.
                        tracing::info!(peer = %peer.id, dir = %dir, path = %path, "read stream unread for {:?}", peer.stall_limit);
                        let _ = send.reset(VarInt::from_u32(code::STALLED));
                        return Ok(());
                    }
                    let labels = [("peer", peer.id.clone()), ("method", method(delta).into())];
                    metrics::counter!(telemetry::BYTES_SENT, &labels).increment(len);
                }
            }
            Ok(ReadEvent::Done(summary)) => {
                let trailer = ReadTrailer {
                    hash: summary.hash,
                    stamp: summary.stamp,
                };
                write_frame(send, &trailer).await?;
                let _ = send.finish();
                let labels = [("peer", peer.id.clone()), ("method", method(delta).into())];
                metrics::counter!(telemetry::FILES_SENT, &labels).increment(1);
                tracing::debug!(peer = %peer.id, dir = %dir, path = %path, "sent file");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(peer = %peer.id, dir = %dir, path = %path, "reading failed: {e}");
                let _ = send.reset(VarInt::from_u32(code::READ_FAILED));
                return Ok(());
            }
        }
    }
}

/// Sends `piece` whole; false if the peer took none of it (its flow control
/// gave no room) for the peer's stall limit. A slow reader goes on, an idle one
/// does not.
async fn send_unless_stalled(
    send: &mut SendStream,
    piece: Bytes,
    stall_limit: Duration,
) -> Result<bool, quinn::WriteError> {
    let mut rest = [piece];
    while !rest[0].is_empty() {
        match tokio::time::timeout(stall_limit, send.write_chunks(&mut rest)).await {
            Ok(written) => written?,
            Err(_) => return Ok(false),
        };
    }
    Ok(true)
}

struct RequestedWrite {
    dir: DirectoryId,
    path: RelPath,
    plan: WritePlan,
}

/// How a write stream ends before its verdict is answered.
enum Cut {
    /// The service refused the write, at open or while it wrote: the peer
    /// is told to stop sending and answered with the error.
    Refused(RealizeError),
    /// A newer transfer of the same file took over: `CANCELLED`.
    Superseded,
    /// No byte arrived for the stall limit (`STALLED`).
    Silent(Duration),
    /// The bytes arrived but no trailer within the stall limit (`STALLED`).
    NoTrailer(Duration),
    /// The stream ended with this many announced bytes missing
    /// (`PROTOCOL_VIOLATION`).
    EndedEarly(u64),
    /// The frame after the bytes is missing or malformed
    /// (`PROTOCOL_VIOLATION`).
    BadTrailer(FrameError),
    /// The peer cancelled the stream or the connection was lost.
    Lost(String),
}

/// Receives a file into the service: open, the announced bytes, the
/// trailer, the finish. Every way out but the verdict is a [`Cut`]; none
/// loses what arrived, which stays in the partial file.
async fn write(
    send: &mut SendStream,
    recv: &mut RecvStream,
    service: &LocalService,
    target: RequestedWrite,
    peer: &Peer,
) -> Result<(), FrameError> {
    match receive(recv, service, &target, peer).await {
        Ok(verdict) => {
            log_verdict(&verdict, &target, peer);
            answer(send, verdict).await
        }
        Err(cut) => end(send, recv, cut, &target, peer).await,
    }
}

/// The write's states in order; the verdict, or where it was cut.
async fn receive(
    recv: &mut RecvStream,
    service: &LocalService,
    target: &RequestedWrite,
    peer: &Peer,
) -> Result<Result<Hash, RealizeError>, Cut> {
    let RequestedWrite { dir, path, plan } = target;
    let mut writer = service
        .open_writer(dir, path, plan)
        .await
        .map_err(Cut::Refused)?;
    let mut remaining = plan.delta.payload_len(plan.size);
    while remaining > 0 {
        let piece = RECEIVE_PIECE.min(remaining as usize);
        let read = read_piece(recv, piece, Some(peer.stall_limit));
        let chunk = match until_superseded(&writer, read).await? {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Err(Cut::EndedEarly(remaining)),
            Err(PieceError::Stalled { limit, gathered }) => {
                // The peer holds a writer (and its thread) without using it.
                let _ = write_chunk(&mut writer, gathered).await;
                return Err(Cut::Silent(limit));
            }
            Err(PieceError::Read(e)) => return Err(Cut::Lost(e.to_string())),
        };
        remaining -= chunk.len() as u64;
        write_chunk(&mut writer, chunk)
            .await
            .map_err(Cut::Refused)?;
    }
    let trailer = tokio::time::timeout(peer.stall_limit, read_frame::<_, WriteTrailer>(recv));
    let trailer = match until_superseded(&writer, trailer).await? {
        Ok(Ok(trailer)) => trailer,
        Ok(Err(e)) => return Err(Cut::BadTrailer(e)),
        Err(_) => return Err(Cut::NoTrailer(peer.stall_limit)),
    };
    Ok(Box::new(writer)
        .finish(trailer.expected)
        .await
        .map_err(ServiceError::into_realize))
}

/// `step`, unless a newer transfer of the same file wants the writer first.
async fn until_superseded<T>(
    writer: &LocalWriter,
    step: impl std::future::Future<Output = T>,
) -> Result<T, Cut> {
    tokio::select! {
        done = step => Ok(done),
        () = writer.superseded() => Err(Cut::Superseded),
    }
}

/// Ends a write stream that was `cut`: logs why and tells the peer.
async fn end(
    send: &mut SendStream,
    recv: &mut RecvStream,
    cut: Cut,
    target: &RequestedWrite,
    peer: &Peer,
) -> Result<(), FrameError> {
    let (dir, path) = (&target.dir, &target.path);
    let (stop, reset) = match cut {
        Cut::Refused(e) => {
            let _ = recv.stop(VarInt::from_u32(code::REFUSED));
            return answer(send, Err(counted(e, peer))).await;
        }
        Cut::Superseded => {
            tracing::info!(peer = %peer.id, dir = %dir, path = %path, "superseded by a newer transfer of the same file");
            (true, code::CANCELLED)
        }
        Cut::Silent(limit) => {
            tracing::info!(peer = %peer.id, dir = %dir, path = %path, "write stream silent for {limit:?}; the partial file keeps what arrived");
            (true, code::STALLED)
        }
        Cut::NoTrailer(limit) => {
            tracing::info!(peer = %peer.id, dir = %dir, path = %path, "no write trailer within {limit:?}; the partial file keeps what arrived");
            (true, code::STALLED)
        }
        Cut::EndedEarly(remaining) => {
            tracing::warn!(peer = %peer.id, dir = %dir, path = %path, "write stream ended {remaining} bytes early");
            (false, code::PROTOCOL_VIOLATION)
        }
        Cut::BadTrailer(e) => {
            tracing::warn!(peer = %peer.id, dir = %dir, path = %path, "bad write trailer: {e}");
            (false, code::PROTOCOL_VIOLATION)
        }
        Cut::Lost(reason) => {
            tracing::debug!(peer = %peer.id, dir = %dir, path = %path, "transfer abandoned: {reason}");
            return Ok(());
        }
    };
    if stop {
        let _ = recv.stop(VarInt::from_u32(reset));
    }
    let _ = send.reset(VarInt::from_u32(reset));
    Ok(())
}

/// Logs and counts the verdict of a write that reached its finish.
fn log_verdict(verdict: &Result<Hash, RealizeError>, target: &RequestedWrite, peer: &Peer) {
    let RequestedWrite { dir, path, plan } = target;
    let (size, payload) = (plan.size, plan.delta.payload_len(plan.size));
    match verdict {
        Ok(hash) => {
            let labels = [
                ("peer", peer.id.clone()),
                ("method", method(&plan.delta).into()),
            ];
            metrics::counter!(telemetry::FILES_RECEIVED, &labels).increment(1);
            metrics::counter!(telemetry::BYTES_RECEIVED, &labels).increment(payload);
            let saved = size.saturating_sub(payload);
            metrics::counter!(telemetry::BYTES_SAVED, "peer" => peer.id.clone()).increment(saved);
            tracing::info!(peer = %peer.id, dir = %dir, path = %path, size, received = payload, hash = %hash, "file finalised");
        }
        Err(e) => {
            metrics::counter!(telemetry::ERRORS, "kind" => e.kind.label()).increment(1);
            tracing::warn!(peer = %peer.id, dir = %dir, path = %path, "file not finalised: {e}")
        }
    }
}

/// Hands `chunk` to `writer`, its failure as the wire reports it.
async fn write_chunk(writer: &mut LocalWriter, chunk: Bytes) -> Result<(), RealizeError> {
    writer
        .write(chunk)
        .await
        .map_err(ServiceError::into_realize)
}

async fn answer(
    send: &mut SendStream,
    result: Result<Hash, RealizeError>,
) -> Result<(), FrameError> {
    write_frame(send, &WriteResult { result }).await?;
    let _ = send.finish();
    Ok(())
}

/// A failed write of a data stream, as the frame layer reports it.
fn frame_io_error(err: quinn::WriteError) -> FrameError {
    FrameError::Io(std::io::Error::other(err))
}
