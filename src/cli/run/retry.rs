//! Backoff between attempts of a move whose connection was lost.

use std::time::Duration;

/// The delays between attempts: 1 s, 2 s, 5 s, 15 s, 30 s, 60 s, then every
/// 60 s. Reset after an attempt that made progress.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    attempt: usize,
}

const DELAYS: [u64; 6] = [1, 2, 5, 15, 30, 60];

impl Backoff {
    /// The delay before the next attempt.
    pub(super) fn next_delay(&mut self) -> Duration {
        let delay = DELAYS[self.attempt.min(DELAYS.len() - 1)];
        self.attempt += 1;
        Duration::from_secs(delay)
    }

    /// Starts over after an attempt that moved files.
    pub(super) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stay_at_a_minute() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 5, 15, 30, 60, 60, 60]);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_secs(), 1);
    }

    #[test]
    fn the_connect_timeout_help_states_the_delays() {
        let (last, firsts) = DELAYS.split_last().unwrap();
        let listed: Vec<String> = firsts.iter().map(|s| format!("{s}s, ")).collect();
        let delays = format!("({}{last}s, then every minute)", listed.concat());
        let help = crate::cli::args::help_of(None, "connect_timeout");
        assert!(help.contains(&delays), "{help}");
        assert_eq!(*last, 60, "every minute");
    }
}
