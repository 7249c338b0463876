//! Memory stays bounded however many files are in flight.

use tempfile::TempDir;

use crate::harness::*;

/// Peak resident memory the product promises for each process.
const PEAK_RSS_LIMIT_KIB: u64 = 128 * 1024;

#[test]
#[ignore = "needs GNU time at /usr/bin/time (.ci/deps installs it)"]
fn many_large_files_in_flight_keep_the_command_under_128_mib() {
    let keys = Keys::generate(&["client", "daemon"]);
    let src = TempDir::new().unwrap();
    let dst = TempDir::new().unwrap();
    for i in 0..64 {
        write_file(src.path(), &format!("f{i}.bin"), &pattern(i, 4 << 20));
    }
    let expected = snapshot(src.path());
    let daemon = Daemon::start(&keys, "daemon", &[("data", dst.path())], &["client"]);
    let mut args = to_daemon(&keys, src.path(), &daemon, "data", "client", "daemon");
    args.extend(["--parallel".into(), "64".into()]);

    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "peak_rss_kib=%M", env!("CARGO_BIN_EXE_realize")])
        .args(&args)
        .output()
        .expect("GNU time is installed (.ci/deps)");

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(dst.path()), expected);
    let peak = peak_rss_kib(&stderr(&out));
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "peak RSS {} MiB with 64 files of 4 MiB in flight",
        peak / 1024
    );
}

/// The peak RSS GNU time reported on the last line of `stderr`.
fn peak_rss_kib(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak_rss_kib="))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in:\n{stderr}"))
}
