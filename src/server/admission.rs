//! The front door: how many connections the daemon holds, in all and per
//! peer, so one peer's connections cannot take the places of the others,
//! and how many handshakes it works on, so a flood of them cannot either;
//! and what all connections of one peer share while it has any.
//!
//! A place in the total is taken before the handshake (so handshakes in
//! progress count too) and a place in the peer's share once the handshake
//! says who the peer is. Both are given back when the connection ends.
//! While many handshakes are in progress, a new one must first prove it
//! receives at its source address (a QUIC Retry, one round trip), so that
//! forged addresses cost the daemon no handshake at all.
//!
//! A reload changes every bound here at once ([`Admission::set_limits`]):
//! places already held are kept, and a lowered bound refuses new
//! connections (or makes new requests wait) until fewer are held than it
//! allows (see [`Places`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::limits::Limits;
use super::places::{Held, Places};
use crate::throttle::{Rate, Throttle};

/// Hands out places for connections within [`Limits`].
#[derive(Debug)]
pub(super) struct Admission {
    total: Arc<Places>,
    handshakes: Arc<Places>,
    /// Handshakes in progress beyond which a new one must prove its address.
    unvalidated_handshakes: AtomicUsize,
    peers: Mutex<Peers>,
}

/// The peers with connections, and the bounds of each one's share: under
/// one lock, so a peer's first connection and a reload never interleave.
#[derive(Debug)]
struct Peers {
    connections_per_peer: usize,
    requests_per_peer: usize,
    states: HashMap<String, PeerState>,
}

/// One peer's connections and what they share.
#[derive(Debug)]
struct PeerState {
    connections: usize,
    shared: PeerShared,
}

/// What every connection of one peer shares while it has any.
#[derive(Debug, Clone)]
pub(super) struct PeerShared {
    /// Paces what the daemon sends the peer, at its `[send_limits]` cap.
    pub send_cap: Throttle,
    /// Places for control requests served at once.
    pub requests: Arc<Places>,
}

/// What the front door does with a new connection.
#[derive(Debug)]
pub(super) enum Entry {
    /// Serve it, holding this place.
    Enter(ConnectionPlace),
    /// Ask it to prove its source address first (QUIC Retry).
    Validate,
    /// Refuse it: the daemon is full.
    Refuse(Full),
}

/// What the daemon holds its most of, when it refuses a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    /// Handshakes in progress.
    Handshakes,
    /// Connections.
    Connections,
}

impl Full {
    /// The `reason` label of the refusal metric.
    pub(super) fn label(self) -> &'static str {
        match self {
            Full::Handshakes => "handshakes_full",
            Full::Connections => "daemon_full",
        }
    }

    /// What the daemon holds its most of, for the log.
    pub(super) fn what(self) -> &'static str {
        match self {
            Full::Handshakes => "handshakes in progress",
            Full::Connections => "connections",
        }
    }
}

/// A connection's place in the daemon's total, and in the handshakes in
/// progress until [`ConnectionPlace::handshake_done`].
#[derive(Debug)]
pub(super) struct ConnectionPlace {
    _total: Held,
    handshake: Option<Held>,
}

impl ConnectionPlace {
    /// The handshake ended, one way or the other: its place among the
    /// handshakes in progress is given back.
    pub(super) fn handshake_done(&mut self) {
        self.handshake = None;
    }
}

/// A connection's place in one peer's share; given back on drop.
#[derive(Debug)]
pub(super) struct PeerPlace {
    admission: Arc<Admission>,
    peer: String,
    /// What the connection shares with the peer's others.
    pub shared: PeerShared,
}

