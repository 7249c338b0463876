//! What the command's last connection to each daemon measured of the path,
//! kept in a small file per daemon, so that the next command to that daemon
//! starts at the path's rate instead of ramping up from a few packets (see
//! [`crate::transport::congestion::resume`]).
//!
//! A record is used only by a connection to the same daemon key at the same
//! address, and only for [`KNOWN_PATH_LIFETIME`]; the congestion controller
//! checks the round trip as well. The files are hints: one that cannot be
//! read or written costs the ramp, never the move.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::transport::congestion::{KnownPath, KNOWN_PATH_LIFETIME};
use crate::transport::identity::Fingerprint;

/// The record of the path to one daemon, in its file.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The daemon's address when it was measured.
    address: SocketAddr,
    /// The highest delivery rate the connection measured.
    rate_bytes_per_second: f64,
    /// The idle round trip, in microseconds.
    min_rtt_micros: u64,
    /// When it was measured, in seconds since the Unix epoch.
    measured_at: u64,
    /// Whether the connection filled the path (see [`KnownPath::filled`]).
    filled: bool,
}

/// The file that keeps the path to one daemon at one address.
#[derive(Debug, Clone)]
pub(super) struct PathMemory {
    file: PathBuf,
    address: SocketAddr,
}

impl PathMemory {
    /// The memory, in `dir`, of the path to the daemon whose key is
    /// `daemon`, at `address`.
    pub(super) fn new(dir: &Path, daemon: &Fingerprint, address: SocketAddr) -> Self {
        let name = daemon.to_string().replace(':', "-");
        Self {
            file: dir.join(format!("{name}.toml")),
            address,
        }
    }

    /// The path measured last, if it was measured at this address within
    /// [`KNOWN_PATH_LIFETIME`].
    pub(super) fn recall(&self) -> Option<KnownPath> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        let record: Record = toml::from_str(&text).ok()?;
        let age = unix_now().checked_sub(record.measured_at)?;
        let fresh = Duration::from_secs(age) <= KNOWN_PATH_LIFETIME;
        let usable = record.rate_bytes_per_second.is_finite() && record.rate_bytes_per_second > 0.0;
        (record.address == self.address && fresh && usable).then(|| KnownPath {
            rate: record.rate_bytes_per_second,
            min_rtt: Duration::from_micros(record.min_rtt_micros),
            filled: record.filled,
        })
    }

    /// Keeps `known` for the next connection if it replaces the record (see
    /// [`KnownPath::replaces`]); a file that cannot be written is logged and
    /// forgotten.
    pub(super) fn remember(&self, known: KnownPath) {
        if !known.replaces(self.recall().as_ref()) {
            return;
        }
        let record = Record {
            address: self.address,
            rate_bytes_per_second: known.rate,
            min_rtt_micros: u64::try_from(known.min_rtt.as_micros()).unwrap_or(u64::MAX),
            measured_at: unix_now(),
            filled: known.filled,
        };
        if let Err(e) = self.write(&record) {
            tracing::debug!(file = %self.file.display(), "cannot keep the path's rate: {e}");
        }
    }

    /// Writes `record` to a temporary file and renames it over the file, so
    /// that a command reading it at the same time sees one record or the
    /// other.
    fn write(&self, record: &Record) -> std::io::Result<()> {
        let dir = self.file.parent().expect("the file is in a directory");
        std::fs::create_dir_all(dir)?;
        let text = toml::to_string(record).map_err(std::io::Error::other)?;
        let temporary = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(temporary.path(), text)?;
        temporary.persist(&self.file).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint of a new key, made in a folder of its own.
    fn daemon() -> Fingerprint {
        let dir = tempfile::tempdir().unwrap();
        crate::transport::identity::generate("daemon", dir.path())
            .unwrap()
            .fingerprint
    }

    fn known() -> KnownPath {
        KnownPath {
            rate: 12.5e6,
            min_rtt: Duration::from_micros(100_250),
            filled: true,
        }
    }

    #[test]
    fn a_path_is_recalled_for_the_same_daemon_at_the_same_address_only() {
        let dir = tempfile::tempdir().unwrap();
        let (daemon, other) = (daemon(), daemon());
        let address: SocketAddr = "198.18.0.2:9771".parse().unwrap();
        let memory = PathMemory::new(&dir.path().join("paths"), &daemon, address);
        assert_eq!(memory.recall(), None, "nothing kept yet");
        memory.remember(known());
        assert_eq!(memory.recall(), Some(known()));
        let small_move = KnownPath {
            rate: 1e5,
            filled: false,
            ..known()
        };
        memory.remember(small_move);
        assert_eq!(memory.recall(), Some(known()), "kept over a lower bound");
        let moved = PathMemory::new(
            &dir.path().join("paths"),
            &daemon,
            "198.18.0.3:9771".parse().unwrap(),
        );
        assert_eq!(moved.recall(), None, "another address");
        let stranger = PathMemory::new(&dir.path().join("paths"), &other, address);
        assert_eq!(stranger.recall(), None, "another daemon");
    }

    #[test]
    fn an_old_or_damaged_record_is_not_recalled() {
        let dir = tempfile::tempdir().unwrap();
        let address: SocketAddr = "198.18.0.2:9771".parse().unwrap();
        let memory = PathMemory::new(dir.path(), &daemon(), address);
        let old = Record {
            address,
            rate_bytes_per_second: 12.5e6,
            min_rtt_micros: 100_000,
            measured_at: unix_now() - KNOWN_PATH_LIFETIME.as_secs() - 60,
            filled: true,
        };
        memory.write(&old).unwrap();
        assert_eq!(memory.recall(), None, "older than the lifetime");
        std::fs::write(&memory.file, "rate = \"fast\"").unwrap();
        assert_eq!(memory.recall(), None, "not a record");
    }

    #[test]
    fn a_directory_that_cannot_be_written_costs_nothing_but_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-directory");
        std::fs::write(&blocker, "").unwrap();
        let memory = PathMemory::new(
            &blocker.join("paths"),
            &daemon(),
            "127.0.0.1:1".parse().unwrap(),
        );
        memory.remember(known());
        assert_eq!(memory.recall(), None);
    }
}
