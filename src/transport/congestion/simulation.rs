//! A simulated bottleneck link driving the delivery-rate [`Model`], so the
//! controller's behaviour on long lossy paths is tested without sockets.
//!
//! The link is a drop-tail queue in front of a fixed-rate bottleneck, a
//! one-way delay each way and random loss after the bottleneck. The sender
//! always has data, paces as quinn does (1.25 windows per smoothed RTT) and
//! declares a packet lost once three later packets are acknowledged; when
//! none will be, it declares every packet in flight lost three smoothed
//! RTTs after the oldest was sent, as persistent congestion, as quinn's
//! probe timeouts end.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::model::{KnownPath, Model};
use bbr::Bbr;
use cubic::CubicWindow;

mod bbr;
mod cubic;

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

/// What happened to one flow in a stretch of simulated time.
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

/// How a flow decides what it may send.
#[derive(Debug, Clone)]
enum Sender {
    /// realize's controller, paced as quinn paces: 1.25 windows per
    /// smoothed RTT.
    Realize(Model),
    /// A loss-based TCP flow (Cubic), paced as Linux paces one in
    /// congestion avoidance: 1.2 windows per smoothed RTT.
    Tcp(CubicWindow),
    /// A TCP flow with BBR, paced by its own model.
    TcpBbr(Bbr),
}

impl Sender {
    fn window(&self) -> u64 {
        match self {
            Sender::Realize(model) => model.window(),
            Sender::Tcp(cubic) => cubic.window(),
            Sender::TcpBbr(bbr) => bbr.window(),
        }
    }

    /// Bytes per second the pacer lets out, given the smoothed RTT.
    fn pacing_rate(&self, srtt: Duration) -> f64 {
        let per_window = |gain: f64| gain * self.window() as f64 / srtt.as_secs_f64();
        match self {
            Sender::Realize(_) => per_window(1.25),
            Sender::Tcp(_) => per_window(1.2),
            Sender::TcpBbr(bbr) => bbr.pacing_rate(srtt),
        }
    }
}

/// One sender always having data, its packets in flight and its view of
/// the path.
struct Flow {
    sender: Sender,
    /// When the flow begins sending.
    starts: Instant,
    /// Whether the flow has stopped sending.
    stopped: bool,
    next_send: Instant,
    in_flight: VecDeque<Packet>,
    next_number: u64,
    srtt: Duration,
    min_rtt: Duration,
    tally: Tally,
    /// A path a previous connection measured, taken at the first
    /// acknowledgement (as the command and the daemon give it once the
    /// handshake is done).
    known: Option<KnownPath>,
}

impl Flow {
    fn new(sender: Sender, starts: Instant) -> Self {
        Self {
            sender,
            starts,
            stopped: false,
            next_send: starts,
            in_flight: VecDeque::new(),
            next_number: 0,
            srtt: Duration::from_millis(333),
            min_rtt: Duration::MAX,
            tally: Tally::default(),
            known: None,
        }
    }

    /// Stops sending (what is in flight is still acknowledged).
    fn stop(&mut self) {
        self.stopped = true;
    }

