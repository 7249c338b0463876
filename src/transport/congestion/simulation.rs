//! A simulated bottleneck link driving the delivery-rate [`Model`], so the
//! controller's behaviour on long lossy paths is tested without sockets.
//!
//! The link is a drop-tail queue in front of a fixed-rate bottleneck, a
//! one-way delay each way and random loss after the bottleneck. The sender
//! always has data, paces as quinn does (1.25 windows per smoothed RTT) and
//! declares a packet lost once three later packets are acknowledged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::model::Model;

/// Payload bytes per packet.
const PACKET: u64 = 1200;

/// A bottleneck link.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// Bottleneck rate, bytes per second.
    rate: f64,
    /// One-way delay.
    delay: Duration,
    /// Longest wait the queue allows before it drops.
    queue: Duration,
    /// Fraction of packets lost at random after the bottleneck.
    loss: f64,
}

impl Link {
    /// A link of `mbit` Mbit/s with the given round trip, queue and loss.
    fn new(mbit: f64, rtt_ms: u64, queue_ms: u64, loss: f64) -> Self {
        Self {
            rate: mbit * 1e6 / 8.0,
            delay: Duration::from_millis(rtt_ms / 2),
            queue: Duration::from_millis(queue_ms),
            loss,
        }
    }

    /// Time to serialise one packet at the bottleneck.
    fn serialisation(&self) -> Duration {
        Duration::from_secs_f64(PACKET as f64 / self.rate)
    }
}

/// A packet in flight; `acked_at` is `None` when the link lost it.
#[derive(Debug, Clone, Copy)]
struct Packet {
    number: u64,
    sent: Instant,
    acked_at: Option<Instant>,
}

/// What happened in a stretch of simulated time.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    sent: u64,
    delivered: u64,
    queue_drops: u64,
    max_queue: Duration,
}

impl Tally {
    /// Delivered payload in Mbit/s over `span`.
    fn goodput_mbit(&self, span: Duration) -> f64 {
        self.delivered as f64 * 8.0 / span.as_secs_f64() / 1e6
    }

    /// Bytes put on the link per byte delivered.
    fn wire_ratio(&self) -> f64 {
        self.sent as f64 / self.delivered as f64
    }
}

/// The sender, the link and the model, advanced event by event.
struct Simulation {
    link: Link,
    model: Model,
    now: Instant,
    next_send: Instant,
    bottleneck_free: Instant,
    in_flight: VecDeque<Packet>,
    next_number: u64,
    srtt: Duration,
    min_rtt: Duration,
    random: u64,
    tally: Tally,
}

impl Simulation {
    /// A simulation of `link`, starting now, with a fixed random seed.
    fn new(link: Link) -> Self {
        let now = Instant::now();
        Self {
            link,
            model: Model::new(now, PACKET as u16),
            now,
            next_send: now,
            bottleneck_free: now,
            in_flight: VecDeque::new(),
            next_number: 0,
            srtt: Duration::from_millis(333),
            min_rtt: Duration::MAX,
            random: 0x5eed,
            tally: Tally::default(),
        }
    }

    /// Runs for `span` of simulated time and returns what happened in it.
    fn run(&mut self, span: Duration) -> Tally {
        self.tally = Tally::default();
        let end = self.now + span;
        while self.now < end {
            self.step();
        }
        self.tally
    }

    /// Sends if the window and the pacer allow, else processes the next
    /// acknowledgement.
    fn step(&mut self) {
        let can_send = self.bytes_in_flight() + PACKET <= self.model.window();
        let next_ack = self.next_ack_time();
        if can_send && next_ack.is_none_or(|ack| self.next_send <= ack) {
            self.now = self.now.max(self.next_send);
            self.send();
        } else if let Some(ack) = next_ack {
            self.now = self.now.max(ack);
            self.acknowledge();
        } else {
            self.now += Duration::from_millis(1);
        }
    }

    /// Bytes sent and neither acknowledged nor declared lost.
    fn bytes_in_flight(&self) -> u64 {
        self.in_flight.len() as u64 * PACKET
    }

    /// When the next acknowledgement arrives, if one is coming.
    fn next_ack_time(&self) -> Option<Instant> {
        self.in_flight.iter().find_map(|packet| packet.acked_at)
    }

    /// Puts one packet on the link and schedules the next by the pacer.
    fn send(&mut self) {
        let waiting = self.bottleneck_free.saturating_duration_since(self.now);
        self.tally.sent += PACKET;
        let acked_at = if waiting > self.link.queue {
            self.tally.queue_drops += PACKET;
            None
        } else {
            self.tally.max_queue = self.tally.max_queue.max(waiting);
            let departure = self.now.max(self.bottleneck_free) + self.link.serialisation();
            self.bottleneck_free = departure;
            let lost = self.next_random() < self.link.loss;
            (!lost).then_some(departure + 2 * self.link.delay)
        };
        self.model.on_sent(self.now);
        self.in_flight.push_back(Packet {
            number: self.next_number,
            sent: self.now,
            acked_at,
        });
        self.next_number += 1;
        let rate = 1.25 * self.model.window() as f64 / self.srtt.as_secs_f64();
        self.next_send = self.now + Duration::from_secs_f64(PACKET as f64 / rate);
    }

