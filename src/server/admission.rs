//! The front door: how many connections the daemon holds, in all and per
//! peer, so one peer's connections cannot take the places of the others,
//! and how many handshakes it works on, so a flood of them cannot either.
//!
//! A place in the total is taken before the handshake (so handshakes in
//! progress count too) and a place in the peer's share once the handshake
//! says who the peer is. Both are given back when the connection ends.
//! While many handshakes are in progress, a new one must first prove it
//! receives at its source address (a QUIC Retry, one round trip), so that
//! forged addresses cost the daemon no handshake at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of `[limits]` in the daemon's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Connections at once, handshakes in progress included.
    pub connections: usize,
    /// Connections at once from one peer.
    pub connections_per_peer: usize,
    /// Handshakes in progress at once; more are refused.
    pub handshakes: usize,
    /// Handshakes in progress beyond which a new one must first prove its
    /// source address.
    pub unvalidated_handshakes: usize,
    /// How long a partial file no writer holds may stay unchanged before
    /// the daemon removes it (see `server::collector`).
    #[serde(deserialize_with = "super::config::duration")]
    pub partial_max_age: Duration,
}

impl Default for ConnectionLimits {
    /// 256 connections, 16 per peer: a command uses one connection per
    /// remote side, so 16 leaves room for many commands of one host. 64
    /// handshakes, address validation beyond 16: an honest host starts a
    /// few at once, and a handshake takes one round trip or two. Partial
    /// files are kept 7 days: an interrupted move is retried by the command
    /// within minutes, or by its next scheduled run, typically a day later;
    /// a partial file collected costs only sending its bytes again.
    fn default() -> Self {
        Self {
            connections: 256,
            connections_per_peer: 16,
            handshakes: 64,
            unvalidated_handshakes: 16,
            partial_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Hands out places for connections within [`ConnectionLimits`].
#[derive(Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    total: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    per_peer: Mutex<HashMap<String, usize>>,
}

/// What the front door does with a new connection.
#[derive(Debug)]
pub enum Entry {
    /// Serve it, holding this place.
    Enter(Place),
    /// Ask it to prove its source address first (QUIC Retry).
    Validate,
    /// Refuse it: the daemon is full.
    Refuse(Full),
}

/// What the daemon holds its most of, when it refuses a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Handshakes in progress.
    Handshakes,
    /// Connections.
    Connections,
}

impl Full {
    /// The `reason` label of the refusal metric.
    pub fn label(self) -> &'static str {
        match self {
            Full::Handshakes => "handshakes_full",
            Full::Connections => "daemon_full",
        }
    }

    /// What the daemon holds its most of, for the log.
    pub fn what(self) -> &'static str {
        match self {
            Full::Handshakes => "handshakes in progress",
            Full::Connections => "connections",
        }
    }
}

/// A connection's place in the daemon's total, and in the handshakes in
/// progress until [`Place::handshake_done`].
#[derive(Debug)]
pub struct Place {
    _total: OwnedSemaphorePermit,
    handshake: Option<OwnedSemaphorePermit>,
}

impl Place {
    /// The handshake ended, one way or the other: its place among the
    /// handshakes in progress is given back.
    pub fn handshake_done(&mut self) {
        self.handshake = None;
    }
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
            limits,
            total: Arc::new(Semaphore::new(limits.connections)),
            handshakes: Arc::new(Semaphore::new(limits.handshakes)),
            per_peer: Mutex::default(),
        })
    }

    /// What to do with a new connection whose source address is
    /// `validated` or not.
    pub fn admit(&self, validated: bool) -> Entry {
        let in_progress = self.limits.handshakes - self.handshakes.available_permits();
        if !validated && in_progress >= self.limits.unvalidated_handshakes {
            return Entry::Validate;
        }
        let Ok(handshake) = self.handshakes.clone().try_acquire_owned() else {
            return Entry::Refuse(Full::Handshakes);
        };
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            return Entry::Refuse(Full::Connections);
        };
        Entry::Enter(Place {
            _total: total,
            handshake: Some(handshake),
        })
    }

    /// A place in `peer`'s share, or `None` when the peer holds all of it.
    pub fn admit_peer(self: &Arc<Self>, peer: &str) -> Option<PeerPlace> {
        let mut per_peer = self.per_peer();
        let held = per_peer.entry(peer.to_string()).or_default();
        if *held >= self.limits.connections_per_peer {
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

    fn limits(connections: usize, per_peer: usize, handshakes: usize) -> ConnectionLimits {
        ConnectionLimits {
            connections,
            connections_per_peer: per_peer,
            handshakes,
            unvalidated_handshakes: handshakes,
            ..ConnectionLimits::default()
        }
    }

    fn entered(entry: Entry) -> Place {
        match entry {
            Entry::Enter(place) => place,
            other => panic!("expected a place, got {other:?}"),
        }
    }

    #[test]
    fn a_peer_gets_its_share_and_no_more_and_gets_it_back() {
        let admission = Admission::new(limits(10, 2, 10));
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
        let admission = Admission::new(limits(2, 2, 10));
        let mut held = [
            entered(admission.admit(true)),
            entered(admission.admit(true)),
        ];
        // Finished handshakes still hold their place in the total.
        held.iter_mut().for_each(Place::handshake_done);
        assert!(matches!(
            admission.admit(true),
            Entry::Refuse(Full::Connections)
        ));
        drop(held);
        entered(admission.admit(true));
    }

    #[test]
    fn handshakes_beyond_the_threshold_must_validate_and_beyond_the_cap_are_refused() {
        let admission = Admission::new(ConnectionLimits {
            unvalidated_handshakes: 1,
            ..limits(10, 10, 2)
        });
        let mut first = entered(admission.admit(false));
        // One handshake in progress: the next must prove its address, and
        // may enter once it has.
        assert!(matches!(admission.admit(false), Entry::Validate));
        let _second = entered(admission.admit(true));
        assert!(matches!(
            admission.admit(true),
            Entry::Refuse(Full::Handshakes)
        ));
        // A finished handshake makes room among the handshakes.
        first.handshake_done();
        entered(admission.admit(true));
    }
}
