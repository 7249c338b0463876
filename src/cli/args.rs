//! Every flag of `realize` and `realized`, with help that teaches. The
//! flags several subcommands share are defined here once; each command's own
//! flags live in a module of their own.

mod bench;
mod move_args;
mod realized;
mod transport;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use self::bench::{BenchArgs, BENCH_NOTES};
pub use self::move_args::{
    DaemonPeerArgs, DestinationArgs, MoveArgs, SelectionArgs, SourceArgs, DEFAULT_RETRIES,
    DEFAULT_STATS_INTERVAL,
};
pub use self::realized::{RealizedArgs, DEFAULT_DAEMON_CONFIG};
pub use self::transport::{TransportArgs, Window};
use super::peers::RemoteSide;
use crate::throttle::Rate;

/// Move every file of a directory to another host over QUIC: copy, verify,
/// make durable, then delete the source.
///
/// realize SRC DST, each a local directory or HOST:DIR[/SUBPATH]; or the
/// flags --src-path/--src-addr, --dst-path/--dst-addr and --directory-id.
#[derive(Debug, Parser)]
#[command(
    name = "realize",
    version,
    after_help = super::exit_status::help(),
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct RealizeArgs {
    /// Helper commands; without one, realize moves files.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// What to move and where.
    #[command(flatten)]
    pub transfer: MoveArgs,
}

/// Subcommands of `realize`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a private key and self-signed certificate for a host.
    Keygen(KeygenArgs),
    /// Move a generated tree to a daemon started on loopback, with fresh keys:
    /// a full real move over QUIC, no setup needed.
    Demo(DemoArgs),
    /// Measure the path to a daemon before a big move: generated data crosses
    /// through the real protocol (no disk is touched on either side), then
    /// goodput, round trip, loss and congestion are reported.
    Bench(BenchArgs),
    /// List what a daemon serves: `realize ls HOST` prints the directory ids
    /// it serves, `realize ls HOST:DIR[/SUBPATH]` the files under it with
    /// their sizes in bytes (a partial file, which the next move resumes, is
    /// marked so).
    Ls(LsArgs),
    /// Print a shell completion script for realize to stdout, e.g.
    /// `realize completions bash > /etc/bash_completion.d/realize`.
    Completions(CompletionsArgs),
    /// Write the manual pages (realize.1, one per subcommand, realized.1)
    /// into a folder, e.g. `realize man --out /usr/local/share/man/man1`.
    Man(ManArgs),
}

/// `realize completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `realize man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder to write the pages into (created if missing; pages already
    /// there are replaced).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

/// `realize ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The daemon, and optionally a directory and a file or folder inside
    /// it. HOST is a [hosts] name of the client config, which brings the
    /// certificate the daemon must present, or ADDR[:PORT].
    #[arg(value_name = "HOST[:DIR[/SUBPATH]]")]
    pub target: String,
    /// Print the result as JSON.
    #[command(flatten)]
    pub output: JsonArgs,
    /// This host's key and the daemons it trusts.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The daemon's certificate.
    #[command(flatten)]
    pub daemon: PeerArgs,
}

/// `realize keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Name of the host; writes NAME.key and NAME.crt.
    #[arg(long)]
    pub name: String,
    /// Folder to write into.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

/// `realize demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of files in the generated tree.
    #[arg(long, default_value_t = 200)]
    pub files: usize,
    /// Size of the largest file, in MiB; the others are smaller.
    #[arg(long, default_value_t = 64)]
    pub max_mib: u64,
}

/// This host's identity and the daemons it trusts, for remote endpoints.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// This host's private key (PEM), for remote endpoints.
    #[arg(long, value_name = "FILE", env = "REALIZE_KEY")]
    pub key: Option<PathBuf>,
    /// This host's certificate (PEM), for remote endpoints.
    #[arg(long, value_name = "FILE", env = "REALIZE_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM file with the certificate of the daemon to trust. It binds every
    /// remote daemon of the call, so it must hold exactly one certificate:
    /// when it holds several, name the daemon of each remote side with its
    /// own flag (--src-peer, --dst-peer; --peer for ls and bench).
    #[arg(long, value_name = "FILE", env = "REALIZE_PEERS")]
    pub peers: Option<PathBuf>,
    /// Client configuration holding key, cert, peers (one certificate, as
    /// for --peers) and [hosts] (NAME = { addr, cert }, the names HOST:DIR
    /// takes), so the common call is short. Default:
    /// $XDG_CONFIG_HOME/realize/config.toml (~/.config/...) if it exists. A
    /// flag, or the environment variable shown beside it, overrides the file.
    #[arg(long, value_name = "FILE", env = "REALIZE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `--json`: the result as one JSON object on stdout, for scripts.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print the result as one JSON object on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `--peer`: the certificate the one daemon of a call must present.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// PEM file with the one certificate the daemon must present; any other
    /// key is refused. Overrides --peers; needed when --peers holds several.
    #[arg(long, value_name = "FILE")]
    pub peer: Option<PathBuf>,
}

