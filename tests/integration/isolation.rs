//! One peer costs only itself: what a peer makes the daemon hold is given
//! back when the peer goes, however it goes.

use std::process::Stdio;
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
        let mut command = realize().args(&args).stderr(Stdio::null()).spawn().unwrap();
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

/// Moves directory `dir` of `daemon` into a fresh folder as `client` and
/// returns the throughput in MiB/s; the move must succeed within `limit`.
fn download_rate(keys: &Keys, daemon: &Daemon, dir: &str, bytes: u64, limit: Duration) -> f64 {
    let dst = TempDir::new().unwrap();
    let args = from_daemon(keys, daemon, dir, dst.path(), "fast", "daemon");
    let started = Instant::now();
    let mut command = realize().args(&args).stderr(Stdio::null()).spawn().unwrap();
    let status = loop {
        if let Some(status) = command.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            command.kill().unwrap();
            command.wait().unwrap();
            let got: u64 = std::fs::read_dir(dst.path())
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            panic!("{got} of {bytes} bytes in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    assert!(status.success(), "the download of {dir} failed");
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

#[test]
#[ignore = "slow: four 256 MiB downloads, two beside a throttled one; run with --include-ignored"]
fn a_throttled_peer_does_not_slow_another_peers_download() {
    const FAST: usize = 256 << 20;
    let keys = Keys::generate(&["slow", "fast", "daemon"]);
    let slow_src = TempDir::new().unwrap();
    for i in 0..64 {
        write_file(slow_src.path(), &format!("f{i}.bin"), &pattern(i, 8 << 20));
    }
    // The fast peer's file, once per download (a move takes it away).
    let fast_srcs = [0, 1, 2, 3].map(|i| {
        let src = TempDir::new().unwrap();
        write_file(src.path(), "big.bin", &pattern(100 + i, FAST));
        src
    });
    let config = keys.dir.path().join("capped.toml");
    let fast_ids = ["fast0", "fast1", "fast2", "fast3"];
    let mut dirs = vec![("slow", slow_src.path())];
    dirs.extend(
        fast_ids
            .iter()
            .zip(&fast_srcs)
            .map(|(id, src)| (*id, src.path())),
    );
    let text = daemon_toml("daemon", &dirs, &["slow", "fast"]) + "[send_limits]\nslow = \"1M\"\n";
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start_with_config(&config);
    let fast = |dir: &str, limit| download_rate(&keys, &daemon, dir, FAST as u64, limit);
    let alone_before = fast("fast0", Duration::from_secs(120));

    // The capped peer downloads its 64 files, all in flight at once.
    let slow_dst = TempDir::new().unwrap();
    let args = from_daemon(&keys, &daemon, "slow", slow_dst.path(), "slow", "daemon");
    let mut slow = realize().args(&args).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while paths(slow_dst.path()).len() < 64 {
        assert!(Instant::now() < deadline, "the capped download started");
        assert!(
            slow.try_wait().unwrap().is_none(),
            "the capped download runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // Slower than half the rate alone is a failure: no need to wait more.
    let limit = Duration::from_secs_f64(FAST as f64 / (1 << 20) as f64 / (alone_before * 0.5))
        + Duration::from_secs(5);
    // The better of two tries: other tests running at the same time may
    // slow one of them, as they may the runs alone.
    let beside = fast("fast1", limit).max(fast("fast2", limit));
    assert!(
        slow.try_wait().unwrap().is_none(),
        "the capped download still runs"
    );
    slow.kill().unwrap();
    slow.wait().unwrap();
    // Alone again, so that both sides of the comparison see what else
    // the machine was doing meanwhile.
    let alone_after = fast("fast3", Duration::from_secs(120));
    let alone = alone_before.min(alone_after);
    eprintln!(
        "256 MiB: {alone_before:.1} and {alone_after:.1} MiB/s alone, {beside:.1} MiB/s beside the capped peer"
    );
    assert!(
        beside >= alone * 0.8,
        "{beside:.1} MiB/s beside the capped peer, {alone_before:.1} and {alone_after:.1} MiB/s alone"
    );
}
