//! Pacing what one side sends, shared by every stream of a connection and,
//! on the daemon, by every connection of a peer.
//!
//! A [`Throttle`] is a token bucket of bytes whose rate can change while
//! transfers run without refilling it. Senders ask it before each piece:
//! pieces are ~50 ms worth of data at the current rate (between 1 KiB and
//! 256 KiB), and the bucket holds two pieces, so a sender that was idle
//! bursts at most ~100 ms of data, while a sender woken a little late does
//! not lose the time. Only file bytes are counted: frames and QUIC overhead
//! are not.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Rates and pieces are whole KiB.
const CELL: u64 = 1024;
/// Largest piece sent at once, whatever the rate.
const MAX_PIECE: u64 = 256 * 1024;
/// Pieces the bucket holds: a sender woken up to one piece late (timers
/// fire a millisecond or so late) keeps the time it lost, and a sender that
/// was idle bursts at most two pieces (~100 ms).
const BUCKET_PIECES: u64 = 2;
/// Slowest rate accepted: 1 KiB/s.
pub const MIN_RATE: u64 = CELL;
/// Fastest rate accepted: 1 TiB/s.
pub const MAX_RATE: u64 = 1 << 40;

/// A rate in bytes per second, written `512k`, `4M`, `1.5G` (binary
/// multiples) or plain bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(u64);

impl Rate {
    /// A rate of `bytes_per_second`, if within [`MIN_RATE`]..=[`MAX_RATE`].
    pub fn new(bytes_per_second: u64) -> Result<Self, String> {
        if !(MIN_RATE..=MAX_RATE).contains(&bytes_per_second) {
            return Err(format!(
                "{bytes_per_second} bytes/s is outside 1k..1024G bytes per second"
            ));
        }
        Ok(Self(bytes_per_second))
    }

    /// Bytes per second.
    pub fn bytes_per_second(self) -> u64 {
        self.0
    }

    /// The largest piece to send before asking again: ~50 ms of data.
    pub fn piece(self) -> u64 {
        (self.0 / 20).clamp(CELL, MAX_PIECE) / CELL * CELL
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = parse_bytes(text).ok_or_else(|| {
            format!("{text:?} is not a rate: use e.g. 512k, 4M, 1.5G or bytes per second")
        })?;
        if bytes > MAX_RATE as f64 {
            return Err(format!("{text} is more than 1024G per second"));
        }
        Rate::new(bytes.round() as u64)
    }
}

/// A positive number of bytes written plain or with a binary multiple:
/// `512k`, `4M`, `1.5G`. `None` if `text` is not one.
pub fn parse_bytes(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, multiple) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&text[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value > 0.0).then_some(value * multiple as f64)
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", indicatif::HumanBytes(self.0))
    }
}

/// A token bucket of bytes. The level may fall below zero: a sender takes
/// its bytes at once and waits until the bucket has refilled what it owes,
/// so senders queue in the order they asked.
#[derive(Debug)]
struct Bucket {
    rate: Rate,
    /// Bytes that may be sent now; negative while senders wait.
    level: f64,
    /// When `level` was last brought up to date.
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate) -> Self {
        Self {
            rate,
            level: capacity(rate),
            updated: Instant::now(),
        }
    }

    /// Adds what the rate refilled since the last update, up to capacity.
    fn refill(&mut self) {
        let now = Instant::now();
        let gained = (now - self.updated).as_secs_f64() * self.rate.bytes_per_second() as f64;
        self.level = (self.level + gained).min(capacity(self.rate));
        self.updated = now;
    }

    /// Takes `bytes`; returns how long until the bucket has refilled them.
    fn take(&mut self, bytes: usize) -> Duration {
        self.refill();
        self.level -= bytes as f64;
        Duration::from_secs_f64((-self.level).max(0.0) / self.rate.bytes_per_second() as f64)
    }

    /// Changes the rate, keeping the level: what was spent stays spent.
    fn set_rate(&mut self, rate: Rate) {
        self.refill();
        self.rate = rate;
        self.level = self.level.min(capacity(rate));
    }
}

/// The most bytes a bucket at `rate` holds.
fn capacity(rate: Rate) -> f64 {
    (BUCKET_PIECES * rate.piece()) as f64
}

/// A send limit that every stream of a connection shares, changeable while
/// they run, optionally inside an outer limit shared more widely (a peer's
/// cap over all its connections): senders keep both. Clones share the
/// limits.
#[derive(Clone, Default)]
pub struct Throttle {
    bucket: Arc<Mutex<Option<Bucket>>>,
    outer: Option<Box<Throttle>>,
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Throttle({:?} within {:?})", self.rate(), self.outer)
    }
}

