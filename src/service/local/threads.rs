//! What runs on which thread, and the shutdown that waits for the writes
//! under way.
//!
//! The async runtime's worker threads never touch the disk. Blocking work
//! runs here:
//!
//! | work | thread | owner |
//! |---|---|---|
//! | resolving a path (creating its directories), opening and reading a file of one chunk, deleting a file | `realize-io-0..3`, sharing one queue that takes the peers in turn (`workers`) | [`Threads`]: joined by [`Threads::shutdown`] |
//! | completing small files in batches: write, verify, `syncfs`, rename | `realize-finish-0` (`finisher`) | [`Threads`]: joined by [`Threads::shutdown`] |
//! | writing a large file as its pieces arrive, then completing it | one thread of the runtime's blocking pool per file (`writer`) | its write, which [`Threads::shutdown`] waits for |
//! | writing what a small file gathered, when its transfer stops early | a blocking-pool thread (`gathered`) | its write, which [`Threads::shutdown`] waits for |
//! | reading a file larger than a chunk, ahead of its consumer | one blocking-pool thread per file (`reader`) | the runtime, which waits for it as it ends |
//! | listing, hashing a file or its blocks, setting attributes, the root's identity, collecting abandoned partial files | a blocking-pool thread per call ([`on_blocking_thread`], [`for_caller`]) | the runtime, which waits for it as it ends |
//!
//! A write starts when its writer opens and ends when its file is final or
//! its partial file holds what arrived (and its claim is let go). Every
//! write holds a [`WriteToken`] until then. [`Threads::shutdown`] refuses
//! new writes, waits for the tokens, then stops and joins the threads of
//! the queues: a daemon stopped by SIGTERM exits only once every write it
//! started has ended. Reads and hashes are not waited for: the runtime
//! does, as it shuts down, and a hash stops at its next read once its
//! caller is gone.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::caller::{self, Caller};
use super::finisher::Finisher;
use super::workers::{Requester, ShortOps};
use crate::model::RelPath;
use crate::protocol::{ErrorKind, RealizeError};
use crate::service::ServiceError;

/// The threads of a service and the writes it has under way; clones share
/// them.
#[derive(Debug, Clone)]
pub(super) struct Threads {
    ops: ShortOps,
    finisher: Finisher,
    writes: Arc<Writes>,
}

/// The writes under way, and whether new ones are refused.
#[derive(Debug, Default)]
struct Writes {
    state: Mutex<WriteCount>,
    ended: Notify,
}

#[derive(Debug, Default)]
struct WriteCount {
    running: usize,
    refused: bool,
}

/// Held by a write from its start until it has ended; see the module's
/// documentation.
#[derive(Debug)]
pub(super) struct WriteToken(Arc<Writes>);

impl Threads {
    /// Starts the threads of the queues.
    pub(super) fn start() -> std::io::Result<Self> {
        Ok(Self {
            ops: ShortOps::start()?,
            finisher: Finisher::start()?,
            writes: Arc::default(),
        })
    }

    /// The same threads, queuing work as `requester`'s.
    pub(super) fn for_requester(&self, requester: Requester) -> Self {
        Self {
            ops: self.ops.for_requester(requester.clone()),
            finisher: self.finisher.for_requester(requester),
            writes: self.writes.clone(),
        }
    }

    /// The threads for short operations.
    pub(super) fn ops(&self) -> &ShortOps {
        &self.ops
    }

    /// The thread completing small files.
    pub(super) fn finisher(&self) -> &Finisher {
        &self.finisher
    }

    /// Starts a write of `path`; refused once shutdown has begun.
    pub(super) fn start_write(&self, path: &RelPath) -> Result<WriteToken, RealizeError> {
        let mut count = self.writes.lock();
        if count.refused {
            let message =
                format!("{path}: the service is shutting down; run again once it is back");
            return Err(RealizeError::new(ErrorKind::Io, message));
        }
        count.running += 1;
        Ok(WriteToken(self.writes.clone()))
    }

    /// Refuses new writes, waits until every write under way has ended,
    /// then lets the queues' threads finish what is queued and joins them.
    /// Work queued after this is dropped, and its caller told so.
    pub(super) async fn shutdown(&self) {
        self.writes.lock().refused = true;
        loop {
            let ended = self.writes.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let running = self.writes.lock().running;
            if running == 0 {
                break;
            }
            tracing::info!(writes = running, "waiting for the writes under way");
            ended.await;
        }
        let (ops, finisher) = (self.ops.clone(), self.finisher.clone());
        let joined = tokio::task::spawn_blocking(move || {
            finisher.stop();
            ops.stop();
        });
        if let Err(e) = joined.await {
            tracing::error!("stopping the file-system threads failed: {e}");
        }
    }
}

impl Writes {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteCount> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for WriteToken {
    fn drop(&mut self) {
        let mut count = self.0.lock();
        count.running -= 1;
        if count.running == 0 {
            self.0.ended.notify_waiters();
        }
    }
}

/// Runs blocking file-system work on the runtime's blocking pool; work
/// whose caller stopped waiting before it began is not done.
pub(super) async fn on_blocking_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RealizeError> + Send + 'static,
) -> Result<T, RealizeError> {
    for_caller(move |_| work()).await
}

/// [`on_blocking_thread`] for long work, which stops early (see
/// [`Caller::reading`]) when its caller stops waiting.
pub(super) async fn for_caller<T: Send + 'static>(
    work: impl FnOnce(&Caller) -> Result<T, RealizeError> + Send + 'static,
) -> Result<T, RealizeError> {
    let (caller, _waiting) = caller::watch();
    tokio::task::spawn_blocking(move || {
        caller.still_waiting()?;
        work(&caller)
    })
    .await
    .map_err(|e| RealizeError::new(ErrorKind::Io, format!("blocking task failed: {e}")))?
}

/// [`on_blocking_thread`], answering as a `Service` does.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RealizeError> + Send + 'static,
) -> Result<T, ServiceError> {
    on_blocking_thread(work).await.map_err(ServiceError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_the_writes_under_way_and_refuses_new_ones() {
        let threads = Threads::start().unwrap();
        let path = RelPath::new("f").unwrap();
        let token = threads.start_write(&path).unwrap();
        let shutdown = tokio::spawn({
            let threads = threads.clone();
            async move { threads.shutdown().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!shutdown.is_finished(), "waits for the write");
        let refused = threads.start_write(&path).unwrap_err();
        assert!(refused.message.contains("shutting down"), "{refused}");
        drop(token);
        tokio::time::timeout(std::time::Duration::from_secs(5), shutdown)
            .await
            .expect("shutdown ends once the write has")
            .unwrap();
    }
}
