//! One peer costs only itself: what a peer makes the daemon hold is given
//! back when the peer goes, however it goes.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

/// How long an idle connection lives (the transport's idle timeout), plus
/// how long tokio keeps an idle blocking thread, plus a margin.
const SETTLE: Duration = Duration::from_secs(25);

#[test]
#[ignore = "slow: waits for idle timeouts; run with --include-ignored"]
fn downloads_killed_mid_file_give_back_their_threads_and_descriptors() {
    let keys = Keys::generate(&["client", "daemon"]);
    let src = TempDir::new().unwrap();
    for i in 0..40 {
        write_file(src.path(), &format!("f{i}.bin"), &pattern(i, 4 << 20));
    }
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    // The baseline: after one download, once everything it used is idle.
    let warm = TempDir::new().unwrap();
    let probe = TempDir::new().unwrap();
    write_file(probe.path(), "probe", b"probe");
    let upload = to_daemon(&keys, probe.path(), &daemon, "d", "client", "daemon");
    assert!(realize().args(&upload).output().unwrap().status.success());
    let download = from_daemon(&keys, &daemon, "d", warm.path(), "client", "daemon");
    std::thread::sleep(SETTLE);
    let baseline = daemon.threads_and_fds();
    for _ in 0..10 {
        let dst = TempDir::new().unwrap();
        let mut args = from_daemon(&keys, &daemon, "d", dst.path(), "client", "daemon");
        args.extend(["--throttle".into(), "20M".into()]);
        let mut command = realize().args(&args).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        command.kill().unwrap();
        command.wait().unwrap();
    }
    let deadline = Instant::now() + SETTLE * 2;
    let mut now = daemon.threads_and_fds();
    while (now.0 > baseline.0 + 4 || now.1 > baseline.1 + 4) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        now = daemon.threads_and_fds();
    }
    assert!(
        now.0 <= baseline.0 + 4 && now.1 <= baseline.1 + 4,
        "threads and fds: {baseline:?} before, {now:?} after ten killed downloads"
    );
    // And it still serves everyone.
    let out = realize().args(&download).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(is_empty_dir(src.path()), "{:?}", snapshot(src.path()));
}
