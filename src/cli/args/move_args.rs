//! The flags of a move, the command `realize` runs without a subcommand.

use std::path::PathBuf;

use clap::{ArgMatches, Args};

use super::{parse_duration, JsonArgs, LogFormat, ThrottleArgs, TransportArgs, TrustArgs};
use crate::model::DirectoryId;
use crate::mover::selection::{self, Action, Pattern, Selection};
use crate::mover::MAX_PARALLEL;
use crate::transport::endpoint::Tuning;

/// What `--json` prints for a move.
const MOVE_JSON_HELP: &str = "Print one JSON object on stdout at the end, for scripts, and \
    nothing else there: counts, bytes, elapsed time, exit code, each failed and skipped entry \
    (and with --dry-run each planned file). ERROR lines still go to stderr. A usage error \
    (exit 2) prints no JSON. The fields are listed in docs/operations.md";

/// The flags of a move.
#[derive(Debug, Args)]
#[command(mut_arg("json", |json| json.help(MOVE_JSON_HELP)))]
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
    #[arg(long, value_name = "DURATION", env = "REALIZE_CONNECT_TIMEOUT",
          default_value_t = Tuning::default().connect_timeout.into(),
          value_parser = |value: &str| parse_duration(value).map(humantime::Duration::from))]
    pub connect_timeout: humantime::Duration,
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
    /// QUIC tuning of this side of the connection.
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Print errors only.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print the report as JSON (see `MOVE_JSON_HELP`).
    #[command(flatten)]
    pub output: JsonArgs,
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
/// `mover::selection`.
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

/// Reconnections in a row a move makes by default before giving up: with
/// the backoff's delays, about six minutes of trying.
pub const DEFAULT_RETRIES: u32 = 10;

/// Most `--retries` accepted: more is a typo (use --max-duration to bound
/// a run by time).
const MAX_RETRIES: u32 = 10_000;

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

fn parse_parallel(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n @ 1..=MAX_PARALLEL) => Ok(n),
        _ => Err(format!(
            "expected a number of files from 1 to {MAX_PARALLEL}"
        )),
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

#[cfg(test)]
mod tests {
    use super::{DEFAULT_STATS_INTERVAL, MAX_PARALLEL};
    use crate::cli::args::{help_of, RealizeArgs};
    use crate::protocol::DEFAULT_PORT;
    use clap::Parser;

    #[test]
    fn help_states_the_default_port_and_stats_interval() {
        let port = format!("(port {DEFAULT_PORT} if omitted)");
        for (subcommand, id) in [
            (None, "src_addr"),
            (None, "dst_addr"),
            (Some("bench"), "address"),
        ] {
            let help = help_of(subcommand, id);
            assert!(help.contains(&port), "{help}");
        }
        let every = format!("Default: every {}s", DEFAULT_STATS_INTERVAL.as_secs());
        let help = help_of(None, "stats");
        assert!(help.contains(&every), "{help}");
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
        assert!(parse(&(MAX_PARALLEL + 1).to_string()).is_err());
        assert!(parse(&MAX_PARALLEL.to_string()).is_ok());
        assert_eq!(parse("8").unwrap().transfer.parallel, 8);
    }
}
