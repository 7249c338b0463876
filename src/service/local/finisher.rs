//! Completing small files in batches.
//!
//! A small file arrives whole in memory (see `gathered`); what is left is to
//! write it, verify it, make it durable and rename it into place. Done one
//! file per blocking call, that costs two thread hand-offs per file and two
//! waits for the disk: the data sync, and the directory sync of the rename.
//!
//! The finisher thread takes every small file waiting (up to [`MAX_BATCH`])
//! and completes them together: it writes and verifies them all, makes them
//! durable with one `syncfs` (and a disk cache flush) per file system,
//! renames them, and makes the renames durable the same way. Files arriving
//! meanwhile wait for the next batch, so batches grow with the load.
//!
//! Why `syncfs` and not a sync per file and per directory: on ext4 without
//! a journal every `fdatasync` writes the inode and the new directory entry
//! and flushes the disk cache, so 64 files cost 64 flushes; on a journaled
//! ext4 each sync waits for a journal commit of its own. Moving 20,000 files
//! of 4 KiB to a daemon took 9.7–10.2 s with syncs per file and directory
//! and 4.2–5.1 s with `syncfs` on a fresh ext4 without a journal, 4.2–4.9 s
//! and 2.8–3.5 s on a fresh journaled ext4. The price: a `syncfs` also
//! writes out what other writers left dirty on the same file system, which
//! a batch then waits for.

use std::io;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::completion::{commit, verify};
use super::durability::{sync_file_systems, syncfs_reports_errors};
use super::exclusive::PartialClaim;
use super::partial::{PartialWrite, WriteTarget};
use super::place::Partial;
use super::threads::WriteToken;
use super::workers::{Requester, Workers};
use crate::model::Hash;
use crate::protocol::{ErrorKind, RealizeError};

/// Most files completed in one batch. Each holds an open file (and its
/// lock) until its batch is done.
const MAX_BATCH: usize = 64;

/// Threads completing batches. One: with syncs per file on a journaled
/// ext4, a second one doubled the journal commits (each thread's batch
/// commits on its own) and saved no time, and splitting the work in two
/// stages (one thread writing the next batch while another syncs and
/// renames the last) made the move about 10 % slower: creates and renames
/// then contend for the directory.
const THREADS: usize = 1;

/// A small file to complete, and where to send the outcome.
struct Job {
    target: WriteTarget,
    pieces: Vec<Bytes>,
    expected: Hash,
    claim: PartialClaim,
    token: WriteToken,
    reply: oneshot::Sender<Result<Hash, RealizeError>>,
}

impl Job {
    /// Lets go of the partial file, answers, and ends the write.
    fn answer(self, result: Result<Hash, RealizeError>) {
        drop(self.claim); // Only now may another writer open the file.
        let _ = self.reply.send(result);
        drop(self.token);
    }
}

/// The handle of the finisher threads; the threads end with the last
/// handle.
#[derive(Debug, Clone)]
pub(super) struct Finisher {
    workers: Workers<Job>,
}

impl Finisher {
    /// Starts the threads.
    pub(super) fn start() -> io::Result<Self> {
        let syncfs_reports = syncfs_reports_errors();
        let workers = Workers::start("realize-finish", THREADS, MAX_BATCH, move |batch| {
            tracing::trace!(files = batch.len(), "completing a batch of small files");
            complete_batch(batch, syncfs_reports);
        })?;
        Ok(Self { workers })
    }

    /// A handle on the same threads queuing the files of `requester`; a
    /// batch takes the requesters' files in turn.
    pub(super) fn for_requester(&self, requester: Requester) -> Self {
        let workers = self.workers.for_requester(requester);
        Self { workers }
    }

    /// Completes the files queued, then stops the threads. Blocking.
    pub(super) fn stop(&self) {
        self.workers.stop();
    }

    /// Writes `pieces` into the partial file of `target`, verifies that the
    /// whole file hashes to `expected`, makes it durable and renames it into
    /// place. Holds `claim` and `token` until the file is done.
    pub(super) async fn finish(
        &self,
        target: WriteTarget,
        pieces: Vec<Bytes>,
        expected: Hash,
        claim: PartialClaim,
        token: WriteToken,
    ) -> Result<Hash, RealizeError> {
        let display = target.display().clone();
        let stopped = || {
            let message = format!("{display}: the finishing thread stopped");
            RealizeError::new(ErrorKind::Io, message)
        };
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            target,
            pieces,
            expected,
            claim,
            token,
            reply,
        };
        self.workers.push(job);
        outcome.await.map_err(|_| stopped())?
    }
}

/// A file of a batch, open, and its job. The file is closed (and so
/// unlocked) before its job is answered, which lets go of its claim.
type Open = (Job, Partial);

/// Writes and verifies every file of `batch`, makes the good ones durable,
/// renames them into place, makes the renames durable; answers each job.
/// `syncfs_reports`: whether this kernel reports write-back errors to
/// `syncfs` (see [`sync_file_systems`]).
fn complete_batch(batch: Vec<Job>, syncfs_reports: bool) {
    let written = write_all(batch);
    let durable = sync_or_answer(written, syncfs_reports);
    let renamed = rename_all(durable);
    for (job, file) in sync_or_answer(renamed, syncfs_reports) {
        drop(file);
        let expected = job.expected;
        job.answer(Ok(expected));
    }
}

/// Writes and verifies each file; answers those that fail, and those
/// whose bytes went nowhere, settled by [`verify`].
fn write_all(batch: Vec<Job>) -> Vec<Open> {
    let mut written = Vec::with_capacity(batch.len());
    for mut job in batch {
        let pieces = std::mem::take(&mut job.pieces);
        let target = &job.target;
        let verified = PartialWrite::of_pieces(target, pieces)
            .and_then(|progress| progress.written(target))
            .and_then(|written| verify(written, target, job.expected));
        match verified {
            Ok(Some(file)) => written.push((job, file)),
            Ok(None) => {
                let expected = job.expected;
                job.answer(Ok(expected));
            }
            Err(e) => job.answer(Err(e)),
        }
    }
    written
}

/// Makes everything written to the files' file systems durable. If that
/// fails, answers every job with the error and returns none.
fn sync_or_answer(files: Vec<Open>, syncfs_reports: bool) -> Vec<Open> {
    match sync_file_systems(files.iter().map(|(_, file)| file), syncfs_reports) {
        Ok(()) => files,
        Err(e) => {
            for (job, file) in files {
                drop(file);
                let error = RealizeError::io(job.target.display(), &e);
                job.answer(Err(error));
            }
            Vec::new()
        }
    }
}

/// Renames each partial file to its final name, replacing only what the
/// client listed there; answers those that fail.
fn rename_all(files: Vec<Open>) -> Vec<Open> {
    let mut renamed = Vec::with_capacity(files.len());
    for (job, file) in files {
        let target = &job.target;
        match commit(&file, target, &job.expected) {
            Ok(()) => renamed.push((job, file)),
            Err(error) => {
                drop(file);
                job.answer(Err(error));
            }
        }
    }
    renamed
}
