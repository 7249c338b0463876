//! The daemon's TOML configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::limits::Limits;
use crate::model::DirectoryId;
use crate::protocol::DEFAULT_PORT;
use crate::throttle::Rate;

/// A configuration file that cannot be used; the message names the file and
/// the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// What is wrong, naming the field.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<SocketAddr>,
    key: PathBuf,
    cert: PathBuf,
    metrics: Option<SocketAddr>,
    #[serde(default)]
    dirs: BTreeMap<String, PathBuf>,
    #[serde(default)]
    peers: BTreeMap<String, PathBuf>,
    #[serde(default)]
    send_limits: BTreeMap<String, String>,
    #[serde(default)]
    keep_owner: bool,
    #[serde(default)]
    limits: Limits,
}

/// A validated daemon configuration, paths resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// This daemon's private key (PEM).
    pub key: PathBuf,
    /// This daemon's certificate (PEM).
    pub cert: PathBuf,
    /// Where to serve Prometheus `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Served directories.
    pub dirs: BTreeMap<DirectoryId, PathBuf>,
    /// Peer id to the PEM file of that peer's certificate(s).
    pub peers: BTreeMap<String, PathBuf>,
    /// Peer id to the most the daemon sends that peer, over all its
    /// connections together.
    pub send_limits: BTreeMap<String, Rate>,
    /// Whether files written here get their source's owner (needs root).
    pub keep_owner: bool,
    /// How many connections, handshakes, control requests and listings the
    /// daemon holds, in all and per peer, and how deep listings go.
    pub limits: Limits,
}

impl DaemonConfig {
    /// Reads and validates the configuration at `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError {
            file: file.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| error(e.to_string()))?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| error(one_line(&e, &text)))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| base.join(p);
        if raw.dirs.is_empty() {
            return Err(error(
                "[dirs] is empty: serve at least one directory".into(),
            ));
        }
        if raw.peers.is_empty() {
            return Err(error(
                "[peers] is empty: no client could ever connect".into(),
            ));
        }
        raw.limits.check().map_err(error)?;
        let dirs = raw
            .dirs
            .into_iter()
            .map(|(id, path)| {
                let id = DirectoryId::new(id.clone())
                    .map_err(|e| error(format!("[dirs] {id}: invalid directory id: {e}")))?;
                Ok((id, resolve(&path)))
            })
            .collect::<Result<_, ConfigError>>()?;
        let mut send_limits = BTreeMap::new();
        for (peer, rate) in raw.send_limits {
            if !raw.peers.contains_key(&peer) {
                return Err(error(format!(
                    "[send_limits] {peer}: no such peer in [peers]"
                )));
            }
            let rate = rate
                .parse()
                .map_err(|e| error(format!("[send_limits] {peer}: {e}")))?;
            send_limits.insert(peer, rate);
        }
        Ok(Self {
            send_limits,
            keep_owner: raw.keep_owner,
            limits: raw.limits,
            listen: raw
                .listen
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))),
            key: resolve(&raw.key),
            cert: resolve(&raw.cert),
            metrics: raw.metrics,
            dirs,
            peers: raw
                .peers
                .into_iter()
                .map(|(name, path)| (name, resolve(&path)))
                .collect(),
        })
    }
}

