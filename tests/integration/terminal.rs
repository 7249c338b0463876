//! The progress display in a real terminal: tmux runs the command, and the
//! screen is read while files move and after.

use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

#[test]
#[ignore = "needs tmux (.ci/deps installs it)"]
fn bars_render_in_the_specified_format_and_the_final_screen_is_clean() {
    const SIZE: usize = 200 << 20;
    let keys = Keys::generate(&["client", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "big.bin", &pattern(51, SIZE));
    write_file(src.path(), "sub/small.txt", b"small");
    write_file(src.path(), "zz-blocked.txt", b"cannot land");
    std::fs::create_dir_all(dst.path().join("zz-blocked.txt/inside")).unwrap();
    let daemon = Daemon::start(&keys, "daemon", &[("photos", dst.path())], &["client"]);
    let mut args = vec![
        env!("CARGO_BIN_EXE_realize").to_string(),
        "--src-path".into(),
        src.path().display().to_string(),
        "--dst-addr".into(),
        daemon.addr(),
        "--directory-id".into(),
        "photos".into(),
    ];
    args.extend(keys.client_args("client", "daemon"));
    let done = src.path().parent().unwrap().join(format!(
        "{}.exit",
        src.path().file_name().unwrap().to_string_lossy()
    ));
    let script = format!("{}; echo $? > {}; sleep 60", args.join(" "), done.display());
    let session = Session(format!("realize-test-{}", std::process::id()));
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "150",
        "-y",
        "30",
        &script,
    ]);

    // While the big file moves: its bar and the overall line.
    let deadline = Instant::now() + Duration::from_secs(120);
    let screen = loop {
        let screen = tmux(&["capture-pane", "-p", "-t", &session.0]);
        if screen.contains("Copying   photos/big.bin [") {
            break screen;
        }
        assert!(Instant::now() < deadline, "no bar seen; screen:\n{screen}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let bar = screen
        .lines()
        .find(|l| l.contains("photos/big.bin"))
        .unwrap();
    assert!(bar.starts_with("[1/3] Copying   photos/big.bin ["), "{bar}");
    assert!(bar.contains("/200.00 MiB"), "{bar}");
    let overall = screen
        .lines()
        .find(|l| l.contains("files"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(overall.contains("ETA"), "{overall}");

    // At the end: one Moved line per file, the summary, no bar left over.
    while !done.exists() {
        assert!(Instant::now() < deadline, "the move did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&done).unwrap().trim(),
        "23",
        "one file failed, the others moved"
    );
    let screen = tmux(&["capture-pane", "-p", "-t", &session.0]);
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("Moved     photos/big.bin")),
        "{screen}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("Moved     photos/sub/small.txt")),
        "{screen}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("2 moved, 1 failed, 0 skipped;"),
        "{screen}"
    );
    let error = "ERROR     photos/zz-blocked.txt: destination: zz-blocked.txt: \
                 something other than a regular file stands at the destination";
    assert!(lines.iter().any(|l| l.ends_with(error)), "{screen}");
    for line in &lines {
        assert!(
            !line.contains("Copying") && !line.contains("ETA"),
            "leftover bar: {line}\n{screen}"
        );
    }
}
