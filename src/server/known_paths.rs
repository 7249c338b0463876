//! What the daemon's last connection to each peer measured of the path, so
//! that the next connection to that peer sends at the path's rate from its
//! first round trips instead of ramping up from a few packets (see
//! [`crate::transport::congestion::resume`]).
//!
//! Each side keeps only what it measured as the sender: the daemon starts
//! its own sending from its own figures, never from a peer's claim. A
//! figure is used for a connection of the same peer from the same host
//! within [`KNOWN_PATH_LIFETIME`]; the controller checks the round trip as
//! well. One entry per peer id, which only the configuration names, and
//! expired ones are dropped, so the memory is bounded by `[peers]`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use quinn::Connection;

use crate::transport::congestion::{self, KnownPath, KNOWN_PATH_LIFETIME};

/// The path to each peer, as the daemon last measured it.
#[derive(Debug, Default)]
pub(super) struct KnownPaths {
    paths: Mutex<HashMap<String, Measured>>,
}

/// One peer's path, measured from one host.
#[derive(Debug, Clone, Copy)]
struct Measured {
    host: IpAddr,
    path: KnownPath,
    at: Instant,
}

impl KnownPaths {
    /// Starts `connection`, just accepted from `peer` at `address`, from
    /// the path the last connection to them measured, if any.
    pub(super) fn resume(&self, connection: &Connection, peer: &str, address: SocketAddr) {
        let Some(known) = self.recall(peer, address) else {
            return;
        };
        tracing::info!(
            peer,
            rate_mbit = known.rate * 8e-6,
            min_rtt_ms = known.min_rtt.as_secs_f64() * 1e3,
            "sending from the rate the last connection to this peer measured"
        );
        congestion::resume(connection, known);
    }

    /// Keeps what `connection`, ending, measured of the path to `peer` at
    /// `address`, if it measured a rate.
    pub(super) fn keep(&self, connection: &Connection, peer: &str, address: SocketAddr) {
        if let Some(known) = congestion::known_path(connection) {
            self.remember(peer, address, known);
        }
    }

    /// The path last measured to `peer` at the host of `address`, if it was
    /// measured within [`KNOWN_PATH_LIFETIME`].
    fn recall(&self, peer: &str, address: SocketAddr) -> Option<KnownPath> {
        let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let measured = paths.get(peer)?;
        let fresh = measured.at.elapsed() <= KNOWN_PATH_LIFETIME;
        (fresh && measured.host == address.ip()).then_some(measured.path)
    }

    /// Keeps `path`, measured to `peer` at `address`, for its next
    /// connection if it replaces what is known (see
    /// [`KnownPath::replaces`]), and forgets what has expired.
    fn remember(&self, peer: &str, address: SocketAddr, path: KnownPath) {
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths.retain(|_, measured| measured.at.elapsed() <= KNOWN_PATH_LIFETIME);
        let known = paths
            .get(peer)
            .filter(|measured| measured.host == address.ip())
            .map(|measured| measured.path);
        if !path.replaces(known.as_ref()) {
            return;
        }
        let measured = Measured {
            host: address.ip(),
            path,
            at: Instant::now(),
        };
        paths.insert(peer.to_string(), measured);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_path_is_recalled_for_the_same_peer_from_the_same_host_only() {
        let paths = KnownPaths::default();
        let path = KnownPath {
            rate: 12.5e6,
            min_rtt: Duration::from_millis(100),
            filled: true,
        };
        let laptop: SocketAddr = "198.18.0.1:50000".parse().unwrap();
        assert_eq!(paths.recall("alice", laptop), None);
        paths.remember("alice", laptop, path);
        let next_run: SocketAddr = "198.18.0.1:50123".parse().unwrap();
        assert_eq!(
            paths.recall("alice", next_run),
            Some(path),
            "another port, same host"
        );
        assert_eq!(
            paths.recall("alice", "203.0.113.9:50000".parse().unwrap()),
            None
        );
        assert_eq!(paths.recall("bob", laptop), None);
    }
}
