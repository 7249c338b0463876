//! Reading file bytes off a QUIC stream in pieces worth a disk write.

use bytes::{Bytes, BytesMut};
use quinn::{ReadError, RecvStream};

/// Bytes of a received file handed on at once (to a writing thread, a hash,
/// a relay).
///
/// quinn hands out received data frame by frame, one packet's worth (about
/// 1.2 KB) at a time. A write system call, a channel hand-off and a hash
/// update per frame cost far more than gathering the frames with one copy.
pub const RECEIVE_PIECE: usize = 128 * 1024;

/// Reads the next `want` bytes of `recv` as one buffer, fewer only when the
/// stream finishes first; `None` when it finished before any byte.
///
/// Not cancel-safe: bytes already gathered are lost if the future is
/// dropped, which is what the callers want when they abandon a stream.
pub async fn read_piece(recv: &mut RecvStream, want: usize) -> Result<Option<Bytes>, ReadError> {
    let mut piece = BytesMut::with_capacity(want);
    while piece.len() < want {
        match recv.read_chunk(want - piece.len(), true).await? {
            Some(chunk) => piece.extend_from_slice(&chunk.bytes),
            None if piece.is_empty() => return Ok(None),
            None => break,
        }
    }
    Ok(Some(piece.freeze()))
}
