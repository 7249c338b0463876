//! A UDP relay that damages traffic as a poor network does. It stands between
//! the command and a daemon and, in both directions, drops some datagrams,
//! sends some twice and holds some back so that later ones overtake them.
//! Unlike the emulated link of the WAN tests it needs no privileges.
//!
//! Which datagrams are damaged comes from a seeded generator: the same seed
//! gives the same pattern of faults, datagram by datagram, in each direction.
//!
//! A relay can instead carry everything intact and then go dark, as a path
//! does when a cable is pulled: see [`Relay::going_dark`].

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::runtime::Runtime;

/// Percent of datagrams dropped, in each direction.
const DROP_PERCENT: u64 = 5;
/// Percent of datagrams sent twice, in each direction.
const DUPLICATE_PERCENT: u64 = 2;
/// Percent of datagrams held back so that later ones overtake them.
const REORDER_PERCENT: u64 = 5;
/// Longest a datagram is held back, in milliseconds (at least 1).
const MAX_HOLD_MILLIS: u64 = 4;
/// Room for the largest UDP datagram, far more than any QUIC packet.
const MAX_DATAGRAM: usize = 65_536;

/// A running relay to one daemon; it stops when dropped.
pub struct Relay {
    /// Where the command connects instead of the daemon's address.
    pub addr: SocketAddr,
    /// Seed of the pattern of faults.
    pub seed: u64,
    toward_daemon: Arc<Counters>,
    toward_client: Arc<Counters>,
    _runtime: Runtime,
}

impl Relay {
    /// Starts a relay on 127.0.0.1 in front of the daemon at `daemon`,
    /// damaging datagrams as `seed` decides.
    pub fn start(daemon: SocketAddr, seed: u64) -> Self {
        Self::start_with(daemon, seed, Plan::Faults(seed))
    }

    /// Starts a relay on 127.0.0.1 in front of the daemon at `daemon` that
    /// passes everything on intact until `budget` bytes have gone back toward
    /// the client, then drops every datagram both ways, for good: the path
    /// goes dark with no word to either end, and new connections get no
    /// answer either.
    pub fn going_dark(daemon: SocketAddr, budget: u64) -> Self {
        let outage = Arc::new(Outage {
            left: AtomicU64::new(budget),
            dark: AtomicBool::new(false),
        });
        Self::start_with(daemon, 0, Plan::Outage(outage))
    }

    fn start_with(daemon: SocketAddr, seed: u64, plan: Plan) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the relay's runtime starts");
        let front = runtime
            .block_on(UdpSocket::bind("127.0.0.1:0"))
            .expect("the relay binds a UDP socket");
        let addr = front.local_addr().unwrap();
        let toward_daemon = Arc::new(Counters::default());
        let toward_client = Arc::new(Counters::default());
        let clients = Clients {
            front: Arc::new(front),
            daemon,
            plan,
            toward_daemon: toward_daemon.clone(),
            toward_client: toward_client.clone(),
        };
        runtime.spawn(clients.serve());
        Self {
            addr,
            seed,
            toward_daemon,
            toward_client,
            _runtime: runtime,
        }
    }

    /// What the relay has done so far to datagrams going to the daemon.
    pub fn toward_daemon(&self) -> Tally {
        self.toward_daemon.tally()
    }

    /// What the relay has done so far to datagrams going back to the client.
    pub fn toward_client(&self) -> Tally {
        self.toward_client.tally()
    }
}

impl fmt::Display for Relay {
    /// The seed and both tallies, for test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "relay seed {:#x}: toward the daemon {}; toward the client {}",
            self.seed,
            self.toward_daemon(),
            self.toward_client()
        )
    }
}

/// What the relay did to the datagrams of one direction. A duplicated or
/// reordered datagram is also counted as forwarded.
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    /// Datagrams passed on, at once or late.
    pub forwarded: u64,
    /// Datagrams never passed on.
    pub dropped: u64,
    /// Datagrams passed on twice.
    pub duplicated: u64,
    /// Datagrams held back while later ones went ahead.
    pub reordered: u64,
}

impl Tally {
    /// Every datagram the relay received in this direction.
    pub fn received(&self) -> u64 {
        self.forwarded + self.dropped
    }
}

impl fmt::Display for Tally {
    /// One line of counts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} forwarded, {} dropped, {} duplicated, {} reordered",
            self.forwarded, self.dropped, self.duplicated, self.reordered
        )
    }
}

/// The live counts of one direction, shared by the relay's tasks.
#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
}

impl Counters {
    /// Counts one datagram met with `fate`.
    fn count(&self, fate: Fate) {
        let add = |counter: &AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
        };
        match fate {
            Fate::Drop => add(&self.dropped),
            Fate::Forward => add(&self.forwarded),
            Fate::Duplicate => {
                add(&self.forwarded);
                add(&self.duplicated);
            }
            Fate::HoldBack(_) => {
                add(&self.forwarded);
                add(&self.reordered);
            }
        }
    }

    /// The counts as they are now.
    fn tally(&self) -> Tally {
        Tally {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
        }
    }
}

/// What happens to one datagram.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Never passed on.
    Drop,
    /// Passed on twice in a row.
    Duplicate,
    /// Passed on after this long, while later datagrams go ahead.
    HoldBack(Duration),
    /// Passed on at once.
    Forward,
}

/// A splitmix64 generator deciding the fate of each datagram in turn.
struct FaultPattern {
    state: u64,
}

