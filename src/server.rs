//! `realized`: serves local directories to pinned peers over QUIC.
//!
//! [`Daemon::bind`] loads the identity and peers, opens the directories and
//! binds the UDP socket; [`Daemon::run`] accepts connections until shutdown,
//! and applies the configurations it is handed meanwhile (a reload).
//! Each connection is handled by [`connection`]: the control stream first,
//! then one task per data stream, all backed by the same
//! [`LocalService`] the command uses for local paths.

mod admission;
mod collector;
pub mod config;
mod connection;
mod known_paths;
mod limits;
mod listing_gate;
mod places;
mod refusals;

use admission::{Admission, Entry};
use known_paths::KnownPaths;
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
    /// The QUIC transport settings; a reload changes only the stream
    /// credit (`[limits] streams_per_connection`).
    tuning: Tuning,
    /// The stream credit of every connection, open ones included.
    stream_credit: tokio::sync::watch::Sender<u32>,
    /// The blocking threads the daemon's runtime has: `realized` sizes its
    /// pool for the limits it starts with, and tokio cannot resize it.
    blocking_threads: usize,
    /// What a reload changes, for the connections that arrive after it.
    served: Served,
    /// Where the daemon listens and serves metrics, fixed at start.
    addresses: (SocketAddr, Option<SocketAddr>),
    admission: Arc<Admission>,
    refusals: Arc<Refusals>,
    listings: Arc<ListingGate>,
    known_paths: Arc<KnownPaths>,
}

/// What a configuration sets that the daemon can change while it runs.
/// Each connection keeps what was in force when it arrived.
struct Served {
    service: LocalService,
    peers: Arc<PinnedPeers>,
    send_limits: Arc<BTreeMap<String, Rate>>,
    limits: Limits,
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
    /// Loads `config`; its directories are served with the workers and
    /// locks of `running`, the service of a running daemon, if given.
    fn new(config: &DaemonConfig, running: Option<&LocalService>) -> Result<Self, StartError> {
        let identity = Identity::load(&config.key, &config.cert)?;
        let peers = Arc::new(load_peers(config)?);
        let dirs = config.dirs.clone();
        let service = match running {
            Some(running) => running.serving(dirs),
            None => LocalService::new(dirs),
        };
        let mut service = service
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
    let loaded = Loaded::new(config, None)?;
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
        let loaded = Loaded::new(config, None)?;
        let tuning = Tuning {
            max_streams: config.limits.quic_streams(),
            ..tuning.clone()
        };
        let server = server_config(loaded.crypto, &tuning);
        let endpoint = bind(config.listen, Some(server), &tuning)
            .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", config.listen)))?;
        tracing::info!(
            fingerprint = %loaded.identity.fingerprint(),
            dirs = config.dirs.len(),
            peers = config.peers.len(),
            "daemon ready"
        );
        Ok(Self {
            endpoint,
            stream_credit: tokio::sync::watch::Sender::new(tuning.max_streams),
            tuning,
            blocking_threads: config.limits.blocking_threads(),
            served: Served::new(loaded.service, loaded.peers, config),
            addresses: (config.listen, config.metrics),
            admission: Admission::new(config.limits),
            refusals: Arc::default(),
            listings: ListingGate::new(config.limits.listings, config.limits.listings_per_peer),
            known_paths: Arc::default(),
        })
    }

