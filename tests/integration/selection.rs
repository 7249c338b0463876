//! `--exclude`, `--include`, `--exclude-from` and `--min-age` choose which
//! source files move; the others stay where they are.

use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use crate::harness::*;

/// A source tree of photos, raw files, a cache and temporary files.
fn photo_tree() -> TempDir {
    let src = TempDir::new().unwrap();
    for path in [
        "a.jpg",
        "notes.txt",
        "2024/b.jpg",
        "2024/raw/c.cr2",
        "2024/raw/d.jpg",
        "cache/e.jpg",
        "2024/cache/f.jpg",
        "upload.tmp",
        "2024/g.tmp",
    ] {
        write_file(src.path(), path, path.as_bytes());
    }
    src
}

fn set(paths: &[&str]) -> std::collections::BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

/// The files under `root`, without folders.
fn files(root: &std::path::Path) -> std::collections::BTreeSet<String> {
    snapshot(root).into_keys().collect()
}

#[test]
fn excluded_files_stay_at_the_source_and_the_rest_moves_to_a_daemon() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (photo_tree(), TempDir::new().unwrap());
    let rules = TempDir::new().unwrap();
    let exclude_from = rules.path().join("rules");
    std::fs::write(&exclude_from, "# temporary files\n*.tmp\n\ncache/\n").unwrap();
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let mut args = to_daemon(&keys, src.path(), &daemon, "d", "client", "daemon");
    args.extend(
        [
            "--include",
            "2024/raw/*.jpg",
            "--exclude",
            "raw/",
            "--exclude-from",
            exclude_from.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let moved = set(&["a.jpg", "notes.txt", "2024/b.jpg", "2024/raw/d.jpg"]);
    assert_eq!(files(dst.path()), moved);
    assert_eq!(
        files(src.path()),
        set(&[
            "2024/raw/c.cr2",
            "cache/e.jpg",
            "2024/cache/f.jpg",
            "upload.tmp",
            "2024/g.tmp"
        ])
    );
    assert!(
        stdout(&out).contains("4 moved, 0 failed, 0 skipped, 5 excluded"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_first_matching_rule_wins_from_a_daemon() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (photo_tree(), TempDir::new().unwrap());
    let daemon = Daemon::start(&keys, "daemon", &[("d", src.path())], &["client"]);
    let mut args = from_daemon(&keys, &daemon, "d", dst.path(), "client", "daemon");
    args.extend(["--include", "*.jpg", "--exclude", "*", "-v"].map(String::from));
    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let jpegs = [
        "a.jpg",
        "2024/b.jpg",
        "2024/raw/d.jpg",
        "cache/e.jpg",
        "2024/cache/f.jpg",
    ];
    assert_eq!(files(dst.path()), set(&jpegs));
    assert_eq!(
        files(src.path()),
        set(&["notes.txt", "2024/raw/c.cr2", "upload.tmp", "2024/g.tmp"])
    );
    let report = stdout(&out);
    assert!(
        report.contains("Excluded  d/notes.txt: matches an --exclude rule"),
        "{report}"
    );
    assert!(report.contains("5 moved, 0 failed, 0 skipped, 4 excluded"));
}

#[test]
fn min_age_leaves_a_fresh_file_at_the_source() {
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "finished.log", b"old");
    write_file(src.path(), "writing.log", b"new");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(src.path().join("finished.log"))
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let out = realize()
        .arg("--src-path")
        .arg(src.path())
        .arg("--dst-path")
        .arg(dst.path())
        .args(["--min-age", "10m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(dst.path()), set(&["finished.log"]));
    assert_eq!(files(src.path()), set(&["writing.log"]));
    assert!(
        stdout(&out).contains("1 moved, 0 failed, 0 skipped, 1 not old enough"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_patterns_durations_and_pattern_files_are_usage_errors_that_change_nothing() {
    let src = photo_tree();
    let parent = TempDir::new().unwrap();
    let dst = parent.path().join("dst");
    let bad_rules = parent.path().join("rules");
    std::fs::write(&bad_rules, "*.tmp\n# fine so far\nphotos/[\n").unwrap();
    let missing = parent.path().join("no-such-file");
    let before = snapshot(src.path());
    let cases: &[(&[&str], &str)] = &[
        (&["--exclude", "a["], "not a valid pattern"),
        (&["--include", "/"], "matches nothing"),
        (&["--min-age", "soon"], "use a duration such as"),
        (&["--min-age", "0s"], "more than zero"),
        (&["--exclude-from", bad_rules.to_str().unwrap()], "line 3:"),
        (
            &["--exclude-from", missing.to_str().unwrap()],
            "no-such-file",
        ),
    ];
    for (flags, message) in cases {
        let out = realize()
            .arg("--src-path")
            .arg(src.path())
            .arg("--dst-path")
            .arg(&dst)
            .args(*flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{flags:?}: {}",
            stderr(&out)
        );
        assert_eq!(snapshot(src.path()), before, "{flags:?}");
        assert!(!dst.exists(), "{flags:?} created the destination");
    }
}
