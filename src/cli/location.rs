//! Where one side of a move is, as written on the command line: a local
//! directory, or `HOST:DIR[/SUBPATH]` on a daemon, the way scp and rsync
//! name remote files.
//!
//! An argument is local when it holds no colon or a `/` comes before its
//! first colon (`/srv/a:b`, `./a:b`), as with scp. HOST is a name from the
//! client configuration's `[hosts]`, or an address: `name`, `name:PORT`,
//! `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT`. Digits alone right after the
//! host are its port, so a DIR made only of digits is written with the port
//! (`host:9771:2024`).

use std::path::PathBuf;

use super::CliError;
use crate::model::{DirectoryId, RelPath};

/// One side of a move as an argument names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    /// A local directory.
    Local(PathBuf),
    /// A directory (or part of it) a daemon serves.
    Remote(RemoteLocation),
}

/// `HOST[:DIR[/SUBPATH]]`: a daemon, and what of it an argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RemoteLocation {
    /// A `[hosts]` name or an address, as written.
    pub host: String,
    /// The directory id, if named.
    pub dir: Option<DirectoryId>,
    /// The file or subtree inside the directory, if named.
    pub under: Option<RelPath>,
}

impl Location {
    /// Reads one side of a move; a remote side must name its directory.
    pub(super) fn parse(arg: &str) -> Result<Self, CliError> {
        let is_local = match (arg.find(':'), arg.find('/')) {
            (None, _) => true,
            (Some(colon), Some(slash)) => slash < colon,
            (Some(_), None) => false,
        };
        if is_local {
            return Ok(Location::Local(PathBuf::from(arg)));
        }
        let remote = RemoteLocation::parse(arg)?;
        if remote.dir.is_none() {
            return Err(CliError::Usage(format!(
                "`{arg}` names no directory: write HOST:DIR or HOST:DIR/SUBPATH \
                 (`realize ls {}` lists them), or ./{arg} for a local path",
                remote.host
            )));
        }
        Ok(Location::Remote(remote))
    }
}

impl RemoteLocation {
    /// Reads `HOST[:DIR[/SUBPATH]]`.
    pub(super) fn parse(arg: &str) -> Result<Self, CliError> {
        let (host, rest) = split_host(arg)?;
        let Some(rest) = rest else {
            return Ok(Self {
                host,
                dir: None,
                under: None,
            });
        };
        let (dir, under) = rest.split_once('/').unwrap_or((rest, ""));
        if dir.is_empty() {
            return Err(CliError::Usage(format!(
                "`{arg}` names no directory: write HOST:DIR[/SUBPATH] (`realize ls {host}` \
                 lists them)"
            )));
        }
        let dir = DirectoryId::new(dir).map_err(|e| {
            CliError::Usage(format!(
                "`{arg}`: {dir:?} is not a directory id ({e}); write HOST:DIR[/SUBPATH]"
            ))
        })?;
        let under = under.trim_end_matches('/');
        let under = match under.is_empty() {
            true => None,
            false => Some(RelPath::new(under).map_err(|e| {
                CliError::Usage(format!(
                    "`{arg}`: {under:?} is not a path inside {dir}: {e}"
                ))
            })?),
        };
        Ok(Self {
            host,
            dir: Some(dir),
            under,
        })
    }
}

/// Splits `HOST[:PORT]` from what follows its colon, if anything does.
fn split_host(arg: &str) -> Result<(String, Option<&str>), CliError> {
    let bad = |why: &str| CliError::Usage(format!("`{arg}`: {why}"));
    let (host, rest) = match arg.strip_prefix('[') {
        Some(inner) => {
            let end = inner
                .find(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing ]"))?;
            let rest = &inner[end + 1..];
            if !(rest.is_empty() || rest.starts_with(':')) {
                return Err(bad("expected : after the IPv6 address in brackets"));
            }
            (&arg[..end + 2], rest.strip_prefix(':'))
        }
        None => match arg.split_once(':') {
            Some((host, rest)) => (host, Some(rest)),
            None => (arg, None),
        },
    };
    if host.is_empty() || host == "[]" {
        return Err(bad("the host is missing; write HOST:DIR[/SUBPATH]"));
    }
    let Some(rest) = rest else {
        return Ok((host.to_string(), None));
    };
    let (first, after) = match rest.split_once(':') {
        Some((first, after)) => (first, Some(after)),
        None => (rest, None),
    };
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((host.to_string(), Some(rest)));
    }
    first
        .parse::<u16>()
        .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
    Ok((format!("{host}:{first}"), after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(host: &str, dir: &str, under: Option<&str>) -> Location {
        Location::Remote(RemoteLocation {
            host: host.into(),
            dir: Some(DirectoryId::new(dir).unwrap()),
            under: under.map(|u| RelPath::new(u).unwrap()),
        })
    }

    #[test]
    fn local_paths_are_those_without_a_colon_before_a_slash() {
        for arg in ["photos", "/srv/a:b", "./a:b", "a/b:c", "../x:y", "/"] {
            assert_eq!(
                Location::parse(arg).unwrap(),
                Location::Local(arg.into()),
                "{arg}"
            );
        }
    }

    #[test]
    fn remote_sides_name_a_host_a_directory_and_maybe_a_subpath() {
        let cases = [
            ("nas:photos", remote("nas", "photos", None)),
            ("nas:photos/", remote("nas", "photos", None)),
            ("nas:photos/2024", remote("nas", "photos", Some("2024"))),
            (
                "nas:photos/2024/a:b.jpg",
                remote("nas", "photos", Some("2024/a:b.jpg")),
            ),
            (
                "nas:9000:photos/x/",
                remote("nas:9000", "photos", Some("x")),
            ),
            ("10.0.0.1:photos", remote("10.0.0.1", "photos", None)),
            (
                "10.0.0.1:9771:photos",
                remote("10.0.0.1:9771", "photos", None),
            ),
            ("[::1]:photos", remote("[::1]", "photos", None)),
            (
                "[::1]:9771:photos/a",
                remote("[::1]:9771", "photos", Some("a")),
            ),
        ];
        for (arg, expected) in cases {
            assert_eq!(Location::parse(arg).unwrap(), expected, "{arg}");
        }
    }

    #[test]
    fn a_host_alone_names_no_directory() {
        let host = RemoteLocation::parse("nas").unwrap();
        assert_eq!((host.host.as_str(), host.dir), ("nas", None));
        let port = RemoteLocation::parse("[::1]:9771").unwrap();
        assert_eq!((port.host.as_str(), port.dir), ("[::1]:9771", None));
    }

    #[test]
    fn bad_sides_are_usage_errors() {
        for arg in [
            "nas:",
            "nas:9771",
            ":photos",
            "[::1:photos",
            "[::1]photos",
            "nas:99999:photos",
            "nas:pho tos",
            "nas:photos/../etc",
            "[]:photos",
        ] {
            assert!(
                matches!(Location::parse(arg), Err(CliError::Usage(_))),
                "{arg}"
            );
        }
    }
}
