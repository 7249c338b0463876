//! The daemon's `[limits]`: every bound on what peers can make it hold,
//! with its default and the reason for it, in one place.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::CHUNK_SIZE;
use crate::service::local::{DEFAULT_LISTING_DEPTH, MAX_LISTING_DEPTH};

/// The most any count of `[limits]` accepts: far beyond what one host
/// serves, and within what the daemon's semaphores hold.
const MAX_COUNT: usize = 1 << 16;

/// The shortest timeout `[limits]` accepts: shorter would cut off honest
/// peers on any real link.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Blocking threads the daemon keeps for work of no connection in
/// particular: leaving a partial file behind, metrics.
const SHARED_BLOCKING_THREADS: usize = 64;

/// The limits of `[limits]` in the daemon's configuration. They serialize
/// back to the TOML they are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections at once, handshakes in progress included.
    pub connections: usize,
    /// Connections at once from one peer.
    pub connections_per_peer: usize,
    /// Handshakes in progress at once; more are refused.
    pub handshakes: usize,
    /// Handshakes in progress beyond which a new one must first prove its
    /// source address.
    pub unvalidated_handshakes: usize,
    /// Control requests of one peer served at once, over all its
    /// connections; more wait unread.
    pub requests_per_peer: usize,
    /// Listings walking at once; more wait their turn.
    pub listings: usize,
    /// Listings walking at once for one peer; more wait their turn.
    pub listings_per_peer: usize,
    /// Components a listed or written path may have at most.
    pub listing_depth: usize,
    /// Data streams (files in flight) a connection may have open at once;
    /// the peer opens more only as others end. Each holds at most one
    /// blocking thread and one open file.
    pub streams_per_connection: usize,
    /// Bytes of file data one connection's reads may hold in memory: read
    /// ahead, queued, or sent and not yet acknowledged.
    #[serde(deserialize_with = "size")]
    pub read_buffer_per_connection: u64,
    /// How long a data stream may make no progress (no byte of a write
    /// arrives, no byte of a read or listing is taken) before it is reset
    /// with `STALLED`.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub stall_timeout: Duration,
    /// How long a connection has to open its control stream and say hello.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub hello_timeout: Duration,
    /// How long a partial file no writer holds may stay unchanged before
    /// the daemon removes it (see `server::collector`).
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub partial_max_age: Duration,
}

impl Default for Limits {
    /// 256 connections, 16 per peer: a command uses one connection per
    /// remote side, so 16 leaves room for many commands of one host. 64
    /// handshakes, address validation beyond 16: an honest host starts a
    /// few at once, and a handshake takes one round trip or two. 64
    /// requests per peer: a command keeps a few per file in flight, and
    /// hashes hold a thread each. 8 listings, 2 per peer: a command lists
    /// each remote side once per attempt, and a walk holds a descriptor per
    /// level it is down, so 8 walks 64 levels deep hold at most 520
    /// descriptors. 256 streams: the 128 files a command moves at once by
    /// default, or the 128 streams each way of `realize bench`. 32 MiB of
    /// reads: a connection sends 2.5 Gbit/s at a 100 ms round trip. 30 s
    /// without progress: three idle timeouts, so a link that comes back
    /// within the idle timeout never trips it. 10 s to say hello: a few
    /// round trips on the worst links served. Partial files are kept 7
    /// days: an interrupted move is retried by the command within minutes,
    /// or by its next scheduled run, typically a day later; a partial file
    /// collected costs only sending its bytes again.
    fn default() -> Self {
        Self {
            connections: 256,
            connections_per_peer: 16,
            handshakes: 64,
            unvalidated_handshakes: 16,
            requests_per_peer: 64,
            listings: 8,
            listings_per_peer: 2,
            listing_depth: DEFAULT_LISTING_DEPTH,
            streams_per_connection: 256,
            read_buffer_per_connection: 32 << 20,
            stall_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            partial_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Limits {
    /// Bidirectional QUIC streams a peer may open at once: the data streams
    /// and the control stream.
    pub fn quic_streams(&self) -> u32 {
        u32::try_from(self.streams_per_connection + 1).unwrap_or(u32::MAX)
    }

    /// The most blocking threads all connections can keep busy at once:
    /// one per data stream and one per control request being served, plus
    /// [`SHARED_BLOCKING_THREADS`]. The daemon's pool allows that many for
    /// the limits it starts with, so no connection ever waits for a thread
    /// another one holds; tokio cannot resize the pool, so a reload that
    /// raises this number is logged, and the pool grows only at a restart.
    pub fn blocking_threads(&self) -> usize {
        // Every connection may be another peer's, with its full share of
        // control requests.
        let per_connection = self.streams_per_connection + self.requests_per_peer;
        self.connections
            .saturating_mul(per_connection)
            .saturating_add(SHARED_BLOCKING_THREADS)
    }

    /// Refuses limits that would let nothing through or that no host
    /// could hold, naming the key.
    pub fn check(&self) -> Result<(), String> {
        let counts = [
            ("connections", self.connections),
            ("connections_per_peer", self.connections_per_peer),
            ("handshakes", self.handshakes),
            ("requests_per_peer", self.requests_per_peer),
            ("streams_per_connection", self.streams_per_connection),
            ("listings", self.listings),
            ("listings_per_peer", self.listings_per_peer),
        ];
        if let Some((key, _)) = counts.iter().find(|(_, n)| !(1..=MAX_COUNT).contains(n)) {
            return Err(format!("[limits] {key} must be between 1 and {MAX_COUNT}"));
        }
        if self.unvalidated_handshakes > MAX_COUNT {
            return Err(format!(
                "[limits] unvalidated_handshakes must be at most {MAX_COUNT}"
            ));
        }
        if self.read_buffer_per_connection < CHUNK_SIZE as u64 {
            return Err(format!(
                "[limits] read_buffer_per_connection must be at least {}k, one chunk of a read",
                CHUNK_SIZE >> 10
            ));
        }
        if !(1..=MAX_LISTING_DEPTH).contains(&self.listing_depth) {
            return Err(format!(
                "[limits] listing_depth must be between 1 and {MAX_LISTING_DEPTH} (a path has at \
                 most that many components)"
            ));
        }
        let timeouts = [
            ("stall_timeout", self.stall_timeout),
            ("hello_timeout", self.hello_timeout),
            ("partial_max_age", self.partial_max_age),
        ];
        if let Some((key, _)) = timeouts.iter().find(|(_, t)| *t < MIN_TIMEOUT) {
            return Err(format!("[limits] {key} must be at least 1s"));
        }
        Ok(())
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
        Size::Text(text) => crate::units::parse_bytes(&text),
    };
    match bytes {
        Some(bytes) if bytes >= 1.0 && bytes <= u64::MAX as f64 => Ok(bytes.round() as u64),
        _ => Err(serde::de::Error::custom(
            "expected a size such as 32M, 512k or a number of bytes",
        )),
    }
}

/// A duration written as `30s`, `2m`, `1m 30s` or `7d`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}): write e.g. 30s, 2m, 1m 30s or 7d"
        ))
    })
}

/// A duration as [`duration`] reads it back (`30s`, `7days`).
fn write_duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}
