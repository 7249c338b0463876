//! The delivery-rate model: a congestion controller that sizes its window
//! from what the path delivers, not from what it loses.
//!
//! Loss-based controllers (Cubic, NewReno) read every lost packet as a full
//! queue and halve their window; on a long path with 1% random loss they
//! never grow past a few Mbit/s. This model instead measures, at every
//! acknowledgement, the rate at which the peer acknowledged data over the
//! last round trip, keeps the highest rate of the last
//! [`RATE_WINDOW_ROUNDS`] round trips, and allows in flight a small
//! multiple of that rate times the smallest round-trip time seen: the
//! bandwidth-delay product. Random loss lowers the measured rate by the loss
//! fraction and nothing more. Only heavy loss, which a random process on a
//! sane path does not produce, shrinks the window at once.
//!
//! The model is sans-IO: it is driven with instants and byte counts, so the
//! simulated link in `simulation.rs` exercises it without sockets, alone and
//! beside other flows. [`super::DeliveryRate`] adapts it to quinn's
//! `Controller` trait.
//!
//! Phases:
//! - **Startup** doubles the window each round trip, as slow start does, but
//!   never beyond [`STARTUP_GAIN`] times the measured bandwidth-delay
//!   product, and leaves when three rounds in a row fail to raise the rate
//!   by a quarter (the pipe is full) or when a round loses heavily.
//! - **Drain** holds the window to one bandwidth-delay product until the
//!   queue built in Startup has drained.
//! - **Cruise** allows [`CRUISE_GAIN`] bandwidth-delay products in flight:
//!   the pipe stays full, with a queue of a quarter of the minimum RTT, even
//!   while lost packets wait to be detected. The extra quarter also probes:
//!   if the path got faster, the extra data is delivered, the measured rate
//!   rises and the window follows, a quarter more each round trip. A
//!   separate probing round, as in BBR, bought nothing on the emulated
//!   links but a dip in the round that drains it.
//!
//! Sharing a bottleneck. Flows that share a queue share the link in
//! proportion to what each keeps queued: a flow whose window leaves a
//! shorter queue than another's delivers less than its window each round,
//! measures a lower rate, and shrinks, round after round. A TCP flow with
//! BBR keeps a bandwidth-delay product queued; beside it, a window of 1.25
//! products fell below a tenth of BBR's rate. So the model tells its own
//! queue from another flow's:
//! - A **probe** holds the window to half a bandwidth-delay product for a
//!   round (the model's own queue drains), then to one product for a round
//!   (it measures without adding to the queue). It runs when a standing
//!   queue has lasted [`STANDING_QUEUE_ROUNDS`] rounds and, while sharing,
//!   when the idle round trip has not been seen for [`MIN_RTT_EXPIRY`]. A
//!   flow alone never sees a standing queue, so it never probes: a probe
//!   costs about half a round trip of sending.
//! - A queue that stays through a probe is another flow's: while it does,
//!   **sharing** allows [`SHARING_GAIN`] bandwidth-delay products, what BBR
//!   keeps in flight, with one round in [`SHARING_CYCLE`] a quarter above,
//!   as BBR probes for bandwidth. A probe that finds the queue gone ends
//!   sharing.
//!
//! Two realize flows keep their quarters and stay in Cruise: the standing
//! queue must outlast the one a flow builds in its Startup.
//!
//! Starting from a known path. Doubling from [`INITIAL_WINDOW_PACKETS`]
//! takes about ten round trips to fill a 100 Mbit/s path, two seconds at a
//! 200 ms round trip. When a previous connection over the same path
//! measured it ([`KnownPath`]), [`Model::resume`] jumps the window to
//! [`RESUME_FRACTION`] of that bandwidth-delay product at once, as careful
//! resume proposes for QUIC: only if the idle round trip measured now is
//! within a factor of [`RESUME_RTT_FACTOR`] of the known one, only in
//! Startup, and for one round only. From then on the window follows what
//! the path delivers, as in any Startup, but never above Cruise's window on
//! the known path: a path that got slower shows it in the first round, a
//! queue that overflows ends Startup with the rate reset to what the round
//! delivered, and a path that got faster is found by Cruise's probing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Rounds over which the highest delivery rate is remembered.
pub const RATE_WINDOW_ROUNDS: u64 = 10;

