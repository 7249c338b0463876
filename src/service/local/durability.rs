//! Making renames durable cheaply when many files finish at once.
//!
//! A rename is durable once its directory is fsynced. When many files of one
//! directory finish together, one directory fsync that starts after all their
//! renames covers them all. [`DirSyncer`] hands out a ticket per rename and
//! lets a caller skip its fsync when a sync that started later has completed.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Coalesces directory fsyncs across concurrent finishes. Blocking: call it
/// from a blocking thread.
#[derive(Debug, Default)]
pub struct DirSyncer {
    dirs: Mutex<HashMap<PathBuf, Arc<DirState>>>,
}

#[derive(Debug, Default)]
struct DirState {
    /// Renames completed in this directory.
    renamed: AtomicU64,
    /// Renames known durable; held while a sync runs.
    synced: Mutex<u64>,
}

impl DirSyncer {
    /// Records a completed rename in `dir` and returns once that rename is
    /// durable, fsyncing `dir` unless a later sync already covered it.
    pub fn rename_done(&self, dir: &Path) -> io::Result<()> {
        self.renames_done(dir, 1)
    }

    /// Records `count` completed renames in `dir` and returns once they are
    /// durable, like [`DirSyncer::rename_done`].
    pub fn renames_done(&self, dir: &Path, count: u64) -> io::Result<()> {
        let state = self.state(dir);
        let ticket = state.renamed.fetch_add(count, Ordering::SeqCst) + count;
        let result = {
            let mut synced = state.synced.lock().unwrap_or_else(|p| p.into_inner());
            if *synced >= ticket {
                Ok(())
            } else {
                let covered = state.renamed.load(Ordering::SeqCst);
                let result = File::open(dir).and_then(|d| d.sync_all());
                if result.is_ok() {
                    *synced = covered;
                }
                result
            }
        };
        self.release(dir, state);
        result
    }

    fn state(&self, dir: &Path) -> Arc<DirState> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Forgets a directory no finish is using any more, so the map stays small.
    fn release(&self, dir: &Path, state: Arc<DirState>) {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        drop(state); // Under the lock, so the count below is exact.
        if dirs.get(dir).is_some_and(|s| Arc::strong_count(s) == 1) {
            dirs.remove(dir);
        }
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
                let path = dir.path().to_path_buf();
                std::thread::spawn(move || syncer.rename_done(&path))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert!(syncer.dirs.lock().unwrap().is_empty());
    }

    #[test]
    fn missing_directory_is_an_error() {
        let syncer = DirSyncer::default();
        assert!(syncer.rename_done(Path::new("/nonexistent/dir")).is_err());
    }
}
