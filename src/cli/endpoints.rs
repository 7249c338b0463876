//! Turning the endpoint flags into services: local roots, or connections to
//! daemons through one QUIC client endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::args::{MoveArgs, TrustArgs};
use super::peers::{self, RemoteSide, SharedPeers};
use super::settings::ClientSettings;
use super::CliError;
use crate::client::{Client, ExpectedDaemon, RemoteService};
use crate::model::{DirectoryId, RootIdentity};
use crate::server::config::DEFAULT_PORT;
use crate::service::local::LocalService;
use crate::service::{Service, ServiceError};
use crate::transport::endpoint::Tuning;
use crate::transport::identity::Identity;

/// The two services of a move, ready to use.
pub struct Endpoints {
    /// The directory id on both sides.
    pub dir: DirectoryId,
    /// Where files come from.
    pub source: Box<dyn Service>,
    /// Where files go.
    pub destination: Box<dyn Service>,
    /// The source's daemon, when the source is remote.
    pub source_remote: Option<RemoteService>,
    client: Option<Client>,
    remotes: Vec<RemoteService>,
}

impl Endpoints {
    /// Closes connections to daemons cleanly, saying whether the run was
    /// interrupted.
    pub async fn close(self, interrupted: bool) {
        if interrupted && !self.remotes.is_empty() {
            // The streams of the files in flight were just reset. Let the
            // packets already sent reach the daemon first: a receive buffer
            // full of them could drop the one close frame that tells it why
            // the connection ends.
            tokio::time::sleep(SETTLE_BEFORE_CLOSE).await;
        }
        for remote in &self.remotes {
            remote.close(interrupted);
        }
        if let Some(client) = &self.client {
            client.shutdown(interrupted).await;
        }
    }
}

/// How long a stopped run waits between abandoning its streams and closing.
const SETTLE_BEFORE_CLOSE: std::time::Duration = std::time::Duration::from_millis(50);

enum Spec<'a> {
    Local(PathBuf),
    Remote(RemoteSide<'a>),
}

impl<'a> Spec<'a> {
    /// The side of `path` or `addr`, whichever was given; `flag` and `file`
    /// name the certificate its daemon must present.
    fn of(
        path: &Option<PathBuf>,
        addr: &'a Option<String>,
        flag: &'static str,
        file: &'a Option<PathBuf>,
    ) -> Self {
        match (path, addr) {
            (Some(path), _) => Spec::Local(path.clone()),
            (None, Some(addr)) => Spec::Remote(RemoteSide {
                addr,
                flag,
                file: file.as_deref(),
            }),
            (None, None) => unreachable!("clap requires one of the group"),
        }
    }

    fn remote(&self) -> Option<RemoteSide<'a>> {
        match self {
            Spec::Local(_) => None,
            Spec::Remote(side) => Some(*side),
        }
    }
}

/// Validates the flags and opens both endpoints. Every remote side is bound
/// to its daemon's certificate before anything connects.
pub async fn open(args: &MoveArgs) -> Result<Endpoints, CliError> {
    let (source, destination) = specs(args);
    let sides: Vec<RemoteSide<'_>> = [&source, &destination]
        .into_iter()
        .filter_map(Spec::remote)
        .collect();
    let dir = directory_id(args, !sides.is_empty())?;
    let (client, expected) = match sides.is_empty() {
        true => (None, Vec::new()),
        false => {
            let trust = Trust::load(&args.trust)?;
            let expected = peers::bind(&sides, trust.shared.as_ref())?;
            let tuning = Tuning {
                connect_timeout: args.connect_timeout,
                ..args.transport.tuning()
            };
            (Some(trust.client(&tuning)?), expected)
        }
    };
    let mut expected = expected.iter();
    let mut remotes = Vec::new();
    let mut services = Vec::new();
    for (spec, create) in [(&source, false), (&destination, true)] {
        let service: Box<dyn Service> = match spec {
            Spec::Local(path) => Box::new(local(&dir, path, create, args)?),
            Spec::Remote(side) => {
                let client = client.as_ref().expect("a client exists for a remote side");
                let daemon = expected.next().expect("one daemon per remote side");
                let remote = connect(client, side.addr, daemon).await?;
                remotes.push(remote.clone());
                Box::new(remote)
            }
        };
        services.push(service);
    }
    let source_remote = match source {
        Spec::Remote(_) => remotes.first().cloned(),
        Spec::Local(_) => None,
    };
    let destination = services.pop().expect("two services");
    let source = services.pop().expect("two services");
    Ok(Endpoints {
        dir,
        source,
        destination,
        source_remote,
        client,
        remotes,
    })
}

/// The source and destination the flags name.
fn specs(args: &MoveArgs) -> (Spec<'_>, Spec<'_>) {
    let (src, dst) = (&args.source, &args.destination);
    let peers = &args.daemons;
    (
        Spec::of(&src.src_path, &src.src_addr, "--src-peer", &peers.src_peer),
        Spec::of(&dst.dst_path, &dst.dst_addr, "--dst-peer", &peers.dst_peer),
    )
}

/// `--directory-id`, which a remote side requires.
fn directory_id(args: &MoveArgs, any_remote: bool) -> Result<DirectoryId, CliError> {
    match (&args.directory_id, any_remote) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, false) => Ok(DirectoryId::new("dir").expect("valid id")),
        (None, true) => Err(CliError::Usage(
            "--directory-id is required when an endpoint is remote".into(),
        )),
    }
}

