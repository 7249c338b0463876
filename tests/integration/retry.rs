//! Lost connections are retried with backoff until the move succeeds or
//! `--max-duration` ends it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;
use crate::relay::Relay;

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
        "daemon",
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
        .args(keys.client_args("client", "daemon"))
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
fn retries_are_counted_and_the_command_gives_up_when_they_are_spent() {
    let keys = Keys::generate(&["client", "daemon"]);
    let src = TempDir::new().unwrap();
    write_file(src.path(), "f", b"data");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let run = |retries: &str| {
        realize()
            .args([
                "--src-path",
                src.path().to_str().unwrap(),
                "--dst-addr",
                &addr,
                "--directory-id",
                "d",
            ])
            .args(["--connect-timeout", "1s", "--retries", retries])
            .args(keys.client_args("client", "daemon"))
            .output()
            .unwrap()
    };
    // Three attempts of 1 s with backoffs of 1 s and 2 s between them.
    let started = Instant::now();
    let out = run("2");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "nothing moved: {err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("retrying in 1s (1/2)"), "{err}");
    assert!(err.contains("retrying in 2s (2/2)"), "{err}");
    assert!(!err.contains("(3/2)"), "{err}");
    assert!(err.contains("gave up after 2 retries (--retries)"), "{err}");

    let out = run("0");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("retrying"), "{err}");
    assert!(err.contains("gave up after 0 retries (--retries)"), "{err}");
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
        "daemon",
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
    again.args(keys.client_args("client", "daemon"));
    let out = again.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dst.path().join("big.bin")).unwrap(), data);
    assert!(is_empty_dir(src.path()));
}

/// Files already at the destination, so many that the daemon's listing of
/// them takes hundreds of kilobytes: a path that goes dark after
/// [`DARK_AFTER`] bytes back to the command cuts it in that listing.
const FILLER_FILES: usize = 5_000;
/// Bytes the path carries back to the command before it goes dark: more than
/// the handshakes and path MTU probes, far less than the listing.
const DARK_AFTER: u64 = 128 << 10;

/// A move whose daemon is lost after the command connected, before any
/// attempt could report on its files: the listing of the destination never
/// arrives, and every attempt after it finds no daemon.
struct LostDaemon {
    keys: Keys,
    src: TempDir,
    _dst: TempDir,
    _daemon: Daemon,
    relay: Relay,
}

impl LostDaemon {
    fn set_up() -> Self {
        let keys = Keys::generate(&["client", "daemon"]);
        let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        write_file(src.path(), "f", b"data");
        for i in 0..FILLER_FILES {
            let path = format!("already-there/a-file-with-a-name-long-enough-to-list-{i:05}");
            write_file(dst.path(), &path, b"");
        }
        let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
        let relay = Relay::going_dark(daemon.addr, DARK_AFTER);
        Self {
            keys,
            src,
            _dst: dst,
            _daemon: daemon,
            relay,
        }
    }

    /// The move, through the relay, with its stderr piped.
    fn command(&self) -> Command {
        let mut command = realize();
        command
            .args([
                "--src-path",
                self.src.path().to_str().unwrap(),
                "--dst-addr",
                &self.relay.addr.to_string(),
                "--directory-id",
                "d",
                "--connect-timeout",
                "1s",
            ])
            .args(self.keys.client_args("client", "daemon"))
            .stderr(Stdio::piped());
        command
    }

    /// The command lost its connection: the relay dropped what it carried
    /// back, and the source is as it was.
    fn assert_source_intact(&self) {
        assert!(self.relay.toward_client().dropped > 0, "{}", self.relay);
        assert_eq!(std::fs::read(self.src.path().join("f")).unwrap(), b"data");
    }
}

/// Collects `child`'s stderr on a thread; `retrying` gets a message at each
/// `retrying in` line. The thread returns the whole stderr at its end.
fn watch_stderr(child: &mut Child, retrying: mpsc::Sender<()>) -> JoinHandle<String> {
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("retrying in") {
                let _ = retrying.send(());
            }
            all.push_str(&(line + "\n"));
        }
        all
    })
}

#[test]
fn ctrl_c_in_a_backoff_after_a_lost_daemon_exits_20() {
    let lost = LostDaemon::set_up();
    let mut child = lost.command().spawn().unwrap();
    let (tx, retrying) = mpsc::channel();
    let stderr = watch_stderr(&mut child, tx);
    // The first retry waits 1 s: the signal comes in that wait.
    retrying
        .recv_timeout(Duration::from_secs(60))
        .expect("the command lost its connection and entered a backoff");
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let err = stderr.join().unwrap();
    assert_eq!(status.code(), Some(20), "{err}");
    assert!(
        err.contains("realize: interrupted; run the same command again to continue"),
        "{err}"
    );
    lost.assert_source_intact();
}

#[test]
fn max_duration_in_a_backoff_after_a_lost_daemon_exits_11() {
    let lost = LostDaemon::set_up();
    // The connection is lost after the 10 s idle timeout, 10 to 13 s in
    // (T). Then come backoffs of 1, 2 and 5 s with attempts of 1 s between
    // them: from T + 4 s to T + 9 s the command waits in the 5 s backoff,
    // where the limit falls.
    let started = Instant::now();
    let mut child = lost
        .command()
        .args(["--max-duration", "18s"])
        .spawn()
        .unwrap();
    let (tx, _retrying) = mpsc::channel();
    let stderr = watch_stderr(&mut child, tx);
    let status = child.wait().unwrap();
    let err = stderr.join().unwrap();
    assert_eq!(status.code(), Some(11), "{err}");
    assert!(started.elapsed() < Duration::from_secs(25), "{err}");
    assert!(err.contains("retrying in 2s"), "{err}");
    assert!(
        err.contains(
            "realize: stopped at the --max-duration limit; run the same command again to continue"
        ),
        "{err}"
    );
    lost.assert_source_intact();
}

#[test]
fn max_duration_holds_while_a_listing_never_arrives() {
    let lost = LostDaemon::set_up();
    // The path goes dark in the middle of the destination's listing, long
    // before the connection's 10 s idle timeout would report it lost.
    let started = Instant::now();
    let out = lost
        .command()
        .args(["--max-duration", "2s"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(11), "{err}");
    // 2 s, then at most 3 s for the close to reach a daemon that may
    // still hear it.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the limit of 2 s ended the run after {:?}: {err}",
        started.elapsed()
    );
    assert!(!err.contains("retrying in"), "{err}");
    assert!(
        err.contains(
            "realize: stopped at the --max-duration limit; run the same command again to continue"
        ),
        "{err}"
    );
    lost.assert_source_intact();
}
