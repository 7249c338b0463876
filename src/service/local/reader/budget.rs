//! The read budget: how many bytes read from local files one client of the
//! service may hold in memory at once.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::protocol::CHUNK_SIZE;

/// The budget of a service that does not say otherwise (48 MiB): the
/// command's own reads. It is far more than the bandwidth-delay product of
/// the links served.
const DEFAULT_BUDGET: u64 = 48 << 20;

/// Chunks read from local files that one client may hold in memory at once:
/// read ahead, waiting to be sent, or in the transport's send buffer until
/// the peer acknowledges them. Without it, memory grows with the files in
/// flight. The daemon gives each connection a budget of its own, so a peer
/// that reads slowly (or not at all) exhausts only its own. Clones share
/// the budget.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    chunks: Arc<Semaphore>,
}

/// One chunk's share of a [`ReadBudget`], given back on drop.
pub(super) type ChunkPermit = OwnedSemaphorePermit;

impl ReadBudget {
    /// A budget of `bytes`, in whole chunks, at least one.
    pub fn new(bytes: u64) -> Self {
        let chunks = (bytes / CHUNK_SIZE as u64).max(1) as usize;
        Self {
            chunks: Arc::new(Semaphore::new(chunks)),
        }
    }

    /// A chunk's share if there is room at once.
    pub fn try_take(&self) -> Option<ChunkPermit> {
        self.chunks.clone().try_acquire_owned().ok()
    }

    /// A chunk's share, once there is room.
    pub async fn take(&self) -> ChunkPermit {
        self.chunks
            .clone()
            .acquire_owned()
            .await
            .expect("the budget is never closed")
    }
}

impl Default for ReadBudget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_a_budget_and_budgets_are_apart() {
        let budget = ReadBudget::new(2 * CHUNK_SIZE as u64);
        let other = ReadBudget::new(CHUNK_SIZE as u64);
        let held = [budget.try_take(), budget.clone().try_take()];
        assert!(held.iter().all(Option::is_some));
        assert!(budget.try_take().is_none(), "the budget is spent");
        assert!(other.try_take().is_some(), "another budget is not");
        drop(held);
        assert!(budget.try_take().is_some(), "shares come back");
    }

    #[test]
    fn a_budget_holds_at_least_one_chunk() {
        assert!(ReadBudget::new(1).try_take().is_some());
    }
}
