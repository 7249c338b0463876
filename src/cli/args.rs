//! Every flag of `realize` and `realized`, with help that teaches.

use std::path::PathBuf;

use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};

use super::systemd;
use crate::bench::{self, BenchLimit, Directions};
use crate::model::DirectoryId;
use crate::mover::selection::{self, Action, Pattern, Selection};
use crate::throttle::{parse_bytes, Rate};
use crate::transport::congestion::Congestion;
use crate::transport::endpoint::Tuning;

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
    /// it. HOST is a [hosts] name of the client config or ADDR[:PORT].
    #[arg(value_name = "HOST[:DIR[/SUBPATH]]")]
    pub target: String,
    /// Print one JSON object, for scripts.
    #[arg(long)]
    pub json: bool,
    /// This host's key and the daemons it trusts.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// PEM file with the one certificate the daemon at an address must
    /// present; a [hosts] name brings its own.
    #[arg(long, value_name = "FILE")]
    pub peer: Option<PathBuf>,
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
    /// Print the report as one JSON object, for scripts.
    #[arg(long)]
    pub json: bool,
    /// This host's key and the daemons it trusts.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// PEM file with the one certificate the daemon at HOST:PORT must
    /// present; any other key is refused. Needed when --peers holds several.
    #[arg(long, value_name = "FILE")]
    pub peer: Option<PathBuf>,
    /// Send limits: up paces this command, down the daemon.
    #[command(flatten)]
    pub limits: ThrottleArgs,
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

/// The flags of a move.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Where files come from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where files go.
    #[command(flatten)]
    pub destination: DestinationArgs,
    /// Directory id on the daemon(s) of --src-addr and --dst-addr. Required
    /// when one of them is given; HOST:DIR names its own, and the two sides
    /// may name different ids (nas:photos backup:archive).
    #[arg(long, value_name = "ID")]
    pub directory_id: Option<DirectoryId>,
    /// This host's key and the daemons it trusts.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Which daemon each remote side must be.
    #[command(flatten)]
    pub daemons: DaemonPeerArgs,
    /// Show what the move would do and change nothing, on either side.
    ///
    /// Lists each file that would move (replacing a different file, resuming a
    /// partial file, or already at the destination so that only the source
    /// copy would be deleted), each entry that would be left at the source,
    /// and a summary. Both sides are listed and files of the same size on
    /// both are hashed, as a real move does; nothing is written, deleted or
    /// created. Exit code 0, or 1 if a side cannot be read or --dst-path
    /// does not exist (a dry run does not create it).
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Files moved at once, each on its own QUIC stream.
    #[arg(long, value_name = "N", default_value_t = crate::mover::DEFAULT_PARALLEL,
          value_parser = parse_parallel, env = "REALIZE_PARALLEL")]
    pub parallel: usize,
    /// Stop after this much wall-clock time (e.g. 30s, 5m, 1h30m): no new
    /// file starts, files in flight keep their partial files, exit code 11.
    /// Running the command again continues the work.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_duration: Option<std::time::Duration>,
    /// Give each file written to a local destination its source's owner
    /// (numeric user and group ids, like rsync -og --numeric-ids); needs
    /// root. A daemon destination keeps owners when its configuration says
    /// keep_owner = true. Without it, files belong to whoever writes them;
    /// modification times and permission bits are always kept.
    #[arg(long)]
    pub keep_owner: bool,
    /// Send limits.
    #[command(flatten)]
    pub limits: ThrottleArgs,
    /// How long to wait for a daemon to answer when connecting. A lost
    /// connection is retried (1s, 2s, 5s, 15s, 30s, 60s, then every minute)
    /// up to --retries times in a row, or until --max-duration is reached.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s",
          env = "REALIZE_CONNECT_TIMEOUT")]
    pub connect_timeout: std::time::Duration,
    /// Reconnect at most N times in a row after a daemon cannot be reached
    /// or a connection is lost (0: never); an attempt that moves a file
    /// starts the count over. Then the command gives up: exit 23 if files
    /// moved, else 1.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RETRIES,
          value_parser = clap::value_parser!(u32).range(..=MAX_RETRIES as i64))]
    pub retries: u32,
    /// Which source files the move takes.
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Print errors only.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print one JSON object on stdout at the end, for scripts, and nothing
    /// else there: counts, bytes, elapsed time, exit code, each failed and
    /// skipped entry (and with --dry-run each planned file). ERROR lines
    /// still go to stderr. A usage error (exit 2) prints no JSON. The fields
    /// are listed in docs/operations.md.
    #[arg(long)]
    pub json: bool,
    /// Print a progress line on stderr every DURATION (e.g. 10s, 1m): files
    /// done of all, bytes, rate and ETA; 0 turns it off. Default: every 30s
    /// when stderr is not a terminal (cron, systemd, a pipe) and the run is
    /// neither quiet nor a dry run; on a terminal, bars only.
    #[arg(long, value_name = "DURATION", value_parser = parse_stats_interval)]
    pub stats: Option<std::time::Duration>,
    /// Show skipped entries and logs on stderr; repeat for more (-vv debug).
    #[arg(long, short, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Write logs to this file instead of stderr (at info level unless -v
    /// asks for more, or RUST_LOG says otherwise).
    #[arg(long, value_name = "FILE", env = "REALIZE_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "REALIZE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics while the command runs.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Push metrics to this Prometheus Pushgateway (http://HOST:PORT, or
    /// https:// checked against the system's certificate authorities or
    /// SSL_CERT_FILE) at the end and every 30 s; a failed push is a warning
    /// and exit code 12.
    #[arg(long, value_name = "URL", env = "REALIZE_METRICS_PUSHGATEWAY")]
    pub metrics_pushgateway: Option<String>,
    /// Job label of pushed metrics.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "realize",
        env = "REALIZE_METRICS_JOB"
    )]
    pub metrics_job: String,
    /// Instance label of pushed metrics (default: this host's name).
    #[arg(long, value_name = "NAME", env = "REALIZE_METRICS_INSTANCE")]
    pub metrics_instance: Option<String>,
}