/// Startup's cap on the window, in bandwidth-delay products.
pub const STARTUP_GAIN: f64 = 2.0;

/// Cruise's window, in bandwidth-delay products.
pub const CRUISE_GAIN: f64 = 1.25;

/// Startup is over when the rate has not grown by this factor...
const STARTUP_GROWTH: f64 = 1.25;

/// ...in this many rounds in a row.
const STARTUP_FLAT_ROUNDS: u32 = 3;

/// A round losing more than this fraction of its bytes is congestion, not
/// random loss: the rate estimate is reset to what the round delivered.
const HEAVY_LOSS: f64 = 0.15;

/// Rounds with fewer packets than this say too little about loss.
const LOSS_MIN_PACKETS: u64 = 20;

/// The smallest RTT the window is sized for. End hosts on a LAN or on
/// loopback acknowledge in bursts set by their schedulers, not by the path;
/// sizing for a 30 µs minimum would starve the window. The cost is at most
/// this much queueing delay on such short paths.
pub const RTT_FLOOR: Duration = Duration::from_millis(4);

/// The window never falls below this many full-size packets.
const MIN_WINDOW_PACKETS: u64 = 4;

/// The window extra that covers acknowledgements arriving in bursts.
const HEADROOM_PACKETS: u64 = 8;

/// The window when a connection starts, in full-size packets.
pub const INITIAL_WINDOW_PACKETS: u64 = 32;

/// A round trip this much longer than the idle one, at its shortest, is a
/// standing queue: more than the model's own window builds alone (a
/// quarter, [`CRUISE_GAIN`])...
const STANDING_QUEUE_FRACTION: f64 = 0.5;

/// ...if it is also at least this long (schedulers on short paths delay
/// acknowledgements by a few milliseconds without any queue)...
const STANDING_QUEUE_FLOOR: Duration = Duration::from_millis(10);

/// ...in this many rounds in a row (longer than another flow's Startup and
/// Drain last). The model then measures the idle round trip again (a
/// probe), to tell its own queue from another flow's.
pub const STANDING_QUEUE_ROUNDS: u32 = 10;

/// While sharing, the idle round trip is measured again when it has not
/// been seen for this long: a probe that finds the queue gone ends sharing.
pub const MIN_RTT_EXPIRY: Duration = Duration::from_secs(10);

/// A queue that stays while the model's own has drained, longer than this
/// fraction of the idle round trip, is another flow's standing queue.
const FOREIGN_QUEUE_FRACTION: f64 = 0.2;

/// Probes for a standing queue are at least this far apart.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The window during a probe, in bandwidth-delay products: low enough to
/// drain the model's own queue even when the idle round trip is
/// overestimated.
const RTT_PROBE_GAIN: f64 = 0.5;

/// The window, in bandwidth-delay products, while another flow keeps a
/// standing queue: as much as a TCP flow with BBR keeps in flight. A flow
/// whose window leaves a shorter queue than another's loses its share to
/// it, round after round; at the same gain the two hold their shares.
pub const SHARING_GAIN: f64 = 2.0;

/// While sharing, one round in [`SHARING_CYCLE`] has this much more in
/// flight, as BBR probes for bandwidth: what the round delivers beyond its
/// share stays in the highest rate for [`RATE_WINDOW_ROUNDS`] rounds.
const SHARING_PROBE_GAIN: f64 = 1.25;

/// Rounds of the sharing cycle.
pub const SHARING_CYCLE: u64 = 8;

/// A known path's window is resumed at this fraction of its
/// bandwidth-delay product: a path that now carries half of what it did
/// still takes the first round without a loss.
pub const RESUME_FRACTION: f64 = 0.5;

/// A known path is resumed only if the idle round trip measured now is
/// within this factor of the known one, either way; otherwise the path is
/// taken for another.
pub const RESUME_RTT_FACTOR: f64 = 2.0;

