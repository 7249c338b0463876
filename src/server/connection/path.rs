//! The path metrics of a connection: round-trip time and congestion window
//! as gauges, packet counts as counters.

use quinn::{Connection, ConnectionStats};
use tokio::sync::oneshot;

use crate::telemetry;

/// Publishes the connection's path statistics every few seconds, and once
/// more when told to stop.
pub(super) async fn sample(connection: Connection, peer: String, mut stop: oneshot::Receiver<()>) {
    let mut path = PathMetrics::new(peer);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => path.record(&connection.stats()),
            _ = &mut stop => break,
        }
    }
    path.record(&connection.stats());
}

/// A connection's path metrics: gauges of its state, and counters that add
/// what its cumulative statistics grew by since the last sample, so that a
/// peer's counters sum all its connections and never go down.
struct PathMetrics {
    peer: String,
    counted: PathCounts,
}

/// The cumulative statistics of a connection that become counters.
#[derive(Default, Clone, Copy)]
struct PathCounts {
    sent_packets: u64,
    lost_packets: u64,
    received_datagrams: u64,
}

impl PathMetrics {
    fn new(peer: String) -> Self {
        Self {
            peer,
            counted: PathCounts::default(),
        }
    }

    fn record(&mut self, stats: &ConnectionStats) {
        let labels = [("peer", self.peer.clone())];
        metrics::gauge!(telemetry::PATH_RTT, &labels).set(stats.path.rtt.as_secs_f64());
        metrics::gauge!(telemetry::PATH_CWND, &labels).set(stats.path.cwnd as f64);
        let now = PathCounts {
            sent_packets: stats.path.sent_packets,
            lost_packets: stats.path.lost_packets,
            received_datagrams: stats.udp_rx.datagrams,
        };
        let before = std::mem::replace(&mut self.counted, now);
        let grown = |now: u64, before: u64| now.saturating_sub(before);
        metrics::counter!(telemetry::PATH_SENT_PACKETS, &labels)
            .increment(grown(now.sent_packets, before.sent_packets));
        metrics::counter!(telemetry::PATH_LOST_PACKETS, &labels)
            .increment(grown(now.lost_packets, before.lost_packets));
        metrics::counter!(telemetry::PATH_RECEIVED_DATAGRAMS, &labels)
            .increment(grown(now.received_datagrams, before.received_datagrams));
    }
}
