//! What the user sees: progress bars on a terminal, plain lines otherwise.
//!
//! Each file in flight has a line
//! `[{file}/{total}] {prefix:<9} {dir-id}/{path} [{bar}]`, the overall line
//! shows files, bytes, rate and ETA. `Moved` lines go to stdout, `ERROR`
//! lines to stderr, both with the bars suspended so nothing is garbled.
//! Without a terminal there are no bars and no escape codes: one line per
//! finished file, and a [`stats`] line on stderr now and then. With
//! `--json`, stdout holds only the [`report`] printed at the end.

pub mod report;
mod stats;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use console::style;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use self::report::Records;
use super::args::{MoveArgs, DEFAULT_STATS_INTERVAL};
use crate::model::{DirectoryId, RelPath, Skipped};
use crate::mover::{FileProgress, LeftOut, MoveFileError, MoveSummary, Plan, Progress};

/// How much to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Moved files, errors and the summary.
    Normal,
    /// Also skipped entries.
    Verbose,
}

/// What a move's display shows, from its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How much to print.
    pub verbosity: Verbosity,
    /// Whether the run is a dry run.
    pub dry_run: bool,
    /// `--json`: nothing on stdout but the report at the end; errors still
    /// go to stderr.
    pub json: bool,
    /// How often to print a stats line on stderr, if at all.
    pub stats: Option<Duration>,
}

impl Settings {
    /// The settings `args` ask for. Stats lines come every `--stats`, or by
    /// default every 30 s when stderr is not a terminal; never in a dry run
    /// (nothing is sent) nor, by default, in a quiet one.
    pub fn new(args: &MoveArgs) -> Self {
        let verbosity = match (args.quiet, args.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            _ => Verbosity::Verbose,
        };
        let unwatched = !console::Term::stderr().is_term() && verbosity != Verbosity::Quiet;
        let stats = match args.stats {
            Some(every) => Some(every).filter(|every| !every.is_zero()),
            None => unwatched.then_some(DEFAULT_STATS_INTERVAL),
        };
        Self {
            verbosity,
            dry_run: args.dry_run,
            json: args.output.json,
            stats: stats.filter(|_| !args.dry_run),
        }
    }
}

/// The terminal display of a move, shared by every file's progress.
#[derive(Clone)]
pub struct Display {
    inner: Arc<Shared>,
}

struct Shared {
    dir: DirectoryId,
    settings: Settings,
    bars: Option<MultiProgress>,
    overall: ProgressBar,
    state: Mutex<Counts>,
    /// What the `--json` report lists, kept only with `--json`.
    records: Mutex<Records>,
    /// Prints the stats lines.
    stats: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(stats) = &self.stats {
            stats.abort();
        }
    }
}

#[derive(Default)]
struct Counts {
    total_files: usize,
    started_files: usize,
    done_files: usize,
}

