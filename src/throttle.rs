//! Pacing what one side sends, shared by every stream of a connection.
//!
//! A [`Throttle`] is a token bucket (governor) counted in 1 KiB cells whose
//! rate can change while transfers run. Senders ask it before each piece:
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

/// Bytes per governor cell.
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

struct Limiter {
    rate: Rate,
    bucket: DefaultDirectRateLimiter,
}

/// A send limit that every stream of a connection shares, changeable while
/// they run. Clones share the limit.
#[derive(Clone, Default)]
pub struct Throttle {
    limiter: Arc<RwLock<Option<Arc<Limiter>>>>,
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Throttle({:?})", self.rate())
    }
}

impl Throttle {
    /// A throttle at `rate`, or none.
    pub fn new(rate: Option<Rate>) -> Self {
        let throttle = Self::default();
        throttle.set(rate);
        throttle
    }

    /// The limit in force.
    pub fn rate(&self) -> Option<Rate> {
        self.current().map(|limiter| limiter.rate)
    }

    /// Changes the limit; streams already running follow it from their next
    /// piece. Returns the previous limit.
    pub fn set(&self, rate: Option<Rate>) -> Option<Rate> {
        let limiter = rate.map(|rate| {
            let cells = |bytes: u64| NonZeroU32::new((bytes / CELL).max(1) as u32).expect("not 0");
            let quota = Quota::per_second(cells(rate.bytes_per_second()))
                .allow_burst(cells(BUCKET_PIECES * rate.piece()));
            Arc::new(Limiter {
                rate,
                bucket: RateLimiter::direct(quota),
            })
        });
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
    pub fn pieces(&self, chunk: Bytes) -> impl Iterator<Item = Bytes> {
        let piece = self
            .rate()
            .map_or(chunk.len().max(1), |r| r.piece() as usize);
        let mut rest = chunk;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            Some(rest.split_to(piece.min(rest.len())))
        })
    }

    /// Waits until `bytes` (at most one piece) may be sent.
    pub async fn wait(&self, bytes: usize) {
        let Some(limiter) = self.current() else {
            return;
        };
        let cells = (bytes as u64).div_ceil(CELL).max(1) as u32;
        let cells = NonZeroU32::new(cells).expect("at least one cell");
        // A piece cut at a higher rate may exceed a new, lower rate's burst:
        // then it waits for a full bucket instead.
        if limiter.bucket.until_n_ready(cells).await.is_err() {
            let burst = NonZeroU32::new((BUCKET_PIECES * limiter.rate.piece() / CELL) as u32)
                .expect("not 0");
            let _ = limiter.bucket.until_n_ready(burst).await;
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

    #[test]
    fn the_bucket_holds_two_pieces_and_no_more() {
        let throttle = Throttle::new(Some("4M".parse().unwrap()));
        let limiter = throttle.current().unwrap();
        let piece = NonZeroU32::new((limiter.rate.piece() / CELL) as u32).unwrap();
        assert!(limiter.bucket.check_n(piece).unwrap().is_ok());
        assert!(limiter.bucket.check_n(piece).unwrap().is_ok());
        assert!(
            limiter.bucket.check_n(piece).unwrap().is_err(),
            "a third piece must wait ~50 ms"
        );
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
