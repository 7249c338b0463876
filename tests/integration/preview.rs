//! `--dry-run` reports what a move would do and changes nothing anywhere.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tempfile::TempDir;

use crate::harness::*;

/// Every path under `root` (hidden ones and folders included) with what a
/// move could change about it: content (a symlink's target), modification
/// time, permissions.
fn state(root: &Path) -> BTreeMap<String, (String, i64, u32)> {
    paths(root)
        .into_iter()
        .map(|path| {
            let full = root.join(&path);
            let meta = std::fs::symlink_metadata(&full).unwrap();
            let content = match meta.file_type() {
                t if t.is_symlink() => std::fs::read_link(&full).unwrap().display().to_string(),
                t if t.is_file() => blake3::hash(&std::fs::read(&full).unwrap()).to_string(),
                _ => String::new(),
            };
            let modified = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
            (path, (content, modified, meta.permissions().mode()))
        })
        .collect()
}

/// A source and destination where a move would copy one file, replace
/// one, resume one, find one already there, and skip a symlink.
fn trees() -> (TempDir, TempDir) {
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "new/fresh.txt", b"fresh");
    write_file(src.path(), "changed.txt", b"the source's version");
    write_file(dst.path(), "changed.txt", b"another file");
    let big = pattern(3, 3 << 20);
    write_file(src.path(), "big.bin", &big);
    write_file(dst.path(), ".realize~part.big.bin", &big[..1 << 20]);
    write_file(src.path(), "same.txt", b"identical");
    write_file(dst.path(), "same.txt", b"identical");
    std::fs::set_permissions(
        dst.path().join("same.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    write_file(src.path(), ".hidden/keep", b"hidden");
    std::os::unix::fs::symlink("fresh.txt", src.path().join("new/link")).unwrap();
    (src, dst)
}

/// Runs a dry run with `args`, checks that neither tree changed and that
/// the report names every file, then runs the move for real and checks it
/// did what the dry run said.
fn dry_run_changes_nothing_and_says_what_the_move_does(src: &Path, dst: &Path, args: &[String]) {
    let (src_before, dst_before) = (state(src), state(dst));
    let out = realize().args(args).arg("--dry-run").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(state(src), src_before, "source changed");
    assert_eq!(state(dst), dst_before, "destination changed");
    let report = stdout(&out);
    for line in [
        "Would move d/new/fresh.txt (5 B)",
        "Would move d/changed.txt (20 B, replacing a different file)",
        "Would move d/big.bin (3.00 MiB, resuming: 1.00 MiB already there)",
        "Would move d/same.txt (already at the destination: only the source copy would be deleted)",
        "Would move d/.hidden/keep (6 B)",
        "Skipped   d/new/link: symbolic link",
        "dry run: 5 would move (1 replacing, 1 resuming), 0 failed, 1 skipped; \
         2.00 MiB to send; nothing was changed",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }

    let out = realize().args(args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("5 moved, 0 failed, 1 skipped, 1 replaced"),
        "{}",
        stdout(&out)
    );
    assert_eq!(paths(src), ["new/", "new/link"].map(String::from).into());
}

#[test]
fn a_dry_run_to_a_daemon_changes_nothing_on_either_side() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = trees();
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    dry_run_changes_nothing_and_says_what_the_move_does(src.path(), dst.path(), &args);
}

#[test]
fn a_dry_run_from_a_daemon_changes_nothing_on_either_side() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = trees();
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    let args = from_daemon(&keys, &daemon, "d", dst.path(), "client", "daemon");
    dry_run_changes_nothing_and_says_what_the_move_does(src.path(), dst.path(), &args);
}

#[test]
fn a_dry_run_into_a_missing_folder_creates_nothing() {
    let (src, parent) = trees();
    let missing = parent.path().join("not/yet");
    let out = realize()
        .args(["-n", "--src-path"])
        .arg(src.path())
        .arg("--dst-path")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!parent.path().join("not").exists());
}
