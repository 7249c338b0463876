//! Making many files and renames durable at the cost of a few syncs.
//!
//! A rename is durable once its directory is fsynced. When many files of one
//! directory finish together, one directory fsync that starts after all their
//! renames covers them all. [`DirSyncer`] hands out a ticket per rename and
//! lets a caller skip its fsync when a sync that started later has completed.
//!
//! A batch of small files is made durable whole by [`sync_file_systems`]:
//! one `syncfs` writes out every file and rename of the batch where a sync
//! per file would each wait for the disk.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::place::Partial;

/// Coalesces directory fsyncs across concurrent finishes. Blocking: call it
/// from a blocking thread.
#[derive(Debug, Default)]
pub(super) struct DirSyncer {
    dirs: Mutex<HashMap<DirKey, Arc<DirState>>>,
}

/// A directory's device and inode.
type DirKey = (u64, u64);

#[derive(Debug, Default)]
struct DirState {
    /// Renames completed in this directory.
    renamed: AtomicU64,
    /// Renames known durable; held while a sync runs.
    synced: Mutex<u64>,
}

impl DirSyncer {
    /// Records a completed rename in the open directory `dir` and returns
    /// once that rename is durable, fsyncing `dir` unless a later sync
    /// already covered it.
    pub(super) fn rename_done(&self, dir: &File) -> io::Result<()> {
        let metadata = dir.metadata()?;
        let key = (metadata.dev(), metadata.ino());
        let state = self.state(key);
        let ticket = state.renamed.fetch_add(1, Ordering::SeqCst) + 1;
        let result = {
            let mut synced = state.synced.lock().unwrap_or_else(|p| p.into_inner());
            if *synced >= ticket {
                Ok(())
            } else {
                let covered = state.renamed.load(Ordering::SeqCst);
                let result = dir.sync_all();
                if result.is_ok() {
                    *synced = covered;
                }
                result
            }
        };
        self.release(key, state);
        result
    }

    fn state(&self, key: DirKey) -> Arc<DirState> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.entry(key).or_default().clone()
    }

    /// Forgets a directory no finish is using any more, so the map stays small.
    fn release(&self, key: DirKey, state: Arc<DirState>) {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        drop(state); // Under the lock, so the count below is exact.
        if dirs.get(&key).is_some_and(|s| Arc::strong_count(s) == 1) {
            dirs.remove(&key);
        }
    }
}

/// Makes durable everything written to the file systems holding `files`
/// (data, inodes, directory entries), at the cost of one `syncfs` and one
/// disk cache flush per file system. Blocking.
///
/// The flush: on a file system without a journal (ext2, ext4 without one)
/// `syncfs` flushes the disk's write cache before it writes the last
/// metadata out, which could then stay in that volatile cache. An
/// `fdatasync` of a file with nothing left to write only flushes it.
///
/// `syncfs` reports a write-back error that happened since the file it is
/// called on was opened, so call it on files opened before their writes.
/// Kernels before 5.8 report only the file system's own errors (metadata,
/// journal), not those of writing a file's data; there (`syncfs_reports`
/// false, see [`syncfs_reports_errors`]) every file is also `fdatasync`ed,
/// which reports its own.
pub(super) fn sync_file_systems<'a>(
    files: impl IntoIterator<Item = &'a Partial>,
    syncfs_reports: bool,
) -> io::Result<()> {
    let mut synced = HashSet::new();
    for file in files {
        if synced.insert(file.device()) {
            // SAFETY: a plain system call on a descriptor open for the call.
            if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            file.sync_data()?;
        } else if !syncfs_reports {
            file.sync_data()?;
        }
    }
    Ok(())
}

/// Whether this kernel reports write-back errors to `syncfs`; warns if
/// not. Asked once, by the finisher as it starts.
pub(super) fn syncfs_reports_errors() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let reports = reports_syncfs_errors(&release);
    if !reports {
        tracing::warn!(
            kernel = release.trim(),
            "this kernel does not report write-back errors to syncfs (Linux 5.8 and later \
             do): every small file is synced on its own, which is slower"
        );
    }
    reports
}

/// Whether the kernel of release string `release` (such as "6.1.0-18-amd64")
/// is 5.8 or later. An unreadable release counts as older: the safe side.
fn reports_syncfs_errors(release: &str) -> bool {
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 8),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_renames_all_return_and_map_empties() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Arc::new(DirSyncer::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let syncer = syncer.clone();
                let dir = File::open(dir.path()).unwrap();
                std::thread::spawn(move || syncer.rename_done(&dir))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert!(syncer.dirs.lock().unwrap().is_empty());
    }

    #[test]
    fn syncfs_reports_errors_from_linux_5_8() {
        assert!(reports_syncfs_errors("6.18.0-1-cloud-amd64\n"));
        assert!(reports_syncfs_errors("5.8.0"));
        assert!(reports_syncfs_errors("10.0.0"));
        assert!(!reports_syncfs_errors("5.4.0-150-generic"));
        assert!(!reports_syncfs_errors("4.19.0"));
        assert!(!reports_syncfs_errors(""));
        assert!(!reports_syncfs_errors("garbage"));
    }
}
