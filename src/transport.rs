//! QUIC transport: identities and pinned mutual TLS, endpoints tuned for long
//! fat links, and the errors of the connection layer.

pub mod congestion;
pub mod endpoint;
pub mod identity;
pub mod measure;
pub mod stream;
pub mod tls;

use crate::protocol::FrameError;

/// A failure of the connection, as opposed to a failure the service reports.
/// These are the errors a retry may cure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be made or was lost.
    #[error("{0}")]
    Connection(String),
    /// The peer refused our certificate, or we refused the peer's.
    #[error("{0}")]
    Authentication(String),
    /// The peer sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl TransportError {
    /// Whether reconnecting may help (authentication failures never do).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TransportError::Connection(_))
    }
}

impl From<FrameError> for TransportError {
    fn from(err: FrameError) -> Self {
        match err {
            FrameError::Closed | FrameError::Io(_) => TransportError::Connection(err.to_string()),
            FrameError::TooLarge(_) | FrameError::Malformed(_) => {
                TransportError::Protocol(err.to_string())
            }
        }
    }
}

impl From<quinn::ConnectionError> for TransportError {
    fn from(err: quinn::ConnectionError) -> Self {
        TransportError::Connection(format!("connection lost: {err}"))
    }
}

impl From<quinn::WriteError> for TransportError {
    fn from(err: quinn::WriteError) -> Self {
        TransportError::Connection(format!("sending failed: {err}"))
    }
}

impl From<quinn::ReadError> for TransportError {
    fn from(err: quinn::ReadError) -> Self {
        TransportError::Connection(format!("receiving failed: {err}"))
    }
}

impl From<quinn::ClosedStream> for TransportError {
    fn from(err: quinn::ClosedStream) -> Self {
        TransportError::Connection(format!("stream closed: {err}"))
    }
}
