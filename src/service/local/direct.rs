//! Writing large received files past the page cache (`O_DIRECT`).
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
//! device's block. Received pieces and chunks read from local files start at
//! a page boundary in memory ([`crate::aligned`]); a write that is not aligned (the file's last
//! piece, a resume at an odd offset) goes through the page cache instead,
//! and so does every write on a file system without direct I/O.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::aligned::is_aligned;

/// Files whose bytes still to come are fewer than this are written through
/// the page cache: direct writes are synchronous, and small files gain
/// nothing from them.
pub const DIRECT_MIN: u64 = 1 << 20;

/// A partial file being written, past the page cache while the writes allow.
pub struct PartialFile {
    file: File,
    direct: bool,
}

impl PartialFile {
    /// Wraps `file`, writing past the page cache if `direct` is asked for
    /// and the file system allows it.
    pub fn new(file: File, direct: bool) -> Self {
        let direct = direct && set_direct(&file, true).is_ok();
        Self { file, direct }
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Writes all of `data` at `offset`: directly when both are aligned,
    /// else (and from then on) through the page cache.
    pub fn write_all_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        if self.direct {
            if is_aligned(data, offset) {
                match self.file.write_all_at(data, offset) {
                    // The device wants a coarser alignment than ours.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    done => return done,
                }
            }
            self.buffered()?;
        }
        self.file.write_all_at(data, offset)
    }

    /// Goes through the page cache from now on (to read the file back).
    pub fn buffered(&mut self) -> io::Result<()> {
        if self.direct {
            set_direct(&self.file, false)?;
            self.direct = false;
        }
        Ok(())
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
    use crate::aligned::ALIGNMENT;
    use std::io::Read;

    /// `len` bytes of a pattern, starting at a page boundary in memory.
    fn aligned_bytes(len: usize) -> (Vec<u8>, usize) {
        let mut storage = vec![0u8; len + ALIGNMENT];
        let start = storage.as_ptr().align_offset(ALIGNMENT);
        for (i, b) in storage[start..start + len].iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        (storage, start)
    }

    #[test]
    fn aligned_then_unaligned_writes_land_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut partial = PartialFile::new(file, true);
        let (storage, start) = aligned_bytes(3 * ALIGNMENT);
        let aligned = &storage[start..start + 2 * ALIGNMENT];
        partial.write_all_at(aligned, 0).unwrap();
        let tail = &storage[start + 1..start + 1 + 1000];
        partial.write_all_at(tail, aligned.len() as u64).unwrap();
        assert!(!partial.direct, "an unaligned write ends direct mode");
        partial.file().sync_data().unwrap();
        let mut content = Vec::new();
        File::open(&path)
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        assert_eq!(content.len(), aligned.len() + tail.len());
        assert_eq!(&content[..aligned.len()], aligned);
        assert_eq!(&content[aligned.len()..], tail);
    }

    #[test]
    fn buffered_mode_lets_the_file_be_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut partial = PartialFile::new(file, true);
        let (storage, start) = aligned_bytes(ALIGNMENT);
        partial
            .write_all_at(&storage[start..start + ALIGNMENT], 0)
            .unwrap();
        partial.buffered().unwrap();
        let mut back = Vec::new();
        partial.file().read_to_end(&mut back).unwrap();
        assert_eq!(back, &storage[start..start + ALIGNMENT]);
    }
}
