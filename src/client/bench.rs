//! The client's side of `realize bench`: discard and generate streams, and
//! the path statistics of both ends of the connection.

use bytes::Bytes;
use quinn::{ConnectionError, ReadError, RecvStream, SendStream, VarInt, WriteError};

use super::streams::open;
use super::{unexpected, RemoteService};
use crate::protocol::{
    code, read_frame, ControlReply, ControlRequest, Discarded, FrameError, GenerateHeader,
    PathSample, StreamRequest, CHUNK_SIZE,
};
use crate::service::ServiceError;
use crate::transport::measure::path_sample;
use crate::transport::TransportError;

impl RemoteService {
    /// Opens a stream whose bytes the daemon reads and drops.
    pub async fn discard(&self) -> Result<DiscardStream, ServiceError> {
        let (send, recv) = open(&self.connection, &StreamRequest::Discard).await?;
        Ok(DiscardStream {
            send,
            recv,
            service: self.clone(),
        })
    }

    /// Asks the daemon for `size` bytes of generated data; they start
    /// flowing as soon as the request arrives.
    pub async fn generate(&self, size: u64) -> Result<GeneratedStream, ServiceError> {
        let (mut send, recv) = open(&self.connection, &StreamRequest::Generate { size }).await?;
        send.finish().map_err(TransportError::from)?;
        Ok(GeneratedStream {
            recv,
            size,
            remaining: size,
            service: self.clone(),
        })
    }

    /// This side's statistics of the connection's path now.
    pub fn path_sample(&self) -> PathSample {
        path_sample(&self.connection)
    }

    /// The daemon's statistics of the connection's path now.
    pub async fn daemon_path_sample(&self) -> Result<PathSample, ServiceError> {
        match self.control.call(ControlRequest::PathStats).await {
            Ok(ControlReply::PathStats(sample)) => Ok(sample),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(self.explain_bench_failure(e)),
        }
    }

    /// A failure of a bench request. When the connection is closed, says
    /// why, with a hint when the daemon broke off because it does not know
    /// the request.
    fn explain_bench_failure(&self, err: ServiceError) -> ServiceError {
        match self.connection.close_reason() {
            Some(ConnectionError::ApplicationClosed(close)) if is_violation(close.error_code) => {
                self.unsupported()
            }
            Some(reason) => TransportError::Connection(format!(
                "connection to {} lost: {reason}",
                self.remote_address()
            ))
            .into(),
            None => err,
        }
    }

    fn frame_error(&self, err: FrameError) -> ServiceError {
        match &err {
            FrameError::Io(e) if reset_code(e).is_some_and(is_violation) => self.unsupported(),
            _ => self.explain_bench_failure(TransportError::from(err).into()),
        }
    }

    fn unsupported(&self) -> ServiceError {
        TransportError::Protocol(format!(
            "the daemon at {} refused a bench request as a protocol violation; a realized \
             older than this command does not serve them (see the daemon's log, and upgrade it)",
            self.remote_address()
        ))
        .into()
    }
}

/// A stream of bytes the daemon drops; it answers with their count.
pub struct DiscardStream {
    send: SendStream,
    recv: RecvStream,
    service: RemoteService,
}

impl DiscardStream {
    /// Writes as much of `chunk` as the stream takes now (at least one
    /// byte), removes it from `chunk` and returns how much that was.
    /// Cancel-safe: if this does not complete, nothing was written.
    pub async fn write(&mut self, chunk: &mut Bytes) -> Result<u64, ServiceError> {
        match self.send.write_chunks(std::slice::from_mut(chunk)).await {
            Ok(written) => Ok(written.bytes as u64),
            Err(WriteError::Stopped(code)) if is_violation(code) => Err(self.service.unsupported()),
            Err(e) => Err(self
                .service
                .explain_bench_failure(TransportError::from(e).into())),
        }
    }

    /// Ends the stream after everything written and returns the daemon's
    /// count, which must be `written`.
    pub async fn finish(mut self, written: u64) -> Result<u64, ServiceError> {
        self.send.finish().map_err(TransportError::from)?;
        let received = self.count().await?;
        if received != written {
            let message = format!("sent {written} bytes to discard, the daemon counted {received}");
            return Err(TransportError::Protocol(message).into());
        }
        Ok(received)
    }

    /// Ends the stream at once, dropping the bytes still in flight, and
    /// returns the daemon's count of those it read.
    pub async fn cut_short(mut self) -> Result<u64, ServiceError> {
        self.send
            .reset(VarInt::from_u32(code::DONE))
            .map_err(TransportError::from)?;
        self.count().await
    }

    async fn count(&mut self) -> Result<u64, ServiceError> {
        let answer: Discarded = read_frame(&mut self.recv)
            .await
            .map_err(|e| self.service.frame_error(e))?;
        Ok(answer.received)
    }
}

/// Generated data the daemon sends, read and dropped as it arrives.
pub struct GeneratedStream {
    recv: RecvStream,
    size: u64,
    remaining: u64,
    service: RemoteService,
}

impl GeneratedStream {
    /// Waits for the daemon's header: the bytes follow, or the request was
    /// refused.
    pub async fn accepted(&mut self) -> Result<(), ServiceError> {
        let header: GenerateHeader = read_frame(&mut self.recv)
            .await
            .map_err(|e| self.service.frame_error(e))?;
        let announced = header.size?;
        if announced != self.size {
            let message = format!(
                "asked for {} generated bytes, the daemon announced {announced}",
                self.size
            );
            return Err(TransportError::Protocol(message).into());
        }
        Ok(())
    }

    /// After [`Self::accepted`]: reads the next chunk and returns its length,
    /// or `None` once every announced byte has arrived. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<u64>, ServiceError> {
        match self.recv.read_chunk(CHUNK_SIZE, true).await {
            Ok(Some(chunk)) => self.take(chunk.bytes.len() as u64).map(Some),
            Ok(None) if self.remaining == 0 => Ok(None),
            Ok(None) => Err(TransportError::Protocol(format!(
                "the generated stream ended {} bytes early",
                self.remaining
            ))
            .into()),
            Err(ReadError::Reset(code)) if is_violation(code) => Err(self.service.unsupported()),
            Err(e) => Err(self
                .service
                .explain_bench_failure(TransportError::from(e).into())),
        }
    }

    fn take(&mut self, len: u64) -> Result<u64, ServiceError> {
        self.remaining = self.remaining.checked_sub(len).ok_or_else(|| {
            TransportError::Protocol("the daemon sent more generated bytes than announced".into())
        })?;
        Ok(len)
    }

    /// Tells the daemon to stop sending: enough has been measured.
    pub fn stop(mut self) {
        let _ = self.recv.stop(VarInt::from_u32(code::DONE));
    }
}

fn is_violation(code: VarInt) -> bool {
    code == VarInt::from_u32(code::PROTOCOL_VIOLATION)
}

/// The code of the daemon's reset behind a stream read error, if it was one.
fn reset_code(err: &std::io::Error) -> Option<VarInt> {
    match err.get_ref()?.downcast_ref::<ReadError>()? {
        ReadError::Reset(code) => Some(*code),
        _ => None,
    }
}