    /// The address the daemon listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves connections until `shutdown` completes, then closes them,
    /// waits briefly for the peers to acknowledge, and waits until every
    /// write under way has ended: its file made final if its finish had
    /// begun, else its partial file holding what arrived.
    /// Each configuration received from `reloads` replaces the one in force
    /// if it loads (see [`Daemon::reload`]).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut reloads: tokio::sync::mpsc::Receiver<DaemonConfig>,
    ) {
        tracing::info!(address = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        tokio::pin!(shutdown);
        let mut collector = self.served.collect_partials();
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => self.admit(incoming),
                    None => break,
                },
                Some(config) = reloads.recv() => {
                    if self.reload(&config) {
                        collector.abort();
                        collector = self.served.collect_partials();
                    }
                }
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutting down");
        collector.abort();
        self.endpoint
            .close(VarInt::from_u32(code::SHUTDOWN), b"daemon shutting down");
        let idle = self.endpoint.wait_idle();
        let _ = tokio::time::timeout(Duration::from_secs(5), idle).await;
        self.served.service.shutdown().await;
        tracing::info!("stopped");
    }

    /// Applies `config` to the connections that arrive from now on: its
    /// key and certificate, `[peers]`, `[dirs]`, `keep_owner` and
    /// `[limits]`. `[send_limits]` and the `[limits]` that count what
    /// connections hold apply at once to the connections open too (see
    /// [`Daemon::set_limits`]); otherwise connections already open keep
    /// their directories and limits. A configuration that does not load
    /// changes nothing; the error is logged. Returns whether it was
    /// applied.
    fn reload(&mut self, config: &DaemonConfig) -> bool {
        let loaded = match Loaded::new(config, Some(&self.served.service)) {
            Ok(loaded) => loaded,
            Err(e) => {
                log_reload_refused(&e);
                return false;
            }
        };
        self.set_limits(&config.limits);
        self.endpoint
            .set_server_config(Some(server_config(loaded.crypto, &self.tuning)));
        self.admission.set_send_caps(&config.send_limits);
        let mut kept = Vec::new();
        if config.listen != self.addresses.0 {
            kept.push("listen");
        }
        if config.metrics != self.addresses.1 {
            kept.push("metrics");
        }
        self.served = Served::new(loaded.service, loaded.peers, config);
        tracing::info!(
            fingerprint = %loaded.identity.fingerprint(),
            dirs = config.dirs.len(),
            peers = config.peers.len(),
            "configuration reloaded"
        );
        if !kept.is_empty() {
            tracing::warn!(
                keys = %kept.join(", "),
                "changed settings that apply only when the daemon restarts"
            );
        }
        true
    }

    /// Makes `limits` count the places of connections, handshakes,
    /// requests, listings and streams from now on, the connections open
    /// included. A raised bound frees places at once; a lowered one takes
    /// back none in use, and lets no new one be taken until fewer are
    /// held than it allows. The blocking thread pool keeps its size: if
    /// the new limits could use more threads, that is logged.
    fn set_limits(&mut self, limits: &Limits) {
        self.admission.set_limits(limits);
        self.listings
            .resize(limits.listings, limits.listings_per_peer);
        self.tuning.max_streams = limits.quic_streams();
        self.stream_credit.send_replace(self.tuning.max_streams);
        let wanted = limits.blocking_threads();
        if wanted > self.blocking_threads {
            tracing::warn!(
                threads = self.blocking_threads,
                wanted,
                "the blocking thread pool keeps its size until the daemon restarts: with \
                 these [limits], a stream or request may wait for a thread another one holds"
            );
        }
    }
}

/// Logs that a configuration read for a reload was not applied, and why.
pub fn log_reload_refused(error: &dyn std::fmt::Display) {
    tracing::error!("configuration not reloaded, the daemon goes on with the one it had: {error}");
}

impl Served {
    fn new(service: LocalService, peers: Arc<PinnedPeers>, config: &DaemonConfig) -> Self {
        Self {
            service,
            peers,
            send_limits: Arc::new(config.send_limits.clone()),
            limits: config.limits,
        }
    }

    /// Starts removing the abandoned partial files of the served
    /// directories.
    fn collect_partials(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(collector::run(
            self.service.clone(),
            self.limits.partial_max_age,
        ))
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
        let served = &self.served;
        let context = connection::Context {
            service: served
                .service
                .with_read_budget(ReadBudget::new(served.limits.read_buffer_per_connection)),
            peers: served.peers.clone(),
            send_limits: served.send_limits.clone(),
            admission: self.admission.clone(),
            refusals: self.refusals.clone(),
            listings: self.listings.clone(),
            known_paths: self.known_paths.clone(),
            limits: served.limits,
            stream_credit: self.stream_credit.subscribe(),
        };
        tokio::spawn(connection::handle(incoming, place, context));
    }
}

/// The QUIC server configuration of `crypto` with `tuning`.
fn server_config(
    crypto: quinn::crypto::rustls::QuicServerConfig,
    tuning: &Tuning,
) -> quinn::ServerConfig {
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(tuning.transport_config()));
    server
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
