//! Pipelined requests on the control stream: each request gets an id, a task
//! reads responses in any order and hands each to its waiting caller. The
//! first frame the task reads is the answer to the connection's `Hello`,
//! which it hands to the connection's [`super::Greeting`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quinn::{RecvStream, SendStream};
use tokio::sync::oneshot;

use crate::protocol::{
    read_frame, write_frame, ControlReply, ControlRequest, HelloReply, RealizeError, Request,
    Response,
};
use crate::service::ServiceError;
use crate::transport::TransportError;

type Reply = Result<ControlReply, RealizeError>;

/// The daemon's answer to `Hello`, or why none came, still to come.
pub(super) type HelloAnswer = oneshot::Receiver<Result<HelloReply, TransportError>>;

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Reply>>,
    /// Set once the stream failed; every later call fails with it.
    failed: Option<TransportError>,
}

/// The client's end of the control stream.
pub(super) struct ControlChannel {
    send: tokio::sync::Mutex<SendStream>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
}

impl ControlChannel {
    /// Takes over a control stream on which `Hello` was sent; returns it
    /// with the daemon's `HelloReply` to come. Requests may be sent at
    /// once: the daemon answers them only once it has accepted the `Hello`,
    /// and if it refuses, every request fails.
    pub(super) fn start(send: SendStream, recv: RecvStream) -> (Self, HelloAnswer) {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (greeted, reply) = oneshot::channel();
        tokio::spawn(read_responses(recv, pending.clone(), greeted));
        let channel = Self {
            send: tokio::sync::Mutex::new(send),
            pending,
            next_id: AtomicU64::new(1),
        };
        (channel, reply)
    }

    /// Sends `op` and waits for its response; other calls proceed meanwhile.
    pub(super) async fn call(&self, op: ControlRequest) -> Result<ControlReply, ServiceError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(err) = &pending.failed {
                return Err(err.clone().into());
            }
            pending.waiting.insert(id, tx);
        }
        let sent = write_frame(&mut *self.send.lock().await, &Request { id, op }).await;
        if let Err(e) = sent {
            lock(&self.pending).waiting.remove(&id);
            return Err(TransportError::from(e).into());
        }
        match rx.await {
            Ok(reply) => Ok(reply?),
            Err(_) => Err(self.failure().into()),
        }
    }

    fn failure(&self) -> TransportError {
        lock(&self.pending)
            .failed
            .clone()
            .unwrap_or_else(|| TransportError::Connection("control stream closed".into()))
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the `HelloReply`, hands it to `greeted`, then, if the daemon
/// accepted, hands each response to its caller until the stream ends.
async fn read_responses(
    mut recv: RecvStream,
    pending: Arc<Mutex<Pending>>,
    greeted: oneshot::Sender<Result<HelloReply, TransportError>>,
) {
    let failure = match read_frame::<_, HelloReply>(&mut recv).await {
        Ok(reply) => {
            let accepted = reply.version.is_ok();
            let _ = greeted.send(Ok(reply));
            match accepted {
                true => answer(&mut recv, &pending).await,
                false => TransportError::Protocol("the daemon refused the handshake".into()),
            }
        }
        Err(e) => {
            let failure = TransportError::from(e);
            let _ = greeted.send(Err(failure.clone()));
            failure
        }
    };
    tracing::debug!(error = %failure, "control stream ended");
    let mut pending = lock(&pending);
    pending.failed = Some(failure);
    pending.waiting.clear(); // Dropping the senders wakes every caller.
}

/// Hands each response on `recv` to its caller; returns why it stopped.
async fn answer(recv: &mut RecvStream, pending: &Mutex<Pending>) -> TransportError {
    loop {
        match read_frame::<_, Response>(recv).await {
            Ok(response) => {
                let waiter = lock(pending).waiting.remove(&response.id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(response.result);
                    }
                    None => {
                        break TransportError::Protocol(format!(
                            "response to unknown request {}",
                            response.id
                        ))
                    }
                }
            }
            Err(e) => break TransportError::from(e),
        }
    }
}
