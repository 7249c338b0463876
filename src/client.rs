//! The QUIC client: connects to a daemon and implements [`Service`] over the
//! wire, so the move algorithm drives a remote directory exactly like a local
//! one.
//!
//! Control requests (hash, delete) are pipelined on the control stream by
//! [`control::ControlChannel`]; listings and file transfers each open their
//! own stream ([`streams`]), so many files are in flight at once and none
//! waits for a round trip before its data flows. The streams of
//! `realize bench` carry generated data instead of files ([`DiscardStream`],
//! [`GeneratedStream`]).

mod bench;
mod control;
mod greeting;
mod known_paths;
mod listing;
mod streams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use quinn::{Endpoint, VarInt};
use rustls::pki_types::CertificateDer;

pub use self::bench::{DiscardStream, GeneratedStream};
use self::control::ControlChannel;
use self::greeting::Dialled;
pub use self::greeting::Greeting;
use self::known_paths::PathMemory;
use crate::model::{
    Attributes, Delta, DirectoryId, FileStamp, FileState, Hash, RelPath, RootIdentity, WritePlan,
};
use crate::protocol::{code, write_frame, ControlReply, ControlRequest, Hello, PROTOCOL_VERSION};
use crate::service::{FileReader, FileWriter, Listing, Service, ServiceError};
use crate::throttle::Rate;
use crate::transport::congestion;
use crate::transport::endpoint::{bind, Tuning};
use crate::transport::identity::Identity;
use crate::transport::tls::{client_crypto, PinnedDaemon};
use crate::transport::TransportError;

/// The server name sent in TLS; pinning makes it irrelevant to trust.
const SERVER_NAME: &str = "realized";

/// How long [`Client::shutdown`] waits at most for close frames to leave
/// idle connections.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// How often [`Closing::sent`] looks whether the close frame has left.
const CLOSE_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// How long [`Client::shutdown`] lets busy connections drain.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The one daemon a connection is meant for: the key it must present, and
/// the flag or file that named it, so a refusal can say what to check.
#[derive(Debug, Clone)]
pub struct ExpectedDaemon {
    key: Arc<PinnedDaemon>,
    named_by: String,
}

impl ExpectedDaemon {
    /// Expects the key of `cert`, named by `named_by` (such as
    /// `--dst-peer hostb.crt`).
    pub fn new(cert: &CertificateDer<'_>, named_by: impl Into<String>) -> Result<Self, String> {
        Ok(Self {
            key: Arc::new(PinnedDaemon::new(cert)?),
            named_by: named_by.into(),
        })
    }
}

/// A QUIC client endpoint with this host's identity. Each connection says
/// which daemon it expects.
pub struct Client {
    endpoint: Endpoint,
    identity: Identity,
    transport: Arc<quinn::TransportConfig>,
    connect_timeout: std::time::Duration,
    /// Where what each connection measured of its path is kept for the
    /// next command (see [`Client::remembering_paths_in`]).
    known_paths: Option<PathBuf>,
}

impl Client {
    /// Makes a client endpoint on an ephemeral UDP port.
    pub fn new(identity: &Identity, tuning: &Tuning) -> std::io::Result<Self> {
        // Each connection builds its own TLS configuration; building one now,
        // whatever daemon it expects, stops a key that does not match its
        // certificate at start rather than at the first connection.
        let any = PinnedDaemon::new(&identity.certificate).map_err(std::io::Error::other)?;
        client_crypto(identity, Arc::new(any)).map_err(std::io::Error::other)?;
        let endpoint = bind("[::]:0".parse().expect("valid address"), None, tuning)
            .or_else(|_| bind("0.0.0.0:0".parse().expect("valid address"), None, tuning))?;
        Ok(Self {
            endpoint,
            identity: Identity {
                certificate: identity.certificate.clone(),
                key: identity.key.clone_key(),
            },
            transport: Arc::new(tuning.transport_config()),
            connect_timeout: tuning.connect_timeout,
            known_paths: None,
        })
    }

    /// Keeps in `dir` what each connection measured of the path to its
    /// daemon (a small file per daemon), and starts the next connection to
    /// that daemon at the same address from it: a long path is full within
    /// a few round trips instead of ten or more.
    pub fn remembering_paths_in(mut self, dir: PathBuf) -> Self {
        self.known_paths = Some(dir);
        self
    }

