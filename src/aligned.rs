//! Buffers whose bytes start at a page boundary in memory, so that a file
//! writer may hand them to the disk past the page cache (`O_DIRECT` wants
//! the buffer, the length and the file offset aligned to the device's
//! block; see `service::local` for the writer).

use std::io::{self, Read};

use bytes::Bytes;

/// The alignment of [`AlignedBuffer`]s, and of direct writes.
pub const ALIGNMENT: usize = 4096;

/// A growable buffer whose bytes start at an [`ALIGNMENT`] boundary as long
/// as it stays within the capacity it was made with. Alignment only ever
/// makes a write faster: no reader of the bytes may rely on it.
pub struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
}

impl AlignedBuffer {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut storage: Vec<u8> = Vec::with_capacity(capacity + ALIGNMENT - 1);
        // `align_offset` may give up (usize::MAX); then the bytes start unaligned.
        let start = storage.as_ptr().align_offset(ALIGNMENT);
        let start = if start < ALIGNMENT { start } else { 0 };
        storage.resize(start, 0);
        Self { storage, start }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.storage.len() - self.start
    }

    /// Whether no byte is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `data`.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.storage.extend_from_slice(data);
    }

    /// Appends up to `limit` bytes read from `reader`, until it ends.
    pub fn read_from(&mut self, reader: impl Read, limit: u64) -> io::Result<usize> {
        reader.take(limit).read_to_end(&mut self.storage)
    }

    /// The bytes, shared without a copy.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for AlignedBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.storage[self.start..]
    }
}

/// Whether `data` written at `offset` meets direct I/O's alignment.
pub fn is_aligned(data: &[u8], offset: u64) -> bool {
    (data.as_ptr() as usize) % ALIGNMENT == 0
        && data.len() % ALIGNMENT == 0
        && offset % ALIGNMENT as u64 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_buffer_starts_at_a_page_boundary_and_keeps_its_bytes() {
        for size in [1, 4095, 4096, 128 * 1024] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut buffer = AlignedBuffer::with_capacity(size);
            for part in data.chunks(1200) {
                buffer.extend_from_slice(part);
            }
            let bytes = buffer.freeze();
            assert_eq!(bytes.as_ptr() as usize % ALIGNMENT, 0, "size {size}");
            assert_eq!(&bytes[..], &data[..]);
        }
    }

    #[test]
    fn buffer_read_from_a_reader_starts_at_a_page_boundary() {
        let data: Vec<u8> = (0..10_000).map(|i| (i % 13) as u8).collect();
        let mut buffer = AlignedBuffer::with_capacity(8192);
        assert_eq!(buffer.read_from(&data[..], 8192).unwrap(), 8192);
        assert!(is_aligned(buffer.as_ref(), 0));
        assert_eq!(buffer.as_ref(), &data[..8192]);
    }
}
