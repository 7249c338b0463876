//! `--stats`: a progress line on stderr every interval, for runs nobody
//! watches (cron, systemd, a pipe), where no bar is drawn.

use std::sync::Weak;
use std::time::Duration;

use console::style;
use indicatif::{HumanBytes, HumanDuration};
use tokio::task::JoinHandle;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::{Display, Shared};

/// Prints a stats line every `every` while the display lives; the first
/// one after `every`.
pub(super) fn spawn(display: Weak<Shared>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = display.upgrade() else {
                return;
            };
            let display = Display { inner };
            display.err(line(&display));
        }
    })
}

/// `Stats     photos: 3/10 files, 1.20 GiB/3.50 GiB, 30.50 MiB/s, ETA 40s`:
/// what the overall bar shows on a terminal.
fn line(display: &Display) -> String {
    let overall = &display.inner.overall;
    let (done, total) = {
        let counts = display.counts();
        (counts.done_files, counts.total_files)
    };
    let rate = overall.per_sec();
    let eta = match rate > 0.0 {
        true => format!("{:#}", HumanDuration(overall.eta())),
        false => "unknown".into(),
    };
    let prefix = style(format!("{:<9}", "Stats")).for_stderr().cyan();
    format!(
        "{prefix} {}: {done}/{total} files, {}/{}, {}/s, ETA {eta}",
        display.inner.dir,
        HumanBytes(overall.position()),
        HumanBytes(overall.length().unwrap_or(0)),
        HumanBytes(rate as u64),
    )
}
