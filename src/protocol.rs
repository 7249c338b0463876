//! The `realize/1` wire protocol: message types, the typed error that crosses
//! the wire, and the bounded frame codec.
//!
//! A connection carries one **control stream** (the first bidirectional stream
//! the client opens) and one **data stream** per listing or file transfer,
//! or per stream of generated data that `realize bench` measures.
//! Every message is a *frame*: a 4-byte big-endian length followed by that
//! many bytes of bincode. File content travels as raw bytes between frames.
//! `docs/protocol.md` is the full specification; this module is its code.
//!
//! Nothing here touches a socket: the codec works on any
//! `AsyncRead`/`AsyncWrite`, so it is tested in memory.

mod codec;
mod error;
mod message;

pub use codec::{decode, encode, read_frame, write_frame, FrameError};
pub use error::{ErrorKind, RealizeError};
pub use message::{
    ControlReply, ControlRequest, Discarded, GenerateHeader, Hello, HelloReply, ListItem,
    PathSample, ReadHeader, ReadTrailer, Request, Response, StreamRequest, WriteResult,
    WriteTrailer,
};

/// The ALPN protocol id negotiated by TLS.
pub const ALPN: &[u8] = b"realize/1";

/// The protocol version exchanged in [`Hello`]. Peers with another version
/// are refused with [`ErrorKind::VersionMismatch`].
pub const PROTOCOL_VERSION: u32 = 2;

/// Hard bound on one frame's payload, checked before any allocation.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Most entries in one [`ListItem::Files`] frame.
pub const MAX_LIST_CHUNK: usize = 1024;

/// Bytes of file content or generated data handled at once: a source reads
/// its file in chunks of this size and hands each to the stream, a daemon
/// reads a discard stream in chunks of at most this size, and generated data
/// is cut in chunks of it.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// The UDP port a daemon listens on, and a command connects to, when an
/// address names none.
pub const DEFAULT_PORT: u16 = 9771;

/// Most bytes one [`StreamRequest::Generate`] may ask for: 1 TiB.
pub const MAX_GENERATE_LEN: u64 = 1 << 40;

/// QUIC application error codes, used to close streams and connections.
pub mod code {
    /// Normal end of a connection.
    pub const DONE: u32 = 0;
    /// The peer broke the protocol (bad frame, unexpected message).
    pub const PROTOCOL_VIOLATION: u32 = 1;
    /// The peer speaks another protocol version.
    pub const VERSION_MISMATCH: u32 = 2;
    /// The sender gave up on this stream (source changed, run interrupted).
    pub const CANCELLED: u32 = 3;
    /// The receiver refused the stream; the reason follows in a frame.
    pub const REFUSED: u32 = 4;
    /// The daemon is shutting down.
    pub const SHUTDOWN: u32 = 5;
    /// The source could not be read to the end (I/O error, file shrank).
    pub const READ_FAILED: u32 = 6;
    /// The command stopped early (time limit, Ctrl-C); partial files are
    /// kept for the next run.
    pub const INTERRUPTED: u32 = 7;
    /// A write stream was silent too long in the middle of its bytes; the
    /// partial file keeps what arrived.
    pub const STALLED: u32 = 8;
    /// The daemon holds the most connections it allows this peer (or in
    /// all); retry later.
    pub const BUSY: u32 = 9;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc_tables::{self, grouped};
    use crate::model::{
        MAX_BLOCKS, MAX_COMPONENT_LEN, MAX_DIRECTORY_ID_LEN, MAX_PATH_LEN, MIN_BLOCK_SIZE,
    };
    use crate::server::Limits;
    use crate::service::local::{DEFAULT_LISTING_DEPTH, MAX_LISTING_DEPTH};
    use crate::throttle::{MAX_RATE, MIN_RATE};
    use crate::transport::endpoint::Tuning;

    /// `docs/protocol.md` §9 states the limits the code enforces: each row
    /// names the values of the constants it cites.
    #[test]
    fn protocol_md_states_the_limits() {
        let table = doc_tables::table("docs/protocol.md", &["Limit"]);
        let limits = Limits::default();
        let tuning = Tuning::default();
        let seconds = |duration: std::time::Duration| format!("{} s", duration.as_secs());
        let stated: &[(&str, Vec<String>)] = &[
            ("Frame payload", vec![grouped(MAX_FRAME_LEN as u64)]),
            ("Path length", vec![format!("{MAX_PATH_LEN} bytes")]),
            ("Path component", vec![format!("{MAX_COMPONENT_LEN} bytes")]),
            (
                "Directory id",
                vec![format!("1–{MAX_DIRECTORY_ID_LEN} bytes")],
            ),
            (
                "Entries per `Files` / `Skipped` frame",
                vec![MAX_LIST_CHUNK.to_string()],
            ),
            (
                "Listing depth",
                vec![
                    format!("default {DEFAULT_LISTING_DEPTH}"),
                    format!("at most {MAX_LISTING_DEPTH}"),
                ],
            ),
            (
                "Listings walking at once",
                vec![
                    format!("`[limits] listings` (default {})", limits.listings),
                    format!("(default {}) per peer", limits.listings_per_peer),
                ],
            ),
            (
                "Silence of a listing's reader",
                vec![seconds(limits.stall_timeout)],
            ),
            (
                "Time for a client to open its control stream and send `Hello`",
                vec![seconds(limits.hello_timeout)],
            ),
            (
                "Silence of a write stream",
                vec![seconds(limits.stall_timeout)],
            ),
            (
                "Silence inside a frame",
                vec![seconds(codec::FRAME_STALL_TIMEOUT)],
            ),
            (
                "Control requests served at once, per peer over all its connections",
                vec![limits.requests_per_peer.to_string()],
            ),
            (
                "Concurrent bidirectional streams, per connection",
                vec![
                    format!("+ 1 ({},", limits.streams_per_connection + 1),
                    format!("the command grants {}", tuning.max_streams),
                ],
            ),
            (
                "Stream / connection receive window",
                vec![format!(
                    "{} MiB / {} MiB",
                    tuning.stream_window >> 20,
                    tuning.connection_window >> 20
                )],
            ),
            ("Patches per `Delta`", vec![grouped(MAX_BLOCKS)]),
            ("`BlockHashes` block size", vec![grouped(MIN_BLOCK_SIZE)]),
            ("Blocks per `BlockHashes`", vec![grouped(MAX_BLOCKS)]),
            (
                "`Configure` send limit",
                vec![format!("{} – {}", grouped(MIN_RATE), grouped(MAX_RATE))],
            ),
            ("Bytes per `Generate`", vec![grouped(MAX_GENERATE_LEN)]),
            (
                "Bytes per discard stream",
                vec![format!("{} KiB chunk", CHUNK_SIZE >> 10)],
            ),
            ("Idle timeout", vec![seconds(tuning.idle_timeout)]),
            ("Keep-alive interval", vec![seconds(tuning.keep_alive)]),
            (
                "Connect timeout (QUIC, TLS and version handshake)",
                vec![seconds(tuning.connect_timeout)],
            ),
        ];
        for (limit, values) in stated {
            let cell = &doc_tables::row(&table, limit)[1];
            for value in values {
                assert!(
                    cell.contains(value.as_str()),
                    "docs/protocol.md §9 {limit}: {cell:?} should state {value:?}"
                );
            }
        }
    }
}
