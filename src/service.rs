//! The service a move talks to: one directory tree, local or remote.
//!
//! [`Service`] is the seam between the move algorithm and the world. The
//! [`local::LocalService`] implementation works on a local root and is used
//! both in process (a `--src-path`/`--dst-path` endpoint) and by the daemon to
//! serve its peers; the QUIC client in [`crate::client`] implements the same
//! trait over the wire. The algorithm in `mover` sees only the trait,
//! so it is tested without sockets.

pub mod local;

use async_trait::async_trait;
use bytes::Bytes;

use crate::model::{
    Attributes, Delta, DirectoryId, FileEntry, FileStamp, FileState, Hash, RelPath, RootIdentity,
    Skipped, WritePlan,
};
use crate::protocol::RealizeError;
use crate::transport::TransportError;

/// What can go wrong when calling a service.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// The service did the work and reports a failure (it crosses the wire
    /// unchanged from a remote service).
    #[error(transparent)]
    Realize(#[from] RealizeError),
    /// The service could not be reached or the connection failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl ServiceError {
    /// Whether reconnecting may cure this error: a lost connection, not a
    /// refusal or a failure the service reports.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ServiceError::Transport(e) if e.is_retryable())
    }

    /// The error as the wire carries it: a transport failure of a nested
    /// service becomes an I/O error with the same message.
    pub fn into_realize(self) -> RealizeError {
        match self {
            ServiceError::Realize(e) => e,
            ServiceError::Transport(e) => {
                RealizeError::new(crate::protocol::ErrorKind::Io, e.to_string())
            }
        }
    }
}

/// The regular files under a directory root, and what is not moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Regular files, final and partial.
    pub files: Vec<FileEntry>,
    /// Entries that are not moved (symlinks, special files, empty directories).
    pub skipped: Vec<Skipped>,
}

impl Listing {
    /// Puts the files in path order, the order a move takes them in.
    pub fn sort(&mut self) {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
    }
}

/// How a read ended: what the whole file hashed to and its stamp afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    /// BLAKE3 of the file from byte 0 to its size at open.
    pub hash: Hash,
    /// The stamp after the last byte was read.
    pub stamp: FileStamp,
}

/// One step of reading a file: a chunk of data, or the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEvent {
    /// The next bytes, in order.
    Data(Bytes),
    /// Every byte has been delivered.
    Done(ReadSummary),
}

/// A file being read: the bytes its [`Delta`] names, in file order.
#[async_trait]
pub trait FileReader: Send {
    /// The file's stamp when it was opened. Exactly
    /// `delta.payload_len(stamp().size)` bytes of [`ReadEvent::Data`] come
    /// before [`ReadEvent::Done`].
    fn stamp(&self) -> FileStamp;

    /// The next chunk, or the end with its summary.
    async fn next(&mut self) -> Result<ReadEvent, ServiceError>;
}

/// A file being written into its partial file. Dropping it without
/// [`FileWriter::finish`] abandons the transfer and keeps the partial file.
#[async_trait]
pub trait FileWriter: Send {
    /// Appends `chunk` to what has been written so far.
    async fn write(&mut self, chunk: Bytes) -> Result<(), ServiceError>;

    /// Completes the file: checks that the whole file hashes to `expected`,
    /// gives it the planned attributes, makes it durable (fsync), renames it
    /// to its final name if that still holds what the plan says it
    /// replaces, and makes the rename durable. Returns the final file's
    /// hash.
    async fn finish(self: Box<Self>, expected: Hash) -> Result<Hash, ServiceError>;
}

/// One endpoint of a move: the directories of a local root or of a daemon.
#[async_trait]
pub trait Service: Send + Sync {
    /// Lists the regular files under `dir`, final and partial, in path
    /// order.
    async fn list(&self, dir: &DirectoryId) -> Result<Listing, ServiceError>;

    /// Opens the final file at `path` to read the bytes `delta` names. The
    /// whole file is hashed.
    async fn read(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        delta: &Delta,
    ) -> Result<Box<dyn FileReader>, ServiceError>;

    /// Opens the partial file of `path` for a file of `plan.size` bytes, to
    /// receive the bytes `plan.delta` names; other bytes before the delta's
    /// offset are kept, bytes after it are dropped.
    async fn write(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        plan: &WritePlan,
    ) -> Result<Box<dyn FileWriter>, ServiceError>;

    /// BLAKE3 of each `block_size` block of the first `length` bytes of the
    /// final or partial file at `path`; the last block may be shorter.
    async fn block_hashes(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        state: FileState,
        block_size: u64,
        length: u64,
    ) -> Result<Vec<Hash>, ServiceError>;

    /// BLAKE3 of the final file at `path`, whose content and name are
    /// durable (synced) when this returns.
    async fn hash(&self, dir: &DirectoryId, path: &RelPath) -> Result<Hash, ServiceError>;

    /// Where the root of `dir` lives.
    async fn root_identity(&self, dir: &DirectoryId) -> Result<RootIdentity, ServiceError>;

    /// Deletes the final file at `path` if its stamp is still `expected`,
    /// then removes the directories this left empty. Only the inode checked
    /// is deleted: a file that takes the name meanwhile is kept.
    async fn delete(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        expected: FileStamp,
    ) -> Result<(), ServiceError>;

    /// Gives the final file at `path` `attributes`, durably, if its stamp is
    /// still `expected` (a destination that already holds the content).
    async fn set_attributes(
        &self,
        dir: &DirectoryId,
        path: &RelPath,
        expected: FileStamp,
        attributes: Attributes,
    ) -> Result<(), ServiceError>;
}
