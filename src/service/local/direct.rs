//! Writing large files past the page cache (`O_DIRECT`).
//!
//! A move writes each byte once and does not read it again, and it must
//! make every byte durable before the source is deleted. Through the page
//! cache that costs a copy into fresh cache pages and then a flush that
//! starts only at the final fsync; on the machines measured, filling the
//! cache took most of a core for 2 GiB, and the final fsync waited for the
//! whole file. Direct writes send the bytes to the disk as they come and
//! leave the final fsync little to do.
//!
//! Direct I/O wants the buffer, the length and the file offset aligned to the
//! device's block, and it is synchronous, so it pays only in large writes.
//! Bytes are therefore staged in a page-aligned buffer of [`STAGING_SIZE`]
//! and written a whole buffer at a time. Staging buffers come from a
//! process-wide pool of [`STAGING_BUFFERS`]: a file that finds none free,
//! like one on a file system without direct I/O, is written through the page
//! cache, so memory does not grow with the files in flight.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::place::Partial;

/// Files whose bytes still to come are fewer than this are written through
/// the page cache: they would not fill a staging buffer.
pub(super) const DIRECT_MIN: u64 = STAGING_SIZE as u64;

/// The size of one direct write.
const STAGING_SIZE: usize = 1 << 20;

/// Staging buffers that may exist at once in the process (16 MiB).
const STAGING_BUFFERS: usize = 16;

/// The permits of [`STAGING_BUFFERS`].
static STAGING: Semaphore = Semaphore::const_new(STAGING_BUFFERS);

/// What direct I/O wants aligned: buffers, lengths and file offsets.
pub(super) const ALIGNMENT: usize = 4096;

/// A partial file being written: past the page cache through a staging
/// buffer while the writes come in order, else through the page cache.
pub(super) struct PartialFile {
    file: Partial,
    direct: Option<Staging>,
}

/// Bytes waiting for a direct write, and where they go.
struct Staging {
    buffer: AlignedBuffer,
    /// The file offset of the buffer's first byte, aligned.
    offset: u64,
    _permit: SemaphorePermit<'static>,
}

impl PartialFile {
    /// Wraps `file`. With `direct_from`, an [`ALIGNMENT`]-aligned offset
    /// where the writes will start, they go past the page cache if a staging
    /// buffer is free and the file system allows it.
    pub(super) fn new(file: Partial, direct_from: Option<u64>) -> Self {
        let direct = direct_from
            .filter(|offset| offset % ALIGNMENT as u64 == 0)
            .and_then(|offset| {
                let permit = STAGING.try_acquire().ok()?;
                set_direct(&file, true).ok()?;
                Some(Staging {
                    buffer: AlignedBuffer::with_capacity(STAGING_SIZE),
                    offset,
                    _permit: permit,
                })
            });
        Self { file, direct }
    }

    /// The open file, once [`PartialFile::finish_writes`] has been called.
    pub(super) fn into_partial(self) -> Partial {
        debug_assert!(self.direct.is_none(), "staged bytes left unwritten");
        self.file
    }

    /// The open file, its staged bytes dropped unwritten: for a partial
    /// file about to be removed.
    pub(super) fn discard_staged(mut self) -> Partial {
        self.direct = None;
        self.file
    }

    /// Writes all of `data` at `offset`: staged for a direct write when it
    /// follows the staged bytes, else (and from then on) through the page
    /// cache.
    pub(super) fn write_all_at(&mut self, mut data: &[u8], offset: u64) -> io::Result<()> {
        let Some(staging) = self.direct.as_mut() else {
            return self.file.write_all_at(data, offset);
        };
        if offset != staging.offset + staging.buffer.len() as u64 {
            self.finish_writes()?;
            return self.file.write_all_at(data, offset);
        }
        let mut at = offset;
        while !data.is_empty() {
            let staging = self.direct.as_mut().expect("still direct");
            let n = (STAGING_SIZE - staging.buffer.len()).min(data.len());
            staging.buffer.extend_from_slice(&data[..n]);
            (data, at) = (&data[n..], at + n as u64);
            if staging.buffer.len() == STAGING_SIZE {
                self.write_staged()?;
                if self.direct.is_none() {
                    return self.file.write_all_at(data, at);
                }
            }
        }
        Ok(())
    }

