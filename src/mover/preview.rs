//! A dry run: what a move would do with each file, decided from both
//! listings exactly as a real move decides, without writing, deleting or
//! changing anything on either side.
//!
//! The only calls a dry run makes after listing are hashes of files both
//! sides hold at the same size, which a real move makes too to tell an
//! identical copy from a different file.

use futures::stream::{self, StreamExt};

use super::{AtDestination, MoveFileError, MoveSummary, Progress, Route};
use crate::model::FileEntry;

/// What a move would do with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The destination already holds the same content: the source copy
    /// would be deleted (and the destination's given the source's
    /// modification time and permissions), nothing sent.
    AlreadyThere,
    /// The file would be sent.
    Send {
        /// Bytes of a partial file at the destination that a resume would
        /// verify and keep (0 when none is resumed).
        kept: u64,
        /// Whether it would replace a different file at the destination.
        replaces: bool,
    },
}

impl Route<'_> {
    /// What moving `entry` would do, given what the destination holds.
    pub(super) async fn plan(
        &self,
        entry: &FileEntry,
        at_destination: AtDestination<'_>,
    ) -> Result<Plan, MoveFileError> {
        let existing = at_destination.complete;
        if let Some(existing) = existing {
            if existing.stamp.size == entry.stamp.size && self.same_content(&entry.path).await? {
                return Ok(Plan::AlreadyThere);
            }
        }
        let kept = match at_destination.partial {
            Some(partial) if partial.stamp.size <= entry.stamp.size => partial.stamp.size,
            _ => 0,
        };
        Ok(Plan::Send {
            kept,
            replaces: existing.is_some(),
        })
    }
}

/// Reports to `progress` what moving each of `files` would do, in path
/// order, and sums it up: `moved` counts the files a move would move,
/// `replaced` and `resumed` those it would replace or resume, `bytes_sent`
/// what it would send (at most: a resume re-sends the blocks that differ).
pub(super) async fn preview<'a>(
    route: &Route<'_>,
    files: Vec<FileEntry>,
    at_destination: impl Fn(&FileEntry) -> AtDestination<'a>,
    parallel: usize,
    summary: &mut MoveSummary,
    progress: &mut dyn Progress,
) {
    let plans = stream::iter(files)
        .map(|entry| {
            let at = at_destination(&entry);
            async move {
                let plan = route.plan(&entry, at).await;
                (entry, plan)
            }
        })
        .buffered(parallel.max(1));
    futures::pin_mut!(plans);
    while let Some((entry, plan)) = plans.next().await {
        match plan {
            Ok(plan) => {
                tracing::info!(dir = %route.source.dir, path = %entry.path, ?plan, "dry run");
                summary.moved += 1;
                if let Plan::Send { kept, replaces } = plan {
                    summary.replaced += usize::from(replaces);
                    summary.resumed += usize::from(kept > 0);
                    summary.bytes_sent += entry.stamp.size - kept;
                }
                progress.planned(&entry.path, entry.stamp.size, plan);
            }
            Err(err) => {
                tracing::error!(dir = %route.source.dir, path = %entry.path, "{err}");
                summary.failed += 1;
                summary.retryable += usize::from(err.is_retryable());
                progress.plan_failed(&entry.path, &err);
            }
        }
    }
}
