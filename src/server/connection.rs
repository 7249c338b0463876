//! One peer connection: authenticate, handshake on the control stream, then
//! serve control requests and data streams concurrently.

mod control;
mod path;
mod streams;

use std::collections::BTreeMap;
use std::sync::Arc;

use quinn::{Connection, Incoming, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use tokio::sync::{oneshot, watch};

use super::admission::{Admission, ConnectionPlace};
use super::known_paths::KnownPaths;
use super::limits::Limits;
use super::listing_gate::ListingGate;
use super::places::Places;
use super::refusals::Refusals;
use crate::protocol::{
    code, read_frame, write_frame, ErrorKind, Hello, HelloReply, RealizeError, PROTOCOL_VERSION,
};
use crate::service::local::LocalService;
use crate::telemetry;
use crate::throttle::{Rate, Throttle};
use crate::transport::tls::{fingerprint_in, PinnedPeers};

/// Who is on the other end, and what the daemon may send them.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    /// The peer id from the daemon's `[peers]`.
    pub id: String,
    /// The peer's address.
    pub address: std::net::SocketAddr,
    /// The most the daemon sends this peer over all its connections, from
    /// `[send_limits]` (shared by them, and changed when the daemon reloads
    /// its configuration).
    pub send_cap: Throttle,
    /// Paces the file bytes the daemon sends on this connection: at the
    /// limit the peer asked for it, within the peer's cap.
    pub throttle: Throttle,
    /// How long one of the peer's data streams may make no progress before
    /// it is reset with `STALLED` (`[limits] stall_timeout`).
    pub stall_limit: std::time::Duration,
}

/// What every connection is served with.
pub(super) struct Context {
    /// The served directories, with this connection's own read budget.
    pub service: LocalService,
    /// The pinned peers.
    pub peers: Arc<PinnedPeers>,
    /// Peer id to the most the daemon sends that peer.
    pub send_limits: Arc<BTreeMap<String, Rate>>,
    /// Places for connections, per peer.
    pub admission: Arc<Admission>,
    /// Counts and logs refused connections.
    pub refusals: Arc<Refusals>,
    /// Turns for listings, per peer.
    pub listings: Arc<ListingGate>,
    /// What the last connection to each peer measured of the path.
    pub known_paths: Arc<KnownPaths>,
    /// The `[limits]` in force when the connection arrived; those that
    /// size what the connection holds follow a reload through
    /// `admission`, `listings` and `stream_credit`.
    pub limits: Limits,
    /// The bidirectional streams a peer may have open at once, as the
    /// last reload set it.
    pub stream_credit: watch::Receiver<u32>,
}

