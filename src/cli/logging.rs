//! Where log lines go and how they look, for both binaries.

use std::path::Path;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use super::args::LogFormat;
use super::systemd;
use super::CliError;

/// The level `realize` logs at: none on stderr unless `-v` asks, info in a
/// `--log-file`, more with each `-v`.
pub(super) fn level(verbose: u8, log_file: Option<&Path>) -> &'static str {
    match (verbose, log_file) {
        (0, None) => "off",
        (0 | 1, _) => "info",
        (2, _) => "debug",
        _ => "trace",
    }
}

/// Logs to `file`, or stderr, in `format`; `RUST_LOG` overrides `default`.
pub(super) fn init_logging(
    default: &str,
    format: LogFormat,
    file: Option<&Path>,
) -> Result<(), CliError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (writer, ansi) = match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| CliError::Usage(format!("--log-file {}: {e}", path.display())))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Journal => builder
            .with_ansi(false)
            .event_format(systemd::JournalLines::default())
            .init(),
    }
    Ok(())
}
