//! Turning the endpoint arguments into services: local roots, or
//! connections to daemons through one QUIC client endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::args::{MoveArgs, TrustArgs};
use super::location::{Location, RemoteLocation};
use super::peers::{self, RemoteSide, SharedPeers};
use super::settings::{self, ClientSettings};
use super::CliError;
use crate::client::{Client, ExpectedDaemon, Greeting, RemoteService};
use crate::model::{DirectoryId, RelPath, RootIdentity};
use crate::mover::{list_both, Endpoint, Listings, MoveFileError};
use crate::protocol::DEFAULT_PORT;
use crate::service::local::LocalService;
use crate::service::{Service, ServiceError};
use crate::transport::endpoint::Tuning;
use crate::transport::identity::Identity;
use crate::transport::TransportError;

/// The two sides of a move, opened.
pub(super) struct OpenedEndpoints {
    /// Where files come from.
    pub source: OpenedEndpoint,
    /// Where files go.
    pub destination: OpenedEndpoint,
    /// The only file or subtree of the source's directory to move, if one
    /// is named; paths stay relative to each side's directory.
    pub under: Option<RelPath>,
    client: Option<Client>,
    /// The daemons' answers to `Hello`, still to come: see [`greeted`].
    greetings: Vec<Greeting>,
}

/// One side of a move: how it is reached and which of its directories
/// files leave or reach.
pub(super) struct OpenedEndpoint {
    /// The directory's id on this side.
    pub dir: DirectoryId,
    reach: Reach,
}

/// How a side is reached.
enum Reach {
    /// A local directory.
    Local(LocalService),
    /// A daemon, connected.
    Remote(RemoteService),
    /// A local destination that does not exist yet: it is made only once
    /// the move can start (see [`OpenedEndpoints::ready`]). Until then it holds
    /// nothing, and its nearest existing folder stands for it in the
    /// overlap check.
    Unmade {
        path: PathBuf,
        keep_owner: bool,
        ancestor: LocalService,
    },
}

impl OpenedEndpoint {
    /// The daemon of this side, when it is remote.
    pub(super) fn remote(&self) -> Option<&RemoteService> {
        match &self.reach {
            Reach::Remote(remote) => Some(remote),
            Reach::Local(_) | Reach::Unmade { .. } => None,
        }
    }

    /// The side as the mover sees it; `None` while it is not made.
    fn endpoint(&self) -> Option<Endpoint<'_>> {
        let service: &dyn Service = match &self.reach {
            Reach::Local(local) => local,
            Reach::Remote(remote) => remote,
            Reach::Unmade { .. } => return None,
        };
        Some(Endpoint {
            service,
            dir: &self.dir,
        })
    }
}

impl OpenedEndpoints {
    /// Lists both sides (only what lies at or under the subpath if one is
    /// named); a destination not made yet holds nothing.
    pub(super) async fn list(&self) -> Result<Listings, MoveFileError> {
        let source = self.source.endpoint().expect("a source exists");
        list_both(source, self.destination.endpoint(), self.under.as_ref()).await
    }

    /// Makes a local destination that does not exist yet, now that the
    /// move can start, and gives both sides to the mover.
    pub(super) fn ready(&mut self) -> Result<(Endpoint<'_>, Endpoint<'_>), CliError> {
        if let Reach::Unmade {
            path, keep_owner, ..
        } = &self.destination.reach
        {
            std::fs::create_dir_all(path)
                .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?;
            let made = open_local(&self.destination.dir, path, *keep_owner)?;
            self.destination.reach = Reach::Local(made);
        }
        let source = self.source.endpoint().expect("a source exists");
        let destination = self
            .destination
            .endpoint()
            .expect("the destination is made");
        Ok((source, destination))
    }

    /// The daemons' answers to `Hello`, to be awaited with [`greeted`]
    /// before anything they answer is used.
    pub(super) fn take_greetings(&mut self) -> Vec<Greeting> {
        std::mem::take(&mut self.greetings)
    }

    /// Closes connections to daemons cleanly, saying whether the run was
    /// interrupted.
    pub(super) async fn close(self, interrupted: bool) {
        let remotes: Vec<&RemoteService> = [&self.source, &self.destination]
            .into_iter()
            .filter_map(OpenedEndpoint::remote)
            .collect();
        if interrupted && !remotes.is_empty() {
            // The streams of the files in flight were just reset. Let the
            // packets already sent reach the daemon first: a receive buffer
            // full of them could drop the one close frame that tells it why
            // the connection ends.
            tokio::time::sleep(SETTLE_BEFORE_CLOSE).await;
        }
        let closing = remotes.iter().map(|r| r.close(interrupted)).collect();
        if let Some(client) = &self.client {
            client.shutdown(closing, interrupted).await;
        }
    }
}

