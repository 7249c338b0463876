//! The move algorithm: list both sides, then move every source file —
//! copy, verify, make durable, and only then delete the source copy.
//!
//! It sees the endpoints only as [`Service`]s, so the same code moves
//! local→local, local→remote, remote→local and remote→remote (where the data
//! relays through this process), and it is tested in process without sockets.
//! Files move `parallel` at a time; a failure of one file is logged, counted
//! and reported, and the others go on.

mod error;
mod progress;

use std::collections::HashMap;
use std::sync::Mutex;

use futures::stream::{self, StreamExt};

pub use self::error::{MoveFileError, Side};
pub use self::progress::{FileProgress, NoProgress, Progress};
use crate::model::{DirectoryId, FileEntry, FileState, RelPath};
use crate::service::{ReadEvent, Service};

/// How a move runs.
#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// Files in flight at once.
    pub parallel: usize,
}

impl Default for MoveOptions {
    fn default() -> Self {
        Self {
            parallel: DEFAULT_PARALLEL,
        }
    }
}

/// Files in flight by default (see `docs/operations.md` for the measurement).
pub const DEFAULT_PARALLEL: usize = 32;

/// What a move did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveSummary {
    /// Files now at the destination whose source copy was deleted.
    pub moved: usize,
    /// Files that failed; their source copies are kept.
    pub failed: usize,
    /// Source entries not moved (symlinks, special files, empty directories).
    pub skipped: usize,
    /// File bytes sent to the destination (payload only).
    pub bytes_sent: u64,
}

/// Moves every regular file of `dir` from `source` to `destination`.
///
/// Returns an error only if the move could not start (a listing failed);
/// per-file failures are counted in the summary, logged with
/// `tracing::error!` and reported to `progress`.
pub async fn move_files(
    source: &dyn Service,
    destination: &dyn Service,
    dir: &DirectoryId,
    options: &MoveOptions,
    progress: &mut dyn Progress,
) -> Result<MoveSummary, MoveFileError> {
    let (src_listing, dst_listing) = tokio::join!(source.list(dir), destination.list(dir));
    let listed = src_listing
        .map_err(MoveFileError::at(Side::Source))
        .and_then(|s| {
            Ok((
                s,
                dst_listing.map_err(MoveFileError::at(Side::Destination))?,
            ))
        });
    let (src_listing, dst_listing) = match listed {
        Ok(listings) => listings,
        Err(err) => {
            tracing::error!(dir = %dir, "cannot list: {err}");
            progress.error(&err);
            return Err(err);
        }
    };
    let existing: HashMap<RelPath, FileEntry> = dst_listing
        .files
        .into_iter()
        .filter(|f| f.state == FileState::Final)
        .map(|f| (f.path.clone(), f))
        .collect();
    let files: Vec<FileEntry> = src_listing
        .files
        .into_iter()
        .filter(|f| f.state == FileState::Final)
        .collect();
    let mut summary = MoveSummary {
        skipped: src_listing.skipped.len(),
        ..MoveSummary::default()
    };
    for skipped in &src_listing.skipped {
        tracing::info!(dir = %dir, path = %skipped.path, reason = %skipped.reason, "skipped");
        progress.skipped(skipped);
    }
    progress.set_length(files.len(), files.iter().map(|f| f.stamp.size).sum());

    let progress = Mutex::new(progress);
    let job = |entry: FileEntry| {
        let mut file_progress = progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .for_file(&entry.path, entry.stamp.size);
        let existing = existing.get(&entry.path);
        async move {
            let endpoints = Endpoints {
                source,
                destination,
                dir,
            };
            let result = endpoints
                .move_file(&entry, existing, file_progress.as_mut())
                .await;
            (entry, result, file_progress)
        }
    };
    let mut running = stream::iter(files)
        .map(job)
        .buffer_unordered(options.parallel.max(1));
    while let Some((entry, result, mut file_progress)) = running.next().await {
        match result {
            Ok(sent) => {
                summary.moved += 1;
                summary.bytes_sent += sent;
                file_progress.success();
            }
            Err(err) => {
                summary.failed += 1;
                tracing::error!(dir = %dir, path = %entry.path, "{err}");
                file_progress.error(&err);
            }
        }
    }
    Ok(summary)
}

/// The two sides of a move and the directory moved.
struct Endpoints<'a> {
    source: &'a dyn Service,
    destination: &'a dyn Service,
    dir: &'a DirectoryId,
}

impl Endpoints<'_> {
    /// Moves one file; returns the bytes sent.
    async fn move_file(
        &self,
        entry: &FileEntry,
        existing: Option<&FileEntry>,
        progress: &mut dyn FileProgress,
    ) -> Result<u64, MoveFileError> {
        let already_there = match existing {
            Some(existing) if existing.stamp.size == entry.stamp.size => {
                progress.verifying();
                self.same_content(&entry.path).await?
            }
            _ => false,
        };
        let sent = if already_there {
            tracing::debug!(dir = %self.dir, path = %entry.path, "destination already has it");
            0
        } else {
            self.copy(entry, progress).await?
        };
        progress.deleting();
        self.source
            .delete(self.dir, &entry.path, entry.stamp)
            .await
            .map_err(MoveFileError::at(Side::Source))?;
        Ok(sent)
    }

    /// Whether both sides hold the same content at `path`.
    async fn same_content(&self, path: &RelPath) -> Result<bool, MoveFileError> {
        let (src, dst) = tokio::join!(
            self.source.hash(self.dir, path),
            self.destination.hash(self.dir, path)
        );
        let src = src.map_err(MoveFileError::at(Side::Source))?;
        let dst = dst.map_err(MoveFileError::at(Side::Destination))?;
        Ok(src == dst)
    }

    /// Streams the file into the destination's partial file, then has the
    /// destination verify it and make it final. Returns the bytes sent.
    async fn copy(
        &self,
        entry: &FileEntry,
        progress: &mut dyn FileProgress,
    ) -> Result<u64, MoveFileError> {
        progress.moving();
        let path = &entry.path;
        let (reader, writer) = tokio::join!(
            self.source.read(self.dir, path, 0),
            self.destination.write(self.dir, path, 0, entry.stamp.size)
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
                    let len = chunk.len() as u64;
                    writer
                        .write(chunk)
                        .await
                        .map_err(MoveFileError::at(Side::Destination))?;
                    sent += len;
                    progress.inc(len);
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