    /// When this flow acts next: it sends, or takes an acknowledgement.
    fn next_event(&self) -> Option<(Instant, Event)> {
        let can_send = !self.stopped && self.bytes_in_flight() + PACKET <= self.sender.window();
        let send = can_send.then_some((self.next_send, Event::Send));
        let ack = self
            .next_ack_time()
            .map(|at| (at, Event::Acknowledge))
            .or_else(|| self.timeout().map(|at| (at, Event::Timeout)));
        match (send, ack) {
            (Some(send), Some(ack)) if send.0 <= ack.0 => Some(send),
            (_, Some(ack)) => Some(ack),
            (send, None) => send,
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

    /// When the packets in flight, none of which will be acknowledged, are
    /// declared lost: three smoothed RTTs after the oldest was sent.
    fn timeout(&self) -> Option<Instant> {
        let oldest = self.in_flight.front()?;
        Some(oldest.sent + 3 * self.srtt)
    }

    /// Declares every packet in flight lost, as persistent congestion: for
    /// three round trips, nothing came back.
    fn time_out(&mut self, now: Instant) {
        let lost = self.bytes_in_flight();
        let Some(last) = self.in_flight.back().map(|packet| packet.sent) else {
            return;
        };
        self.in_flight.clear();
        match &mut self.sender {
            Sender::Realize(model) => model.on_loss(now, true, lost),
            Sender::Tcp(cubic) => cubic.on_loss(now, last),
            Sender::TcpBbr(_) => {}
        }
    }

    /// Records a packet put on the link at `now` and schedules the next by
    /// the pacer.
    fn sent(&mut self, now: Instant, acked_at: Option<Instant>) {
        self.tally.sent += PACKET;
        if let Sender::Realize(model) = &mut self.sender {
            model.on_sent(now);
        }
        self.in_flight.push_back(Packet {
            number: self.next_number,
            sent: now,
            acked_at,
        });
        self.next_number += 1;
        let rate = self.sender.pacing_rate(self.srtt);
        self.next_send = now + Duration::from_secs_f64(PACKET as f64 / rate);
    }

    /// Processes every acknowledgement due at `now`, then the losses they
    /// reveal.
    fn acknowledge(&mut self, now: Instant) {
        while let Some(index) = self.next_acknowledged(now) {
            let packet = self.in_flight.remove(index).expect("index is in range");
            let rtt = now - packet.sent;
            self.srtt = if self.min_rtt == Duration::MAX {
                rtt
            } else {
                (self.srtt * 7 + rtt) / 8
            };
            self.min_rtt = self.min_rtt.min(rtt);
            self.tally.delivered += PACKET;
            match &mut self.sender {
                Sender::Realize(model) => {
                    model.on_ack(now, packet.sent, PACKET, false);
                    if let Some(known) = self.known.take() {
                        model.resume(known);
                    }
                }
                Sender::Tcp(cubic) => cubic.on_ack(now, PACKET, self.srtt),
                Sender::TcpBbr(bbr) => bbr.on_ack(now, rtt),
            }
            self.declare_losses(now, packet.number);
        }
        let in_flight = self.bytes_in_flight();
        if let Sender::Realize(model) = &mut self.sender {
            model.on_end_acks(in_flight);
        }
    }

    /// The position of the first packet whose acknowledgement is due at
    /// `now`. Acknowledgements arrive in sending order, so only the first
    /// packet not lost can be due.
    fn next_acknowledged(&self, now: Instant) -> Option<usize> {
        let index = self.in_flight.iter().position(|p| p.acked_at.is_some())?;
        let due = self.in_flight[index].acked_at? <= now;
        due.then_some(index)
    }

    /// Declares lost every unacknowledged packet three or more before `acked`.
    fn declare_losses(&mut self, now: Instant, acked: u64) {
        let mut lost = 0;
        let mut last_sent = None;
        while let Some(front) = self.in_flight.front() {
            if front.acked_at.is_some() || front.number + 3 > acked {
                break;
            }
            last_sent = Some(front.sent);
            self.in_flight.pop_front();
            lost += PACKET;
        }
        let Some(sent) = last_sent else {
            return;
        };
        match &mut self.sender {
            Sender::Realize(model) => model.on_loss(now, false, lost),
            Sender::Tcp(cubic) => cubic.on_loss(now, sent),
            Sender::TcpBbr(_) => {}
        }
    }
}

/// What a flow does next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Send,
    Acknowledge,
    Timeout,
}

/// Flows sharing one link, advanced event by event.
struct Simulation {
    link: Link,
    now: Instant,
    bottleneck_free: Instant,
    flows: Vec<Flow>,
    random: u64,
}

impl Simulation {
    /// A simulation of one realize flow on `link`, with a fixed random seed.
    fn new(link: Link) -> Self {
        let mut sim = Self::empty(link);
        sim.add_realize(Duration::ZERO);
        sim
    }

    /// A simulation of `link` with no flow yet.
    fn empty(link: Link) -> Self {
        let now = Instant::now();
        Self {
            link,
            now,
            bottleneck_free: now,
            flows: Vec::new(),
            random: 0x5eed,
        }
    }

    /// Adds a realize flow that starts `after` from now.
    fn add_realize(&mut self, after: Duration) {
        let starts = self.now + after;
        let model = Model::new(starts, PACKET as u16);
        self.flows.push(Flow::new(Sender::Realize(model), starts));
    }

    /// A simulation of one realize flow on `link` that starts from `known`.
    fn resumed(link: Link, known: KnownPath) -> Self {
        let mut sim = Self::new(link);
        sim.flows[0].known = Some(known);
        sim
    }

    /// Adds a Cubic TCP flow that starts `after` from now.
    fn add_tcp(&mut self, after: Duration) {
        let starts = self.now + after;
        let cubic = CubicWindow::new(starts, 10 * PACKET, PACKET);
        self.flows.push(Flow::new(Sender::Tcp(cubic), starts));
    }