/// How long a stopped run waits between abandoning its streams and closing.
const SETTLE_BEFORE_CLOSE: std::time::Duration = std::time::Duration::from_millis(50);

enum EndpointSpec {
    Local(PathBuf),
    Remote(RemoteSide),
}

impl EndpointSpec {
    fn remote(&self) -> Option<&RemoteSide> {
        match self {
            EndpointSpec::Local(_) => None,
            EndpointSpec::Remote(side) => Some(side),
        }
    }

    /// How this side is opened: a remote side takes the next of `daemons`
    /// (bound to the remote sides in order) and is dialled with `client`.
    fn opening<'a>(
        &'a self,
        client: Option<&'a Client>,
        daemons: &mut impl Iterator<Item = &'a ExpectedDaemon>,
    ) -> Opening<'a> {
        match self {
            EndpointSpec::Local(path) => Opening::Local(path),
            EndpointSpec::Remote(side) => Opening::Remote {
                client: client.expect("a client exists for a remote side"),
                addr: &side.addr,
                daemon: daemons.next().expect("one daemon per remote side"),
            },
        }
    }
}

/// What the arguments ask to move: both sides, each side's directory and
/// the part of the source's, checked before anything connects or is
/// created.
struct Plan {
    source: EndpointSpec,
    destination: EndpointSpec,
    dirs: (DirectoryId, DirectoryId),
    under: Option<RelPath>,
}

/// One side's flags: SRC/DST, or the local path, or the daemon's address;
/// `flag` and `file` name the certificate its daemon must present.
struct SideArgs<'a> {
    location: Option<&'a str>,
    path: &'a Option<PathBuf>,
    addr: &'a Option<String>,
    flag: &'static str,
    file: &'a Option<PathBuf>,
}

impl SideArgs<'_> {
    /// The side these flags name, and the `HOST:DIR` it was written as. A
    /// host, of `HOST:DIR` or of the address flag, that `[hosts]` names is
    /// reached at its `addr` and must present its `cert`.
    fn spec(
        &self,
        settings: &mut Option<ClientSettings>,
        config: Option<&Path>,
    ) -> Result<(EndpointSpec, Option<RemoteLocation>), CliError> {
        let (host, location) = match (self.location, self.path, self.addr) {
            (Some(arg), _, _) => match Location::parse(arg)? {
                Location::Local(path) => return Ok((EndpointSpec::Local(path), None)),
                Location::Remote(location) => (location.host.clone(), Some(location)),
            },
            (None, Some(path), _) => return Ok((EndpointSpec::Local(path.clone()), None)),
            (None, None, Some(addr)) => (addr.clone(), None),
            (None, None, None) => unreachable!("clap requires one of the group"),
        };
        let settings = match settings {
            Some(settings) => settings,
            None => settings.insert(ClientSettings::load(config)?),
        };
        let side = match settings.hosts.get(&host) {
            Some(named) => RemoteSide {
                addr: named.addr.clone(),
                flag: format!("the client config's [hosts.{host}] cert"),
                file: self.file.clone().or(Some(named.cert.clone())),
            },
            None => RemoteSide {
                addr: host,
                flag: self.flag.into(),
                file: self.file.clone(),
            },
        };
        Ok((EndpointSpec::Remote(side), location))
    }
}

impl Plan {
    /// Reads and checks the arguments of a move.
    fn of(args: &MoveArgs) -> Result<Self, CliError> {
        let (src, dst, peers) = (&args.source, &args.destination, &args.daemons);
        let mut settings = None;
        let config = args.trust.config.as_deref();
        let (source, from) = SideArgs {
            location: src.src.as_deref(),
            path: &src.src_path,
            addr: &src.src_addr,
            flag: "--src-peer",
            file: &peers.src_peer,
        }
        .spec(&mut settings, config)?;
        let (destination, to) = SideArgs {
            location: dst.dst.as_deref(),
            path: &dst.dst_path,
            addr: &dst.dst_addr,
            flag: "--dst-peer",
            file: &peers.dst_peer,
        }
        .spec(&mut settings, config)?;
        let dirs = directory_ids(args, [(&source, &from), (&destination, &to)])?;
        let named: Vec<&RemoteLocation> = [&from, &to].into_iter().flatten().collect();
        let under = subpath(&named)?;
        if args.keep_owner && !matches!(destination, EndpointSpec::Local(_)) {
            return Err(CliError::Usage(
                "--keep-owner applies to a local destination; a daemon keeps owners when its \
                 configuration says keep_owner = true"
                    .into(),
            ));
        }
        Ok(Self {
            source,
            destination,
            dirs,
            under,
        })
    }
}

