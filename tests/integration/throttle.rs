//! Throttling: each limit paces the right sender, and takes about as long as
//! it implies. Bounds are wide (a loaded machine must not flake them);
//! accuracy is measured by the benchmark, not here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use realize::client::{Client, ExpectedDaemon};
use realize::model::{Delta, DirectoryId, RelPath};
use realize::service::{FileReader, ReadEvent, Service};
use realize::transport::endpoint::Tuning;
use realize::transport::identity::{load_certificates, Identity};
use tempfile::TempDir;

use crate::harness::*;

const SIZE: usize = 12 << 20;

struct Setup {
    keys: Keys,
    src: TempDir,
    dst: TempDir,
}

fn setup() -> Setup {
    let s = Setup {
        keys: Keys::generate(&["client", "daemon", "daemon-b"]),
        src: TempDir::new().unwrap(),
        dst: TempDir::new().unwrap(),
    };
    write_file(s.src.path(), "file.bin", &pattern(61, SIZE));
    s
}

/// Runs a move and returns how long it took; it must succeed and be intact.
fn timed(s: &Setup, args: &[String]) -> Duration {
    let started = Instant::now();
    let out = realize().args(args).output().unwrap();
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(s.dst.path().join("file.bin")).unwrap(),
        pattern(61, SIZE)
    );
    elapsed
}