    /// Adds a BBR TCP flow that starts `after` from now.
    fn add_bbr(&mut self, after: Duration) {
        let starts = self.now + after;
        self.flows
            .push(Flow::new(Sender::TcpBbr(Bbr::new(starts)), starts));
    }

    /// Runs for `span` of simulated time and returns what happened to each
    /// flow in it.
    fn run(&mut self, span: Duration) -> Vec<Tally> {
        for flow in &mut self.flows {
            flow.tally = Tally::default();
        }
        let end = self.now + span;
        while self.now < end {
            self.step();
        }
        self.flows.iter().map(|flow| flow.tally).collect()
    }

    /// Runs for `span` the single flow there is.
    fn run_one(&mut self, span: Duration) -> Tally {
        self.run(span)[0]
    }

    /// Lets the flow whose event comes first act.
    fn step(&mut self) {
        let next = self
            .flows
            .iter()
            .enumerate()
            .filter_map(|(i, flow)| {
                flow.next_event()
                    .map(|(at, event)| (at.max(flow.starts), i, event))
            })
            .min_by_key(|&(at, _, _)| at);
        let Some((at, i, event)) = next else {
            self.now += Duration::from_millis(1);
            return;
        };
        self.now = self.now.max(at);
        match event {
            Event::Send => self.send(i),
            Event::Acknowledge => self.flows[i].acknowledge(self.now),
            Event::Timeout => self.flows[i].time_out(self.now),
        }
    }

