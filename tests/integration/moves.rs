//! Moving trees between every combination of endpoints.

use tempfile::TempDir;

use crate::harness::*;

struct Setup {
    keys: Keys,
    src: TempDir,
    dst: TempDir,
}

impl Setup {
    /// Starts a daemon serving the destination as `photos`; returns it with
    /// the arguments that move the source there.
    fn to_destination_daemon(&self) -> (Daemon, Vec<String>) {
        let daemon = Daemon::start(
            &self.keys,
            "daemon-a",
            &[("photos", self.dst.path())],
            &["client"],
        );
        let args = to_daemon(
            &self.keys,
            self.src.path(),
            &daemon,
            "photos",
            "client",
            "daemon-a",
        );
        (daemon, args)
    }
}

fn setup() -> Setup {
    let setup = Setup {
        keys: Keys::generate(&["client", "daemon-a", "daemon-b"]),
        src: TempDir::new().unwrap(),
        dst: TempDir::new().unwrap(),
    };
    make_tree(setup.src.path());
    setup
}

/// Runs a move and checks the user-visible outcome: exit 0, every file
/// byte-identical at the destination, the source left empty.
fn assert_moves(setup: &Setup, args: &[String]) {
    let expected = snapshot(setup.src.path());
    let out = realize().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(snapshot(setup.dst.path()), expected);
    assert!(
        is_empty_dir(setup.src.path()),
        "source not empty: {:?}",
        snapshot(setup.src.path())
    );
    let stdout = stdout(&out);
    for path in expected.keys() {
        assert!(
            stdout.contains(&format!("Moved     photos/{path}")),
            "{path} not reported:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("{} moved, 0 failed", expected.len())),
        "{stdout}"
    );
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn local_to_remote() {
    let s = setup();
    let (daemon, args) = s.to_destination_daemon();
    assert_moves(&s, &args);
    let log = daemon.log();
    assert!(
        log.contains("connection accepted") && log.contains("peer=client"),
        "{log}"
    );
    assert!(log.contains("file finalised"), "{log}");
    // The command waits only until its close frame has left, not for the
    // daemon's answer: the daemon must still learn that the run is over,
    // rather than hold the connection until it times out.
    daemon.wait_for_log("connection closed: closed by peer: done");
}

#[test]
fn remote_to_local() {
    let s = setup();
    let daemon = Daemon::start(
        &s.keys,
        "daemon-a",
        &[("photos", s.src.path())],
        &["client"],
    );
    let args = from_daemon(
        &s.keys,
        &daemon,
        "photos",
        s.dst.path(),
        "client",
        "daemon-a",
    );
    assert_moves(&s, &args);
    assert!(daemon.log().contains("deleted source file"));
}

#[test]
fn remote_to_remote_relays_through_the_command() {
    let s = setup();
    let a = Daemon::start(
        &s.keys,
        "daemon-a",
        &[("photos", s.src.path())],
        &["client"],
    );
    let b = Daemon::start(
        &s.keys,
        "daemon-b",
        &[("photos", s.dst.path())],
        &["client"],
    );
    let mut args = strings(&[
        "--src-addr",
        &a.addr(),
        "--dst-addr",
        &b.addr(),
        "--directory-id",
        "photos",
    ]);
    args.extend(s.keys.relay_args("client", "daemon-a", "daemon-b"));
    assert_moves(&s, &args);
}

#[test]
fn remote_to_remote_reaches_both_daemons_at_once() {
    let s = setup();
    // The source daemon never answers; the destination is up.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let source = silent.local_addr().unwrap().to_string();
    let b = Daemon::start(
        &s.keys,
        "daemon-b",
        &[("photos", s.dst.path())],
        &["client"],
    );
    let out = realize()
        .args([
            "--src-addr",
            &source,
            "--dst-addr",
            &b.addr(),
            "--directory-id",
            "photos",
        ])
        .args(["--connect-timeout", "1s", "--retries", "0"])
        .args(s.keys.relay_args("client", "daemon-a", "daemon-b"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&source), "the source is named: {err}");
    // The destination's handshake ran while the source's was pending: a
    // move between two daemons waits for the slower, not for both in turn.
    b.wait_for_log("connection accepted");
    assert!(is_empty_dir(s.dst.path()));
}

#[test]
fn local_to_local() {
    let s = setup();
    let args = strings(&[
        "--src-path",
        s.src.path().to_str().unwrap(),
        "--dst-path",
        s.dst.path().to_str().unwrap(),
        "--directory-id",
        "photos",
    ]);
    assert_moves(&s, &args);
}

#[test]
fn identical_destination_file_is_not_sent_again() {
    let s = setup();
    let data = pattern(99, 3 << 20);
    write_file(s.src.path(), "same.bin", &data);
    write_file(s.dst.path(), "same.bin", &data);
    // Only the identical file in the source: nothing needs to cross.
    let src = TempDir::new().unwrap();
    write_file(src.path(), "same.bin", &data);
    let daemon = Daemon::start(
        &s.keys,
        "daemon-a",
        &[("photos", s.dst.path())],
        &["client"],
    );
    let args = to_daemon(&s.keys, src.path(), &daemon, "photos", "client", "daemon-a");
    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 moved, 0 failed, 0 skipped; 0 B sent"),
        "{}",
        stdout(&out)
    );
    assert!(is_empty_dir(src.path()));
    assert_eq!(std::fs::read(s.dst.path().join("same.bin")).unwrap(), data);
    assert!(
        !daemon.log().contains("file finalised"),
        "data was written:\n{}",
        daemon.log()
    );
}

#[test]
fn different_destination_file_is_replaced() {
    let s = setup();
    write_file(
        s.dst.path(),
        "top.txt",
        b"an older, different version of the file",
    );
    write_file(s.dst.path(), "big/twenty.bin", &pattern(1234, 20 << 20)); // same size, other bytes
    let (_daemon, args) = s.to_destination_daemon();
    assert_moves(&s, &args);
}

#[test]
fn one_unwritable_file_fails_alone() {
    let s = setup();
    // A directory where a file must go: fails for root too.
    std::fs::create_dir_all(s.dst.path().join("a/b/c/deep.dat/blocker")).unwrap();
    let (_daemon, args) = s.to_destination_daemon();
    let before = snapshot(s.src.path());
    let out = realize().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(23), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("ERROR     photos/a/b/c/deep.dat: destination: a/b/c/deep.dat:"),
        "{err}"
    );
    // The failing file's source is kept intact; every other file moved.
    let left = snapshot(s.src.path());
    assert_eq!(left.keys().collect::<Vec<_>>(), vec!["a/b/c/deep.dat"]);
    assert_eq!(left["a/b/c/deep.dat"], before["a/b/c/deep.dat"]);
    let arrived = snapshot(s.dst.path());
    assert_eq!(arrived.len(), before.len() - 1);
    for (path, hash) in &arrived {
        assert_eq!(&before[path], hash);
    }
    assert!(stdout(&out).contains(&format!("{} moved, 1 failed", before.len() - 1)));
}