/// Which source files a move takes; the others stay at the source, are not
/// deleted and are not errors. The rules are those of
/// [`crate::mover::selection`].
#[derive(Debug, Args)]
#[command(next_help_heading = "Selecting files")]
pub struct SelectionArgs {
    /// Leave the files PATTERN matches at the source (repeatable; --help
    /// gives the rules).
    ///
    /// PATTERN is a glob matched against each path relative to the directory root:
    /// `*` and `?` do not cross `/`, `**` does, `[abc]` and `{jpg,png}` work
    /// as in a shell. Without a `/`, it matches a name at any depth
    /// (`*.tmp`, `cache`); with one, the path from the root (`photos/*.jpg`,
    /// `/notes.txt`). A trailing `/` matches directories only (`cache/`), and
    /// a matched directory takes everything under it. --include, --exclude
    /// and --exclude-from rules apply in command-line order, the first that
    /// matches a file (or a directory above it) decides, and a file no rule
    /// matches is moved: `--include '*.jpg' --exclude '*'` moves only JPEGs.
    #[arg(long, value_name = "PATTERN", value_parser = parse_pattern)]
    pub exclude: Vec<Pattern>,
    /// Move the files PATTERN matches, even if a later --exclude matches them
    /// (repeatable; same rules as --exclude).
    #[arg(long, value_name = "PATTERN", value_parser = parse_pattern)]
    pub include: Vec<Pattern>,
    /// Read --exclude patterns from FILE, one a line; empty lines and lines
    /// starting with `#` are ignored. They apply where the flag stands among
    /// the others.
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
    /// Leave source files modified less than DURATION ago (e.g. 10m, 2h) at
    /// the source: files still being written, in a cron job that moves
    /// finished files. A remote source's times are those of its host's
    /// clock.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_age: Option<std::time::Duration>,
}

