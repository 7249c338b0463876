//! Pinned mutual TLS: strangers are refused on both sides, with messages
//! that name the presented fingerprint.

use tempfile::TempDir;

use crate::harness::*;

#[test]
fn daemon_refuses_an_unknown_client() {
    let keys = Keys::generate(&["client", "stranger", "daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "f", b"data");
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let mut args = vec![
        "--src-path".to_string(),
        src.path().display().to_string(),
        "--dst-addr".into(),
        daemon.addr(),
        "--directory-id".into(),
        "d".into(),
    ];
    args.extend(keys.client_args("stranger", &["daemon"]));
    let out = realize().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stranger = keys.fingerprint("stranger");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(
        err.contains("refused this client's certificate") && err.contains(&stranger),
        "{err}"
    );
    let log = daemon.wait_for_log("refused connection");
    assert!(
        log.contains(&stranger),
        "daemon log must name the fingerprint:\n{log}"
    );
    assert!(is_empty_dir(dst.path()));
    assert!(src.path().join("f").exists());
}

#[test]
fn client_refuses_an_unpinned_daemon() {
    let keys = Keys::generate(&["client", "daemon", "other-daemon"]);
    let (src, dst) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_file(src.path(), "f", b"data");
    let daemon = Daemon::start(&keys, "daemon", &[("d", dst.path())], &["client"]);
    let mut args = vec![
        "--src-path".to_string(),
        src.path().display().to_string(),
        "--dst-addr".into(),
        daemon.addr(),
        "--directory-id".into(),
        "d".into(),
    ];
    // The client pins another daemon's certificate.
    args.extend(keys.client_args("client", &["other-daemon"]));
    let out = realize().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("refusing the daemon at"), "{err}");
    assert!(
        err.contains(&keys.fingerprint("daemon")),
        "must name the daemon's fingerprint: {err}"
    );
    assert!(is_empty_dir(dst.path()));
    assert!(src.path().join("f").exists());
}

#[test]
fn keygen_refuses_to_overwrite() {
    let keys = Keys::generate(&["host"]);
    let before = std::fs::read(keys.key("host")).unwrap();
    let out = run(&[
        "keygen",
        "--name",
        "host",
        "--out",
        keys.dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(keys.key("host")).unwrap(), before);
}

#[test]
fn keygen_creates_its_folder_and_prints_the_fingerprint() {
    let dir = TempDir::new().unwrap();
    let out_dir = dir.path().join("made/by/keygen");
    let out = run(&["keygen", "--name", "h", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::rename(out_dir.join("h.key"), dir.path().join("h.key")).unwrap();
    std::fs::rename(out_dir.join("h.crt"), dir.path().join("h.crt")).unwrap();
    let keys = Keys { dir };
    assert!(
        stdout(&out).contains(&format!("fingerprint {}", keys.fingerprint("h"))),
        "{}",
        stdout(&out)
    );
}
