//! Length-prefixed bincode frames with a hard size bound.
//!
//! A frame is a `u32` big-endian payload length, then the payload. The length
//! is checked against [`MAX_FRAME_LEN`] *before* anything is allocated, and
//! bincode decodes under the same limit, so a hostile peer cannot make us
//! allocate more than one bounded frame. This module is the only place that
//! knows the encoding, so the format can change behind it.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::MAX_FRAME_LEN;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended cleanly before a frame started.
    #[error("the stream ended")]
    Closed,
    /// The stream failed or ended inside a frame.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame announced more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge(usize),
    /// The payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_limit::<MAX_FRAME_LEN>()
}

/// Encodes `message` into a frame, length prefix included.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; 4];
    bincode::serde::encode_into_std_write(message, &mut frame, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = frame.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Decodes one payload (without its length prefix). Trailing bytes are an
/// error: a frame holds exactly one message.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(payload.len()));
    }
    let (message, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(message)
}

/// Writes `message` as one frame.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    writer.write_all(&encode(message)?).await?;
    Ok(())
}

/// Reads one frame and decodes it. Returns [`FrameError::Closed`] if the
/// stream ends cleanly before the frame's first byte.
pub async fn read_frame<R, T>(reader: &mut R) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    let first = reader.read(&mut len).await?;
    if first == 0 {
        return Err(FrameError::Closed);
    }
    read_progressing(reader, &mut len[first..]).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    // The buffer grows with what arrives: a header alone holds no memory.
    let mut payload = Vec::new();
    while payload.len() < len {
        let start = payload.len();
        payload.resize(len.min(start + GROWTH), 0);
        read_progressing(reader, &mut payload[start..]).await?;
    }
    decode(&payload)
}

/// Longest wait for the next byte of a frame already begun: a peer that
/// announces a frame and stalls loses its stream, not a task and a buffer
/// for good. Slow links are not penalised, only silence.
pub(super) const FRAME_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How much the payload buffer of a frame grows at a time.
const GROWTH: usize = 64 * 1024;

