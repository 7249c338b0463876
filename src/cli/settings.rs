//! The client configuration file: key, cert and peers, so the common call is
//! short. Flags override it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CliError;

/// Key, certificate and peers for connecting to daemons.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// This host's private key.
    pub key: Option<PathBuf>,
    /// This host's certificate.
    pub cert: Option<PathBuf>,
    /// The daemons' certificates.
    pub peers: Option<PathBuf>,
}

impl ClientSettings {
    /// Loads `explicit`, or the default file if it exists, or nothing.
    pub fn load(explicit: Option<&Path>) -> Result<Self, CliError> {
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
        Ok(Self {
            key: resolve(settings.key),
            cert: resolve(settings.cert),
            peers: resolve(settings.peers),
        })
    }
}

fn default_path() -> Option<PathBuf> {
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config_home.join("realize").join("config.toml"))
}