    /// Writes the full staging buffer directly, or, if the device refuses
    /// our alignment, through the page cache from now on.
    fn write_staged(&mut self) -> io::Result<()> {
        let staging = self.direct.as_mut().expect("direct mode");
        match self
            .file
            .write_all_at(staging.buffer.as_ref(), staging.offset)
        {
            Ok(()) => {
                staging.offset += staging.buffer.len() as u64;
                staging.buffer.clear();
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.finish_writes(),
            Err(e) => Err(e),
        }
    }

    /// Writes what is staged through the page cache and leaves direct mode,
    /// so that the file holds every byte written: before reading it back,
    /// syncing it, or abandoning it for a later resume.
    pub(super) fn finish_writes(&mut self) -> io::Result<()> {
        let Some(staging) = self.direct.take() else {
            return Ok(());
        };
        set_direct(&self.file, false)?;
        self.file
            .write_all_at(staging.buffer.as_ref(), staging.offset)
    }
}

/// A buffer whose bytes start at an [`ALIGNMENT`] boundary in memory, as
/// long as it stays within the capacity it was made with.
struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
}

impl AlignedBuffer {
    fn with_capacity(capacity: usize) -> Self {
        let mut storage: Vec<u8> = Vec::with_capacity(capacity + ALIGNMENT - 1);
        // `align_offset` may give up (usize::MAX): then direct writes fail
        // with EINVAL and the file falls back to the page cache.
        let start = storage.as_ptr().align_offset(ALIGNMENT);
        let start = if start < ALIGNMENT { start } else { 0 };
        storage.resize(start, 0);
        Self { storage, start }
    }

    fn len(&self) -> usize {
        self.storage.len() - self.start
    }

    fn extend_from_slice(&mut self, data: &[u8]) {
        self.storage.extend_from_slice(data);
    }

    fn clear(&mut self) {
        self.storage.truncate(self.start);
    }
}

impl AsRef<[u8]> for AlignedBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.storage[self.start..]
    }
}

/// Turns `O_DIRECT` on or off for the open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    fn new_file(dir: &tempfile::TempDir) -> Partial {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        Partial::of(file).unwrap()
    }

    fn content(dir: &tempfile::TempDir) -> Vec<u8> {
        let mut content = Vec::new();
        File::open(dir.path().join("f"))
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        content
    }

    #[test]
    fn writes_in_order_of_any_size_land_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut partial = PartialFile::new(new_file(&dir), Some(0));
        let data = pattern(2 * STAGING_SIZE + 5000);
        let mut offset = 0;
        for part in data.chunks(1200).chain([&[][..]]) {
            partial.write_all_at(part, offset).unwrap();
            offset += part.len() as u64;
        }
        partial.finish_writes().unwrap();
        assert!(partial.direct.is_none(), "finishing leaves direct mode");
        partial.into_partial().sync_data().unwrap();
        assert_eq!(content(&dir), data);
    }

    #[test]
    fn a_write_out_of_order_flushes_the_staged_bytes_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut partial = PartialFile::new(new_file(&dir), Some(0));
        let data = pattern(STAGING_SIZE + 3 * ALIGNMENT);
        partial.write_all_at(&data[..STAGING_SIZE + 10], 0).unwrap();
        // A jump back (as when a patch is written) ends direct mode.
        partial.write_all_at(&data[..10], 0).unwrap();
        assert!(partial.direct.is_none());
        let rest = STAGING_SIZE as u64 + 10;
        partial.write_all_at(&data[rest as usize..], rest).unwrap();
        assert_eq!(content(&dir), data);
    }

    #[test]
    fn an_unaligned_start_is_written_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let partial = PartialFile::new(new_file(&dir), Some(100));
        assert!(partial.direct.is_none());
    }
}
