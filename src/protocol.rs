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
