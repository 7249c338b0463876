//! Which certificate each remote daemon must present.
//!
//! A remote side is bound to exactly one daemon: by its own flag
//! (`--src-peer`, `--dst-peer`, `--peer` for bench), else by the peers file
//! shared by the call (`--peers`, or `peers` in the client configuration)
//! when that file holds a single certificate. A shared file with several
//! binds no side: any of its keys would do, so a daemon answering at the
//! wrong address could confirm copies it never made, and the sources would
//! be deleted. Such a call is refused before anything connects.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::client::ExpectedDaemon;
use crate::transport::identity::load_certificates;

/// One remote side of a call, as the user named it.
#[derive(Debug, Clone)]
pub struct RemoteSide {
    /// The daemon's address, as written on the command line or for its
    /// `[hosts]` name.
    pub addr: String,
    /// What names this side's certificate: its flag, or its `[hosts]` entry.
    pub flag: String,
    /// The file that names it, if one does.
    pub file: Option<PathBuf>,
}

/// The peers file shared by every side of a call, and where it was named.
#[derive(Debug, Clone)]
pub(super) struct SharedPeers {
    path: PathBuf,
    from_config: bool,
}

impl SharedPeers {
    /// The file of `--peers`.
    pub(super) fn from_flag(path: PathBuf) -> Self {
        Self {
            path,
            from_config: false,
        }
    }

    /// The file of `peers` in the client configuration.
    pub(super) fn from_config(path: PathBuf) -> Self {
        Self {
            path,
            from_config: true,
        }
    }

    /// How messages name this file.
    fn describe(&self) -> String {
        match self.from_config {
            true => format!("the client config's peers file {}", self.path.display()),
            false => format!("--peers {}", self.path.display()),
        }
    }

    /// The daemon this file binds `unbound` to: its only certificate.
    fn expected(&self, unbound: &[&RemoteSide]) -> Result<ExpectedDaemon, CliError> {
        let certs = load_certificates(&self.path).map_err(|e| CliError::Usage(e.to_string()))?;
        match certs.as_slice() {
            [cert] => ExpectedDaemon::new(cert, self.describe()).map_err(CliError::Usage),
            _ => Err(CliError::Usage(format!(
                "{} holds {} certificates; name the one {}",
                self.describe(),
                certs.len(),
                unbound
                    .iter()
                    .map(|side| format!(
                        "the daemon at {} must present with {} FILE",
                        side.addr, side.flag
                    ))
                    .collect::<Vec<_>>()
                    .join(" and the one ")
            ))),
        }
    }
}

/// The daemon each of `sides` must be, in their order: the certificate of
/// its own flag, else the only one of `shared`. A side that nothing binds is
/// a usage error that names the flag to bind it with.
pub(super) fn bind(
    sides: &[RemoteSide],
    shared: Option<&SharedPeers>,
) -> Result<Vec<ExpectedDaemon>, CliError> {
    let unbound: Vec<&RemoteSide> = sides.iter().filter(|s| s.file.is_none()).collect();
    let fallback = match (shared, unbound.first()) {
        (Some(shared), Some(_)) => Some(shared.expected(&unbound)?),
        (None, Some(side)) => return Err(unnamed(side)),
        (_, None) => None,
    };
    sides
        .iter()
        .map(|side| match &side.file {
            Some(file) => own(side, file),
            None => Ok(fallback
                .clone()
                .expect("a fallback binds every unbound side")),
        })
        .collect()
}

/// The daemon that `side`'s own flag names with `file`.
fn own(side: &RemoteSide, file: &Path) -> Result<ExpectedDaemon, CliError> {
    let certs = load_certificates(file).map_err(|e| CliError::Usage(e.to_string()))?;
    let named_by = format!("{} {}", side.flag, file.display());
    match certs.as_slice() {
        [cert] => ExpectedDaemon::new(cert, named_by).map_err(CliError::Usage),
        _ => Err(CliError::Usage(format!(
            "{named_by} holds {} certificates; it must hold only the one the daemon at {} \
             presents",
            certs.len(),
            side.addr
        ))),
    }
}

/// Nothing names the certificate of `side`'s daemon.
fn unnamed(side: &RemoteSide) -> CliError {
    CliError::Usage(format!(
        "the daemon at {} has no certificate to check: name the one it must present with {} \
         FILE or --peers FILE (or set peers in the client config)",
        side.addr, side.flag
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::identity::generate;

    /// A folder with the certificates of `names`, and a peers file of them
    /// all, `all.pem`.
    fn certificates(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut all = String::new();
        for name in names {
            let made = generate(name, dir.path()).unwrap();
            all.push_str(&std::fs::read_to_string(made.cert_path).unwrap());
        }
        std::fs::write(dir.path().join("all.pem"), all).unwrap();
        dir
    }

    fn side(addr: &str, flag: &str, file: Option<&Path>) -> RemoteSide {
        RemoteSide {
            addr: addr.into(),
            flag: flag.into(),
            file: file.map(Path::to_path_buf),
        }
    }

    fn usage(result: Result<Vec<ExpectedDaemon>, CliError>) -> String {
        match result {
            Err(CliError::Usage(message)) => message,
            other => panic!("not a usage error: {other:?}"),
        }
    }

    #[test]
    fn a_shared_file_binds_only_with_one_certificate() {
        let dir = certificates(&["a", "b"]);
        let one = SharedPeers::from_flag(dir.path().join("a.crt"));
        let sides = [
            side("h:1", "--src-peer", None),
            side("h:2", "--dst-peer", None),
        ];
        assert_eq!(bind(&sides, Some(&one)).unwrap().len(), 2);
        let both = SharedPeers::from_flag(dir.path().join("all.pem"));
        let message = usage(bind(&sides, Some(&both)));
        assert!(
            message.ends_with(
                "all.pem holds 2 certificates; name the one the daemon at h:1 must present \
                 with --src-peer FILE and the one the daemon at h:2 must present with \
                 --dst-peer FILE"
            ),
            "{message}"
        );
        assert!(message.starts_with("--peers "), "{message}");
    }

    #[test]
    fn a_side_of_its_own_needs_no_shared_file() {
        let dir = certificates(&["a", "b"]);
        let a = dir.path().join("a.crt");
        let both = SharedPeers::from_config(dir.path().join("all.pem"));
        let own = [side("h:1", "--dst-peer", Some(&a))];
        assert_eq!(bind(&own, Some(&both)).unwrap().len(), 1);
        assert_eq!(bind(&own, None).unwrap().len(), 1);
        let message = usage(bind(&[side("h:1", "--peer", None)], Some(&both)));
        assert!(
            message.starts_with("the client config's peers file ")
                && message.ends_with("must present with --peer FILE"),
            "{message}"
        );
    }

    #[test]
    fn a_side_flag_holds_one_certificate_and_some_file_is_needed() {
        let dir = certificates(&["a", "b"]);
        let all = dir.path().join("all.pem");
        let message = usage(bind(&[side("h:1", "--dst-peer", Some(&all))], None));
        assert!(
            message.ends_with(
                "all.pem holds 2 certificates; it must hold only the one the daemon at h:1 \
                 presents"
            ),
            "{message}"
        );
        let message = usage(bind(&[side("h:1", "--src-peer", None)], None));
        assert!(
            message.contains("with --src-peer FILE or --peers FILE"),
            "{message}"
        );
    }
}
