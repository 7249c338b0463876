//! [`MoveFileError`]: every way moving a file can fail, each with a message
//! a user can act on.

use std::fmt;

use crate::protocol::{ErrorKind, RealizeError};
use crate::service::ServiceError;
use crate::transport::TransportError;

/// Which endpoint of a move an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source endpoint.
    Source,
    /// The destination endpoint.
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// Why a file (or the whole move) failed. The source copy of a failed file
/// is always kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MoveFileError {
    /// The connection to an endpoint failed; running again resumes.
    #[error("{side}: {source}")]
    Transport {
        /// Which endpoint.
        side: Side,
        /// The connection failure.
        source: TransportError,
    },
    /// An endpoint's service reported a failure (local or remote).
    #[error("{side}: {source}")]
    Service {
        /// Which endpoint.
        side: Side,
        /// The service's error, as it crossed the wire.
        source: RealizeError,
    },
    /// What the destination wrote does not hash to what the source read; the
    /// destination keeps it as a partial file and the source is kept.
    #[error("verification failed: {0}")]
    HashMismatch(String),
    /// The source file changed while it was moved; it is kept and the next
    /// run moves the new version.
    #[error("the source changed while it was moved; it is kept and the next run moves it")]
    SourceChanged,
    /// The move was stopped (time limit, Ctrl-C) while this file was in
    /// flight; its partial file is kept and the next run resumes it.
    #[error("interrupted; the partial file is kept and the next run resumes it")]
    Interrupted,
}

impl MoveFileError {
    /// Classifies a service error from `side`.
    pub fn from_service(side: Side, err: ServiceError) -> Self {
        match err {
            ServiceError::Transport(source) => MoveFileError::Transport { side, source },
            ServiceError::Realize(e) if e.kind == ErrorKind::SourceChanged => {
                MoveFileError::SourceChanged
            }
            ServiceError::Realize(e) if e.kind == ErrorKind::HashMismatch => {
                MoveFileError::HashMismatch(e.message)
            }
            ServiceError::Realize(source) => MoveFileError::Service { side, source },
        }
    }

    /// Whether running again after reconnecting may cure this error: a lost
    /// connection, not a refusal or a local failure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, MoveFileError::Transport { source, .. } if source.is_retryable())
    }

    /// The kind of failure, for metrics and the JSON report: the
    /// [`ErrorKind::label`] of a refusal, a hash mismatch or a changed
    /// source, `Transport` or `Interrupted` otherwise.
    pub fn kind_label(&self) -> &'static str {
        match self {
            MoveFileError::Transport { .. } => "Transport",
            MoveFileError::Service { source, .. } => source.kind.label(),
            MoveFileError::HashMismatch(_) => ErrorKind::HashMismatch.label(),
            MoveFileError::SourceChanged => ErrorKind::SourceChanged.label(),
            MoveFileError::Interrupted => "Interrupted",
        }
    }

    /// A closure that classifies errors of `side`, for `map_err`.
    pub fn at(side: Side) -> impl Fn(ServiceError) -> Self {
        move |err| Self::from_service(side, err)
    }
}
