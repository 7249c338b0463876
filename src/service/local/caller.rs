//! Blocking work done for a caller that may stop waiting (its request was
//! dropped, its connection ended): the work does not start once the caller
//! has gone, and a long read fails at its next piece.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::protocol::{ErrorKind, RealizeError};

/// What blocking work knows of its caller: whether it still waits.
#[derive(Debug, Clone)]
pub(super) struct Caller(Arc<AtomicBool>);

/// Held by the caller while it waits; marks the [`Caller`] gone on drop.
#[derive(Debug)]
pub(super) struct Waiting(Arc<AtomicBool>);

/// A caller that waits until the returned [`Waiting`] is dropped.
pub(super) fn watch() -> (Caller, Waiting) {
    let gone = Arc::new(AtomicBool::new(false));
    (Caller(gone.clone()), Waiting(gone))
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Caller {
    /// Fails once the caller has stopped waiting.
    pub(super) fn still_waiting(&self) -> Result<(), RealizeError> {
        match self.0.load(Ordering::Relaxed) {
            false => Ok(()),
            true => Err(RealizeError::new(
                ErrorKind::Io,
                "abandoned: the caller stopped waiting",
            )),
        }
    }

    /// `inner`, whose reads fail once the caller has stopped waiting.
    pub(super) fn reading<R: Read>(&self, inner: R) -> WhileWaiting<R> {
        WhileWaiting {
            caller: self.clone(),
            inner,
        }
    }
}

/// A reader that reads only while its caller waits.
#[derive(Debug)]
pub(super) struct WhileWaiting<R> {
    caller: Caller,
    inner: R,
}

impl<R: Read> Read for WhileWaiting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.caller.still_waiting().map_err(io::Error::other)?;
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fail_once_the_caller_has_gone() {
        let (caller, waiting) = watch();
        let mut reader = caller.reading(&[7u8; 8][..]);
        let mut buf = [0; 4];
        assert_eq!(reader.read(&mut buf).unwrap(), 4);
        assert!(caller.still_waiting().is_ok());
        drop(waiting);
        assert!(caller.still_waiting().is_err());
        assert!(reader.read(&mut buf).is_err());
    }
}
