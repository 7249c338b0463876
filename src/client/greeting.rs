//! The version handshake of a connection, answered while its first requests
//! are already on their way, and the one line a failed connection shows.

use std::net::SocketAddr;
use std::time::Duration;

use super::control::HelloAnswer;
use super::ExpectedDaemon;
use crate::transport::identity::Fingerprint;
use crate::transport::tls::fingerprint_in;
use crate::transport::TransportError;
use quinn::ConnectionError;

/// The daemon's answer to a connection's `Hello`, still to come (see
/// [`super::Client::open`]).
pub struct Greeting {
    reply: HelloAnswer,
    connection: quinn::Connection,
    dialled: Dialled,
    timeout: Duration,
}

impl Greeting {
    /// Awaits `reply`, the `HelloReply` the control stream's reader hands
    /// over, on `connection`, for at most `timeout`.
    pub(super) fn new(
        reply: HelloAnswer,
        connection: quinn::Connection,
        dialled: Dialled,
        timeout: Duration,
    ) -> Self {
        Self {
            reply,
            connection,
            dialled,
            timeout,
        }
    }

    /// Returns once the daemon has accepted this client and its protocol
    /// version; fails with the reason the daemon gave, or with the reason
    /// it closed the connection (such as a refused certificate).
    pub async fn accepted(self) -> Result<(), TransportError> {
        let addr = self.dialled.addr;
        let reply = match tokio::time::timeout(self.timeout, self.reply).await {
            Err(_) => return Err(self.dialled.no_answer(self.timeout)),
            Ok(Ok(Ok(reply))) => reply,
            Ok(Ok(Err(e))) => return Err(self.dialled.closed(&self.connection, e)),
            Ok(Err(_)) => {
                let gone = TransportError::Connection(format!("connection to {addr} ended"));
                return Err(self.dialled.closed(&self.connection, gone));
            }
        };
        if let Err(e) = reply.version {
            return Err(TransportError::Protocol(format!(
                "{addr} refused the handshake: {e}"
            )));
        }
        tracing::info!(remote = %addr, "connected");
        Ok(())
    }
}

/// What a connection was meant to reach, to tell the user why it failed.
#[derive(Clone)]
pub(super) struct Dialled {
    /// The daemon's address.
    pub(super) addr: SocketAddr,
    /// The daemon it must be.
    pub(super) daemon: ExpectedDaemon,
    /// This client's key.
    pub(super) own: Fingerprint,
}

impl Dialled {
    /// The daemon did not answer within `timeout`.
    pub(super) fn no_answer(&self, timeout: Duration) -> TransportError {
        TransportError::Connection(format!(
            "no answer from {} within {timeout:?}: is realized running there and \
             reachable over UDP?",
            self.addr
        ))
    }

    /// `err` on `connection`, explained by why the connection closed if it did.
    pub(super) fn closed(
        &self,
        connection: &quinn::Connection,
        err: TransportError,
    ) -> TransportError {
        match connection.close_reason() {
            Some(reason) => self.explain(reason),
            None => err,
        }
    }

    /// Turns a connection failure into the one line the user sees.
    pub(super) fn explain(&self, err: ConnectionError) -> TransportError {
        let addr = self.addr;
        match &err {
            ConnectionError::TransportError(e) if is_tls_alert(e.code) => {
                TransportError::Authentication(match fingerprint_in(&e.reason) {
                    Some(presented) => format!(
                        "refusing the daemon at {addr}: it presented certificate {presented}, \
                         but {} holds {}; check the address, and name that daemon's \
                         certificate instead only if you trust that host",
                        self.daemon.named_by,
                        self.daemon.key.fingerprint()
                    ),
                    None => format!("TLS handshake with {addr} failed: {}", e.reason),
                })
            }
            ConnectionError::ConnectionClosed(close) if is_tls_alert(close.error_code) => {
                TransportError::Authentication(format!(
                    "the daemon at {addr} refused this client's certificate {}; add this \
                     host's .crt to the daemon's [peers]",
                    self.own
                ))
            }
            ConnectionError::TimedOut => TransportError::Connection(format!(
                "no answer from {addr}: is realized running there and reachable over UDP?"
            )),
            _ => TransportError::Connection(format!("connection to {addr}: {err}")),
        }
    }
}

fn is_tls_alert(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}