/// What a connection measured of its path: enough to start the next
/// connection over the same path at its rate (see [`Model::resume`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownPath {
    /// The highest delivery rate measured, bytes per second.
    pub rate: f64,
    /// The idle round trip.
    pub min_rtt: Duration,
    /// Whether `rate` is the path's: the connection left Startup, having
    /// filled the path. Otherwise it is the most the connection delivered,
    /// which the path carries at least (a sender of many small files runs
    /// out of data every round, and stays in Startup).
    pub filled: bool,
}

impl KnownPath {
    /// Whether this measurement should replace `older`: one of a filled
    /// path always does, one that only bounds the rate from below does
    /// when it is higher (a move of one small file says little of a path a
    /// large one filled).
    pub fn replaces(&self, older: Option<&KnownPath>) -> bool {
        self.filled || older.is_none_or(|older| self.rate > older.rate)
    }
}

/// Where the model is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Growing exponentially until the delivery rate stops rising.
    Startup,
    /// Holding one bandwidth-delay product until the queue has drained.
    Drain,
    /// Steady state: the window follows the measured rate.
    Cruise,
}

/// What had been delivered when a batch of packets was sent.
#[derive(Debug, Clone, Copy)]
struct SendSnapshot {
    /// When the batch was sent.
    sent: Instant,
    /// Bytes acknowledged before it was sent.
    delivered: u64,
    /// When the last of those bytes was acknowledged.
    delivered_at: Instant,
    /// When the packet whose acknowledgement that was had been sent.
    first_sent: Instant,
}

/// Snapshots kept at most; beyond, the oldest are dropped (a window of
/// this many batches in flight is far beyond any path's needs).
const MAX_SNAPSHOTS: usize = 1 << 16;

/// Counters of the round trip in progress.
#[derive(Debug, Clone)]
struct Round {
    /// When the round began (the acknowledgement that ended the previous one).
    start: Instant,
    /// Bytes acknowledged since the connection began, when the round began.
    delivered_at_start: u64,
    /// Bytes declared lost during this round.
    lost: u64,
    /// Packets acknowledged or lost during this round.
    packets: u64,
    /// Whether the sender ran out of data at some point in this round, so
    /// the rate it measures says less about the path than about the sender.
    app_limited: bool,
    /// The shortest round trip of a packet acknowledged in this round.
    min_rtt: Duration,
}

impl Round {
    fn new(start: Instant, delivered_at_start: u64) -> Self {
        Self {
            start,
            delivered_at_start,
            lost: 0,
            packets: 0,
            app_limited: false,
            min_rtt: Duration::MAX,
        }
    }
}

/// A measurement of the idle round trip: the window is held low for a
/// round, so the model's own queue drains and the packets sent then see the
/// path without it. A queue that stays is another flow's.
#[derive(Debug, Clone)]
struct RttProbe {
    /// The round whose end lets the window grow again.
    drained: u64,
    /// The round whose end takes the measurement.
    ends: u64,
    /// The shortest round trip seen since the probe began.
    lowest: Duration,
}

/// The highest delivery rate of recent rounds (bytes per second).
#[derive(Debug, Clone, Default)]
struct MaxRate {
    /// (round number, rate) pairs, oldest first, rates decreasing.
    samples: VecDeque<(u64, f64)>,
}

impl MaxRate {
    /// Records `rate` measured in `round` and forgets rounds that fell out of
    /// the window.
    fn record(&mut self, round: u64, rate: f64) {
        while self.samples.back().is_some_and(|&(_, r)| r <= rate) {
            self.samples.pop_back();
        }
        self.samples.push_back((round, rate));
        while self
            .samples
            .front()
            .is_some_and(|&(r, _)| r + RATE_WINDOW_ROUNDS <= round)
        {
            self.samples.pop_front();
        }
    }

    /// The highest rate in the window, zero before the first sample.
    fn get(&self) -> f64 {
        self.samples.front().map_or(0.0, |&(_, rate)| rate)
    }

    /// Forgets every sample and starts again from `rate`.
    fn reset(&mut self, round: u64, rate: f64) {
        self.samples.clear();
        self.record(round, rate);
    }
}

