//! Every message of the protocol. Field-level limits are enforced by the
//! validating types of [`crate::model`] while decoding and by the frame
//! length bound of [`super::codec`].

use serde::{Deserialize, Serialize};

use super::RealizeError;
use crate::model::{
    Attributes, Delta, DirectoryId, FileEntry, FileStamp, FileState, Hash, RelPath, RootIdentity,
    Skipped, WritePlan,
};

/// First frame on the control stream, client to daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's [`super::PROTOCOL_VERSION`].
    pub version: u32,
}

/// The daemon's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The daemon's protocol version, or why it refuses the client.
    pub version: Result<u32, RealizeError>,
}

/// A request on the control stream. Ids are chosen by the client and echoed in
/// the [`Response`]; many requests may be outstanding, answered in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the response.
    pub id: u64,
    /// What to do.
    pub op: ControlRequest,
}

/// The operations of the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// BLAKE3 of the final file.
    Hash {
        /// Directory id.
        dir: DirectoryId,
        /// File path.
        path: RelPath,
    },
    /// BLAKE3 of each `block_size` block of the first `length` bytes of the
    /// final or partial file (the last block may be shorter).
    BlockHashes {
        /// Directory id.
        dir: DirectoryId,
        /// File path.
        path: RelPath,
        /// The final file or its partial file.
        state: FileState,
        /// Block size in bytes, at least [`crate::model::MIN_BLOCK_SIZE`].
        block_size: u64,
        /// Bytes to cover; at most [`crate::model::MAX_BLOCKS`] blocks.
        length: u64,
    },
    /// Set the limit on the file bytes the daemon sends on this connection
    /// (all streams together); `None` lifts it. The daemon never goes above
    /// its own cap for this peer.
    Configure {
        /// Bytes per second, or no limit.
        send_limit: Option<u64>,
    },
    /// Where the directory's root lives, so the command can refuse to move a
    /// directory into itself.
    RootIdentity {
        /// Directory id.
        dir: DirectoryId,
    },
    /// Delete a source file after its move, if its stamp is still `expected`;
    /// then remove the directories this left empty.
    Delete {
        /// Directory id.
        dir: DirectoryId,
        /// File path.
        path: RelPath,
        /// The stamp the file had when it was read.
        expected: FileStamp,
    },
    /// The daemon's statistics of this connection's path, so `realize bench`
    /// can report what the daemon's sending met (loss, congestion window).
    PathStats,
    /// Give the final file the source's attributes if its stamp is still
    /// `expected`: the destination already holds the content.
    SetAttributes {
        /// Directory id.
        dir: DirectoryId,
        /// File path.
        path: RelPath,
        /// The stamp the destination listed for the file.
        expected: FileStamp,
        /// Modification time and permission bits to give it.
        attributes: Attributes,
    },
    /// The ids of the directories the daemon serves, for `realize ls HOST`.
    ListDirs,
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The result.
    pub result: Result<ControlReply, RealizeError>,
}

/// Successful results of control requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    /// Answer to [`ControlRequest::Hash`].
    Hash(Hash),
    /// Answer to [`ControlRequest::BlockHashes`], one hash per block.
    BlockHashes(Vec<Hash>),
    /// Answer to [`ControlRequest::Configure`]: the limit now in force.
    Configured {
        /// Bytes per second, or no limit.
        send_limit: Option<u64>,
    },
    /// Answer to [`ControlRequest::RootIdentity`].
    RootIdentity(RootIdentity),
    /// Answer to [`ControlRequest::Delete`].
    Deleted,
    /// Answer to [`ControlRequest::PathStats`].
    PathStats(PathSample),
    /// Answer to [`ControlRequest::SetAttributes`].
    AttributesSet,
    /// Answer to [`ControlRequest::ListDirs`], in id order.
    Dirs(Vec<DirectoryId>),
}

