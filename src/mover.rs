//! The move algorithm: list both sides, then move every source file —
//! copy, verify, make durable, and only then delete the source copy.
//!
//! It sees the endpoints only as [`Service`]s, so the same code moves
//! local→local, local→remote, remote→local and remote→remote (where the data
//! relays through this process), and it is tested in process without sockets.
//! Files move `parallel` at a time; a failure of one file is logged, counted
//! and reported, and the others go on.

mod error;
mod preview;
mod progress;
pub(crate) mod selection;
mod stop;
mod subtree;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use futures::stream::{self, StreamExt};

pub(crate) use self::error::{MoveFileError, Side};
pub(crate) use self::preview::Plan;
#[cfg(test)]
use self::progress::NoProgress;
pub(crate) use self::progress::{FileProgress, Progress};
pub(crate) use self::selection::{LeftOut, Selection};
pub(crate) use self::stop::{stop_pair, StopHandle, StopReason, StopSignal};
pub(crate) use self::subtree::existing_under;
use crate::model::{
    block_size_for, ByteRange, Delta, DirectoryId, FileEntry, FileState, RelPath, SkipReason,
    Skipped, WritePlan,
};
use crate::service::{Listing, ReadEvent, Service};
use crate::telemetry;
use crate::throttle::Throttle;

/// How a move runs.
#[derive(Debug, Clone)]
pub(crate) struct MoveOptions {
    /// Files in flight at once.
    pub parallel: usize,
    /// Stops the move early (time limit, Ctrl-C).
    pub stop: StopSignal,
    /// Paces the file bytes written to the destination, all files together.
    pub up: Throttle,
    /// Paces the file bytes read from the source, all files together (for a
    /// remote source the daemon paces itself instead).
    pub down: Throttle,
    /// Report what the move would do, file by file, and change nothing on
    /// either side.
    pub dry_run: bool,
    /// Which source files the move takes.
    pub selection: Selection,
}

impl Default for MoveOptions {
    fn default() -> Self {
        Self {
            parallel: DEFAULT_PARALLEL,
            stop: StopSignal::never(),
            up: Throttle::default(),
            down: Throttle::default(),
            dry_run: false,
            selection: Selection::default(),
        }
    }
}

/// Files in flight by default (see `docs/operations.md` for the measurement).
pub(crate) const DEFAULT_PARALLEL: usize = 128;

/// Most files in flight (`--parallel`). A daemon serves at most its
/// `streams_per_connection` of them at once, the rest wait in the command;
/// this bound only keeps what the command itself holds per file (a task,
/// its buffers, a blocking thread for a local large file) finite.
pub(crate) const MAX_PARALLEL: usize = 512;

/// What a move did; for a dry run, what it would do (see [`MoveOptions::dry_run`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveSummary {
    /// Files now at the destination whose source copy was deleted.
    pub moved: usize,
    /// Files that failed; their source copies are kept.
    pub failed: usize,
    /// Source entries not moved (symlinks, special files, empty directories).
    pub skipped: usize,
    /// Source files an `--exclude` rule left out.
    pub excluded: usize,
    /// Source files left out because they were modified less than
    /// `--min-age` ago.
    pub too_recent: usize,
    /// Of the moved files, those that replaced a different file the
    /// destination held at the same name.
    pub replaced: usize,
    /// Of the moved files, those that resumed a partial file the destination
    /// held.
    pub resumed: usize,
    /// Files in flight when the move was stopped; their partial files are
    /// kept and the next run resumes them.
    pub interrupted: usize,
    /// Files not started because the move was stopped.
    pub not_started: usize,
    /// Of the failed files, those that failed because a connection was lost:
    /// reconnecting and running again may move them.
    pub retryable: usize,
    /// File bytes sent to the destination (payload only), including those of
    /// files that failed or were interrupted.
    pub bytes_sent: u64,
}

/// One side of a move: a service and the directory of it that files leave
/// or reach. The two sides of a move may name different directories; a file
/// keeps its path relative to the directory's root.
#[derive(Clone, Copy)]
pub(crate) struct Endpoint<'a> {
    /// Local, or a connection to a daemon.
    pub service: &'a dyn Service,
    /// The directory's id on that service.
    pub dir: &'a DirectoryId,
}

