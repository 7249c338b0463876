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

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn one_key_under_two_peer_ids_stops_the_daemon() {
    let keys = Keys::generate(&["client", "daemon"]);
    let served = TempDir::new().unwrap();
    let copy = keys.dir.path().join("client-copy.crt");
    std::fs::copy(keys.cert("client"), &copy).unwrap();
    let config = keys.dir.path().join("shared.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nkey = \"daemon.key\"\ncert = \"daemon.crt\"\n[dirs]\n\
             d = {:?}\n[peers]\nalice = \"client.crt\"\nbob = \"client-copy.crt\"\n\
             [send_limits]\nalice = \"1M\"\n",
            path(served.path())
        ),
    )
    .unwrap();
    let out = refused_start(&config);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("realized:"))
            .collect::<Vec<_>>(),
        [format!(
            "realized: {}: [peers] alice ({}) and bob ({}) pin the same key {}: a key must have \
             one peer id, or a [send_limits] cap set on one would not hold for the other; keep \
             one of them",
            config.display(),
            keys.cert("client").display(),
            copy.display(),
            keys.fingerprint("client"),
        )],
        "{err}"
    );
}

/// Runs `realized --config config`, which must stop at once; a daemon still
/// running after 10 s is killed and fails the test.
fn refused_start(config: &std::path::Path) -> std::process::Output {
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_realized"))
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while daemon.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            daemon.kill().unwrap();
            panic!(
                "the daemon started: {:?}",
                daemon.wait_with_output().unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    daemon.wait_with_output().unwrap()
}