impl Admission {
    /// Places for `limits`.
    pub(super) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            total: Places::new(limits.connections),
            handshakes: Places::new(limits.handshakes),
            unvalidated_handshakes: AtomicUsize::new(limits.unvalidated_handshakes),
            peers: Mutex::new(Peers {
                connections_per_peer: limits.connections_per_peer,
                requests_per_peer: limits.requests_per_peer,
                states: HashMap::new(),
            }),
        })
    }

    /// Makes `limits` the bounds from now on, for the peers with
    /// connections too; no place held is taken back.
    pub(super) fn set_limits(&self, limits: &Limits) {
        self.total.resize(limits.connections);
        self.handshakes.resize(limits.handshakes);
        self.unvalidated_handshakes
            .store(limits.unvalidated_handshakes, Ordering::Relaxed);
        let mut peers = self.peers();
        peers.connections_per_peer = limits.connections_per_peer;
        peers.requests_per_peer = limits.requests_per_peer;
        for state in peers.states.values() {
            state.shared.requests.resize(limits.requests_per_peer);
        }
    }

    /// Sets the cap of every peer with connections to its value in
    /// `caps` (none when absent); their connections follow it at once.
    pub(super) fn set_send_caps(&self, caps: &BTreeMap<String, Rate>) {
        for (peer, state) in self.peers().states.iter() {
            state.shared.send_cap.set(caps.get(peer).copied());
        }
    }

    /// What to do with a new connection whose source address is
    /// `validated` or not.
    pub(super) fn admit(&self, validated: bool) -> Entry {
        let in_progress = self.handshakes.in_use();
        if !validated && in_progress >= self.unvalidated_handshakes.load(Ordering::Relaxed) {
            return Entry::Validate;
        }
        let Some(handshake) = self.handshakes.try_take() else {
            return Entry::Refuse(Full::Handshakes);
        };
        let Some(total) = self.total.try_take() else {
            return Entry::Refuse(Full::Connections);
        };
        Entry::Enter(ConnectionPlace {
            _total: total,
            handshake: Some(handshake),
        })
    }

    /// A place in `peer`'s share, or `None` when the peer holds all of it.
    /// The peer's first connection sets up what its connections share,
    /// capped at `send_cap`.
    pub(super) fn admit_peer(
        self: &Arc<Self>,
        peer: &str,
        send_cap: Option<Rate>,
    ) -> Option<PeerPlace> {
        let mut peers = self.peers();
        let Peers {
            connections_per_peer,
            requests_per_peer,
            states,
        } = &mut *peers;
        let state = states.entry(peer.to_string()).or_insert_with(|| PeerState {
            connections: 0,
            shared: PeerShared {
                send_cap: Throttle::new(send_cap),
                requests: Places::new(*requests_per_peer),
            },
        });
        if state.connections >= *connections_per_peer {
            return None;
        }
        state.connections += 1;
        Some(PeerPlace {
            admission: self.clone(),
            peer: peer.to_string(),
            shared: state.shared.clone(),
        })
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut peers = self.admission.peers();
        if let Some(state) = peers.states.get_mut(&self.peer) {
            state.connections -= 1;
            if state.connections == 0 {
                peers.states.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: usize, per_peer: usize, handshakes: usize) -> Limits {
        Limits {
            connections,
            connections_per_peer: per_peer,
            handshakes,
            unvalidated_handshakes: handshakes,
            ..Limits::default()
        }
    }

    fn entered(entry: Entry) -> ConnectionPlace {
        match entry {
            Entry::Enter(place) => place,
            other => panic!("expected a place, got {other:?}"),
        }
    }

    #[test]
    fn a_peer_gets_its_share_and_no_more_and_gets_it_back() {
        let admission = Admission::new(limits(10, 2, 10));
        let (a1, _a2) = (
            admission.admit_peer("a", None),
            admission.admit_peer("a", None),
        );
        assert!(admission.admit_peer("a", None).is_none());
        assert!(
            admission.admit_peer("b", None).is_some(),
            "another peer is not affected"
        );
        drop(a1);
        assert!(admission.admit_peer("a", None).is_some());
    }

    #[test]
    fn the_total_counts_every_connection() {
        let admission = Admission::new(limits(2, 2, 10));
        let mut held = [
            entered(admission.admit(true)),
            entered(admission.admit(true)),
        ];
        // Finished handshakes still hold their place in the total.
        held.iter_mut().for_each(ConnectionPlace::handshake_done);
        assert!(matches!(
            admission.admit(true),
            Entry::Refuse(Full::Connections)
        ));
        drop(held);
        entered(admission.admit(true));
    }

    #[test]
    fn handshakes_beyond_the_threshold_must_validate_and_beyond_the_cap_are_refused() {
        let admission = Admission::new(Limits {
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

    #[test]
    fn a_peers_connections_share_its_send_cap_and_request_places() {
        let admission = Admission::new(Limits {
            requests_per_peer: 3,
            ..Limits::default()
        });
        let cap = Some("1M".parse().unwrap());
        let first = admission.admit_peer("a", cap).unwrap();
        let second = admission.admit_peer("a", None).unwrap();
        assert!(Arc::ptr_eq(&first.shared.requests, &second.shared.requests));
        assert_eq!(second.shared.send_cap.rate(), cap, "set by the first");
        let _held: Vec<_> = (0..3)
            .map(|_| first.shared.requests.try_take().unwrap())
            .collect();
        assert!(second.shared.requests.try_take().is_none());
        let other = admission.admit_peer("b", None).unwrap();
        assert!(
            other.shared.requests.try_take().is_some(),
            "another peer is not affected"
        );
    }

    #[test]
    fn new_limits_hold_for_the_connections_open_and_revoke_no_place() {
        let admission = Admission::new(Limits {
            requests_per_peer: 1,
            ..limits(2, 1, 10)
        });
        let held = [
            entered(admission.admit(true)),
            entered(admission.admit(true)),
        ];
        let first = admission.admit_peer("a", None).unwrap();
        assert!(admission.admit_peer("a", None).is_none());
        let request = first.shared.requests.try_take().unwrap();
        assert!(first.shared.requests.try_take().is_none());

        admission.set_limits(&Limits {
            requests_per_peer: 2,
            ..limits(3, 2, 10)
        });
        let second = admission.admit_peer("a", None).unwrap();
        let _third = entered(admission.admit(true));
        assert!(second.shared.requests.try_take().is_some(), "two now");

        admission.set_limits(&limits(1, 1, 10));
        assert!(matches!(
            admission.admit(true),
            Entry::Refuse(Full::Connections)
        ));
        assert!(admission.admit_peer("a", None).is_none());
        drop((first, request));
        assert!(
            admission.admit_peer("a", None).is_none(),
            "one held, one allowed"
        );
        drop((second, held));
        assert!(matches!(
            admission.admit(true),
            Entry::Refuse(Full::Connections)
        ));
        assert!(admission.admit_peer("a", None).is_some());
    }

    #[test]
    fn new_handshake_bounds_apply_to_the_next_connection() {
        let admission = Admission::new(limits(10, 10, 10));
        let _first = entered(admission.admit(false));
        admission.set_limits(&Limits {
            unvalidated_handshakes: 1,
            ..limits(10, 10, 1)
        });
        assert!(matches!(admission.admit(false), Entry::Validate));
        assert!(matches!(
            admission.admit(true),
            Entry::Refuse(Full::Handshakes)
        ));
    }

    #[test]
    fn new_send_caps_hold_for_the_connections_open() {
        let admission = Admission::new(Limits::default());
        let capped = admission
            .admit_peer("a", Some("1M".parse().unwrap()))
            .unwrap();
        let free = admission.admit_peer("b", None).unwrap();
        let cap: Rate = "2M".parse().unwrap();
        admission.set_send_caps(&[("b".to_string(), cap)].into());
        assert_eq!(capped.shared.send_cap.rate(), None, "a's cap is gone");
        assert_eq!(free.shared.send_cap.rate(), Some(cap));
        let later = admission.admit_peer("b", Some(cap)).unwrap();
        assert_eq!(later.shared.send_cap.rate(), Some(cap));
    }
}
