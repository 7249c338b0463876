//! The `--json` report: one object on stdout at the end of a run, for
//! scripts. Its fields are listed in `docs/operations.md`; a change that
//! would break a reader raises [`VERSION`].

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::Display;
use crate::model::{RelPath, Skipped};
use crate::mover::{MoveFileError, MoveSummary, Plan};

/// The layout version of the report, its `version` field.
pub const VERSION: u32 = 1;

/// An entry of the source that was not moved, and why.
#[derive(Debug, Clone, Serialize)]
struct Entry {
    /// Relative to the directory's root.
    path: String,
    /// A stable word a script can test.
    kind: Value,
    /// What a person reads.
    message: String,
}

/// A file a dry run would move, and how.
#[derive(Debug, Clone, Serialize)]
struct Planned {
    /// Relative to the directory's root.
    path: String,
    /// The file's size.
    size: u64,
    /// `send`, or `already_there` when only the source copy would be deleted.
    action: &'static str,
    /// Bytes of a partial file at the destination a resume would keep.
    kept: u64,
    /// Whether it would replace a different file at the destination.
    replaces: bool,
}

/// A file moved: its source copy is deleted.
#[derive(Debug, Clone, Serialize)]
struct MovedFile {
    /// Relative to the directory's root.
    path: String,
    /// The file's size.
    size: u64,
    /// Bytes of it sent by the attempt that moved it: 0 when the
    /// destination already held it, less than `size` when it resumed.
    sent: u64,
}

/// What the display keeps for the report: the files moved by every
/// attempt, and of the last attempt the entries that failed or were
/// skipped and a dry run's plans.
#[derive(Debug, Default)]
pub(super) struct Records {
    moved: Vec<MovedFile>,
    failures: Vec<Entry>,
    skipped: Vec<Entry>,
    planned: Vec<Planned>,
}

impl Records {
    /// A new attempt starts: only the files moved stay, as the totals add
    /// them up.
    pub(super) fn next_attempt(&mut self) {
        *self = Records {
            moved: std::mem::take(&mut self.moved),
            ..Records::default()
        };
    }

    /// A file moved, `sent` bytes of it sent.
    pub(super) fn moved(&mut self, path: &RelPath, size: u64, sent: u64) {
        self.moved.push(MovedFile {
            path: path.to_string(),
            size,
            sent,
        });
    }

    /// A file that failed; its source copy is kept.
    pub(super) fn failed(&mut self, path: &RelPath, err: &MoveFileError) {
        self.failures.push(Entry {
            path: path.to_string(),
            kind: Value::from(err.kind_label()),
            message: err.to_string(),
        });
    }

    /// A source entry not moved; one that leaves data behind (an
    /// unreadable directory) is a failure too, as the counts have it.
    pub(super) fn skipped(&mut self, entry: &Skipped) {
        let record = Entry {
            path: entry.path.clone(),
            kind: serde_json::to_value(entry.reason).unwrap_or(Value::Null),
            message: entry.reason.to_string(),
        };
        if entry.reason.leaves_data_behind() {
            self.failures.push(record.clone());
        }
        self.skipped.push(record);
    }

    /// What a dry run would do with a file.
    pub(super) fn planned(&mut self, path: &RelPath, size: u64, plan: Plan) {
        let (action, kept, replaces) = match plan {
            Plan::AlreadyThere => ("already_there", 0, false),
            Plan::Send { kept, replaces } => ("send", kept, replaces),
        };
        self.planned.push(Planned {
            path: path.to_string(),
            size,
            action,
            kept,
            replaces,
        });
    }
}

/// How a run ended, and what it was asked, for the report.
pub struct Report<'a> {
    /// The code the command exits with.
    pub exit_code: u8,
    /// Why the run stopped, if it failed as a whole.
    pub error: Option<String>,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// The source as the command line gave it.
    pub source: String,
    /// The destination as the command line gave it.
    pub destination: String,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// The run's totals.
    pub summary: &'a MoveSummary,
    /// The display of the run, if it got as far as connecting.
    pub display: Option<&'a Display>,
}

/// The object printed, field by field as documented.
#[derive(Serialize)]
struct Layout<'a> {
    version: u32,
    exit_code: u8,
    error: Option<&'a str>,
    dry_run: bool,
    source: &'a str,
    destination: &'a str,
    directory: Option<String>,
    counts: Counts,
    bytes_sent: u64,
    elapsed_seconds: f64,
    moved: Vec<&'a MovedFile>,
    failures: &'a [Entry],
    skipped: &'a [Entry],
    planned: &'a [Planned],
}

/// The run's counts, as the summary line gives them.
#[derive(Serialize)]
struct Counts {
    moved: usize,
    replaced: usize,
    resumed: usize,
    failed: usize,
    skipped: usize,
    excluded: usize,
    not_old_enough: usize,
    interrupted: usize,
    not_started: usize,
}

impl Counts {
    fn of(summary: &MoveSummary) -> Self {
        Self {
            moved: summary.moved,
            replaced: summary.replaced,
            resumed: summary.resumed,
            failed: summary.failed,
            skipped: summary.skipped,
            excluded: summary.excluded,
            not_old_enough: summary.too_recent,
            interrupted: summary.interrupted,
            not_started: summary.not_started,
        }
    }
}

impl Report<'_> {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        let none = Records::default();
        let records = self.display.map(Display::records);
        let records = records.as_deref().unwrap_or(&none);
        let layout = Layout {
            version: VERSION,
            exit_code: self.exit_code,
            error: self.error.as_deref(),
            dry_run: self.dry_run,
            source: &self.source,
            destination: &self.destination,
            directory: self.display.map(|d| d.inner.dir.to_string()),
            counts: Counts::of(self.summary),
            bytes_sent: self.summary.bytes_sent,
            elapsed_seconds: self.elapsed.as_secs_f64(),
            moved: in_path_order(&records.moved),
            failures: &records.failures,
            skipped: &records.skipped,
            planned: &records.planned,
        };
        serde_json::to_string(&layout).expect("the report serializes")
    }
}

/// The files moved, in path order (they finish in any order).
fn in_path_order(moved: &[MovedFile]) -> Vec<&MovedFile> {
    let mut sorted: Vec<&MovedFile> = moved.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    sorted
}