/// Validates the arguments and opens both endpoints. Every remote side is
/// bound to its daemon's certificate before anything connects; a local
/// destination that does not exist is not made yet.
pub(super) async fn open(args: &MoveArgs) -> Result<OpenedEndpoints, CliError> {
    let plan = Plan::of(args)?;
    let sides: Vec<RemoteSide> = [&plan.source, &plan.destination]
        .into_iter()
        .filter_map(EndpointSpec::remote)
        .cloned()
        .collect();
    let (client, expected) = match sides.is_empty() {
        true => (None, Vec::new()),
        false => {
            let trust = Trust::load(&args.trust)?;
            let expected = peers::bind(&sides, trust.shared.as_ref())?;
            let tuning = Tuning {
                connect_timeout: *args.connect_timeout,
                ..args.transport.tuning()
            };
            (Some(trust.client(&tuning)?), expected)
        }
    };
    let mut daemons = expected.iter();
    let dialler = client.as_ref();
    let source = plan.source.opening(dialler, &mut daemons);
    let destination = plan.destination.opening(dialler, &mut daemons);
    let (source_dir, destination_dir) = plan.dirs;
    // Two daemons are dialled at once: the move waits for the slower
    // handshake, not for both in turn; the first error ends the wait.
    let ((source, source_greeting), (destination, destination_greeting)) =
        futures::future::try_join(
            reach(source, &source_dir, false, args),
            reach(destination, &destination_dir, true, args),
        )
        .await?;
    let greetings = source_greeting
        .into_iter()
        .chain(destination_greeting)
        .collect();
    if let (Reach::Local(local), false) = (&source, args.dry_run) {
        // A move killed while it deleted a file may have left it under a
        // private name: this run moves it again.
        local.put_back_interrupted_deletes().await;
    }
    Ok(OpenedEndpoints {
        source: OpenedEndpoint {
            dir: source_dir,
            reach: source,
        },
        destination: OpenedEndpoint {
            dir: destination_dir,
            reach: destination,
        },
        under: plan.under,
        client,
        greetings,
    })
}

/// How one side of the move is opened.
enum Opening<'a> {
    /// The directory at this path, on this machine.
    Local(&'a Path),
    /// The daemon at `addr`, which must be `daemon`, dialled with `client`.
    Remote {
        client: &'a Client,
        addr: &'a str,
        daemon: &'a ExpectedDaemon,
    },
}

/// Opens one side: a local directory, or its daemon dialled (see [`dial`]),
/// whose answer to `Hello` is still to come.
async fn reach(
    opening: Opening<'_>,
    dir: &DirectoryId,
    destination: bool,
    args: &MoveArgs,
) -> Result<(Reach, Option<Greeting>), CliError> {
    match opening {
        Opening::Local(path) => Ok((local_reach(dir, path, destination, args)?, None)),
        Opening::Remote {
            client,
            addr,
            daemon,
        } => {
            let (remote, greeting) = dial(client, addr, daemon).await?;
            Ok((Reach::Remote(remote), Some(greeting)))
        }
    }
}

