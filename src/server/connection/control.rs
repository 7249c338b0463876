//! The daemon's side of the control stream: requests are served
//! concurrently, within the peer's share of requests at once over all its
//! connections, and answered in whatever order they complete. They belong
//! to the connection: when it ends, they are aborted.

use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::Peer;
use crate::protocol::{
    code, read_frame, write_frame, ControlReply, ControlRequest, ErrorKind, FrameError,
    RealizeError, Request, Response,
};
use crate::server::places::{Held, Places};
use crate::service::local::LocalService;
use crate::service::Service;
use crate::telemetry;
use crate::throttle::Rate;
use crate::transport::measure::path_sample;

/// Serves requests until the client closes the stream or breaks the
/// protocol, each once it has a place among the peer's `requests`; while a
/// request waits for one, the next stays unread. After the client closed
/// the stream, the requests in progress are served to their end; dropping
/// this future aborts them.
pub(super) async fn serve(
    send: SendStream,
    mut recv: RecvStream,
    service: LocalService,
    connection: Connection,
    peer: Peer,
    requests: Arc<Places>,
) {
    let send = Arc::new(Mutex::new(send));
    let mut served = JoinSet::new();
    loop {
        while served.try_join_next().is_some() {}
        let request: Request = match read_frame(&mut recv).await {
            Ok(request) => request,
            Err(FrameError::Closed) => break,
            Err(e @ (FrameError::Malformed(_) | FrameError::TooLarge(_))) => {
                tracing::warn!(peer = %peer.id, remote = %peer.address, "protocol violation on the control stream: {e}");
                connection.close(
                    VarInt::from_u32(code::PROTOCOL_VIOLATION),
                    b"malformed request",
                );
                return;
            }
            Err(FrameError::Io(e)) => {
                tracing::debug!(peer = %peer.id, "control stream ended: {e}");
                return;
            }
        };
        let place = requests.take().await;
        let answer = Answer {
            send: send.clone(),
            service: service.clone(),
            peer: peer.clone(),
            connection: connection.clone(),
        };
        served.spawn(answer.serve(request, place));
    }
    served.join_all().await;
}

/// What answering one request needs.
struct Answer {
    send: Arc<Mutex<SendStream>>,
    service: LocalService,
    peer: Peer,
    connection: Connection,
}

impl Answer {
    /// Executes `request` and writes its response; `_place` is given back
    /// once the response is written, so a peer that reads no responses
    /// holds no more than its share.
    async fn serve(self, request: Request, _place: Held) {
        let op = op_name(&request.op);
        let started = std::time::Instant::now();
        let result = execute(&self.service, request.op, &self.peer, &self.connection).await;
        let status = match &result {
            Ok(_) => "ok",
            Err(e) => {
                metrics::counter!(telemetry::ERRORS, "kind" => e.kind.label()).increment(1);
                "error"
            }
        };
        metrics::counter!(telemetry::RPC_REQUESTS, "op" => op, "status" => status).increment(1);
        metrics::histogram!(telemetry::RPC_DURATION, "op" => op)
            .record(started.elapsed().as_secs_f64());
        let response = Response {
            id: request.id,
            result,
        };
        if let Err(e) = write_frame(&mut *self.send.lock().await, &response).await {
            tracing::debug!(peer = %self.peer.id, "cannot answer request {}: {e}", request.id);
        }
    }
}

fn op_name(op: &ControlRequest) -> &'static str {
    match op {
        ControlRequest::Hash { .. } => "hash",
        ControlRequest::BlockHashes { .. } => "block_hashes",
        ControlRequest::Configure { .. } => "configure",
        ControlRequest::RootIdentity { .. } => "root_identity",
        ControlRequest::Delete { .. } => "delete",
        ControlRequest::PathStats => "path_stats",
        ControlRequest::SetAttributes { .. } => "set_attributes",
        ControlRequest::ListDirs => "list_dirs",
    }
}

/// Sets the limit the peer asks for this connection; the daemon keeps the
/// peer's cap over all its connections too. Returns the limit in force.
fn configure(requested: Option<u64>, peer: &Peer) -> Result<ControlReply, RealizeError> {
    let requested = match requested.map(Rate::new).transpose() {
        Ok(requested) => requested,
        Err(e) => {
            tracing::warn!(peer = %peer.id, "refused send limit: {e}");
            return Err(RealizeError::new(ErrorKind::Protocol, e));
        }
    };
    let old = peer.throttle.limit();
    peer.throttle.set(requested);
    let limit = peer.throttle.limit();
    metrics::gauge!(telemetry::SEND_LIMIT, "peer" => peer.id.clone())
        .set(telemetry::send_limit_value(limit));
    let show = |rate: Option<Rate>| rate.map_or("unlimited".to_string(), |r| r.to_string());
    tracing::info!(
        peer = %peer.id,
        direction = "send",
        old = %show(old),
        new = %show(limit),
        requested = %show(requested),
        cap = %show(peer.send_cap.rate()),
        "send limit changed"
    );
    Ok(ControlReply::Configured {
        send_limit: limit.map(Rate::bytes_per_second),
    })
}

async fn execute(
    service: &LocalService,
    op: ControlRequest,
    peer: &Peer,
    connection: &Connection,
) -> Result<ControlReply, RealizeError> {
    let result = match &op {
        ControlRequest::Hash { dir, path } => service.hash(dir, path).await.map(ControlReply::Hash),
        ControlRequest::BlockHashes {
            dir,
            path,
            state,
            block_size,
            length,
        } => service
            .block_hashes(dir, path, *state, *block_size, *length)
            .await
            .map(ControlReply::BlockHashes),
        ControlRequest::RootIdentity { dir } => service
            .root_identity(dir)
            .await
            .map(ControlReply::RootIdentity),
        ControlRequest::Configure { send_limit } => {
            return configure(*send_limit, peer);
        }
        ControlRequest::PathStats => {
            return Ok(ControlReply::PathStats(path_sample(connection)));
        }
        ControlRequest::ListDirs => return Ok(ControlReply::Dirs(service.dir_ids())),
        ControlRequest::Delete {
            dir,
            path,
            expected,
        } => service
            .delete(dir, path, *expected)
            .await
            .map(|()| ControlReply::Deleted),
        ControlRequest::SetAttributes {
            dir,
            path,
            expected,
            attributes,
        } => service
            .set_attributes(dir, path, *expected, *attributes)
            .await
            .map(|()| ControlReply::AttributesSet),
    };
    match result {
        Ok(reply) => {
            if let ControlRequest::Delete { dir, path, .. } = &op {
                tracing::info!(peer = %peer.id, dir = %dir, path = %path, "deleted source file");
            }
            Ok(reply)
        }
        Err(e) => {
            let e = e.into_realize();
            tracing::warn!(peer = %peer.id, kind = ?e.kind, "request failed: {e}");
            Err(e)
        }
    }
}
