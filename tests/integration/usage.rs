//! Exit codes and messages for bad usage and bad configuration.

use tempfile::TempDir;

use crate::harness::*;

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--src-path", path], "--dst-path"),
        (&["--src-path", path, "--dst-path", path], "same directory"),
        (
            &["--src-addr", "127.0.0.1:9", "--dst-path", path],
            "--directory-id is required",
        ),
        (
            &[
                "--src-path",
                path,
                "--dst-path",
                "/tmp/x",
                "--parallel",
                "0",
            ],
            "from 1 to 512",
        ),
        (
            &[
                "--src-path",
                path,
                "--dst-path",
                "/tmp/x",
                "--directory-id",
                "a/b",
            ],
            "directory id",
        ),
        (
            &[
                "--src-addr",
                "127.0.0.1:9",
                "--dst-path",
                path,
                "--directory-id",
                "d",
            ],
            "--key is required",
        ),
    ];
    for (args, message) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn nested_source_and_destination_are_refused() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("inner")).unwrap();
    write_file(dir.path(), "f", b"x");
    let out = run(&[
        "--src-path",
        dir.path().to_str().unwrap(),
        "--dst-path",
        dir.path().join("inner").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(dir.path().join("f").exists());
}

#[test]
fn help_documents_exit_codes() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for code in ["0 ", "1 ", "2 ", "11", "12", "20"] {
        assert!(
            help.contains(&format!("  {code}")),
            "exit code {code} missing:\n{help}"
        );
    }
}

#[test]
fn help_names_the_environment_variables() {
    let help = stdout(&run(&["--help"]));
    for variable in [
        "REALIZE_KEY",
        "REALIZE_CERT",
        "REALIZE_PEERS",
        "REALIZE_CONFIG",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}=")),
            "{variable}:\n{help}"
        );
    }
}

#[test]
fn daemon_rejects_bad_configuration_with_one_line() {
    let keys = Keys::generate(&["daemon"]);
    let config = keys.dir.path().join("bad.toml");
    let cases = [
        ("key = 'daemon.key'\ncert = 'daemon.crt'\nlisten = 'nowhere'\n[dirs]\nd='/tmp'\n[peers]\nx='daemon.crt'\n", "listen"),
        ("key = 'missing.key'\ncert = 'daemon.crt'\n[dirs]\nd='/tmp'\n[peers]\nx='daemon.crt'\n", "missing.key"),
        ("key = 'daemon.key'\ncert = 'daemon.crt'\n[dirs]\nd='/nonexistent/dir'\n[peers]\nx='daemon.crt'\n", "/nonexistent/dir"),
        ("key = 'daemon.key'\ncert = 'daemon.key'\n[dirs]\nd='/tmp'\n[peers]\nx='daemon.crt'\n", "daemon.key"),
        ("key = 'daemon.key'\ncert = 'daemon.crt'\n[dirs]\nd='/tmp'\n[peers]\nx='daemon.key'\n", "daemon.key"),
    ];
    for (text, needle) in cases {
        std::fs::write(&config, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_realized"))
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{text}");
        let err = stderr(&out);
        let first = err
            .lines()
            .find(|l| l.starts_with("realized:"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(first.contains(needle), "{text}: {err}");
        assert!(
            first.contains("bad.toml") || needle != "listen",
            "must name the file: {first}"
        );
    }
}

#[test]
fn daemon_reports_a_port_in_use() {
    let keys = Keys::generate(&["daemon", "client"]);
    let dir = TempDir::new().unwrap();
    let first = Daemon::start(&keys, "daemon", &[("d", dir.path())], &["client"]);
    let config = keys.dir.path().join("second.toml");
    let text = std::fs::read_to_string(&first.config)
        .unwrap()
        .replace("127.0.0.1:0", &first.addr());
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_realized"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on {}", first.addr())),
        "{}",
        stderr(&out)
    );
}

/// Every file would look already moved and be deleted: refused before any.
fn assert_refused_as_overlap(args: &[String], root: &std::path::Path) {
    let before = snapshot(root);
    let out = realize().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("source and destination are the same directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(root), before, "nothing changed");
}

#[test]
fn a_directory_is_never_moved_into_itself_however_it_is_reached() {
    let keys = Keys::generate(&["client", "daemon", "daemon-b"]);
    let root = TempDir::new().unwrap();
    write_file(root.path(), "keep/me.txt", b"precious");
    write_file(root.path(), "sub/inner.txt", b"precious too");
    let daemon = Daemon::start(&keys, "daemon", &[("d", root.path())], &["client"]);

    // A local path that the destination daemon serves.
    let args = to_daemon(&keys, root.path(), &daemon, "d", "client", "daemon");
    assert_refused_as_overlap(&args, root.path());

    // A local path containing the daemon's root.
    let nested = Daemon::start(
        &keys,
        "daemon-b",
        &[("d", &root.path().join("sub"))],
        &["client"],
    );
    let args = to_daemon(&keys, root.path(), &nested, "d", "client", "daemon-b");
    assert_refused_as_overlap(&args, root.path());

    // Two daemons serving the same directory.
    let twin = Daemon::start(&keys, "daemon-b", &[("d", root.path())], &["client"]);
    let mut args = vec![
        "--src-addr".to_string(),
        daemon.addr(),
        "--dst-addr".into(),
        twin.addr(),
        "--directory-id".into(),
        "d".into(),
    ];
    args.extend(keys.relay_args("client", "daemon", "daemon-b"));
    assert_refused_as_overlap(&args, root.path());
}

/// Options before a subcommand belong to the move, so `realize --parallel 4
/// ls nas` would move a local folder `ls` into a local `nas`: refused,
/// with the way to write either meaning, and nothing moves.
#[test]
fn a_source_spelled_like_a_subcommand_is_refused_and_moves_nothing() {
    let cwd = TempDir::new().unwrap();
    write_file(&cwd.path().join("ls"), "photo.jpg", b"kept");
    std::fs::create_dir(cwd.path().join("nas")).unwrap();
    let before = snapshot(cwd.path());
    let out = realize()
        .current_dir(cwd.path())
        .args(["--parallel", "4", "ls", "nas"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("realize ls [OPTIONS]"), "{message}");
    assert!(message.contains("./ls"), "{message}");
    assert_eq!(snapshot(cwd.path()), before);

    let out = realize()
        .current_dir(cwd.path())
        .args(["--parallel", "4", "./ls", "nas"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cwd.path().join("nas/photo.jpg").exists());
}