    /// Processes every acknowledgement due now, then the losses they reveal.
    fn acknowledge(&mut self) {
        while let Some(index) = self.next_acknowledged() {
            let packet = self.in_flight.remove(index).expect("index is in range");
            let rtt = self.now - packet.sent;
            self.srtt = if self.no_rtt_measured() {
                rtt
            } else {
                (self.srtt * 7 + rtt) / 8
            };
            self.min_rtt = self.min_rtt.min(rtt);
            self.tally.delivered += PACKET;
            self.model
                .on_ack(self.now, packet.sent, PACKET, false, self.min_rtt);
            self.declare_losses(packet.number);
        }
        self.model.on_end_acks(self.bytes_in_flight());
    }

    /// The position of the first packet whose acknowledgement is due now.
    /// Acknowledgements arrive in sending order, so only the first packet
    /// not lost can be due.
    fn next_acknowledged(&self) -> Option<usize> {
        let index = self.in_flight.iter().position(|p| p.acked_at.is_some())?;
        let due = self.in_flight[index].acked_at? <= self.now;
        due.then_some(index)
    }

    /// Whether no round trip has been measured yet.
    fn no_rtt_measured(&self) -> bool {
        self.min_rtt == Duration::MAX
    }

    /// Declares lost every unacknowledged packet three or more before `acked`.
    fn declare_losses(&mut self, acked: u64) {
        let mut lost = 0;
        while let Some(front) = self.in_flight.front() {
            if front.acked_at.is_some() || front.number + 3 > acked {
                break;
            }
            self.in_flight.pop_front();
            lost += PACKET;
        }
        if lost > 0 {
            self.model.on_loss(self.now, false, lost);
        }
    }

    /// A uniform number in [0, 1) from a fixed-seed SplitMix64 sequence.
    fn next_random(&mut self) -> f64 {
        self.random = self.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

const WARM_UP: Duration = Duration::from_secs(5);
const MEASURED: Duration = Duration::from_secs(10);

#[test]
fn a_long_link_with_random_loss_stays_full_without_flooding() {
    let link = Link::new(100.0, 100, 100, 0.01);
    let mut sim = Simulation::new(link);
    sim.run(WARM_UP);
    let tally = sim.run(MEASURED);
    let goodput = tally.goodput_mbit(MEASURED);
    assert!(goodput > 93.0, "goodput {goodput:.1} Mbit/s");
    assert!(tally.wire_ratio() < 1.02, "{tally:?}");
    assert_eq!(tally.queue_drops, 0, "{tally:?}");
    assert!(
        tally.max_queue <= Duration::from_millis(30),
        "the queue adds about a quarter of the idle RTT: {tally:?}"
    );
}

#[test]
fn a_fat_clean_link_is_filled_and_its_queue_stays_short() {
    let link = Link::new(300.0, 100, 100, 0.0);
    let mut sim = Simulation::new(link);
    sim.run(WARM_UP);
    let tally = sim.run(MEASURED);
    let goodput = tally.goodput_mbit(MEASURED);
    assert!(goodput > 285.0, "goodput {goodput:.1} Mbit/s");
    assert!(tally.max_queue <= Duration::from_millis(30), "{tally:?}");
}

#[test]
fn startup_reaches_most_of_the_link_within_two_seconds() {
    let link = Link::new(100.0, 100, 100, 0.01);
    let mut sim = Simulation::new(link);
    let first = sim.run(Duration::from_secs(2));
    let goodput = first.goodput_mbit(Duration::from_secs(2));
    assert!(
        goodput > 60.0,
        "goodput {goodput:.1} Mbit/s in the first 2 s"
    );
    assert_eq!(first.queue_drops, 0, "{first:?}");
}

#[test]
fn a_link_that_slows_down_is_followed_without_lasting_loss() {
    let mut sim = Simulation::new(Link::new(100.0, 100, 100, 0.0));
    sim.run(WARM_UP);
    sim.link = Link::new(20.0, 100, 100, 0.0);
    sim.run(Duration::from_secs(3));
    let tally = sim.run(MEASURED);
    let goodput = tally.goodput_mbit(MEASURED);
    assert!(goodput > 18.0, "goodput {goodput:.1} Mbit/s");
    assert!(tally.wire_ratio() < 1.01, "{tally:?}");
}
