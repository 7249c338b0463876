//! A connection starts from the rate the last one over the same path
//! measured: the command keeps its own in a file per daemon, the daemon its
//! own per peer.

use std::path::Path;
use std::process::Output;

use tempfile::TempDir;

use crate::harness::*;

/// Enough for a move on loopback to fill the path and leave its start-up.
const SIZE: usize = 48 << 20;

/// The command's debug line when a connection starts from a known path.
const RESUMED: &str = "starting from the rate a previous connection measured";

/// Runs `realize` with `args`, keeping paths in `state`, logging its
/// congestion controller's decisions.
fn move_logged(args: &[String], state: &Path) -> Output {
    let output = realize()
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env("RUST_LOG", "warn,realize::transport::congestion=debug")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    output
}

#[test]
fn a_second_upload_to_a_daemon_starts_at_the_rate_the_first_measured() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst, state) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let daemon = Daemon::start(&keys, "daemon", &[("photos", dst.path())], &["client"]);
    let args = to_daemon(&keys, src.path(), &daemon, "photos", "client", "daemon");

    write_file(src.path(), "first.bin", &pattern(1, SIZE));
    let first = move_logged(&args, state.path());
    assert!(!stderr(&first).contains(RESUMED), "{}", stderr(&first));
    let kept: Vec<_> = std::fs::read_dir(state.path().join("realize/paths"))
        .expect("the path to the daemon is kept")
        .collect();
    assert_eq!(kept.len(), 1, "one file for the one daemon");

    write_file(src.path(), "second.bin", &pattern(2, SIZE));
    let second = move_logged(&args, state.path());
    assert!(stderr(&second).contains(RESUMED), "{}", stderr(&second));
    assert_eq!(
        std::fs::read(dst.path().join("second.bin")).unwrap(),
        pattern(2, SIZE)
    );

    let elsewhere = TempDir::new().unwrap();
    write_file(src.path(), "third.bin", &pattern(3, SIZE));
    let fresh = move_logged(&args, elsewhere.path());
    assert!(
        !stderr(&fresh).contains(RESUMED),
        "nothing kept there: {}",
        stderr(&fresh)
    );
}

#[test]
fn a_second_download_from_a_daemon_starts_at_the_rate_the_first_measured() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (served, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let filter = "info,realize::transport::congestion=debug";
    let daemon = Daemon::start_logging(&keys, "daemon", &[("photos", served.path())], filter);
    let args = from_daemon(&keys, &daemon, "photos", dst.path(), "client", "daemon");

    write_file(served.path(), "first.bin", &pattern(1, SIZE));
    let first = realize().args(&args).output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    daemon.wait_for_log("connection closed");
    assert!(!daemon.log().contains(RESUMED), "{}", daemon.log());

    write_file(served.path(), "second.bin", &pattern(2, SIZE));
    let second = realize().args(&args).output().unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(
        std::fs::read(dst.path().join("second.bin")).unwrap(),
        pattern(2, SIZE)
    );
    daemon.wait_for_log("sending from the rate the last connection to this peer measured");
    daemon.wait_for_log(RESUMED);
}