impl SelectionArgs {
    /// The selection these flags ask for, with the rules in command-line
    /// order (`matches` says where each flag stood) and the --exclude-from
    /// files read.
    pub fn selection(&self, matches: &ArgMatches) -> Result<Selection, String> {
        let at = |id: &str| -> Vec<usize> {
            matches
                .indices_of(id)
                .map(|indices| indices.collect())
                .unwrap_or_default()
        };
        let mut rules: Vec<(usize, Action, Pattern)> = Vec::new();
        for (action, id, patterns) in [
            (Action::Exclude, "exclude", &self.exclude),
            (Action::Include, "include", &self.include),
        ] {
            let placed = at(id).into_iter().zip(patterns.iter().cloned());
            rules.extend(placed.map(|(index, pattern)| (index, action, pattern)));
        }
        for (index, file) in at("exclude_from").into_iter().zip(&self.exclude_from) {
            let patterns = std::fs::read_to_string(file)
                .map_err(|e| e.to_string())
                .and_then(|text| selection::patterns_in(&text))
                .map_err(|e| format!("--exclude-from {}: {e}", file.display()))?;
            rules.extend(patterns.into_iter().map(|p| (index, Action::Exclude, p)));
        }
        // Stable: the patterns of one file keep their order.
        rules.sort_by_key(|(index, _, _)| *index);
        let rules = rules
            .into_iter()
            .map(|(_, action, p)| (action, p))
            .collect();
        Selection::new(rules, self.min_age)
    }
}

