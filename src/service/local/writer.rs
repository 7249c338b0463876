//! [`LocalWriter`]: a transfer's bytes into its partial file, streamed by a
//! thread of its own for a large file, gathered in memory for a small one
//! (see `gathered`).
//!
//! A large file (whatever it receives: a resume hashes its kept prefix too)
//! gets a thread that writes the pieces as they arrive, then verifies the
//! file, makes it durable and renames it into place (see `completion`).
//!
//! A fresh copy (`Delta::full`) and a plain resume (no patches) are hashed
//! as they are written, the kept prefix being read once at open. A resume
//! that patches blocks inside the kept prefix is hashed by reading the whole
//! file back at the end, so the final hash always covers the whole file.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};

use super::completion::make_final;
use super::durability::DirSyncer;
use super::exclusive::PartialClaim;
use super::finisher::Finisher;
use super::gathered::{Gathered, GATHERED_MAX};
use super::partial::{PartialWrite, WriteTarget};
use super::threads::{on_blocking_thread, WriteToken};
use crate::model::{Hash, RelPath};
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::{FileWriter, ServiceError};

/// Chunks queued for the writing thread.
const WRITE_BEHIND: usize = 2;

enum Command {
    Data(Bytes),
    Finish(Hash, oneshot::Sender<Result<Hash, RealizeError>>),
}

/// A partial file being written, which holds the file's [`PartialClaim`]
/// until it is written and closed.
pub struct LocalWriter {
    sink: Sink,
    display: RelPath,
    superseded: Arc<Notify>,
}

/// Where a [`LocalWriter`]'s pieces go.
enum Sink {
    /// To the blocking thread that writes them as they arrive.
    Thread(mpsc::Sender<Command>),
    /// Into memory, written when the file finishes.
    Gathered(Box<Gathered>),
}

impl LocalWriter {
    /// Opens the partial file (creating it, keeping the bytes before the
    /// delta's offset, dropping any after) and starts the writing thread,
    /// which makes it final through `syncer`; for a small file, only gets
    /// ready to gather its pieces for `finisher`. The write holds `token`
    /// until it has ended.
    pub(super) async fn open(
        target: WriteTarget,
        claim: PartialClaim,
        token: WriteToken,
        syncer: Arc<DirSyncer>,
        finisher: &Finisher,
    ) -> Result<Self, RealizeError> {
        let display = target.display().clone();
        let superseded = claim.superseded_signal();
        let sink = if target.size() <= GATHERED_MAX {
            Sink::Gathered(Box::new(Gathered::new(target, claim, token, finisher)))
        } else {
            Sink::Thread(start_thread(target, claim, token, syncer).await?)
        };
        Ok(Self {
            sink,
            display,
            superseded,
        })
    }

    /// Completes when a newer transfer of the same file wants it; the caller
    /// should then drop this writer (the partial file keeps what was written).
    pub async fn superseded(&self) {
        self.superseded.notified().await;
    }
}

/// Opens the partial file and starts the thread that writes it.
async fn start_thread(
    target: WriteTarget,
    claim: PartialClaim,
    token: WriteToken,
    syncer: Arc<DirSyncer>,
) -> Result<mpsc::Sender<Command>, RealizeError> {
    let (target, progress) = on_blocking_thread(move || {
        let progress = PartialWrite::open(&target)?;
        Ok((target, progress))
    })
    .await?;
    let (commands, rx) = mpsc::channel(WRITE_BEHIND);
    tokio::task::spawn_blocking(move || {
        write_loop(progress, &target, rx, &syncer);
        drop(claim); // Only now may another writer open the file.
        drop(token);
    });
    Ok(commands)
}

/// The writing thread of a large file: writes pieces until told to finish.
fn write_loop(
    mut progress: PartialWrite,
    target: &WriteTarget,
    mut rx: mpsc::Receiver<Command>,
    syncer: &DirSyncer,
) {
    while let Some(command) = rx.blocking_recv() {
        match command {
            Command::Data(chunk) => progress.write(&chunk, target.display()),
            Command::Finish(expected, reply) => {
                let made_final = progress
                    .written(target)
                    .and_then(|written| make_final(written, target, expected, syncer));
                let _ = reply.send(made_final);
                return;
            }
        }
    }
    // The sender went away without finishing.
    progress.abandon(target);
}

#[async_trait]
impl FileWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ServiceError> {
        match &mut self.sink {
            Sink::Thread(commands) => commands
                .send(Command::Data(chunk))
                .await
                .map_err(|_| stopped(&self.display)),
            Sink::Gathered(gathered) => Ok(gathered.push(chunk)?),
        }
    }

    async fn finish(self: Box<Self>, expected: Hash) -> Result<Hash, ServiceError> {
        let commands = match self.sink {
            Sink::Thread(commands) => commands,
            Sink::Gathered(gathered) => return Ok((*gathered).finish(expected).await?),
        };
        let (reply, result) = oneshot::channel();
        commands
            .send(Command::Finish(expected, reply))
            .await
            .map_err(|_| stopped(&self.display))?;
        Ok(result.await.map_err(|_| stopped(&self.display))??)
    }
}

/// The error of a writer whose thread is gone.
fn stopped(display: &RelPath) -> ServiceError {
    RealizeError::new(
        ErrorKind::Io,
        format!("{display}: the writing thread stopped"),
    )
    .into()
}