/// Moves every regular file of the source's directory (or only those at or
/// under `under`, a file or subtree of it) to the destination's directory.
///
/// Returns an error only if the move could not start (a listing failed, or
/// `under` holds nothing); per-file failures are counted in the summary,
/// logged with `tracing::error!` and reported to `progress`.
pub(crate) async fn move_files(
    source: Endpoint<'_>,
    destination: Endpoint<'_>,
    under: Option<&RelPath>,
    options: &MoveOptions,
    progress: &mut dyn Progress,
) -> Result<MoveSummary, MoveFileError> {
    let listings = list_both(source, Some(destination), under)
        .await
        .map_err(|err| cannot_list(source.dir, err, progress))?;
    move_listed(source, destination, listings, options, progress).await
}

/// What both sides hold before a move: the source's listing, then the
/// destination's.
pub(crate) type Listings = (Listing, Listing);

/// Lists both sides at once, keeping only what lies at or under `under` if
/// it is given: a file outside it is neither moved nor deleted nor
/// reported, and the source must hold something there. A `destination` of
/// `None` does not exist yet and holds nothing.
pub(crate) async fn list_both(
    source: Endpoint<'_>,
    destination: Option<Endpoint<'_>>,
    under: Option<&RelPath>,
) -> Result<Listings, MoveFileError> {
    let destination_listing = async {
        match destination {
            Some(destination) => destination.service.list(destination.dir).await,
            None => Ok(Listing::default()),
        }
    };
    let (src_listing, dst_listing) =
        tokio::join!(source.service.list(source.dir), destination_listing);
    let listings = (
        src_listing.map_err(MoveFileError::at(Side::Source))?,
        dst_listing.map_err(MoveFileError::at(Side::Destination))?,
    );
    match under {
        Some(under) => subtree::restrict(listings, under),
        None => Ok(listings),
    }
}

/// Logs and reports `err`, which kept the move of `dir` from starting (see
/// [`list_both`]), and gives it back.
pub(crate) fn cannot_list(
    dir: &DirectoryId,
    err: MoveFileError,
    progress: &mut dyn Progress,
) -> MoveFileError {
    tracing::error!(dir = %dir, "cannot list: {err}");
    progress.error(&err);
    err
}

/// [`move_files`] once [`list_both`] has answered: a caller with checks of
/// its own to make before a move (each a round trip to a daemon) lists
/// while it checks, and starts the move a round trip sooner. It reports a
/// listing that failed with [`cannot_list`].
pub(crate) async fn move_listed(
    source: Endpoint<'_>,
    destination: Endpoint<'_>,
    listings: Listings,
    options: &MoveOptions,
    progress: &mut dyn Progress,
) -> Result<MoveSummary, MoveFileError> {
    let dir = source.dir;
    let (src_listing, dst_listing) = listings;
    let held = DestinationFiles::sort(dst_listing);
    let (files, mut summary) = choose_sources(dir, src_listing, &options.selection, progress);
    let sent_counter = AtomicU64::new(0);
    let route = Route {
        source,
        destination,
        sent_total: &sent_counter,
        up: &options.up,
        down: &options.down,
    };
    if options.dry_run {
        let at_destination = |entry: &FileEntry| held.of(entry);
        preview::preview(
            &route,
            files,
            at_destination,
            options.parallel,
            &mut summary,
            progress,
        )
        .await;
        return Ok(summary);
    }
    progress.set_length(files.len(), files.iter().map(|f| f.stamp.size).sum());
    move_each(&route, files, &held, options, &mut summary, progress).await;
    summary.bytes_sent = sent_counter.load(Ordering::Relaxed);
    Ok(summary)
}

/// The destination's files by path: final ones, and partial files left by
/// interrupted transfers.
struct DestinationFiles {
    complete: HashMap<RelPath, FileEntry>,
    partial: HashMap<RelPath, FileEntry>,
}

impl DestinationFiles {
    fn sort(listing: Listing) -> Self {
        let mut held = Self {
            complete: HashMap::new(),
            partial: HashMap::new(),
        };
        for file in listing.files {
            let by_state = match file.state {
                FileState::Final => &mut held.complete,
                FileState::Partial => &mut held.partial,
            };
            by_state.insert(file.path.clone(), file);
        }
        held
    }

