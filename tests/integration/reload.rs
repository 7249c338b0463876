//! `realized` reads its configuration again on SIGHUP: new peers and
//! directories serve new connections, connections in progress go on, and a
//! configuration that does not load changes nothing.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

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

    // alice is removed, bob added, and a directory added; the number of
    // connections waits for a restart.
    let toml = daemon_toml(
        "daemon",
        &[("photos", photos.path()), ("music", music.path())],
        &["bob", "carol"],
    );
    std::fs::write(&daemon.config, toml + "[limits]\nconnections = 100\n").unwrap();
    daemon.hang_up();
    daemon.wait_for_log("configuration reloaded");
    daemon.wait_for_log("apply only when the daemon restarts keys=connections");
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
