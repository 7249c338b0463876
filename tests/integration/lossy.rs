//! Moves across a damaged path arrive intact: the command reaches the daemon
//! through a relay that drops 5% of the datagrams each way and duplicates and
//! reorders some. How fast such moves go is measured by the benchmarks, not
//! asserted here.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Instant;

use tempfile::TempDir;

use crate::harness::*;
use crate::relay::Relay;

/// Size of the one large file of the tree: enough for a thousand
/// acknowledgement datagrams back, so the relay's damage is measurable.
const LARGE_FILE: usize = 128 << 20;
/// Number of small files of the tree, spread over subfolders.
const SMALL_FILES: usize = 36;

/// Writes one large file and a few dozen small ones, of varied sizes, in
/// nested folders.
fn make_tree_with_one_large_file(root: &Path) {
    write_file(root, "archive/large.bin", &pattern(1, LARGE_FILE));
    for i in 0..SMALL_FILES {
        let path = format!("notes/{}/{}/note-{i}.txt", i % 3, i % 4);
        write_file(root, &path, &pattern(100 + i as u64, 1 + i * 2_999));
    }
}

/// `args` with the daemon's address replaced by the relay's: the command
/// pins the daemon by its key, not by its address.
fn through(relay: &Relay, daemon: &Daemon, args: Vec<String>) -> Vec<String> {
    let daemon_addr = daemon.addr();
    args.into_iter()
        .map(|arg| {
            if arg == daemon_addr {
                relay.addr.to_string()
            } else {
                arg
            }
        })
        .collect()
}

/// Runs the command with `args`, printing how long it took and what the
/// relay did.
fn run_through(relay: &Relay, args: &[String]) -> Output {
    let started = Instant::now();
    let out = realize().args(args).output().unwrap();
    eprintln!("move took {:?}; {relay}", started.elapsed());
    out
}

/// What a user checks after a move: exit 0, every file at the destination
/// byte-identical to the original, nothing left at the source, no partial
/// file anywhere.
fn assert_moved_intact(out: &Output, expected: &BTreeMap<String, String>, src: &Path, dst: &Path) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    let arrived = snapshot(dst);
    let partial = arrived.keys().find(|path| path.contains(".realize~"));
    assert_eq!(partial, None, "a partial file is left");
    assert_eq!(&arrived, expected, "destination differs");
    assert!(is_empty_dir(src), "source not empty: {:?}", snapshot(src));
}

/// The relay really damaged the traffic both ways: of a thousand datagrams
/// or more, at least half the expected share was dropped, duplicated and
/// reordered (5%, 2% and 5% are expected).
fn assert_relay_damaged_both_ways(relay: &Relay) {
    for tally in [relay.toward_daemon(), relay.toward_client()] {
        let received = tally.received();
        assert!(received >= 1_000, "too little traffic: {relay}");
        assert!(tally.dropped * 40 >= received, "too few dropped: {relay}");
        assert!(
            tally.duplicated * 100 >= received,
            "too few duplicated: {relay}"
        );
        assert!(
            tally.reordered * 40 >= received,
            "too few reordered: {relay}"
        );
    }
}

#[test]
fn local_to_remote_through_a_lossy_relay_arrives_intact() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    make_tree_with_one_large_file(src.path());
    let expected = snapshot(src.path());
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let relay = Relay::start(daemon.addr, 0x5EED_0001);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");

    let out = run_through(&relay, &through(&relay, &daemon, args));

    assert_moved_intact(&out, &expected, src.path(), dst.path());
    assert_relay_damaged_both_ways(&relay);
}

#[test]
fn remote_to_local_through_a_lossy_relay_arrives_intact() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    make_tree_with_one_large_file(src.path());
    let expected = snapshot(src.path());
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    let relay = Relay::start(daemon.addr, 0x5EED_0002);
    let args = from_daemon(&keys, &daemon, "d", dst.path(), "client", "daemon");

    let out = run_through(&relay, &through(&relay, &daemon, args));

    assert_moved_intact(&out, &expected, src.path(), dst.path());
    assert_relay_damaged_both_ways(&relay);
}
