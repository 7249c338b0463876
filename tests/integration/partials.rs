//! Abandoned partial files: the daemon removes those no writer holds once
//! they are old, and nothing else.

use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{free_tcp_port, http_get, pattern, sample, write_file, Daemon, Keys};

/// Waits up to `within` until `done` holds.
fn wait_until(within: Duration, what: &str, daemon: &Daemon, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}; log:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn abandoned_partial_files_are_collected_at_start_and_periodically_and_nothing_else() {
    let keys = Keys::generate(&["client", "daemon"]);
    let root = TempDir::new().unwrap();
    let outside = TempDir::new().unwrap();
    let r = root.path();
    // Left behind by stalled or interrupted writes.
    write_file(r, "a/.realize~part.left", &pattern(1, 1000));
    write_file(r, ".realize~part.top", &pattern(2, 500));
    // Not abandoned partial files: a user's files, another reserved name,
    // a directory and a symlink named like partial files.
    write_file(r, "a/keep", b"a user's file");
    write_file(r, "a/.keep.part", b"the old partial name is a user's file");
    write_file(r, ".realize~del.0011", b"reserved, not a partial file");
    write_file(r, ".realize~part.dir/inside", b"in a directory");
    write_file(outside.path(), "target", b"outside the root");
    std::os::unix::fs::symlink(outside.path().join("target"), r.join(".realize~part.link"))
        .unwrap();
    // A partial file a writer in another process holds.
    write_file(r, "b/.realize~part.held", &pattern(3, 300));
    let held = std::fs::File::open(r.join("b/.realize~part.held")).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    // Older than the age given below.
    std::thread::sleep(Duration::from_millis(2200));

    let port = free_tcp_port();
    let config = keys.dir.path().join("collecting.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\nkey = \"daemon.key\"\ncert = \"daemon.crt\"\n\
         metrics = \"127.0.0.1:{port}\"\n[limits]\npartial_max_age = \"2s\"\n\
         [dirs]\nd = {:?}\n[peers]\nclient = \"client.crt\"\n",
        r.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start_with_config(&config);
    let gone = |path: &str| !r.join(path).exists();
    // At start: the two abandoned ones.
    wait_until(
        Duration::from_secs(5),
        "collected at start",
        &daemon,
        || gone("a/.realize~part.left") && gone(".realize~part.top"),
    );
    let log = daemon.wait_for_log("collected abandoned partial files");
    assert!(log.contains("files=2 bytes=1500"), "{log}");
    for kept in [
        "a/keep",
        "a/.keep.part",
        ".realize~del.0011",
        ".realize~part.dir/inside",
        "b/.realize~part.held",
    ] {
        assert!(r.join(kept).exists(), "{kept} was removed");
    }
    assert!(r.join(".realize~part.link").symlink_metadata().is_ok());
    assert_eq!(
        std::fs::read(outside.path().join("target")).unwrap(),
        b"outside the root"
    );

    // Later: one left now, once it is old, and the held one once let go.
    write_file(r, "c/.realize~part.later", &pattern(4, 40));
    drop(held);
    wait_until(Duration::from_secs(10), "collected later", &daemon, || {
        gone("c/.realize~part.later") && gone("b/.realize~part.held")
    });
    let metrics = || http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap_or_default();
    wait_until(Duration::from_secs(10), "counted", &daemon, || {
        let metrics = metrics();
        sample(&metrics, "realize_partials_collected_total", &[]) == Some(4.0)
            && sample(&metrics, "realize_partials_collected_bytes_total", &[]) == Some(1840.0)
    });
    assert!(r.join("a/keep").exists() && r.join(".realize~part.dir/inside").exists());
    assert!(is_dir(&r.join("c")), "directories are left alone");
}

fn is_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}
