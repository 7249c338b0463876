//! A TCP flow with BBR for the simulated link: the flow that pushed
//! realize down to a small share of a shared link before it sized its
//! window for another flow's standing queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::PACKET;

/// A TCP flow with BBR (version 1, as Linux has it), reduced to what sets
/// its rate and its window: the highest delivery rate of the last 10
/// rounds, the lowest RTT of the last 10 s (measured again with 4 packets
/// in flight for 200 ms when it expires), a pacing gain cycling through
/// 1.25, 0.75 and six rounds of 1, and a window of 2 bandwidth-delay
/// products.
#[derive(Debug, Clone)]
pub(super) struct Bbr {
    startup: bool,
    rates: VecDeque<f64>,
    round_start: Instant,
    round_delivered: u64,
    delivered: u64,
    rtprop: Duration,
    rtprop_seen: Instant,
    probe_rtt_until: Option<Instant>,
    cycle: usize,
}

impl Bbr {
    const GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];

    pub(super) fn new(now: Instant) -> Self {
        Self {
            startup: true,
            rates: VecDeque::new(),
            round_start: now,
            round_delivered: 0,
            delivered: 0,
            rtprop: Duration::MAX,
            rtprop_seen: now,
            probe_rtt_until: None,
            cycle: 0,
        }
    }

    pub(super) fn bandwidth(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }

    pub(super) fn window(&self) -> u64 {
        if self.probe_rtt_until.is_some() {
            return 4 * PACKET;
        }
        if self.rtprop == Duration::MAX || self.bandwidth() == 0.0 {
            return 10 * PACKET;
        }
        let gain = if self.startup { 2.89 } else { 2.0 };
        ((gain * self.bandwidth() * self.rtprop.as_secs_f64()) as u64).max(4 * PACKET)
    }

    pub(super) fn pacing_rate(&self, srtt: Duration) -> f64 {
        if self.bandwidth() == 0.0 {
            return 2.89 * self.window() as f64 / srtt.as_secs_f64();
        }
        let gain = if self.startup {
            2.89
        } else {
            Self::GAINS[self.cycle]
        };
        gain * self.bandwidth()
    }

    pub(super) fn on_ack(&mut self, now: Instant, rtt: Duration) {
        self.delivered += PACKET;
        if rtt <= self.rtprop {
            self.rtprop = rtt;
            self.rtprop_seen = now;
        }
        if let Some(until) = self.probe_rtt_until {
            if now >= until {
                self.probe_rtt_until = None;
                self.rtprop_seen = now;
            }
        } else if now.saturating_duration_since(self.rtprop_seen) > Duration::from_secs(10) {
            self.probe_rtt_until = Some(now + Duration::from_millis(200) + self.rtprop);
            self.rtprop = rtt;
        }
        let round = now.saturating_duration_since(self.round_start);
        if self.rtprop != Duration::MAX && round >= self.rtprop {
            let rate = (self.delivered - self.round_delivered) as f64 / round.as_secs_f64();
            let best = self.bandwidth();
            if self.rates.len() == 10 {
                self.rates.pop_front();
            }
            self.rates.push_back(rate);
            if self.startup && self.rates.len() >= 4 && self.bandwidth() < best * 1.25 {
                let recent = self.rates.iter().rev().take(3);
                if recent.clone().all(|&r| r < best * 1.25) {
                    self.startup = false;
                }
            }
            self.cycle = (self.cycle + 1) % Self::GAINS.len();
            self.round_start = now;
            self.round_delivered = self.delivered;
        }
    }
}
