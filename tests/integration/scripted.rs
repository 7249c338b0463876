//! Output for scripts and unattended runs: `--json` prints one object a
//! script parses, `--stats` a progress line on stderr now and then.

use serde_json::Value;
use tempfile::TempDir;

use crate::harness::*;

/// The one JSON object `realize --json` printed: stdout holds nothing else.
fn report(out: &std::process::Output) -> Value {
    let text = stdout(out);
    assert_eq!(text.lines().count(), 1, "stdout: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A source whose move to `dst` moves two files, fails one (a folder
/// stands at its name at the destination), skips a symlink and leaves out
/// one file by --exclude.
fn trees() -> (TempDir, TempDir) {
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "a.txt", b"hello");
    write_file(src.path(), "sub/b.bin", &pattern(7, 100_000));
    write_file(src.path(), "blocked.txt", b"cannot land");
    std::fs::create_dir_all(dst.path().join("blocked.txt/inside")).unwrap();
    write_file(src.path(), "upload.tmp", b"not finished");
    std::os::unix::fs::symlink("a.txt", src.path().join("link")).unwrap();
    (src, dst)
}

#[test]
fn json_reports_counts_failures_and_skips_with_the_exit_code() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = trees();
    let daemon = Daemon::start(&keys, "daemon", &[("photos", dst.path())], &["client"]);
    let mut args = to_daemon(&keys, src.path(), &daemon, "photos", "client", "daemon");
    args.extend(["--exclude", "*.tmp", "--json"].map(String::from));

    let out = realize().args(&args).output().unwrap();
    let json = report(&out);
    assert_eq!(out.status.code(), Some(23), "{}", stderr(&out));
    assert_eq!(json["exit_code"], 23);
    assert_eq!(json["version"], 1);
    assert_eq!(json["dry_run"], false);
    assert_eq!(json["source"], src.path().display().to_string());
    assert_eq!(json["destination"], daemon.addr());
    assert_eq!(json["directory"], "photos");
    assert_eq!(json["error"], Value::Null);
    let counts = &json["counts"];
    assert_eq!(counts["moved"], 2);
    assert_eq!(counts["failed"], 1);
    assert_eq!(counts["skipped"], 1);
    assert_eq!(counts["excluded"], 1);
    assert_eq!(counts["interrupted"], 0);
    assert_eq!(counts["not_started"], 0);
    assert_eq!(json["bytes_sent"], 100_005 + "cannot land".len() as u64);
    assert!(json["elapsed_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(json["failures"].as_array().unwrap().len(), 1);
    assert_eq!(json["failures"][0]["path"], "blocked.txt");
    assert_eq!(json["failures"][0]["kind"], "NotAFile");
    assert!(json["failures"][0]["message"]
        .as_str()
        .unwrap()
        .contains("something other than a regular file"));
    assert_eq!(
        json["skipped"],
        serde_json::json!([{"path": "link", "kind": "symlink", "message": "symbolic link"}])
    );
    assert_eq!(json["planned"], serde_json::json!([]));
    // Errors still reach stderr; the moved files did move.
    assert!(stderr(&out).contains("ERROR"), "{}", stderr(&out));
    assert!(dst.path().join("sub/b.bin").is_file());
    assert!(!src.path().join("a.txt").exists());
}

#[test]
fn json_dry_run_lists_the_planned_files_and_changes_nothing() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = trees();
    write_file(dst.path(), "a.txt", b"other");
    let daemon = Daemon::start(&keys, "daemon", &[("photos", dst.path())], &["client"]);
    let mut args = to_daemon(&keys, src.path(), &daemon, "photos", "client", "daemon");
    args.extend(["--exclude", "*.tmp", "--json", "--dry-run"].map(String::from));
    let before = (snapshot(src.path()), snapshot(dst.path()));

    let out = realize().args(&args).output().unwrap();
    let json = report(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["counts"]["moved"], 3);
    assert_eq!(json["counts"]["replaced"], 1);
    let planned: Vec<(&str, &str, bool)> = json["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap(),
                p["action"].as_str().unwrap(),
                p["replaces"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        planned,
        [
            ("a.txt", "send", true),
            ("blocked.txt", "send", false),
            ("sub/b.bin", "send", false)
        ]
    );
    assert_eq!(json["planned"][2]["size"], 100_000);
    assert_eq!((snapshot(src.path()), snapshot(dst.path())), before);
}

#[test]
fn json_reports_a_run_that_cannot_start_but_not_a_usage_error() {
    let missing = TempDir::new().unwrap().path().join("missing");
    let dst = TempDir::new().unwrap();
    let out = realize()
        .arg(&missing)
        .arg(dst.path())
        .arg("--json")
        .output()
        .unwrap();
    let json = report(&out);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["exit_code"], 1);
    assert!(json["error"].as_str().unwrap().contains("missing"));
    assert!(stderr(&out).contains("missing"));

    // A daemon that does not answer: the reason for giving up.
    let keys = Keys::generate(&["client", "daemon"]);
    let nobody = format!("127.0.0.1:{}:photos", free_tcp_port());
    let out = realize()
        .arg(dst.path())
        .arg(&nobody)
        .args(keys.client_args("client", "daemon"))
        .args(["--json", "--retries", "0", "--connect-timeout", "1s"])
        .output()
        .unwrap();
    let json = report(&out);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["directory"], Value::Null);
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("gave up after 0 retries"), "{error}");

    // Usage errors, from the flags or found when the run starts: exit 2,
    // the message on stderr, no report.
    let src = TempDir::new().unwrap();
    let bad_flag = realize()
        .arg(src.path())
        .arg(dst.path())
        .args(["--json", "--parallel", "0"])
        .output()
        .unwrap();
    let no_key = realize()
        .arg(src.path())
        .args(["127.0.0.1:9:photos", "--json", "--key", "absent.key"])
        .args(["--cert", "absent.crt", "--peers", "absent.crt"])
        .output()
        .unwrap();
    for out in [bad_flag, no_key] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(stdout(&out), "");
        assert!(!stderr(&out).is_empty());
    }
}