    /// What the destination holds at `entry`'s path.
    fn of(&self, entry: &FileEntry) -> AtDestination<'_> {
        AtDestination {
            complete: self.complete.get(&entry.path),
            partial: self.partial.get(&entry.path),
        }
    }
}

/// The source files to move: the selected final files. Reports (and counts
/// in the summary it starts) those left out, those skipped, partial files
/// at the source, and names that clash by case.
fn choose_sources(
    dir: &DirectoryId,
    listing: Listing,
    selection: &Selection,
    progress: &mut dyn Progress,
) -> (Vec<FileEntry>, MoveSummary) {
    let (listing, left_out) = selection.apply(listing, SystemTime::now());
    let (files, partials_at_source): (Vec<FileEntry>, Vec<FileEntry>) = listing
        .files
        .into_iter()
        .partition(|f| f.state == FileState::Final);
    let mut skipped = listing.skipped;
    skipped.extend(partials_at_source.into_iter().map(|f| Skipped {
        path: f.path.to_string(),
        reason: SkipReason::PartialFile,
    }));
    let mut summary = MoveSummary {
        skipped: skipped.len(),
        failed: skipped
            .iter()
            .filter(|s| s.reason.leaves_data_behind())
            .count(),
        ..MoveSummary::default()
    };
    for (path, why) in &left_out {
        tracing::info!(dir = %dir, path = %path, ?why, "left out");
        summary.excluded += usize::from(*why == LeftOut::Excluded);
        summary.too_recent += usize::from(*why == LeftOut::TooRecent);
        progress.left_out(path, *why);
    }
    for skipped in &skipped {
        tracing::info!(dir = %dir, path = %skipped.path, reason = %skipped.reason, "skipped");
        progress.skipped(skipped);
    }
    for (a, b) in case_clashes(&files) {
        let message = format!(
            "{a} and {b} differ only by case: a destination that ignores case (FAT, exFAT, \
             SMB, casefold ext4) holds only one of them, and the other is then kept at the source"
        );
        tracing::warn!(dir = %dir, "{message}");
        progress.warn(&message);
    }
    (files, summary)
}

/// Moves `files` along `route`, `options.parallel` at a time, until done or
/// stopped, counting each outcome in `summary`.
async fn move_each(
    route: &Route<'_>,
    files: Vec<FileEntry>,
    held: &DestinationFiles,
    options: &MoveOptions,
    summary: &mut MoveSummary,
    progress: &mut dyn Progress,
) {
    let progress = Mutex::new(progress);
    let job = |entry: FileEntry| {
        let mut file_progress = progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .for_file(&entry.path, entry.stamp.size);
        let at_destination = held.of(&entry);
        async move {
            let result = tokio::select! {
                result = route.move_file(&entry, at_destination, file_progress.as_mut()) => result,
                _ = options.stop.stopped() => Err(MoveFileError::Interrupted),
            };
            (entry, result, file_progress)
        }
    };
    let total = files.len();
    let stop = &options.stop;
    let mut started = 0;
    let mut running = stream::iter(files)
        .take_while(|_| std::future::ready(stop.reason().is_none()))
        .inspect(|_| started += 1)
        .map(job)
        .buffer_unordered(options.parallel.max(1));
    let dir = route.source.dir;
    while let Some((entry, result, mut file_progress)) = running.next().await {
        count_outcome(dir, &entry, result, summary, file_progress.as_mut());
    }
    drop(running);
    summary.not_started = total - started;
    if let Some(reason) = stop.reason() {
        tracing::warn!(
            dir = %dir,
            ?reason,
            interrupted = summary.interrupted,
            not_started = summary.not_started,
            "move stopped early"
        );
    }
}