/// The directory id of each side, source first: a remote side's own DIR,
/// else `--directory-id`, which an address flag requires. A local side
/// serves one directory whatever its id: it takes the other side's, so
/// messages name the same directory, else `--directory-id`, else `dir`.
/// `--directory-id` that no side needs may only repeat a DIR.
fn directory_ids(
    args: &MoveArgs,
    sides: [(&EndpointSpec, &Option<RemoteLocation>); 2],
) -> Result<(DirectoryId, DirectoryId), CliError> {
    let flag = args.directory_id.as_ref();
    let named = |location: &Option<RemoteLocation>| location.as_ref()?.dir.clone();
    let own = |(spec, location): (&EndpointSpec, &Option<RemoteLocation>)| match (
        spec,
        named(location),
    ) {
        (EndpointSpec::Local(_), _) => Ok(None),
        (EndpointSpec::Remote(_), Some(dir)) => Ok(Some(dir)),
        (EndpointSpec::Remote(_), None) => flag.cloned().map(Some).ok_or_else(|| {
            CliError::Usage(
                "--directory-id is required with --src-addr or --dst-addr (or write HOST:DIR)"
                    .into(),
            )
        }),
    };
    let [source, destination] = sides;
    let needs_flag = sides.iter().any(|(spec, location)| {
        matches!(spec, EndpointSpec::Remote(_)) && named(location).is_none()
    });
    if let (Some(flag), false) = (flag, needs_flag) {
        let contradicted = sides
            .iter()
            .find_map(|(_, location)| named(location).filter(|dir| dir != flag));
        if let Some(dir) = contradicted {
            return Err(CliError::Usage(format!(
                "--directory-id {flag} contradicts HOST:{dir}; drop --directory-id"
            )));
        }
    }
    Ok(match (own(source)?, own(destination)?) {
        (Some(src), Some(dst)) => (src, dst),
        (Some(dir), None) | (None, Some(dir)) => (dir.clone(), dir),
        (None, None) => {
            let dir = flag.cloned();
            let dir = dir.unwrap_or_else(|| DirectoryId::new("dir").expect("valid id"));
            (dir.clone(), dir)
        }
    })
}

/// The file or subtree to move, if a side names one; two sides that both
/// name one must name the same (a move keeps paths relative to DIR).
fn subpath(named: &[&RemoteLocation]) -> Result<Option<RelPath>, CliError> {
    let mut subpaths = named.iter().filter_map(|location| location.under.as_ref());
    let under = subpaths.next();
    match (under, subpaths.next()) {
        (Some(a), Some(b)) if a != b => Err(CliError::Usage(format!(
            "the two sides name different subpaths ({a} and {b}); a move keeps paths \
             relative to the directory, so name the subpath on one side only"
        ))),
        _ => Ok(under.cloned()),
    }
}

/// Resolves `addr` and connects to the daemon there, which must be `daemon`,
/// and completes the version handshake (see [`dial`]).
pub(super) async fn connect(
    client: &Client,
    addr: &str,
    daemon: &ExpectedDaemon,
) -> Result<RemoteService, CliError> {
    let (remote, greeting) = dial(client, addr, daemon).await?;
    greeted(vec![greeting]).await?;
    Ok(remote)
}

/// Resolves `addr` and connects to the daemon there, which must be `daemon`:
/// every address the name resolves to is tried in order, and the first to
/// answer is used. Its `Hello` is answered later: see [`greeted`].
async fn dial(
    client: &Client,
    addr: &str,
    daemon: &ExpectedDaemon,
) -> Result<(RemoteService, Greeting), CliError> {
    let mut refusal = None;
    let mut last = None;
    for socket in resolve(addr).await? {
        match client.open(socket, daemon).await {
            Ok(opened) => return Ok(opened),
            Err(e) => {
                tracing::info!(%socket, "cannot connect: {e}");
                let retryable = e.is_retryable();
                let error = connection_failed(e);
                match retryable {
                    true => last = Some(error),
                    false => refusal = refusal.or(Some(error)),
                }
            }
        }
    }
    Err(refusal
        .or(last)
        .expect("resolving gives at least one address"))
}

/// Waits until every daemon `greetings` came from has accepted this client
/// (see [`Client::open`]).
pub(super) async fn greeted(greetings: Vec<Greeting>) -> Result<(), CliError> {
    let answers = futures::future::join_all(greetings.into_iter().map(Greeting::accepted));
    answers
        .await
        .into_iter()
        .try_for_each(|answer| answer.map_err(connection_failed))
}

/// A connection that failed or was refused, as the command reports it.
fn connection_failed(e: TransportError) -> CliError {
    CliError::lost_or_failed(e.is_retryable(), e.to_string())
}

/// The local side at `path`. A destination that does not exist is made
/// once the move can start (never in a dry run, which creates nothing and
/// so refuses it); it keeps owners if `--keep-owner`.
fn local_reach(
    dir: &DirectoryId,
    path: &Path,
    destination: bool,
    args: &MoveArgs,
) -> Result<Reach, CliError> {
    let keep_owner = destination && args.keep_owner;
    if !destination || path.exists() {
        return Ok(Reach::Local(open_local(dir, path, keep_owner)?));
    }
    if args.dry_run {
        return Err(CliError::Failed(format!(
            "{} does not exist: a real move would create it and move every file there; \
             a dry run creates nothing (run without --dry-run, or create it first)",
            path.display()
        )));
    }
    let ancestor = path
        .ancestors()
        .skip(1)
        .map(|folder| match folder.as_os_str().is_empty() {
            true => Path::new("."),
            false => folder,
        })
        .find(|folder| folder.exists())
        .unwrap_or(Path::new("."));
    Ok(Reach::Unmade {
        path: path.to_path_buf(),
        keep_owner,
        ancestor: open_local(dir, ancestor, keep_owner)?,
    })
}