    /// Connects to the daemon at `addr`, refusing any key but `daemon`'s,
    /// and completes the version handshake. Only then is the daemon known
    /// to have accepted our certificate.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        daemon: &ExpectedDaemon,
    ) -> Result<RemoteService, TransportError> {
        let (remote, greeting) = self.open(addr, daemon).await?;
        greeting.accepted().await?;
        Ok(remote)
    }

    /// Connects to the daemon at `addr`, refusing any key but `daemon`'s,
    /// and says `Hello` without waiting for the answer, so that requests
    /// go out a round trip sooner: the daemon answers none of them before
    /// it has accepted the `Hello`. Until [`Greeting::accepted`] returns,
    /// the daemon is not known to have accepted this client.
    pub async fn open(
        &self,
        addr: SocketAddr,
        daemon: &ExpectedDaemon,
    ) -> Result<(RemoteService, Greeting), TransportError> {
        let dialled = Dialled {
            addr,
            daemon: daemon.clone(),
            own: self.identity.fingerprint(),
        };
        tokio::time::timeout(self.connect_timeout, self.say_hello(dialled.clone()))
            .await
            .unwrap_or_else(|_| Err(dialled.no_answer(self.connect_timeout)))
    }

    /// The QUIC configuration of a connection that accepts only `daemon`.
    fn config_for(&self, daemon: &ExpectedDaemon) -> Result<quinn::ClientConfig, TransportError> {
        let crypto = client_crypto(&self.identity, daemon.key.clone())
            .map_err(|e| TransportError::Authentication(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        Ok(config)
    }

    /// [`Client::open`] without its time limit.
    async fn say_hello(
        &self,
        dialled: Dialled,
    ) -> Result<(RemoteService, Greeting), TransportError> {
        let addr = dialled.addr;
        let connecting = self
            .endpoint
            .connect_with(self.config_for(&dialled.daemon)?, addr, SERVER_NAME)
            .map_err(|e| TransportError::Connection(format!("cannot connect to {addr}: {e}")))?;
        let connection = connecting.await.map_err(|e| dialled.explain(e))?;
        let memory = self
            .known_paths
            .as_deref()
            .map(|dir| Arc::new(PathMemory::new(dir, dialled.daemon.key.fingerprint(), addr)));
        if let Some(known) = memory.as_deref().and_then(PathMemory::recall) {
            congestion::resume(&connection, known);
        }
        let (mut send, recv) = connection.open_bi().await.map_err(|e| dialled.explain(e))?;
        send.set_priority(1).ok(); // Requests never wait behind file data.
        let hello = Hello {
            version: PROTOCOL_VERSION,
        };
        if let Err(e) = write_frame(&mut send, &hello).await {
            return Err(dialled.closed(&connection, e.into()));
        }
        let (control, reply) = ControlChannel::start(send, recv);
        let greeting = Greeting::new(reply, connection.clone(), dialled, self.connect_timeout);
        let remote = RemoteService {
            control: Arc::new(control),
            connection,
            memory,
        };
        Ok((remote, greeting))
    }

    /// Gives the connections just closed (`closing`) time to tell their
    /// daemons.
    ///
    /// A connection closed while idle sends its close frame at once; it then
    /// drains for three probe timeouts (about half a second on a 100 ms
    /// path) only to answer stray packets, which would delay every exit, so
    /// this waits until each close frame has left, at most [`CLOSE_GRACE`].
    /// A connection closed with data in flight (`busy`) may lose its close
    /// frame among full buffers; draining resends it, so this waits for the
    /// drain, at most [`DRAIN_LIMIT`].
    pub async fn shutdown(&self, closing: Vec<Closing>, busy: bool) {
        if busy {
            let _ = tokio::time::timeout(DRAIN_LIMIT, self.endpoint.wait_idle()).await;
            return;
        }
        let sent = futures::future::join_all(closing.into_iter().map(Closing::sent));
        let _ = tokio::time::timeout(CLOSE_GRACE, sent).await;
    }
}

/// A connection [`RemoteService::close`] closed, whose close frame may not
/// have left yet.
#[must_use = "hand it to Client::shutdown, or the close frame may never leave"]
pub struct Closing {
    connection: quinn::Connection,
    /// Datagrams the connection had sent once closed: a closed connection
    /// sends nothing but close frames, so one more is the close frame.
    datagrams_at_close: u64,
}

impl Closing {
    /// Returns once the close frame has been handed to the socket.
    async fn sent(self) {
        while self.connection.stats().udp_tx.datagrams <= self.datagrams_at_close {
            tokio::time::sleep(CLOSE_POLL).await;
        }
    }
}

/// A directory service on a daemon, reached over one QUIC connection.
/// Clones share the connection.
#[derive(Clone)]
pub struct RemoteService {
    connection: quinn::Connection,
    control: Arc<ControlChannel>,
    /// Where what the connection measured of its path is kept at close.
    memory: Option<Arc<PathMemory>>,
}

impl RemoteService {
    /// Closes the connection cleanly: [`code::DONE`] after a complete run,
    /// [`code::INTERRUPTED`] after one stopped early. Hand what it returns
    /// to [`Client::shutdown`] before the process exits. What the
    /// connection measured of its path is kept for the next command (see
    /// [`Client::remembering_paths_in`]).
    pub fn close(&self, interrupted: bool) -> Closing {
        let known = self
            .memory
            .as_deref()
            .zip(congestion::known_path(&self.connection));
        if let Some((memory, known)) = known {
            memory.remember(known);
        }
        match interrupted {
            false => self.connection.close(VarInt::from_u32(code::DONE), b"done"),
            true => self
                .connection
                .close(VarInt::from_u32(code::INTERRUPTED), b"interrupted"),
        }
        Closing {
            datagrams_at_close: self.connection.stats().udp_tx.datagrams,
            connection: self.connection.clone(),
        }
    }

    /// Sets the limit on what the daemon sends on this connection; returns
    /// the limit in force, which the daemon may cap lower.
    pub async fn configure(&self, send_limit: Option<Rate>) -> Result<Option<Rate>, ServiceError> {
        let op = ControlRequest::Configure {
            send_limit: send_limit.map(Rate::bytes_per_second),
        };
        match self.control.call(op).await? {
            ControlReply::Configured { send_limit } => send_limit
                .map(Rate::new)
                .transpose()
                .map_err(|e| TransportError::Protocol(e).into()),
            other => Err(unexpected(other)),
        }
    }

    /// The ids of the directories the daemon serves, in order.
    pub async fn list_dirs(&self) -> Result<Vec<DirectoryId>, ServiceError> {
        match self.control.call(ControlRequest::ListDirs).await? {
            ControlReply::Dirs(dirs) => Ok(dirs),
            other => Err(unexpected(other)),
        }
    }

    /// The daemon's address (an IPv4 address as such, not IPv4-mapped IPv6).
    pub fn remote_address(&self) -> SocketAddr {
        let address = self.connection.remote_address();
        SocketAddr::new(address.ip().to_canonical(), address.port())
    }
}

#[async_trait]
impl Service for RemoteService {
    async fn list(&self, dir: &DirectoryId) -> Result<Listing, ServiceError> {
        streams::list(&self.connection, dir).await
    }

    async fn read(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        delta: &Delta,
    ) -> Result<Box<dyn FileReader>, ServiceError> {
        let reader = streams::RemoteReader::open(&self.connection, dir, path, delta).await?;
        Ok(Box::new(reader))
    }

    async fn write(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        plan: &WritePlan,
    ) -> Result<Box<dyn FileWriter>, ServiceError> {
        let writer = streams::RemoteWriter::open(&self.connection, dir, path, plan).await?;
        Ok(Box::new(writer))
    }

    async fn hash(&self, dir: &DirectoryId, path: &RelPath) -> Result<Hash, ServiceError> {
        let op = ControlRequest::Hash {
            dir: dir.clone(),
            path: path.clone(),
        };
        match self.control.call(op).await? {
            ControlReply::Hash(hash) => Ok(hash),
            other => Err(unexpected(other)),
        }
    }

    async fn block_hashes(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        state: FileState,
        block_size: u64,
        length: u64,
    ) -> Result<Vec<Hash>, ServiceError> {
        let op = ControlRequest::BlockHashes {
            dir: dir.clone(),
            path: path.clone(),
            state,
            block_size,
            length,
        };
        match self.control.call(op).await? {
            ControlReply::BlockHashes(hashes)
                if hashes.len() as u64 == length.div_ceil(block_size) =>
            {
                Ok(hashes)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn root_identity(&self, dir: &DirectoryId) -> Result<RootIdentity, ServiceError> {
        let op = ControlRequest::RootIdentity { dir: dir.clone() };
        match self.control.call(op).await? {
            ControlReply::RootIdentity(identity) => Ok(identity),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        expected: FileStamp,
    ) -> Result<(), ServiceError> {
        let op = ControlRequest::Delete {
            dir: dir.clone(),
            path: path.clone(),
            expected,
        };
        match self.control.call(op).await? {
            ControlReply::Deleted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn set_attributes(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        expected: FileStamp,
        attributes: Attributes,
    ) -> Result<(), ServiceError> {
        let op = ControlRequest::SetAttributes {
            dir: dir.clone(),
            path: path.clone(),
            expected,
            attributes,
        };
        match self.control.call(op).await? {
            ControlReply::AttributesSet => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: ControlReply) -> ServiceError {
    TransportError::Protocol(format!("unexpected reply {reply:?}")).into()
}
