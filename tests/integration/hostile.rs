//! A hand-made protocol client sends what a hostile peer would: paths that
//! try to leave the root, malformed and oversized frames. Each is refused,
//! nothing outside the root changes, and the daemon keeps serving.

use std::sync::Arc;

use quinn::{Connection, ReadError, RecvStream, SendStream, VarInt};
use realize::protocol::{
    code, encode, read_frame, write_frame, ErrorKind, Hello, HelloReply, ReadHeader, WriteResult,
};
use realize::transport::identity::{load_certificates, Identity};
use realize::transport::tls::{client_crypto, PinnedDaemon};
use serde::Serialize;
use tempfile::TempDir;

use crate::harness::*;

/// The shape of `StreamRequest` with unvalidated strings, as a hostile
/// client would encode it.
#[derive(Serialize)]
#[allow(dead_code)]
enum RawRequest {
    List {
        dir: String,
    },
    Read {
        dir: String,
        path: String,
        delta: RawDelta,
    },
    Write {
        dir: String,
        path: String,
        size: u64,
        delta: RawDelta,
    },
}

/// The shape of `Delta`: patches as (start, len), then the tail offset.
#[derive(Serialize, Default)]
struct RawDelta {
    patches: Vec<(u64, u64)>,
    offset: u64,
}

struct Raw {
    _endpoint: quinn::Endpoint,
    connection: Connection,
}

async fn connect(
    keys: &Keys,
    daemon: &Daemon,
    version: u32,
) -> (Raw, SendStream, RecvStream, HelloReply) {
    let identity = Identity::load(&keys.key("client"), &keys.cert("client")).unwrap();
    let daemon_cert = load_certificates(&keys.cert("daemon")).unwrap();
    let pinned = PinnedDaemon::new(&daemon_cert[0]).unwrap();
    let crypto = client_crypto(&identity, Arc::new(pinned)).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connection = endpoint
        .connect(daemon.addr, "realized")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, &Hello { version }).await.unwrap();
    let reply: HelloReply = read_frame(&mut recv).await.unwrap();
    (
        Raw {
            _endpoint: endpoint,
            connection,
        },
        send,
        recv,
        reply,
    )
}

/// Sends raw bytes as a data stream and returns how the daemon answered.
async fn stream_with(raw: &Raw, bytes: &[u8]) -> (SendStream, RecvStream) {
    let (mut send, recv) = raw.connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    (send, recv)
}

async fn assert_reset_as_violation(mut recv: RecvStream) {
    let result = recv.read_to_end(1 << 20).await;
    assert!(
        matches!(result, Err(quinn::ReadToEndError::Read(ReadError::Reset(c))) if c == VarInt::from_u32(code::PROTOCOL_VIOLATION)),
        "expected a protocol-violation reset, got {result:?}"
    );
}

fn request(path: &str, write: bool) -> Vec<u8> {
    let request = if write {
        RawRequest::Write {
            dir: "d".into(),
            path: path.into(),
            size: 4,
            delta: RawDelta::default(),
        }
    } else {
        RawRequest::Read {
            dir: "d".into(),
            path: path.into(),
            delta: RawDelta::default(),
        }
    };
    encode(&request).unwrap()
}

