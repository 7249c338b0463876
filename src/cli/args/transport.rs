//! How a process's QUIC connections send and receive: the transport flags
//! both binaries take.

use std::fmt;

use clap::Args;

use crate::transport::congestion::Congestion;
use crate::transport::endpoint::Tuning;
use crate::units::parse_bytes;

/// How this process's QUIC connections send and receive. The defaults fill
/// links up to about 500 Mbit/s per file and 2.7 Gbit/s in all at a 100 ms
/// round trip (half of the window, as a lost packet holds the rest back
/// until it is resent); `realize bench` shows what a link gives.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Transport")]
pub struct TransportArgs {
    /// Congestion controller for what this process sends. `rate` sizes the
    /// window from the measured delivery rate and keeps lossy long links
    /// full without flooding them; `cubic` and `new-reno` halve their speed
    /// at every loss (fine on clean links, collapse on lossy ones); `bbr` is
    /// quinn's experimental BBR, which over-sends.
    #[arg(long, value_enum, value_name = "NAME", default_value_t = Tuning::default().congestion)]
    pub congestion: Congestion,
    /// Bytes a peer may send on one stream (one file) ahead of this process:
    /// one file moves at most this much per round trip. Raise it above
    /// 2 x rate x RTT for very fast, long links (1 Gbit/s x 200 ms: 50M).
    #[arg(long, value_name = "SIZE", value_parser = parse_window,
          default_value_t = Window(Tuning::default().stream_window))]
    pub stream_window: Window,
    /// Bytes a peer may send on all streams together ahead of this process,
    /// and bytes this process buffers for sending: the whole connection
    /// moves at most this much per round trip.
    #[arg(long, value_name = "SIZE", value_parser = parse_window,
          default_value_t = Window(Tuning::default().connection_window))]
    pub connection_window: Window,
}

impl TransportArgs {
    /// The connection tuning these flags ask for.
    pub fn tuning(&self) -> Tuning {
        // A connection window below one stream's would cap that stream.
        let connection_window = self.connection_window.max(self.stream_window).0;
        Tuning {
            congestion: self.congestion,
            stream_window: self.stream_window.0,
            connection_window,
            send_window: u64::from(connection_window),
            ..Tuning::default()
        }
    }
}

/// A flow-control window in bytes, as the window flags take and show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window(pub u32);

impl fmt::Display for Window {
    /// In the largest binary multiple that divides it (12M, 512k), as the
    /// flags are written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        let unit = [(30, "G"), (20, "M"), (10, "k")]
            .into_iter()
            .find(|(shift, _)| bytes.is_multiple_of(1 << shift));
        match unit {
            Some((shift, unit)) => write!(f, "{}{unit}", bytes >> shift),
            None => write!(f, "{bytes}"),
        }
    }
}

/// Smallest and largest flow-control windows accepted.
const WINDOWS: std::ops::RangeInclusive<f64> = (64u64 << 10) as f64..=(1u64 << 30) as f64;

fn parse_window(value: &str) -> Result<Window, String> {
    match parse_bytes(value) {
        Some(bytes) if WINDOWS.contains(&bytes) => Ok(Window(bytes as u32)),
        Some(_) => Err("a window must be from 64k to 1G".into()),
        None => Err(format!(
            "{value:?} is not a size: use e.g. 512k, 8MiB or 1G (binary multiples)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_shown_as_they_are_written() {
        for (bytes, shown) in [(12 << 20, "12M"), (64 << 20, "64M"), (1 << 30, "1G")] {
            assert_eq!(Window(bytes).to_string(), shown);
            assert_eq!(parse_window(shown), Ok(Window(bytes)));
        }
        assert_eq!(Window(1536 << 10).to_string(), "1536k");
        assert_eq!(Window(100_000).to_string(), "100000");
        assert_eq!(parse_window("100000"), Ok(Window(100_000)));
    }
}