/// The state of the delivery-rate controller for one path.
#[derive(Debug, Clone)]
pub struct Model {
    /// Largest packet size on the path, in bytes.
    mtu: u64,
    /// Bytes that may be in flight.
    window: u64,
    /// Where the model is in its cycle.
    phase: Phase,
    /// Bytes acknowledged since the connection began.
    delivered: u64,
    /// When the last acknowledgement arrived.
    delivered_at: Instant,
    /// When the packet last acknowledged had been sent.
    last_acked_sent: Instant,
    /// What had been delivered when each batch still in flight was sent.
    snapshots: VecDeque<SendSnapshot>,
    /// Round trips completed.
    rounds: u64,
    /// The round trip in progress.
    round: Round,
    /// Highest recent delivery rate.
    max_rate: MaxRate,
    /// Startup's best rate so far.
    startup_best: f64,
    /// Rounds in a row in which Startup's rate did not grow enough.
    flat_rounds: u32,
    /// Smallest recent round-trip time: the idle round trip, without a
    /// queue.
    min_rtt: Duration,
    /// When `min_rtt` was last seen (or measured again).
    min_rtt_seen: Instant,
    /// Set while the idle round trip is measured again.
    rtt_probe: Option<RttProbe>,
    /// When the last probe ended.
    last_probe: Instant,
    /// Rounds in a row whose shortest round trip showed a standing queue.
    standing_rounds: u32,
    /// Whether the last probe found another flow's standing queue.
    sharing: bool,
    /// Set after [`Model::resume`]: the window Startup keeps until the
    /// round that ends then, whatever the rate measured before the jump.
    resumed: Option<Resumed>,
}

/// A window resumed from a [`KnownPath`], held until the rounds that
/// carry its data have measured the path.
#[derive(Debug, Clone, Copy)]
struct Resumed {
    /// The window resumed.
    window: u64,
    /// The round whose end hands the window back to the measured rate:
    /// the one after the first round with data to send. Until the sender
    /// has data (the daemon resumes before the command has asked for a
    /// file), it is not set, and the window holds: a sender without data
    /// does not fill it.
    until: Option<u64>,
    /// The most Startup allows from then on: Cruise's window on the known
    /// path. Startup need not search for a rate it was told, and doubling
    /// past it overflows a queue shorter than the path's round trip.
    ceiling: u64,
}

impl Model {
    /// A model for a new path whose packets are at most `mtu` bytes.
    pub fn new(now: Instant, mtu: u16) -> Self {
        let mtu = u64::from(mtu);
        Self {
            mtu,
            window: INITIAL_WINDOW_PACKETS * mtu,
            phase: Phase::Startup,
            delivered: 0,
            delivered_at: now,
            last_acked_sent: now,
            snapshots: VecDeque::new(),
            rounds: 0,
            round: Round::new(now, 0),
            max_rate: MaxRate::default(),
            startup_best: 0.0,
            flat_rounds: 0,
            min_rtt: Duration::MAX,
            min_rtt_seen: now,
            rtt_probe: None,
            last_probe: now,
            standing_rounds: 0,
            sharing: false,
            resumed: None,
        }
    }

    /// Starts from what a previous connection measured of this path, if
    /// the model is still in Startup below that rate and the idle round
    /// trip measured so far matches `known`'s (see [`RESUME_RTT_FACTOR`]).
    /// Returns the window resumed, or `None` when `known` does not apply.
    pub fn resume(&mut self, known: KnownPath) -> Option<u64> {
        if self.phase != Phase::Startup || self.min_rtt == Duration::MAX {
            return None;
        }
        let (now_rtt, then_rtt) = (
            self.min_rtt.max(RTT_FLOOR).as_secs_f64(),
            known.min_rtt.max(RTT_FLOOR).as_secs_f64(),
        );
        if now_rtt > then_rtt * RESUME_RTT_FACTOR || then_rtt > now_rtt * RESUME_RTT_FACTOR {
            return None;
        }
        let bdp = known.rate * now_rtt;
        let window = (RESUME_FRACTION * bdp) as u64;
        if window <= self.window {
            return None;
        }
        self.window = window;
        self.resumed = Some(Resumed {
            window,
            until: None,
            ceiling: (CRUISE_GAIN * bdp) as u64 + HEADROOM_PACKETS * self.mtu,
        });
        Some(window)
    }