/// 12 MiB at 4 MiB/s: about 3 s.
fn assert_about_three_seconds(elapsed: Duration) {
    assert!(
        elapsed >= Duration::from_millis(2400),
        "too fast for the limit: {elapsed:?}"
    );
    assert!(elapsed <= Duration::from_secs(9), "too slow: {elapsed:?}");
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn throttle_up_paces_the_command_sending_to_a_daemon() {
    let s = setup();
    let daemon = Daemon::start(&s.keys, "daemon", &[("d", s.dst.path())], &["client"]);
    let args = to_daemon(&s.keys, s.src.path(), &daemon, "d", "client", "daemon");
    assert_about_three_seconds(timed(&s, &with(args, &["--throttle-up", "4M"])));
    assert!(
        !daemon.log().contains("send limit changed"),
        "the daemon sends nothing here"
    );
}

#[test]
fn throttle_down_makes_the_source_daemon_pace_itself() {
    let s = setup();
    let daemon = Daemon::start(&s.keys, "daemon", &[("d", s.src.path())], &["client"]);
    let args = from_daemon(&s.keys, &daemon, "d", s.dst.path(), "client", "daemon");
    assert_about_three_seconds(timed(&s, &with(args, &["--throttle", "4M"])));
    let log = daemon.wait_for_log("send limit changed");
    assert!(log.contains("old=unlimited new=4.00 MiB/s"), "{log}");
}

#[test]
fn the_daemon_caps_what_a_peer_may_ask_for() {
    let s = setup();
    let config = s.keys.dir.path().join("capped.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nkey = \"daemon.key\"\ncert = \"daemon.crt\"\n[dirs]\nd = {:?}\n[peers]\nclient = \"client.crt\"\n[send_limits]\nclient = \"4M\"\n",
            s.src.path().display().to_string()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_config(&config);
    let args = from_daemon(&s.keys, &daemon, "d", s.dst.path(), "client", "daemon");
    // Asking for more than the cap gets the cap; asking for nothing too.
    assert_about_three_seconds(timed(&s, &with(args, &["--throttle-down", "100M"])));
    let log = daemon.wait_for_log("send limit changed");
    assert!(
        log.contains("new=4.00 MiB/s requested=100.00 MiB/s cap=4.00 MiB/s"),
        "{log}"
    );
}

#[test]
fn local_sides_are_paced_by_the_command() {
    let s = setup();
    let args: Vec<String> = [
        "--src-path",
        s.src.path().to_str().unwrap(),
        "--dst-path",
        s.dst.path().to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    assert_about_three_seconds(timed(&s, &with(args, &["--throttle-down", "4M"])));
}

#[test]
fn remote_to_remote_paces_the_relay_towards_the_destination() {
    let s = setup();
    let a = Daemon::start(&s.keys, "daemon", &[("d", s.src.path())], &["client"]);
    let b = Daemon::start(&s.keys, "daemon-b", &[("d", s.dst.path())], &["client"]);
    let mut args = vec![
        "--src-addr".to_string(),
        a.addr(),
        "--dst-addr".into(),
        b.addr(),
        "--directory-id".into(),
        "d".into(),
    ];
    args.extend(s.keys.relay_args("client", "daemon", "daemon-b"));
    assert_about_three_seconds(timed(&s, &with(args, &["--throttle-up", "4M"])));
    assert!(
        !a.log().contains("send limit changed"),
        "only --throttle-down configures the source"
    );
}

#[tokio::test]
async fn changing_the_limit_mid_transfer_changes_the_rate() {
    let keys = Keys::generate(&["client", "daemon"]);
    let src = TempDir::new().unwrap();
    write_file(src.path(), "long.bin", &pattern(62, 64 << 20));
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    let identity = Identity::load(&keys.key("client"), &keys.cert("client")).unwrap();
    let certs = load_certificates(&keys.cert("daemon")).unwrap();
    let expected = ExpectedDaemon::new(&certs[0], "daemon.crt").unwrap();
    let client = Client::new(&identity, &Tuning::default()).unwrap();
    let remote = Arc::new(client.connect(daemon.addr, &expected).await.unwrap());

    let slow = "1M".parse().unwrap();
    assert_eq!(remote.configure(Some(slow)).await.unwrap(), Some(slow));
    let dir = DirectoryId::new("d").unwrap();
    let mut reader = remote
        .read(&dir, &RelPath::new("long.bin").unwrap(), &Delta::full())
        .await
        .unwrap();
    bytes_in(&mut reader, Duration::from_millis(500)).await; // past the first burst
    let before = bytes_in(&mut reader, Duration::from_secs(2)).await;
    let fast = "8M".parse().unwrap();
    assert_eq!(remote.configure(Some(fast)).await.unwrap(), Some(fast));
    bytes_in(&mut reader, Duration::from_millis(300)).await;
    let after = bytes_in(&mut reader, Duration::from_secs(2)).await;
    assert!(before < 1.5 * 1048576.0, "limited to 1M: {before}");
    assert!(
        after > 3.0 * before,
        "raised to 8M: before {before}, after {after}"
    );
}

/// Bytes per second read from `reader` during `window`.
async fn bytes_in(reader: &mut Box<dyn FileReader>, window: Duration) -> f64 {
    let end = Instant::now() + window;
    let mut bytes = 0;
    while Instant::now() < end {
        match reader.next().await.unwrap() {
            ReadEvent::Data(chunk) => bytes += chunk.len(),
            ReadEvent::Done(_) => panic!("the file ended"),
        }
    }
    bytes as f64 / window.as_secs_f64()
}

#[test]
fn the_cap_holds_for_all_of_a_peers_connections_together() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let size = 1536 << 10;
    write_file(a.path(), "a.bin", &pattern(63, size));
    write_file(b.path(), "b.bin", &pattern(64, size));
    let config = keys.dir.path().join("capped.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nkey = \"daemon.key\"\ncert = \"daemon.crt\"\n[dirs]\na = {:?}\nb = {:?}\n[peers]\nclient = \"client.crt\"\n[send_limits]\nclient = \"512k\"\n",
            a.path().display().to_string(),
            b.path().display().to_string()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_config(&config);
    let (dst_a, dst_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    // Two commands at once: two connections of the same peer.
    let started = Instant::now();
    let commands: Vec<_> = [("a", &dst_a), ("b", &dst_b)]
        .map(|(dir, dst)| {
            let args = from_daemon(&keys, &daemon, dir, dst.path(), "client", "daemon");
            realize().args(&args).spawn().unwrap()
        })
        .into_iter()
        .collect();
    for command in commands {
        let out = command.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(
        std::fs::read(dst_a.path().join("a.bin")).unwrap().len(),
        size
    );
    assert_eq!(
        std::fs::read(dst_b.path().join("b.bin")).unwrap().len(),
        size
    );
    let rate = (2 * size) as f64 / elapsed;
    let cap = 512.0 * 1024.0;
    assert!(
        rate <= 1.25 * cap,
        "two connections got {:.0} KiB/s together, capped at 512 KiB/s ({elapsed:.1} s)",
        rate / 1024.0
    );
}
