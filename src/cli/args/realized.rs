//! The flags of `realized`.

use std::path::PathBuf;

use clap::Parser;

use super::{LogFormat, TransportArgs};
use crate::cli::systemd;

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
    /// QUIC tuning of this side of the connection.
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