#[test]
fn stats_prints_progress_lines_on_stderr_while_a_throttled_move_runs() {
    const SIZE: usize = 1 << 20;
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "slow.bin", &pattern(9, SIZE));
    let daemon = Daemon::start(&keys, "daemon", &[("photos", dst.path())], &["client"]);
    let mut args = to_daemon(&keys, src.path(), &daemon, "photos", "client", "daemon");
    args.extend(["--throttle-up", "256k", "--stats", "1s"].map(String::from));

    let out = realize().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let stats: Vec<&str> = err.lines().filter(|l| l.starts_with("Stats")).collect();
    assert!(stats.len() >= 2, "stderr: {err}");
    assert!(
        stats[0].starts_with("Stats     photos: 0/1 files, "),
        "{err}"
    );
    for line in &stats {
        assert!(line.starts_with("Stats     photos: "), "{line}");
        assert!(line.contains("/1 files, "), "{line}");
        assert!(line.contains("/1.00 MiB, "), "{line}");
        assert!(line.contains("/s, ETA "), "{line}");
    }
    // The bytes sent grow from one line to the next.
    let sent = |line: &str| line.split(", ").nth(1).unwrap().to_string();
    assert_ne!(sent(stats[0]), sent(stats[stats.len() - 1]), "{err}");
    assert!(!stdout(&out).contains("Stats"));
    assert!(dst.path().join("slow.bin").is_file());
}

#[test]
fn json_lists_each_moved_file_with_its_size() {
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = trees();
    write_file(dst.path(), "a.txt", b"hello");
    let daemon = Daemon::start(&keys, "daemon", &[("photos", dst.path())], &["client"]);
    let mut args = to_daemon(&keys, src.path(), &daemon, "photos", "client", "daemon");
    args.extend(["--exclude", "*.tmp", "--json"].map(String::from));

    let out = realize().args(&args).output().unwrap();
    let json = report(&out);
    assert_eq!(out.status.code(), Some(23), "{}", stderr(&out));
    assert_eq!(
        json["moved"],
        serde_json::json!([
            {"path": "a.txt", "size": 5, "sent": 0},
            {"path": "sub/b.bin", "size": 100_000, "sent": 100_000},
        ]),
        "a.txt was already there: nothing sent"
    );
    assert_eq!(json["counts"]["moved"], 2);
}
