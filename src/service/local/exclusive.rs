//! One writer per partial file at a time.
//!
//! A transfer cut off without a word (the command was killed) leaves its
//! writer waiting for bytes that never come. When the next run writes the
//! same file, its claim tells the old writer it is superseded, then waits
//! for the old writer to let go, so two writers never interleave in one
//! partial file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedMutexGuard};

/// The partial files being written, each with its current holder.
#[derive(Debug, Default)]
pub(super) struct PartialLocks {
    slots: Mutex<HashMap<PathBuf, Slot>>,
}

#[derive(Debug, Default, Clone)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The newest claimant, holding the lock or waiting for it: the next
    /// claimant tells it to stop. Each claimant told its predecessor.
    newest: Arc<Notify>,
}

/// The right to write one partial file; released on drop.
#[derive(Debug)]
pub struct PartialClaim {
    guard: Option<OwnedMutexGuard<()>>,
    superseded: Arc<Notify>,
    path: PathBuf,
    locks: Arc<PartialLocks>,
}

impl PartialLocks {
    /// Claims `path`: asks the newest earlier claimant, if any, to stop, and
    /// waits until the file is free. Check [`PartialClaim::is_superseded`]
    /// before using it: a yet newer claimant may have come meanwhile.
    pub(super) async fn claim(self: &Arc<Self>, path: &Path) -> PartialClaim {
        let superseded = Arc::new(Notify::new());
        let lock = {
            let mut slots = self.slots();
            let slot = slots.entry(path.to_path_buf()).or_default();
            let previous = std::mem::replace(&mut slot.newest, superseded.clone());
            if slot.lock.try_lock().is_err() {
                previous.notify_one();
            }
            slot.lock.clone()
        };
        let guard = lock.lock_owned().await;
        PartialClaim {
            guard: Some(guard),
            superseded,
            path: path.to_path_buf(),
            locks: self.clone(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PartialClaim {
    /// Completes when a newer writer claims the same file.
    pub async fn superseded(&self) {
        self.superseded.notified().await;
    }

    /// Whether a newer claimant already asked for the file (consumes the
    /// signal).
    pub fn is_superseded(&self) -> bool {
        use futures::FutureExt;
        self.superseded.notified().now_or_never().is_some()
    }

    /// The signal behind [`PartialClaim::superseded`], for a holder that
    /// hands the claim itself to another thread.
    pub fn superseded_signal(&self) -> Arc<Notify> {
        self.superseded.clone()
    }
}

impl Drop for PartialClaim {
    fn drop(&mut self) {
        let mut slots = self.locks.slots();
        drop(self.guard.take()); // Under the map lock, so the count is exact.
        if slots
            .get(&self.path)
            .is_some_and(|slot| Arc::strong_count(&slot.lock) == 1)
        {
            slots.remove(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_new_claim_supersedes_and_waits_for_the_old() {
        let locks = Arc::new(PartialLocks::default());
        let path = Path::new("/x/.f.part");
        let old = locks.claim(path).await;
        let newer = tokio::spawn({
            let locks = locks.clone();
            async move { locks.claim(Path::new("/x/.f.part")).await }
        });
        // The old holder is told, and the new one waits until it lets go.
        tokio::time::timeout(Duration::from_secs(5), old.superseded())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!newer.is_finished());
        drop(old);
        let newer = tokio::time::timeout(Duration::from_secs(5), newer)
            .await
            .unwrap()
            .unwrap();
        drop(newer);
        assert!(locks.slots().is_empty());
    }

    #[tokio::test]
    async fn a_waiting_claimant_is_superseded_by_a_newer_one() {
        let locks = Arc::new(PartialLocks::default());
        let path = Path::new("/x/.f.part");
        let first = locks.claim(path).await;
        let claim = |locks: Arc<PartialLocks>| {
            tokio::spawn(async move { locks.claim(Path::new("/x/.f.part")).await })
        };
        let second = claim(locks.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let third = claim(locks.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        assert!(
            second.is_superseded(),
            "the third claim told the waiting second"
        );
        drop(second);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .unwrap()
            .unwrap();
        assert!(!third.is_superseded());
    }

    #[tokio::test]
    async fn claims_on_other_files_do_not_interfere() {
        let locks = Arc::new(PartialLocks::default());
        let _a = locks.claim(Path::new("/a")).await;
        let b = locks.claim(Path::new("/b")).await;
        let quiet = tokio::time::timeout(Duration::from_millis(50), b.superseded()).await;
        assert!(quiet.is_err(), "b was not superseded");
    }
}
