//! Pacing what one side sends, shared by every stream of a connection and,
//! on the daemon, by every connection of a peer.
//!
//! A [`Throttle`] is a token bucket (governor) counted in 1 KiB cells whose
//! rate can change while transfers run; a new rate starts with an empty
//! bucket, so changing it grants no fresh burst. Senders ask it before each piece:
//! pieces are ~50 ms worth of data at the current rate (between 1 KiB and
//! 256 KiB), and the bucket holds two pieces, so a sender that was idle
//! bursts at most ~100 ms of data, while a sender woken a little late does
//! not lose the time. Only file bytes are counted: frames and QUIC overhead
//! are not.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::units::parse_bytes;

/// Rates and pieces are whole KiB.
const CELL: u64 = 1024;
/// Largest piece sent at once, whatever the rate.
const MAX_PIECE: u64 = 256 * 1024;
/// Pieces the bucket holds: a sender woken up to one piece late (timers
/// fire a millisecond or so late) keeps the time it lost, and a sender that
/// was idle bursts at most two pieces (~100 ms).
const BUCKET_PIECES: u64 = 2;
/// Slowest rate accepted: 1 KiB/s.
pub(crate) const MIN_RATE: u64 = CELL;
/// Fastest rate accepted: 1 TiB/s.
pub(crate) const MAX_RATE: u64 = 1 << 40;

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

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", indicatif::HumanBytes(self.0))
    }
}

/// One limit: a governor bucket counted in [`CELL`]s.
struct Limiter {
    rate: Rate,
    bucket: DefaultDirectRateLimiter,
}

impl Limiter {
    /// A bucket at `rate`, full: an idle sender may burst.
    fn full(rate: Rate) -> Arc<Self> {
        let quota = Quota::per_second(cells(rate.bytes_per_second())).allow_burst(burst(rate));
        Arc::new(Self {
            rate,
            bucket: RateLimiter::direct(quota),
        })
    }

    /// A bucket at `rate`, empty: what was sent before it stays counted,
    /// so a new limit grants no fresh burst.
    fn empty(rate: Rate) -> Arc<Self> {
        let limiter = Self::full(rate);
        let _ = limiter.bucket.check_n(burst(rate));
        limiter
    }

    /// Waits until `bytes` (at most one piece) may be sent.
    async fn wait(&self, bytes: usize) {
        // A piece cut at a higher rate may exceed a new, lower rate's burst:
        // then it waits for a full bucket instead.
        if self
            .bucket
            .until_n_ready(cells(bytes as u64))
            .await
            .is_err()
        {
            let _ = self.bucket.until_n_ready(burst(self.rate)).await;
        }
    }
}

/// Whole cells for `bytes`, at least one.
fn cells(bytes: u64) -> NonZeroU32 {
    let cells = bytes.div_ceil(CELL).clamp(1, u32::MAX as u64) as u32;
    NonZeroU32::new(cells).expect("at least one cell")
}

/// The cells a bucket at `rate` holds.
fn burst(rate: Rate) -> NonZeroU32 {
    cells(BUCKET_PIECES * rate.piece())
}

/// A send limit that every stream of a connection shares, changeable while
/// they run, optionally inside an outer limit shared more widely (a peer's
/// cap over all its connections): senders keep both. Clones share the
/// limits.
#[derive(Clone, Default)]
pub(crate) struct Throttle {
    limiter: Arc<RwLock<Option<Arc<Limiter>>>>,
    outer: Option<Box<Throttle>>,
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Throttle({:?} within {:?})", self.rate(), self.outer)
    }
}

impl Throttle {
    /// A throttle at `rate`, or none; its bucket starts full.
    pub(crate) fn new(rate: Option<Rate>) -> Self {
        Self {
            limiter: Arc::new(RwLock::new(rate.map(Limiter::full))),
            outer: None,
        }
    }

    /// A throttle with no limit of its own yet, whose senders also keep
    /// `outer`'s limit (shared with `outer` and its other inner throttles).
    pub(crate) fn within(outer: &Throttle) -> Self {
        Self {
            limiter: Arc::default(),
            outer: Some(Box::new(outer.clone())),
        }
    }

    /// This throttle's own limit, the outer one aside.
    pub(crate) fn rate(&self) -> Option<Rate> {
        self.current().map(|limiter| limiter.rate)
    }

    /// The limit senders keep: the lowest of this one and the outer ones.
    pub(crate) fn limit(&self) -> Option<Rate> {
        let outer = self.outer.as_ref().and_then(|outer| outer.limit());
        match (self.rate(), outer) {
            (Some(own), Some(outer)) => Some(own.min(outer)),
            (own, outer) => own.or(outer),
        }
    }

    /// Changes this throttle's own limit; streams already running follow it
    /// from their next piece. The new limit starts with an empty bucket: it
    /// grants no fresh burst. Returns the previous limit.
    pub(crate) fn set(&self, rate: Option<Rate>) -> Option<Rate> {
        let limiter = rate.map(Limiter::empty);
        let mut current = self.limiter.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *current, limiter).map(|old| old.rate)
    }

    fn current(&self) -> Option<Arc<Limiter>> {
        self.limiter
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The pieces `chunk` must be sent in: one piece without a limit.
    pub(crate) fn pieces(&self, chunk: Bytes) -> impl Iterator<Item = Bytes> {
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
    pub(crate) async fn wait(&self, bytes: usize) {
        let mut throttle = Some(self);
        while let Some(current) = throttle {
            if let Some(limiter) = current.current() {
                limiter.wait(bytes).await;
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
        // Every spelling of a unit is a binary multiple.
        for four_mib in ["4MiB", "4MB", "4 MiB", "4mb", "4Mi"] {
            assert_eq!(parse(four_mib), Ok(4 << 20), "{four_mib}");
        }
        assert_eq!(parse("1T"), Ok(1 << 40));
        for bad in [
            "0", "-1M", "abc", "", "2T", "k", "2000G", "100", "nanM", "4Mbit",
        ] {
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

    // The tests below wait in real time, and check only that senders
    // waited at least as long as the rate demands.

    #[tokio::test]
    async fn the_bucket_holds_two_pieces_and_no_more() {
        let rate: Rate = "4M".parse().unwrap();
        let throttle = Throttle::new(Some(rate));
        let started = std::time::Instant::now();
        for _ in 0..3 {
            throttle.wait(rate.piece() as usize).await;
        }
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(49),
            "a third piece waits ~50 ms: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
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
            let started = std::time::Instant::now();
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

    #[tokio::test]
    async fn throttles_within_one_outer_share_its_limit() {
        let cap: Rate = "1M".parse().unwrap();
        let peer = Throttle::new(Some(cap));
        let (a, b) = (Throttle::within(&peer), Throttle::within(&peer));
        b.set(Some("4M".parse().unwrap()));
        assert_eq!((a.limit(), b.limit()), (Some(cap), Some(cap)));
        let piece = cap.piece() as usize;
        let started = std::time::Instant::now();
        for _ in 0..5 {
            a.wait(piece).await;
            b.wait(piece).await;
        }
        // Ten pieces, two of them the idle bucket's burst.
        let least = std::time::Duration::from_secs_f64(8.0 * piece as f64 / (1 << 20) as f64);
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
