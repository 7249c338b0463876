//! Turning the endpoint arguments into services: local roots, or
//! connections to daemons through one QUIC client endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::args::{MoveArgs, TrustArgs};
use super::location::{Location, RemoteLocation};
use super::peers::{self, RemoteSide, SharedPeers};
use super::settings::ClientSettings;
use super::CliError;
use crate::client::{Client, ExpectedDaemon, RemoteService};
use crate::model::{DirectoryId, RelPath, RootIdentity};
use crate::server::config::DEFAULT_PORT;
use crate::service::local::LocalService;
use crate::service::{Service, ServiceError};
use crate::transport::endpoint::Tuning;
use crate::transport::identity::Identity;

/// The two services of a move, ready to use.
pub struct Endpoints {
    /// The directory id on both sides.
    pub dir: DirectoryId,
    /// The only file or subtree of the directory to move, if one is named.
    pub under: Option<RelPath>,
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

enum Spec {
    Local(PathBuf),
    Remote(RemoteSide),
}

impl Spec {
    fn remote(&self) -> Option<&RemoteSide> {
        match self {
            Spec::Local(_) => None,
            Spec::Remote(side) => Some(side),
        }
    }
}

/// What the arguments ask to move: both sides, the directory and the part
/// of it, checked before anything connects or is created.
struct Plan {
    source: Spec,
    destination: Spec,
    dir: DirectoryId,
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
    /// The side these flags name, and the `HOST:DIR` it was written as.
    fn spec(
        &self,
        settings: &mut Option<ClientSettings>,
        config: Option<&Path>,
    ) -> Result<(Spec, Option<RemoteLocation>), CliError> {
        let remote = |addr: &str, flag: String, file: Option<PathBuf>| {
            Spec::Remote(RemoteSide {
                addr: addr.to_string(),
                flag,
                file: self.file.clone().or(file),
            })
        };
        let location = match (self.location, self.path, self.addr) {
            (Some(arg), _, _) => Location::parse(arg)?,
            (None, Some(path), _) => return Ok((Spec::Local(path.clone()), None)),
            (None, None, Some(addr)) => return Ok((remote(addr, self.flag.into(), None), None)),
            (None, None, None) => unreachable!("clap requires one of the group"),
        };
        let location = match location {
            Location::Local(path) => return Ok((Spec::Local(path), None)),
            Location::Remote(location) => location,
        };
        let settings = match settings {
            Some(settings) => settings,
            None => settings.insert(ClientSettings::load(config)?),
        };
        let spec = match settings.hosts.get(&location.host) {
            Some(host) => remote(
                &host.addr,
                format!("the client config's [hosts.{}] cert", location.host),
                Some(host.cert.clone()),
            ),
            None => remote(&location.host, self.flag.into(), None),
        };
        Ok((spec, Some(location)))
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
        let named: Vec<&RemoteLocation> = [&from, &to].into_iter().flatten().collect();
        let any_remote = source.remote().is_some() || destination.remote().is_some();
        let dir = directory_id(args, &named, any_remote)?;
        let under = subpath(&named)?;
        if args.keep_owner && !matches!(destination, Spec::Local(_)) {
            return Err(CliError::Usage(
                "--keep-owner applies to a local destination; a daemon keeps owners when its \
                 configuration says keep_owner = true"
                    .into(),
            ));
        }
        Ok(Self {
            source,
            destination,
            dir,
            under,
        })
    }
}

/// Validates the arguments and opens both endpoints. Every remote side is
/// bound to its daemon's certificate before anything connects.
pub async fn open(args: &MoveArgs) -> Result<Endpoints, CliError> {
    let plan = Plan::of(args)?;
    let sides: Vec<RemoteSide> = [&plan.source, &plan.destination]
        .into_iter()
        .filter_map(Spec::remote)
        .cloned()
        .collect();
    let dir = plan.dir;
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
    for (spec, create) in [(&plan.source, false), (&plan.destination, true)] {
        let service: Box<dyn Service> = match spec {
            Spec::Local(path) => Box::new(local(&dir, path, create, args)?),
            Spec::Remote(side) => {
                let client = client.as_ref().expect("a client exists for a remote side");
                let daemon = expected.next().expect("one daemon per remote side");
                let remote = connect(client, &side.addr, daemon).await?;
                remotes.push(remote.clone());
                Box::new(remote)
            }
        };
        services.push(service);
    }
    let source_remote = match plan.source {
        Spec::Remote(_) => remotes.first().cloned(),
        Spec::Local(_) => None,
    };
    let destination = services.pop().expect("two services");
    let source = services.pop().expect("two services");
    Ok(Endpoints {
        dir,
        under: plan.under,
        source,
        destination,
        source_remote,
        client,
        remotes,
    })
}

/// The directory id: the DIR of `HOST:DIR` arguments (the same on both
/// sides), else `--directory-id`, which an address flag requires.
fn directory_id(
    args: &MoveArgs,
    named: &[&RemoteLocation],
    any_remote: bool,
) -> Result<DirectoryId, CliError> {
    let mut dirs = named.iter().filter_map(|location| location.dir.as_ref());
    let Some(dir) = dirs.next() else {
        return match (&args.directory_id, any_remote) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, false) => Ok(DirectoryId::new("dir").expect("valid id")),
            (None, true) => Err(CliError::Usage(
                "--directory-id is required with --src-addr or --dst-addr (or write HOST:DIR)"
                    .into(),
            )),
        };
    };
    if let Some(other) = dirs.next().filter(|other| *other != dir) {
        return Err(CliError::Usage(format!(
            "the two sides name different directories ({dir} and {other}); a move keeps \
             the directory id, so name the same DIR on both"
        )));
    }
    match &args.directory_id {
        Some(flag) if flag != dir => Err(CliError::Usage(format!(
            "--directory-id {flag} contradicts HOST:{dir}; drop --directory-id"
        ))),
        _ => Ok(dir.clone()),
    }
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

/// Resolves `addr` and connects to the daemon there, which must be `daemon`:
/// every address the name resolves to is tried in order, and the first to
/// answer is used.
pub(super) async fn connect(
    client: &Client,
    addr: &str,
    daemon: &ExpectedDaemon,
) -> Result<RemoteService, CliError> {
    let mut refusal = None;
    let mut last = None;
    for socket in resolve(addr).await? {
        match client.connect(socket, daemon).await {
            Ok(remote) => return Ok(remote),
            Err(e) => {
                tracing::info!(%socket, "cannot connect: {e}");
                match e.is_retryable() {
                    true => last = Some(CliError::Unreachable(e.to_string())),
                    false => refusal = refusal.or(Some(CliError::Failed(e.to_string()))),
                }
            }
        }
    }
    Err(refusal
        .or(last)
        .expect("resolving gives at least one address"))
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
