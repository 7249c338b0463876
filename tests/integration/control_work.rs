//! Control work belongs to its connection and to its peer's share: hashing
//! stops when the connection that asked for it ends, and a peer gets at
//! most `[limits] requests_per_peer` requests served at once, however many
//! connections it opens.

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

/// A sparse file of 1 TiB: hashing it takes minutes and no disk.
fn huge_file(root: &Path) -> std::path::PathBuf {
    let path = root.join("huge.bin");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    path
}

/// Polls `count` until `done` holds or `limit` passes; returns the last count.
fn wait_for(
    limit: Duration,
    mut count: impl FnMut() -> usize,
    done: impl Fn(usize) -> bool,
) -> usize {
    let deadline = Instant::now() + limit;
    let mut now = count();
    while !done(now) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = count();
    }
    now
}

async fn connect(client: &Client, keys: &Keys, daemon: &Daemon) -> Arc<RemoteService> {
    let certs = load_certificates(&keys.cert("daemon")).unwrap();
    let expected = ExpectedDaemon::new(&certs[0], "daemon.crt").unwrap();
    Arc::new(client.connect(daemon.addr, &expected).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gets_its_request_share_across_connections_and_no_more() {
    let keys = Keys::generate(&["client", "daemon"]);
    let src = TempDir::new().unwrap();
    let huge = huge_file(src.path());
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    let identity = Identity::load(&keys.key("client"), &keys.cert("client")).unwrap();
    let client = Client::new(&identity, &Tuning::default()).unwrap();
    let connections = [
        connect(&client, &keys, &daemon).await,
        connect(&client, &keys, &daemon).await,
    ];
    // 96 hashes over two connections; the default share is 64.
    for remote in &connections {
        for _ in 0..48 {
            let remote = remote.clone();
            tokio::spawn(async move {
                let dir = DirectoryId::new("d").unwrap();
                let _ = remote.hash(&dir, &RelPath::new("huge.bin").unwrap()).await;
            });
        }
    }
    let hashing = tokio::task::block_in_place(|| {
        wait_for(
            Duration::from_secs(10),
            || daemon.fds_on(&huge),
            |n| n >= 64,
        );
        std::thread::sleep(Duration::from_secs(1)); // time for more to start
        daemon.fds_on(&huge)
    });
    assert!(
        (1..=64).contains(&hashing),
        "{hashing} hashes at once for one peer over two connections"
    );
    for remote in &connections {
        let _ = remote.close(true);
    }
    let left = tokio::task::block_in_place(|| {
        wait_for(Duration::from_secs(5), || daemon.fds_on(&huge), |n| n == 0)
    });
    assert_eq!(
        left, 0,
        "hashes still running after their connections closed"
    );
}

#[test]
fn hashing_stops_when_the_command_that_asked_for_it_is_killed() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    huge_file(src.path());
    // Same size on both sides: the command has both hash their copy.
    let huge = huge_file(dst.path());
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    let mut command = realize().args(&args).spawn().unwrap();
    let started = wait_for(Duration::from_secs(10), || daemon.fds_on(&huge), |n| n > 0);
    assert_eq!(
        started,
        1,
        "the daemon never hashed; log:\n{}",
        daemon.log()
    );
    command.kill().unwrap();
    command.wait().unwrap();
    // The daemon learns of the loss at the idle timeout (10 s).
    let left = wait_for(Duration::from_secs(20), || daemon.fds_on(&huge), |n| n == 0);
    assert_eq!(left, 0, "the daemon still hashes for a killed command");
}