/// Resolves `addr` and connects to the daemon there, which must be `daemon`.
pub(super) async fn connect(
    client: &Client,
    addr: &str,
    daemon: &ExpectedDaemon,
) -> Result<RemoteService, CliError> {
    let addr = resolve(addr).await?;
    client
        .connect(addr, daemon)
        .await
        .map_err(|e| match e.is_retryable() {
            true => CliError::Unreachable(e.to_string()),
            false => CliError::Failed(e.to_string()),
        })
}

/// The local endpoint at `path`; the destination (`create`) is made if
/// missing (except in a dry run, which creates nothing) and keeps owners if
/// `--keep-owner`.
fn local(
    dir: &DirectoryId,
    path: &Path,
    create: bool,
    args: &MoveArgs,
) -> Result<LocalService, CliError> {
    match (create, args.dry_run) {
        (true, false) => std::fs::create_dir_all(path)
            .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?,
        (true, true) if !path.exists() => {
            return Err(CliError::Failed(format!(
                "{} does not exist: a real move would create it and move every file there; \
                 a dry run creates nothing (run without --dry-run, or create it first)",
                path.display()
            )))
        }
        _ => {}
    }
    let service = LocalService::single(dir.clone(), path)
        .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?;
    if !(create && args.keep_owner) {
        return Ok(service);
    }
    service
        .keeping_owners()
        .map_err(|e| CliError::Usage(format!("--keep-owner: {e}")))
}

impl Endpoints {
    /// Refuses a move whose source and destination are the same directory,
    /// or nested, however they are reached (local path, daemon, another
    /// address of the same daemon): every file would look already moved and
    /// be deleted. Call it before anything is changed on either side.
    pub async fn refuse_overlap(&self) -> Result<(), CliError> {
        refuse_overlap(self.source.as_ref(), self.destination.as_ref(), &self.dir).await
    }
}

async fn refuse_overlap(
    source: &dyn Service,
    destination: &dyn Service,
    dir: &DirectoryId,
) -> Result<(), CliError> {
    let (src, dst) = tokio::join!(source.root_identity(dir), destination.root_identity(dir));
    let identity = |result: Result<RootIdentity, ServiceError>, side: &str| {
        result.map_err(|e| match e {
            ServiceError::Transport(e) if e.is_retryable() => CliError::Unreachable(e.to_string()),
            e => CliError::Failed(format!("{side}: {e}")),
        })
    };
    let (src, dst) = (identity(src, "source")?, identity(dst, "destination")?);
    if src.overlaps(&dst) {
        return Err(CliError::Usage(format!(
            "source and destination are the same directory, or one contains the other \
             ({} and {})",
            src.path, dst.path
        )));
    }
    Ok(())
}

/// Resolves `HOST:PORT`, `HOST`, `IP`, `IP:PORT` or `[IPv6]:PORT`; the port
/// defaults to 9771.
pub(super) async fn resolve(addr: &str) -> Result<SocketAddr, CliError> {
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        return Ok(socket);
    }
    if let Ok(ip) = addr
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let has_port = addr
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let with_port = if has_port {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    };
    let mut found = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| CliError::Usage(format!("cannot resolve {addr}: {e}")))?;
    found
        .next()
        .ok_or_else(|| CliError::Usage(format!("{addr} resolves to no address")))
}

/// This host's identity and the peers file shared by every remote side,
/// from the flags or else the client configuration.
pub(super) struct Trust {
    identity: Identity,
    /// `--peers`, or `peers` of the client configuration.
    pub shared: Option<SharedPeers>,
}

impl Trust {
    /// Loads the key and certificate that `args` (or the client
    /// configuration) name, and notes the shared peers file.
    pub fn load(args: &TrustArgs) -> Result<Self, CliError> {
        let settings = ClientSettings::load(args.config.as_deref())?;
        let pick = |flag: &Option<PathBuf>, setting: Option<PathBuf>, name: &str| {
            flag.clone().or(setting).ok_or_else(|| {
                CliError::Usage(format!(
                    "--{name} is required for a remote endpoint (or set {name} in the client config)"
                ))
            })
        };
        let key = pick(&args.key, settings.key, "key")?;
        let cert = pick(&args.cert, settings.cert, "cert")?;
        let identity = Identity::load(&key, &cert).map_err(|e| CliError::Usage(e.to_string()))?;
        let shared = match (&args.peers, settings.peers) {
            (Some(flag), _) => Some(SharedPeers::from_flag(flag.clone())),
            (None, setting) => setting.map(SharedPeers::from_config),
        };
        Ok(Self { identity, shared })
    }

    /// A QUIC client with this identity, tuned as `tuning` says.
    pub fn client(&self, tuning: &Tuning) -> Result<Client, CliError> {
        Client::new(&self.identity, tuning)
            .map_err(|e| CliError::Failed(format!("cannot start the QUIC client: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_resolve_with_a_default_port() {
        let cases = [
            ("127.0.0.1:1234", "127.0.0.1:1234"),
            ("127.0.0.1", "127.0.0.1:9771"),
            ("::1", "[::1]:9771"),
            ("[::1]", "[::1]:9771"),
            ("[::1]:80", "[::1]:80"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                resolve(input).await.unwrap().to_string(),
                expected,
                "{input}"
            );
        }
        assert_eq!(resolve("localhost").await.unwrap().port(), DEFAULT_PORT);
    }
}