    /// Puts one packet of flow `i` on the link.
    fn send(&mut self, i: usize) {
        let waiting = self.bottleneck_free.saturating_duration_since(self.now);
        let acked_at = if waiting > self.link.queue {
            self.flows[i].tally.queue_drops += PACKET;
            None
        } else {
            let tally = &mut self.flows[i].tally;
            tally.max_queue = tally.max_queue.max(waiting);
            let departure = self.now.max(self.bottleneck_free) + self.link.serialisation();
            self.bottleneck_free = departure;
            let lost = self.next_random() < self.link.loss;
            (!lost).then_some(departure + 2 * self.link.delay)
        };
        self.flows[i].sent(self.now, acked_at);
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
    let tally = sim.run_one(MEASURED);
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
    let tally = sim.run_one(MEASURED);
    let goodput = tally.goodput_mbit(MEASURED);
    assert!(goodput > 285.0, "goodput {goodput:.1} Mbit/s");
    assert!(tally.max_queue <= Duration::from_millis(30), "{tally:?}");
}

#[test]
fn startup_reaches_most_of_the_link_within_two_seconds() {
    let link = Link::new(100.0, 100, 100, 0.01);
    let mut sim = Simulation::new(link);
    let first = sim.run_one(Duration::from_secs(2));
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
    let tally = sim.run_one(MEASURED);
    let goodput = tally.goodput_mbit(MEASURED);
    assert!(goodput > 18.0, "goodput {goodput:.1} Mbit/s");
    assert!(tally.wire_ratio() < 1.01, "{tally:?}");
}

#[test]
fn after_an_outage_the_link_is_full_again_within_seconds() {
    let link = Link::new(100.0, 100, 100, 0.01);
    let mut sim = Simulation::new(link);
    sim.run(WARM_UP);
    sim.link.loss = 1.0;
    sim.run(Duration::from_secs(2));
    sim.link.loss = 0.01;
    sim.run(Duration::from_secs(3));
    let tally = sim.run_one(MEASURED);
    let goodput = tally.goodput_mbit(MEASURED);
    assert!(goodput > 90.0, "goodput {goodput:.1} Mbit/s");
    assert!(tally.wire_ratio() < 1.02, "{tally:?}");
}

/// What a realize flow measured of `link` after ten seconds on it.
fn known_path(link: Link) -> KnownPath {
    let mut sim = Simulation::new(link);
    sim.run(Duration::from_secs(10));
    let Sender::Realize(model) = &sim.flows[0].sender else {
        unreachable!("the flow is realize's");
    };
    let known = model.known_path().expect("ten seconds measure the link");
    assert!(known.filled, "ten seconds fill the link");
    known
}

#[test]
fn a_known_path_is_full_within_a_few_round_trips() {
    let w5 = Link::new(100.0, 200, 100, 0.01);
    let first = Duration::from_secs(2);
    let cold = Simulation::new(w5).run_one(first);
    let warm = Simulation::resumed(w5, known_path(w5)).run_one(first);
    let (cold_mbit, warm_mbit) = (cold.goodput_mbit(first), warm.goodput_mbit(first));
    eprintln!("cold {cold_mbit:.1} {cold:?}\nwarm {warm_mbit:.1} {warm:?}");
    assert!(
        warm_mbit > 60.0 && warm_mbit > 2.0 * cold_mbit,
        "first 2 s: {warm_mbit:.1} Mbit/s resumed, {cold_mbit:.1} not"
    );
    assert!(warm.queue_drops * 200 <= warm.sent, "{warm:?}");
}

#[test]
fn a_known_path_that_got_slower_costs_a_round_then_nothing() {
    let known = known_path(Link::new(300.0, 100, 100, 0.0));
    let mut sim = Simulation::resumed(Link::new(100.0, 100, 100, 0.0), known);
    let start = sim.run_one(WARM_UP);
    sim.run(WARM_UP);
    let tally = sim.run_one(MEASURED);
    let goodput = tally.goodput_mbit(MEASURED);
    eprintln!("start {start:?}\nafter {goodput:.1} {tally:?}");
    assert!(start.queue_drops * 50 <= start.sent, "{start:?}");
    assert!(goodput > 93.0, "goodput {goodput:.1} Mbit/s");
    assert_eq!(tally.queue_drops, 0, "{tally:?}");
    assert!(tally.max_queue <= Duration::from_millis(30), "{tally:?}");
}

/// The goodput of each flow over `span`, in Mbit/s.
fn goodputs(tallies: &[Tally], span: Duration) -> Vec<f64> {
    tallies.iter().map(|t| t.goodput_mbit(span)).collect()
}

/// A clean 100 Mbit/s link with a 100 ms round trip and a 100 ms queue:
/// W7 of the benchmarks.
fn shared_link() -> Simulation {
    Simulation::empty(Link::new(100.0, 100, 100, 0.0))
}

/// Runs the flows of `sim` for 20 s, then returns their goodputs over the
/// next minute.
fn settled_goodputs(sim: &mut Simulation) -> Vec<f64> {
    sim.run(Duration::from_secs(20));
    let span = Duration::from_secs(60);
    goodputs(&sim.run(span), span)
}

#[test]
fn beside_a_bbr_flow_that_keeps_a_standing_queue_a_share_is_kept() {
    // Sized for the idle round trip, the window delivered less each round
    // beside BBR's queue: realize fell to 5 Mbit/s against BBR's 92.
    let mut sim = shared_link();
    sim.add_bbr(Duration::ZERO);
    sim.add_realize(Duration::from_secs(5));
    let rates = settled_goodputs(&mut sim);
    let (bbr, realize) = (rates[0], rates[1]);
    assert!(
        realize >= bbr / 3.0,
        "realize {realize:.1} Mbit/s, BBR {bbr:.1} Mbit/s"
    );
    assert!(realize + bbr > 95.0, "{rates:?}");
}

#[test]
fn beside_a_cubic_flow_neither_is_starved_whichever_came_first() {
    for realize_first in [true, false] {
        let mut sim = shared_link();
        let later = Duration::from_secs(5);
        match realize_first {
            true => (sim.add_realize(Duration::ZERO), sim.add_tcp(later)),
            false => (sim.add_tcp(Duration::ZERO), sim.add_realize(later)),
        };
        let rates = settled_goodputs(&mut sim);
        assert!(
            rates.iter().all(|&r| r > 20.0),
            "realize first: {realize_first}, {rates:?}"
        );
        assert!(rates[0] + rates[1] > 95.0, "{rates:?}");
    }
}

#[test]
fn two_moves_share_a_link_evenly_whenever_the_second_starts() {
    for second_after in [5, 12] {
        let mut sim = shared_link();
        sim.add_realize(Duration::ZERO);
        sim.add_realize(Duration::from_secs(second_after));
        let rates = settled_goodputs(&mut sim);
        let share = rates[0] / (rates[0] + rates[1]);
        assert!(
            (0.45..=0.55).contains(&share),
            "second after {second_after} s: {rates:?}"
        );
        assert!(rates[0] + rates[1] > 95.0, "{rates:?}");
    }
}

#[test]
fn once_the_other_flow_leaves_the_queue_is_short_again() {
    let mut sim = shared_link();
    sim.add_bbr(Duration::ZERO);
    sim.add_realize(Duration::from_secs(5));
    sim.run(Duration::from_secs(30));
    sim.flows[0].stop();
    sim.run(Duration::from_secs(15));
    let tally = sim.run(MEASURED)[1];
    let goodput = tally.goodput_mbit(MEASURED);
    assert!(goodput > 95.0, "goodput {goodput:.1} Mbit/s");
    assert!(tally.max_queue <= Duration::from_millis(30), "{tally:?}");
}