/// Logs, counts and shows how the move of `entry` ended.
fn count_outcome(
    dir: &DirectoryId,
    entry: &FileEntry,
    result: Result<MoveOutcome, MoveFileError>,
    summary: &mut MoveSummary,
    file_progress: &mut dyn FileProgress,
) {
    match result {
        Err(MoveFileError::Interrupted) => {
            summary.interrupted += 1;
            tracing::warn!(dir = %dir, path = %entry.path, "interrupted; the partial file is kept for the next run");
            file_progress.error(&MoveFileError::Interrupted);
        }
        Ok(MoveOutcome {
            sent,
            method,
            replaced,
        }) => {
            tracing::info!(dir = %dir, path = %entry.path, size = entry.stamp.size, bytes_sent = sent, method, replaced, "moved");
            metrics::counter!(telemetry::FILES_MOVED, "method" => method).increment(1);
            summary.moved += 1;
            summary.replaced += usize::from(replaced);
            summary.resumed += usize::from(method == "resume");
            file_progress.success();
        }
        Err(err) => {
            metrics::counter!(telemetry::FILES_FAILED, "kind" => err.kind_label()).increment(1);
            summary.failed += 1;
            summary.retryable += usize::from(err.is_retryable());
            tracing::error!(dir = %dir, path = %entry.path, "{err}");
            file_progress.error(&err);
        }
    }
}

/// Pairs of source paths that differ only by case.
fn case_clashes(files: &[FileEntry]) -> Vec<(&RelPath, &RelPath)> {
    let mut seen: HashMap<String, &RelPath> = HashMap::new();
    let mut clashes = Vec::new();
    for file in files {
        if let Some(first) = seen.insert(file.path.as_str().to_lowercase(), &file.path) {
            clashes.push((first, &file.path));
        }
    }
    clashes
}

/// How one file was moved.
struct MoveOutcome {
    /// File bytes sent.
    sent: u64,
    /// `copy`, `resume` or `existing` (already at the destination).
    method: &'static str,
    /// Whether it replaced a different file at the destination.
    replaced: bool,
}

/// What the destination already holds of one file.
#[derive(Clone, Copy)]
struct AtDestination<'a> {
    /// A final file at the same path.
    complete: Option<&'a FileEntry>,
    /// A partial file left by an interrupted transfer.
    partial: Option<&'a FileEntry>,
}

/// The route of a move: its two endpoints, and what paces it.
#[derive(Clone, Copy)]
struct Route<'a> {
    source: Endpoint<'a>,
    destination: Endpoint<'a>,
    /// File bytes sent by every file of the move, finished or not.
    sent_total: &'a AtomicU64,
    up: &'a Throttle,
    down: &'a Throttle,
}

