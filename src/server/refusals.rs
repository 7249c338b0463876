//! Refused connections: every one is counted, but only so many are logged,
//! so that a flood of them cannot flood the log or the disk under it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::telemetry;

/// Refusals logged in a row before the rate applies.
const LOG_BURST: u32 = 20;
/// Refusals logged per minute beyond the burst.
const LOGGED_PER_MINUTE: u32 = 20;

/// Counts refusals by reason and decides which ones are logged.
#[derive(Debug)]
pub(super) struct Refusals {
    lines: DefaultDirectRateLimiter,
    unlogged: AtomicU64,
}

impl Default for Refusals {
    fn default() -> Self {
        let per_minute = NonZeroU32::new(LOGGED_PER_MINUTE).expect("non-zero rate");
        let burst = NonZeroU32::new(LOG_BURST).expect("non-zero burst");
        Self {
            lines: RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst)),
            unlogged: AtomicU64::new(0),
        }
    }
}

impl Refusals {
    /// Counts a refusal for `reason` (the metric's label). Returns what to
    /// add to its log line — how many refusals went unlogged since the last
    /// line — or `None` if this one is not to be logged.
    pub(super) fn count(&self, reason: &'static str) -> Option<String> {
        metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => reason).increment(1);
        if self.lines.check().is_err() {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(match self.unlogged.swap(0, Ordering::Relaxed) {
            0 => String::new(),
            n => format!(" ({n} more refusals since the last one logged)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_logged_in_a_few_lines_that_say_how_many_were_not() {
        let refusals = Refusals::default();
        let logged: Vec<String> = (0..1000).filter_map(|_| refusals.count("test")).collect();
        assert_eq!(logged.len(), LOG_BURST as usize, "{logged:?}");
        assert!(logged.iter().all(String::is_empty));
        // The rate lets the next line through at most a few seconds later:
        // it says how many were counted but not logged meanwhile.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let next = loop {
            if let Some(line) = refusals.count("test") {
                break line;
            }
            assert!(std::time::Instant::now() < deadline, "no line within 10 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let unlogged: u64 = next
            .trim_start_matches(" (")
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {next:?}"));
        assert!(unlogged >= 980, "{next}");
        assert!(
            next.ends_with("more refusals since the last one logged)"),
            "{next}"
        );
    }
}