fn parse_pattern(value: &str) -> Result<Pattern, String> {
    Pattern::new(value)
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
    /// own flag (--src-peer, --dst-peer; --peer for bench).
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

/// The certificate each remote daemon of a move must present. Each remote
/// side is bound to one daemon: a key pinned for another daemon is refused
/// too, so a daemon answering at the wrong address can neither hand over
/// files nor confirm copies that lead to sources being deleted.
#[derive(Debug, Args)]
pub struct DaemonPeerArgs {
    /// PEM file with the one certificate the daemon at --src-addr must
    /// present (e.g. hosta.crt); any other key is refused. Overrides
    /// --peers for this side; needed when --peers holds several.
    #[arg(long, value_name = "FILE", conflicts_with = "src_path")]
    pub src_peer: Option<PathBuf>,
    /// PEM file with the one certificate the daemon at --dst-addr must
    /// present (e.g. hostb.crt); any other key is refused before a file is
    /// sent or a source deleted. Overrides --peers for this side; needed
    /// when --peers holds several.
    #[arg(long, value_name = "FILE", conflicts_with = "dst_path")]
    pub dst_peer: Option<PathBuf>,
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

/// Reconnections in a row a move makes by default before giving up: with
/// the backoff's delays, about six minutes of trying.
pub const DEFAULT_RETRIES: u32 = 10;

/// Most `--retries` accepted: more is a typo (use --max-duration to bound
/// a run by time).
const MAX_RETRIES: u32 = 10_000;

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

/// How often a run with no terminal on stderr prints a progress line.
pub const DEFAULT_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Shortest `--stats` interval accepted, other than 0 (off).
const MIN_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A `--stats` interval: a duration of at least a second, or 0 (off, as
/// [`std::time::Duration::ZERO`]).
fn parse_stats_interval(value: &str) -> Result<std::time::Duration, String> {
    if value.trim_end_matches('s') == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let interval = parse_duration(value)?;
    if interval < MIN_STATS_INTERVAL {
        return Err("print stats at most every second (1s), or 0 for never".into());
    }
    Ok(interval)
}

fn parse_rate(value: &str) -> Result<Rate, String> {
    value.parse()
}

fn parse_bench_duration(value: &str) -> Result<std::time::Duration, String> {
    let duration = parse_duration(value)?;
    if !(bench::MIN_DURATION..=bench::MAX_DURATION).contains(&duration) {
        return Err("a bench runs from 1s to 1h".into());
    }
    Ok(duration)
}

fn parse_size(value: &str) -> Result<u64, String> {
    let bytes = crate::throttle::parse_bytes(value)
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

fn parse_parallel(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n @ 1..=512) => Ok(n),
        _ => Err("expected a number of files from 1 to 512".into()),
    }
}

/// The source endpoint: exactly one of SRC, a local path or a daemon.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SourceArgs {
    /// Where files come from: a local directory, or HOST:DIR[/SUBPATH] on a
    /// daemon. HOST is a [hosts] name of the client config or an address
    /// (ADDR[:PORT]); DIR a directory id it serves (`realize ls HOST` lists
    /// them); SUBPATH a file or folder inside DIR, the only part moved. An
    /// argument with a colon is local when a / comes before it (./a:b).
    #[arg(value_name = "SRC")]
    pub src: Option<String>,
    /// Move files from this local directory.
    #[arg(long, value_name = "PATH")]
    pub src_path: Option<PathBuf>,
    /// Move files from the daemon at HOST:PORT (port 9771 if omitted), or
    /// the [hosts] name HOST of the client config, reached at its addr and
    /// bound to its cert as in HOST:DIR.
    #[arg(long, value_name = "HOST:PORT")]
    pub src_addr: Option<String>,
}

impl SourceArgs {
    /// The source as the command line gives it.
    pub fn as_given(&self) -> String {
        as_given(&self.src, &self.src_path, &self.src_addr)
    }
}

/// The destination endpoint: exactly one of DST, a local path or a daemon.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct DestinationArgs {
    /// Where files go, written as SRC is. A local side stands for the root
    /// of DIR: `realize nas:photos/2024 /srv/photos` lands 2024/... in
    /// /srv/photos/2024/..., as a whole-directory move would (created if
    /// missing, once the move can start). Its DIR may differ from SRC's:
    /// files keep their paths relative to it.
    #[arg(value_name = "DST")]
    pub dst: Option<String>,
    /// Move files into this local directory (created if missing, once the
    /// move can start).
    #[arg(long, value_name = "PATH")]
    pub dst_path: Option<PathBuf>,
    /// Move files to the daemon at HOST:PORT (port 9771 if omitted), or the
    /// [hosts] name HOST of the client config, reached at its addr and bound
    /// to its cert as in HOST:DIR.
    #[arg(long, value_name = "HOST:PORT")]
    pub dst_addr: Option<String>,
}

impl DestinationArgs {
    /// The destination as the command line gives it.
    pub fn as_given(&self) -> String {
        as_given(&self.dst, &self.dst_path, &self.dst_addr)
    }
}

/// An endpoint as given: the argument, the path or the address, whichever
/// the command line holds.
fn as_given(arg: &Option<String>, path: &Option<PathBuf>, addr: &Option<String>) -> String {
    let path = path.as_ref().map(|path| path.display().to_string());
    arg.iter()
        .chain(&path)
        .chain(addr)
        .next()
        .cloned()
        .unwrap_or_default()
}

/// Where `realized` reads its configuration when --config is not given.
pub const DEFAULT_DAEMON_CONFIG: &str = "/etc/realize/realized.toml";