impl Throttle {
    /// A throttle at `rate`, or none; its bucket starts full.
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            bucket: Arc::new(Mutex::new(rate.map(Bucket::full))),
            outer: None,
        }
    }

    /// A throttle with no limit of its own yet, whose senders also keep
    /// `outer`'s limit (shared with `outer` and its other inner throttles).
    pub fn within(outer: &Throttle) -> Self {
        Self {
            bucket: Arc::default(),
            outer: Some(Box::new(outer.clone())),
        }
    }

    /// This throttle's own limit, the outer one aside.
    pub fn rate(&self) -> Option<Rate> {
        self.lock().as_ref().map(|bucket| bucket.rate)
    }

    /// The limit senders keep: the lowest of this one and the outer ones.
    pub fn limit(&self) -> Option<Rate> {
        let outer = self.outer.as_ref().and_then(|outer| outer.limit());
        match (self.rate(), outer) {
            (Some(own), Some(outer)) => Some(own.min(outer)),
            (own, outer) => own.or(outer),
        }
    }

    /// Changes this throttle's own limit; streams already running follow it
    /// from their next piece. What was sent stays counted: a new limit
    /// grants no fresh burst, and a limit set where there was none starts
    /// with an empty bucket. Returns the previous limit.
    pub fn set(&self, rate: Option<Rate>) -> Option<Rate> {
        let mut bucket = self.lock();
        let old = bucket.as_ref().map(|bucket| bucket.rate);
        match (bucket.as_mut(), rate) {
            (Some(current), Some(rate)) => current.set_rate(rate),
            (_, rate) => {
                *bucket = rate.map(|rate| Bucket {
                    level: 0.0,
                    ..Bucket::full(rate)
                })
            }
        }
        old
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Bucket>> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pieces `chunk` must be sent in: one piece without a limit.
    pub fn pieces(&self, chunk: Bytes) -> impl Iterator<Item = Bytes> {
        let piece = self
            .limit()
            .map_or(chunk.len().max(1), |r| r.piece() as usize);
        let mut rest = chunk;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            Some(rest.split_to(piece.min(rest.len())))
        })
    }

    /// Waits until `bytes` (at most one piece) may be sent under this limit
    /// and the outer ones.
    pub async fn wait(&self, bytes: usize) {
        let mut throttle = Some(self);
        while let Some(current) = throttle {
            let delay = current.lock().as_mut().map(|bucket| bucket.take(bytes));
            if let Some(delay) = delay.filter(|delay| !delay.is_zero()) {
                tokio::time::sleep(delay).await;
            }
            throttle = current.outer.as_deref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_binary_units() {
        let parse = |s: &str| s.parse::<Rate>().map(Rate::bytes_per_second);
        assert_eq!(parse("512k"), Ok(512 * 1024));
        assert_eq!(parse("4M"), Ok(4 << 20));
        assert_eq!(parse("1.5G"), Ok(3 << 29));
        assert_eq!(parse("100000"), Ok(100_000));
        for bad in ["0", "-1M", "abc", "", "1T", "k", "2000G", "100", "nanM"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pieces_are_a_twentieth_of_a_second_within_bounds() {
        let piece = |s: &str| s.parse::<Rate>().unwrap().piece();
        assert_eq!(piece("512k"), 25 * 1024);
        assert_eq!(piece("4M"), 204 * 1024);
        assert_eq!(piece("10k"), 1024);
        assert_eq!(piece("40M"), 256 * 1024);
    }

    #[test]
    fn chunks_split_into_pieces_only_when_limited() {
        let chunk = Bytes::from(vec![0u8; 300 * 1024]);
        let unlimited: Vec<_> = Throttle::new(None)
            .pieces(chunk.clone())
            .map(|p| p.len())
            .collect();
        assert_eq!(unlimited, [300 * 1024]);
        let limited = Throttle::new(Some("512k".parse().unwrap()));
        let sizes: Vec<_> = limited.pieces(chunk).map(|p| p.len()).collect();
        assert!(sizes.iter().all(|&n| n <= 25 * 1024));
        assert_eq!(sizes.iter().sum::<usize>(), 300 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_holds_two_pieces_and_no_more() {
        let rate: Rate = "4M".parse().unwrap();
        let throttle = Throttle::new(Some(rate));
        let started = tokio::time::Instant::now();
        throttle.wait(rate.piece() as usize).await;
        throttle.wait(rate.piece() as usize).await;
        assert!(
            started.elapsed().is_zero(),
            "an idle bucket lets two pieces go"
        );
        throttle.wait(rate.piece() as usize).await;
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(49),
            "a third piece waits ~50 ms: {:?}",
            started.elapsed()
        );
    }

    /// Virtual time: the runtime's clock only moves when every task waits.
    #[tokio::test(start_paused = true)]
    async fn a_new_limit_grants_no_fresh_burst() {
        let rate: Rate = "4M".parse().unwrap();
        let piece = rate.piece() as usize;
        let throttle = Throttle::new(Some(rate));
        for _ in 0..BUCKET_PIECES {
            throttle.wait(piece).await; // the idle bucket's burst
        }
        for again in ["4M", "8M", "4M"] {
            let again: Rate = again.parse().unwrap();
            throttle.set(Some(again));
            let started = tokio::time::Instant::now();
            throttle.wait(piece).await;
            let least =
                std::time::Duration::from_secs_f64(piece as f64 / again.bytes_per_second() as f64);
            assert!(
                started.elapsed() >= least.mul_f64(0.99),
                "a piece after setting {again} went in {:?}, not after {least:?}",
                started.elapsed()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_within_one_outer_share_its_limit() {
        let cap: Rate = "1M".parse().unwrap();
        let peer = Throttle::new(Some(cap));
        let (a, b) = (Throttle::within(&peer), Throttle::within(&peer));
        b.set(Some("4M".parse().unwrap()));
        assert_eq!((a.limit(), b.limit()), (Some(cap), Some(cap)));
        let piece = cap.piece() as usize;
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            a.wait(piece).await;
            b.wait(piece).await;
        }
        // Twenty pieces, two of them the idle bucket's burst.
        let least = std::time::Duration::from_secs_f64(18.0 * piece as f64 / (1 << 20) as f64);
        assert!(started.elapsed() >= least, "{:?}", started.elapsed());
    }

    #[test]
    fn the_limit_changes_in_place_for_every_clone() {
        let throttle = Throttle::new(Some("1M".parse().unwrap()));
        let shared = throttle.clone();
        assert_eq!(
            throttle.set(Some("2M".parse().unwrap())),
            Some("1M".parse().unwrap())
        );
        assert_eq!(shared.rate(), Some("2M".parse().unwrap()));
        assert_eq!(shared.set(None), Some("2M".parse().unwrap()));
        assert_eq!(throttle.rate(), None);
    }
}
