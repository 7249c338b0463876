//! A TCP flow with BBR for the simulated link: the flow that pushed
//! realize down to a small share of a shared link before it sized its
//! window for another flow's standing queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::PACKET;

/// BBR's gain in Startup, for its pacing and its window (2 / ln 2).
const STARTUP_GAIN: f64 = 2.89;

/// BBR's pacing gains in bandwidth probing, one per round: a round a
/// quarter above the estimate, a round a quarter below to drain what it
/// queued, six rounds at the estimate.
const CYCLE: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];

/// BBR's window outside Startup, in bandwidth-delay products.
const WINDOW_GAIN: f64 = 2.0;

/// Rounds over which the highest delivery rate is kept.
const RATE_ROUNDS: usize = 10;

/// How long the lowest RTT is trusted before it is measured again.
const RTPROP_EXPIRY: Duration = Duration::from_secs(10);

/// How long the window stays at 4 packets to measure it.
const PROBE_RTT: Duration = Duration::from_millis(200);

/// A TCP flow with BBR (version 1, as Linux has it), reduced to what sets
/// its rate and its window: the highest delivery rate of the last 10
/// rounds, the lowest RTT of the last 10 s (measured again with 4 packets
/// in flight for 200 ms when it expires), a pacing gain cycling through
/// [`CYCLE`], and a window of 2 bandwidth-delay products.
#[derive(Debug, Clone)]
pub(super) struct Bbr {
    /// Whether the flow is still in Startup.
    startup: bool,
    /// The highest bandwidth Startup has seen grow by a quarter, and the
    /// rounds since it last did: three such rounds end Startup.
    full_bandwidth: (f64, u32),
    /// The delivery rates of the last rounds, bytes per second.
    rates: VecDeque<f64>,
    /// When the round in progress began, and what had been delivered then.
    round: (Instant, u64),
    /// Bytes acknowledged so far.
    delivered: u64,
    /// The lowest RTT, and when it was last seen.
    rtprop: (Duration, Instant),
    /// The end of the RTT measurement in progress, if one is.
    probe_rtt_until: Option<Instant>,
    /// The position in [`CYCLE`].
    cycle: usize,
}

impl Bbr {
    /// A flow starting at `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            startup: true,
            full_bandwidth: (0.0, 0),
            rates: VecDeque::new(),
            round: (now, 0),
            delivered: 0,
            rtprop: (Duration::MAX, now),
            probe_rtt_until: None,
            cycle: 0,
        }
    }

    /// The bandwidth estimate: the highest recent delivery rate.
    fn bandwidth(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }

    /// Bytes that may be in flight.
    pub(super) fn window(&self) -> u64 {
        let floor = 4 * PACKET;
        if self.probe_rtt_until.is_some() {
            return floor;
        }
        if self.rtprop.0 == Duration::MAX || self.bandwidth() == 0.0 {
            return 10 * PACKET;
        }
        let gain = if self.startup {
            STARTUP_GAIN
        } else {
            WINDOW_GAIN
        };
        ((gain * self.bandwidth() * self.rtprop.0.as_secs_f64()) as u64).max(floor)
    }

    /// Bytes per second the flow paces at; `srtt` sets the pace before the
    /// first measurement.
    pub(super) fn pacing_rate(&self, srtt: Duration) -> f64 {
        if self.bandwidth() == 0.0 {
            return STARTUP_GAIN * self.window() as f64 / srtt.as_secs_f64();
        }
        let gain = if self.startup {
            STARTUP_GAIN
        } else {
            CYCLE[self.cycle]
        };
        gain * self.bandwidth()
    }

    /// A packet was acknowledged at `now`, `rtt` after it was sent.
    pub(super) fn on_ack(&mut self, now: Instant, rtt: Duration) {
        self.delivered += PACKET;
        self.track_rtprop(now, rtt);
        let (start, delivered_then) = self.round;
        let elapsed = now.saturating_duration_since(start);
        if self.rtprop.0 == Duration::MAX || elapsed < self.rtprop.0 {
            return;
        }
        let rate = (self.delivered - delivered_then) as f64 / elapsed.as_secs_f64();
        if self.rates.len() == RATE_ROUNDS {
            self.rates.pop_front();
        }
        self.rates.push_back(rate);
        self.end_round(now);
    }

    /// Keeps the lowest RTT, and measures it again when it expires.
    fn track_rtprop(&mut self, now: Instant, rtt: Duration) {
        if rtt <= self.rtprop.0 {
            self.rtprop = (rtt, now);
        }
        match self.probe_rtt_until {
            Some(until) if now >= until => {
                self.probe_rtt_until = None;
                self.rtprop.1 = now;
            }
            Some(_) => {}
            None if now.saturating_duration_since(self.rtprop.1) > RTPROP_EXPIRY => {
                self.probe_rtt_until = Some(now + PROBE_RTT + self.rtprop.0);
                self.rtprop.0 = rtt;
            }
            None => {}
        }
    }

    /// Ends Startup once the bandwidth stops growing, and moves the cycle.
    fn end_round(&mut self, now: Instant) {
        let bandwidth = self.bandwidth();
        let (full, flat_rounds) = self.full_bandwidth;
        self.full_bandwidth = if bandwidth >= full * 1.25 {
            (bandwidth, 0)
        } else {
            (full, flat_rounds + 1)
        };
        if self.full_bandwidth.1 >= 3 {
            self.startup = false;
        }
        self.cycle = (self.cycle + 1) % CYCLE.len();
        self.round = (now, self.delivered);
    }
}
