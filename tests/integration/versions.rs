//! The version handshake as the command sees it: a daemon that speaks
//! another protocol version is reported in one line, and nothing moves.

use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use realize::protocol::{
    code, read_frame, write_frame, ErrorKind, Hello, HelloReply, RealizeError,
};
use realize::transport::identity::{load_certificates, Identity};
use realize::transport::tls::{server_crypto, PinnedPeers};
use tempfile::TempDir;

use crate::harness::*;

/// The version the stand-in daemon claims to speak.
const OTHER_VERSION: u32 = 99;

/// What the stand-in daemon saw.
struct Seen {
    /// The version the command said hello with.
    hello: u32,
    /// Whether more came on the control stream before the daemon answered
    /// the `Hello`: the command's first request, sent without waiting.
    request_before_answer: bool,
}

/// A daemon with `keys`' "daemon" identity, trusting "client", that refuses
/// every `Hello` as a daemon of [`OTHER_VERSION`] would. Returns its address
/// and what it will have seen of the one connection it serves.
async fn other_version_daemon(keys: &Keys) -> (String, tokio::task::JoinHandle<Seen>) {
    let identity = Identity::load(&keys.key("daemon"), &keys.cert("daemon")).unwrap();
    let client = load_certificates(&keys.cert("client")).unwrap().remove(0);
    let peers = PinnedPeers::new([("client".to_string(), &client)]).unwrap();
    let crypto = server_crypto(&identity, Arc::new(peers)).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap().to_string();
    let served = tokio::spawn(async move {
        let connection = endpoint.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let hello: Hello = read_frame(&mut recv).await.unwrap();
        let mut next = [0u8; 1];
        let more = tokio::time::timeout(Duration::from_secs(2), recv.read(&mut next)).await;
        let refusal = RealizeError::new(
            ErrorKind::VersionMismatch,
            format!(
                "this daemon speaks protocol version {OTHER_VERSION}, not {}",
                hello.version
            ),
        );
        let reply = HelloReply {
            version: Err(refusal),
        };
        write_frame(&mut send, &reply).await.unwrap();
        send.finish().unwrap();
        let _ = send.stopped().await;
        connection.close(
            VarInt::from_u32(code::VERSION_MISMATCH),
            b"version mismatch",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        Seen {
            hello: hello.version,
            request_before_answer: matches!(more, Ok(Ok(Some(1)))),
        }
    });
    (addr, served)
}

#[test]
fn a_daemon_of_another_version_is_reported_and_nothing_moves() {
    let keys = Keys::generate(&["client", "daemon"]);
    let src = TempDir::new().unwrap();
    write_file(src.path(), "f", b"data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (addr, served) = runtime.block_on(other_version_daemon(&keys));
    let mut args: Vec<String> = [
        "--src-path",
        src.path().to_str().unwrap(),
        "--dst-addr",
        &addr,
    ]
    .map(String::from)
    .into();
    args.extend(["--directory-id".into(), "d".into()]);
    args.extend(keys.client_args("client", "daemon"));
    let out = realize().args(&args).output().unwrap();
    let seen = runtime.block_on(served).unwrap();

    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    let expected = format!(
        "{addr} refused the handshake: this daemon speaks protocol version {OTHER_VERSION}, not {}",
        realize::protocol::PROTOCOL_VERSION
    );
    assert!(err.contains(&expected), "{err}");
    assert_eq!(seen.hello, realize::protocol::PROTOCOL_VERSION);
    assert!(
        seen.request_before_answer,
        "the command waited for the answer to its Hello before its first request"
    );
    assert_eq!(std::fs::read(src.path().join("f")).unwrap(), b"data");
}
