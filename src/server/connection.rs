//! One peer connection: authenticate, handshake on the control stream, then
//! serve control requests and data streams concurrently.

mod control;
mod streams;

use std::collections::BTreeMap;
use std::sync::Arc;

use quinn::{Connection, Incoming, VarInt};
use rustls::pki_types::CertificateDer;

use crate::protocol::{
    code, read_frame, write_frame, ErrorKind, Hello, HelloReply, RealizeError, PROTOCOL_VERSION,
};
use crate::service::local::LocalService;
use crate::throttle::{Rate, Throttle};
use crate::transport::tls::{fingerprint_in, PinnedPeers};

/// How long a peer has to send its [`Hello`] after connecting.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Who is on the other end, and what the daemon may send them.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer id from the daemon's `[peers]`.
    pub id: String,
    /// The peer's address.
    pub address: std::net::SocketAddr,
    /// The most the daemon sends this peer, from `[send_limits]`.
    pub cap: Option<Rate>,
    /// Paces the file bytes the daemon sends on this connection.
    pub throttle: Throttle,
}

/// Handles one incoming connection to its end. Never panics the daemon:
/// every failure is logged and ends this connection only.
pub async fn handle(
    incoming: Incoming,
    service: LocalService,
    peers: Arc<PinnedPeers>,
    send_limits: Arc<BTreeMap<String, Rate>>,
) {
    let address = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            metrics::counter!("realize_connections_refused_total").increment(1);
            let reason = e.to_string();
            match fingerprint_in(&reason) {
                Some(fingerprint) => tracing::warn!(
                    remote = %address,
                    fingerprint,
                    "refused connection: unknown peer certificate {fingerprint}"
                ),
                None => tracing::warn!(remote = %address, "refused connection: {reason}"),
            }
            return;
        }
    };
    let Some(id) = peer_id(&connection, &peers) else {
        // The verifier already checked the key; this cannot happen unless
        // the TLS layer changes. Refuse rather than serve an unknown peer.
        connection.close(VarInt::from_u32(code::PROTOCOL_VIOLATION), b"unknown peer");
        return;
    };
    let cap = send_limits.get(&id).copied();
    let peer = Peer {
        id,
        address,
        cap,
        throttle: Throttle::new(cap),
    };
    metrics::counter!("realize_connections_accepted_total").increment(1);
    tracing::info!(peer = %peer.id, remote = %address, "connection accepted");
    let reason = serve(&connection, &peer, service).await;
    tracing::info!(peer = %peer.id, remote = %address, "connection closed: {reason}");
}

fn peer_id(connection: &Connection, peers: &PinnedPeers) -> Option<String> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    peers.peer_id(certs.first()?).map(str::to_string)
}

async fn serve(connection: &Connection, peer: &Peer, service: LocalService) -> String {
    let (mut send, mut recv) = match connection.accept_bi().await {
        Ok(streams) => streams,
        Err(e) => return e.to_string(),
    };
    send.set_priority(1).ok(); // Responses never wait behind file data.
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame::<_, Hello>(&mut recv)).await;
    let hello = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => {
            connection.close(VarInt::from_u32(code::PROTOCOL_VIOLATION), b"bad hello");
            return format!("bad handshake: {e}");
        }
        Err(_) => {
            connection.close(VarInt::from_u32(code::PROTOCOL_VIOLATION), b"no hello");
            return format!("no handshake within {HELLO_TIMEOUT:?}");
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let refusal = RealizeError::new(
            ErrorKind::VersionMismatch,
            format!(
                "this daemon speaks protocol version {PROTOCOL_VERSION}, not {}",
                hello.version
            ),
        );
        tracing::warn!(peer = %peer.id, version = hello.version, "protocol version mismatch");
        let _ = write_frame(
            &mut send,
            &HelloReply {
                version: Err(refusal),
            },
        )
        .await;
        let _ = send.finish();
        let _ = send.stopped().await;
        connection.close(
            VarInt::from_u32(code::VERSION_MISMATCH),
            b"version mismatch",
        );
        return "version mismatch".into();
    }
    if let Err(e) = write_frame(
        &mut send,
        &HelloReply {
            version: Ok(PROTOCOL_VERSION),
        },
    )
    .await
    {
        return e.to_string();
    }
    let control = tokio::spawn(control::serve(
        send,
        recv,
        service.clone(),
        connection.clone(),
        peer.clone(),
    ));
    let reason = loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(streams::serve(send, recv, service.clone(), peer.clone()));
            }
            Err(e) => break e.to_string(),
        }
    };
    control.abort();
    reason
}
