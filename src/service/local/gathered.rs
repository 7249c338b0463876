//! Gathering a small file's pieces in memory until it finishes, then
//! handing it whole to the [`Finisher`], which completes small files in
//! batches: with thousands of small files, per-file hand-offs between
//! threads and per-file syncs would cost more than the writing.

use bytes::Bytes;

use super::exclusive::PartialClaim;
use super::finisher::Finisher;
use super::partial::{PartialWrite, WriteTarget};
use super::threads::WriteToken;
use crate::model::Hash;
use crate::protocol::{ErrorKind, RealizeError};

/// Files of at most this many bytes are gathered in memory and handed to
/// the shared [`Finisher`] when they finish. The finisher hashes the whole
/// file, a resume's kept prefix included, so the bound is on the file's
/// size, not on the bytes it receives: a resume of a large partial file
/// that receives a few bytes hashes its whole prefix on a thread of its
/// own, and never holds up the small files of every peer.
pub(super) const GATHERED_MAX: u64 = 64 * 1024;

/// A small file's pieces, gathered until it finishes.
pub(super) struct Gathered {
    target: WriteTarget,
    /// Taken when the file is finished or abandoned.
    claim: Option<PartialClaim>,
    /// Taken with the claim: the write has ended once both are let go.
    token: Option<WriteToken>,
    finisher: Finisher,
    pieces: Vec<Bytes>,
    len: u64,
}

impl Gathered {
    /// Gets ready to gather the pieces of `target`, holding `claim` and
    /// `token` until the file is complete or its pieces are written.
    pub(super) fn new(
        target: WriteTarget,
        claim: PartialClaim,
        token: WriteToken,
        finisher: &Finisher,
    ) -> Self {
        Self {
            target,
            claim: Some(claim),
            token: Some(token),
            finisher: finisher.clone(),
            pieces: Vec::new(),
            len: 0,
        }
    }

    /// Keeps `chunk`; fails if more arrives than the delta announced.
    pub(super) fn push(&mut self, chunk: Bytes) -> Result<(), RealizeError> {
        self.len += chunk.len() as u64;
        if self.len > self.target.delta().payload_len(self.target.size()) {
            let message = format!(
                "{}: received more than the announced bytes",
                self.target.display()
            );
            return Err(RealizeError::new(ErrorKind::Protocol, message));
        }
        self.pieces.push(chunk);
        Ok(())
    }

    /// Has the finisher write the gathered pieces and complete the file.
    pub(super) async fn finish(mut self, expected: Hash) -> Result<Hash, RealizeError> {
        let pieces = std::mem::take(&mut self.pieces);
        let claim = self.claim.take().expect("a gathered file is finished once");
        let token = self.token.take().expect("a gathered file is finished once");
        let target = self.target.clone();
        self.finisher
            .finish(target, pieces, expected, claim, token)
            .await
    }
}

impl Drop for Gathered {
    /// A transfer that stops before its end leaves what arrived in the
    /// partial file for a later resume, as a large file's thread does.
    fn drop(&mut self) {
        if self.pieces.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (target, pieces, claim, token) = (
            self.target.clone(),
            std::mem::take(&mut self.pieces),
            self.claim.take(),
            self.token.take(),
        );
        runtime.spawn_blocking(move || {
            match PartialWrite::of_pieces(&target, pieces) {
                Ok(progress) => progress.abandon(&target),
                Err(e) => {
                    tracing::warn!(path = %target.display(), "the bytes that arrived are lost: {e}")
                }
            }
            drop(claim);
            drop(token);
        });
    }
}
