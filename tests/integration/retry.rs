//! Lost connections are retried with backoff until the move succeeds or
//! `--max-duration` ends it.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

#[test]
fn daemon_killed_and_restarted_mid_transfer_the_command_finishes() {
    const SIZE: usize = 200 << 20;
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let data = pattern(21, SIZE);
    write_file(src.path(), "big.bin", &data);
    write_file(src.path(), "small/one.txt", b"one");
    let mut daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let mut command = realize();
    command.args(to_daemon(
        &keys,
        src.path(),
        &daemon,
        "d",
        "client",
        &["daemon"],
    ));
    command.args(["--parallel", "1"]);
    let run = std::thread::spawn(move || command.output().unwrap());

    let partial = dst.path().join(".realize~part.big.bin");
    wait_for_len(&partial, (SIZE / 8) as u64, None);
    daemon.kill();
    std::thread::sleep(Duration::from_secs(1));
    let _restarted = daemon.restart();

    let out = run.join().unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("retrying in 1s"), "{}", stderr(&out));
    assert_eq!(std::fs::read(dst.path().join("big.bin")).unwrap(), data);
    assert_eq!(
        std::fs::read(dst.path().join("small/one.txt")).unwrap(),
        b"one"
    );
    assert!(is_empty_dir(src.path()));
}

#[test]
fn max_duration_during_a_retry_backoff_exits_11() {
    let keys = Keys::generate(&["client", "daemon"]);
    let src = TempDir::new().unwrap();
    write_file(src.path(), "f", b"data");
    // Nothing answers here. Attempts fail after 1 s each; backoffs of 1 s,
    // then 2 s: the limit of 4 s falls inside the second backoff (3 s–5 s).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = realize()
        .args([
            "--src-path",
            src.path().to_str().unwrap(),
            "--dst-addr",
            &addr,
            "--directory-id",
            "d",
        ])
        .args(["--connect-timeout", "1s", "--max-duration", "4s"])
        .args(keys.client_args("client", &["daemon"]))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in the backoff: {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("retrying in 1s") && err.contains("retrying in 2s"),
        "{err}"
    );
    assert!(!err.contains("retrying in 5s"), "{err}");
    assert!(err.contains("stopped at the --max-duration limit"), "{err}");
    assert!(src.path().join("f").exists());
}

#[test]
fn daemon_sigterm_stops_cleanly_and_a_later_run_finishes() {
    const SIZE: usize = 200 << 20;
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let data = pattern(31, SIZE);
    write_file(src.path(), "big.bin", &data);
    let mut daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let mut command = realize();
    command.args(to_daemon(
        &keys,
        src.path(),
        &daemon,
        "d",
        "client",
        &["daemon"],
    ));
    command.args(["--connect-timeout", "1s", "--max-duration", "6s"]);
    let run = std::thread::spawn(move || command.output().unwrap());

    let partial = dst.path().join(".realize~part.big.bin");
    wait_for_len(&partial, (SIZE / 8) as u64, None);
    let stopped = Instant::now();
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(stopped.elapsed() < Duration::from_secs(10));
    let log = daemon.log();
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
    assert!(
        std::fs::metadata(&partial).unwrap().len() > 0,
        "partial kept"
    );
    assert!(!dst.path().join("big.bin").exists());

    // The command saw the daemon go, retried, and stopped at its limit.
    let out = run.join().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains("retrying in"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(src.path().join("big.bin")).unwrap().len(),
        SIZE
    );

    let daemon = daemon.restart();
    let mut again = realize();
    again.args([
        "--src-path",
        src.path().to_str().unwrap(),
        "--dst-addr",
        &daemon.addr(),
        "--directory-id",
        "d",
    ]);
    again.args(keys.client_args("client", &["daemon"]));
    let out = again.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dst.path().join("big.bin")).unwrap(), data);
    assert!(is_empty_dir(src.path()));
}
