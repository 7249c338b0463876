//! The typed error a service reports, identical in process and on the wire.

use serde::{Deserialize, Serialize};

/// What kind of failure a [`RealizeError`] is. The kind decides what the
/// client does (retry, report, skip), the message tells the user why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The daemon does not serve the requested directory id.
    UnknownDirectory,
    /// The path is not a safe relative path, or leads through a symlink.
    InvalidPath,
    /// No file at that path.
    NotFound,
    /// Something other than a regular file is in the way (e.g. a directory).
    NotAFile,
    /// The source file changed while it was being moved.
    SourceChanged,
    /// The bytes received do not hash to what the sender read.
    HashMismatch,
    /// The disk is full or over quota.
    NoSpace,
    /// Any other I/O error on the service's side.
    Io,
    /// The peer sent something the protocol does not allow.
    Protocol,
    /// The peers speak different protocol versions.
    VersionMismatch,
    /// A newer transfer of the same file took it over.
    Superseded,
    /// The destination's file is not the one the command listed (one
    /// appeared, or it changed); nothing was replaced, the source is kept.
    DestinationChanged,
}

impl ErrorKind {
    /// The kind's name (`NoSpace`, `HashMismatch`, …): the `kind` label of
    /// the metrics that count failures, and the `kind` of a failure in the
    /// command's JSON report.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::UnknownDirectory => "UnknownDirectory",
            ErrorKind::InvalidPath => "InvalidPath",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::NotAFile => "NotAFile",
            ErrorKind::SourceChanged => "SourceChanged",
            ErrorKind::HashMismatch => "HashMismatch",
            ErrorKind::NoSpace => "NoSpace",
            ErrorKind::Io => "Io",
            ErrorKind::Protocol => "Protocol",
            ErrorKind::VersionMismatch => "VersionMismatch",
            ErrorKind::Superseded => "Superseded",
            ErrorKind::DestinationChanged => "DestinationChanged",
        }
    }
}

/// An error reported by a service, local or remote. It crosses the wire as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RealizeError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// A message for the user, naming the path or value at fault.
    pub message: String,
}

impl RealizeError {
    /// Makes an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Turns an I/O error met on `what` into a service error, keeping the
    /// kinds a client reacts to (not found, disk full).
    pub fn io(what: impl std::fmt::Display, err: &std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                ErrorKind::NoSpace
            }
            std::io::ErrorKind::IsADirectory | std::io::ErrorKind::NotADirectory => {
                ErrorKind::NotAFile
            }
            _ => ErrorKind::Io,
        };
        Self::new(kind, format!("{what}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_labelled_by_its_name() {
        use ErrorKind::*;
        let kinds = [
            UnknownDirectory,
            InvalidPath,
            NotFound,
            NotAFile,
            SourceChanged,
            HashMismatch,
            NoSpace,
            Io,
            Protocol,
            VersionMismatch,
            Superseded,
            DestinationChanged,
        ];
        for kind in kinds {
            assert_eq!(kind.label(), format!("{kind:?}"));
        }
    }
}
