//! Stopping a move early: on a time limit or at the user's request, no new
//! file starts and the files in flight are abandoned, their partial files
//! kept for the next run.

use tokio::sync::watch;

/// Why a move was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// `--max-duration` was reached.
    TimeLimit,
    /// The user interrupted the command (Ctrl-C, SIGTERM).
    Interrupted,
}

/// Stops the move it was made with.
#[derive(Debug, Clone)]
pub(crate) struct StopHandle(watch::Sender<Option<StopReason>>);

/// What the move watches to know it must stop.
#[derive(Debug, Clone)]
pub(crate) struct StopSignal(watch::Receiver<Option<StopReason>>);

/// A connected handle and signal.
pub(crate) fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(None);
    (StopHandle(tx), StopSignal(rx))
}

impl StopHandle {
    /// Asks the move to stop; the first reason given wins.
    pub(crate) fn stop(&self, reason: StopReason) {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

impl StopSignal {
    /// A signal that never fires.
    pub(crate) fn never() -> Self {
        let (tx, rx) = watch::channel(None);
        std::mem::forget(tx); // Keeps the channel open: `stopped` waits forever.
        Self(rx)
    }

    /// Why the move was stopped, if it was.
    pub(crate) fn reason(&self) -> Option<StopReason> {
        *self.0.borrow()
    }

    /// Completes once the move must stop.
    pub(crate) async fn stopped(&self) -> StopReason {
        let mut rx = self.0.clone();
        let reason = rx.wait_for(Option::is_some).await.map(|reason| *reason);
        match reason {
            Ok(reason) => reason.expect("waited for Some"),
            // The handle is gone without stopping: never stop.
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_wakes_waiters() {
        let (handle, signal) = stop_pair();
        assert_eq!(signal.reason(), None);
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.stopped().await }
        });
        handle.stop(StopReason::TimeLimit);
        handle.stop(StopReason::Interrupted);
        assert_eq!(waiter.await.unwrap(), StopReason::TimeLimit);
        assert_eq!(signal.reason(), Some(StopReason::TimeLimit));
    }
}