/// Fills `buf`, failing if no byte arrives for [`FRAME_STALL_TIMEOUT`].
async fn read_progressing<R: AsyncRead + Unpin>(
    reader: &mut R,
    mut buf: &mut [u8],
) -> std::io::Result<()> {
    while !buf.is_empty() {
        let read = tokio::time::timeout(FRAME_STALL_TIMEOUT, reader.read(buf))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no byte of a begun frame for {FRAME_STALL_TIMEOUT:?}"),
                )
            })??;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[read..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DirectoryId, RelPath};
    use crate::protocol::StreamRequest;

    fn write_request(path: &str) -> StreamRequest {
        StreamRequest::Write {
            dir: DirectoryId::new("d").unwrap(),
            path: RelPath::new(path).unwrap(),
            plan: crate::model::WritePlan {
                size: 10,
                delta: crate::model::Delta::full(),
                replaces: None,
                attributes: crate::model::Attributes {
                    modified_ns: 0,
                    mode: 0o644,
                    owner: None,
                },
            },
        }
    }

    #[tokio::test]
    async fn frames_round_trip_in_sequence() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &write_request("x/y")).await.unwrap();
        write_frame(&mut a, &write_request("z")).await.unwrap();
        drop(a);
        let first: StreamRequest = read_frame(&mut b).await.unwrap();
        let second: StreamRequest = read_frame(&mut b).await.unwrap();
        assert_eq!(first, write_request("x/y"));
        assert_eq!(second, write_request("z"));
        assert!(matches!(
            read_frame::<_, StreamRequest>(&mut b).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_allocating() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let result = read_frame::<_, StreamRequest>(&mut b).await;
        assert!(matches!(result, Err(FrameError::TooLarge(n)) if n == u32::MAX as usize));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error_not_a_close() {
        let frame = encode(&write_request("abc")).unwrap();
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&frame[..frame.len() - 1]).await.unwrap();
        drop(a);
        let result = read_frame::<_, StreamRequest>(&mut b).await;
        assert!(matches!(result, Err(FrameError::Io(_))), "{result:?}");
    }

    #[test]
    fn hostile_path_is_refused_while_decoding() {
        // Encode a message whose path field holds "../etc" by encoding the
        // same shape with plain strings, as a hostile client would.
        #[derive(serde::Serialize)]
        enum Shape {
            #[allow(dead_code)]
            List(String),
            #[allow(dead_code)]
            Read(String, String, Vec<(u64, u64)>, u64),
        }
        let frame = encode(&Shape::Read("d".into(), "../etc/passwd".into(), vec![], 0)).unwrap();
        let result = decode::<StreamRequest>(&frame[4..]);
        assert!(
            matches!(&result, Err(FrameError::Malformed(m)) if m.contains("..")),
            "{result:?}"
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        assert!(matches!(
            decode::<StreamRequest>(&[0xff, 0xff, 0xff]),
            Err(FrameError::Malformed(_))
        ));
        let mut frame = encode(&write_request("a")).unwrap();
        frame.push(0);
        assert!(matches!(
            decode::<StreamRequest>(&frame[4..]),
            Err(FrameError::Malformed(_))
        ));
    }

    /// A message's frame in hex, bytes separated by spaces.
    fn frame<T: serde::Serialize>(message: &T) -> String {
        let bytes = encode(message).unwrap();
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The bench frames as `docs/protocol.md` §4.3 shows them.
    #[test]
    fn bench_frames_encode_as_documented() {
        use crate::protocol::{
            ControlReply, ControlRequest, Discarded, GenerateHeader, PathSample, Request, Response,
        };
        let size = 16 << 20;
        assert_eq!(frame(&StreamRequest::Discard), "00 00 00 01 03");
        assert_eq!(
            frame(&StreamRequest::Generate { size }),
            "00 00 00 06 04 fc 01 00 00 00"
        );
        assert_eq!(frame(&Discarded { received: 300 }), "00 00 00 03 fb 01 2c");
        assert_eq!(
            frame(&GenerateHeader { size: Ok(size) }),
            "00 00 00 06 00 fc 01 00 00 00"
        );
        let request = Request {
            id: 6,
            op: ControlRequest::PathStats,
        };
        assert_eq!(frame(&request), "00 00 00 02 06 05");
        let sample = PathSample {
            rtt_us: 40_000,
            min_rtt_us: 39_000,
            cwnd: 1_000_000,
            congestion_events: 2,
            sent_packets: 5000,
            lost_packets: 3,
            lost_bytes: 3600,
            sent_bytes: 6_000_000,
        };
        let response = Response {
            id: 6,
            result: Ok(ControlReply::PathStats(sample)),
        };
        assert_eq!(
            frame(&response),
            "00 00 00 1b 06 00 05 fb 9c 40 fb 98 58 fc 00 0f 42 40 02 fb 13 88 03 fb 0e 10 \
             fc 00 5b 8d 80"
        );
    }

    /// `ListDirs` and `Dirs` as `docs/protocol.md` §4.3 shows them.
    #[test]
    fn directory_list_frames_encode_as_documented() {
        use crate::model::DirectoryId;
        use crate::protocol::{ControlReply, ControlRequest, Request, Response};
        let request = Request {
            id: 8,
            op: ControlRequest::ListDirs,
        };
        assert_eq!(frame(&request), "00 00 00 02 08 07");
        let dirs = ["docs", "photos"].map(|id| DirectoryId::new(id).unwrap());
        let response = Response {
            id: 8,
            result: Ok(ControlReply::Dirs(dirs.into())),
        };
        assert_eq!(
            frame(&response),
            "00 00 00 10 08 00 07 02 04 64 6f 63 73 06 70 68 6f 74 6f 73"
        );
    }

    #[test]
    fn oversized_message_is_refused_when_encoding() {
        let big = crate::protocol::RealizeError::new(
            crate::protocol::ErrorKind::Io,
            "x".repeat(MAX_FRAME_LEN + 1),
        );
        assert!(encode(&big).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_stalls_after_its_header_fails_in_bounded_time() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&[0, 0, 1, 0, 7, 7]).await.unwrap(); // 256 announced, 2 sent
        let read = tokio::time::timeout(
            FRAME_STALL_TIMEOUT * 2,
            read_frame::<_, StreamRequest>(&mut b),
        )
        .await
        .expect("the read gives up");
        match read {
            Err(FrameError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
        drop(a);
    }

    /// The examples of docs/protocol.md §4.3 that carry stamps, plans and
    /// attributes (protocol version 2).
    #[test]
    fn file_metadata_frames_encode_as_documented() {
        use crate::model::{Attributes, Delta, FileStamp, Owner, WritePlan};
        use crate::protocol::{ControlRequest, ReadHeader, Request};
        let (dir, path) = (
            DirectoryId::new("photos").unwrap(),
            RelPath::new("a/b.jpg").unwrap(),
        );
        let owner = Owner {
            uid: 1000,
            gid: 100,
        };
        let stamp = |size, modified_ns, inode, changed_ns, mode| FileStamp {
            size,
            modified_ns,
            inode,
            changed_ns,
            mode,
            owner,
        };
        let attributes = Attributes {
            modified_ns: 1,
            mode: 0o644,
            owner: Some(owner),
        };
        let delete = Request {
            id: 300,
            op: ControlRequest::Delete {
                dir: dir.clone(),
                path: path.clone(),
                expected: stamp(1000, -1, 42, 2, 0o644),
            },
        };
        assert_eq!(
            frame(&delete),
            "00 00 00 20 fb 01 2c 04 06 70 68 6f 74 6f 73 07 61 2f 62 2e 6a 70 67 \
             fb 03 e8 01 2a 04 fb 01 a4 fb 03 e8 64"
        );
        let write = StreamRequest::Write {
            dir: dir.clone(),
            path: path.clone(),
            plan: WritePlan {
                size: 70_000,
                delta: Delta::full(),
                replaces: None,
                attributes,
            },
        };
        assert_eq!(
            frame(&write),
            "00 00 00 21 02 06 70 68 6f 74 6f 73 07 61 2f 62 2e 6a 70 67 fc 00 01 11 70 \
             00 00 00 02 fb 01 a4 01 fb 03 e8 64"
        );
        let header = ReadHeader {
            stamp: Ok(stamp(5, 2, 7, 3, 0o644)),
        };
        assert_eq!(
            frame(&header),
            "00 00 00 0c 00 05 04 07 06 fb 01 a4 fb 03 e8 64"
        );
        let set = Request {
            id: 7,
            op: ControlRequest::SetAttributes {
                dir,
                path,
                expected: stamp(5, 2, 7, 3, 0o600),
                attributes,
            },
        };
        assert_eq!(
            frame(&set),
            "00 00 00 25 07 06 06 70 68 6f 74 6f 73 07 61 2f 62 2e 6a 70 67 05 04 07 06 \
             fb 01 80 fb 03 e8 64 02 fb 01 a4 01 fb 03 e8 64"
        );
    }
}
