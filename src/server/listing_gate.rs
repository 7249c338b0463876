//! How many listings the daemon walks at once, in all and per peer.
//!
//! A listing beyond either bound waits its turn rather than fail: waiting
//! holds only the stream's task (streams are bounded per connection, and
//! connections per peer), while a failed listing would fail the peer's
//! whole move. A listing takes its place in its peer's share first and in
//! the total second, so one peer's waiting listings queue among themselves
//! and never stand in the others' way. Turns are handed out in the order
//! they were asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Hands out turns to walk a directory.
#[derive(Debug)]
pub struct ListingGate {
    total: Arc<Semaphore>,
    /// The shares of peers with a listing walking or waiting.
    per_peer: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_peer_max: usize,
}

/// A listing's turn; given back on drop.
#[derive(Debug)]
pub struct ListingTurn {
    _total: OwnedSemaphorePermit,
    _share: PeerShare,
}

/// A listing's place in its peer's share; the share goes once no listing
/// of the peer holds or waits for a place in it.
#[derive(Debug)]
struct PeerShare {
    gate: Arc<ListingGate>,
    peer: String,
    permit: Option<OwnedSemaphorePermit>,
}

impl ListingGate {
    /// A gate letting `total` listings walk at once, `per_peer` of one peer.
    pub fn new(total: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total)),
            per_peer: Mutex::default(),
            per_peer_max: per_peer,
        })
    }

    /// Waits for `peer`'s listing's turn.
    pub async fn turn(self: &Arc<Self>, peer: &str) -> ListingTurn {
        let share = self.share(peer);
        let mut place = PeerShare {
            gate: self.clone(),
            peer: peer.to_string(),
            permit: None,
        };
        // Neither semaphore is ever closed.
        place.permit = share.acquire_owned().await.ok();
        let total = self.total.clone().acquire_owned().await;
        ListingTurn {
            _total: total.expect("the gate's semaphore is never closed"),
            _share: place,
        }
    }

    /// `peer`'s share, made if the peer has none.
    fn share(&self, peer: &str) -> Arc<Semaphore> {
        let max = self.per_peer_max;
        self.peers()
            .entry(peer.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(max)))
            .clone()
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        self.per_peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Peers with a listing walking or waiting.
    #[cfg(test)]
    fn peers_holding(&self) -> usize {
        self.peers().len()
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut peers = self.gate.peers();
        // Every other holder of the share (a waiting or walking listing of
        // the peer) holds a clone; only the map's is left when none is.
        if peers
            .get(&self.peer)
            .is_some_and(|share| Arc::strong_count(share) == 1)
        {
            peers.remove(&self.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::Poll;

    #[tokio::test]
    async fn listings_beyond_the_bounds_wait_their_turn_in_order() {
        let gate = ListingGate::new(2, 1);
        let a = gate.turn("a").await;
        let mut a2 = pin!(gate.turn("a"));
        assert!(
            futures::poll!(a2.as_mut()).is_pending(),
            "a peer gets its share and no more"
        );
        let b = gate.turn("b").await;
        let mut c = pin!(gate.turn("c"));
        assert!(
            futures::poll!(c.as_mut()).is_pending(),
            "all listings are taken"
        );
        drop(a);
        let Poll::Ready(_c) = futures::poll!(c.as_mut()) else {
            panic!("c waited longest");
        };
        assert!(futures::poll!(a2.as_mut()).is_pending());
        drop(b);
        assert!(matches!(futures::poll!(a2.as_mut()), Poll::Ready(_)));
    }

    #[tokio::test]
    async fn a_peer_that_waits_for_nothing_leaves_nothing_behind() {
        let gate = ListingGate::new(2, 1);
        for peer in ["a", "b", "a"] {
            drop(gate.turn(peer).await);
        }
        assert_eq!(gate.peers_holding(), 0);
    }
}
