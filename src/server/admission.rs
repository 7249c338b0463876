//! The front door: how many connections the daemon holds, in all and per
//! peer, so one peer's connections cannot take the places of the others.
//!
//! A place in the total is taken before the handshake (so handshakes in
//! progress count too) and a place in the peer's share once the handshake
//! says who the peer is. Both are given back when the connection ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connection::MAX_CONCURRENT_REQUESTS;

/// The connection limits of `[limits]` in the daemon's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Connections at once, handshakes in progress included.
    pub connections: usize,
    /// Connections at once from one peer.
    pub connections_per_peer: usize,
    /// Data streams (files in flight) a connection may have open at once;
    /// the peer opens more only as others end. Each holds at most one
    /// blocking thread and one open file.
    pub streams_per_connection: usize,
    /// Bytes of file data one connection's reads may hold in memory: read
    /// ahead, queued, or sent and not yet acknowledged.
    #[serde(deserialize_with = "size")]
    pub read_buffer_per_connection: u64,
}

/// Blocking threads the daemon keeps for work of no connection in
/// particular: leaving a partial file behind, metrics.
const SHARED_BLOCKING_THREADS: usize = 64;

impl Default for ConnectionLimits {
    /// 256 connections, 16 per peer: a command uses one connection per
    /// remote side, so 16 leaves room for many commands of one host. 256
    /// streams: the 128 files a command moves at once by default, or the
    /// 128 streams each way of `realize bench`. 32 MiB of reads: a
    /// connection sends 2.5 Gbit/s at a 100 ms round trip.
    fn default() -> Self {
        Self {
            connections: 256,
            connections_per_peer: 16,
            streams_per_connection: 256,
            read_buffer_per_connection: 32 << 20,
        }
    }
}

impl ConnectionLimits {
    /// Bidirectional QUIC streams a peer may open at once: the data streams
    /// and the control stream.
    pub fn quic_streams(&self) -> u32 {
        u32::try_from(self.streams_per_connection + 1).unwrap_or(u32::MAX)
    }

    /// The most blocking threads all connections can keep busy at once:
    /// one per data stream and one per control request being served, plus
    /// [`SHARED_BLOCKING_THREADS`]. The daemon's pool allows that many, so
    /// no connection ever waits for a thread another one holds.
    pub fn blocking_threads(&self) -> usize {
        let per_connection = self.streams_per_connection + MAX_CONCURRENT_REQUESTS;
        self.connections
            .saturating_mul(per_connection)
            .saturating_add(SHARED_BLOCKING_THREADS)
    }
}

/// A size in bytes: a number, or a string with a binary multiple (`32M`).
fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let bytes = match Size::deserialize(deserializer)? {
        Size::Bytes(bytes) => Some(bytes as f64),
        Size::Text(text) => crate::throttle::parse_bytes(&text),
    };
    match bytes {
        Some(bytes) if bytes >= 1.0 && bytes <= u64::MAX as f64 => Ok(bytes.round() as u64),
        _ => Err(serde::de::Error::custom(
            "expected a size such as 32M, 512k or a number of bytes",
        )),
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