impl Route<'_> {
    /// Moves one file.
    async fn move_file(
        &self,
        entry: &FileEntry,
        at_destination: AtDestination<'_>,
        progress: &mut dyn FileProgress,
    ) -> Result<MoveOutcome, MoveFileError> {
        let existing = at_destination.complete;
        let already_there = match existing {
            Some(existing) if existing.stamp.size == entry.stamp.size => {
                progress.verifying();
                self.same_content(&entry.path).await?
            }
            _ => false,
        };
        let moved = if let (true, Some(existing)) = (already_there, existing) {
            tracing::debug!(dir = %self.source.dir, path = %entry.path, "destination already has it");
            self.adopt(entry, existing).await?;
            MoveOutcome {
                sent: 0,
                method: "existing",
                replaced: false,
            }
        } else {
            let delta = match at_destination.partial {
                Some(partial)
                    if partial.stamp.size > 0 && partial.stamp.size <= entry.stamp.size =>
                {
                    progress.resuming(partial.stamp.size);
                    self.plan_resume(entry, partial.stamp.size).await?
                }
                _ => Delta::full(),
            };
            let method = if delta.offset > 0 { "resume" } else { "copy" };
            let plan = WritePlan {
                size: entry.stamp.size,
                delta,
                replaces: existing.map(|e| e.stamp),
                attributes: entry.stamp.attributes(),
            };
            if existing.is_some() {
                progress.replacing();
            }
            let sent = self.copy(entry, &plan, progress).await?;
            MoveOutcome {
                sent,
                method,
                replaced: existing.is_some(),
            }
        };
        progress.deleting();
        self.source
            .service
            .delete(self.source.dir, &entry.path, entry.stamp)
            .await
            .map_err(MoveFileError::at(Side::Source))?;
        Ok(moved)
    }

    /// Gives the destination's copy `existing`, whose content is the
    /// source's, the source's attributes where they differ.
    async fn adopt(&self, entry: &FileEntry, existing: &FileEntry) -> Result<(), MoveFileError> {
        let wanted = entry.stamp.attributes().as_kept();
        if existing.stamp.attributes().same_time_and_mode(&wanted) {
            return Ok(());
        }
        self.destination
            .service
            .set_attributes(self.destination.dir, &entry.path, existing.stamp, wanted)
            .await
            .map_err(MoveFileError::at(Side::Destination))
    }

    /// Whether both sides hold the same content at `path`.
    async fn same_content(&self, path: &RelPath) -> Result<bool, MoveFileError> {
        let (src, dst) = tokio::join!(
            self.source.service.hash(self.source.dir, path),
            self.destination.service.hash(self.destination.dir, path)
        );
        let src = src.map_err(MoveFileError::at(Side::Source))?;
        let dst = dst.map_err(MoveFileError::at(Side::Destination))?;
        Ok(src == dst)
    }

    /// Compares the first `kept` bytes of the destination's partial file
    /// with the source block by block: the delta re-sends the blocks that
    /// differ, then everything after `kept`. Only hashes cross the wire.
    async fn plan_resume(&self, entry: &FileEntry, kept: u64) -> Result<Delta, MoveFileError> {
        let path = &entry.path;
        let block = block_size_for(entry.stamp.size);
        let (src, dst) = tokio::join!(
            self.source
                .service
                .block_hashes(self.source.dir, path, FileState::Final, block, kept),
            self.destination.service.block_hashes(
                self.destination.dir,
                path,
                FileState::Partial,
                block,
                kept
            )
        );
        let src = src.map_err(MoveFileError::at(Side::Source))?;
        let dst = match dst {
            Ok(dst) => dst,
            Err(err) => {
                tracing::warn!(dir = %self.source.dir, path = %path, "partial file unusable, copying anew: {err}");
                return Ok(Delta::full());
            }
        };
        let mut patches: Vec<ByteRange> = Vec::new();
        let differing = src
            .iter()
            .zip(&dst)
            .enumerate()
            .filter(|(_, (a, b))| a != b);
        for (index, _) in differing {
            let start = index as u64 * block;
            let len = block.min(kept - start);
            match patches.last_mut() {
                Some(last) if last.end() == start => last.len += len,
                _ => patches.push(ByteRange { start, len }),
            }
        }
        let resent: u64 = patches.iter().map(|p| p.len).sum();
        metrics::counter!(telemetry::BYTES_SAVED).increment(kept - resent);
        tracing::info!(dir = %self.source.dir, path = %path, kept, resent, "resuming from the partial file");
        Ok(Delta {
            patches,
            offset: kept,
        })
    }

    /// Streams the bytes `plan.delta` names into the destination's partial
    /// file, then has the destination verify the whole file and make it
    /// final. Returns the bytes sent.
    async fn copy(
        &self,
        entry: &FileEntry,
        plan: &WritePlan,
        progress: &mut dyn FileProgress,
    ) -> Result<u64, MoveFileError> {
        progress.moving();
        let path = &entry.path;
        let (reader, writer) = tokio::join!(
            self.source.service.read(self.source.dir, path, &plan.delta),
            self.destination
                .service
                .write(self.destination.dir, path, plan)
        );
        let mut reader = reader.map_err(MoveFileError::at(Side::Source))?;
        let mut writer = writer.map_err(MoveFileError::at(Side::Destination))?;
        if reader.stamp() != entry.stamp {
            return Err(MoveFileError::SourceChanged);
        }
        let mut sent = 0;
        let summary = loop {
            match reader
                .next()
                .await
                .map_err(MoveFileError::at(Side::Source))?
            {
                ReadEvent::Data(chunk) => {
                    for piece in self.down.pieces(chunk).flat_map(|p| self.up.pieces(p)) {
                        let len = piece.len();
                        self.down.wait(len).await;
                        self.up.wait(len).await;
                        writer
                            .write(piece)
                            .await
                            .map_err(MoveFileError::at(Side::Destination))?;
                        sent += len as u64;
                        self.sent_total.fetch_add(len as u64, Ordering::Relaxed);
                        metrics::counter!(telemetry::BYTES_MOVED).increment(len as u64);
                        progress.inc(len as u64);
                    }
                }
                ReadEvent::Done(summary) => break summary,
            }
        };
        if summary.stamp != entry.stamp {
            return Err(MoveFileError::SourceChanged);
        }
        progress.verifying();
        writer
            .finish(summary.hash)
            .await
            .map_err(MoveFileError::at(Side::Destination))?;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests;