    /// What this connection has measured of its path, once it has filled
    /// it or measured more than its first window carries: the start of the
    /// next connection over the same path (see [`Model::resume`]).
    pub fn known_path(&self) -> Option<KnownPath> {
        let filled = self.phase != Phase::Startup;
        let measured = self.min_rtt != Duration::MAX && self.max_rate.get() > 0.0;
        let useful = filled || self.bdp() > self.initial_window();
        (measured && useful).then(|| KnownPath {
            rate: self.max_rate.get(),
            min_rtt: self.min_rtt,
            filled,
        })
    }

    /// Bytes that may be in flight now.
    pub fn window(&self) -> u64 {
        let Some(probe) = &self.rtt_probe else {
            return self.window;
        };
        // Drain the queue, then measure without adding to it again.
        let gain = if self.rounds < probe.drained {
            RTT_PROBE_GAIN
        } else {
            1.0
        };
        let cap = (gain * self.bdp() as f64) as u64 + HEADROOM_PACKETS * self.mtu;
        self.window.min(cap).max(self.min_window())
    }

    /// Where the model is in its cycle.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The delivery rate the window is sized for, in bytes per second.
    pub fn rate(&self) -> f64 {
        self.max_rate.get()
    }

    /// The window when a connection starts.
    pub fn initial_window(&self) -> u64 {
        INITIAL_WINDOW_PACKETS * self.mtu
    }

    /// The path's packet size changed.
    pub fn on_mtu(&mut self, mtu: u16) {
        self.mtu = u64::from(mtu);
        self.window = self.window.max(self.min_window());
    }

    /// Packets were sent at `now`.
    pub fn on_sent(&mut self, now: Instant) {
        if self.snapshots.back().is_some_and(|last| last.sent == now) {
            return;
        }
        if self.snapshots.len() == MAX_SNAPSHOTS {
            self.snapshots.pop_front();
        }
        self.snapshots.push_back(SendSnapshot {
            sent: now,
            delivered: self.delivered,
            delivered_at: self.delivered_at,
            first_sent: self.last_acked_sent,
        });
    }

