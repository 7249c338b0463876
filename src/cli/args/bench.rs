//! The flags of `realize bench`.

use clap::Args;

use super::{parse_duration, JsonArgs, PeerArgs, ThrottleArgs, TransportArgs, TrustArgs};
use crate::bench::{self, BenchLimit, Directions};

/// How `realize bench` reads its send limits, and its exit codes.
pub const BENCH_NOTES: &str = "\
Here the daemon is the destination of what this command sends and the source
of what it receives: --throttle-up paces this command, --throttle-down asks the
daemon to pace itself (its own cap for this host still applies).

Exit codes:
  0   the report is printed
  1   the daemon cannot be reached, refuses this host's key, or the connection fails
  2   bad usage (flags, client configuration, keys, an address that does not resolve)";

/// `realize bench`.
#[derive(Debug, Args)]
#[command(after_help = BENCH_NOTES)]
pub struct BenchArgs {
    /// The daemon to measure, HOST:PORT (port 9771 if omitted).
    #[arg(value_name = "HOST:PORT")]
    pub address: String,
    /// How long to run, 1s to 1h (e.g. 10s, 2m). The goodput counts from the
    /// first stream opened, so on a long path a short run reads a little low.
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = parse_bench_duration, conflicts_with = "size")]
    pub duration: std::time::Duration,
    /// Carry this many bytes each way instead of running for a time: 512M,
    /// 4GiB (binary multiples) or plain bytes, at most 1024G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,
    /// QUIC streams per direction, like files in flight in a move.
    #[arg(long, value_name = "N", default_value_t = bench::DEFAULT_STREAMS,
          value_parser = parse_streams)]
    pub streams: usize,
    /// Measure what this command sends to the daemon (the default, unless
    /// --receive is given).
    #[arg(long)]
    pub send: bool,
    /// Measure what the daemon sends to this command; with --send, both
    /// directions at once.
    #[arg(long)]
    pub receive: bool,
    /// Print the report as JSON.
    #[command(flatten)]
    pub output: JsonArgs,
    /// This host's key and the daemons it trusts.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The daemon's certificate.
    #[command(flatten)]
    pub daemon: PeerArgs,
    /// Send limits: up paces this command, down the daemon.
    #[command(flatten)]
    pub limits: ThrottleArgs,
    /// QUIC tuning of this side of the connection.
    #[command(flatten)]
    pub transport: TransportArgs,
}

impl BenchArgs {
    /// When the run stops: after `--size` bytes if given, else the duration.
    pub fn limit(&self) -> BenchLimit {
        match self.size {
            Some(size) => BenchLimit::Size(size),
            None => BenchLimit::Duration(self.duration),
        }
    }

    /// Which way the generated data goes.
    pub fn directions(&self) -> Directions {
        match (self.send, self.receive) {
            (true, true) => Directions::Both,
            (false, true) => Directions::Receive,
            _ => Directions::Send,
        }
    }
}

fn parse_bench_duration(value: &str) -> Result<std::time::Duration, String> {
    let duration = parse_duration(value)?;
    if !(bench::MIN_DURATION..=bench::MAX_DURATION).contains(&duration) {
        return Err("a bench runs from 1s to 1h".into());
    }
    Ok(duration)
}

fn parse_size(value: &str) -> Result<u64, String> {
    let bytes = crate::units::parse_bytes(value)
        .ok_or_else(|| format!("{value:?} is not a size: use e.g. 512M, 4G or bytes"))?;
    if bytes > bench::MAX_SIZE as f64 {
        return Err(format!("{value} is more than 1024G"));
    }
    Ok((bytes.round() as u64).max(1))
}

fn parse_streams(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=bench::MAX_STREAMS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of streams from 1 to {}",
            bench::MAX_STREAMS
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::args::{Command, RealizeArgs};
    use clap::Parser;

    fn bench(extra: &[&str]) -> Result<BenchArgs, clap::Error> {
        let mut args = vec!["realize", "bench", "host:9771"];
        args.extend_from_slice(extra);
        match RealizeArgs::try_parse_from(args)?.command {
            Some(Command::Bench(bench)) => Ok(bench),
            other => panic!("not a bench: {other:?}"),
        }
    }

    #[test]
    fn bench_runs_ten_seconds_sending_on_eight_streams_by_default() {
        let args = bench(&[]).unwrap();
        assert_eq!(
            args.limit(),
            BenchLimit::Duration(std::time::Duration::from_secs(10))
        );
        assert_eq!(args.directions(), Directions::Send);
        assert_eq!(args.streams, 8);
        assert!(!args.output.json);
    }

    #[test]
    fn bench_takes_a_size_and_directions() {
        let args = bench(&["--size", "1G", "--receive", "--streams", "4"]).unwrap();
        assert_eq!(args.limit(), BenchLimit::Size(1 << 30));
        assert_eq!(args.directions(), Directions::Receive);
        assert_eq!(args.streams, 4);
        let both = bench(&["--send", "--receive", "--throttle-up", "1M"]).unwrap();
        assert_eq!(both.directions(), Directions::Both);
        assert_eq!(both.limits.up().unwrap().bytes_per_second(), 1 << 20);
        assert_eq!(both.limits.down(), None);
    }

    #[test]
    fn bad_bench_flags_are_usage_errors() {
        let bad: &[&[&str]] = &[
            &["--size", "1G", "--duration", "5s"],
            &["--duration", "500ms"],
            &["--duration", "2h"],
            &["--size", "0"],
            &["--size", "2000G"],
            &["--size", "lots"],
            &["--streams", "0"],
            &["--streams", "129"],
        ];
        for extra in bad {
            let err = bench(extra).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{extra:?}");
        }
        let err = RealizeArgs::try_parse_from(["realize", "bench"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
