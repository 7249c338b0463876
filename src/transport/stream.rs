//! Reading file bytes off a QUIC stream in pieces worth a disk write.

use bytes::Bytes;
use quinn::{ReadError, RecvStream};

/// Bytes of a received file handed on at once (to a writing thread, a hash,
/// a relay).
///
/// quinn hands out received data frame by frame, one packet's worth (about
/// 1.2 KB) at a time. A write system call, a channel hand-off and a hash
/// update per frame cost far more than gathering the frames with one copy.
pub const RECEIVE_PIECE: usize = 128 * 1024;

/// Where in memory every gathered piece starts: a page boundary, so that a
/// writer may hand the piece to the disk without the page cache (`O_DIRECT`
/// wants buffers, lengths and file offsets aligned to the device's block).
pub const PIECE_ALIGNMENT: usize = 4096;

/// Reads the next `want` bytes of `recv` into one buffer that starts at a
/// [`PIECE_ALIGNMENT`] boundary, fewer only when the stream finishes first;
/// `None` when it finished before any byte.
///
/// Not cancel-safe: bytes already gathered are lost if the future is
/// dropped, which is what the callers want when they abandon a stream.
pub async fn read_piece(recv: &mut RecvStream, want: usize) -> Result<Option<Bytes>, ReadError> {
    let mut piece = AlignedBuffer::with_capacity(want);
    while piece.len() < want {
        match recv.read_chunk(want - piece.len(), true).await? {
            Some(chunk) => piece.extend_from_slice(&chunk.bytes),
            None if piece.len() == 0 => return Ok(None),
            None => break,
        }
    }
    Ok(Some(piece.freeze()))
}

/// A growable buffer whose bytes start at a [`PIECE_ALIGNMENT`] boundary as
/// long as it stays within the capacity it was made with. Alignment only
/// ever makes a write faster: readers of the bytes must not rely on it.
struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
}

impl AlignedBuffer {
    fn with_capacity(capacity: usize) -> Self {
        let mut storage: Vec<u8> = Vec::with_capacity(capacity + PIECE_ALIGNMENT - 1);
        // `align_offset` may give up (usize::MAX); then the bytes start unaligned.
        let start = storage.as_ptr().align_offset(PIECE_ALIGNMENT);
        let start = if start < PIECE_ALIGNMENT { start } else { 0 };
        storage.resize(start, 0);
        Self { storage, start }
    }

    fn len(&self) -> usize {
        self.storage.len() - self.start
    }

    fn extend_from_slice(&mut self, data: &[u8]) {
        self.storage.extend_from_slice(data);
    }

    fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for AlignedBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.storage[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_buffer_starts_at_a_page_boundary_and_keeps_its_bytes() {
        for size in [1, 4095, 4096, RECEIVE_PIECE] {
            let mut buffer = AlignedBuffer::with_capacity(size);
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            for part in data.chunks(1200) {
                buffer.extend_from_slice(part);
            }
            let bytes = buffer.freeze();
            assert_eq!(bytes.as_ptr() as usize % PIECE_ALIGNMENT, 0, "size {size}");
            assert_eq!(&bytes[..], &data[..]);
        }
    }
}
