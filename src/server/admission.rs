//! The front door: how many connections the daemon holds, in all and per
//! peer, so one peer's connections cannot take the places of the others.
//!
//! A place in the total is taken before the handshake (so handshakes in
//! progress count too) and a place in the peer's share once the handshake
//! says who the peer is. Both are given back when the connection ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::service::local::DEFAULT_LISTING_DEPTH;

/// The limits of `[limits]` in the daemon's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Connections at once, handshakes in progress included.
    pub connections: usize,
    /// Connections at once from one peer.
    pub connections_per_peer: usize,
    /// Listings walking at once; more wait their turn.
    pub listings: usize,
    /// Listings walking at once for one peer; more wait their turn.
    pub listings_per_peer: usize,
    /// Components a listed or written path may have at most.
    pub listing_depth: usize,
}

impl Default for ConnectionLimits {
    /// 256 connections, 16 per peer: a command uses one connection per
    /// remote side, so 16 leaves room for many commands of one host. 8
    /// listings, 2 per peer: a command lists each remote side once per
    /// attempt, and a walk holds a descriptor per level it is down, so 8
    /// walks 64 levels deep hold at most 520 descriptors.
    fn default() -> Self {
        Self {
            connections: 256,
            connections_per_peer: 16,
            listings: 8,
            listings_per_peer: 2,
            listing_depth: DEFAULT_LISTING_DEPTH,
        }
    }
}

/// Hands out places for connections within [`ConnectionLimits`].
#[derive(Debug)]
pub struct Admission {
    total: Arc<Semaphore>,
    per_peer: Mutex<HashMap<String, usize>>,
    per_peer_max: usize,
}

/// A connection's place in one peer's share; given back on drop.
#[derive(Debug)]
pub struct PeerPlace {
    admission: Arc<Admission>,
    peer: String,
}

impl Admission {
    /// Places for `limits`.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(limits.connections)),
            per_peer: Mutex::default(),
            per_peer_max: limits.connections_per_peer,
        })
    }

    /// A place for a new connection, or `None` when the daemon is full.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.total.clone().try_acquire_owned().ok()
    }

    /// A place in `peer`'s share, or `None` when the peer holds all of it.
    pub fn admit_peer(self: &Arc<Self>, peer: &str) -> Option<PeerPlace> {
        let mut per_peer = self.per_peer();
        let held = per_peer.entry(peer.to_string()).or_default();
        if *held >= self.per_peer_max {
            return None;
        }
        *held += 1;
        Some(PeerPlace {
            admission: self.clone(),
            peer: peer.to_string(),
        })
    }

    fn per_peer(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.per_peer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut per_peer = self.admission.per_peer();
        if let Some(held) = per_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_share_and_no_more_and_gets_it_back() {
        let admission = Admission::new(ConnectionLimits {
            connections: 10,
            connections_per_peer: 2,
            ..ConnectionLimits::default()
        });
        let (a1, _a2) = (admission.admit_peer("a"), admission.admit_peer("a"));
        assert!(admission.admit_peer("a").is_none());
        assert!(
            admission.admit_peer("b").is_some(),
            "another peer is not affected"
        );
        drop(a1);
        assert!(admission.admit_peer("a").is_some());
    }

    #[test]
    fn the_total_counts_every_connection() {
        let admission = Admission::new(ConnectionLimits {
            connections: 2,
            connections_per_peer: 2,
            ..ConnectionLimits::default()
        });
        let held = [admission.admit(), admission.admit()];
        assert!(held.iter().all(Option::is_some));
        assert!(admission.admit().is_none());
        drop(held);
        assert!(admission.admit().is_some());
    }
}