impl FaultPattern {
    /// The pattern of stream `stream` (one per direction of each client) of
    /// the relay seeded with `seed`.
    fn new(seed: u64, stream: u64) -> Self {
        Self {
            state: seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F),
        }
    }

    /// The next pseudo-random number.
    fn next_number(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The fate of the next datagram.
    fn next_fate(&mut self) -> Fate {
        let roll = self.next_number() % 100;
        if roll < DROP_PERCENT {
            Fate::Drop
        } else if roll < DROP_PERCENT + DUPLICATE_PERCENT {
            Fate::Duplicate
        } else if roll < DROP_PERCENT + DUPLICATE_PERCENT + REORDER_PERCENT {
            let millis = 1 + self.next_number() % MAX_HOLD_MILLIS;
            Fate::HoldBack(Duration::from_millis(millis))
        } else {
            Fate::Forward
        }
    }
}

/// What a relay does to its datagrams.
enum Plan {
    /// Damages some, as the generator seeded with this decides.
    Faults(u64),
    /// Carries everything until the path goes dark.
    Outage(Arc<Outage>),
}

/// A path that goes dark once enough bytes have gone back toward the
/// client, shared by every direction of every client.
struct Outage {
    /// Bytes that may still go toward the client.
    left: AtomicU64,
    /// Set once the budget is spent: everything is dropped from then on.
    dark: AtomicBool,
}

impl Outage {
    /// The fate of a datagram of `len` bytes going toward the client if
    /// `toward_client`, else toward the daemon.
    fn fate(&self, len: usize, toward_client: bool) -> Fate {
        let spent = toward_client
            && self
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(len as u64)
                })
                .is_err();
        if spent {
            self.dark.store(true, Ordering::Relaxed);
        }
        match self.dark.load(Ordering::Relaxed) {
            true => Fate::Drop,
            false => Fate::Forward,
        }
    }
}

/// How one direction of one client's traffic is treated.
enum Damage {
    /// Faults as the generator decides, datagram by datagram.
    Faults(FaultPattern),
    /// Intact until the outage; `bool` says whether toward the client.
    Outage(Arc<Outage>, bool),
}

impl Damage {
    /// The fate of the next datagram, `len` bytes long.
    fn next_fate(&mut self, len: usize) -> Fate {
        match self {
            Damage::Faults(pattern) => pattern.next_fate(),
            Damage::Outage(outage, toward_client) => outage.fate(len, *toward_client),
        }
    }
}

/// One direction of one client's traffic: where it goes, and how it is
/// damaged on the way.
struct Link {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    damage: Damage,
    counters: Arc<Counters>,
}

impl Link {
    /// Passes `datagram` on, or drops, duplicates or holds it back. Send
    /// errors are ignored: the datagram is lost, as on a real network.
    async fn pass_on(&mut self, datagram: &[u8]) {
        let fate = self.damage.next_fate(datagram.len());
        self.counters.count(fate);
        match fate {
            Fate::Drop => {}
            Fate::Forward => {
                let _ = self.socket.send_to(datagram, self.to).await;
            }
            Fate::Duplicate => {
                let _ = self.socket.send_to(datagram, self.to).await;
                let _ = self.socket.send_to(datagram, self.to).await;
            }
            Fate::HoldBack(hold) => self.send_later(datagram.to_vec(), hold),
        }
    }

    /// Sends `datagram` after `hold`, while later datagrams go ahead.
    fn send_later(&self, datagram: Vec<u8>, hold: Duration) {
        let (socket, to) = (self.socket.clone(), self.to);
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let _ = socket.send_to(&datagram, to).await;
        });
    }

    /// Passes on every datagram `received_on` receives, until the relay stops.
    async fn pass_on_all(mut self, received_on: Arc<UdpSocket>) {
        let mut buffer = vec![0; MAX_DATAGRAM];
        loop {
            if let Ok(len) = received_on.recv(&mut buffer).await {
                self.pass_on(&buffer[..len]).await;
            }
        }
    }
}

/// The client-facing side of the relay: one upstream socket per client
/// address, so the daemon sees each client as a peer of its own.
struct Clients {
    front: Arc<UdpSocket>,
    daemon: SocketAddr,
    plan: Plan,
    toward_daemon: Arc<Counters>,
    toward_client: Arc<Counters>,
}

impl Clients {
    /// How the `stream`th direction (even toward the daemon, odd toward the
    /// client) is treated.
    fn damage(&self, stream: u64) -> Damage {
        match &self.plan {
            Plan::Faults(seed) => Damage::Faults(FaultPattern::new(*seed, stream)),
            Plan::Outage(outage) => Damage::Outage(outage.clone(), stream % 2 == 1),
        }
    }

    /// Relays every client's datagrams to the daemon, until the relay stops.
    async fn serve(self) {
        let mut links: HashMap<SocketAddr, Link> = HashMap::new();
        let mut buffer = vec![0; MAX_DATAGRAM];
        loop {
            let Ok((len, client)) = self.front.recv_from(&mut buffer).await else {
                continue;
            };
            if !links.contains_key(&client) {
                let link = self.open(client, links.len() as u64).await;
                links.insert(client, link);
            }
            let link = links.get_mut(&client).expect("inserted above");
            link.pass_on(&buffer[..len]).await;
        }
    }

    /// Opens the upstream socket of the `index`th client, starts relaying the
    /// daemon's replies back to it, and returns its link to the daemon.
    async fn open(&self, client: SocketAddr, index: u64) -> Link {
        let upstream = Arc::new(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("the relay binds an upstream socket"),
        );
        let replies = Link {
            socket: self.front.clone(),
            to: client,
            damage: self.damage(2 * index + 1),
            counters: self.toward_client.clone(),
        };
        tokio::spawn(replies.pass_on_all(upstream.clone()));
        Link {
            socket: upstream,
            to: self.daemon,
            damage: self.damage(2 * index),
            counters: self.toward_daemon.clone(),
        }
    }
}
