//! Listings descend a bounded number of directory levels: what lies deeper
//! is reported and stays at the source, and the rest moves.

use std::path::Path;

use tempfile::TempDir;

use crate::harness::*;

/// `listing_depth` when the configuration does not set it.
const DEFAULT_DEPTH: usize = 64;

/// A file at the deepest level a listing reaches, and one a level below.
fn deep_paths() -> (String, String) {
    let levels = |n: usize| vec!["l"; n].join("/");
    let deepest = format!("{}/ok.txt", levels(DEFAULT_DEPTH - 1));
    let too_deep = format!("{}/deep.txt", levels(DEFAULT_DEPTH));
    (deepest, too_deep)
}

/// Writes `top.txt` and the files of [`deep_paths`].
fn deep_tree(root: &Path) {
    let (deepest, too_deep) = deep_paths();
    write_file(root, "top.txt", b"top");
    write_file(root, &deepest, b"ok");
    write_file(root, &too_deep, b"deep");
}

/// What a move of [`deep_tree`] must leave: the deep file at the source and
/// reported, the rest moved, exit 23.
fn assert_deep_file_stays(out: &std::process::Output, src: &Path, dst: &Path) {
    let (deepest, too_deep) = deep_paths();
    assert_eq!(out.status.code(), Some(23), "{}", stderr(out));
    let reported = format!(
        "{}: too deep",
        Path::new(&too_deep).parent().unwrap().display()
    );
    assert!(stderr(out).contains(&reported), "{}", stderr(out));
    assert!(
        stderr(out).contains("stays at the source"),
        "{}",
        stderr(out)
    );
    assert_eq!(std::fs::read(dst.join("top.txt")).unwrap(), b"top");
    assert_eq!(std::fs::read(dst.join(&deepest)).unwrap(), b"ok");
    assert!(!src.join("top.txt").exists() && !src.join(&deepest).exists());
    assert_eq!(std::fs::read(src.join(&too_deep)).unwrap(), b"deep");
    assert!(!dst.join(&too_deep).exists());
}

#[test]
fn a_daemon_lists_no_deeper_than_its_cap_and_the_deeper_files_stay() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    deep_tree(src.path());
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    let args = from_daemon(&keys, &daemon, "d", dst.path(), "client", "daemon");
    let out = realize().args(&args).output().unwrap();
    assert_deep_file_stays(&out, src.path(), dst.path());
}

#[test]
fn a_local_source_lists_no_deeper_than_the_cap_and_the_deeper_files_stay() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    deep_tree(src.path());
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    let out = realize().args(&args).output().unwrap();
    assert_deep_file_stays(&out, src.path(), dst.path());
}

/// Files in the tree a listing must not hold in memory: the daemon's peak
/// grew by about 47 MiB listing them whole, by 3 MiB listing them as walked.
const MANY_FILES: usize = 200_000;

#[test]
#[ignore = "slow: makes 200,000 files; run with --include-ignored"]
fn a_daemon_lists_a_large_tree_in_bounded_memory() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    for i in 0..MANY_FILES {
        let dir = src.path().join(format!("directory-number-{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir(&dir).unwrap();
        }
        std::fs::File::create(dir.join(format!("a-file-with-a-name-of-some-length-{i:06}")))
            .unwrap();
    }
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    let before = daemon.peak_rss_kib();
    // The whole listing is sent before the limit stops the move.
    let mut args = from_daemon(&keys, &daemon, "d", dst.path(), "client", "daemon");
    args.extend(["--max-duration".into(), "1s".into()]);
    let out = realize().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let grown = daemon.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "the daemon's peak grew by {} MiB listing {MANY_FILES} files",
        grown / 1024
    );
}