/// Serve local directories to pinned peers over QUIC.
///
/// On SIGHUP the daemon reads its configuration again and applies it to new
/// connections (peers, dirs, send limits, most limits); open connections
/// are not dropped, and a configuration that does not load is logged and
/// changes nothing.
#[derive(Debug, Clone, Parser)]
#[command(name = "realized", version)]
pub struct RealizedArgs {
    /// Daemon configuration (TOML): listen, key, cert, [dirs], [peers].
    #[arg(long, value_name = "FILE", default_value = DEFAULT_DAEMON_CONFIG)]
    pub config: PathBuf,
    /// Check the configuration and everything it names (key, certificates,
    /// directories), print the configuration the daemon would run with, and
    /// exit: 0 if it would start, 2 with the error if not. Binds nothing, so
    /// it can run beside the running daemon, e.g. before restarting it.
    #[arg(long)]
    pub check_config: bool,
    /// Listen on this UDP address instead of the configuration's.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Log line format (logs go to stderr; RUST_LOG filters, info by
    /// default). Without it: journal when stderr is the systemd journal
    /// (JOURNAL_STREAM), text otherwise.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(flatten)]
    pub transport: TransportArgs,
}

impl RealizedArgs {
    /// The log format asked for, or the one stderr calls for.
    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(if systemd::stderr_is_journal() {
            LogFormat::Journal
        } else {
            LogFormat::Text
        })
    }
}

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
    #[arg(long, value_enum, value_name = "NAME", default_value_t = Congestion::Rate)]
    pub congestion: Congestion,
    /// Bytes a peer may send on one stream (one file) ahead of this process:
    /// one file moves at most this much per round trip. Raise it above
    /// 2 x rate x RTT for very fast, long links (1 Gbit/s x 200 ms: 50M).
    #[arg(long, value_name = "SIZE", default_value = "12M", value_parser = parse_window)]
    pub stream_window: u32,
    /// Bytes a peer may send on all streams together ahead of this process,
    /// and bytes this process buffers for sending: the whole connection
    /// moves at most this much per round trip.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_window)]
    pub connection_window: u32,
}

impl TransportArgs {
    /// The connection tuning these flags ask for.
    pub fn tuning(&self) -> Tuning {
        // A connection window below one stream's would cap that stream.
        let connection_window = self.connection_window.max(self.stream_window);
        Tuning {
            congestion: self.congestion,
            stream_window: self.stream_window,
            connection_window,
            send_window: u64::from(connection_window),
            ..Tuning::default()
        }
    }
}

/// Smallest and largest flow-control windows accepted.
const WINDOWS: std::ops::RangeInclusive<f64> = (64u64 << 10) as f64..=(1u64 << 30) as f64;

fn parse_window(value: &str) -> Result<u32, String> {
    match parse_bytes(value) {
        Some(bytes) if WINDOWS.contains(&bytes) => Ok(bytes as u32),
        Some(_) => Err("a window must be from 64k to 1G".into()),
        None => Err(format!(
            "{value:?} is not a size: use e.g. 512k, 8MiB or 1G (binary multiples)"
        )),
    }
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
    fn both_source_kinds_conflict() {
        let err = RealizeArgs::try_parse_from([
            "realize",
            "--src-path",
            "a",
            "--src-addr",
            "h:1",
            "--dst-path",
            "b",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
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
    fn stats_intervals_are_a_second_or_more_or_0_for_off() {
        let stats = |value: &str| {
            RealizeArgs::try_parse_from(["realize", "a", "b", "--stats", value])
                .map(|args| args.transfer.stats)
        };
        assert_eq!(
            stats("1s").unwrap(),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(
            stats("2m").unwrap(),
            Some(std::time::Duration::from_secs(120))
        );
        for off in ["0", "0s"] {
            assert_eq!(stats(off).unwrap(), Some(std::time::Duration::ZERO));
        }
        for bad in ["500ms", "30", "-1s", "often"] {
            assert_eq!(stats(bad).unwrap_err().exit_code(), 2, "{bad}");
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
        assert!(!args.json);
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

    #[test]
    fn parallel_is_bounded() {
        let parse = |n: &str| {
            RealizeArgs::try_parse_from([
                "realize",
                "--src-path",
                "a",
                "--dst-path",
                "b",
                "--parallel",
                n,
            ])
        };
        assert!(parse("0").is_err());
        assert!(parse("513").is_err());
        assert_eq!(parse("8").unwrap().transfer.parallel, 8);
    }
}