impl Display {
    /// A display for moving `dir`, or for a dry run of it; bars only if
    /// stdout is a terminal, the run is real, not quiet and not `--json`.
    /// Must be made inside the runtime, which prints the stats lines.
    pub fn new(dir: DirectoryId, settings: Settings) -> Self {
        let terminal = console::Term::stdout().is_term() && !settings.dry_run && !settings.json;
        let bars = (terminal && settings.verbosity != Verbosity::Quiet)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10)));
        let overall = match &bars {
            Some(bars) => {
                let bar = bars.add(ProgressBar::new(0));
                bar.set_style(overall_style());
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
            None => ProgressBar::hidden(),
        };
        let inner = Arc::new_cyclic(|display| Shared {
            dir,
            settings,
            bars,
            overall,
            state: Mutex::new(Counts::default()),
            records: Mutex::new(Records::default()),
            stats: settings
                .stats
                .map(|every| stats::spawn(display.clone(), every)),
            started: Instant::now(),
        });
        Self { inner }
    }

    /// A new attempt starts: the report lists the failures and skipped
    /// entries of the last attempt only, and the files moved by every
    /// attempt, as the totals count them.
    pub fn start_attempt(&self) {
        self.records().next_attempt();
    }

    /// Stops the stats lines and prints the final summary line (not in
    /// quiet mode nor with `--json`).
    pub fn finish(&self, summary: &MoveSummary) {
        if let Some(stats) = &self.inner.stats {
            stats.abort();
        }
        self.inner.overall.finish_and_clear();
        if self.inner.settings.verbosity == Verbosity::Quiet || self.inner.settings.json {
            return;
        }
        if self.inner.settings.dry_run {
            return println!("{}", dry_run_summary(summary));
        }
        let elapsed = self.inner.started.elapsed();
        let rate = summary.bytes_sent as f64 / elapsed.as_secs_f64().max(1e-3);
        let stopped = if summary.interrupted + summary.not_started > 0 {
            format!(
                ", {} interrupted, {} not started",
                summary.interrupted, summary.not_started
            )
        } else {
            String::new()
        };
        let replaced = match summary.replaced {
            0 => String::new(),
            n => format!(", {n} replaced"),
        };
        println!(
            "{} moved, {} failed, {} skipped{}{replaced}{stopped}; {} sent in {:.1}s ({}/s)",
            summary.moved,
            summary.failed,
            summary.skipped,
            left_out(summary),
            HumanBytes(summary.bytes_sent),
            elapsed.as_secs_f64(),
            HumanBytes(rate as u64),
        );
    }

    /// Whether entries left at the source are listed: with -v, and in a dry
    /// run unless quiet.
    fn shows_skipped(&self) -> bool {
        match self.inner.settings.verbosity {
            Verbosity::Verbose => true,
            Verbosity::Normal => self.inner.settings.dry_run,
            Verbosity::Quiet => false,
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.inner.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps something for the `--json` report, if there is one.
    fn record(&self, keep: impl FnOnce(&mut Records)) {
        if self.inner.settings.json {
            keep(&mut self.records());
        }
    }

    /// Prints a line to stdout without garbling the bars; with `--json`,
    /// stdout is the report's alone.
    fn out(&self, line: String) {
        if self.inner.settings.json {
            return;
        }
        match &self.inner.bars {
            Some(bars) => bars.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// Prints a line to stderr without garbling the bars.
    fn err(&self, line: String) {
        match &self.inner.bars {
            Some(bars) => bars.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn file_done(&self) {
        let mut counts = self.counts();
        counts.done_files += 1;
        self.inner.overall.set_message(format!(
            "{}/{} files",
            counts.done_files, counts.total_files
        ));
    }
}

/// The files the selection left out, for a summary line: empty when none.
fn left_out(summary: &MoveSummary) -> String {
    let mut counts = String::new();
    if summary.excluded > 0 {
        counts.push_str(&format!(", {} excluded", summary.excluded));
    }
    if summary.too_recent > 0 {
        counts.push_str(&format!(", {} not old enough", summary.too_recent));
    }
    counts
}

/// The last line of a dry run.
fn dry_run_summary(summary: &MoveSummary) -> String {
    let mut details = Vec::new();
    if summary.replaced > 0 {
        details.push(format!("{} replacing", summary.replaced));
    }
    if summary.resumed > 0 {
        details.push(format!("{} resuming", summary.resumed));
    }
    let details = match details.is_empty() {
        true => String::new(),
        false => format!(" ({})", details.join(", ")),
    };
    format!(
        "dry run: {} would move{details}, {} failed, {} skipped{}; {} to send; nothing was changed",
        summary.moved,
        summary.failed,
        summary.skipped,
        left_out(summary),
        HumanBytes(summary.bytes_sent),
    )
}

fn overall_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.green} {msg} {bytes}/{total_bytes} [{bar:30.green/white}] {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

fn file_style(index: usize, total: usize) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "[{index}/{total}] {{prefix:<9.cyan.bold}} {{msg}} [{{bar:40.cyan/blue}}] {{bytes}}/{{total_bytes}}"
    ))
    .expect("valid template")
    .progress_chars("=> ")
}

impl Progress for Display {
    fn set_length(&mut self, total_files: usize, total_bytes: u64) {
        // Called again by each retry: its numbering starts over.
        *self.counts() = Counts {
            total_files,
            ..Counts::default()
        };
        self.inner.overall.set_position(0);
        self.inner.overall.set_length(total_bytes);
        self.inner
            .overall
            .set_message(format!("0/{total_files} files"));
    }

    fn skipped(&mut self, entry: &Skipped) {
        self.record(|records| records.skipped(entry));
        if entry.reason.leaves_data_behind() {
            let prefix = format!("{:<9}", "ERROR");
            return self.err(format!(
                "{} {}/{}: {}; what is under it stays at the source",
                style(prefix).for_stderr().red().bold(),
                self.inner.dir,
                entry.path,
                entry.reason
            ));
        }
        if self.shows_skipped() {
            let prefix = format!("{:<9}", "Skipped");
            self.out(format!(
                "{} {}/{}: {}",
                style(prefix).yellow(),
                self.inner.dir,
                entry.path,
                entry.reason
            ));
        }
    }

    fn left_out(&mut self, path: &str, why: LeftOut) {
        if !self.shows_skipped() {
            return;
        }
        let (prefix, why) = match why {
            LeftOut::Excluded => ("Excluded", "matches an --exclude rule"),
            LeftOut::TooRecent => ("Too new", "modified less than --min-age ago"),
        };
        let prefix = style(format!("{prefix:<9}")).yellow();
        self.out(format!("{prefix} {}/{path}: {why}", self.inner.dir));
    }

    fn for_file(&mut self, path: &RelPath, bytes: u64) -> Box<dyn FileProgress> {
        let (index, total) = {
            let mut counts = self.counts();
            counts.started_files += 1;
            (counts.started_files, counts.total_files)
        };
        let bar = match &self.inner.bars {
            Some(bars) => {
                let bar = bars.insert_before(&self.inner.overall, ProgressBar::new(bytes));
                bar.set_style(file_style(index, total));
                bar.set_message(format!("{}/{path}", self.inner.dir));
                bar
            }
            None => ProgressBar::hidden(),
        };
        Box::new(FileLine {
            display: self.clone(),
            label: format!("[{index}/{total}]"),
            path: path.clone(),
            bar,
            size: bytes,
            sent: 0,
            replaced: false,
        })
    }

    fn error(&mut self, err: &MoveFileError) {
        let prefix = format!("{:<9}", "ERROR");
        self.err(format!(
            "{} {}: {err}",
            style(prefix).for_stderr().red().bold(),
            self.inner.dir
        ));
    }

    fn warn(&mut self, message: &str) {
        if self.inner.settings.verbosity != Verbosity::Quiet {
            let prefix = format!("{:<9}", "Warning");
            let prefix = style(prefix).for_stderr().yellow().bold();
            self.err(format!("{prefix} {}: {message}", self.inner.dir));
        }
    }

    fn planned(&mut self, path: &RelPath, bytes: u64, plan: Plan) {
        self.record(|records| records.planned(path, bytes, plan));
        if self.inner.settings.verbosity == Verbosity::Quiet {
            return;
        }
        let size = HumanBytes(bytes);
        let what = match plan {
            Plan::AlreadyThere => {
                "already at the destination: only the source copy would be deleted".to_string()
            }
            Plan::Send { kept, replaces } => {
                let mut what = size.to_string();
                if kept > 0 {
                    what.push_str(&format!(", resuming: {} already there", HumanBytes(kept)));
                }
                if replaces {
                    what.push_str(", replacing a different file");
                }
                what
            }
        };
        let prefix = style("Would move").green().bold();
        self.out(format!("{prefix} {}/{path} ({what})", self.inner.dir));
    }

    fn plan_failed(&mut self, path: &RelPath, err: &MoveFileError) {
        self.record(|records| records.failed(path, err));
        let prefix = format!("{:<9}", "ERROR");
        self.err(format!(
            "{} {}/{path}: {err}",
            style(prefix).for_stderr().red().bold(),
            self.inner.dir
        ));
    }
}

/// One file's line.
struct FileLine {
    display: Display,
    label: String,
    path: RelPath,
    bar: ProgressBar,
    /// The file's size.
    size: u64,
    /// Bytes of it that crossed to the destination.
    sent: u64,
    /// Whether it replaces a different file at the destination.
    replaced: bool,
}

impl FileLine {
    fn stage(&self, prefix: &'static str) {
        self.bar.set_prefix(prefix);
    }
}

impl FileProgress for FileLine {
    fn verifying(&mut self) {
        self.stage("Checking");
    }

    fn resuming(&mut self, kept: u64) {
        self.stage("Resuming");
        self.bar.set_position(kept);
        self.display.inner.overall.inc(kept);
    }

    fn replacing(&mut self) {
        self.replaced = true;
    }

    fn moving(&mut self) {
        self.stage("Copying");
    }

    fn inc(&mut self, bytes: u64) {
        self.sent += bytes;
        self.bar.inc(bytes);
        self.display.inner.overall.inc(bytes);
    }

    fn deleting(&mut self) {
        self.stage("Deleting");
    }

    fn success(&mut self) {
        self.bar.finish_and_clear();
        self.display.file_done();
        self.display
            .record(|records| records.moved(&self.path, self.size, self.sent));
        if self.display.inner.settings.verbosity != Verbosity::Quiet {
            let prefix = format!("{:<9}", "Moved");
            let dir = &self.display.inner.dir;
            let mut line = format!(
                "{} {} {dir}/{}",
                self.label,
                style(prefix).green().bold(),
                self.path
            );
            if self.replaced {
                line.push_str(" (replaced a different file)");
            }
            if self.display.inner.settings.verbosity == Verbosity::Verbose {
                let details = format!(
                    " ({}, {} sent)",
                    HumanBytes(self.size),
                    HumanBytes(self.sent)
                );
                line.push_str(&details);
            }
            self.display.out(line);
        }
    }

    fn error(&mut self, err: &MoveFileError) {
        self.bar.finish_and_clear();
        if matches!(err, MoveFileError::Interrupted) {
            if self.display.inner.settings.verbosity != Verbosity::Quiet {
                let prefix = style(format!("{:<9}", "Stopped")).yellow().bold();
                let dir = &self.display.inner.dir;
                let line = format!("{} {prefix} {dir}/{}: {err}", self.label, self.path);
                self.display.out(line);
            }
            return;
        }
        self.display.file_done();
        self.display
            .record(|records| records.failed(&self.path, err));
        let prefix = format!("{:<9}", "ERROR");
        let dir = &self.display.inner.dir;
        let line = format!(
            "{} {} {dir}/{}: {err}",
            self.label,
            style(prefix).for_stderr().red().bold(),
            self.path
        );
        self.display.err(line);
    }
}