impl PeerArgs {
    /// The remote side of the daemon at `addr`, bound by `--peer` if given.
    pub fn side(&self, addr: String) -> RemoteSide {
        RemoteSide {
            addr,
            flag: "--peer".into(),
            file: self.peer.clone(),
        }
    }
}

/// Send limits in each direction.
#[derive(Debug, Args)]
pub struct ThrottleArgs {
    /// Limit both directions to RATE bytes per second: 512k, 4M, 4MiB, 1.5G
    /// or plain bytes per second. Units are binary multiples however they
    /// are spelled (10MB is 10 MiB), here and in every size.
    #[arg(long, value_name = "RATE", value_parser = parse_rate, env = "REALIZE_THROTTLE")]
    pub throttle: Option<Rate>,
    /// Limit what is sent towards the destination (overrides --throttle).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub throttle_up: Option<Rate>,
    /// Limit what is read from the source (overrides --throttle). A remote
    /// source daemon paces its own sending on this connection.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub throttle_down: Option<Rate>,
}

impl ThrottleArgs {
    /// The limit on what is sent towards the destination.
    pub fn up(&self) -> Option<Rate> {
        self.throttle_up.or(self.throttle)
    }

    /// The limit on what is read from the source.
    pub fn down(&self) -> Option<Rate> {
        self.throttle_down.or(self.throttle)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, fields included.
    Json,
    /// For the systemd journal: text lines led by their syslog level
    /// (`<4>` for a warning), without a timestamp (the journal adds it).
    Journal,
}

/// Longest `--max-duration` accepted: anything longer is a typo.
const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("{e}; use a duration such as 30s, 5m or 1h30m"))?;
    if duration.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    if duration > MAX_DURATION {
        return Err("the duration must be at most a year".into());
    }
    Ok(duration)
}

fn parse_rate(value: &str) -> Result<Rate, String> {
    value.parse()
}

/// The help of `realize`'s flag or argument `id` (of its `subcommand` if
/// given), for the tests that check a help text states the numbers the code
/// has.
#[cfg(test)]
pub(crate) fn help_of(subcommand: Option<&str>, id: &str) -> String {
    use clap::CommandFactory;
    let realize = RealizeArgs::command();
    let command = match subcommand {
        Some(name) => realize.find_subcommand(name).expect("a subcommand"),
        None => &realize,
    };
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .expect("a flag");
    let help = arg.get_long_help().or(arg.get_help()).expect("help");
    help.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        RealizeArgs::command().debug_assert();
        RealizedArgs::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units_and_are_bounded() {
        assert_eq!(
            parse_duration("1h30m"),
            Ok(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        for bad in ["0s", "-5s", "5", "ten minutes", "", "400days"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn specific_throttles_parse_and_bad_rates_are_usage_errors() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["realize", "--src-path", "a", "--dst-path", "b"];
            args.extend_from_slice(extra);
            RealizeArgs::try_parse_from(args)
        };
        let limits = parse(&["--throttle", "1M", "--throttle-down", "512k"])
            .unwrap()
            .transfer
            .limits;
        assert_eq!(limits.up().unwrap().bytes_per_second(), 1 << 20);
        assert_eq!(limits.down().unwrap().bytes_per_second(), 512 << 10);
        let limits = parse(&["--throttle", "4MiB", "--throttle-up", "10MB"])
            .unwrap()
            .transfer
            .limits;
        assert_eq!(limits.down().unwrap().bytes_per_second(), 4 << 20);
        assert_eq!(limits.up().unwrap().bytes_per_second(), 10 << 20);
        for bad in ["0", "fast", "-1M", "5000G"] {
            let err = parse(&["--throttle-up", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }
}