/// toml's errors span several lines with a source excerpt; keep the
/// message and quote the offending line, which names the field.
fn one_line(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim().replace('\n', " ");
    let Some(span) = err.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_number = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_number - 1).unwrap_or("").trim();
    format!("line {line_number} `{line}`: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<DaemonConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("realized.toml");
        std::fs::write(&file, text).unwrap();
        DaemonConfig::load(&file)
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let config =
            load("key = 'k.key'\ncert = 'k.crt'\n[dirs]\nphotos = 'p'\n[peers]\na = 'a.crt'\n")
                .unwrap();
        assert!(config.key.ends_with("k.key") && config.key.is_absolute());
        assert_eq!(config.listen.port(), DEFAULT_PORT);
        assert!(config.dirs[&DirectoryId::new("photos").unwrap()].is_absolute());
    }

    #[test]
    fn send_limits_name_known_peers_and_valid_rates() {
        let base = "key='k'\ncert='c'\n[dirs]\nd='d'\n[peers]\na='a.crt'\n";
        let config = load(&format!("{base}[send_limits]\na = '4M'\n")).unwrap();
        assert_eq!(config.send_limits["a"].bytes_per_second(), 4 << 20);
        let err = load(&format!("{base}[send_limits]\nb = '4M'\n")).unwrap_err();
        assert!(
            err.to_string().contains("[send_limits] b: no such peer"),
            "{err}"
        );
        let err = load(&format!("{base}[send_limits]\na = 'fast'\n")).unwrap_err();
        assert!(err.to_string().contains("[send_limits] a:"), "{err}");
    }

    #[test]
    fn limits_read_back_what_they_print() {
        let base = "key='k'\ncert='c'\n[dirs]\nd='d'\n[peers]\na='a.crt'\n";
        let text = "stall_timeout = '1m 30s'\npartial_max_age = '36h'\n\
                    read_buffer_per_connection = '48M'\nlistings = 3\n";
        let limits = load(&format!("{base}[limits]\n{text}")).unwrap().limits;
        let printed = toml::to_string(&limits).unwrap();
        let again = load(&format!("{base}[limits]\n{printed}")).unwrap().limits;
        assert_eq!(again, limits, "{printed}");
        assert!(printed.contains("stall_timeout = \"1m 30s\""), "{printed}");
    }

    #[test]
    fn limits_default_and_must_allow_a_connection() {
        let base = "key='k'\ncert='c'\n[dirs]\nd='d'\n[peers]\na='a.crt'\n";
        let config = load(base).unwrap();
        assert_eq!(config.limits, Limits::default());
        let config = load(&format!("{base}[limits]\nconnections_per_peer = 3\n")).unwrap();
        assert_eq!(config.limits.connections_per_peer, 3);
        assert_eq!(config.limits.connections, 256);
        let err = load(&format!("{base}[limits]\nconnections = 0\n")).unwrap_err();
        assert!(err.to_string().contains("[limits]"), "{err}");
        let err = load(&format!("{base}[limits]\nhandshakes = 0\n")).unwrap_err();
        assert!(err.to_string().contains("handshakes"), "{err}");
        let config = load(&format!("{base}[limits]\nunvalidated_handshakes = 0\n")).unwrap();
        assert_eq!(
            config.limits.unvalidated_handshakes, 0,
            "everyone validates"
        );
        assert_eq!(config.limits.requests_per_peer, 64);
        let config = load(&format!("{base}[limits]\nrequests_per_peer = 8\n")).unwrap();
        assert_eq!(config.limits.requests_per_peer, 8);
        for bad in ["0", "1000000000000"] {
            let err = load(&format!("{base}[limits]\nrequests_per_peer = {bad}\n")).unwrap_err();
            assert!(err.to_string().contains("requests_per_peer"), "{err}");
        }
        let err = load(&format!("{base}[limits]\nstreams = 3\n")).unwrap_err();
        assert!(err.to_string().contains("streams"), "{err}");
    }

    #[test]
    fn listing_limits_default_and_must_allow_a_listing() {
        let base = "key='k'\ncert='c'\n[dirs]\nd='d'\n[peers]\na='a.crt'\n";
        let config = load(base).unwrap();
        assert_eq!(
            (
                config.limits.listings,
                config.limits.listings_per_peer,
                config.limits.listing_depth
            ),
            (8, 2, 64)
        );
        let config = load(&format!("{base}[limits]\nlisting_depth = 200\n")).unwrap();
        assert_eq!(config.limits.listing_depth, 200);
        for key in ["listings", "listings_per_peer", "listing_depth"] {
            let err = load(&format!("{base}[limits]\n{key} = 0\n")).unwrap_err();
            assert!(
                err.to_string().contains(&format!("[limits] {key}")),
                "{err}"
            );
        }
        let err = load(&format!("{base}[limits]\nlisting_depth = 5000\n")).unwrap_err();
        assert!(err.to_string().contains("[limits] listing_depth"), "{err}");
    }

    #[test]
    fn timeouts_default_parse_as_durations_and_refuse_nonsense() {
        let base = "key='k'\ncert='c'\n[dirs]\nd='d'\n[peers]\na='a.crt'\n";
        let limits = load(base).unwrap().limits;
        assert_eq!(limits.stall_timeout, std::time::Duration::from_secs(30));
        assert_eq!(limits.hello_timeout, std::time::Duration::from_secs(10));
        let text = format!("{base}[limits]\nstall_timeout = '1m 30s'\nhello_timeout = '5s'\n");
        let limits = load(&text).unwrap().limits;
        assert_eq!(limits.stall_timeout, std::time::Duration::from_secs(90));
        assert_eq!(limits.hello_timeout, std::time::Duration::from_secs(5));
        for bad in [
            "stall_timeout = '0s'",
            "hello_timeout = 'soon'",
            "stall_timeout = 30",
        ] {
            let err = load(&format!("{base}[limits]\n{bad}\n")).unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn stream_and_read_buffer_limits_default_parse_and_refuse_nonsense() {
        let base = "key='k'\ncert='c'\n[dirs]\nd='d'\n[peers]\na='a.crt'\n";
        let limits = load(base).unwrap().limits;
        assert_eq!(limits.streams_per_connection, 256);
        assert_eq!(limits.read_buffer_per_connection, 32 << 20);
        assert_eq!(limits.quic_streams(), 257, "the control stream counts");
        let text = format!(
            "{base}[limits]\nstreams_per_connection = 8\nread_buffer_per_connection = '4M'\n"
        );
        let limits = load(&text).unwrap().limits;
        assert_eq!(limits.streams_per_connection, 8);
        assert_eq!(limits.read_buffer_per_connection, 4 << 20);
        let text = format!("{base}[limits]\nread_buffer_per_connection = 1048576\n");
        assert_eq!(
            load(&text).unwrap().limits.read_buffer_per_connection,
            1 << 20
        );
        for (bad, key) in [
            ("streams_per_connection = 0", "streams_per_connection"),
            (
                "read_buffer_per_connection = '100k'",
                "read_buffer_per_connection",
            ),
            (
                "read_buffer_per_connection = 'lots'",
                "read_buffer_per_connection",
            ),
        ] {
            let err = load(&format!("{base}[limits]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn partial_max_age_defaults_to_a_week_and_reads_durations() {
        let base = "key='k'\ncert='c'\n[dirs]\nd='d'\n[peers]\na='a.crt'\n";
        let week = std::time::Duration::from_secs(7 * 24 * 3600);
        assert_eq!(load(base).unwrap().limits.partial_max_age, week);
        let config = load(&format!("{base}[limits]\npartial_max_age = '36h'\n")).unwrap();
        assert_eq!(
            config.limits.partial_max_age,
            std::time::Duration::from_secs(36 * 3600)
        );
        let err = load(&format!("{base}[limits]\npartial_max_age = 'soon'\n")).unwrap_err();
        assert!(err.to_string().contains("partial_max_age"), "{err}");
        assert!(err.to_string().contains("not a duration"), "{err}");
        let err = load(&format!("{base}[limits]\npartial_max_age = '0s'\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("partial_max_age must be at least 1s"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = load("key = 'k'\ncert = 'c'\nlisten = 'nope'\n").unwrap_err();
        assert!(
            err.to_string().contains("line 3 `listen = 'nope'`"),
            "{err}"
        );
        let err = load("key='k'\ncert='c'\nbogus=1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = load("key='k'\ncert='c'\n[dirs]\n'a/b'='x'\n[peers]\na='a'\n").unwrap_err();
        assert!(err.to_string().contains("a/b"), "{err}");
        assert!(!err.to_string().contains('\n'));
    }
}