/// Handles one incoming connection to its end, holding `place` in the
/// daemon's connections. Never panics the daemon: every failure is logged
/// and ends this connection only.
pub(super) async fn handle(incoming: Incoming, mut place: ConnectionPlace, context: Context) {
    let Context {
        service,
        peers,
        send_limits,
        admission,
        refusals,
        listings,
        known_paths,
        limits,
        stream_credit,
    } = context;
    let address = incoming.remote_address();
    let handshake = incoming.await;
    place.handshake_done();
    let connection = match handshake {
        Ok(connection) => connection,
        Err(e) => {
            let reason = e.to_string();
            let fingerprint = fingerprint_in(&reason);
            let label = match fingerprint {
                Some(_) => "unknown_certificate",
                None => "handshake_failed",
            };
            let Some(also) = refusals.count(label) else {
                return;
            };
            match fingerprint {
                Some(fingerprint) => tracing::warn!(
                    remote = %address,
                    fingerprint,
                    "refused connection: unknown peer certificate {fingerprint}{also}"
                ),
                None => tracing::warn!(remote = %address, "refused connection: {reason}{also}"),
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
    let Some(place) = admission.admit_peer(&id, cap) else {
        if let Some(also) = refusals.count("peer_full") {
            tracing::warn!(peer = %id, remote = %address, "refused connection: this peer holds its most connections{also}");
        }
        connection.close(
            VarInt::from_u32(code::BUSY),
            b"this peer holds the most connections the daemon allows it",
        );
        return;
    };
    let peer = Peer {
        id,
        address,
        send_cap: place.shared.send_cap.clone(),
        throttle: Throttle::within(&place.shared.send_cap),
        stall_limit: limits.stall_timeout,
    };
    metrics::counter!(telemetry::CONNECTIONS_ACCEPTED).increment(1);
    let open = metrics::gauge!(telemetry::CONNECTIONS_OPEN);
    open.increment(1.0);
    metrics::gauge!(telemetry::SEND_LIMIT, "peer" => peer.id.clone())
        .set(telemetry::send_limit_value(cap));
    tracing::info!(peer = %peer.id, remote = %address, "connection accepted");
    known_paths.resume(&connection, &peer.id, address);
    let (stop_sampling, stopped) = oneshot::channel();
    let sampler = tokio::spawn(path::sample(connection.clone(), peer.id.clone(), stopped));
    let requests = place.shared.requests.clone();
    let hello_timeout = limits.hello_timeout;
    let reason = serve(
        &connection,
        &peer,
        service.for_peer(&peer.id),
        requests,
        listings,
        hello_timeout,
        stream_credit,
    )
    .await;
    let _ = stop_sampling.send(());
    let _ = sampler.await;
    known_paths.keep(&connection, &peer.id, address);
    open.decrement(1.0);
    tracing::info!(peer = %peer.id, remote = %address, "connection closed: {reason}");
}

fn peer_id(connection: &Connection, peers: &PinnedPeers) -> Option<String> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    peers.peer_id(certs.first()?).map(str::to_string)
}

/// Serves one authenticated connection: the handshake on the control
/// stream, then its requests and data streams until it ends; returns why.
async fn serve(
    connection: &Connection,
    peer: &Peer,
    service: LocalService,
    requests: Arc<Places>,
    listings: Arc<ListingGate>,
    hello_timeout: std::time::Duration,
    mut stream_credit: watch::Receiver<u32>,
) -> String {
    let (send, recv) = match greet(connection, peer, hello_timeout).await {
        Ok(control_stream) => control_stream,
        Err(reason) => return reason,
    };
    let control = tokio::spawn(control::serve(
        send,
        recv,
        service.clone(),
        connection.clone(),
        peer.clone(),
        requests,
    ));
    // A reload may have changed the credit since the connection arrived.
    stream_credit.mark_changed();
    let reason = loop {
        tokio::select! {
            accepted = connection.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    let stream =
                        streams::serve(send, recv, service.clone(), peer.clone(), listings.clone());
                    tokio::spawn(stream);
                }
                Err(e) => break e.to_string(),
            },
            // Credit already granted is never taken back: a lowered one
            // holds as the peer's streams end.
            Ok(()) = stream_credit.changed() => {
                let credit = *stream_credit.borrow_and_update();
                connection.set_max_concurrent_bi_streams(VarInt::from_u32(credit));
            }
        }
    };
    control.abort(); // and with it every request it serves
    reason
}

/// Accepts the control stream and answers the peer's `Hello`; returns the
/// control stream once both ends speak the same version, or why the
/// connection ends. A peer that neither opens its control stream nor says
/// hello within `hello_timeout` is closed, whatever the keep-alives say.
async fn greet(
    connection: &Connection,
    peer: &Peer,
    hello_timeout: std::time::Duration,
) -> Result<(SendStream, RecvStream), String> {
    let opened = tokio::time::timeout(hello_timeout, async {
        let (send, mut recv) = connection.accept_bi().await?;
        Ok::<_, quinn::ConnectionError>((send, read_frame::<_, Hello>(&mut recv).await, recv))
    })
    .await;
    let (mut send, hello, recv) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            connection.close(VarInt::from_u32(code::PROTOCOL_VIOLATION), b"no hello");
            return Err(format!("no handshake within {hello_timeout:?}"));
        }
    };
    send.set_priority(1).ok(); // Responses never wait behind file data.
    let hello = match hello {
        Ok(hello) => hello,
        Err(e) => {
            connection.close(VarInt::from_u32(code::PROTOCOL_VIOLATION), b"bad hello");
            return Err(format!("bad handshake: {e}"));
        }
    };
    if hello.version != PROTOCOL_VERSION {
        refuse_version(connection, peer, &mut send, hello.version).await;
        return Err("version mismatch".into());
    }
    let accepted = HelloReply {
        version: Ok(PROTOCOL_VERSION),
    };
    match write_frame(&mut send, &accepted).await {
        Ok(()) => Ok((send, recv)),
        Err(e) => Err(e.to_string()),
    }
}

/// Tells a peer of protocol `version` that this daemon speaks another, and
/// closes the connection once the answer is delivered.
async fn refuse_version(connection: &Connection, peer: &Peer, send: &mut SendStream, version: u32) {
    let refusal = RealizeError::new(
        ErrorKind::VersionMismatch,
        format!("this daemon speaks protocol version {PROTOCOL_VERSION}, not {version}"),
    );
    tracing::warn!(peer = %peer.id, version, "protocol version mismatch");
    let _ = write_frame(
        send,
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
}
