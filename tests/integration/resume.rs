//! Interrupted moves continue where they stopped.

use tempfile::TempDir;

use crate::harness::*;

/// The value of `field=` in the first log line containing `message`.
fn logged(log: &str, message: &str, field: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no {message:?} in:\n{log}"));
    let value = line
        .split(&format!("{field}="))
        .nth(1)
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    value.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn killed_mid_file_then_run_again_sends_little_more_than_the_missing_part() {
    const SIZE: usize = 200 << 20;
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let data = pattern(7, SIZE);
    write_file(src.path(), "big.bin", &data);
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");

    // Kill the command with SIGKILL once a quarter of the file has arrived.
    let mut first = realize().args(&args).arg("-q").spawn().unwrap();
    let partial = dst.path().join(".realize~part.big.bin");
    wait_for_len(&partial, (SIZE / 4) as u64, Some(&mut first));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        !dst.path().join("big.bin").exists(),
        "killed before the file was final"
    );
    assert_eq!(
        std::fs::read(src.path().join("big.bin")).unwrap().len(),
        SIZE,
        "source intact"
    );

    let second = realize().args(&args).arg("-v").output().unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    let log = stderr(&second);
    let kept = logged(&log, "resuming from the partial file", "kept");
    let sent = logged(&log, "moved", "bytes_sent");
    assert!(
        kept >= (SIZE / 4) as u64 && kept < SIZE as u64,
        "kept {kept}"
    );
    let missing = SIZE as u64 - kept;
    assert!(
        sent <= missing + SIZE as u64 / 50,
        "sent {sent} for {missing} missing bytes"
    );
    assert_eq!(std::fs::read(dst.path().join("big.bin")).unwrap(), data);
    assert!(is_empty_dir(src.path()));
}
