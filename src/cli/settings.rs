//! The client configuration file: key, cert, peers and named hosts, so the
//! common call is short. Flags override it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CliError;

/// Key, certificate, peers and named hosts for connecting to daemons.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientSettings {
    /// This host's private key.
    pub key: Option<PathBuf>,
    /// This host's certificate.
    pub cert: Option<PathBuf>,
    /// The daemons' certificates.
    pub peers: Option<PathBuf>,
    /// Daemons by the name `HOST:DIR` arguments give them.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSettings>,
}

/// One `[hosts.NAME]` entry: where the daemon is and the one certificate it
/// must present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HostSettings {
    /// `HOST`, `HOST:PORT`, `IP`, `IP:PORT` or `[IPv6]:PORT` (port 9771 if
    /// omitted); every address a name resolves to is tried in order.
    pub addr: String,
    /// The daemon's certificate (one); any other key is refused.
    pub cert: PathBuf,
}

impl ClientSettings {
    /// Loads `explicit`, or the default file if it exists, or nothing.
    pub(super) fn load(explicit: Option<&Path>) -> Result<Self, CliError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match default_path() {
                Some(path) if path.exists() => path,
                _ => return Ok(Self::default()),
            },
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        let settings: Self = toml::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{}: {}", path.display(), e.message())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: Option<PathBuf>| p.map(|p| base.join(p));
        let hosts = settings
            .hosts
            .into_iter()
            .map(|(name, host)| {
                let cert = base.join(host.cert);
                (name, HostSettings { cert, ..host })
            })
            .collect();
        Ok(Self {
            key: resolve(settings.key),
            cert: resolve(settings.cert),
            peers: resolve(settings.peers),
            hosts,
        })
    }
}

/// Where the command keeps what its connections measured of the path to
/// each daemon: `$XDG_STATE_HOME/realize/paths`
/// (`~/.local/state/realize/paths`).
pub(super) fn known_paths_dir() -> Option<PathBuf> {
    let state_home = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state_home.join("realize").join("paths"))
}

fn default_path() -> Option<PathBuf> {
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config_home.join("realize").join("config.toml"))
}