/// The existing local directory at `path`, served as `dir`.
fn open_local(dir: &DirectoryId, path: &Path, keep_owner: bool) -> Result<LocalService, CliError> {
    let service = LocalService::single(dir.clone(), path)
        .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?;
    if !keep_owner {
        return Ok(service);
    }
    service
        .keeping_owners()
        .map_err(|e| CliError::Usage(format!("--keep-owner: {e}")))
}

impl OpenedEndpoints {
    /// Refuses a move whose source and destination are the same directory,
    /// or nested, however they are reached (local path, daemon, another
    /// address of the same daemon, another directory id of the same
    /// daemon): every file would look already moved and be deleted. A
    /// destination not made yet is refused when the source holds its
    /// nearest existing folder. Call it before anything is changed on
    /// either side.
    pub(super) async fn refuse_overlap(&self) -> Result<(), CliError> {
        let (src, dst) = tokio::join!(self.source.identity(), self.destination.identity());
        let identity = |result: Result<RootIdentity, ServiceError>, side: &str| {
            result.map_err(|e| CliError::lost_or_failed(e.is_retryable(), format!("{side}: {e}")))
        };
        let (src, dst) = (identity(src, "source")?, identity(dst, "destination")?);
        let overlaps = match &self.destination.reach {
            Reach::Unmade { .. } => src.contains(&dst),
            _ => src.overlaps(&dst),
        };
        if overlaps {
            return Err(CliError::Usage(format!(
                "source and destination are the same directory, or one contains the other \
                 ({} and {})",
                src.path,
                self.destination.shown(&dst)
            )));
        }
        Ok(())
    }
}

impl OpenedEndpoint {
    /// The identity of this side's root: for a destination not made yet,
    /// that of its nearest existing folder.
    async fn identity(&self) -> Result<RootIdentity, ServiceError> {
        match &self.reach {
            Reach::Local(local) => local.root_identity(&self.dir).await,
            Reach::Remote(remote) => remote.root_identity(&self.dir).await,
            Reach::Unmade { ancestor, .. } => ancestor.root_identity(&self.dir).await,
        }
    }

    /// How a message names this side's root, whose identity is `identity`.
    fn shown(&self, identity: &RootIdentity) -> String {
        match &self.reach {
            Reach::Unmade { path, .. } => path.display().to_string(),
            _ => identity.path.clone(),
        }
    }
}

/// Resolves `HOST:PORT`, `HOST`, `IP`, `IP:PORT` or `[IPv6]:PORT`, the port
/// 9771 if omitted, to every address it names, in the resolver's order.
pub(super) async fn resolve(addr: &str) -> Result<Vec<SocketAddr>, CliError> {
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        return Ok(vec![socket]);
    }
    if let Ok(ip) = addr
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(vec![SocketAddr::new(ip, DEFAULT_PORT)]);
    }
    let has_port = addr
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let with_port = if has_port {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| CliError::Usage(format!("cannot resolve {addr}: {e}")))?
        .collect();
    match found.is_empty() {
        true => Err(CliError::Usage(format!("{addr} resolves to no address"))),
        false => Ok(found),
    }
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
    pub(super) fn load(args: &TrustArgs) -> Result<Self, CliError> {
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

    /// A QUIC client with this identity, tuned as `tuning` says, that
    /// starts each connection from what the last one to the same daemon
    /// measured of the path.
    pub(super) fn client(&self, tuning: &Tuning) -> Result<Client, CliError> {
        let client = Client::new(&self.identity, tuning)
            .map_err(|e| CliError::Failed(format!("cannot start the QUIC client: {e}")))?;
        Ok(match settings::known_paths_dir() {
            Some(dir) => client.remembering_paths_in(dir),
            None => client,
        })
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
                resolve(input).await.unwrap(),
                [expected.parse::<SocketAddr>().unwrap()],
                "{input}"
            );
        }
        let local = resolve("localhost").await.unwrap();
        assert!(local.iter().all(|socket| socket.port() == DEFAULT_PORT));
        assert!(local.iter().all(|socket| socket.ip().is_loopback()));
    }
}