    /// `bytes` of a packet sent at `sent` were acknowledged at `now`.
    pub fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        self.delivered += bytes;
        self.delivered_at = now;
        self.last_acked_sent = self.last_acked_sent.max(sent);
        self.round.packets += 1;
        self.round.app_limited |= app_limited;
        self.on_rtt_sample(now, now.saturating_duration_since(sent));
        if let Some(rate) = self.rate_sample(now, sent) {
            if !app_limited || rate > self.max_rate.get() {
                self.max_rate.record(self.rounds, rate);
            }
        }
        if let Some(resumed) = self.resumed.as_mut().filter(|r| r.until.is_none()) {
            resumed.until = (!app_limited).then_some(self.rounds + 2);
        }
        if self.phase == Phase::Startup {
            self.window = (self.window + bytes).min(self.startup_cap());
        }
        if sent >= self.round.start {
            self.end_round(now);
        }
    }

    /// Takes the round trip `rtt` of a packet acknowledged at `now`.
    fn on_rtt_sample(&mut self, now: Instant, rtt: Duration) {
        self.round.min_rtt = self.round.min_rtt.min(rtt);
        if rtt <= self.min_rtt {
            self.min_rtt = rtt;
            self.min_rtt_seen = now;
        }
        if let Some(probe) = &mut self.rtt_probe {
            probe.lowest = probe.lowest.min(rtt);
        }
    }

    /// The delivery rate over the round trip of the packet sent at `sent`:
    /// bytes acknowledged since it was sent, over the longer of the time
    /// since the acknowledgement before it was sent and the time it took to
    /// send them (acknowledgements bunched on the way back would otherwise
    /// overstate the rate).
    fn rate_sample(&mut self, now: Instant, sent: Instant) -> Option<f64> {
        let older = self.snapshots.partition_point(|s| s.sent < sent);
        self.snapshots.drain(..older);
        let snapshot = self.snapshots.front().filter(|s| s.sent == sent)?;
        let acked_over = now.saturating_duration_since(snapshot.delivered_at);
        let sent_over = sent.saturating_duration_since(snapshot.first_sent);
        let elapsed = acked_over.max(sent_over);
        if elapsed.is_zero() {
            return None;
        }
        Some((self.delivered - snapshot.delivered) as f64 / elapsed.as_secs_f64())
    }

    /// A batch of acknowledgements is done; `in_flight` bytes remain
    /// unacknowledged.
    pub fn on_end_acks(&mut self, in_flight: u64) {
        if self.phase == Phase::Drain && in_flight <= self.bdp() {
            self.phase = Phase::Cruise;
            self.set_window();
        }
    }

    /// `bytes` of packets sent up to `sent` were declared lost at `now`.
    /// `persistent` means everything sent over several round trips was lost:
    /// the path went away, so the model starts again from scratch.
    pub fn on_loss(&mut self, now: Instant, persistent: bool, bytes: u64) {
        self.round.lost += bytes;
        self.round.packets += bytes.div_ceil(self.mtu);
        if persistent {
            *self = Self {
                min_rtt: self.min_rtt,
                delivered: self.delivered,
                rounds: self.rounds,
                ..Self::new(now, self.mtu as u16)
            };
            self.window = self.min_window();
            self.round.delivered_at_start = self.delivered;
        }
    }

    /// Closes the round trip in progress: samples its delivery rate, moves
    /// between phases and resizes the window.
    fn end_round(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.round.start);
        let delivered = self.delivered - self.round.delivered_at_start;
        let rate = if elapsed.is_zero() {
            0.0
        } else {
            delivered as f64 / elapsed.as_secs_f64()
        };
        let heavy_loss = self.heavy_loss(delivered);
        let app_limited = self.round.app_limited;
        self.rounds += 1;
        if heavy_loss {
            self.max_rate.reset(self.rounds, rate);
        }
        self.advance_phase(heavy_loss, app_limited);
        self.probe_rtt(now);
        tracing::trace!(
            round = self.rounds,
            phase = ?self.phase,
            window = self.window,
            rate_mbit = self.max_rate.get() * 8e-6,
            round_mbit = rate * 8e-6,
            min_rtt_ms = self.min_rtt.as_secs_f64() * 1e3,
            lost = self.round.lost,
            app_limited,
            "congestion round"
        );
        self.round = Round::new(now, self.delivered);
    }

    /// At the end of a round: starts a probe when one is due (see
    /// [`Model::probe_due`]), or ends the probe in progress (see
    /// [`Model::end_probe`]).
    fn probe_rtt(&mut self, now: Instant) {
        let standing = self.has_standing_queue();
        self.standing_rounds = if standing {
            self.standing_rounds + 1
        } else {
            0
        };
        match &self.rtt_probe {
            Some(probe) if self.rounds >= probe.ends => self.end_probe(now),
            Some(_) => {}
            None if self.phase == Phase::Cruise && self.probe_due(now) => {
                self.rtt_probe = Some(RttProbe {
                    drained: self.rounds + 1,
                    ends: self.rounds + 2,
                    lowest: Duration::MAX,
                });
            }
            None => {}
        }
    }

    /// Whether a probe is due: while sharing, when the idle round trip has
    /// not been seen for [`MIN_RTT_EXPIRY`]; otherwise when a queue has
    /// stood for [`STANDING_QUEUE_ROUNDS`] rounds (at most once per
    /// [`PROBE_INTERVAL`]).
    fn probe_due(&self, now: Instant) -> bool {
        let expired =
            self.sharing && now.saturating_duration_since(self.min_rtt_seen) >= MIN_RTT_EXPIRY;
        let standing = !self.sharing
            && self.standing_rounds >= STANDING_QUEUE_ROUNDS
            && now.saturating_duration_since(self.last_probe) >= PROBE_INTERVAL;
        expired || standing
    }

    /// Ends a probe. The model's own queue has drained: a queue that stayed
    /// is another flow's. If it is longer than [`FOREIGN_QUEUE_FRACTION`] of
    /// the idle round trip, the window grows to [`SHARING_GAIN`]
    /// bandwidth-delay products until a probe finds it gone. The idle round
    /// trip only ever goes down: a flow that started beside a queue learns
    /// the path's when a probe drains it.
    fn end_probe(&mut self, now: Instant) {
        let Some(probe) = self.rtt_probe.take() else {
            return;
        };
        let foreign = probe.lowest.saturating_sub(self.min_rtt);
        let floor = self
            .min_rtt
            .mul_f64(FOREIGN_QUEUE_FRACTION)
            .max(STANDING_QUEUE_FLOOR);
        let sharing = probe.lowest != Duration::MAX && foreign > floor;
        if sharing != self.sharing {
            tracing::debug!(
                round = self.rounds,
                sharing,
                "standing queue of another flow"
            );
        }
        self.sharing = sharing;
        self.min_rtt = self.min_rtt.min(probe.lowest);
        self.min_rtt_seen = now;
        self.last_probe = now;
        self.set_window();
    }

    /// Whether the last round's shortest round trip showed a queue this
    /// model's own window cannot build.
    fn has_standing_queue(&self) -> bool {
        self.round.min_rtt != Duration::MAX && self.is_standing(self.round.min_rtt)
    }

    /// Whether a shortest round trip of `rtt` shows a standing queue.
    fn is_standing(&self, rtt: Duration) -> bool {
        if self.min_rtt == Duration::MAX {
            return false;
        }
        let queue = rtt.saturating_sub(self.min_rtt);
        queue
            > self
                .min_rtt
                .mul_f64(STANDING_QUEUE_FRACTION)
                .max(STANDING_QUEUE_FLOOR)
    }

    /// Whether this round lost too much to be random loss.
    fn heavy_loss(&self, delivered: u64) -> bool {
        let lost = self.round.lost;
        self.round.packets >= LOSS_MIN_PACKETS
            && lost as f64 > HEAVY_LOSS * (lost + delivered) as f64
    }

    /// Moves to the next phase at the end of a round.
    fn advance_phase(&mut self, heavy_loss: bool, app_limited: bool) {
        match self.phase {
            Phase::Startup => {
                let rate = self.max_rate.get();
                if rate >= self.startup_best * STARTUP_GROWTH {
                    self.startup_best = rate;
                    self.flat_rounds = 0;
                } else if !app_limited {
                    self.flat_rounds += 1;
                }
                if heavy_loss || self.flat_rounds >= STARTUP_FLAT_ROUNDS {
                    self.phase = Phase::Drain;
                    self.set_window();
                }
            }
            Phase::Drain | Phase::Cruise => self.set_window(),
        }
    }

    /// Sizes the window for the phase from the rate and the minimum RTT.
    fn set_window(&mut self) {
        let gain = match self.phase {
            Phase::Startup => return,
            Phase::Drain => 1.0,
            Phase::Cruise if self.sharing && self.rounds.is_multiple_of(SHARING_CYCLE) => {
                SHARING_GAIN * SHARING_PROBE_GAIN
            }
            Phase::Cruise if self.sharing => SHARING_GAIN,
            Phase::Cruise => CRUISE_GAIN,
        };
        let target = (gain * self.bdp() as f64) as u64 + HEADROOM_PACKETS * self.mtu;
        self.window = target.max(self.min_window());
    }

    /// Startup's limit on the window: a multiple of the measured
    /// bandwidth-delay product, once there is a measurement.
    fn startup_cap(&self) -> u64 {
        if self.max_rate.get() == 0.0 {
            return u64::MAX;
        }
        let cap = (STARTUP_GAIN * self.bdp() as f64) as u64 + HEADROOM_PACKETS * self.mtu;
        let cap = cap.max(self.initial_window());
        match self.resumed {
            Some(resumed) if resumed.until.is_none_or(|until| self.rounds < until) => {
                cap.max(resumed.window)
            }
            Some(resumed) => cap.min(resumed.ceiling),
            None => cap,
        }
    }

    /// The bandwidth-delay product: bytes the path holds in one minimum RTT
    /// at the highest recent delivery rate.
    pub fn bdp(&self) -> u64 {
        if self.min_rtt == Duration::MAX {
            return self.initial_window();
        }
        let rtt = self.min_rtt.max(RTT_FLOOR);
        (self.max_rate.get() * rtt.as_secs_f64()) as u64
    }

    /// The smallest window the model allows.
    fn min_window(&self) -> u64 {
        MIN_WINDOW_PACKETS * self.mtu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_rate_is_kept_for_the_window_then_forgotten() {
        let mut max = MaxRate::default();
        max.record(1, 100.0);
        max.record(2, 50.0);
        assert_eq!(max.get(), 100.0);
        max.record(RATE_WINDOW_ROUNDS + 1, 60.0);
        assert_eq!(max.get(), 60.0, "round 1 fell out of the window");
        max.record(RATE_WINDOW_ROUNDS + 2, 70.0);
        assert_eq!(max.get(), 70.0);
    }

    #[test]
    fn startup_grows_the_window_by_what_is_acknowledged() {
        let start = Instant::now();
        let mut model = Model::new(start, 1200);
        let initial = model.window();
        let rtt = Duration::from_millis(100);
        model.on_ack(start + rtt, start, 1200, false);
        assert_eq!(model.window(), initial + 1200);
        assert_eq!(model.phase(), Phase::Startup);
    }

    #[test]
    fn a_known_path_is_resumed_only_over_a_like_round_trip() {
        let start = Instant::now();
        let rtt = Duration::from_millis(100);
        let known = |ms| KnownPath {
            rate: 12.5e6,
            min_rtt: Duration::from_millis(ms),
            filled: true,
        };
        let fresh = || {
            let mut model = Model::new(start, 1200);
            model.on_ack(start + rtt, start, 1200, false);
            model
        };
        assert_eq!(fresh().resume(known(250)), None, "another path");
        assert_eq!(fresh().resume(known(40)), None, "another path");
        let mut model = fresh();
        assert_eq!(
            model.resume(known(120)),
            Some(625_000),
            "half of 12.5 MB/s × 100 ms"
        );
        assert_eq!(model.window(), 625_000);
        assert_eq!(model.known_path(), None, "no rate measured yet");

        let mut unmeasured = Model::new(start, 1200);
        assert_eq!(unmeasured.resume(known(100)), None, "no round trip yet");
    }

    #[test]
    fn a_resumed_window_waits_for_data_to_send() {
        // The daemon resumes as the connection opens; the command asks for
        // a file only a few round trips later.
        let start = Instant::now();
        let rtt = Duration::from_millis(100);
        let mut model = Model::new(start, 1200);
        model.on_sent(start);
        model.on_ack(start + rtt, start, 1200, true);
        let known = KnownPath {
            rate: 12.5e6,
            min_rtt: rtt,
            filled: true,
        };
        let resumed = model.resume(known).unwrap();
        for round in 1..=4 {
            let sent = start + rtt * round;
            model.on_sent(sent);
            model.on_ack(sent + rtt, sent, 1200, true);
        }
        assert!(model.window() >= resumed, "{} < {resumed}", model.window());
    }

    #[test]
    fn a_filled_path_replaces_what_was_known_and_a_lower_bound_only_a_lower_rate() {
        let path = |rate, filled| KnownPath {
            rate,
            min_rtt: Duration::from_millis(100),
            filled,
        };
        let known = path(12.5e6, true);
        assert!(
            path(1e6, true).replaces(Some(&known)),
            "the path got slower"
        );
        assert!(!path(1e6, false).replaces(Some(&known)), "a small move");
        assert!(path(13e6, false).replaces(Some(&known)));
        assert!(path(1e6, false).replaces(None));
    }

    #[test]
    fn a_persistent_loss_starts_again_from_the_smallest_window() {
        let start = Instant::now();
        let mut model = Model::new(start, 1200);
        model.on_loss(start, true, 50_000);
        assert_eq!(model.window(), MIN_WINDOW_PACKETS * 1200);
        assert_eq!(model.phase(), Phase::Startup);
    }
}