#[tokio::test]
async fn hostile_requests_are_refused_and_the_daemon_keeps_serving() {
    let keys = Keys::generate(&["client", "daemon"]);
    let root = TempDir::new().unwrap();
    let outside = TempDir::new().unwrap();
    write_file(outside.path(), "secret", b"do not touch");
    std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
    let mut daemon = Daemon::start(&keys, "daemon", &[("d", root.path())], &["client"]);
    let (raw, _control_send, _control_recv, reply) = connect(&keys, &daemon, 1).await;
    assert_eq!(reply.version, Ok(1));

    // Paths that are not safe relative paths never decode.
    for path in ["../escape", "/etc/passwd", "a/../../b", "a\0b", "a//b", ""] {
        for write in [true, false] {
            let (mut send, recv) = stream_with(&raw, &request(path, write)).await;
            let _ = send.write_all(b"evil").await;
            assert_reset_as_violation(recv).await;
        }
    }
    // An oversized length prefix and plain garbage.
    let (_send, recv) = stream_with(&raw, &u32::MAX.to_be_bytes()).await;
    assert_reset_as_violation(recv).await;
    let (_send, recv) = stream_with(&raw, &[0, 0, 0, 3, 0xff, 0xff, 0xff]).await;
    assert_reset_as_violation(recv).await;

    // A write stream that ends before its announced size: reset, and what
    // arrived stays in the partial file, never at the final name.
    let short = encode(&RawRequest::Write {
        dir: "d".into(),
        path: "short".into(),
        size: 10,
        delta: RawDelta::default(),
    })
    .unwrap();
    let (mut send, recv) = stream_with(&raw, &short).await;
    send.write_all(b"4 by").await.unwrap();
    send.finish().unwrap();
    assert_reset_as_violation(recv).await;
    assert!(!root.path().join("short").exists());

    // A delta that does not fit the file is refused with a reason.
    let bad_delta = encode(&RawRequest::Write {
        dir: "d".into(),
        path: "delta".into(),
        size: 10,
        delta: RawDelta {
            patches: vec![(8, 5)],
            offset: 10,
        },
    })
    .unwrap();
    let (_send, mut recv) = stream_with(&raw, &bad_delta).await;
    let result: WriteResult = read_frame(&mut recv).await.unwrap();
    assert_eq!(result.result.unwrap_err().kind, ErrorKind::Protocol);

    // Valid paths through a symlink out of the root are refused with a reason.
    let (mut send, mut recv) = stream_with(&raw, &request("link/secret", false)).await;
    send.finish().unwrap();
    let header: ReadHeader = read_frame(&mut recv).await.unwrap();
    let err = header.stamp.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidPath, "{err:?}");
    let (mut send, mut recv) = stream_with(&raw, &request("link/new", true)).await;
    let _ = send.write_all(b"evil").await;
    let result: WriteResult = read_frame(&mut recv).await.unwrap();
    assert_eq!(result.result.unwrap_err().kind, ErrorKind::InvalidPath);
    assert_eq!(
        snapshot(outside.path()).len(),
        1,
        "nothing written outside the root"
    );
    assert_eq!(
        std::fs::read(outside.path().join("secret")).unwrap(),
        b"do not touch"
    );

    // The same connection still works for an honest request.
    let (mut send, mut recv) = stream_with(
        &raw,
        &encode(&RawRequest::List { dir: "d".into() }).unwrap(),
    )
    .await;
    send.finish().unwrap();
    let listing: realize::protocol::ListItem = read_frame(&mut recv).await.unwrap();
    let realize::protocol::ListItem::Files(files) = listing else {
        panic!("expected files, got {listing:?}");
    };
    let listed: Vec<_> = files
        .iter()
        .map(|f| (f.path.as_str(), f.state, f.stamp.size))
        .collect();
    assert_eq!(listed, [("short", realize::model::FileState::Partial, 4)]);

    // A malformed control request closes that connection only.
    let (raw2, mut control, _recv, _) = connect(&keys, &daemon, 1).await;
    control.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
    let closed = raw2.connection.closed().await;
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(code::PROTOCOL_VIOLATION)),
        "{closed:?}"
    );
    assert!(daemon.is_running());
    daemon.wait_for_log("protocol violation");

    // And a real move still works.
    let src = TempDir::new().unwrap();
    write_file(src.path(), "honest.txt", b"hello");
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(root.path().join("honest.txt")).unwrap(),
        b"hello"
    );
}

#[tokio::test]
async fn another_protocol_version_is_refused_with_a_reason() {
    let keys = Keys::generate(&["client", "daemon"]);
    let root = TempDir::new().unwrap();
    let daemon = Daemon::start(&keys, "daemon", &[("d", root.path())], &["client"]);
    let (_raw, _send, _recv, reply) = connect(&keys, &daemon, 99).await;
    let err = reply.version.unwrap_err();
    assert_eq!(err.kind, ErrorKind::VersionMismatch);
    assert!(err.message.contains("99"), "{err:?}");
    daemon.wait_for_log("protocol version mismatch");
}
