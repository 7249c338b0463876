//! Reading file bytes off a QUIC stream in pieces worth a disk write.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{ReadError, RecvStream};

/// Bytes of a received file handed on at once (to a writing thread, a hash,
/// a relay).
///
/// quinn hands out received data frame by frame, one packet's worth (about
/// 1.2 KB) at a time. A write system call, a channel hand-off and a hash
/// update per frame cost far more than gathering the frames with one copy.
pub const RECEIVE_PIECE: usize = 128 * 1024;

/// Why a piece could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PieceError {
    /// The stream or its connection failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// No byte arrived for the stall limit given.
    #[error("no byte for {limit:?}")]
    Stalled {
        /// The limit.
        limit: Duration,
        /// What had arrived of the piece before the silence.
        gathered: Bytes,
    },
}

/// Reads the next `want` bytes of `recv` as one buffer, fewer only when the
/// stream finishes first; `None` when it finished before any byte. With
/// `stall`, fails once no byte has arrived for that long: a slow stream
/// goes on, a silent one does not.
///
/// Not cancel-safe: bytes already gathered are lost if the future is
/// dropped, which is what the callers want when they abandon a stream.
pub async fn read_piece(
    recv: &mut RecvStream,
    want: usize,
    stall: Option<Duration>,
) -> Result<Option<Bytes>, PieceError> {
    let mut piece = BytesMut::with_capacity(want);
    while piece.len() < want {
        let next = recv.read_chunk(want - piece.len(), true);
        let chunk = match stall {
            Some(limit) => match tokio::time::timeout(limit, next).await {
                Ok(chunk) => chunk?,
                Err(_) => {
                    let gathered = piece.freeze();
                    return Err(PieceError::Stalled { limit, gathered });
                }
            },
            None => next.await?,
        };
        match chunk {
            Some(chunk) => piece.extend_from_slice(&chunk.bytes),
            None if piece.is_empty() => return Ok(None),
            None => break,
        }
    }
    Ok(Some(piece.freeze()))
}