/// One side's statistics of a connection's path at one moment, as quinn
/// counts them since the connection started. Counts cover what that side
/// sent; two samples give the figures of the time between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathSample {
    /// Smoothed round-trip time, in microseconds.
    pub rtt_us: u64,
    /// Smallest round-trip time seen, in microseconds.
    pub min_rtt_us: u64,
    /// Congestion window, in bytes.
    pub cwnd: u64,
    /// Congestion events (losses or ECN marks that shrank the window).
    pub congestion_events: u64,
    /// Packets sent.
    pub sent_packets: u64,
    /// Packets declared lost; their stream data is sent again.
    pub lost_packets: u64,
    /// Bytes of the packets declared lost.
    pub lost_bytes: u64,
    /// Bytes of the UDP datagrams sent (QUIC headers, encryption and
    /// retransmissions included).
    pub sent_bytes: u64,
}

/// First frame of a data stream, client to daemon: what the stream is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamRequest {
    /// List the directory. The daemon answers with [`ListItem`] frames.
    List {
        /// Directory id.
        dir: DirectoryId,
    },
    /// Read the bytes of a file that `delta` names. The daemon answers with
    /// a [`ReadHeader`], `delta.payload_len(size)` raw bytes, and a
    /// [`ReadTrailer`] whose hash covers the whole file.
    Read {
        /// Directory id.
        dir: DirectoryId,
        /// File path.
        path: RelPath,
        /// Which bytes to send; the rest are read and hashed, not sent.
        delta: Delta,
    },
    /// Write a file through its partial file. The client follows with
    /// `plan.delta.payload_len(plan.size)` raw bytes and a [`WriteTrailer`];
    /// the daemon answers with a [`WriteResult`].
    Write {
        /// Directory id.
        dir: DirectoryId,
        /// File path.
        path: RelPath,
        /// Size, which bytes arrive, what the final name may hold, and the
        /// final file's attributes.
        plan: WritePlan,
    },
    /// Measure sending: the client follows with raw bytes of any content
    /// until it finishes or resets its side; the daemon reads and drops them,
    /// then answers with a [`Discarded`].
    Discard,
    /// Measure receiving: the daemon answers with a [`GenerateHeader`], then
    /// `size` raw bytes of generated data, paced like reads.
    Generate {
        /// Bytes to send, at most [`super::MAX_GENERATE_LEN`].
        size: u64,
    },
}

/// The daemon's answer on a discard stream, once the client's side ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    /// Raw bytes the daemon read (and dropped) on this stream.
    pub received: u64,
}

/// The daemon's first answer to [`StreamRequest::Generate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateHeader {
    /// The number of raw bytes that follow, or why none do.
    pub size: Result<u64, RealizeError>,
}

/// One frame of a listing: files, skipped entries, then the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListItem {
    /// Up to [`super::MAX_LIST_CHUNK`] files.
    Files(Vec<FileEntry>),
    /// Up to [`super::MAX_LIST_CHUNK`] entries that are not moved.
    Skipped(Vec<Skipped>),
    /// The listing is complete, or failed.
    End(Result<(), RealizeError>),
}

/// The daemon's first answer to [`StreamRequest::Read`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadHeader {
    /// The file's stamp when opened; the delta's payload follows.
    pub stamp: Result<FileStamp, RealizeError>,
}

/// The frame after the raw bytes of a read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadTrailer {
    /// BLAKE3 of the whole file as read, from byte 0.
    pub hash: Hash,
    /// The file's stamp after reading: differs from the header's if the file
    /// changed during the read.
    pub stamp: FileStamp,
}

/// The frame after the raw bytes of a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteTrailer {
    /// BLAKE3 of the whole file as the sender read it. The daemon makes the
    /// file final only if what it wrote hashes to this.
    pub expected: Hash,
}

/// The daemon's answer on a write stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    /// The hash of the durable final file, or why it is not final.
    pub result: Result<Hash, RealizeError>,
}
