//! `realized`: serves local directories to pinned peers over QUIC.
//!
//! [`Daemon::bind`] loads the identity and peers, opens the directories and
//! binds the UDP socket; [`Daemon::run`] accepts connections until shutdown.
//! Each connection is handled by [`connection`]: the control stream first,
//! then one task per data stream, all backed by the same
//! [`LocalService`] the command uses for local paths.

mod admission;
mod collector;
pub mod config;
mod connection;
mod limits;
mod listing_gate;
mod refusals;

use admission::{Admission, Entry};
pub use limits::Limits;
use listing_gate::ListingGate;
use refusals::Refusals;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, VarInt};

pub use self::config::{ConfigError, DaemonConfig};
use crate::protocol::code;
use crate::service::local::{LocalService, ReadBudget};
use crate::telemetry;
use crate::throttle::Rate;
use crate::transport::endpoint::{bind, Tuning};
use crate::transport::identity::{load_certificates, Fingerprint, Identity, IdentityError};
use crate::transport::tls::{server_crypto, PinError, PinnedPeers};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key, certificate or a peer certificate is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A served directory or the socket could not be opened.
    #[error("{0}")]
    Io(String),
    /// Two `[peers]` entries pin the same key; the message names both and
    /// their files.
    #[error("{0}")]
    SharedKey(String),
}

/// A bound daemon, ready to run.
pub struct Daemon {
    endpoint: Endpoint,
    service: LocalService,
    peers: Arc<PinnedPeers>,
    send_limits: Arc<BTreeMap<String, Rate>>,
    admission: Arc<Admission>,
    refusals: Arc<Refusals>,
    listings: Arc<ListingGate>,
    /// Bytes each connection's reads may hold in memory.
    read_buffer: u64,
    /// Age beyond which a partial file no writer holds is removed.
    partial_max_age: Duration,
}

/// What `realized --check-config` reports of a configuration whose every
/// file and directory loaded: the keys, as peers will see them.
#[derive(Debug)]
pub struct CheckedConfig {
    /// The fingerprint of the daemon's own key.
    pub fingerprint: Fingerprint,
    /// Each peer id with the fingerprints of the keys pinned under it.
    pub peers: BTreeMap<String, Vec<Fingerprint>>,
}

/// Everything a configuration names, loaded and checked: all the daemon
/// needs but its socket.
struct Loaded {
    identity: Identity,
    peers: Arc<PinnedPeers>,
    service: LocalService,
    crypto: quinn::crypto::rustls::QuicServerConfig,
}

impl Loaded {
    fn new(config: &DaemonConfig) -> Result<Self, StartError> {
        let identity = Identity::load(&config.key, &config.cert)?;
        let peers = Arc::new(load_peers(config)?);
        let mut service = LocalService::new(config.dirs.clone())
            .map_err(|e| StartError::Io(e.to_string()))?
            .with_listing_depth(config.limits.listing_depth);
        if config.keep_owner {
            service = service
                .keeping_owners()
                .map_err(|e| StartError::Io(format!("keep_owner = true: {e}")))?;
        }
        let crypto = server_crypto(&identity, peers.clone())
            .map_err(|e| StartError::Io(format!("{}: {e}", config.key.display())))?;
        Ok(Self {
            identity,
            peers,
            service,
            crypto,
        })
    }
}

/// Loads and checks everything `config` names, as [`Daemon::bind`] does,
/// but binds nothing: a running daemon is not disturbed.
pub fn check(config: &DaemonConfig) -> Result<CheckedConfig, StartError> {
    let loaded = Loaded::new(config)?;
    let mut peers: BTreeMap<String, Vec<Fingerprint>> = BTreeMap::new();
    for (peer, fingerprint) in loaded.peers.pinned() {
        peers
            .entry(peer.to_string())
            .or_default()
            .push(fingerprint.clone());
    }
    peers.values_mut().for_each(|keys| keys.sort());
    Ok(CheckedConfig {
        fingerprint: loaded.identity.fingerprint(),
        peers,
    })
}