#[test]
fn skipped_entries_stay_and_are_reported() {
    let s = setup();
    std::os::unix::fs::symlink("/etc/hostname", s.src.path().join("link")).unwrap();
    std::fs::create_dir(s.src.path().join("nothing-here")).unwrap();
    let args = strings(&[
        "--src-path",
        s.src.path().to_str().unwrap(),
        "--dst-path",
        s.dst.path().to_str().unwrap(),
        "-v",
    ]);
    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = stdout(&out);
    assert!(
        stdout.contains("Skipped   dir/link: symbolic link"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Skipped   dir/nothing-here: empty directory"),
        "{stdout}"
    );
    assert!(stdout.contains("2 skipped"), "{stdout}");
    assert!(
        stdout.contains("Moved     dir/top.txt (1000 B, 1000 B sent)"),
        "-v details: {stdout}"
    );
    assert!(s.src.path().join("link").symlink_metadata().is_ok());
    assert!(!s.dst.path().join("link").exists());
}

/// The most files in flight a command allows, local to local: every file
/// larger than a chunk holds a reading thread and a writing thread at once,
/// and none may wait for a thread another file holds.
#[test]
fn local_to_local_at_the_most_parallel_files_finishes() {
    const FILES: usize = 600;
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    for i in 0..FILES {
        write_file(src.path(), &format!("f{i:03}"), &pattern(i as u64, 300_000));
    }
    let expected = snapshot(src.path());
    let mut command = realize();
    command.args([
        "--src-path",
        src.path().to_str().unwrap(),
        "--dst-path",
        dst.path().to_str().unwrap(),
        "--parallel",
        "512",
        "--max-duration",
        "60s",
    ]);
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(dst.path()), expected);
    assert!(snapshot(src.path()).is_empty());
}
