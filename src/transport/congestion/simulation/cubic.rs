//! Cubic's window (RFC 9438), for the loss-based TCP flow of the simulated
//! link: it fills the bottleneck's queue until the queue overflows, then
//! backs off.

use std::time::{Duration, Instant};

/// The scaling constant C, in packets per second cubed.
const C: f64 = 0.4;

/// The window kept after a congestion event, as a fraction.
const BETA: f64 = 0.7;

/// Cubic's congestion window, in bytes.
#[derive(Debug, Clone)]
pub(super) struct CubicWindow {
    /// Bytes that may be in flight.
    window: f64,
    /// Below this window, the window grows as in slow start.
    slow_start_threshold: f64,
    /// The window before the last reduction, in packets.
    w_max: f64,
    /// When the current growth epoch began.
    epoch_start: Instant,
    /// Seconds from the epoch's start until the window reaches `w_max`.
    k: f64,
    /// The window Reno would have now, in packets (the TCP-friendly floor).
    w_est: f64,
    /// Packets sent before this instant belong to the round that was
    /// already reduced for.
    recovery_start: Instant,
    /// Bytes per packet.
    mtu: f64,
    /// The smallest window, in bytes.
    min_window: f64,
}

impl CubicWindow {
    /// A window of `window` bytes in slow start, for packets of `mtu` bytes.
    pub(super) fn new(now: Instant, window: u64, mtu: u64) -> Self {
        Self {
            window: window as f64,
            slow_start_threshold: f64::INFINITY,
            w_max: window as f64 / mtu as f64,
            epoch_start: now,
            k: 0.0,
            w_est: window as f64 / mtu as f64,
            recovery_start: now,
            mtu: mtu as f64,
            min_window: 2.0 * mtu as f64,
        }
    }

    /// Bytes that may be in flight.
    pub(super) fn window(&self) -> u64 {
        self.window as u64
    }

    /// `bytes` of a packet were acknowledged at `now`; `rtt` is the
    /// smoothed round trip.
    pub(super) fn on_ack(&mut self, now: Instant, bytes: u64, rtt: Duration) {
        let bytes = bytes as f64;
        if self.window < self.slow_start_threshold {
            self.window += bytes;
            return;
        }
        let t = now
            .saturating_duration_since(self.epoch_start)
            .as_secs_f64();
        let rtt = rtt.as_secs_f64().max(1e-3);
        let target = C * (t + rtt - self.k).powi(3) + self.w_max;
        let window_packets = self.window / self.mtu;
        self.w_est += 3.0 * (1.0 - BETA) / (1.0 + BETA) * bytes / self.window;
        let grown = if target > window_packets {
            window_packets + (target - window_packets) / window_packets * bytes / self.mtu
        } else {
            window_packets
        };
        self.window = grown.max(self.w_est) * self.mtu;
    }

    /// Packets sent up to `sent` were lost at `now`: the window shrinks,
    /// once per round trip.
    pub(super) fn on_loss(&mut self, now: Instant, sent: Instant) {
        if sent < self.recovery_start {
            return;
        }
        self.recovery_start = now;
        let window_packets = self.window / self.mtu;
        // Fast convergence: a flow that had to back off below its last
        // plateau leaves room for the flows that took it.
        self.w_max = if window_packets < self.w_max {
            window_packets * (1.0 + BETA) / 2.0
        } else {
            window_packets
        };
        self.window = (self.window * BETA).max(self.min_window);
        self.slow_start_threshold = self.window;
        self.epoch_start = now;
        self.k = (self.w_max * (1.0 - BETA) / C).cbrt();
        self.w_est = self.window / self.mtu;
    }
}
