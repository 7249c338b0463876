//! Stopping early: `--max-duration` and Ctrl-C keep partial files, exit with
//! their documented codes, and a later run finishes the work.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

const SIZE: usize = 200 << 20;

struct Setup {
    keys: Keys,
    src: TempDir,
    dst: TempDir,
    daemon: Daemon,
    data: Vec<u8>,
}

fn setup() -> Setup {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let data = pattern(11, SIZE);
    write_file(src.path(), "big.bin", &data);
    write_file(src.path(), "later/small.txt", b"small");
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    Setup {
        keys,
        src,
        dst,
        daemon,
        data,
    }
}

impl Setup {
    fn command(&self) -> Command {
        let mut command = realize();
        command.args([
            "--src-path",
            self.src.path().to_str().unwrap(),
            "--dst-addr",
            &self.daemon.addr(),
            "--directory-id",
            "d",
            "--parallel",
            "1",
        ]);
        command.args(self.keys.client_args("client", "daemon"));
        command
    }

    /// [`Setup::command`] paced to 50 MiB/s: the big file takes 4 s, long
    /// enough to be stopped midway however fast the machine and the build.
    fn paced_command(&self) -> Command {
        let mut command = self.command();
        command.args(["--throttle", "50M"]);
        command
    }

    fn partial_len(&self) -> u64 {
        std::fs::metadata(self.dst.path().join(".realize~part.big.bin"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// After an early stop: the big file's partial is kept, nothing final
    /// from it, every source file intact.
    fn assert_stopped_cleanly(&self) {
        assert!(self.partial_len() > 0, "partial file kept");
        assert!(!self.dst.path().join("big.bin").exists());
        assert_eq!(
            std::fs::read(self.src.path().join("big.bin"))
                .unwrap()
                .len(),
            SIZE
        );
        assert!(self.src.path().join("later/small.txt").exists());
    }

    /// A later run without limits finishes: every file intact, source empty.
    fn assert_next_run_finishes(&self) {
        let out = self.command().output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            std::fs::read(self.dst.path().join("big.bin")).unwrap(),
            self.data
        );
        assert_eq!(
            std::fs::read(self.dst.path().join("later/small.txt")).unwrap(),
            b"small"
        );
        assert!(is_empty_dir(self.src.path()));
    }
}

fn wait_for_partial(setup: &Setup, child: &mut Child) {
    let partial = setup.dst.path().join(".realize~part.big.bin");
    wait_for_len(&partial, (SIZE / 8) as u64, Some(child));
}

#[test]
fn max_duration_during_a_transfer_exits_11_and_keeps_the_partial() {
    let s = setup();
    let started = Instant::now();
    let out = s
        .paced_command()
        .args(["--max-duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly: {:?}",
        started.elapsed()
    );
    let err = stderr(&out);
    assert!(
        err.contains("stopped at the --max-duration limit; run the same command again to continue"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("1 interrupted, 1 not started"),
        "{}",
        stdout(&out)
    );
    s.assert_stopped_cleanly();
    s.daemon.wait_for_log("interrupted (code 7)");
    s.assert_next_run_finishes();
}

#[test]
fn max_duration_while_connecting_exits_11() {
    let keys = Keys::generate(&["client", "daemon"]);
    let src = TempDir::new().unwrap();
    write_file(src.path(), "f", b"data");
    // Nothing listens on this UDP port: the handshake never completes.
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
            "--max-duration",
            "500ms",
        ])
        .args(keys.client_args("client", "daemon"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        stderr(&out).contains("no connection was made"),
        "{}",
        stderr(&out)
    );
    assert!(src.path().join("f").exists());
}

#[test]
fn ctrl_c_during_a_transfer_exits_20_and_keeps_the_partial() {
    let s = setup();
    let mut child = s.paced_command().spawn().unwrap();
    wait_for_partial(&s, &mut child);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(20));
    s.assert_stopped_cleanly();
    s.assert_next_run_finishes();
}

#[test]
fn bad_durations_are_usage_errors() {
    for bad in ["0s", "soon", "-1s", "400days"] {
        let flag = format!("--max-duration={bad}");
        let out = run(&["--src-path", "/tmp", "--dst-path", "/tmp/x", &flag]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("--max-duration"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let s = setup();
    let mut child = s.paced_command().spawn().unwrap();
    wait_for_partial(&s, &mut child);
    // SAFETY: sending signals to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(std::time::Duration::from_millis(50));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopped = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(20));
    assert!(stopped.elapsed() < Duration::from_secs(2));
    assert_eq!(
        std::fs::read(s.src.path().join("big.bin")).unwrap().len(),
        SIZE,
        "source intact"
    );
}
