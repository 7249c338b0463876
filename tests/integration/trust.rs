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
    let args = to_daemon(&keys, src.path(), &daemon, "d", "stranger", &["daemon"]);
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

#[test]
fn committed_test_keys_work() {
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let work = TempDir::new().unwrap();
    let (root, src) = (work.path().join("served"), work.path().join("src"));
    std::fs::create_dir_all(&root).unwrap();
    // The example config with its served folder and port pointed at this test.
    let example = std::fs::read_to_string(certs.join("realized.example.toml")).unwrap();
    let config_text = example
        .replace("127.0.0.1:9771", "127.0.0.1:0")
        .replace("/tmp/realize-example", root.to_str().unwrap());
    let config = certs.join(format!("test-{}.toml", std::process::id()));
    std::fs::write(&config, config_text).unwrap();
    let daemon = Daemon::start_with_config(&config);
    std::fs::remove_file(&config).unwrap();
    write_file(&src, "hello.txt", b"hello");
    let cert = |name: &str| certs.join(name).display().to_string();
    let out = run(&[
        "--src-path",
        src.to_str().unwrap(),
        "--dst-addr",
        &daemon.addr(),
        "--directory-id",
        "example",
        "--key",
        &cert("test-client.key"),
        "--cert",
        &cert("test-client.crt"),
        "--peers",
        &cert("test-daemon.crt"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(root.join("hello.txt")).unwrap(), b"hello");
    let readme = std::fs::read_to_string(certs.join("README.md")).unwrap();
    let client = realize::transport::identity::Identity::load(
        &certs.join("test-client.key"),
        &certs.join("test-client.crt"),
    )
    .unwrap();
    assert!(
        readme.contains(&client.fingerprint().to_string()),
        "README fingerprint is stale"
    );
}
