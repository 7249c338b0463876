//! `realized` reads its configuration again on SIGHUP: new peers and
//! directories serve new connections, connections in progress go on, every
//! `[limits]` bound applies at once without taking back a place in use, and
//! a configuration that does not load changes nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use realize::client::{Client, ExpectedDaemon, RemoteService};
use realize::model::{DirectoryId, RelPath};
use realize::service::Service;
use realize::transport::endpoint::Tuning;
use realize::transport::identity::{load_certificates, Identity};
use tempfile::TempDir;

use crate::harness::*;
use crate::hostile::{self, Raw, VERSION};

/// How many times the daemon's log has `needle`.
fn logged(daemon: &Daemon, needle: &str) -> usize {
    daemon.log().matches(needle).count()
}

/// Waits up to 10 s until the daemon's log has `needle` `times` times.
fn wait_for_logged(daemon: &Daemon, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while logged(daemon, needle) < times {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged {times} times:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `toml` as the daemon's configuration, sends SIGHUP and waits
/// until the daemon has reloaded it.
fn reload(daemon: &Daemon, toml: &str) {
    let before = logged(daemon, "configuration reloaded");
    std::fs::write(&daemon.config, toml).unwrap();
    daemon.hang_up();
    wait_for_logged(daemon, "configuration reloaded", before + 1);
}

/// [`reload`] from within an async test.
fn reload_in_place(daemon: &Daemon, toml: &str) {
    tokio::task::block_in_place(|| reload(daemon, toml));
}

/// A daemon serving `dir` as `d` to `client`, with `limits` as its
/// `[limits]` table; and its configuration without them.
fn start_with_limits(keys: &Keys, dir: &Path, limits: &str) -> (Daemon, String) {
    let base = daemon_toml("daemon", &[("d", dir)], &["client"]);
    let config = keys.dir.path().join("daemon.toml");
    std::fs::write(&config, format!("{base}[limits]\n{limits}\n")).unwrap();
    (Daemon::start_with_config(&config), base)
}

/// The command's client as `client`.
fn client(keys: &Keys) -> Client {
    let identity = Identity::load(&keys.key("client"), &keys.cert("client")).unwrap();
    Client::new(&identity, &Tuning::default()).unwrap()
}

/// A connection of `client` to `daemon`, if the daemon serves it.
async fn connect(client: &Client, keys: &Keys, daemon: &Daemon) -> Option<RemoteService> {
    let certs = load_certificates(&keys.cert("daemon")).unwrap();
    let expected = ExpectedDaemon::new(&certs[0], "daemon.crt").unwrap();
    client.connect(daemon.addr, &expected).await.ok()
}

/// Whether `remote`'s connection still answers requests.
async fn answers(remote: &RemoteService) -> bool {
    remote.list_dirs().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_connections_per_peer_and_keeps_connections_open() {
    let keys = Keys::generate(&["daemon", "client"]);
    let dir = TempDir::new().unwrap();
    let (daemon, base) = start_with_limits(&keys, dir.path(), "connections_per_peer = 1");
    let client = client(&keys);
    let first = connect(&client, &keys, &daemon).await.expect("first");
    assert!(connect(&client, &keys, &daemon).await.is_none());

    reload_in_place(
        &daemon,
        &format!("{base}[limits]\nconnections_per_peer = 2\n"),
    );
    let second = connect(&client, &keys, &daemon)
        .await
        .expect("a second connection once the peer may have two");
    assert!(answers(&first).await, "the first connection is kept");

    // Lowered while two are open: both stay, no third enters, and none
    // until the peer holds fewer than one.
    reload_in_place(
        &daemon,
        &format!("{base}[limits]\nconnections_per_peer = 1\n"),
    );
    assert!(answers(&first).await && answers(&second).await);
    assert!(connect(&client, &keys, &daemon).await.is_none());
    let _ = first.close(false);
    tokio::task::block_in_place(|| wait_for_logged(&daemon, "connection closed", 1));
    assert!(connect(&client, &keys, &daemon).await.is_none());
    let _ = second.close(false);
    tokio::task::block_in_place(|| wait_for_logged(&daemon, "connection closed", 2));
    assert!(connect(&client, &keys, &daemon).await.is_some());
    // The log reaches the test through a pipe and a reader thread, so the
    // third acceptance may trail the handshake; the lines come in order, so
    // once it is in, any acceptance before it is in too.
    tokio::task::block_in_place(|| wait_for_logged(&daemon, "connection accepted peer=client", 3));
    assert_eq!(
        logged(&daemon, "connection accepted peer=client"),
        3,
        "no connection was dropped and made again:\n{}",
        daemon.log()
    );
}

/// Opens a data stream on `raw` if the daemon's stream credit allows one
/// within `wait`.
async fn open_stream(raw: &Raw, wait: Duration) -> Option<(quinn::SendStream, quinn::RecvStream)> {
    let opened = tokio::time::timeout(wait, raw.connection.open_bi()).await;
    opened
        .ok()
        .map(|opened| opened.expect("the connection is open"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_gives_open_connections_the_new_stream_credit() {
    let (granted, withheld) = (Duration::from_secs(5), Duration::from_millis(500));
    let keys = Keys::generate(&["daemon", "client"]);
    let dir = TempDir::new().unwrap();
    let (daemon, base) = start_with_limits(&keys, dir.path(), "streams_per_connection = 1");
    let (open, _control_send, _control_recv, hello) =
        hostile::connect(&keys, &daemon, VERSION).await;
    assert_eq!(hello.version, Ok(VERSION));
    let mut streams = vec![open_stream(&open, granted).await.expect("one data stream")];
    assert!(open_stream(&open, withheld).await.is_none(), "one at most");

    reload_in_place(
        &daemon,
        &format!("{base}[limits]\nstreams_per_connection = 3\n"),
    );
    for _ in 0..2 {
        let stream = open_stream(&open, granted).await;
        streams.push(stream.expect("the open connection may open three"));
    }
    assert!(
        open_stream(&open, withheld).await.is_none(),
        "three at most"
    );

    // Lowered: the open connection keeps the credit it was given, a new
    // one gets the new bound.
    reload_in_place(
        &daemon,
        &format!("{base}[limits]\nstreams_per_connection = 1\n"),
    );
    let (new, _new_send, _new_recv, _) = hostile::connect(&keys, &daemon, VERSION).await;
    let _one = open_stream(&new, granted).await.expect("one data stream");
    assert!(open_stream(&new, withheld).await.is_none(), "one at most");
    assert!(open.connection.close_reason().is_none(), "never dropped");
}

/// A sparse file of 1 TiB: hashing it takes minutes and no disk.
fn huge_file(root: &Path) -> std::path::PathBuf {
    let path = root.join("huge.bin");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    path
}

/// Asks `remote` to hash `huge.bin` `count` times, in the background.
fn hash_huge(remote: &Arc<RemoteService>, count: usize) {
    for _ in 0..count {
        let remote = remote.clone();
        tokio::spawn(async move {
            let dir = DirectoryId::new("d").unwrap();
            let _ = remote.hash(&dir, &RelPath::new("huge.bin").unwrap()).await;
        });
    }
}

/// How many hashes of `huge` the daemon runs once `settled` holds of their
/// number (or 10 s passed) and a second more went by: one descriptor each.
fn hashes_running(daemon: &Daemon, huge: &Path, settled: impl Fn(usize) -> bool) -> usize {
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !settled(daemon.fds_on(huge)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(1));
        daemon.fds_on(huge)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_requests_per_peer_to_the_requests_waiting() {
    let keys = Keys::generate(&["daemon", "client"]);
    let dir = TempDir::new().unwrap();
    let huge = huge_file(dir.path());
    let (daemon, base) = start_with_limits(&keys, dir.path(), "requests_per_peer = 1");
    let client = client(&keys);
    let first = Arc::new(connect(&client, &keys, &daemon).await.unwrap());
    hash_huge(&first, 3);
    assert_eq!(hashes_running(&daemon, &huge, |n| n >= 1), 1);

    reload_in_place(&daemon, &format!("{base}[limits]\nrequests_per_peer = 3\n"));
    assert_eq!(
        hashes_running(&daemon, &huge, |n| n >= 3),
        3,
        "the waiting ones start"
    );

    // Lowered while three run: they go on, and once they end, one place is
    // left for the two requests of another connection of the peer.
    let second = Arc::new(connect(&client, &keys, &daemon).await.unwrap());
    hash_huge(&second, 2);
    reload_in_place(&daemon, &format!("{base}[limits]\nrequests_per_peer = 1\n"));
    assert_eq!(hashes_running(&daemon, &huge, |_| false), 3, "none revoked");
    let _ = first.close(true);
    assert_eq!(hashes_running(&daemon, &huge, |n| n <= 1), 1);
    let _ = second.close(true);
}

#[test]
fn sighup_applies_new_peers_and_dirs_and_keeps_connections() {
    let keys = Keys::generate(&["daemon", "alice", "bob", "carol"]);
    let (photos, music) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let daemon = Daemon::start(
        &keys,
        "daemon",
        &[("photos", photos.path())],
        &["alice", "carol"],
    );

    // carol moves 4 MiB at 1 MiB/s: her connection is open across the reload.
    let slow = TempDir::new().unwrap();
    write_file(slow.path(), "big", &pattern(7, 4 << 20));
    let carol_args = to_daemon(&keys, slow.path(), &daemon, "photos", "carol", "daemon");
    let mut carol = realize()
        .args(&carol_args)
        .args(["--throttle-up", "1M", "-q"])
        .spawn()
        .unwrap();
    daemon.wait_for_log("connection accepted peer=carol");

    // alice is removed, bob added, and a directory added; the metrics
    // address waits for a restart.
    let toml = daemon_toml(
        "daemon",
        &[("photos", photos.path()), ("music", music.path())],
        &["bob", "carol"],
    );
    std::fs::write(&daemon.config, format!("metrics = \"127.0.0.1:1\"\n{toml}")).unwrap();
    daemon.hang_up();
    daemon.wait_for_log("configuration reloaded");
    daemon.wait_for_log("apply only when the daemon restarts keys=metrics");
    assert!(
        carol.try_wait().unwrap().is_none(),
        "carol's move is still running after the reload"
    );

    let src = TempDir::new().unwrap();
    write_file(src.path(), "song", b"la la la");
    let bob = realize()
        .args(to_daemon(
            &keys,
            src.path(),
            &daemon,
            "music",
            "bob",
            "daemon",
        ))
        .output()
        .unwrap();
    assert!(bob.status.success(), "bob is a new peer: {}", stderr(&bob));
    assert_eq!(
        std::fs::read(music.path().join("song")).unwrap(),
        b"la la la"
    );

    write_file(src.path(), "picture", b"pixels");
    let alice = realize()
        .args(to_daemon(
            &keys,
            src.path(),
            &daemon,
            "photos",
            "alice",
            "daemon",
        ))
        .output()
        .unwrap();
    assert_eq!(alice.status.code(), Some(1), "{}", stderr(&alice));
    assert!(stderr(&alice).contains("refused"), "{}", stderr(&alice));
    daemon.wait_for_log("refused connection: unknown peer certificate");
    assert!(!photos.path().join("picture").exists());

    assert!(carol.wait().unwrap().success());
    assert_eq!(
        std::fs::read(photos.path().join("big")).unwrap(),
        pattern(7, 4 << 20)
    );
    assert_eq!(
        logged(&daemon, "connection accepted peer=carol"),
        1,
        "carol's connection was never dropped and made again:\n{}",
        daemon.log()
    );
}

#[test]
fn a_configuration_that_does_not_load_is_logged_and_changes_nothing() {
    let keys = Keys::generate(&["daemon", "alice"]);
    let dst = TempDir::new().unwrap();
    let mut daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["alice"]);
    let good = std::fs::read_to_string(&daemon.config).unwrap();

    // Not TOML at all, then TOML naming a certificate that is not there.
    std::fs::write(&daemon.config, "listen = [oops").unwrap();
    daemon.hang_up();
    wait_for_logged(&daemon, "configuration not reloaded", 1);
    std::fs::write(&daemon.config, good.replace("alice.crt", "missing.crt")).unwrap();
    daemon.hang_up();
    wait_for_logged(&daemon, "configuration not reloaded", 2);
    assert!(daemon.log().contains("missing.crt"), "{}", daemon.log());
    assert!(!daemon.log().contains("configuration reloaded"));

    let src = TempDir::new().unwrap();
    write_file(src.path(), "still", b"served");
    let out = realize()
        .args(to_daemon(
            &keys,
            src.path(),
            &daemon,
            "d",
            "alice",
            "daemon",
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dst.path().join("still")).unwrap(), b"served");
    assert!(daemon.is_running());
}
