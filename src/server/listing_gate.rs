//! How many listings the daemon walks at once, in all and per peer.
//!
//! A listing beyond either bound waits its turn rather than fail: waiting
//! holds only the stream's task (streams are bounded per connection, and
//! connections per peer), while a failed listing would fail the peer's
//! whole move. A listing takes its place in its peer's share first and in
//! the total second, so one peer's waiting listings queue among themselves
//! and never stand in the others' way. Turns are handed out in the order
//! they were asked for. A reload changes both bounds at once
//! ([`ListingGate::resize`]); listings walking go on, and under a lowered
//! bound the next turn comes once fewer walk than it allows (see
//! [`Places`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::places::{Held, Places};

/// Hands out turns to walk a directory.
#[derive(Debug)]
pub(super) struct ListingGate {
    total: Arc<Places>,
    shares: Mutex<Shares>,
}

/// The shares of peers with a listing walking or waiting, and how many
/// listings a share lets walk.
#[derive(Debug)]
struct Shares {
    per_peer: usize,
    peers: HashMap<String, Arc<Places>>,
}

/// A listing's turn; given back on drop.
#[derive(Debug)]
pub(super) struct ListingTurn {
    _total: Held,
    _share: PeerShare,
}

/// A listing's place in its peer's share; the share goes once no listing
/// of the peer holds or waits for a place in it.
#[derive(Debug)]
struct PeerShare {
    gate: Arc<ListingGate>,
    peer: String,
    held: Option<Held>,
}

impl ListingGate {
    /// A gate letting `total` listings walk at once, `per_peer` of one peer.
    pub(super) fn new(total: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Places::new(total),
            shares: Mutex::new(Shares {
                per_peer,
                peers: HashMap::new(),
            }),
        })
    }

    /// Lets `total` listings walk at once from now on, `per_peer` of one
    /// peer, the peers with listings walking or waiting included.
    pub(super) fn resize(&self, total: usize, per_peer: usize) {
        self.total.resize(total);
        let mut shares = self.shares();
        shares.per_peer = per_peer;
        for share in shares.peers.values() {
            share.resize(per_peer);
        }
    }

    /// Waits for `peer`'s listing's turn.
    pub(super) async fn turn(self: &Arc<Self>, peer: &str) -> ListingTurn {
        let mut place = PeerShare {
            gate: self.clone(),
            peer: peer.to_string(),
            held: None,
        };
        // The share itself is not kept: a listing that stops waiting for
        // the total must leave `place` the last holder it knows of.
        place.held = Some(self.share(peer).take().await);
        ListingTurn {
            _total: self.total.take().await,
            _share: place,
        }
    }

    /// `peer`'s share, made if the peer has none.
    fn share(&self, peer: &str) -> Arc<Places> {
        let mut shares = self.shares();
        let per_peer = shares.per_peer;
        shares
            .peers
            .entry(peer.to_string())
            .or_insert_with(|| Places::new(per_peer))
            .clone()
    }

    fn shares(&self) -> std::sync::MutexGuard<'_, Shares> {
        self.shares.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Peers with a listing walking or waiting.
    #[cfg(test)]
    fn peers_holding(&self) -> usize {
        self.shares().peers.len()
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut shares = self.gate.shares();
        // Every other holder of the share (a waiting or walking listing of
        // the peer) holds a clone; only the map's is left when none is.
        if shares
            .peers
            .get(&self.peer)
            .is_some_and(|share| Arc::strong_count(share) == 1)
        {
            shares.peers.remove(&self.peer);
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
    async fn new_bounds_hold_for_the_listings_waiting_and_stop_none_walking() {
        let gate = ListingGate::new(1, 1);
        let a = gate.turn("a").await;
        let mut a2 = pin!(gate.turn("a"));
        assert!(futures::poll!(a2.as_mut()).is_pending());
        gate.resize(2, 2);
        let Poll::Ready(a2) = futures::poll!(a2.as_mut()) else {
            panic!("a's share and the total are two now");
        };
        gate.resize(1, 1);
        let mut b = pin!(gate.turn("b"));
        assert!(futures::poll!(b.as_mut()).is_pending());
        drop(a);
        assert!(
            futures::poll!(b.as_mut()).is_pending(),
            "one walks, one allowed"
        );
        drop(a2);
        assert!(matches!(futures::poll!(b.as_mut()), Poll::Ready(_)));
    }

    #[tokio::test]
    async fn a_peer_that_waits_for_nothing_leaves_nothing_behind() {
        let gate = ListingGate::new(2, 1);
        for peer in ["a", "b", "a"] {
            drop(gate.turn(peer).await);
        }
        assert_eq!(gate.peers_holding(), 0);
    }

    #[tokio::test]
    async fn a_listing_that_stops_waiting_leaves_nothing_behind() {
        let gate = ListingGate::new(1, 1);
        let walking = gate.turn("a").await;
        for peer in ["a", "b"] {
            let mut waiting = Box::pin(gate.turn(peer));
            assert!(futures::poll!(waiting.as_mut()).is_pending());
        }
        drop(walking);
        assert_eq!(gate.peers_holding(), 0);
    }
}
