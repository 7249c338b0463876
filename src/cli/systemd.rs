//! What the daemon does for systemd: tell it when it is ready and when it
//! stops (`Type=notify`), and write log lines the journal files under their
//! level, so that `journalctl -p warning` shows the warnings.

use std::fmt;

use sd_notify::NotifyState;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Tells systemd the daemon serves on `address` (does nothing unless
/// systemd started it with `NOTIFY_SOCKET`).
pub(super) fn notify_ready(address: &str) {
    let status = format!("listening on {address}");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd the daemon is shutting down.
pub(super) fn notify_stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd through NOTIFY_SOCKET: {e}");
    }
}

/// Whether stderr is the journal stream systemd connected this process to:
/// `JOURNAL_STREAM` names its device and inode (`DEV:INODE`), which a
/// redirection of stderr elsewhere no longer matches.
pub(super) fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    stream.to_str() == Some(&format!("{}:{}", stat.st_dev, stat.st_ino))
}

/// Prefix of a line the journal files at `level`: the syslog priority
/// between angle brackets, which journald reads off each line it is given.
pub(super) fn level_prefix(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// The text format, each line led by its [`level_prefix`] and without a
/// timestamp (the journal stamps each entry).
pub(super) struct JournalLines {
    text: Format<Full, ()>,
}

impl Default for JournalLines {
    fn default() -> Self {
        Self {
            text: tracing_subscriber::fmt::format().without_time(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str(level_prefix(*event.metadata().level()))?;
        self.text.format_event(context, writer, event)
    }
}