impl Daemon {
    /// Loads everything `config` names and binds its listening socket.
    pub fn bind(config: &DaemonConfig, tuning: &Tuning) -> Result<Self, StartError> {
        let Loaded {
            identity,
            peers,
            service,
            crypto,
        } = Loaded::new(config)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let tuning = Tuning {
            max_streams: config.limits.quic_streams(),
            ..tuning.clone()
        };
        server.transport_config(Arc::new(tuning.transport_config()));
        let endpoint = bind(config.listen, Some(server), &tuning)
            .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", config.listen)))?;
        tracing::info!(
            fingerprint = %identity.fingerprint(),
            dirs = config.dirs.len(),
            peers = config.peers.len(),
            "daemon ready"
        );
        Ok(Self {
            endpoint,
            service,
            peers,
            send_limits: Arc::new(config.send_limits.clone()),
            admission: Admission::new(config.limits),
            refusals: Arc::default(),
            listings: ListingGate::new(config.limits.listings, config.limits.listings_per_peer),
            read_buffer: config.limits.read_buffer_per_connection,
            partial_max_age: config.limits.partial_max_age,
        })
    }

    /// The address the daemon listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves connections until `shutdown` completes, then closes them and
    /// waits briefly for in-flight writes to leave their partial files.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tracing::info!(address = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        tokio::pin!(shutdown);
        let collector = tokio::spawn(collector::run(self.service.clone(), self.partial_max_age));
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => self.admit(incoming),
                    None => break,
                },
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutting down");
        collector.abort();
        self.endpoint
            .close(VarInt::from_u32(code::SHUTDOWN), b"daemon shutting down");
        let idle = self.endpoint.wait_idle();
        let _ = tokio::time::timeout(Duration::from_secs(5), idle).await;
        tracing::info!("stopped");
    }
}

impl Daemon {
    /// Serves `incoming` if the daemon has a place for it; asks it to prove
    /// its address or refuses it before its handshake otherwise.
    fn admit(&self, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        let place = match self.admission.admit(incoming.remote_address_validated()) {
            Entry::Enter(place) => place,
            Entry::Validate => {
                metrics::counter!(telemetry::CONNECTIONS_RETRIED).increment(1);
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                return;
            }
            Entry::Refuse(full) => {
                if let Some(also) = self.refusals.count(full.label()) {
                    let what = full.what();
                    tracing::warn!(%remote, "refused connection before its handshake: the daemon holds its most {what}{also}");
                }
                incoming.refuse();
                return;
            }
        };
        let context = connection::Context {
            service: self
                .service
                .with_read_budget(ReadBudget::new(self.read_buffer)),
            peers: self.peers.clone(),
            send_limits: self.send_limits.clone(),
            admission: self.admission.clone(),
            refusals: self.refusals.clone(),
            listings: self.listings.clone(),
        };
        tokio::spawn(connection::handle(incoming, place, context));
    }
}

fn load_peers(config: &DaemonConfig) -> Result<PinnedPeers, StartError> {
    let mut all = Vec::new();
    for (name, path) in &config.peers {
        for cert in load_certificates(path)? {
            all.push((name.clone(), cert));
        }
    }
    PinnedPeers::new(all.iter().map(|(name, cert)| (name.clone(), cert))).map_err(|e| match e {
        PinError::SharedKey {
            fingerprint,
            first,
            second,
        } => StartError::SharedKey(format!(
            "[peers] {first} ({}) and {second} ({}) pin the same key {fingerprint}: a key \
             must have one peer id, or a [send_limits] cap set on one would not hold for the \
             other; keep one of them",
            config.peers[&first].display(),
            config.peers[&second].display()
        )),
        PinError::Invalid(e) => StartError::Io(e),
    })
}
